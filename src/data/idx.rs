//! The IDX format of MNIST (big-endian header: 0, 0, type 0x08 = u8, number
//! of dimensions, then each dimension as u32), plain or gzipped.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

#[derive(Debug)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file, gunzipping it when it starts with the gzip magic.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).with_context(|| {
            format!(
                "{} is a damaged or truncated gzip file ({} bytes); download or copy it again",
                path.display(),
                raw.len()
            )
        })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).with_context(|| format!("{} is not a valid IDX file", path.display()))
}

/// Parses IDX bytes: checks the magic number, the dimensions and the length.
pub fn parse_idx(bytes: &[u8]) -> Result<Idx> {
    if bytes.len() < 4 {
        bail!("it is {} bytes long, shorter than the 4-byte IDX magic number", bytes.len());
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        bail!("the magic number starts with {:02x} {:02x}, expected 00 00", bytes[0], bytes[1]);
    }
    if bytes[2] != 0x08 {
        bail!("element type 0x{:02x}, expected 0x08 (unsigned bytes)", bytes[2]);
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 || ndim > 4 {
        bail!("{ndim} dimensions, expected 1 to 4");
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        bail!("the header needs {header} bytes but the file has {}", bytes.len());
    }
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let count = dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).context("the dimensions overflow")?;
    let body = bytes.len() - header;
    if body != count {
        bail!("dimensions {dims:?} need {count} data bytes but the file has {body} (truncated or corrupt)");
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}
