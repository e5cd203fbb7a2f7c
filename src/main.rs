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
    ///
    /// Example: elbo devices --backend vulkan
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
    /// Decode N images from z ~ N(0, T^2 I) into a PNG grid.
    ///
    /// Example: elbo sample --model runs/mnist --n 64 --temperature 0.8
    Sample(SampleArgs),
    /// Test images above their reconstructions from the posterior mean and from a sampled z.
    ///
    /// Example: elbo reconstruct --model runs/mnist --n 16
    Reconstruct(ReconstructArgs),
    /// Decode a grid over two latent dimensions placed through the inverse Gaussian CDF.
    ///
    /// For a 2-D latent this is Kingma & Welling's manifold figure; for larger ones the
    /// other dimensions stay at 0. Example: elbo manifold --model runs/mnist2d --grid 20
    Manifold(ManifoldArgs),
    /// Sweep each latent dimension (the K with the largest average KL) from -3 to 3.
    ///
    /// The other dimensions stay at a test image's posterior mean.
    /// Example: elbo traverse --model runs/mnist --top 8 --index 3
    Traverse(TraverseArgs),
    /// Decode the straight path between two test images' posterior means.
    ///
    /// Example: elbo interpolate --model runs/mnist --from 0 --to 1 --steps 10
    Interpolate(InterpolateArgs),
    /// Write the test set's posterior means to CSV and plot them coloured by class.
    ///
    /// 2-D latents are plotted as they are; larger ones by their first two principal
    /// components. Example: elbo embed --model runs/mnist
    Embed(EmbedArgs),
    /// Restore damaged test images by MAP search over z through the decoder.
    ///
    /// z* = argmax_z log p(x_observed | g(z)) + log p(z), from the encoder's mean, by
    /// gradient steps through the decoder's backward kernels on the GPU; x* = g(z*).
    /// Reports the error on the unknown pixels beside the encoder-only reconstruction
    /// and the mean image. Example: elbo restore --model runs/mnist --mask-kind half
    Restore(RestoreArgs),
    /// The test set's ELBO, its terms, and the importance-weighted log-likelihood.
    ///
    /// log p(x) is estimated with K samples per image (Burda et al., 2015), in nats
    /// per image and bits per dimension. Example: elbo eval --model runs/mnist --iw-samples 1000
    Eval(EvalArgs),
    /// Linear probes: a softmax classifier trained on the GPU on the posterior means, beside raw pixels.
    ///
    /// Reports test accuracy for the VAE's features and for the pixels side by side.
    /// Example: elbo probe --model runs/mnist --epochs 10
    Probe(ProbeArgs),
    /// Time every dispatch of a training step with GPU timestamps.
    ///
    /// Prints a table sorted by time (kernel, shape, calls, total and mean time,
    /// share of the step, GFLOP/s) and optionally a Chrome trace.
    ///
    /// Example: elbo profile --steps 10 --trace step.json
    Profile(ProfileArgs),
}

/// A comma-separated list of sizes, each at least 1, or `none`.
#[derive(Clone, Debug)]
struct Sizes(Vec<usize>);

