//! One training run under way: each epoch's steps with their checkpoints, stops and
//! progress, then the epoch's evaluation and outputs.

use super::checkpoint::{self, Checkpoint};
use super::options::{epoch_order, TrainOptions};
use super::run::{EpochReport, Interrupted, INTERRUPTED};
use super::{LossSums, Trainer};
use crate::model::{ModelKind, VaeConfig};
use crate::plot::grid::{save_grid, Grid, Png};
use crate::plot::tensorboard::EventFile;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// One training run under way.
pub(crate) struct Run<'o, 'g> {
    pub opts: &'o TrainOptions,
    pub config: VaeConfig,
    pub trainer: Trainer<'g>,
    pub out: PathBuf,
    /// metrics.jsonl, opened for appending; None until a new run's first epoch ends.
    pub metrics: Option<std::fs::File>,
    pub metrics_path: PathBuf,
    /// z of the samples drawn after every epoch.
    pub prior: Vec<f32>,
    /// The KL's weight in the reported loss.
    pub kl_weight: f64,
    pub quiet: bool,
    pub steps_this_process: u32,
    /// The lowest validation loss so far and its epoch (`--validation`).
    pub best: Option<(f64, usize)>,
    /// This process's TensorBoard event file, made at its first event (`events`).
    pub events: Option<EventFile>,
    /// Whether the run goes on from a checkpoint (whose event files stay beside ours).
    pub resumed: bool,
}

impl Run<'_, '_> {
    fn say(&self, s: String) {
        if !self.quiet {
            println!("{s}");
        }
    }

    /// The event file, made now if this is the process's first event. A new run's
    /// first event removes the event files an older run in its folder left
    /// (`--overwrite`), as its first metrics replace theirs; a resumed run adds a file.
    fn events(&mut self) -> Result<&mut EventFile> {
        if self.events.is_none() {
            if !self.resumed {
                for e in std::fs::read_dir(&self.out)?.flatten() {
                    if e.file_name().to_string_lossy().starts_with("events.out.tfevents.") {
                        std::fs::remove_file(e.path())
                            .with_context(|| format!("cannot remove the old run's {}", e.path().display()))?;
                    }
                }
            }
            self.events = Some(EventFile::create(&self.out)?);
        }
        Ok(self.events.as_mut().expect("made above"))
    }

    fn save_checkpoint(&self, epoch: usize, step: usize, partial: LossSums) -> Result<()> {
        let ck = Checkpoint {
            options: serde_json::to_value(self.opts)?,
            epoch,
            step,
            partial,
            state: self.trainer.state()?,
            gemm: self.trainer.gemm_choice().clone(),
        };
        ck.save(&self.out.join(checkpoint::FILE))
    }

    /// Epoch `epoch` from step `start` (a resumed epoch's, with the loss sums `base` of
    /// the steps before it), then its evaluation and outputs.
    pub fn epoch(&mut self, epoch: usize, start: usize, base: LossSums) -> Result<EpochReport> {
        let (opts, steps) = (self.opts, self.trainer.train_batches());
        self.trainer.set_order(&epoch_order(opts.seed, epoch, self.trainer.train_len()))?;
        self.trainer.set_lr(opts.lr_at(epoch));
        let bar = if self.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(steps as u64) };
        bar.set_style(
            indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{}", opts.epochs));
        let t0 = Instant::now();
        bar.set_position(start as u64);
        if opts.kl_warmup > 0.0 && start > 0 {
            self.trainer.set_beta(self.warm(epoch, start - 1));
        }
        for b in start..steps {
            self.step(epoch, b, (start, base), &bar, t0)?;
        }
        self.trainer.wait()?;
        let seconds = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let train = self.trainer.read_history_from(start, steps, base)?;
        let test = self.trainer.evaluate()?;
        let validation =
            if self.trainer.validation_len() > 0 { Some(self.trainer.evaluate_validation()?) } else { None };
        let images_per_second = (train.images - base.images) / opts.samples() as f64 / seconds;
        let report = EpochReport { epoch, train, test, validation, seconds, images_per_second };
        self.write_epoch(&report)?;
        Ok(report)
    }

    /// Whether --early-stop's patience ran out after epoch `last`: that many epochs since
    /// the best validation loss.
    pub fn patience_spent(&self, last: usize) -> bool {
        let (Some(patience), Some((_, best))) = (self.opts.early_stop, self.best) else { return false };
        if last >= best + patience {
            self.say(format!(
                "early stop: no better validation loss in the {patience} epochs since epoch {best}; best.safetensors holds that epoch's model"
            ));
            return true;
        }
        false
    }

    /// The KL weight of step b of `epoch` during a warm-up.
    fn warm(&self, epoch: usize, b: usize) -> f32 {
        let (opts, steps) = (self.opts, self.trainer.train_batches());
        opts.beta * (((epoch - 1) * steps + b + 1) as f64 / (opts.kl_warmup * steps as f64)).min(1.0) as f32
    }

