//! `elbo bench` and `elbo profile`: kernel and training-step timings on the
//! chosen adapter, as tables and JSON that two machines can be compared by.
//! [`report`] is the report's typed form, printed and compared, [`pytorch`]
//! times PyTorch beside elbo, [`profile`] is `elbo profile`, [`table`] sums the
//! profiler's events.

pub mod models;
pub mod profile;
pub mod pytorch;
pub mod report;
pub mod table;

pub use models::BenchModel;
pub use profile::{profile_command, ProfileOptions};
pub use pytorch::{time_epoch, EpochRound, PytorchEpoch, PytorchStep, StepRound};
pub use report::{
    compare, format_bench, read_report, Adapter, FixedCosts, GemmDecision, KernelEntry, Report, StepEntry,
    UNSTEADY_SPREAD,
};

use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::kernels::timing::{Event, Profiler, Tail};
use crate::kernels::{Bind, Dispatch, Kernels};
use crate::model::Model;
use crate::train::{Hyper, Trainer};
use anyhow::{bail, Result};
use std::time::Instant;

/// Median and the 10th and 90th percentiles.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// A benchmark model's trainer at `batch` rows, its GEMMs timed on the adapter.
pub fn model_trainer<'g>(
    gpu: &'g Gpu,
    model: BenchModel,
    train: &Dataset,
    test: &Dataset,
    batch: usize,
) -> Result<Trainer<'g>> {
    model_trainer_with(gpu, model, train, test, batch, crate::kernels::gemm::GemmPreference::Auto)
}

/// model_trainer with the GEMM variants chosen by `gemm`.
pub fn model_trainer_with<'g>(
    gpu: &'g Gpu,
    model: BenchModel,
    train: &Dataset,
    test: &Dataset,
    batch: usize,
    gemm: crate::kernels::gemm::GemmPreference,
) -> Result<Trainer<'g>> {
    let config = model.config(train);
    let hyper = Hyper { gemm, ..Hyper::new(1e-3, 1) };
    let mut t = Trainer::new(gpu, Model::init(&config, 1), hyper, batch, train, test)?;
    let order: Vec<u32> = (0..train.len as u32).collect();
    t.set_order(&order)?;
    Ok(t)
}

/// Profiles `steps` training steps after `warmup` untimed ones.
pub fn profile_steps(gpu: &Gpu, t: &mut Trainer, warmup: usize, steps: usize) -> Result<Vec<Vec<Event>>> {
    let batches = t.train_batches();
    for b in 0..warmup {
        t.train_step(b % batches)?;
    }
    t.wait()?;
    let profiler = Profiler::new(gpu, t.dispatches_per_step());
    let bytes = t.weight_copy_bytes() as f64;
    let mut runs = Vec::new();
    for s in 0..steps {
        t.begin_train_step(s % batches)?;
        let list: Vec<&Dispatch> = t.train_dispatches().iter().collect();
        let copy = |enc: &mut wgpu::CommandEncoder| t.copy_weights(enc);
        let tail = Tail { label: "copy weights to textures", bytes, encode: &copy };
        runs.push(profiler.run(gpu, &list, t.copies_weights_each_step().then_some(&tail))?);
    }
    Ok(runs)
}

/// Wall-clock milliseconds per training step, as training runs them: groups of
/// `group` steps submitted back to back, then one wait; one value per group.
pub fn time_steps(t: &mut Trainer, warmup: usize, groups: usize, group: usize) -> Result<Vec<f64>> {
    let batches = t.train_batches();
    for b in 0..warmup {
        t.train_step(b % batches)?;
    }
    t.wait()?;
    let mut ms = Vec::new();
    let mut s = 0;
    for _ in 0..groups {
        let t0 = Instant::now();
        for _ in 0..group {
            t.train_step(s % batches)?;
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
    /// Batch sizes of the 64x64 RGB convolutional VAE's step benchmark.
    pub rgb64_batches: Vec<usize>,
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
            rgb64_batches: vec![64],
            steps: 30,
            squares: vec![256, 512, 1024],
            pytorch: None,
            pytorch_device: "cpu".into(),
            rounds: DEFAULT_ROUNDS,
        }
    }
}

