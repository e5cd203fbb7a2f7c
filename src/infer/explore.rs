//! Looking at a model: samples from the prior, reconstructions, the 2-D manifold,
//! per-dimension traversals, interpolations and the latent space by class.

use super::OpenModel;
use crate::step::Net;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// `elbo sample`: n images decoded from z ~ N(0, T^2 I).
pub fn sample(s: &OpenModel, n: usize, temperature: f32, seed: u64) -> Result<PathBuf> {
    if n == 0 || n > MAX_SAMPLES {
        anyhow::bail!("--n {n}: draw between 1 and {MAX_SAMPLES} samples");
    }
    if !(temperature.is_finite() && temperature >= 0.0) {
        anyhow::bail!("--temperature {temperature}: give a number of at least 0 (1 samples the prior itself)");
    }
    let lat = s.model.config.latent;
    let z: Vec<f32> =
        (0..n * lat).map(|i| temperature * crate::rng::rand_normal(seed as u32, 3, 0, i as u32)).collect();
    let mut t = s.net(128, 1)?;
    let images = s.decode_all(&mut t, &z)?;
    let d = s.model.config.pixels();
    let tiles: Vec<&[f32]> = images.chunks(d).collect();
    s.save("samples.png", &tiles, 8)
}

/// The most samples one `sample` draws (a grid of 64 by 64).
pub const MAX_SAMPLES: usize = 4096;

/// `elbo reconstruct`: test images, their reconstructions from the posterior mean, and from a sample of z.
pub fn reconstruct(s: &OpenModel, n: usize) -> Result<PathBuf> {
    let n = n.min(s.test.len).max(1);
    let mut t = s.net(n.min(128), 1)?;
    let d = s.model.config.pixels();
    let (mu, lv) = s.encode(&mut t, n)?;
    let sampled: Vec<f32> = mu
        .iter()
        .zip(&lv)
        .enumerate()
        .map(|(i, (m, l))| m + (0.5 * l).exp() * crate::rng::rand_normal(7, 4, 0, i as u32))
        .collect();
    let mean_img = s.decode_all(&mut t, &mu)?;
    let sample_img = s.decode_all(&mut t, &sampled)?;
    let originals: Vec<Vec<f32>> = (0..n).map(|i| s.image(i)).collect();
    // rows of 8: originals, reconstructions from the mean, from a sample; short rows padded
    let cell = |v: &'_ [f32], i: usize| -> Vec<f32> {
        if i < n {
            v[i * d..(i + 1) * d].to_vec()
        } else {
            Vec::new()
        }
    };
    let flat_originals: Vec<f32> = originals.concat();
    let mut cells: Vec<Vec<f32>> = Vec::new();
    for row in 0..n.div_ceil(8) {
        for source in [&flat_originals, &mean_img, &sample_img] {
            cells.extend((row * 8..row * 8 + 8).map(|i| cell(source, i)));
        }
    }
    let tiles: Vec<&[f32]> = cells.iter().map(Vec::as_slice).collect();
    s.save("reconstruct.png", &tiles, 8)
}

/// The standard normal's inverse CDF (Acklam's rational approximation, relative error < 1.2e-9).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    let a = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    let b =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    let c = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    let d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
            / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    }
}

/// `elbo manifold`: decoded images over a grid of two latent dimensions placed
/// through the inverse Gaussian CDF (Kingma & Welling's figure), the others at 0.
pub fn manifold(s: &OpenModel, grid: usize, dims: (usize, usize)) -> Result<PathBuf> {
    let lat = s.model.config.latent;
    if dims.0 >= lat || dims.1 >= lat || dims.0 == dims.1 {
        bail!("--dims must name two different latent dimensions below {lat}, got {},{}", dims.0, dims.1);
    }
    let at = |i: usize| inverse_normal_cdf(0.05 + 0.9 * i as f64 / (grid - 1).max(1) as f64) as f32;
    let mut z = vec![0f32; grid * grid * lat];
    for r in 0..grid {
        for c in 0..grid {
            let k = (r * grid + c) * lat;
            z[k + dims.0] = at(c);
            z[k + dims.1] = at(grid - 1 - r);
        }
    }
    let mut t = s.net(128, 1)?;
    let images = s.decode_all(&mut t, &z)?;
    let tiles: Vec<&[f32]> = images.chunks(s.model.config.pixels()).collect();
    s.save("manifold.png", &tiles, grid)
}

