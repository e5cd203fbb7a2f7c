//! Pictures written as PNG: image grids ([`grid`]), and small plots drawn straight
//! into PNGs: a class-coloured scatter of 2-D points with a legend, and the 2-D
//! projection it needs.

pub mod grid;

use anyhow::Result;
use std::path::Path;

/// Ten well-separated colours (one per class).
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// 3x5 bitmaps of the digits, one row of 3 bits per line, top first.
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Rows of `v` (n, dim) as 2-D points: the two coordinates themselves when dim
/// is 2 (or 1, paired with 0), else the first two principal components.
pub fn project_2d(v: &[f32], dim: usize) -> Vec<[f32; 2]> {
    let n = v.len() / dim.max(1);
    if dim <= 2 {
        return (0..n).map(|i| [v[i * dim], if dim == 2 { v[i * dim + 1] } else { 0.0 }]).collect();
    }
    let mean: Vec<f64> =
        (0..dim).map(|j| (0..n).map(|i| v[i * dim + j] as f64).sum::<f64>() / n.max(1) as f64).collect();
    let mut cov = vec![0f64; dim * dim];
    for i in 0..n {
        for a in 0..dim {
            let da = v[i * dim + a] as f64 - mean[a];
            for b in 0..dim {
                cov[a * dim + b] += da * (v[i * dim + b] as f64 - mean[b]);
            }
        }
    }
    // power iteration for the top eigenvector, deflation, then the second
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for _ in 0..2 {
        let mut e: Vec<f64> = (0..dim).map(|j| 1.0 + j as f64 * 0.01).collect();
        for _ in 0..200 {
            let mut next: Vec<f64> = (0..dim).map(|a| (0..dim).map(|b| cov[a * dim + b] * e[b]).sum()).collect();
            for c in &comps {
                let p: f64 = next.iter().zip(c).map(|(x, y)| x * y).sum();
                next.iter_mut().zip(c).for_each(|(x, y)| *x -= p * y);
            }
            let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
            e = next.iter().map(|x| x / norm).collect();
        }
        comps.push(e);
    }
    (0..n)
        .map(|i| {
            let p = |c: &Vec<f64>| (0..dim).map(|j| (v[i * dim + j] as f64 - mean[j]) * c[j]).sum::<f64>() as f32;
            [p(&comps[0]), p(&comps[1])]
        })
        .collect()
}

/// A 640x640 scatter plot of `points`, coloured by `labels` (0..9) with a legend
/// of the classes present, written atomically as PNG.
pub fn scatter(path: &Path, points: &[[f32; 2]], labels: Option<&[u8]>, _title: &str) -> Result<()> {
    let (w, h, margin) = (640u32, 640u32, 40f32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let finite: Vec<&[f32; 2]> = points.iter().filter(|p| p[0].is_finite() && p[1].is_finite()).collect();
    let lo = |k: usize| finite.iter().map(|p| p[k]).fold(f32::INFINITY, f32::min);
    let hi = |k: usize| finite.iter().map(|p| p[k]).fold(f32::NEG_INFINITY, f32::max);
    let (x0, x1, y0, y1) = (lo(0), hi(0), lo(1), hi(1));
    let sx = (w as f32 - 2.0 * margin - 60.0) / (x1 - x0).max(1e-6);
    let sy = (h as f32 - 2.0 * margin) / (y1 - y0).max(1e-6);
    // frame
    for x in margin as u32..=(w - margin as u32 - 60) {
        img.put_pixel(x, margin as u32, image::Rgb([0, 0, 0]));
        img.put_pixel(x, h - margin as u32, image::Rgb([0, 0, 0]));
    }
    for y in margin as u32..=(h - margin as u32) {
        img.put_pixel(margin as u32, y, image::Rgb([0, 0, 0]));
        img.put_pixel(w - margin as u32 - 60, y, image::Rgb([0, 0, 0]));
    }
    for (i, p) in points.iter().enumerate() {
        if !(p[0].is_finite() && p[1].is_finite()) {
            continue;
        }
        let class = labels.map_or(0, |l| l[i] as usize % 10);
        let cx = margin + (p[0] - x0) * sx;
        let cy = h as f32 - margin - (p[1] - y0) * sy;
        for dy in -1i32..=1 {
            for dx in -1i32..=1 {
                let (px, py) = (cx as i32 + dx, cy as i32 + dy);
                if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                    img.put_pixel(px as u32, py as u32, image::Rgb(PALETTE[class]));
                }
            }
        }
    }
    // legend: a colour swatch and the class digit for every class present
    if let Some(l) = labels {
        let mut present = [false; 10];
        l.iter().for_each(|&c| present[c as usize % 10] = true);
        let mut y = margin as u32 + 4;
        for (c, _) in present.iter().enumerate().filter(|(_, p)| **p) {
            let x = w - 50;
            for dy in 0..10 {
                for dx in 0..10 {
                    img.put_pixel(x + dx, y + dy, image::Rgb(PALETTE[c]));
                }
            }
            for (row, bits) in DIGITS[c].iter().enumerate() {
                for col in 0..3u32 {
                    if bits & (0b100 >> col) != 0 {
                        for s in 0..4 {
                            img.put_pixel(x + 16 + col * 2 + s % 2, y + row as u32 * 2 + s / 2, image::Rgb([0, 0, 0]));
                        }
                    }
                }
            }
            y += 16;
        }
    }
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    crate::write_atomic(path, &bytes)
}

