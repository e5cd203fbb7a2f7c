//! `elbo bench` and `elbo profile`: kernel and training-step timings on the
//! chosen adapter, as tables and JSON that two machines can be compared by.
//! [`report`] prints and compares reports, [`pytorch`] times PyTorch beside
//! elbo, [`profile`] is `elbo profile`, [`table`] sums the profiler's events.

pub mod profile;
pub mod pytorch;
pub mod report;
pub mod table;

pub use profile::{profile_command, ProfileOptions};
pub use report::{compare, format_bench, read_report, UNSTEADY_SPREAD};

use pytorch::{pytorch_epoch, pytorch_step};

use crate::data::{load_mnist, mnist_dir, Dataset};
use crate::gpu::Gpu;
use crate::kernels::timing::{Event, Profiler, Tail};
use crate::kernels::{Bind, Dispatch, Kernels};
use crate::model::{Arch, Model, VaeConfig};
use crate::train::{Hyper, Trainer};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::time::Instant;

/// Median and the 10th and 90th percentiles.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// MNIST, for benchmarks: the shipped copy.
pub fn mnist() -> Result<(Dataset, Dataset)> {
    load_mnist(&mnist_dir(None))
}

/// The benchmarked models: the reference MLP VAE (784-400-20) and the
/// convolutional VAE (1 -> 32 -> 64 channels, 4x4 stride-2 convolutions, latent 16).
pub fn bench_config(arch: Arch, train: &Dataset) -> VaeConfig {
    match arch {
        Arch::Mlp => VaeConfig::mlp(train.width, train.height, 400, 20),
        Arch::Conv => VaeConfig {
            arch: Arch::Conv,
            hidden: 0,
            conv_channels: [32, 64],
            ..VaeConfig::mlp(train.width, train.height, 0, 16)
        },
    }
}

pub fn model_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Mlp => "mlp-vae 784-400-20",
        Arch::Conv => "conv-vae 32-64-16",
    }
}

/// A benchmark model's trainer at `batch` rows, its GEMMs timed on the adapter.
pub fn model_trainer<'g>(
    gpu: &'g Gpu,
    arch: Arch,
    train: &Dataset,
    test: &Dataset,
    batch: usize,
) -> Result<Trainer<'g>> {
    model_trainer_with(gpu, arch, train, test, batch, crate::kernels::gemm::GemmPreference::Auto)
}

/// model_trainer with the GEMM variants chosen by `gemm`.
pub fn model_trainer_with<'g>(
    gpu: &'g Gpu,
    arch: Arch,
    train: &Dataset,
    test: &Dataset,
    batch: usize,
    gemm: crate::kernels::gemm::GemmPreference,
) -> Result<Trainer<'g>> {
    let config = bench_config(arch, train);
    let hyper = Hyper { gemm, ..Hyper::new(1e-3, 1) };
    let t = Trainer::new(gpu, Model::init(&config, 1), hyper, batch, train, test)?;
    let order: Vec<u32> = (0..train.len as u32).collect();
    t.set_order(&order)?;
    Ok(t)
}

/// Profiles `steps` training steps after `warmup` untimed ones.
pub fn profile_steps(gpu: &Gpu, t: &mut Trainer, warmup: usize, steps: usize) -> Result<Vec<Vec<Event>>> {
    let batches = t.train_batches();
    for b in 0..warmup {
        t.train_step(b % batches);
    }
    t.wait()?;
    let profiler = Profiler::new(gpu, t.dispatches_per_step());
    let bytes = t.weight_copy_bytes() as f64;
    let mut runs = Vec::new();
    for s in 0..steps {
        t.begin_train_step(s % batches);
        let list: Vec<&Dispatch> = t.train_dispatches().iter().collect();
        let copy = |enc: &mut wgpu::CommandEncoder| t.copy_weights(enc);
        let tail = Tail { label: "copy weights to textures", bytes, encode: &copy };
        runs.push(profiler.run(gpu, &list, t.copies_weights_each_step().then_some(&tail))?);
    }
    Ok(runs)
}