/// Average KL per latent dimension over the first `n` test images, and the dimensions by it, largest first.
pub fn kl_per_dimension(s: &OpenModel, t: &mut Net, n: usize) -> Result<(Vec<f32>, Vec<usize>)> {
    let lat = s.model.config.latent;
    let (mu, lv) = s.encode(t, n)?;
    let mut kl = vec![0f32; lat];
    for (m, l) in mu.chunks(lat).zip(lv.chunks(lat)) {
        for j in 0..lat {
            kl[j] += -0.5 * (1.0 + l[j] - m[j] * m[j] - l[j].exp()) / n as f32;
        }
    }
    let mut order: Vec<usize> = (0..lat).collect();
    order.sort_by(|a, b| kl[*b].total_cmp(&kl[*a]));
    Ok((kl, order))
}

/// `elbo traverse`: for the `top` dimensions with the largest average KL, a row of
/// images as that dimension sweeps -3..3 with the others at test image `index`'s mean.
pub fn traverse(s: &OpenModel, index: usize, top: usize, steps: usize) -> Result<(PathBuf, Vec<(usize, f32)>)> {
    let lat = s.model.config.latent;
    if index >= s.test.len {
        bail!("--index {index} is past the {} test images", s.test.len);
    }
    let mut t = s.net(128, 1)?;
    let (kl, order) = kl_per_dimension(s, &mut t, s.test.len.min(512))?;
    let (mu, _) = s.encode(&mut t, index + 1)?;
    let base = &mu[index * lat..(index + 1) * lat];
    let dims: Vec<usize> = order.into_iter().take(top.min(lat)).collect();
    let mut z = Vec::new();
    for &j in &dims {
        for k in 0..steps {
            let mut v = base.to_vec();
            v[j] = -3.0 + 6.0 * k as f32 / (steps - 1).max(1) as f32;
            z.extend(v);
        }
    }
    let images = s.decode_all(&mut t, &z)?;
    let tiles: Vec<&[f32]> = images.chunks(s.model.config.pixels()).collect();
    let path = s.save("traverse.png", &tiles, steps)?;
    Ok((path, dims.iter().map(|&j| (j, kl[j])).collect()))
}

/// `elbo interpolate`: test image `from`, the decoded path between the two posterior means, test image `to`.
pub fn interpolate(s: &OpenModel, from: usize, to: usize, steps: usize) -> Result<PathBuf> {
    let lat = s.model.config.latent;
    if from.max(to) >= s.test.len {
        bail!("--from and --to must be below the {} test images", s.test.len);
    }
    let mut t = s.net(128, 1)?;
    let (mu, _) = s.encode(&mut t, from.max(to) + 1)?;
    let (a, b) = (&mu[from * lat..(from + 1) * lat], &mu[to * lat..(to + 1) * lat]);
    let z: Vec<f32> = (0..steps)
        .flat_map(|k| {
            let w = k as f32 / (steps - 1).max(1) as f32;
            a.iter().zip(b).map(move |(x, y)| (1.0 - w) * x + w * y)
        })
        .collect();
    let images = s.decode_all(&mut t, &z)?;
    let (xa, xb) = (s.image(from), s.image(to));
    let mut tiles: Vec<&[f32]> = vec![&xa];
    tiles.extend(images.chunks(s.model.config.pixels()));
    tiles.push(&xb);
    s.save("interpolate.png", &tiles, steps + 2)
}

/// `elbo embed`: the posterior means of the test set to CSV (with labels), and a
/// scatter plot of the 2-D latent space (or its first two principal components).
pub fn embed(s: &OpenModel, limit: Option<usize>) -> Result<(PathBuf, PathBuf)> {
    let lat = s.model.config.latent;
    let n = limit.unwrap_or(s.test.len).min(s.test.len);
    let mut t = s.net(128, 1)?;
    let (mu, _) = s.encode(&mut t, n)?;
    let labels = s.test.labels.clone();
    let mut csv = String::from("index,label");
    (0..lat).for_each(|j| csv += &format!(",z{j}"));
    csv.push('\n');
    for i in 0..n {
        let label = labels.as_ref().map(|l| l[i].to_string()).unwrap_or_default();
        csv += &format!("{i},{label}");
        for v in &mu[i * lat..(i + 1) * lat] {
            csv += &format!(",{v}");
        }
        csv.push('\n');
    }
    let mut paths = s.output_paths(&["embedding.csv", "embedding.png"]);
    let (png, csv_path) = (paths.pop().unwrap(), paths.pop().unwrap());
    crate::write_atomic(&csv_path, csv.as_bytes())?;
    let points = crate::plot::project_2d(&mu, lat);
    let title =
        format!("posterior means of {n} test images{}", if labels.is_some() { ", coloured by class" } else { "" });
    let axes = match lat {
        1 => ("z0", "(none: a 1-D latent)"),
        2 => ("z0", "z1"),
        _ => ("first principal component", "second principal component"),
    };
    crate::plot::scatter(&png, &points, labels.as_deref().map(|l| &l[..n]), &title, axes)?;
    Ok((csv_path, png))
}
