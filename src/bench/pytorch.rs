//! PyTorch's step and epoch of the same models, timed by tools/pytorch_vae.py
//! in the Python the user names, in rounds interleaved with elbo's, and their
//! lines in the bench report.

use super::{spread, time_steps, BenchModel, BenchOptions, BenchTrainers, UNSTEADY_SPREAD};
use crate::data::mnist_dir;
use crate::train::Trainer;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Instant;

/// One model's step in PyTorch beside elbo's, at batch 128: what the PyTorch script
/// answered, with the medians of the interleaved rounds in place of its single timing.
/// Fields in alphabetical order, as report.rs says why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PytorchStep {
    pub batch: usize,
    /// elbo's median step over the rounds; absent from reports made before rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elbo_ms: Option<f64>,
    /// The median of the rounds' ratios (absent from the script's answer).
    #[serde(default)]
    pub elbo_over_pytorch: f64,
    /// PyTorch's median step over the rounds (the script's own in its answer).
    pub median_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p10_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<f64>,
    /// Absent from reports made before rounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<StepRound>,
    /// PyTorch's version and device, as the script describes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Whatever else the script answers, kept so that the report holds all of it.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One round of a step comparison: elbo's median step, then PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRound {
    #[serde(default)]
    pub elbo_ms: f64,
    pub elbo_over_pytorch: f64,
    #[serde(default)]
    pub pytorch_ms: f64,
}

/// Whole MLP VAE epochs, data included, against PyTorch with its usual DataLoader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PytorchEpoch {
    pub batch: usize,
    pub elbo_over_pytorch: f64,
    pub elbo_s: f64,
    /// How PyTorch loads the data ("torchvision DataLoader").
    pub loader: String,
    pub model: String,
    pub pytorch_s: f64,
    pub rounds: Vec<EpochRound>,
}

/// One round of the epoch comparison: an epoch of elbo's, then one of PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRound {
    pub elbo_over_pytorch: f64,
    #[serde(default)]
    pub elbo_s: f64,
    #[serde(default)]
    pub pytorch_s: f64,
}

impl PytorchStep {
    /// The comparison's line in `format_bench`.
    pub fn summary(&self) -> String {
        format!(
            "\n{} ({}): {:.2} ms per step at batch {}, elbo {:.2} ms in the same rounds; elbo / PyTorch = {:.2}x {}",
            self.system.as_deref().unwrap_or("PyTorch"),
            self.model.as_deref().unwrap_or("?"),
            self.median_ms,
            self.batch,
            self.elbo_ms.unwrap_or(f64::NAN),
            self.elbo_over_pytorch,
            rounds_note(&self.rounds.iter().map(|r| r.elbo_over_pytorch).collect::<Vec<_>>())
        )
    }
}

impl PytorchEpoch {
    /// The comparison's line in `format_bench`.
    pub fn summary(&self) -> String {
        format!(
            "\nPyTorch with its {} ({}): {:.2} s an epoch at batch {}, elbo {:.2} s in the same rounds; elbo / PyTorch = {:.2}x {}",
            self.loader,
            self.model,
            self.pytorch_s,
            self.batch,
            self.elbo_s,
            self.elbo_over_pytorch,
            rounds_note(&self.rounds.iter().map(|r| r.elbo_over_pytorch).collect::<Vec<_>>())
        )
    }
}

/// What stands behind a comparison's ratio: its rounds, each round's ratio, and a note
/// where they spread past `UNSTEADY_SPREAD`.
fn rounds_note(ratios: &[f64]) -> String {
    let per_round: Vec<String> = ratios.iter().map(|x| format!("{x:.2}")).collect();
    format!("(median of {} interleaved rounds: {}){}", per_round.len(), per_round.join(", "), unsteady_rounds(ratios))
}

/// The note after a comparison whose rounds' ratios spread past `UNSTEADY_SPREAD`.
fn unsteady_rounds(rounds: &[f64]) -> String {
    let (lo, hi) = rounds.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if rounds.len() > 1 && hi > UNSTEADY_SPREAD * lo {
        format!(
            "\n  unsteady: the rounds range from {lo:.2}x to {hi:.2}x (the largest more than {UNSTEADY_SPREAD} times \
             the smallest): something else was using the machine; rerun for a firmer ratio"
        )
    } else {
        String::new()
    }
}

/// Each model's batch-128 step against PyTorch's. The ratio comes from interleaved rounds
/// (elbo's steps, then PyTorch's), so that both sides see the same load on a shared
/// machine; the medians of the rounds are reported.
pub(super) fn step_comparisons(
    python: &str,
    opts: &BenchOptions,
    trainers: &mut BenchTrainers,
    progress: &dyn Fn(&str),
) -> Result<Vec<PytorchStep>> {
    let mut peers = Vec::new();
    for model in BenchModel::ALL {
        if let Some((t, _)) = trainers.get(model) {
            peers.push(step_comparison(python, opts, model, t, progress)?);
        }
    }
    Ok(peers)
}