    /// Training step `b`, with the checkpoints and stops it is due, and the loss shown
    /// every `log_every` steps (read without draining the GPU's queue: it shows once
    /// the GPU gets there) and at the epoch's end (waiting).
    fn step(
        &mut self,
        epoch: usize,
        b: usize,
        (start, base): (usize, LossSums),
        bar: &indicatif::ProgressBar,
        t0: Instant,
    ) -> Result<()> {
        let (opts, steps) = (self.opts, self.trainer.train_batches());
        if opts.kl_warmup > 0.0 {
            self.trainer.set_beta(self.warm(epoch, b));
        }
        self.trainer.train_step(b)?;
        self.steps_this_process += 1;
        let stop = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
            || opts.stop_after_steps.is_some_and(|n| self.steps_this_process >= n);
        let due = opts.checkpoint_every > 0
            && (self.trainer.steps_done() as usize).is_multiple_of(opts.checkpoint_every)
            && b + 1 < steps;
        if stop || due {
            self.trainer.wait()?;
            let sums = self.trainer.read_history_from(start, b + 1, base)?;
            if sums.loss(self.kl_weight).is_finite() {
                self.save_checkpoint(epoch - 1, b + 1, sums)?;
            }
            if stop {
                bar.abandon();
                let out = self.out.display();
                let text = format!(
                    "stopped after step {} of epoch {epoch}; the checkpoint is in {out}. Continue with: elbo train --resume {out}",
                    b + 1
                );
                return Err(Interrupted(text).into());
            }
        }
        let last = b + 1 == steps;
        if (b + 1).is_multiple_of(opts.log_every.max(1)) && !last {
            self.trainer.request_history(start, b + 1, base);
        }
        let read = if last {
            self.trainer.cancel_history();
            Some((b + 1, self.trainer.read_history_from(start, b + 1, base)?))
        } else {
            self.trainer.poll_history()?
        };
        if let Some((n, sums)) = read {
            let loss = sums.loss(self.kl_weight);
            if !loss.is_finite() {
                bar.abandon();
                bail!(
                    "the loss became {loss} by step {n} of epoch {epoch}; lower --lr (now {}) or the KL weight --beta (now {}), or add --kl-warmup. {}",
                    self.trainer.hyper().lr,
                    opts.beta,
                    if epoch > 1 {
                        format!("{} keeps the metrics, model and checkpoint of epoch {}", self.out.display(), epoch - 1)
                    } else {
                        "No epoch had finished, so nothing was saved".to_string()
                    }
                );
            }
            let rate = (sums.images - base.images) / opts.samples() as f64 / t0.elapsed().as_secs_f64();
            bar.set_message(format!("loss {loss:.2} {rate:.0} img/s"));
            bar.set_position(n as u64);
            // the epoch's running means so far, at the run's step count
            if !last {
                let step = ((epoch - 1) * steps + n) as u64;
                let values = [
                    ("train/loss", loss),
                    ("train/recon", sums.recon_per_image()),
                    ("train/kl", sums.kl_per_image() * self.kl_weight),
                    ("train/images_per_second", rate),
                ];
                self.events()?.scalars(step, &values)?;
            }
        }
        Ok(())
    }

