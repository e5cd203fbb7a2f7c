//! Pictures written as PNG: image grids ([`grid`]), and small plots drawn straight
//! into PNGs: a class-coloured scatter of 2-D points with a legend, and the 2-D
//! projection it needs. [`tensorboard`] writes a run's scalars and grids as
//! TensorBoard event files.

pub mod grid;
pub mod tensorboard;

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

/// A scatter plot of `points` coloured by class (`labels`, with a legend of the classes
/// present), with `title` above and `axes` naming x and y, ticks on both, drawn with
/// plotters (text in DejaVu Sans, embedded), written atomically as a 640x640 PNG.
pub fn scatter(path: &Path, points: &[[f32; 2]], labels: Option<&[u8]>, title: &str, axes: (&str, &str)) -> Result<()> {
    use plotters::prelude::*;
    register_font();
    let plot = |e: &dyn std::fmt::Display| anyhow::anyhow!("plot: {e}");
    let (w, h) = (640u32, 640u32);
    let finite: Vec<(usize, f64, f64)> = points
        .iter()
        .enumerate()
        .filter(|(_, p)| p[0].is_finite() && p[1].is_finite())
        .map(|(i, p)| (i, p[0] as f64, p[1] as f64))
        .collect();
    let range = |k: usize| {
        let v = finite.iter().map(|p| if k == 0 { p.1 } else { p.2 });
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        let (lo, hi) = if lo.is_finite() { (lo, hi.max(lo + 1e-6)) } else { (-1.0, 1.0) };
        let pad = (hi - lo) * 0.05;
        (lo - pad)..(hi + pad)
    };
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(range(0), range(1))
            .map_err(|e| plot(&e))?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(|e| plot(&e))?;
        for (class, rgb) in PALETTE.iter().enumerate() {
            let mine: Vec<(f64, f64)> = finite
                .iter()
                .filter(|p| labels.map_or(class == 0, |l| l[p.0] as usize % 10 == class))
                .map(|p| (p.1, p.2))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let color = RGBColor(rgb[0], rgb[1], rgb[2]);
            let series = chart
                .draw_series(mine.into_iter().map(|(x, y)| Circle::new((x, y), 2, color.filled())))
                .map_err(|e| plot(&e))?;
            if labels.is_some() {
                series.label(class.to_string()).legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
            }
        }
        if labels.is_some() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| plot(&e))?;
        }
        root.present().map_err(|e| plot(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow::anyhow!("plot buffer has the wrong size"))?;
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    crate::write_atomic(path, &bytes)
}

/// DejaVu Sans as plotters' "sans-serif", once per process.
fn register_font() {
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ =
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, dejavu::sans::regular());
    });
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
    register_font();
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
