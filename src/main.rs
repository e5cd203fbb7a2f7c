use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use elbo::gpu::{AdapterChoice, Backend};
use elbo::model::{Arch, Likelihood, ModelKind};
use std::path::PathBuf;

/// elbo: train variational autoencoders on any GPU (or none, through a software Vulkan driver).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct AdapterArgs {
    /// Graphics API to run on.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// Use the first adapter whose name contains this text (see `elbo devices`).
    #[arg(long)]
    adapter: Option<String>,
}

impl AdapterArgs {
    fn choice(&self) -> AdapterChoice {
        AdapterChoice { backend: self.backend, name: self.adapter.clone() }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a VAE (or autoencoder) on MNIST, the faces, or any folder of images.
    ///
    /// Example: elbo train --epochs 10 --out runs/mnist
    ///          elbo train --model conv --dataset faces --likelihood gaussian
    Train(TrainArgs),
    /// List the GPU adapters with their backend, type, driver, limits and features.
    Devices(AdapterArgs),
    /// Benchmark the kernels and whole training steps on the chosen adapter.
    ///
    /// Reports the adapter, each kernel at the model's shapes and on square GEMMs
    /// (median and spread, GFLOP/s, GB/s), and training steps at several batch
    /// sizes (median step time, images/s, dispatches and submits per step).
    ///
    /// Example: elbo bench --json lavapipe.json --pytorch python3
    ///          elbo bench --compare lavapipe.json h100.json
    Bench(BenchArgs),
    /// Time every dispatch of a training step with GPU timestamps.
    ///
    /// Prints a table sorted by time (kernel, shape, calls, total and mean time,
    /// share of the step, GFLOP/s) and optionally a Chrome trace.
    ///
    /// Example: elbo profile --steps 10 --trace step.json
    Profile(ProfileArgs),
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Compare two JSON reports side by side instead of benchmarking.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Option<Vec<PathBuf>>,
    /// Timed repetitions of each measurement (after warm-up).
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Batch sizes of the MLP VAE's training-step benchmark.
    #[arg(long, value_delimiter = ',', default_value = "32,128,512")]
    batch_sizes: Vec<usize>,
    /// Batch sizes of the convolutional VAE's training-step benchmark (empty: skip it).
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    conv_batch_sizes: Vec<usize>,
    /// Sizes of the square GEMM benchmark.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
    squares: Vec<usize>,
    /// Also time PyTorch's CPU step of the same model with this Python (needs torch).
    #[arg(long)]
    pytorch: Option<String>,
}

#[derive(Args)]
struct ProfileArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// Training steps to profile (after 5 untimed warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// The model: the reference MLP VAE, or the convolutional VAE (32-64 channels, latent 16).
    #[arg(long, value_enum, default_value = "mlp")]
    model: Arch,
    /// Write a Chrome trace (chrome://tracing, ui.perfetto.dev) of the profiled steps.
    #[arg(long)]
    trace: Option<PathBuf>,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// `mnist`, `faces` (100 LFW crops, 25x25), or a folder of PNG/JPEG images (searched recursively).
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// Folder holding the dataset's files [default: data/mnist or data/lfw-faces-25x25].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Folder datasets: 1 (greyscale) or 3 (RGB).
    #[arg(long, default_value_t = 1)]
    channels_in: usize,
    /// Folder datasets: resize every image to N or WxH pixels [default: keep; all must match].
    #[arg(long, value_parser = parse_size)]
    image_size: Option<(usize, usize)>,
    /// Faces and folders: the share of images held out for testing.
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    /// Output folder [default: a new folder under runs/]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Architecture: dense layers, or 4x4 stride-2 convolutions (images cropped to a multiple of 4).
    #[arg(long, value_enum, default_value = "mlp")]
    model: Arch,
    /// `vae`, or `ae`: a plain autoencoder (z = mu(x), reconstruction loss only).
    #[arg(long, value_enum, default_value = "vae")]
    model_kind: ModelKind,
    /// Decoder: Bernoulli (pixels in [0, 1]) or Gaussian with a learned per-pixel variance.
    #[arg(long, value_enum, default_value = "bernoulli")]
    likelihood: Likelihood,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Hidden width: the MLP's layers [400], or a dense layer after the convolutions [none].
    #[arg(long)]
    hidden: Option<usize>,
    /// Channels of the two convolutions.
    #[arg(long, value_delimiter = ',', num_args = 2, default_value = "32,64")]
    channels: Vec<usize>,
    /// Dimension of the latent code z.
    #[arg(long, default_value_t = 20)]
    latent_dim: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Weight of the KL term (1 = the ELBO).
    #[arg(long, default_value_t = 1.0)]
    beta: f32,
    /// Epochs over which the KL weight rises linearly from 0 to --beta.
    #[arg(long, default_value_t = 0.0)]
    kl_warmup: f64,
    /// Free bits: a latent dimension whose batch-average KL is below this many nats gets no KL gradient.
    #[arg(long, default_value_t = 0.0)]
    free_bits: f32,
    /// Monte-Carlo samples of z per image (the ELBO's estimate averages them).
    #[arg(long, default_value_t = 1)]
    mc_samples: usize,
    /// Seed of the initialisation, the data order and the GPU's random streams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `dynamic`: resample binary pixels each time an image is used.
    #[arg(long, value_enum, default_value = "none")]
    binarize: Binarize,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Steps between loss read-backs (progress-bar updates).
    #[arg(long, default_value_t = 25)]
    log_every: usize,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
    /// GEMM kernels: timed on this adapter (auto) or forced.
    #[arg(long, value_enum, default_value = "auto")]
    gemm: elbo::gemm::GemmPreference,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split(['x', 'X']).collect();
    let num = |t: &str| t.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match parts.as_slice() {
        [n] => num(n).map(|n| (n, n)),
        [w, h] => num(w).zip(num(h)),
        _ => None,
    }
    .ok_or_else(|| format!("expected N or WxH with positive numbers, got {s:?}"))
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Binarize {
    None,
    Dynamic,
}

fn main() {
    // Mesa's device-select layer only prints "XDG_RUNTIME_DIR is invalid" on
    // headless machines; wgpu lists every adapter without it.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Devices(a) => {
            let adapters = elbo::gpu::list_adapters(a.backend);
            if adapters.is_empty() {
                anyhow::bail!("{}", elbo::gpu::NO_ADAPTER_HINT);
            }
            for (i, adapter) in adapters.iter().enumerate() {
                println!("[{i}] {}", elbo::gpu::describe_adapter(adapter));
            }
        }
        Command::Bench(b) => {
            if let Some(files) = &b.compare {
                let (a, c) = (elbo::bench::read_report(&files[0])?, elbo::bench::read_report(&files[1])?);
                print!("{}", elbo::bench::compare(&a, &c));
                return Ok(());
            }
            let gpu = elbo::gpu::Gpu::new(&b.adapter.choice())?;
            let opts = elbo::bench::BenchOptions {
                batches: b.batch_sizes,
                conv_batches: b.conv_batch_sizes,
                steps: b.steps.max(3),
                squares: b.squares,
                pytorch: b.pytorch,
            };
            let report = elbo::bench::bench(&gpu, &opts, &|what| eprintln!("bench: {what}"))?;
            print!("{}", elbo::bench::format_bench(&report));
            if let Some(path) = &b.json {
                elbo::write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
                println!("wrote {}", path.display());
            }
        }
        Command::Profile(p) => {
            let gpu = elbo::gpu::Gpu::new(&p.adapter.choice())?;
            let opts =
                elbo::bench::ProfileOptions { arch: p.model, batch: p.batch_size, steps: p.steps, trace: p.trace };
            print!("{}", elbo::bench::profile_command(&gpu, &opts)?);
        }
        Command::Train(t) => {
            let opts = elbo::train::TrainOptions {
                dataset: t.dataset.parse().unwrap(),
                data_dir: t.data_dir,
                channels_in: t.channels_in,
                image_size: t.image_size,
                test_fraction: t.test_fraction,
                out: t.out,
                arch: t.model,
                kind: t.model_kind,
                likelihood: t.likelihood,
                epochs: t.epochs,
                batch_size: t.batch_size,
                hidden: t.hidden,
                conv_channels: [t.channels[0], t.channels[1]],
                latent_dim: t.latent_dim,
                lr: t.lr,
                beta: t.beta,
                kl_warmup: t.kl_warmup,
                free_bits: t.free_bits,
                mc_samples: t.mc_samples,
                seed: t.seed,
                binarize: t.binarize == Binarize::Dynamic,
                train_limit: t.train_limit,
                test_limit: t.test_limit,
                log_every: t.log_every,
                quiet: t.quiet,
                adapter: t.adapter.choice(),
                gemm: t.gemm,
            };
            elbo::train::train(&opts)?;
        }
    }
    Ok(())
}