fn sizes(s: &str) -> Result<Sizes, String> {
    if s.trim().is_empty() || s.trim() == "none" {
        return Ok(Sizes(Vec::new()));
    }
    let parse = |v: &str| match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{v}' is not a size: give whole numbers of at least 1, comma-separated, or none")),
    };
    s.split(',').map(parse).collect::<Result<_, _>>().map(Sizes)
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
    /// Batch sizes of the MLP VAE's training-step benchmark, comma-separated (none: skip it).
    #[arg(long, default_value = "32,128,512", value_parser = sizes)]
    batch_sizes: Sizes,
    /// Batch sizes of the convolutional VAE's training-step benchmark (none: skip it).
    #[arg(long, default_value = "32,128", value_parser = sizes)]
    conv_batch_sizes: Sizes,
    /// Sizes of the square GEMM benchmark (none: skip it).
    #[arg(long, default_value = "256,512,1024", value_parser = sizes)]
    squares: Sizes,
    /// Also time PyTorch's step of the same models with this Python (needs torch), in
    /// interleaved rounds, and whole MLP VAE epochs against PyTorch with torchvision's
    /// DataLoader (needs torchvision; skipped with a note without it).
    #[arg(long)]
    pytorch: Option<String>,
    /// The torch device PyTorch's step runs on: cpu, or cuda to compare against an NVIDIA GPU.
    #[arg(long, default_value = "cpu", requires = "pytorch")]
    pytorch_device: String,
    /// Interleaved rounds of each comparison with PyTorch (each round times elbo, then
    /// PyTorch); the ratio reported is their median. More rounds give a firmer median on
    /// a machine whose load comes and goes.
    #[arg(long, default_value_t = 5, requires = "pytorch", value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
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
    /// GEMM kernels: timed on this adapter (auto) or forced, to profile one variant.
    #[arg(long, value_enum, default_value = "auto")]
    gemm: elbo::kernels::gemm::GemmPreference,
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
    /// Epochs [default: 10]; with --resume, a count above the saved one extends the run.
    #[arg(long)]
    epochs: Option<usize>,
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
    /// Adam learning rate [default: 0.001]; with --resume, a new rate from the resumed epoch on.
    #[arg(long)]
    lr: Option<f32>,
    /// Multiply the learning rate by this after every epoch [default: 1, constant];
    /// with --resume, a new decay from the resumed epoch on (e.g. --lr-decay 0.98).
    #[arg(long)]
    lr_decay: Option<f64>,
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
    /// Print each epoch's metrics as one JSON line on stdout, and nothing else.
    #[arg(long)]
    json: bool,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
    /// GEMM kernels: timed on this adapter (auto) or forced.
    #[arg(long, value_enum, default_value = "auto")]
    gemm: elbo::kernels::gemm::GemmPreference,
    /// Continue the run in this folder from its checkpoint, with its saved options
    /// (an --epochs above the saved count extends the run).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Also save a checkpoint every N steps (one is always saved after every epoch and on Ctrl-C).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
}

#[derive(Args)]
struct UseArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// A run folder written by `elbo train`, or its model.safetensors.
    #[arg(long)]
    model: PathBuf,
    /// The data the model was trained on: `mnist`, `faces`, or a folder of images.
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// Folder holding the dataset's files [default: data/mnist or data/lfw-faces-25x25].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Folder datasets: resize to N or WxH [default: the model's size].
    #[arg(long, value_parser = parse_size)]
    image_size: Option<(usize, usize)>,
    /// Faces and folders: the test share and seed of the split used in training.
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder [default: the model's folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print nothing but the paths written (and errors).
    #[arg(long)]
    quiet: bool,
}

impl UseArgs {
    fn options(&self) -> elbo::infer::UseOptions {
        elbo::infer::UseOptions {
            model: self.model.clone(),
            dataset: self.dataset.parse().unwrap(),
            data_dir: self.data_dir.clone(),
            channels_in: 1,
            image_size: self.image_size,
            test_fraction: self.test_fraction,
            seed: self.seed,
            out: self.out.clone(),
            adapter: self.adapter.choice(),
            quiet: self.quiet,
        }
    }
}

#[derive(Args)]
struct SampleArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Images to draw.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Scales the prior's standard deviation.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
}

#[derive(Args)]
struct ReconstructArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Test images to reconstruct.
    #[arg(long, default_value_t = 32)]
    n: usize,
}

#[derive(Args)]
struct ManifoldArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Images per side.
    #[arg(long, default_value_t = 20)]
    grid: usize,
    /// The two latent dimensions to sweep.
    #[arg(long, value_delimiter = ',', num_args = 2, default_value = "0,1")]
    dims: Vec<usize>,
}

#[derive(Args)]
struct TraverseArgs {
    #[command(flatten)]
    common: UseArgs,
    /// The test image whose posterior mean fixes the other dimensions.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// How many dimensions, by largest average KL [default: all, at most 20].
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Images per sweep.
    #[arg(long, default_value_t = 11)]
    steps: usize,
}

#[derive(Args)]
struct InterpolateArgs {
    #[command(flatten)]
    common: UseArgs,
    #[arg(long, default_value_t = 0)]
    from: usize,
    #[arg(long, default_value_t = 1)]
    to: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
}

