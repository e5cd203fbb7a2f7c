//! PyTorch's step and epoch of the same models, timed by tools/pytorch_vae.py
//! in the Python the user names.

use crate::data::mnist_dir;
use crate::model::Arch;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// Runs the PyTorch peer (tools/pytorch_vae.py) with `python` and returns its JSON.
pub(super) fn pytorch_step(python: &str, device: &str, arch: Arch, batch: usize) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pytorch_vae.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script).args(["step", "--batch", &batch.to_string(), "--device", device]);
    if arch == Arch::Conv {
        cmd.args(["--conv", "--steps", "20"]);
    }
    let out = cmd.arg("--data").arg(mnist_dir(None)).output().with_context(|| format!("cannot run {python}"))?;
    if !out.status.success() {
        bail!(
            "{python} {} failed (it needs torch, numpy and safetensors): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Seconds of one MLP VAE epoch at batch 128 in PyTorch with torchvision's MNIST
/// dataset and DataLoader (tools/pytorch_vae.py train --torchvision), on `device`.
pub(super) fn pytorch_epoch(python: &str, device: &str) -> Result<f64> {
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
