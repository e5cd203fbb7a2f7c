//! `elbo train`: the options resolved (a resumed run's from its checkpoint) and
//! checked, the data, model and trainer made, then the epochs (`epoch.rs`), each ending
//! with its metrics, image grids, model and atomic checkpoint.

use super::checkpoint::{self, Checkpoint};
use super::epoch::Run;
use super::options::{describe, load_training_data, DatasetChoice, Objective, TrainOptions};
use super::{Hyper, LossSums, Trainer};
use crate::data::{Dims, ImageSource, TrainSet};
use crate::gpu::Gpu;
use crate::model::{Arch, Model, ModelKind, SaveDtype, VaeConfig};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// Returned when Ctrl-C (or `stop_after_steps`) stopped a run after saving it.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

pub(crate) static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ctrl-C (and SIGTERM or SIGHUP, as a shutdown or a closed terminal sends them) finishes
/// the current step, saves a checkpoint and stops; a second one kills.
fn catch_ctrl_c() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: finishing this step and saving a checkpoint (interrupt again to quit at once)");
        });
    });
}

/// What an epoch measured.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    pub train: LossSums,
    pub test: LossSums,
    /// The validation set's sums (`--validation`).
    pub validation: Option<LossSums>,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// A new run's folder under runs/, named by the time it starts (UTC) and its model:
/// `runs/2026-12-07T05-30-12-mlp-vae` (`-2`, `-3`, ... after it where that is taken).
fn new_run_dir(opts: &TrainOptions) -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let arch = match opts.arch {
        Arch::Mlp => "mlp",
        Arch::Conv => "conv",
    };
    let kind = match (opts.kind, opts.objective) {
        (ModelKind::Ae, _) => "ae",
        (_, Objective::Iwae) => "iwae",
        _ => "vae",
    };
    let base = format!("runs/{}-{arch}-{kind}", utc_stamp(secs));
    let mut dir = PathBuf::from(&base);
    let mut i = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{base}-{i}"));
        i += 1;
    }
    dir
}

