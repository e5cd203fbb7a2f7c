use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use elbo::gpu::{AdapterChoice, Backend};
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
        AdapterChoice {
            backend: self.backend,
            name: self.adapter.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train the MLP VAE on MNIST.
    ///
    /// Example: elbo train --epochs 10 --out runs/mnist
    Train(TrainArgs),
    /// List the GPU adapters with their backend, type, driver, limits and features.
    Devices(AdapterArgs),
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// Folder with the four MNIST IDX files (gzipped or not) [default: data/mnist]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output folder [default: a new folder under runs/]
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Width of the hidden layers.
    #[arg(long, default_value_t = 400)]
    hidden: usize,
    /// Dimension of the latent code z.
    #[arg(long, default_value_t = 20)]
    latent_dim: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Weight of the KL term (1 = the ELBO).
    #[arg(long, default_value_t = 1.0)]
    beta: f32,
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
    /// Steps between loss read-backs (progress bar updates).
    #[arg(long, default_value_t = 25)]
    log_every: usize,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
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
        Command::Train(t) => {
            let opts = elbo::train::TrainOptions {
                data_dir: t.data_dir,
                out: t.out,
                epochs: t.epochs,
                batch_size: t.batch_size,
                hidden: t.hidden,
                latent_dim: t.latent_dim,
                lr: t.lr,
                beta: t.beta,
                seed: t.seed,
                binarize: t.binarize == Binarize::Dynamic,
                train_limit: t.train_limit,
                test_limit: t.test_limit,
                log_every: t.log_every,
                quiet: t.quiet,
                adapter: t.adapter.choice(),
            };
            elbo::train::train(&opts)?;
        }
    }
    Ok(())
}
