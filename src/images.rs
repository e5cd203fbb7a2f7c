//! Image grids written as PNG.

use anyhow::{Context, Result};
use std::path::Path;

/// Lays out `images` (each width*height values in [0, 1]) in rows of `cols`,
/// with a 1-pixel border, scaled up `scale` times, and writes a greyscale PNG atomically.
pub fn save_grid(path: &Path, images: &[&[f32]], width: usize, height: usize, cols: usize, scale: usize) -> Result<()> {
    let rows = images.len().div_ceil(cols).max(1);
    let (cw, ch) = ((width + 1) * scale, (height + 1) * scale);
    let (w, h) = (cols * cw + scale, rows * ch + scale);
    let mut img = image::GrayImage::from_pixel(w as u32, h as u32, image::Luma([64]));
    for (i, pix) in images.iter().enumerate() {
        let (ox, oy) = ((i % cols) * cw + scale, (i / cols) * ch + scale);
        for y in 0..height * scale {
            for x in 0..width * scale {
                let v = pix[(y / scale) * width + x / scale].clamp(0.0, 1.0);
                img.put_pixel((ox + x) as u32, (oy + y) as u32, image::Luma([(v * 255.0).round() as u8]));
            }
        }
    }
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    crate::write_atomic(path, &bytes)
}