/// Seconds since 1970 as `YYYY-MM-DDTHH-MM-SS` (UTC; dashes for colons, which some
/// file systems refuse): the civil date from the day count by the Gregorian calendar's
/// 400-year cycle of 146,097 days.
pub fn utc_stamp(secs: u64) -> String {
    let (days, rest) = ((secs / 86400) as i64, secs % 86400);
    // days since 0000-03-01: March first, so that the leap day ends each year
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Trains as `elbo train` does: resumes from `given.resume`'s checkpoint where set, and
/// after every epoch writes the metrics, pictures, model and checkpoint. Returns what
/// each epoch of this process measured.
pub fn train(given: &TrainOptions) -> Result<Vec<EpochReport>> {
    // a resumed run takes its options from the checkpoint, its output folder from --resume
    let resumed = match &given.resume {
        Some(dir) => Some(Checkpoint::load(&dir.join(checkpoint::FILE))?),
        None => None,
    };
    // a new run takes --preset's values for the options not given beside it; a resumed
    // one has them in its checkpoint
    let (owned, preset_line) = match &resumed {
        Some(ck) => (TrainOptions::resumed(&ck.options, given, ck.epoch + 1)?, None),
        None => given.with_preset()?,
    };
    let opts = &owned;
    catch_ctrl_c();
    INTERRUPTED.store(false, std::sync::atomic::Ordering::SeqCst);
    check_options(opts)?;
    let gpu = Gpu::new(&opts.adapter)?;
    // a size asked for is checked before any image is resized to it
    if let (DatasetChoice::Folder(_), Some((width, height))) = (&opts.dataset, opts.image_size) {
        let config = model_config(opts, Dims { width, height, channels: opts.channels_in, len: 1 })?;
        let lim = crate::model::fit::DeviceLimits::of(&gpu.limits);
        crate::model::fit::check_fits(&config, opts.batch_size, opts.samples(), &lim)
            .with_context(|| format!("--image-size {width}x{height}"))?;
    }
    let (train_set, test_set, validation, from) = load_training_data(opts)?;
    if opts.early_stop.is_some() && validation.is_none() {
        bail!("--early-stop watches the validation loss: give --validation N (images) or a fraction, e.g. --validation 0.1");
    }
    // the validation images go on the device after the test set's, in one buffer
    let eval_set = match &validation {
        Some(v) => crate::data::concat(&test_set, v),
        None => test_set.clone(),
    };
    let dims = train_set.dims();
    // a model the data cannot take is an error before anything is written
    let config = model_config(opts, dims)?;
    check_fits(&gpu, opts, &config, &eval_set)?;
    let out = opts.out.clone().unwrap_or_else(|| new_run_dir(opts));
    if resumed.is_none() && !opts.overwrite {
        if let Some(file) = RUN_FILES.iter().find(|f| out.join(f).exists()) {
            bail!(
                "{} holds a run (its {file}); continue it with --resume {0}, replace it with --overwrite, or give another --out",
                out.display()
            );
        }
    }
    let created = !out.exists();
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create output folder {}", out.display()))?;
    // one process a run folder: a second stops here (the OS drops the lock when this one ends)
    let _lock = RunLock { file: lock_run(&out)?, dir: out.clone(), created };
    // files half-written by a process that died here (this one holds the folder now)
    remove_stale_temporaries(&out);
    let quiet = opts.quiet || opts.json;
    let say = |s: String| {
        if !quiet {
            println!("{s}");
        }
    };
    if let Some(line) = preset_line {
        say(line);
    }
    if config.kind == ModelKind::Ae && !quiet {
        eprintln!("note: an autoencoder's samples.png decodes draws from N(0, I), which nothing fits its codes to: expect them to look less like the data than a VAE's");
    }
    say(format!("adapter: {}", gpu.adapter_line()));
    if opts.batch_size > dims.len && !opts.quiet {
        eprintln!(
            "warning: --batch-size {} is larger than the {} training images: each epoch is one step of {} images",
            opts.batch_size, dims.len, dims.len
        );
    }
    let held = validation.as_ref().map(|v| format!(", {} validation", v.len)).unwrap_or_default();
    say(format!(
        "data: {} training{held} and {} test images of {}x{}x{} from {}",
        dims.len, test_set.len, dims.width, dims.height, dims.channels, from
    ));
    crate::kernels::choice::RETIME.store(opts.retime, std::sync::atomic::Ordering::Relaxed);
    let (warmed_before, built) = (crate::kernels::warm::warmed_so_far(), std::time::Instant::now());
    let mut trainer = new_trainer(&gpu, opts, &config, resumed.as_ref(), (&train_set, &eval_set))?;
    let warmed = crate::kernels::warm::warmed_so_far() - warmed_before;
    trainer.set_validation_len(validation.as_ref().map_or(0, |v| v.len));
    // what rounding the saved weights costs is measured on the test set at the end
    let cost_set = (opts.save_dtype != SaveDtype::F32).then(|| test_set.clone());
    drop((test_set, validation, eval_set));
    if let Some(ck) = &resumed {
        say(format!("resuming after epoch {} step {} ({} steps done)", ck.epoch, ck.step, ck.state.steps_done));
    }
    if let Some(shard) = trainer.shard_images() {
        let mib = (shard * dims.image_len()) as f64 / 1048576.0;
        let kept = match &train_set {
            TrainSet::Cached(_) => "read from the image cache as each shard is needed",
            TrainSet::Memory(_) => "held in memory",
        };
        say(format!(
            "training set: {:.1} MiB, more than the device holds at once: streamed in shards of {shard} images ({mib:.1} MiB), {kept}",
            dims.bytes() as f64 / 1048576.0
        ));
    }
    // the device (or, streamed, the trainer's own reader) holds the training images now
    drop(train_set);
    let choice = trainer.gemm_choice();
    if !choice.decisions.is_empty() {
        say(format!("GEMM kernels for this adapter:\n  {}", choice.describe().replace('\n', "\n  ")));
        match (&choice.cache, choice.timed_now) {
            (Some(file), 0) => {
                say(format!("  (as this machine chose them before: {}; --retime times them again)", file.display()))
            }
            (Some(file), n) => say(format!("  ({n} timed now, kept in {} for the next runs)", file.display())),
            (None, _) => {}
        }
    }
    if warmed > 0 {
        say(format!(
            "kernels: {warmed} compiled in parallel, a thread a core ({:.1} s to build the model in all); Mesa's shader cache keeps them for the next runs",
            built.elapsed().as_secs_f64()
        ));
    }
    say(format!(
        "model: {}; {} dispatches and 1 submit per step; writing to {}",
        describe(&config),
        trainer.dispatches_per_step(),
        out.display(),
    ));
    let metrics_path = out.join("metrics.jsonl");
    // a new run's metrics are opened (and an old run's replaced) when its first epoch ends
    let metrics = match &resumed {
        Some(ck) => Some(open_metrics(&metrics_path, Some(ck.epoch))?),
        None => None,
    };
    let best = if resumed.is_some() { best_validation(&metrics_path) } else { None };
    let mut run = Run {
        opts,
        // the reported loss: -ELBO for a VAE (KL weight 1), the reconstruction term for an autoencoder
        kl_weight: if config.kind == ModelKind::Ae { 0.0 } else { 1.0 },
        prior: (0..64 * config.latent).map(|i| crate::rng::rand_normal(opts.seed as u32, 2, 0, i as u32)).collect(),
        config,
        trainer,
        out,
        metrics,
        metrics_path,
        quiet,
        steps_this_process: 0,
        best,
        events: None,
        resumed: resumed.is_some(),
    };
    let (first_epoch, first_step, first_partial) = match &resumed {
        Some(ck) => (ck.epoch + 1, ck.step, ck.partial),
        None => (1, 0, LossSums::default()),
    };
    let mut reports = Vec::new();
    for epoch in first_epoch..=opts.epochs {
        let (start, base) = if epoch == first_epoch { (first_step, first_partial) } else { (0, LossSums::default()) };
        reports.push(run.epoch(epoch, start, base)?);
        if run.patience_spent(epoch) {
            break;
        }
    }
    if let (Some(test), Some(last)) = (&cost_set, reports.last()) {
        let model = run.trainer.model()?.clone();
        let (exact, rounded) = rounding_cost(&gpu, opts, &model, run.trainer.gemm_choice(), test, last.test.iwae)?;
        say(format!(
            "model.safetensors holds {} weights (half the size of f32): test loss {rounded:.4} against {exact:.4} with the f32 weights ({:+.4}), z drawn alike",
            opts.save_dtype.name(),
            rounded - exact
        ));
    }
    let best = if run.best.is_some() { ", best.safetensors" } else { "" };
    say(format!(
        "wrote {}/{{metrics.jsonl, loss.png, model.safetensors{best}, checkpoint.safetensors, samples.png, reconstructions.png, events.out.tfevents.*}}",
        run.out.display()
    ));
    Ok(reports)
}

/// The test loss of `model` (its objective, as training reports it) with f32 weights and
/// with them rounded to `--save-dtype`, over the same draws of z.
fn rounding_cost(
    gpu: &Gpu,
    opts: &TrainOptions,
    model: &Model,
    gemm: &crate::kernels::gemm::Choice,
    test: &crate::data::Dataset,
    iwae: bool,
) -> Result<(f64, f64)> {
    let o = crate::step::ForwardOptions {
        batch: opts.batch_size.min(test.len).max(1),
        samples: if iwae { 1 } else { opts.samples() },
        binarize: opts.binarize,
        seed: opts.seed as u32,
    };
    let beta = if model.config.kind == ModelKind::Ae { 0.0 } else { opts.beta as f64 };
    let loss = |m: Model| -> Result<f64> {
        let mut net = crate::step::Net::forward_only(gpu, m, o, gemm.clone(), test)?;
        net.beta = beta as f32;
        Ok(net.evaluate()?.loss(beta))
    };
    Ok((loss(model.clone())?, loss(model.rounded(opts.save_dtype))?))
}

/// The options' values that no model could train with.
fn check_options(opts: &TrainOptions) -> Result<()> {
    if opts.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if !matches!(opts.dataset, DatasetChoice::Folder(_)) {
        let shape = if opts.dataset == DatasetChoice::Mnist { "28x28" } else { "25x25" };
        for (id, flag) in [("channels_in", "--channels-in"), ("image_size", "--image-size")] {
            if opts.given(id) {
                bail!("{flag} applies to a folder of images (--dataset DIR); {} is {shape} greyscale as shipped: drop {flag}", opts.dataset);
            }
        }
    }
    if opts.latent_dim == 0 || opts.mc_samples == 0 || opts.k == Some(0) {
        bail!("--latent-dim, --mc-samples and --k must be at least 1");
    }
    match opts.objective {
        Objective::Elbo if opts.k.is_some() => {
            bail!("--k is the importance-weighted bound's draws per image: give --objective iwae with it (the ELBO averages --mc-samples draws)")
        }
        Objective::Iwae if opts.mc_samples != 1 => {
            bail!("--objective iwae draws --k samples per image; drop --mc-samples (it averages the ELBO's draws)")
        }
        _ => {}
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        bail!("--lr must be a positive number, got {}", opts.lr);
    }
    if !(opts.adam_eps > 0.0 && opts.adam_eps.is_finite()) {
        bail!("--adam-eps must be a positive number, got {}", opts.adam_eps);
    }
    if !(opts.lr_decay > 0.0 && opts.lr_decay <= 1.0) {
        bail!("--lr-decay must be in (0, 1] (a factor applied after every epoch), got {}", opts.lr_decay);
    }
    for (flag, v) in
        [("--beta", opts.beta as f64), ("--free-bits", opts.free_bits as f64), ("--kl-warmup", opts.kl_warmup)]
    {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{flag} must be a number of at least 0, got {v}");
        }
    }
    Ok(())
}

