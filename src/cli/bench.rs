//! `elbo devices`, `elbo bench` and `elbo profile`: their flags and what they print.

use anyhow::Result;
use clap::Args;
use elbo::gpu::AdapterChoice;
use std::path::PathBuf;

/// A comma-separated list of sizes, each at least 1, or `none`.
#[derive(Clone, Debug)]
pub struct Sizes(Vec<usize>);

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
pub struct BenchArgs {
    #[command(flatten)]
    adapter: AdapterChoice,
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
    /// Batch sizes of the 64x64 RGB convolutional VAE's training-step benchmark (none: skip it).
    #[arg(long, default_value = "64", value_parser = sizes)]
    rgb64_batch_sizes: Sizes,
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
pub struct ProfileArgs {
    #[command(flatten)]
    adapter: AdapterChoice,
    /// Training steps to profile (after 5 untimed warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// The model: the reference MLP VAE, the convolutional VAE on MNIST, or the 64x64 RGB
    /// one (`elbo bench`'s models).
    #[arg(long, value_enum, default_value = "mlp")]
    model: elbo::bench::BenchModel,
    /// Write a Chrome trace (chrome://tracing, ui.perfetto.dev) of the profiled steps.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// GEMM kernels: timed on this adapter (auto) or forced, to profile one variant.
    #[arg(long, value_enum, default_value = "auto")]
    gemm: elbo::kernels::gemm::GemmPreference,
}

pub fn devices(a: AdapterChoice) -> Result<()> {
    let adapters = elbo::gpu::list_adapters(a.backend);
    if adapters.is_empty() {
        anyhow::bail!("{}", elbo::gpu::NO_ADAPTER_HINT);
    }
    for (i, adapter) in adapters.iter().enumerate() {
        println!("[{i}] {}", elbo::gpu::describe_adapter(adapter));
    }
    match elbo::kernels::choice::choice_cache_file() {
        Some(f) => println!("GEMM choices kept in {} (train --retime times them again)", f.display()),
        None => println!("GEMM choices are kept nowhere: set ELBO_CACHE_DIR to keep them across runs"),
    }
    Ok(())
}

pub fn bench(b: BenchArgs) -> Result<()> {
    if let Some(files) = &b.compare {
        let (a, c) = (elbo::bench::read_report(&files[0])?, elbo::bench::read_report(&files[1])?);
        print!("{}", elbo::bench::compare(&a, &c));
        return Ok(());
    }
    let gpu = elbo::gpu::Gpu::new(&b.adapter.clone())?;
    let opts = elbo::bench::BenchOptions {
        batches: b.batch_sizes.0,
        conv_batches: b.conv_batch_sizes.0,
        rgb64_batches: b.rgb64_batch_sizes.0,
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
    Ok(())
}

pub fn profile(p: ProfileArgs) -> Result<()> {
    let gpu = elbo::gpu::Gpu::new(&p.adapter.clone())?;
    let opts = elbo::bench::ProfileOptions {
        model: p.model,
        batch: p.batch_size,
        steps: p.steps,
        trace: p.trace,
        gemm: p.gemm,
    };
    print!("{}", elbo::bench::profile_command(&gpu, &opts)?);
    Ok(())
}