    /// After every epoch: its metrics line, the pictures, the model, the loss curves
    /// and the checkpoint, then a line on the terminal.
    fn write_epoch(&mut self, r: &EpochReport) -> Result<()> {
        let (opts, kl_weight, epoch) = (self.opts, self.kl_weight, r.epoch);
        if self.metrics.is_none() {
            // a new run's first output: what an older run in this folder (--overwrite) wrote
            // goes now, its best model with it
            let _ = std::fs::remove_file(self.out.join("best.safetensors"));
            self.metrics = Some(super::run::open_metrics(&self.metrics_path, None)?);
        }
        // the model of the best validation loss, before the metrics that make it the best
        // (a run stopped in between redoes this epoch)
        let val_loss = r.validation.map(|v| v.loss(kl_weight));
        if let Some(loss) = val_loss.filter(|l| l.is_finite()) {
            if self.best.is_none_or(|(best, _)| loss < best) {
                let extra = std::collections::HashMap::from([
                    ("epoch".to_string(), epoch.to_string()),
                    ("val_loss".to_string(), format!("{loss:.4}")),
                    ("seed".to_string(), opts.seed.to_string()),
                ]);
                self.trainer.save_model_as(&self.out.join("best.safetensors"), extra, opts.save_dtype)?;
                self.best = Some((loss, epoch));
            }
        }
        let mut line = serde_json::json!({
            "epoch": epoch,
            "train_loss": r.train.loss(kl_weight),
            "train_recon": r.train.recon_per_image(),
            "train_kl": r.train.kl_per_image() * kl_weight,
            "test_loss": r.test.loss(kl_weight),
            "test_recon": r.test.recon_per_image(),
            "test_kl": r.test.kl_per_image() * kl_weight,
            "kl_weight": if self.config.kind == ModelKind::Ae { 0.0 } else { self.trainer.hyper().beta },
            "lr": self.trainer.hyper().lr,
            "epoch_seconds": r.seconds,
            "images_per_second": r.images_per_second,
            "steps": self.trainer.steps_done(),
        });
        if opts.objective == super::Objective::Iwae {
            // the bound's loss above; its draws' ELBO (sampled KL) beside it
            line["objective"] = "iwae".into();
            line["k"] = opts.samples().into();
            line["train_elbo_loss"] = ((r.train.recon + kl_weight * r.train.kl) / r.train.images.max(1.0)).into();
            line["test_elbo_loss"] = ((r.test.recon + kl_weight * r.test.kl) / r.test.images.max(1.0)).into();
        } else {
            line["objective"] = "elbo".into();
        }
        if let Some(v) = &r.validation {
            line["val_loss"] = v.loss(kl_weight).into();
            line["val_recon"] = v.recon_per_image().into();
            line["val_kl"] = (v.kl_per_image() * kl_weight).into();
        }
        if opts.json {
            println!("{line}");
        }
        let metrics = self.metrics.as_mut().expect("opened above");
        writeln!(metrics, "{line}")
            .and_then(|_| metrics.flush())
            .with_context(|| format!("cannot write {}", self.metrics_path.display()))?;
        let (samples, recons) = self.save_pictures()?;
        let step = (epoch * self.trainer.train_batches()) as u64;
        let mut values = vec![
            ("train/loss", r.train.loss(kl_weight)),
            ("train/recon", r.train.recon_per_image()),
            ("train/kl", r.train.kl_per_image() * kl_weight),
            ("test/loss", r.test.loss(kl_weight)),
            ("test/recon", r.test.recon_per_image()),
            ("test/kl", r.test.kl_per_image() * kl_weight),
            ("lr", self.trainer.hyper().lr as f64),
            ("train/images_per_second", r.images_per_second),
            ("epoch", epoch as f64),
        ];
        if let Some(v) = &r.validation {
            values.push(("validation/loss", v.loss(kl_weight)));
        }
        let events = self.events()?;
        events.scalars(step, &values)?;
        events.image(step, "samples", &samples)?;
        events.image(step, "reconstructions", &recons)?;
        let extra = std::collections::HashMap::from([
            ("epoch".to_string(), epoch.to_string()),
            ("test_loss".to_string(), format!("{:.4}", r.test.loss(kl_weight))),
            ("seed".to_string(), opts.seed.to_string()),
        ]);
        self.trainer.save_model_as(&self.out.join("model.safetensors"), extra, opts.save_dtype)?;
        crate::plot::loss_curves(&self.metrics_path, &self.out.join("loss.png"))?;
        self.save_checkpoint(epoch, 0, LossSums::default())?;
        let moving = opts.lr_decay < 1.0 || opts.lr_decay_start > 1 || opts.lr_schedule != super::LrSchedule::Exp;
        let lr = if moving { format!("  lr {:.3e}", self.trainer.hyper().lr) } else { String::new() };
        let val = match (val_loss, self.best) {
            (Some(v), Some((_, best))) => format!("  val {v:.2}{}", if best == epoch { " (best)" } else { "" }),
            (Some(v), None) => format!("  val {v:.2}"),
            _ => String::new(),
        };
        self.say(format!(
            "epoch {epoch:>3}/{}  train {:.2}{val}  test {:.2} (recon {:.2} + kl {:.2})  {:.1} s  {:.0} img/s{lr}",
            opts.epochs,
            r.train.loss(kl_weight),
            r.test.loss(kl_weight),
            r.test.recon_per_image(),
            r.test.kl_per_image() * kl_weight,
            r.seconds,
            r.images_per_second
        ));
        Ok(())
    }

    /// samples.png (64 draws from the prior) and reconstructions.png (test images above
    /// their reconstructions from the posterior mean); their PNGs, for TensorBoard.
    fn save_pictures(&mut self) -> Result<(Png, Png)> {
        let c = &self.config;
        let d = c.pixels();
        // all 64, in as many calls as the batch's rows take
        let mut drawn = Vec::with_capacity(self.prior.len() / c.latent * d);
        for z in self.prior.chunks(self.trainer.rows() * c.latent) {
            drawn.extend(self.trainer.decode(z)?);
        }
        let tiles: Vec<&[f32]> = drawn.chunks(d).collect();
        let samples = save_grid(&self.out.join("samples.png"), &tiles, &Grid::of(c, 8))?;
        let (x, recon) = self.trainer.reconstruct_first_batch()?;
        let n = (x.len() / d).min(32);
        // originals above their reconstructions; a short last row is padded with blank tiles
        fn cell(v: &[f32], i: usize, n: usize, d: usize) -> &[f32] {
            if i < n {
                &v[i * d..(i + 1) * d]
            } else {
                &[]
            }
        }
        let mut tiles: Vec<&[f32]> = Vec::new();
        for row in 0..n.div_ceil(8) {
            tiles.extend((row * 8..row * 8 + 8).map(|i| cell(&x, i, n, d)));
            tiles.extend((row * 8..row * 8 + 8).map(|i| cell(&recon, i, n, d)));
        }
        let recons = save_grid(&self.out.join("reconstructions.png"), &tiles, &Grid::of(&self.config, 8))?;
        Ok((samples, recons))
    }
}