/// The model and the test set (which stays on the device) against the adapter's limits:
/// errors that name the flags to change, before anything is written.
fn check_fits(gpu: &Gpu, opts: &TrainOptions, config: &VaeConfig, test: &crate::data::Dataset) -> Result<()> {
    let lim = crate::model::fit::DeviceLimits::of(&gpu.limits);
    crate::model::fit::check_fits(config, opts.batch_size, opts.samples(), &lim)?;
    let bytes = test.pixels.len() as u64;
    if bytes > lim.buffer_bytes {
        let most = lim.buffer_bytes / test.image_len().max(1) as u64;
        bail!(
            "the test set's {} images take {:.1} MiB, and one buffer on this adapter may hold {:.1} MiB; use --test-limit {most} or a smaller --test-fraction",
            test.len,
            bytes as f64 / 1048576.0,
            lim.buffer_bytes as f64 / 1048576.0
        );
    }
    Ok(())
}

/// The model the options describe, for images of `data`'s shape.
fn model_config(opts: &TrainOptions, data: Dims) -> Result<VaeConfig> {
    let config = VaeConfig {
        arch: opts.arch,
        kind: opts.kind,
        likelihood: opts.likelihood,
        width: data.width,
        height: data.height,
        channels: data.channels,
        hidden: match (&opts.hidden, opts.arch) {
            (Some(w), _) => w.0.clone(),
            (None, Arch::Mlp) => vec![400],
            (None, Arch::Conv) => Vec::new(),
        },
        decoder_hidden: opts.decoder_hidden.as_ref().map(|w| w.0.clone()),
        conv_channels: opts.conv_channels.clone(),
        latent: opts.latent_dim,
        activation: opts.activation,
    };
    config.check()?;
    Ok(config)
}