/// Seconds for one epoch over `t`'s training images as `elbo train` runs it: the epoch's
/// shuffled order uploaded (`train::epoch_order` for `epoch`), every batch's step
/// submitted in turn (the batch gathered on the GPU from the dataset), the loss history
/// requested every 25 steps (`TrainOptions::log_every`) and polled after each step
/// without waiting, and one wait for the whole history at the end.
pub fn time_epoch(t: &mut Trainer, epoch: usize) -> Result<f64> {
    let batches = t.train_batches();
    let order = crate::train::epoch_order(1, epoch, t.train_len());
    t.set_order(&order)?;
    t.wait()?;
    let t0 = Instant::now();
    for b in 0..batches {
        t.train_step(b);
        if (b + 1) % 25 == 0 && b + 1 < batches {
            t.request_history(0, b + 1, Default::default());
        }
        t.poll_history()?;
    }
    t.cancel_history();
    t.read_history(batches)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Wall-clock milliseconds per training step, as training runs them: groups of
/// `group` steps submitted back to back, then one wait; one value per group.
pub fn time_steps(t: &mut Trainer, warmup: usize, groups: usize, group: usize) -> Result<Vec<f64>> {
    let batches = t.train_batches();
    for b in 0..warmup {
        t.train_step(b % batches);
    }
    t.wait()?;
    let mut ms = Vec::new();
    let mut s = 0;
    for _ in 0..groups {
        let t0 = Instant::now();
        for _ in 0..group {
            t.train_step(s % batches);
            s += 1;
        }
        t.wait()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3 / group as f64);
    }
    Ok(ms)
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub batches: Vec<usize>,
    /// Batch sizes of the convolutional VAE's step benchmark (slower: fewer, smaller).
    pub conv_batches: Vec<usize>,
    pub steps: usize,
    pub squares: Vec<usize>,
    pub pytorch: Option<String>,
    /// The torch device of PyTorch's step: "cpu" or "cuda".
    pub pytorch_device: String,
    /// Interleaved rounds of each comparison with PyTorch (`DEFAULT_ROUNDS`).
    pub rounds: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            batches: vec![32, 128, 512],
            conv_batches: vec![32, 128],
            steps: 30,
            squares: vec![256, 512, 1024],
            pytorch: None,
            pytorch_device: "cpu".into(),
            rounds: DEFAULT_ROUNDS,
        }
    }
}

fn adapter_json(gpu: &Gpu) -> Value {
    let i = &gpu.info;
    let mut a = json!({
        "name": i.name, "vendor": format!("0x{:04x}", i.vendor), "device": format!("0x{:04x}", i.device),
        "backend": format!("{:?}", i.backend), "device_type": format!("{:?}", i.device_type),
        "driver": i.driver, "driver_info": i.driver_info,
    });
    if let Some(n) = gpu.lavapipe_threads() {
        a["llvmpipe_threads"] = json!(n);
    }
    a["awake_threads"] = json!(gpu.spinners.map_or(0, |s| s.threads()));
    a
}

