//! Image grids written as PNG.

use anyhow::{Context, Result};
use std::path::Path;

/// How a grid lays out its images: each `height * width * channels` values in [0, 1],
/// channels-last, `cols` a row, each pixel drawn `scale` times wide and high.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub cols: usize,
    pub scale: usize,
}

impl Grid {
    /// A grid of `config`'s images, `cols` a row, scaled so that a cell is about 112
    /// pixels across (2 to 8 times).
    pub fn of(config: &crate::model::VaeConfig, cols: usize) -> Grid {
        let (width, height, channels) = (config.width, config.height, config.channels);
        Grid { width, height, channels, cols, scale: (112 / width.max(height)).clamp(2, 8) }
    }
}

/// An encoded PNG and its size.
pub struct Png {
    pub bytes: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
}

/// Lays out `images` as `grid` says, with a 1-pixel border, and writes a greyscale or
/// RGB PNG atomically (`grid_png`). An empty image leaves its cell blank.
pub fn save_grid(path: &Path, images: &[&[f32]], grid: &Grid) -> Result<Png> {
    let png = grid_png(images, grid).with_context(|| format!("encoding {}", path.display()))?;
    crate::write_atomic(path, &png.bytes)?;
    Ok(png)
}

/// `images` laid out as `grid` says, with a 1-pixel border, as a greyscale or RGB PNG.
pub fn grid_png(images: &[&[f32]], grid: &Grid) -> Result<Png> {
    let Grid { width, height, channels, cols, scale } = *grid;
    let rows = images.len().div_ceil(cols).max(1);
    let (cw, chh) = ((width + 1) * scale, (height + 1) * scale);
    let (w, h) = (cols * cw + scale, rows * chh + scale);
    let mut img = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([64, 64, 64]));
    for (i, pix) in images.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
        let (ox, oy) = ((i % cols) * cw + scale, (i / cols) * chh + scale);
        for y in 0..height * scale {
            for x in 0..width * scale {
                let at = ((y / scale) * width + x / scale) * channels;
                let v = |c: usize| (pix[at + c.min(channels - 1)].clamp(0.0, 1.0) * 255.0).round() as u8;
                img.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb([v(0), v(1), v(2)]));
            }
        }
    }
    let img = if channels == 1 {
        image::DynamicImage::ImageRgb8(img).into_luma8().into()
    } else {
        image::DynamicImage::ImageRgb8(img)
    };
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    Ok(Png { bytes, width: w, height: h, channels: channels.min(3) })
}
