//! Whether a model's device objects fit an adapter's limits, checked before anything is
//! built or written: the flat buffers (parameters, gradients, Adam's moments) against the
//! largest storage buffer, and every weight and activation texture against the largest
//! texture side. A model that does not fit is an error that names what is too large and
//! the largest value of each flag that would make it fit.

use super::config::{Arch, VaeConfig};
use super::layout::Layout;
use anyhow::{bail, Result};

/// What one adapter allows.
#[derive(Clone, Copy, Debug)]
pub struct DeviceLimits {
    /// Texels a side of a 2-D texture.
    pub texture_side: usize,
    /// Bytes of one storage buffer.
    pub buffer_bytes: u64,
}

impl DeviceLimits {
    pub fn of(limits: &wgpu::Limits) -> DeviceLimits {
        DeviceLimits {
            texture_side: limits.max_texture_dimension_2d as usize,
            buffer_bytes: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
        }
    }
}

/// The first of `c`'s device objects at `rows` batch rows (images times samples) past
/// `lim`, described; None when all fit.
pub fn overflow(c: &VaeConfig, rows: usize, lim: &DeviceLimits) -> Option<String> {
    let layout = Layout::new(c);
    let bytes = layout.len as u64 * 4;
    if bytes > lim.buffer_bytes {
        return Some(format!(
            "its {} parameters take {:.1} MiB, and one buffer may hold {:.1} MiB",
            layout.len,
            bytes as f64 / 1048576.0,
            lim.buffer_bytes as f64 / 1048576.0
        ));
    }
    let m = rows.next_multiple_of(4);
    let side = lim.texture_side;
    for l in layout.layers() {
        // the weight texture (rows of W by its columns in texels), and the activation and
        // gradient textures of the layer's input and output (batch rows by texels)
        let too_wide = |texels: usize| texels > side;
        let objects = [
            ("weights", l.rows, l.cols.div_ceil(4)),
            ("input", m, l.input.cols().div_ceil(4)),
            ("output", m, l.output.cols().div_ceil(4)),
        ];
        if let Some((what, h, w)) = objects.into_iter().find(|&(_, h, w)| h > side || too_wide(w)) {
            return Some(format!(
                "layer {}'s {what} would be a {w}x{h}-texel texture, and a texture side may be at most {side} texels",
                l.name
            ));
        }
    }
    None
}

/// `c` at `batch` images of `samples` rows each, checked against `lim`: an error naming
/// the object too large and, for each flag that can shrink it, the largest value that
/// fits (where one does).
pub fn check_fits(c: &VaeConfig, batch: usize, samples: usize, lim: &DeviceLimits) -> Result<()> {
    let Some(what) = overflow(c, batch * samples, lim) else {
        return Ok(());
    };
    let fits = |c: &VaeConfig, batch: usize| overflow(c, batch * samples, lim).is_none();
    let mut ways = Vec::new();
    if let Some(b) = largest(batch, |b| fits(c, b)) {
        ways.push(format!("--batch-size {b}"));
    }
    // each Monte-Carlo sample is a row of its own
    if samples > 1 {
        if let Some(s) = largest(samples, |s| overflow(c, batch * s, lim).is_none()) {
            ways.push(format!("--mc-samples {s}"));
        }
    }
    let widest = c.hidden.iter().chain(c.decoder_hidden.iter().flatten()).copied().max().unwrap_or(0);
    let capped = |w: usize| {
        let cap = |v: &Vec<usize>| v.iter().map(|&x| x.min(w)).collect::<Vec<_>>();
        VaeConfig { hidden: cap(&c.hidden), decoder_hidden: c.decoder_hidden.as_ref().map(cap), ..c.clone() }
    };
    if let Some(w) = largest(widest, |w| fits(&capped(w), batch)) {
        ways.push(format!("--hidden widths of at most {w}"));
    }
    if c.arch == Arch::Conv {
        let most = c.conv_channels.iter().copied().max().unwrap_or(0);
        let cap =
            |ch: usize| VaeConfig { conv_channels: c.conv_channels.iter().map(|&x| x.min(ch)).collect(), ..c.clone() };
        if let Some(ch) = largest(most, |ch| fits(&cap(ch), batch)) {
            ways.push(format!("--channels of at most {ch}"));
        }
    }
    // images scaled down, keeping their shape and the multiple the convolutions need
    let step = c.conv_stride();
    let scaled = |k: usize| VaeConfig {
        width: c.width * k / c.height.max(c.width),
        height: c.height * k / c.height.max(c.width),
        ..c.clone()
    };
    let side = |k: usize| {
        let s = scaled(k);
        s.width >= step && s.height >= step && s.width % step == 0 && s.height % step == 0 && fits(&s, batch)
    };
    if let Some(k) = (1..=c.width.max(c.height)).rev().find(|&k| side(k)) {
        let s = scaled(k);
        ways.push(format!("--image-size {}x{} (a folder's images resized)", s.width, s.height));
    }
    let hint = if ways.is_empty() {
        "no smaller setting fits it".to_string()
    } else {
        format!("it fits with {}", ways.join(", or "))
    };
    bail!("the model is too large for this adapter: {what}; {hint}");
}

/// The largest value in 1..=at_most for which `ok` holds, where `ok` holds for every
/// value below one for which it holds; None when it holds for none.
fn largest(at_most: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    if at_most == 0 || !ok(1) {
        return None;
    }
    let (mut lo, mut hi) = (1, at_most);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}