/// Per-kernel medians over profiled runs of `model`'s step: one entry per (label, shape).
fn kernel_entries(runs: &[Vec<Event>], model: &str) -> Vec<KernelEntry> {
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
        out.push(KernelEntry {
            gbps: e.bytes / med.max(1.0),
            gflops: e.flops / med.max(1.0),
            kernel: e.label.clone(),
            median_us: med / 1e3,
            model: Some(model.into()),
            p10_us: p10 / 1e3,
            p90_us: p90 / 1e3,
            runs: durs.len(),
            shape: e.shape.clone(),
        });
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
pub fn fixed_costs(gpu: &Gpu, k: &Kernels, runs: usize) -> Result<FixedCosts> {
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
    Ok(FixedCosts {
        each_dispatch_p10_p90_us: [each_p10, each_p90],
        each_dispatch_us: each_us,
        one_dispatch_us: spread(&one).0,
        runs: runs.max(3),
        submit_wait_us: spread(&empty).0,
    })
}

impl BenchOptions {
    /// The batch sizes of `model`'s step benchmark (none: the model is left out).
    pub fn batches_of(&self, model: BenchModel) -> &[usize] {
        match model {
            BenchModel::Mlp => &self.batches,
            BenchModel::Conv => &self.conv_batches,
            BenchModel::Rgb64 => &self.rgb64_batches,
        }
    }
}

/// The benchmarked models' trainers at their peer batch (`BenchModel::peer_batch`), with
/// their data: they serve the kernel profiles, the step timings at that batch and the
/// rounds against PyTorch, so that each times its GEMM variants once, at start-up. The
/// MLP VAE's is always there (its GEMM choice heads the report).
struct BenchTrainers<'g> {
    models: Vec<(BenchModel, Trainer<'g>, (Dataset, Dataset))>,
}

impl<'g> BenchTrainers<'g> {
    /// `model`'s peer-batch trainer and data, if the bench made one.
    fn get(&mut self, model: BenchModel) -> Option<(&mut Trainer<'g>, &(Dataset, Dataset))> {
        self.models.iter_mut().find(|(m, _, _)| *m == model).map(|(_, t, d)| (t, &*d))
    }

    fn mlp(&self) -> &Trainer<'g> {
        &self.models.iter().find(|(m, _, _)| *m == BenchModel::Mlp).expect("the MLP VAE is always benchmarked").1
    }
}

/// `elbo bench`: the adapter, kernel timings at the models' shapes (the MLP's and,
/// unless no conv batch is asked for, the convolutional VAE's) and on square GEMMs,
/// and whole training steps at several batch sizes.
pub fn bench(gpu: &Gpu, opts: &BenchOptions, progress: &dyn Fn(&str)) -> Result<Report> {
    for (what, sizes) in [
        ("batch size", &opts.batches),
        ("conv batch size", &opts.conv_batches),
        ("rgb64 batch size", &opts.rgb64_batches),
        ("square", &opts.squares),
    ] {
        if sizes.contains(&0) {
            bail!("a bench {what} of 0: sizes must be at least 1");
        }
    }
    let k = Kernels::of(gpu)?;
    progress("fixed costs of a submit and a dispatch");
    let fixed = fixed_costs(gpu, k, opts.steps)?;
    let (mut trainers, mut kernels) = model_kernels(gpu, opts, progress)?;
    kernels.extend(square_gemms(gpu, k, opts, progress)?);
    let steps = step_timings(gpu, opts, &mut trainers, progress)?;
    let mut report = Report {
        adapter: Adapter::of(gpu),
        fixed_costs: Some(fixed),
        gemm_choice: trainers.mlp().gemm_choice().decisions.iter().map(GemmDecision::of).collect(),
        kernels,
        pytorch: Vec::new(),
        pytorch_epoch: None,
        steps,
        timing: Profiler::new(gpu, 1).timer.describe().into(),
    };
    if let Some(python) = &opts.pytorch {
        report.pytorch = pytorch::step_comparisons(python, opts, &mut trainers, progress)?;
        let (mlp, _) = trainers.get(BenchModel::Mlp).expect("the MLP VAE is always benchmarked");
        report.pytorch_epoch = pytorch::epoch_comparison(python, opts, mlp, progress)?;
    }
    Ok(report)
}