/// A trainer for a new model, or for the checkpoint's state, with a spinner while the
/// kernels compile and the GEMM variants are timed.
fn new_trainer<'g>(
    gpu: &'g Gpu,
    opts: &TrainOptions,
    config: &VaeConfig,
    resumed: Option<&Checkpoint>,
    (train_set, test_set): (&dyn ImageSource, &crate::data::Dataset),
) -> Result<Trainer<'g>> {
    let model = Model::init(config, opts.seed);
    if let Some(ck) = resumed {
        if ck.state.params.len() != model.layout.len {
            bail!("the checkpoint's model ({} parameters) does not match the options it was saved with ({}); the checkpoint is damaged", ck.state.params.len(), model.layout.len);
        }
    }
    let hyper = Hyper {
        lr: opts.lr,
        beta: if opts.kl_warmup > 0.0 { 0.0 } else { opts.beta },
        seed: opts.seed as u32,
        binarize: opts.binarize,
        gemm: opts.gemm,
        samples: opts.samples(),
        iwae: opts.objective == Objective::Iwae,
        free_bits: opts.free_bits,
        gemm_fixed: resumed.map(|ck| ck.gemm.clone()),
        fuse_adam: true,
        data_limit: opts.data_limit_mib.map(|mib| (mib * 1048576.0) as u64),
        adam_eps: opts.adam_eps,
    };
    // kernels compile here (seconds on lavapipe the first time: Mesa caches them on disk
    // after) and each layer's GEMM variants are timed
    let quiet = opts.quiet || opts.json;
    let spin = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    spin.set_message("building the kernels and timing each layer's GEMM variants");
    spin.enable_steady_tick(std::time::Duration::from_millis(120));
    let trainer = Trainer::new(gpu, model, hyper, opts.batch_size, train_set, test_set);
    spin.finish_and_clear();
    let mut trainer = trainer?;
    if let Some(ck) = resumed {
        trainer.restore_state(&ck.state)?;
    }
    Ok(trainer)
}

