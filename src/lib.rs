//! elbo: variational autoencoders trained on any GPU through wgpu, with every
//! kernel hand-written in WGSL (`shaders/`) and checked against a CPU
//! reference of the same name (`reference`).

pub mod bench;
pub mod data;
pub mod gemm;
pub mod gpu;
pub mod idx;
pub mod images;
pub mod inference;
pub mod kernels;
pub mod model;
pub mod plot;
pub mod probe;
pub mod profile;
pub mod reference;
pub mod rng;
pub mod train;
pub mod trainer;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over the target. A crash leaves either the old
/// file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