#[derive(Args)]
struct EmbedArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Embed only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Test images to restore (at most 128).
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// A PNG mask: white pixels observed, black unknown (resized to the model's size).
    #[arg(long, conflicts_with_all = ["mask_kind", "noise"])]
    mask: Option<PathBuf>,
    /// Built-in masks: half (bottom unknown), center (a centred square unknown), random:P.
    #[arg(long, conflicts_with = "noise")]
    mask_kind: Option<String>,
    /// Denoise instead: add Gaussian noise of this standard deviation to every pixel.
    #[arg(long)]
    noise: Option<f32>,
    /// Gradient steps on z.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Adam's step size on z.
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ProbeArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-2)]
    lr: f32,
    /// Also fine-tune: the encoder plus a new dense layer to the classes, trained end to end.
    #[arg(long)]
    finetune: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: UseArgs,
    /// K: importance samples per image.
    #[arg(long, default_value_t = 1000)]
    iw_samples: usize,
    /// Evaluate only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Score the test images binarized at random (for models trained with --binarize dynamic).
    #[arg(long)]
    binarized: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
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
    elbo::gpu::prefer_wide_cpu_vectors();
    let code = match run() {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<elbo::train::Interrupted>().is_some() => {
            eprintln!("{e}");
            130
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
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
                batches: b.batch_sizes.0,
                conv_batches: b.conv_batch_sizes.0,
                steps: b.steps.max(3),
                squares: b.squares.0,
                pytorch: b.pytorch,
                pytorch_device: b.pytorch_device,
                rounds: b.rounds as usize,
            };
            let report = elbo::bench::bench(&gpu, &opts, &|what| eprintln!("bench: {what}"))?;
            print!("{}", elbo::bench::format_bench(&report));
            if let Some(path) = &b.json {
                elbo::write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
                println!("wrote {}", path.display());
            }
        }
        Command::Sample(a) => {
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let path = elbo::infer::sample(&s, a.n.max(1), a.temperature, a.common.seed)?;
            println!("wrote {}", path.display());
        }
        Command::Reconstruct(a) => {
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let path = elbo::infer::reconstruct(&s, a.n)?;
            println!(
                "wrote {} (rows: test images, reconstructions from the posterior mean, from a sampled z)",
                path.display()
            );
        }
        Command::Manifold(a) => {
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let path = elbo::infer::manifold(&s, a.grid.max(2), (a.dims[0], a.dims[1]))?;
            println!("wrote {}", path.display());
        }
        Command::Traverse(a) => {
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let (path, dims) = elbo::infer::traverse(&s, a.index, a.top.max(1), a.steps.max(2))?;
            if !a.common.quiet {
                for (row, (j, kl)) in dims.iter().enumerate() {
                    println!("row {row}: z{j} (average KL {kl:.3} nats)");
                }
            }
            println!("wrote {}", path.display());
        }
        Command::Interpolate(a) => {
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let path = elbo::infer::interpolate(&s, a.from, a.to, a.steps.max(2))?;
            println!("wrote {}", path.display());
        }
        Command::Embed(a) => {
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let (csv, png) = elbo::infer::embed(&s, a.limit)?;
            println!("wrote {} and {}", csv.display(), png.display());
        }
        Command::Restore(a) => {
            use elbo::infer::Corruption;
            let corruption = match (&a.mask, &a.mask_kind, a.noise) {
                (Some(p), _, _) => Corruption::MaskFile(p.clone()),
                (_, _, Some(sigma)) => Corruption::Noise(sigma),
                (_, Some(kind), _) => kind.parse().map_err(|e: String| anyhow::anyhow!("--mask-kind: {e}"))?,
                _ => Corruption::Half,
            };
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let r = elbo::infer::restore(&s, a.n, &corruption, a.steps, a.lr, a.common.seed)?;
            let what =
                if matches!(corruption, Corruption::Noise(_)) { "all (noisy) values" } else { "the unknown values" };
            println!(
                "{} images, mean squared error on {what} ({}): MAP restoration {:.5}, encoder-only reconstruction {:.5}, mean image {:.5}, damaged input {:.5}",
                r.images, r.values, r.mse_restored, r.mse_encoder, r.mse_mean_image, r.mse_input
            );
            println!("wrote {} (columns: original, damaged, encoder only, restored)", r.path.display());
            if let Some(path) = &a.json {
                let json = serde_json::json!({"images": r.images, "values": r.values, "mse_restored": r.mse_restored,
                    "mse_encoder": r.mse_encoder, "mse_mean_image": r.mse_mean_image, "mse_input": r.mse_input});
                elbo::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
                println!("wrote {}", path.display());
            }
        }
        Command::Probe(a) => {
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let quiet = a.common.quiet;
            let r = elbo::infer::probe(&s, a.epochs.max(1), a.lr, a.common.seed, a.finetune, &|what| {
                if !quiet {
                    eprintln!("probe: {what}");
                }
            })?;
            println!(
                "softmax regression, {} training and {} test images: test accuracy {:.2}% on the posterior means ({} dims, loss {:.4}), {:.2}% on raw pixels ({} dims, loss {:.4})",
                r.train_images,
                r.test_images,
                100.0 * r.latent_accuracy,
                s.model.config.latent,
                r.latent_loss,
                100.0 * r.pixel_accuracy,
                s.model.config.pixels(),
                r.pixel_loss
            );
            if let Some((acc, loss)) = r.finetuned {
                println!(
                    "fine-tuned encoder with a new dense layer: test accuracy {:.2}% (loss {loss:.4})",
                    100.0 * acc
                );
            }
            if let Some(path) = &a.json {
                let json = serde_json::json!({"train_images": r.train_images, "test_images": r.test_images,
                    "latent_accuracy": r.latent_accuracy, "latent_loss": r.latent_loss,
                    "pixel_accuracy": r.pixel_accuracy, "pixel_loss": r.pixel_loss,
                    "finetuned_accuracy": r.finetuned.map(|f| f.0), "finetuned_loss": r.finetuned.map(|f| f.1)});
                elbo::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
                println!("wrote {}", path.display());
            }
        }
        Command::Eval(a) => {
            let s = elbo::infer::OpenModel::open(&a.common.options())?;
            let n = a.limit.unwrap_or(s.test.len).min(s.test.len) as u64;
            let bar = if a.common.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(n) };
            bar.set_style(
                indicatif::ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} images, eta {eta}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            let r =
                elbo::infer::eval(&s, a.iw_samples, a.limit, a.binarized, &|done, _| bar.set_position(done as u64))?;
            bar.finish_and_clear();
            let json = serde_json::json!({
                "images": r.images, "elbo": r.elbo, "recon": r.recon, "kl": r.kl,
                "iw_samples": r.iw_samples, "log_px": r.log_px, "bits_per_dim": r.bits_per_dim,
                "elbo_bits_per_dim": -r.elbo / (s.model.config.pixels() as f64 * std::f64::consts::LN_2),
            });
            println!(
                "{} test images: ELBO {:.3} nats (recon {:.3}, KL {:.3}); log p(x) >= {:.3} nats with K = {} ({:.4} bits/dim)",
                r.images, r.elbo, r.recon, r.kl, r.log_px, r.iw_samples, r.bits_per_dim
            );
            if let Some(path) = &a.json {
                elbo::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
                println!("wrote {}", path.display());
            }
        }
        Command::Profile(p) => {
            let gpu = elbo::gpu::Gpu::new(&p.adapter.choice())?;
            let opts = elbo::bench::ProfileOptions {
                arch: p.model,
                batch: p.batch_size,
                steps: p.steps,
                trace: p.trace,
                gemm: p.gemm,
            };
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
                epochs: t.epochs.unwrap_or(10),
                extend_to: t.epochs,
                batch_size: t.batch_size,
                hidden: t.hidden,
                conv_channels: [t.channels[0], t.channels[1]],
                latent_dim: t.latent_dim,
                lr: t.lr.unwrap_or(1e-3),
                lr_decay: t.lr_decay.unwrap_or(1.0),
                lr_decay_start: 1,
                lr_given: t.lr.is_some(),
                lr_decay_given: t.lr_decay.is_some(),
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
                json: t.json,
                adapter: t.adapter.choice(),
                gemm: t.gemm,
                resume: t.resume,
                checkpoint_every: t.checkpoint_every,
                stop_after_steps: None,
            };
            elbo::train::train(&opts)?;
        }
    }
    Ok(())
}
