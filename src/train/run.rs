//! `elbo train`: the epoch loop around the Trainer, with progress, metrics,
//! image grids and atomic checkpoints.

use super::options::{describe, epoch_order, load_dataset, TrainOptions};
use super::{Hyper, LossSums, Trainer};
use crate::gpu::Gpu;
use crate::model::{Arch, Model, ModelKind, VaeConfig};
use crate::plot::grid::save_grid;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Returned when Ctrl-C (or `stop_after_steps`) stopped a run after saving it.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ctrl-C finishes the current step, saves a checkpoint and stops (a second Ctrl-C kills).
fn catch_ctrl_c() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)");
        });
    });
}

/// What an epoch measured.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    pub train: LossSums,
    pub test: LossSums,
    pub seconds: f64,
    pub images_per_second: f64,
}

fn new_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut dir = PathBuf::from(format!("runs/vae-{secs}"));
    let mut i = 1;
    while dir.exists() {
        dir = PathBuf::from(format!("runs/vae-{secs}-{i}"));
        i += 1;
    }
    dir
}

pub fn train(given: &TrainOptions) -> Result<Vec<EpochReport>> {
    // a resumed run takes its options from the checkpoint, its output folder from --resume
    let resumed = match &given.resume {
        Some(dir) => Some(crate::train::checkpoint::Checkpoint::load(&dir.join(crate::train::checkpoint::FILE))?),
        None => None,
    };
    let owned;
    let opts = match &resumed {
        Some(ck) => {
            let saved = TrainOptions::from_json(&ck.options, given)?;
            // an epoch count beyond the saved one extends the run
            let epochs = given.extend_to.map_or(saved.epochs, |e| e.max(saved.epochs));
            let mut o = TrainOptions { out: given.resume.clone(), epochs, ..saved };
            // a learning rate or decay given with --resume restarts the schedule at the resumed epoch
            if given.lr_given || given.lr_decay_given {
                o.lr = if given.lr_given { given.lr } else { o.lr_at(ck.epoch + 1) };
                if given.lr_decay_given {
                    o.lr_decay = given.lr_decay;
                }
                o.lr_decay_start = ck.epoch + 1;
            }
            owned = o;
            &owned
        }
        None => given,
    };
    catch_ctrl_c();
    INTERRUPTED.store(false, std::sync::atomic::Ordering::SeqCst);
    if opts.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if opts.latent_dim == 0 || opts.mc_samples == 0 {
        bail!("--latent-dim and --mc-samples must be at least 1");
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        bail!("--lr must be a positive number, got {}", opts.lr);
    }
    if !(opts.lr_decay > 0.0 && opts.lr_decay <= 1.0) {
        bail!("--lr-decay must be in (0, 1] (a factor applied after every epoch), got {}", opts.lr_decay);
    }
    if !(opts.beta >= 0.0 && opts.free_bits >= 0.0 && opts.kl_warmup >= 0.0) {
        bail!("--beta, --free-bits and --kl-warmup must not be negative");
    }
    let (train_set, test_set, from) = load_dataset(opts)?;
    let gpu = Gpu::new(&opts.adapter)?;
    let out = opts.out.clone().unwrap_or_else(new_run_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create output folder {}", out.display()))?;
    let quiet = opts.quiet || opts.json;
    let say = |s: String| {
        if !quiet {
            println!("{s}");
        }
    };
    say(format!("adapter: {}", gpu.adapter_line()));
    say(format!(
        "data: {} training and {} test images of {}x{}x{} from {}",
        train_set.len, test_set.len, train_set.width, train_set.height, train_set.channels, from
    ));

    let config = VaeConfig {
        arch: opts.arch,
        kind: opts.kind,
        likelihood: opts.likelihood,
        width: train_set.width,
        height: train_set.height,
        channels: train_set.channels,
        hidden: opts.hidden.unwrap_or(match opts.arch {
            Arch::Mlp => 400,
            Arch::Conv => 0,
        }),
        conv_channels: opts.conv_channels,
        latent: opts.latent_dim,
    };
    config.check()?;
    let model = Model::init(&config, opts.seed);
    if let Some(ck) = &resumed {
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
        samples: opts.mc_samples,
        free_bits: opts.free_bits,
        gemm_fixed: resumed.as_ref().map(|ck| ck.gemm.clone()),
        fuse_adam: true,
    };
    // kernels compile here (seconds on lavapipe the first time: Mesa caches them on disk
    // after) and each layer's GEMM variants are timed
    let spin = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    spin.set_message("building the kernels and timing each layer's GEMM variants");
    spin.enable_steady_tick(std::time::Duration::from_millis(120));
    let trainer = Trainer::new(&gpu, model, hyper, opts.batch_size, &train_set, &test_set);
    spin.finish_and_clear();
    let mut trainer = trainer?;
    if let Some(ck) = &resumed {
        trainer.restore_state(&ck.state)?;
        say(format!("resuming after epoch {} step {} ({} steps done)", ck.epoch, ck.step, ck.state.steps_done));
    }
    if !trainer.gemm_choice.decisions.is_empty() {
        say(format!("GEMM kernels for this adapter:\n  {}", trainer.gemm_choice.describe().replace('\n', "\n  ")));
    }
    say(format!(
        "model: {}; {} dispatches and 1 submit per step; writing to {}",
        describe(&config),
        trainer.dispatches_per_step(),
        out.display(),
    ));

    let metrics_path = out.join("metrics.jsonl");
    // a resumed run keeps the metrics of the epochs its checkpoint finished
    let kept: String = match &resumed {
        Some(ck) => std::fs::read_to_string(&metrics_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["epoch"].as_u64())
                    .is_some_and(|e| e as usize <= ck.epoch)
            })
            .map(|l| format!("{l}\n"))
            .collect(),
        None => String::new(),
    };
    crate::write_atomic(&metrics_path, kept.as_bytes())?;
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("cannot open {}", metrics_path.display()))?;
    let checkpoint_path = out.join(crate::train::checkpoint::FILE);
    let save_checkpoint = |trainer: &Trainer, epoch: usize, step: usize, partial: LossSums| -> Result<()> {
        let ck = crate::train::checkpoint::Checkpoint {
            options: opts.to_json(),
            epoch,
            step,
            partial,
            state: trainer.state()?,
            gemm: trainer.gemm_choice.clone(),
        };
        ck.save(&checkpoint_path)
    };
    let steps = trainer.batches(train_set.len);
    let (first_epoch, first_step, first_partial) = match &resumed {
        Some(ck) => (ck.epoch + 1, ck.step, ck.partial),
        None => (1, 0, LossSums::default()),
    };
    let mut steps_this_process = 0u32;
    let prior: Vec<f32> =
        (0..64 * config.latent).map(|i| crate::rng::rand_normal(opts.seed as u32, 2, 0, i as u32)).collect();
    let mut reports = Vec::new();
    // the reported loss: -ELBO for a VAE (KL weight 1), the reconstruction term for an autoencoder
    let kl_weight = if config.kind == ModelKind::Ae { 0.0 } else { 1.0 };
    let samples = opts.mc_samples as f64;

    for epoch in first_epoch..=opts.epochs {
        let order = epoch_order(opts.seed, epoch, train_set.len);
        trainer.set_order(&order)?;
        trainer.hyper.lr = opts.lr_at(epoch);
        let (start, base) = if epoch == first_epoch { (first_step, first_partial) } else { (0, LossSums::default()) };
        let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(steps as u64) };
        bar.set_style(
            indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{}", opts.epochs));
        let t0 = Instant::now();
        bar.set_position(start as u64);
        // the KL weight of step b of this epoch during a warm-up
        let warm = |b: usize| {
            opts.beta * (((epoch - 1) * steps + b + 1) as f64 / (opts.kl_warmup * steps as f64)).min(1.0) as f32
        };
        if opts.kl_warmup > 0.0 && start > 0 {
            trainer.hyper.beta = warm(start - 1);
        }
        for b in start..steps {
            if opts.kl_warmup > 0.0 {
                trainer.hyper.beta = warm(b);
            }
            trainer.train_step(b);
            steps_this_process += 1;
            let stop = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
                || opts.stop_after_steps.is_some_and(|n| steps_this_process >= n);
            if stop
                || (opts.checkpoint_every > 0
                    && (trainer.steps_done as usize).is_multiple_of(opts.checkpoint_every)
                    && b + 1 < steps)
            {
                trainer.wait()?;
                let sums = trainer.read_history_from(start, b + 1, base)?;
                if sums.loss(kl_weight).is_finite() {
                    save_checkpoint(&trainer, epoch - 1, b + 1, sums)?;
                }
                if stop {
                    bar.abandon();
                    return Err(Interrupted(format!(
                        "stopped after step {} of epoch {epoch}; the checkpoint is in {}. Continue with: elbo train --resume {}",
                        b + 1,
                        out.display(),
                        out.display()
                    ))
                    .into());
                }
            }
            // the loss every log_every steps, read without draining the GPU's queue (the
            // read shows once the GPU gets there), and at the epoch's end, waiting
            let last = b + 1 == steps;
            if (b + 1) % opts.log_every.max(1) == 0 && !last {
                trainer.request_history(start, b + 1, base);
            }
            let read = if last {
                trainer.cancel_history();
                Some((b + 1, trainer.read_history_from(start, b + 1, base)?))
            } else {
                trainer.poll_history()?
            };
            if let Some((n, sums)) = read {
                let loss = sums.loss(kl_weight);
                if !loss.is_finite() {
                    bar.abandon();
                    bail!(
                        "the loss became {loss} by step {n} of epoch {epoch}; lower --lr (now {}) or the KL weight --beta (now {}), or add --kl-warmup. {}",
                        trainer.hyper.lr,
                        opts.beta,
                        if epoch > 1 {
                            format!("{} keeps the metrics, model and checkpoint of epoch {}", out.display(), epoch - 1)
                        } else {
                            "No epoch had finished, so nothing was saved".to_string()
                        }
                    );
                }
                let rate = (sums.images - base.images) / samples / t0.elapsed().as_secs_f64();
                bar.set_message(format!("loss {loss:.2} {rate:.0} img/s"));
                bar.set_position(n as u64);
            }
        }
        trainer.wait()?;
        let seconds = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let train_sums = trainer.read_history_from(start, steps, base)?;
        let test_sums = trainer.evaluate()?;
        let report = EpochReport {
            epoch,
            train: train_sums,
            test: test_sums,
            seconds,
            images_per_second: (train_sums.images - base.images) / samples / seconds,
        };
        let line = serde_json::json!({
            "epoch": epoch,
            "train_loss": train_sums.loss(kl_weight),
            "train_recon": train_sums.recon_per_image(),
            "train_kl": train_sums.kl_per_image() * kl_weight,
            "test_loss": test_sums.loss(kl_weight),
            "test_recon": test_sums.recon_per_image(),
            "test_kl": test_sums.kl_per_image() * kl_weight,
            "kl_weight": if config.kind == ModelKind::Ae { 0.0 } else { trainer.hyper.beta },
            "lr": trainer.hyper.lr,
            "epoch_seconds": seconds,
            "images_per_second": report.images_per_second,
            "steps": trainer.steps_done,
        });
        if opts.json {
            println!("{line}");
        }
        writeln!(metrics, "{line}")
            .and_then(|_| metrics.flush())
            .with_context(|| format!("cannot write {}", metrics_path.display()))?;

        // pictures and weights after every epoch
        let d = config.pixels();
        let (w, h, ch) = (config.width, config.height, config.channels);
        let scale = (112 / w.max(h)).clamp(2, 8);
        let most = trainer.rows() * config.latent;
        let drawn = trainer.decode(&prior[..prior.len().min(most)])?;
        let tiles: Vec<&[f32]> = drawn.chunks(d).collect();
        save_grid(&out.join("samples.png"), &tiles, w, h, ch, 8, scale)?;
        let (x, recon) = trainer.reconstruct_first_batch()?;
        let n = (x.len() / d).min(32);
        let mut tiles: Vec<&[f32]> = Vec::new();
        for row in 0..n.div_ceil(8) {
            // originals above their reconstructions; a short last row is padded with blank tiles
            fn cell(v: &[f32], i: usize, n: usize, d: usize) -> &[f32] {
                if i < n {
                    &v[i * d..(i + 1) * d]
                } else {
                    &[]
                }
            }
            tiles.extend((row * 8..row * 8 + 8).map(|i| cell(&x, i, n, d)));
            tiles.extend((row * 8..row * 8 + 8).map(|i| cell(&recon, i, n, d)));
        }
        save_grid(&out.join("reconstructions.png"), &tiles, w, h, ch, 8, scale)?;
        trainer.sync_model()?;
        let extra = std::collections::HashMap::from([
            ("epoch".to_string(), epoch.to_string()),
            ("test_loss".to_string(), format!("{:.4}", test_sums.loss(kl_weight))),
            ("seed".to_string(), opts.seed.to_string()),
            // the GEMM variants timed for this model, which inference reuses untimed
            ("gemm".to_string(), trainer.gemm_choice.to_json().to_string()),
        ]);
        trainer.model.save(&out.join("model.safetensors"), &extra)?;
        crate::plot::loss_curves(&metrics_path, &out.join("loss.png"))?;
        save_checkpoint(&trainer, epoch, 0, LossSums::default())?;
        say(format!(
            "epoch {epoch:>3}/{}  train {:.2}  test {:.2} (recon {:.2} + kl {:.2})  {:.1} s  {:.0} img/s",
            opts.epochs,
            train_sums.loss(kl_weight),
            test_sums.loss(kl_weight),
            test_sums.recon_per_image(),
            test_sums.kl_per_image() * kl_weight,
            seconds,
            report.images_per_second
        ) + &if opts.lr_decay < 1.0 || opts.lr_decay_start > 1 {
            format!("  lr {:.3e}", trainer.hyper.lr)
        } else {
            String::new()
        });
        reports.push(report);
    }
    say(format!(
        "wrote {}/{{metrics.jsonl, loss.png, model.safetensors, checkpoint.safetensors, samples.png, reconstructions.png}}",
        out.display()
    ));
    Ok(reports)
}