fn step_comparison(
    python: &str,
    opts: &BenchOptions,
    model: BenchModel,
    t: &mut Trainer,
    progress: &dyn Fn(&str),
) -> Result<PytorchStep> {
    let rounds_of_each = opts.rounds.max(1);
    let (groups, group) = model.step_groups(opts.steps);
    let batch = model.peer_batch();
    let mut rounds = Vec::new();
    let mut last = None;
    for round in 1..=rounds_of_each {
        progress(&format!(
            "{} at batch {batch} against PyTorch {}, round {round} of {rounds_of_each}",
            model.name(),
            opts.pytorch_device
        ));
        // 5 warm-up steps, as the PyTorch script takes before it times
        let (ours, _, _) = spread(&time_steps(t, 5, groups, group)?);
        let theirs = pytorch_step(python, &opts.pytorch_device, model, batch)?;
        rounds.push(StepRound {
            elbo_ms: ours,
            elbo_over_pytorch: ours / theirs.median_ms,
            pytorch_ms: theirs.median_ms,
        });
        last = Some(theirs);
    }
    let median_of = |f: fn(&StepRound) -> f64| spread(&rounds.iter().map(f).collect::<Vec<_>>()).0;
    let mut p = last.expect("at least one round");
    p.median_ms = median_of(|r| r.pytorch_ms);
    p.elbo_ms = Some(median_of(|r| r.elbo_ms));
    p.elbo_over_pytorch = median_of(|r| r.elbo_over_pytorch);
    p.rounds = rounds;
    Ok(p)
}

/// Whole epochs of the MLP VAE in interleaved rounds, or none with a note where PyTorch
/// cannot run them (torchvision missing).
pub(super) fn epoch_comparison(
    python: &str,
    opts: &BenchOptions,
    mlp: &mut Trainer,
    progress: &dyn Fn(&str),
) -> Result<Option<PytorchEpoch>> {
    let rounds_of_each = opts.rounds.max(1);
    let mut rounds = Vec::new();
    for round in 1..=rounds_of_each {
        progress(&format!("an MLP VAE epoch against PyTorch's DataLoader, round {round} of {rounds_of_each}"));
        let ours = time_epoch(mlp, round)?;
        match pytorch_epoch(python, &opts.pytorch_device) {
            Ok(theirs) => rounds.push(EpochRound { elbo_over_pytorch: ours / theirs, elbo_s: ours, pytorch_s: theirs }),
            Err(e) => {
                progress(&format!("no epoch comparison: {e:#}"));
                break;
            }
        }
    }
    if rounds.is_empty() {
        return Ok(None);
    }
    let median_of = |f: fn(&EpochRound) -> f64| spread(&rounds.iter().map(f).collect::<Vec<_>>()).0;
    Ok(Some(PytorchEpoch {
        batch: 128,
        elbo_over_pytorch: median_of(|r| r.elbo_over_pytorch),
        elbo_s: median_of(|r| r.elbo_s),
        loader: "torchvision DataLoader".into(),
        model: BenchModel::Mlp.name().into(),
        pytorch_s: median_of(|r| r.pytorch_s),
        rounds,
    }))
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
        t.train_step(b)?;
        if (b + 1) % 25 == 0 && b + 1 < batches {
            t.request_history(0, b + 1, Default::default());
        }
        t.poll_history()?;
    }
    t.cancel_history();
    t.read_history(batches)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Runs the PyTorch peer (tools/pytorch_vae.py) with `python` and returns its answer.
fn pytorch_step(python: &str, device: &str, model: BenchModel, batch: usize) -> Result<PytorchStep> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pytorch_vae.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script).args(["step", "--batch", &batch.to_string(), "--device", device]);
    cmd.args(model.pytorch_args());
    let out = cmd.arg("--data").arg(mnist_dir(None)).output().with_context(|| format!("cannot run {python}"))?;
    if !out.status.success() {
        bail!(
            "{python} {} failed (it needs torch, numpy and safetensors): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!("the PyTorch script gave no step timing (batch, median_ms): {}", String::from_utf8_lossy(&out.stdout))
    })
}

/// Seconds of one MLP VAE epoch at batch 128 in PyTorch with torchvision's MNIST
/// dataset and DataLoader (tools/pytorch_vae.py train --torchvision), on `device`.
fn pytorch_epoch(python: &str, device: &str) -> Result<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pytorch_vae.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["train", "--epochs", "1", "--torchvision", "--batch", "128", "--device", device, "--data"])
        .arg(mnist_dir(None))
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    if !out.status.success() {
        bail!(
            "{python} {} train --torchvision failed (it needs torch and torchvision): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(text.lines().last().unwrap_or(""))?;
    last["epoch_seconds"].as_f64().context("the PyTorch script gave no epoch_seconds")
}