/// One curve of a panel: its name, its values by epoch and its colour.
pub struct Curve<'a> {
    pub name: &'a str,
    pub values: Vec<f64>,
    pub color: [u8; 3],
}

/// Panels of curves side by side over epochs 1..=n, drawn with plotters (text in
/// DejaVu Sans, embedded), written atomically as a PNG.
pub fn line_panels(path: &Path, panels: &[(&str, Vec<Curve>)]) -> Result<()> {
    use plotters::prelude::*;
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
    let (w, h) = (420 * panels.len().max(1) as u32, 360u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for ((title, curves), area) in panels.iter().zip(areas) {
            let all: Vec<f64> =
                curves.iter().flat_map(|c| c.values.iter().copied()).filter(|v| v.is_finite()).collect();
            let n = curves.iter().map(|c| c.values.len()).max().unwrap_or(1).max(2);
            let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let (lo, hi) = if lo.is_finite() { (lo, hi.max(lo + 1e-9)) } else { (0.0, 1.0) };
            let pad = (hi - lo) * 0.08;
            let mut chart = ChartBuilder::on(&area)
                .caption(*title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(32)
                .y_label_area_size(56)
                .build_cartesian_2d(1f64..n as f64, (lo - pad)..(hi + pad))
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            for c in curves {
                let color = RGBColor(c.color[0], c.color[1], c.color[2]);
                let points: Vec<(f64, f64)> = c
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(i, &v)| ((i + 1) as f64, v))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(|e| anyhow::anyhow!("plot: {e}"))?
                    .label(c.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow::anyhow!("plot buffer has the wrong size"))?;
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    crate::write_atomic(path, &bytes)
}

/// `loss.png` from a run's metrics.jsonl: the loss, reconstruction and KL terms, train and test.
pub fn loss_curves(metrics: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics)?;
    let rows: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let col = |k: &str| rows.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect::<Vec<_>>();
    let (blue, orange) = (PALETTE[0], PALETTE[1]);
    // the validation curve where the run holds a validation set (`--validation`)
    let validated = rows.iter().any(|r| r["val_loss"].is_number());
    let curves = |a: &'static str, b: &'static str, v: &'static str| {
        let mut c = vec![
            Curve { name: "train", values: col(a), color: blue },
            Curve { name: "test", values: col(b), color: orange },
        ];
        if validated {
            c.push(Curve { name: "validation", values: col(v), color: PALETTE[2] });
        }
        c
    };
    line_panels(
        out,
        &[
            ("loss (nats per image)", curves("train_loss", "test_loss", "val_loss")),
            ("reconstruction", curves("train_recon", "test_recon", "val_recon")),
            ("KL", curves("train_kl", "test_kl", "val_kl")),
        ],
    )
}