/// The peer-batch trainers, and the kernels of their steps profiled: the MLP VAE's and
/// each other model's that a batch size is asked for.
fn model_kernels<'g>(
    gpu: &'g Gpu,
    opts: &BenchOptions,
    progress: &dyn Fn(&str),
) -> Result<(BenchTrainers<'g>, Vec<KernelEntry>)> {
    let mut models = Vec::new();
    let mut kernels = Vec::new();
    for model in BenchModel::ALL {
        if model != BenchModel::Mlp && opts.batches_of(model).is_empty() {
            continue;
        }
        let batch = model.peer_batch();
        progress(&format!("kernels of the {} step at batch {batch}", model.name()));
        let data = model.data()?;
        let mut t = model_trainer(gpu, model, &data.0, &data.1, batch)?;
        let (groups, _) = model.step_groups(opts.steps);
        let runs = profile_steps(gpu, &mut t, 2, if model == BenchModel::Mlp { opts.steps } else { groups })?;
        kernels.extend(kernel_entries(&runs, model.name()));
        models.push((model, t, data));
    }
    Ok((BenchTrainers { models }, kernels))
}

/// Each GEMM variant's forward pass on square matrices of each size in `opts.squares`,
/// to set the adapter's GEMM throughput beside the models' small shapes.
fn square_gemms(gpu: &Gpu, k: &Kernels, opts: &BenchOptions, progress: &dyn Fn(&str)) -> Result<Vec<KernelEntry>> {
    use crate::kernels::gemm;
    let mut kernels = Vec::new();
    for &n in &opts.squares {
        for v in gemm::available(k) {
            progress(&format!("square GEMM {n} ({})", v.name()));
            let runs = (opts.steps / 3).max(3);
            let (us, p10, p90) = spread(&gemm::time_variant(gpu, k, gemm::Pass::Forward, v, n, n, n, runs)?);
            kernels.push(KernelEntry {
                gbps: 12.0 * (n * n) as f64 / (us * 1e3),
                gflops: 2.0 * (n as f64).powi(3) / (us * 1e3),
                kernel: format!("gemm_forward ({})", v.name()),
                median_us: us,
                model: None,
                p10_us: p10,
                p90_us: p90,
                runs,
                shape: format!("m={n} n={n} k={n}"),
            });
        }
    }
    Ok(kernels)
}

/// Whole training steps of each model at each of its batch sizes, timed as training
/// runs them; at the peer batch on the trainers already made.
fn step_timings<'g>(
    gpu: &'g Gpu,
    opts: &BenchOptions,
    trainers: &mut BenchTrainers<'g>,
    progress: &dyn Fn(&str),
) -> Result<Vec<StepEntry>> {
    let mut steps = Vec::new();
    for model in BenchModel::ALL {
        for &b in opts.batches_of(model) {
            progress(&format!("{} training steps at batch {b}", model.name()));
            let Some((peer, (train, test))) = trainers.get(model) else { continue };
            let mut other;
            let t = if b == model.peer_batch() {
                peer
            } else {
                other = model_trainer(gpu, model, train, test, b)?;
                &mut other
            };
            let (groups, group) = model.step_groups(opts.steps);
            let (med, p10, p90) = spread(&time_steps(t, 2, groups, group)?);
            steps.push(StepEntry {
                batch: b,
                dispatches: t.dispatches_per_step(),
                images_per_second: b as f64 / med * 1e3,
                median_ms: med,
                model: model.name().into(),
                p10_ms: p10,
                p90_ms: p90,
                submits: 1,
            });
        }
    }
    Ok(steps)
}