/// The files that make a folder a run's.
const RUN_FILES: [&str; 3] = ["checkpoint.safetensors", "model.safetensors", "metrics.jsonl"];

/// Removes the temporary files `crate::write_atomic` leaves when its process dies between
/// writing and renaming (`.<name>.tmp-<pid>`).
fn remove_stale_temporaries(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A run folder's lock, held while the run goes on. A folder this run created and left
/// holding nothing but the lock (a run that failed before writing) is removed with it.
struct RunLock {
    #[allow(dead_code)]
    file: std::fs::File,
    dir: PathBuf,
    created: bool,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let only_lock = std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().all(|e| e.file_name() == ".lock"))
            .unwrap_or(false);
        if self.created && only_lock {
            let _ = std::fs::remove_file(self.dir.join(".lock"));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// The run folder `dir` locked for this process (an advisory lock on `dir/.lock`, which
/// holds the pid), or an error naming the process that holds it.
fn lock_run(dir: &std::path::Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        bail!(
            "{} is in use by another elbo process (pid {}); wait for it to finish or give another --out",
            dir.display(),
            pid.trim()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// The lowest val_loss in the metrics at `path` and its epoch (a resumed run's best so far).
fn best_validation(path: &std::path::Path) -> Option<(f64, usize)> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["val_loss"].as_f64()?, v["epoch"].as_u64()? as usize)))
        .filter(|(loss, _)| loss.is_finite())
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// metrics.jsonl opened for appending; a resumed run keeps the lines of the epochs its
/// checkpoint finished (up to `kept_epochs`), a new run starts it empty.
pub(crate) fn open_metrics(path: &std::path::Path, kept_epochs: Option<usize>) -> Result<std::fs::File> {
    let kept: String = match kept_epochs {
        Some(last) => std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["epoch"].as_u64())
                    .is_some_and(|e| e as usize <= last)
            })
            .map(|l| format!("{l}\n"))
            .collect(),
        None => String::new(),
    };
    crate::write_atomic(path, kept.as_bytes())?;
    std::fs::OpenOptions::new().append(true).open(path).with_context(|| format!("cannot open {}", path.display()))
}
