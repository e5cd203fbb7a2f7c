//! A folder of 64x64 RGB pictures to try the deeper convolutional VAE on without a
//! download: one coloured disc, square or diamond per picture, of random size, place
//! and colour, on a background of another colour (a coloured cousin of dSprites).
//! `cargo run --release --example shapes -- DIR [COUNT] [FIRST]` (default 20000 pictures,
//! numbered from 0; another FIRST gives other pictures, e.g. a held-out set), then
//! `elbo train --model conv --dataset DIR --channels-in 3 --channels 32,64,128,256 ...`.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

const SIDE: u32 = 64;

/// A uniform number in [lo, hi) from picture `i`'s stream, draw `k`.
fn uniform(i: u32, k: u32, lo: f32, hi: f32) -> f32 {
    let u = (elbo::rng::rand_bits(7, 13, i, k) >> 8) as f32 / 16_777_216.0;
    lo + (hi - lo) * u
}

/// The saturated colour of hue `h` (turns), its channels in [0, light].
fn colour(h: f32, light: f32) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let r = (h6 - 3.0).abs() - 1.0;
    let g = 2.0 - (h6 - 2.0).abs();
    let b = 2.0 - (h6 - 4.0).abs();
    [r, g, b].map(|v| v.clamp(0.0, 1.0) * light)
}

/// Picture `i`: its shape covers the pixels whose distance from the centre, in that
/// shape's norm (2: disc, infinity: square, 1: diamond), is below its radius.
fn picture(i: u32) -> image::RgbImage {
    let kind = (uniform(i, 0, 0.0, 3.0) as u32).min(2);
    let r = uniform(i, 1, 6.0, 18.0);
    let (cx, cy) = (uniform(i, 2, r, SIDE as f32 - r), uniform(i, 3, r, SIDE as f32 - r));
    let hue = uniform(i, 4, 0.0, 1.0);
    let fg = colour(hue, uniform(i, 5, 0.7, 1.0));
    // the background's hue differs from the shape's by at least a sixth of the circle
    let bg = colour(hue + uniform(i, 6, 1.0 / 6.0, 5.0 / 6.0), uniform(i, 7, 0.15, 0.45));
    image::RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let (dx, dy) = ((x as f32 + 0.5 - cx).abs(), (y as f32 + 0.5 - cy).abs());
        let d = match kind {
            0 => (dx * dx + dy * dy).sqrt(),
            1 => dx.max(dy),
            _ => dx + dy,
        };
        let c = if d < r { fg } else { bg };
        image::Rgb(c.map(|v| (v * 255.0).round() as u8))
    })
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        bail!("usage: cargo run --release --example shapes -- DIR [COUNT] [FIRST]");
    };
    let count: u32 = match args.next() {
        Some(n) => n.parse().with_context(|| format!("COUNT {n:?} is not a number of pictures"))?,
        None => 20_000,
    };
    let first: u32 = match args.next() {
        Some(n) => n.parse().with_context(|| format!("FIRST {n:?} is not a picture number"))?,
        None => 0,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for i in first..first + count {
        let path = dir.join(format!("{i:06}.png"));
        picture(i).save(&path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("wrote {count} 64x64 RGB pictures to {}", dir.display());
    Ok(())
}
