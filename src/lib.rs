//! elbo: variational autoencoders trained on any GPU through wgpu, with every
//! kernel hand-written in WGSL (`shaders/`) and checked against a CPU
//! reference of the same name (`reference`).
//!
//! The library in a few lines (`examples/` has training, sampling and evaluation):
//!
//! ```no_run
//! use elbo::{Gpu, Hyper, Model, Trainer, VaeConfig};
//! # fn main() -> anyhow::Result<()> {
//! let gpu = Gpu::new(&Default::default())?; // the best adapter, lavapipe on a machine without a GPU
//! let (train, test) = elbo::data::load_mnist(&elbo::data::mnist_dir(None))?;
//! let config = VaeConfig::mlp(28, 28, 400, 20);
//! let mut trainer = Trainer::new(&gpu, Model::init(&config, 1), Hyper::new(1e-3, 1), 128, &train, &test)?;
//! let sums = trainer.train_epoch(1)?; // the epoch in its seeded order; one submit a step
//! println!("train -ELBO {:.2}, test -ELBO {:.2} nats", sums.loss(1.0), trainer.evaluate()?.loss(1.0));
//! let z = vec![0.0; 20]; // the prior's mean
//! let image = trainer.decode(&z)?; // 784 pixel means in [0, 1]
//! trainer.save_model(std::path::Path::new("model.safetensors"), Default::default())?;
//! # Ok(()) }
//! ```
//!
//! Modules, bottom up: [`gpu`] (adapter, device, buffers and textures), [`kernels`]
//! (one file per kernel family: uniforms, pipelines, dispatches),
//! [`reference`](mod@reference) (the CPU reference of every kernel, mirroring
//! `kernels`), [`model`] (configuration, layer layout, flat parameters,
//! safetensors), [`step`] (the step builder: a model's layers become dispatch
//! lists), [`train`] (options, the trainer, checkpoints, the epoch loop), [`infer`]
//! (an opened model and the commands on it), [`bench`] (timings and reports),
//! [`data`] (datasets) and [`plot`] (image grids and charts).

pub mod bench;
pub mod data;
pub mod gpu;
pub mod infer;
pub mod kernels;
pub mod model;
pub mod plot;
pub mod reference;
pub mod rng;
pub mod step;
pub mod train;

pub use data::Dataset;
pub use gpu::Gpu;
pub use model::{Model, VaeConfig};
pub use train::{Hyper, Trainer};

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over the target. A crash leaves either the old
/// file or the new one, never a torn one.
/// safetensors bytes of `views` with `meta`, the header's keys in sorted order (the
/// library writes them in a hash map's order, which changes from run to run): the same
/// tensors and metadata give the same file.
pub fn serialize_sorted(
    views: Vec<(String, safetensors::tensor::TensorView)>,
    meta: std::collections::HashMap<String, String>,
) -> anyhow::Result<Vec<u8>> {
    let mut bytes = safetensors::tensor::serialize(views, Some(meta))?;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    // serde_json's maps are ordered by key; the header keeps its length (the same keys and
    // values, compact) and its padding
    let sorted = serde_json::to_vec(&header)?;
    if sorted.len() <= n {
        bytes[8..8 + sorted.len()].copy_from_slice(&sorted);
        bytes[8 + sorted.len()..8 + n].fill(b' ');
    }
    Ok(bytes)
}

/// The safetensors metadata key of `tensor_checksum`.
pub const CHECKSUM_KEY: &str = "elbo.tensor_checksum";

/// A checksum of named tensors' bytes (FNV-1a 64 over each name and its data, in name
/// order), stored in the metadata of the files elbo writes so that a flipped or lost byte
/// in the tensors is found when the file is read.
pub fn tensor_checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut all: Vec<(&str, &[u8])> = tensors.into_iter().collect();
    all.sort_by_key(|t| t.0);
    let mut fnv = crate::data::cache::Fnv::new();
    for (name, data) in all {
        fnv.bytes(&(name.len() as u64).to_le_bytes())
            .bytes(name.as_bytes())
            .bytes(&(data.len() as u64).to_le_bytes())
            .bytes(data);
    }
    format!("{:016x}", fnv.0)
}

/// An error when `st`'s tensors do not match the checksum in `meta` (files without one,
/// written before it was kept, pass).
pub fn verify_tensor_checksum(
    st: &safetensors::SafeTensors,
    meta: &std::collections::HashMap<String, String>,
) -> anyhow::Result<()> {
    let Some(want) = meta.get(CHECKSUM_KEY) else { return Ok(()) };
    let names = st.names();
    let views: Vec<(&str, safetensors::tensor::TensorView)> =
        names.iter().map(|n| Ok((*n, st.tensor(n)?))).collect::<anyhow::Result<_>>()?;
    let got = tensor_checksum(views.iter().map(|(n, v)| (*n, v.data())));
    if &got != want {
        anyhow::bail!(
            "its tensors do not match their checksum ({got} against {want}): the file is damaged (a changed or lost byte); use another copy"
        );
    }
    Ok(())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_parts(path, &[bytes])
}

/// `write_atomic` of `parts` written one after another (a header and a large body
/// without joining them in memory first).
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