/// Per-kernel medians over profiled runs of `model`'s step: one entry per (label, shape).
fn kernel_entries(runs: &[Vec<Event>], model: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for e in runs.iter().flatten() {
        let key = (e.label.clone(), e.shape.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let durs: Vec<f64> =
            runs.iter().flatten().filter(|x| x.label == e.label && x.shape == e.shape).map(|x| x.dur_ns).collect();
        let (med, p10, p90) = spread(&durs);
        out.push(json!({
            "kernel": e.label, "model": model, "shape": e.shape, "median_us": med / 1e3, "p10_us": p10 / 1e3, "p90_us": p90 / 1e3,
            "gflops": e.flops / med.max(1.0), "gbps": e.bytes / med.max(1.0), "runs": durs.len(),
        }));
    }
    out
}

/// Rounds of elbo's and PyTorch's timings, interleaved, behind each reported ratio, unless
/// `--rounds` says otherwise (5: with 3, one burst of load on the shared machine moved
/// the median).
pub const DEFAULT_ROUNDS: usize = 5;

/// Dispatches beyond the first in `fixed_costs`' longer pass.
pub const FIXED_EXTRA: usize = 40;

/// What GPU work costs apart from the work, on this adapter, as medians of `runs`
/// repeats in microseconds: an empty submit and its wait; one `touch` dispatch (one
/// invocation adds 1 to a counter) encoded, submitted and waited for; and each further
/// dispatch in the same compute pass, from passes of 1 and 1 + FIXED_EXTRA dispatches.
/// Every touch reads and writes the same buffer, so each waits for the one before, as
/// a training step's kernels do. On lavapipe the last is llvmpipe handing each
/// dispatch to its worker threads and waiting for them (docs/PERFORMANCE.md, "Fixed costs").
pub fn fixed_costs(gpu: &Gpu, k: &Kernels, runs: usize) -> Result<Value> {
    let counter = gpu.buffer("touch counter", 16, wgpu::BufferUsages::empty())?;
    let touch = Dispatch::with_groups(gpu, "touch", &k.touch, &[(0, Bind::Buffer(&counter))], [1, 1, 1]);
    // microseconds for `n` touches in one pass (kernels::run_refs), or an empty submit
    let time = |dispatches: Option<usize>| -> Result<f64> {
        let t0 = Instant::now();
        match dispatches {
            Some(n) => crate::kernels::run_refs(gpu, &vec![&touch; n])?,
            None => {
                gpu.submit(gpu.device.create_command_encoder(&Default::default()).finish());
                gpu.wait()?;
            }
        }
        Ok(t0.elapsed().as_secs_f64() * 1e6)
    };
    for _ in 0..3 {
        time(Some(1))?;
        time(Some(1 + FIXED_EXTRA))?;
    }
    let (mut empty, mut one, mut each) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.max(3) {
        empty.push(time(None)?);
        let a = time(Some(1))?;
        let b = time(Some(1 + FIXED_EXTRA))?;
        one.push(a);
        each.push((b - a) / FIXED_EXTRA as f64);
    }
    let (each_us, each_p10, each_p90) = spread(&each);
    Ok(json!({
        "submit_wait_us": spread(&empty).0, "one_dispatch_us": spread(&one).0,
        "each_dispatch_us": each_us, "each_dispatch_p10_p90_us": [each_p10, each_p90],
        "runs": runs.max(3),
    }))
}

/// `elbo bench`: the adapter, kernel timings at the models' shapes (the MLP's and,
/// unless no conv batch is asked for, the convolutional VAE's) and on square GEMMs,
/// and whole training steps at several batch sizes.
pub fn bench(gpu: &Gpu, opts: &BenchOptions, progress: &dyn Fn(&str)) -> Result<Value> {
    for (what, sizes) in
        [("batch size", &opts.batches), ("conv batch size", &opts.conv_batches), ("square", &opts.squares)]
    {
        if sizes.contains(&0) {
            bail!("a bench {what} of 0: sizes must be at least 1");
        }
    }
    let (train, test) = mnist()?;
    let k = Kernels::new(gpu)?;
    progress("fixed costs of a submit and a dispatch");
    let fixed = fixed_costs(gpu, &k, opts.steps)?;
    // the batch-128 trainers serve the kernel profiles, the step timings at 128 and the
    // rounds against PyTorch (each trainer times its GEMM variants once, at start-up)
    progress("kernels of the MLP VAE step at batch 128");
    let mut mlp = model_trainer(gpu, Arch::Mlp, &train, &test, 128)?;
    let runs = profile_steps(gpu, &mut mlp, 5, opts.steps)?;
    let choice: Vec<Value> = mlp
        .gemm_choice()
        .decisions
        .iter()
        .map(|d| {
            let timings: serde_json::Map<String, Value> =
                d.timings.iter().map(|(v, us)| (v.name().to_string(), json!(us))).collect();
            json!({"kernel": d.pass.entry(), "m": d.shape.0, "n": d.shape.1, "k": d.shape.2,
                   "variant": d.variant.name(), "timings_us": timings})
        })
        .collect();
    let mut kernels = kernel_entries(&runs, model_name(Arch::Mlp));
    let mut conv = None;
    if !opts.conv_batches.is_empty() {
        progress("kernels of the convolutional VAE step at batch 128");
        let mut t = model_trainer(gpu, Arch::Conv, &train, &test, 128)?;
        let runs = profile_steps(gpu, &mut t, 2, (opts.steps / 4).max(3))?;
        kernels.extend(kernel_entries(&runs, model_name(Arch::Conv)));
        conv = Some(t);
    }
    for &n in &opts.squares {
        for v in crate::kernels::gemm::available(&k) {
            progress(&format!("square GEMM {n} ({})", v.name()));
            let runs = (opts.steps / 3).max(3);
            let times =
                crate::kernels::gemm::time_variant(gpu, &k, crate::kernels::gemm::Pass::Forward, v, n, n, n, runs)?;
            let (us, p10, p90) = spread(&times);
            let flops = 2.0 * (n as f64).powi(3);
            kernels.push(json!({
                "kernel": format!("gemm_forward ({})", v.name()), "shape": format!("m={n} n={n} k={n}"),
                "median_us": us, "p10_us": p10, "p90_us": p90, "gflops": flops / (us * 1e3),
                "gbps": 12.0 * (n * n) as f64 / (us * 1e3), "runs": runs,
            }));
        }
    }
    let mut steps = Vec::new();
    let runs_of = |arch: Arch| if arch == Arch::Conv { (opts.steps / 5).max(3) } else { opts.steps };
    for (arch, batches) in [(Arch::Mlp, &opts.batches), (Arch::Conv, &opts.conv_batches)] {
        for &b in batches {
            progress(&format!("{} training steps at batch {b}", model_name(arch)));
            let mut other;
            let t = match (arch, b, conv.as_mut()) {
                (Arch::Mlp, 128, _) => &mut mlp,
                (Arch::Conv, 128, Some(c)) => c,
                _ => {
                    other = model_trainer(gpu, arch, &train, &test, b)?;
                    &mut other
                }
            };
            let ms = time_steps(t, 2, runs_of(arch), if arch == Arch::Conv { 2 } else { 5 })?;
            let (med, p10, p90) = spread(&ms);
            steps.push(json!({
                "model": model_name(arch), "batch": b, "median_ms": med, "p10_ms": p10, "p90_ms": p90,
                "images_per_second": b as f64 / med * 1e3, "dispatches": t.dispatches_per_step(), "submits": 1,
            }));
        }
    }
    let mut report = json!({
        "adapter": adapter_json(gpu),
        "timing": Profiler::new(gpu, 1).timer.describe(),
        "fixed_costs": fixed,
        "kernels": kernels,
        "gemm_choice": choice,
        "steps": steps,
    });
    if let Some(py) = &opts.pytorch {
        let rounds_of_each = opts.rounds.max(1);
        // The ratio comes from interleaved rounds (elbo's steps, then PyTorch's), so that
        // both sides see the same load on a shared machine; its median is reported.
        let mut peers = Vec::new();
        for arch in [Arch::Mlp, Arch::Conv] {
            let t = match (arch, conv.as_mut()) {
                (Arch::Mlp, _) => &mut mlp,
                (Arch::Conv, Some(c)) => c,
                (Arch::Conv, None) => continue,
            };
            let mut rounds = Vec::new();
            let mut last = Value::Null;
            for round in 1..=rounds_of_each {
                progress(&format!(
                    "{} at batch 128 against PyTorch {}, round {round} of {rounds_of_each}",
                    model_name(arch),
                    opts.pytorch_device
                ));
                // 5 warm-up steps, as the PyTorch script takes before it times
                let (ours, _, _) = spread(&time_steps(t, 5, runs_of(arch), if arch == Arch::Conv { 2 } else { 5 })?);
                last = pytorch_step(py, &opts.pytorch_device, arch, 128)?;
                let theirs = last["median_ms"].as_f64().context("the PyTorch script gave no median_ms")?;
                rounds.push(json!({"elbo_ms": ours, "pytorch_ms": theirs, "elbo_over_pytorch": ours / theirs}));
            }
            let median_of = |key: &str| spread(&rounds.iter().map(|r| r[key].as_f64().unwrap()).collect::<Vec<_>>()).0;
            let mut p = last;
            p["median_ms"] = json!(median_of("pytorch_ms"));
            p["elbo_ms"] = json!(median_of("elbo_ms"));
            p["elbo_over_pytorch"] = json!(median_of("elbo_over_pytorch"));
            p["rounds"] = json!(rounds);
            peers.push(p);
        }
        report["pytorch"] = json!(peers);
        // whole epochs of the MLP VAE, data included: PyTorch with its usual DataLoader
        let mut rounds = Vec::new();
        for round in 1..=rounds_of_each {
            progress(&format!("an MLP VAE epoch against PyTorch's DataLoader, round {round} of {rounds_of_each}"));
            let ours = time_epoch(&mut mlp, round)?;
            match pytorch_epoch(py, &opts.pytorch_device) {
                Ok(theirs) => {
                    rounds.push(json!({"elbo_s": ours, "pytorch_s": theirs, "elbo_over_pytorch": ours / theirs}))
                }
                Err(e) => {
                    progress(&format!("no epoch comparison: {e:#}"));
                    break;
                }
            }
        }
        if !rounds.is_empty() {
            let median_of = |key: &str| spread(&rounds.iter().map(|r| r[key].as_f64().unwrap()).collect::<Vec<_>>()).0;
            report["pytorch_epoch"] = json!({
                "model": model_name(Arch::Mlp), "batch": 128, "loader": "torchvision DataLoader",
                "elbo_s": median_of("elbo_s"), "pytorch_s": median_of("pytorch_s"),
                "elbo_over_pytorch": median_of("elbo_over_pytorch"), "rounds": rounds,
            });
        }
    }
    Ok(report)
}
