//! Using a trained model: sample, reconstruct, manifold, traverse,
//! interpolate, embed and eval. Every command runs the model's encoder and
//! decoder on the GPU through the same kernels and dispatch lists as training.

use crate::gpu::{AdapterChoice, Gpu};
use crate::images::save_grid;
use crate::model::{Model, ModelKind};
use crate::train::{load_dataset, DatasetChoice, TrainOptions};
use crate::trainer::{Hyper, Trainer};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What every command takes: the model, the data it was trained on, the adapter.
#[derive(Clone, Debug)]
pub struct UseOptions {
    /// A run folder (holding model.safetensors) or a .safetensors file.
    pub model: PathBuf,
    pub dataset: DatasetChoice,
    pub data_dir: Option<PathBuf>,
    pub channels_in: usize,
    pub image_size: Option<(usize, usize)>,
    pub test_fraction: f64,
    pub seed: u64,
    /// Where to write [default: beside the model].
    pub out: Option<PathBuf>,
    pub adapter: AdapterChoice,
    pub quiet: bool,
}

/// The checkpoint file of `--model`, and the folder outputs go to by default.
pub fn model_paths(given: &Path) -> Result<(PathBuf, PathBuf)> {
    if given.is_dir() {
        let file = given.join("model.safetensors");
        if !file.exists() {
            bail!(
                "{} has no model.safetensors; pass a run folder written by `elbo train` or a .safetensors file",
                given.display()
            );
        }
        return Ok((file, given.to_path_buf()));
    }
    if !given.exists() {
        bail!("{} does not exist; pass a run folder written by `elbo train` or its model.safetensors", given.display());
    }
    let dir = given.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok((given.to_path_buf(), dir))
}

/// An opened model with the test set it is used on.
pub struct Session {
    pub gpu: Gpu,
    pub model: Model,
    pub train: crate::data::Dataset,
    pub test: crate::data::Dataset,
    pub out_dir: PathBuf,
}

impl Session {
    pub fn open(opts: &UseOptions) -> Result<Session> {
        let (file, out_dir) = model_paths(&opts.model)?;
        let model = Model::load(&file)?;
        let c = &model.config;
        let load = TrainOptions {
            dataset: opts.dataset.clone(),
            data_dir: opts.data_dir.clone(),
            channels_in: c.channels,
            image_size: opts
                .image_size
                .or(Some((c.width, c.height)))
                .filter(|_| matches!(opts.dataset, DatasetChoice::Folder(_))),
            test_fraction: opts.test_fraction,
            seed: opts.seed,
            arch: c.arch,
            ..Default::default()
        };
        let (train, test, _) = load_dataset(&load)?;
        if (test.width, test.height, test.channels) != (c.width, c.height, c.channels) {
            bail!(
                "the model was trained on {}x{} images with {} channel(s) but the data is {}x{} with {}; pass the --dataset (and --image-size) it was trained with",
                c.width, c.height, c.channels, test.width, test.height, test.channels
            );
        }
        let gpu = Gpu::new(&opts.adapter)?;
        let out_dir = opts.out.clone().unwrap_or(out_dir);
        std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
        Ok(Session { gpu, model, train, test, out_dir })
    }

    /// A trainer over the test set with `samples` rows per image (only its forward lists are used).
    pub fn trainer(&self, batch: usize, samples: usize) -> Result<Trainer<'_>> {
        self.trainer_binarized(batch, samples, false)
    }

    /// The same, scoring stochastically binarized images when `binarize`.
    pub fn trainer_binarized(&self, batch: usize, samples: usize, binarize: bool) -> Result<Trainer<'_>> {
        let hyper = Hyper { samples, binarize, ..Hyper::new(1e-3, 1) };
        Trainer::new(&self.gpu, self.model.clone(), hyper, batch, &self.test, &self.test)
    }

    fn save(&self, name: &str, tiles: &[&[f32]], cols: usize) -> Result<PathBuf> {
        let c = &self.model.config;
        let path = self.out_dir.join(name);
        let scale = (112 / c.width.max(c.height)).clamp(2, 8);
        save_grid(&path, tiles, c.width, c.height, c.channels, cols, scale)?;
        Ok(path)
    }

    /// Decodes any number of codes (n, L), in chunks the textures hold.
    pub fn decode_all(&self, t: &mut Trainer, z: &[f32]) -> Result<Vec<f32>> {
        let lat = self.model.config.latent;
        let mut out = Vec::new();
        for chunk in z.chunks(t.z.rows * lat) {
            out.extend(t.decode(chunk)?);
        }
        Ok(out)
    }

    /// Posterior means (n, L) and log-variances of the first `n` test images.
    pub fn encode(&self, t: &mut Trainer, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mut mu, mut lv) = (Vec::new(), Vec::new());
        let lat = self.model.config.latent;
        for b in 0..n.div_ceil(t.batch) {
            let rows = t.eval_rows(b, 0.0)?;
            mu.extend(rows.mu);
            lv.extend(rows.logvar);
        }
        mu.truncate(n * lat);
        lv.truncate(n * lat);
        Ok((mu, lv))
    }

    fn image(&self, i: usize) -> Vec<f32> {
        self.test.image(i).iter().map(|&b| b as f32 / 255.0).collect()
    }
}

/// `elbo sample`: n images decoded from z ~ N(0, T^2 I).
pub fn sample(s: &Session, n: usize, temperature: f32, seed: u64) -> Result<PathBuf> {
    let lat = s.model.config.latent;
    let z: Vec<f32> =
        (0..n * lat).map(|i| temperature * crate::rng::rand_normal(seed as u32, 3, 0, i as u32)).collect();
    let mut t = s.trainer(128, 1)?;
    let images = s.decode_all(&mut t, &z)?;
    let d = s.model.config.pixels();
    let tiles: Vec<&[f32]> = images.chunks(d).collect();
    s.save("samples.png", &tiles, 8)
}

/// `elbo reconstruct`: test images, their reconstructions from the posterior mean, and from a sample of z.
pub fn reconstruct(s: &Session, n: usize) -> Result<PathBuf> {
    let n = n.min(s.test.len).max(1);
    let mut t = s.trainer(n.min(128), 1)?;
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
pub fn manifold(s: &Session, grid: usize, dims: (usize, usize)) -> Result<PathBuf> {
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
    let mut t = s.trainer(128, 1)?;
    let images = s.decode_all(&mut t, &z)?;
    let tiles: Vec<&[f32]> = images.chunks(s.model.config.pixels()).collect();
    s.save("manifold.png", &tiles, grid)
}

/// Average KL per latent dimension over the first `n` test images, and the dimensions by it, largest first.
pub fn kl_per_dimension(s: &Session, t: &mut Trainer, n: usize) -> Result<(Vec<f32>, Vec<usize>)> {
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
pub fn traverse(s: &Session, index: usize, top: usize, steps: usize) -> Result<(PathBuf, Vec<(usize, f32)>)> {
    let lat = s.model.config.latent;
    if index >= s.test.len {
        bail!("--index {index} is past the {} test images", s.test.len);
    }
    let mut t = s.trainer(128, 1)?;
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
pub fn interpolate(s: &Session, from: usize, to: usize, steps: usize) -> Result<PathBuf> {
    let lat = s.model.config.latent;
    if from.max(to) >= s.test.len {
        bail!("--from and --to must be below the {} test images", s.test.len);
    }
    let mut t = s.trainer(128, 1)?;
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
pub fn embed(s: &Session, limit: Option<usize>) -> Result<(PathBuf, PathBuf)> {
    let lat = s.model.config.latent;
    let n = limit.unwrap_or(s.test.len).min(s.test.len);
    let mut t = s.trainer(128, 1)?;
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
    let csv_path = s.out_dir.join("embedding.csv");
    crate::write_atomic(&csv_path, csv.as_bytes())?;
    let points = crate::plot::project_2d(&mu, lat);
    let png = s.out_dir.join("embedding.png");
    let title =
        if lat == 2 { "latent space (z0, z1)" } else { "first two principal components of the posterior means" };
    crate::plot::scatter(&png, &points, labels.as_deref().map(|l| &l[..n]), title)?;
    Ok((csv_path, png))
}

/// What `elbo eval` measured, in nats per image.
#[derive(Clone, Debug)]
pub struct EvalReport {
    pub images: usize,
    pub elbo: f64,
    pub recon: f64,
    pub kl: f64,
    pub iw_samples: usize,
    pub log_px: f64,
    pub bits_per_dim: f64,
}

/// log sum_k exp(v_k), without overflow.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// `elbo eval`: the test set's ELBO with its terms, and the importance-weighted estimate
/// log p(x) ~ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x) (Burda et al., 2015).
/// With `binarize`, each test image is binarized at random once (the same for its K samples),
/// the literature's setting for models trained with dynamic binarization.
pub fn eval(
    s: &Session,
    iw_samples: usize,
    limit: Option<usize>,
    binarize: bool,
    progress: &dyn Fn(usize, usize),
) -> Result<EvalReport> {
    if s.model.config.kind == ModelKind::Ae {
        bail!("eval estimates a VAE's likelihood; this model is a plain autoencoder (its kind is ae)");
    }
    let k = iw_samples.max(1);
    let n = limit.unwrap_or(s.test.len).min(s.test.len);
    let lat = s.model.config.latent;
    // rows: images times K samples, up to about 1024 rows a batch
    let batch = (1024 / k).clamp(1, 128);
    let mut t = s.trainer_binarized(batch, k, binarize)?;
    let (mut recon, mut kl, mut log_px) = (0f64, 0f64, 0f64);
    for b in 0..n.div_ceil(batch) {
        let rows = t.eval_rows(b, 1.0)?;
        let images = batch.min(n - b * batch);
        for i in 0..images {
            let mut w = Vec::with_capacity(k);
            for r in i * k..(i + 1) * k {
                let mut log_ratio = 0f64; // log p(z) - log q(z|x)
                for j in 0..lat {
                    let (m, lv, z) =
                        (rows.mu[r * lat + j] as f64, rows.logvar[r * lat + j] as f64, rows.z[r * lat + j] as f64);
                    let eps = (z - m) * (-0.5 * lv).exp();
                    log_ratio += 0.5 * (lv + eps * eps - z * z);
                }
                w.push(-(rows.recon[r] as f64) + log_ratio);
                recon += rows.recon[r] as f64 / k as f64;
                kl += rows.kl[r] as f64 / k as f64;
            }
            log_px += log_sum_exp(&w) - (k as f64).ln();
        }
        progress((b * batch + images).min(n), n);
    }
    let nf = n as f64;
    let d = s.model.config.pixels() as f64;
    Ok(EvalReport {
        images: n,
        elbo: -(recon + kl) / nf,
        recon: recon / nf,
        kl: kl / nf,
        iw_samples: k,
        log_px: log_px / nf,
        bits_per_dim: -log_px / nf / (d * std::f64::consts::LN_2),
    })
}

/// How `elbo restore` damages the test images.
#[derive(Clone, Debug, PartialEq)]
pub enum Corruption {
    /// The bottom half is unknown.
    Half,
    /// A centred square of half the side is unknown.
    Center,
    /// Each pixel is unknown with this probability.
    Random(f32),
    /// A PNG mask: white (> 127) observed, black unknown; resized to the model's size.
    MaskFile(PathBuf),
    /// Every pixel observed with Gaussian noise of this standard deviation added (clamped to [0, 1]).
    Noise(f32),
}

impl std::str::FromStr for Corruption {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "half" => Ok(Corruption::Half),
            "center" => Ok(Corruption::Center),
            _ => match s.strip_prefix("random:").map(str::parse::<f32>) {
                Some(Ok(p)) if (0.0..1.0).contains(&p) => Ok(Corruption::Random(p)),
                _ => Err(format!("expected half, center or random:P with P in [0, 1), got {s:?}")),
            },
        }
    }
}

/// What `elbo restore` measured: mean squared errors over the unknown values
/// (over all values, for noise), against the original images.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub images: usize,
    /// Unknown (or noisy) values scored.
    pub values: usize,
    /// The MAP restoration x* = g(z*).
    pub mse_restored: f64,
    /// The decoder at the encoder's mean of the damaged input.
    pub mse_encoder: f64,
    /// The mean test image.
    pub mse_mean_image: f64,
    /// The damaged input itself (noise only; missing values count as 0).
    pub mse_input: f64,
    pub path: PathBuf,
}

/// `elbo restore`: image restoration by MAP search,
///   z* = argmax_z log p(x_observed | g(z)) + log p(z),   x* = g(z*),
/// by Adam on z from the encoder's mean of the damaged image; each step runs the
/// decoder, the likelihood of the observed values and its backward pass on the GPU.
pub fn restore(
    s: &Session,
    n: usize,
    corruption: &Corruption,
    steps: usize,
    lr: f32,
    seed: u64,
) -> Result<RestoreReport> {
    let c = &s.model.config;
    let (w, h, ch) = (c.width, c.height, c.channels);
    let d = c.pixels();
    let n = n.clamp(1, s.test.len.min(128));
    let mut t = s.trainer(n, 1)?;
    let shape = c.input_shape();
    // observed masks and damaged inputs, values channels-last
    let file_mask: Option<Vec<f32>> = match corruption {
        Corruption::MaskFile(p) => {
            let img = image::open(p).with_context(|| format!("cannot read the mask {}", p.display()))?.into_luma8();
            let img = image::imageops::resize(&img, w as u32, h as u32, image::imageops::FilterType::Nearest);
            Some(img.pixels().map(|v| (v.0[0] > 127) as u32 as f32).collect())
        }
        _ => None,
    };
    let mut originals = Vec::with_capacity(n * d);
    let mut observed = Vec::with_capacity(n * d);
    let mut damaged = Vec::with_capacity(n * d);
    for i in 0..n {
        let img = s.image(i);
        for (v, value) in img.iter().enumerate() {
            let (pixel, y, x) = (v / ch, v / ch / w, v / ch % w);
            let seen = match corruption {
                Corruption::Half => y < h / 2,
                Corruption::Center => !(y >= h / 4 && y < h / 4 + h / 2 && x >= w / 4 && x < w / 4 + w / 2),
                Corruption::Random(p) => crate::rng::rand_uniform(seed as u32, 5, i as u32, pixel as u32) >= *p,
                Corruption::MaskFile(_) => file_mask.as_ref().unwrap()[pixel] > 0.0,
                Corruption::Noise(_) => true,
            };
            let noisy = match corruption {
                Corruption::Noise(sigma) => {
                    (value + sigma * crate::rng::rand_normal(seed as u32, 6, i as u32, v as u32)).clamp(0.0, 1.0)
                }
                _ if seen => *value,
                _ => 0.0,
            };
            originals.push(*value);
            observed.push(seen as u32 as f32);
            damaged.push(noisy);
        }
    }
    if observed.iter().all(|&o| o == 0.0) {
        bail!("the mask hides every pixel: there is nothing to restore from");
    }
    let stored = |v: &[f32]| crate::reference::pad_channels(v, n, shape);
    let (x_st, obs_st) = (stored(&damaged), stored(&observed));
    let lat = c.latent;
    let mulv = t.encode_images(&x_st)?;
    let z0: Vec<f32> = (0..n).flat_map(|r| mulv[r * 2 * lat..r * 2 * lat + lat].to_vec()).collect();
    // Adam on z for -log p(x_observed | g(z)) + |z|^2 / 2 (the prior up to a constant)
    let mut z = z0.clone();
    let (mut m1, mut m2) = (vec![0f32; z.len()], vec![0f32; z.len()]);
    for it in 1..=steps {
        let (_, dz) = t.observed_nll_and_grad(&z, &x_st, &obs_st)?;
        let (b1, b2) = (0.9f32, 0.999f32);
        for j in 0..z.len() {
            let g = dz[j] + z[j];
            m1[j] = b1 * m1[j] + (1.0 - b1) * g;
            m2[j] = b2 * m2[j] + (1.0 - b2) * g * g;
            let step = lr / (1.0 - b1.powi(it as i32)) * m1[j] / ((m2[j] / (1.0 - b2.powi(it as i32))).sqrt() + 1e-8);
            z[j] -= step;
        }
    }
    let restored = s.decode_all(&mut t, &z)?;
    let encoder_only = s.decode_all(&mut t, &z0)?;
    let mean_image: Vec<f32> = (0..d)
        .map(|v| (0..s.test.len).map(|i| s.test.image(i)[v] as f32 / 255.0).sum::<f32>() / s.test.len as f32)
        .collect();
    let noise = matches!(corruption, Corruption::Noise(_));
    let scored = |i: usize| noise || observed[i] == 0.0;
    let mse = |pred: &dyn Fn(usize) -> f32| {
        let (mut sum, mut count) = (0f64, 0usize);
        for i in (0..n * d).filter(|&i| scored(i)) {
            sum += ((pred(i) - originals[i]) as f64).powi(2);
            count += 1;
        }
        (sum / count.max(1) as f64, count)
    };
    let (mse_restored, values) = mse(&|i| restored[i]);
    let (mse_encoder, _) = mse(&|i| encoder_only[i]);
    let (mse_mean_image, _) = mse(&|i| mean_image[i % d]);
    let (mse_input, _) = mse(&|i| damaged[i]);
    // the figure: original, damaged (unknown values grey), encoder only, restored; two images a row
    let shown: Vec<f32> =
        damaged.iter().zip(&observed).map(|(v, o)| if *o > 0.0 || noise { *v } else { 0.5 }).collect();
    let mut tiles: Vec<&[f32]> = Vec::new();
    for i in 0..n {
        for v in [&originals, &shown, &encoder_only, &restored] {
            tiles.push(&v[i * d..(i + 1) * d]);
        }
    }
    let path = s.save("restore.png", &tiles, 8)?;
    Ok(RestoreReport { images: n, values, mse_restored, mse_encoder, mse_mean_image, mse_input, path })
}

/// What `elbo probe` measured: test accuracy of a softmax regression trained on
/// the VAE's posterior means, and of the same on raw pixels.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub train_images: usize,
    pub test_images: usize,
    pub latent_accuracy: f64,
    pub latent_loss: f64,
    pub pixel_accuracy: f64,
    pub pixel_loss: f64,
    /// With `--finetune`: the encoder plus a new dense layer, trained end to end.
    pub finetuned: Option<(f64, f64)>,
}

/// Posterior means (n, L) of every image of `data`.
fn encode_dataset(s: &Session, data: &crate::data::Dataset) -> Result<Vec<f32>> {
    let hyper = Hyper::new(1e-3, 1);
    let mut t = Trainer::new(&s.gpu, s.model.clone(), hyper, 256, data, data)?;
    let lat = s.model.config.latent;
    let mut mu = Vec::with_capacity(data.len * lat);
    for b in 0..data.len.div_ceil(256) {
        mu.extend(t.eval_rows(b, 0.0)?.mu);
    }
    Ok(mu)
}

/// `elbo probe`: the encoder's features used for supervision. A linear softmax
/// classifier is trained on the GPU (Adam, `epochs` passes) on the training set's
/// posterior means, and the same on raw pixels; both are scored on the test set.
pub fn probe(
    s: &Session,
    epochs: usize,
    lr: f32,
    seed: u64,
    finetune: bool,
    progress: &dyn Fn(&str),
) -> Result<ProbeReport> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let (Some(ytr), Some(yte)) = (s.train.labels.as_ref(), s.test.labels.as_ref()) else {
        bail!("probe needs class labels, and this dataset has none (MNIST has them)");
    };
    let classes = ytr.iter().chain(yte).copied().max().unwrap_or(0) as usize + 1;
    let pixels = |d: &crate::data::Dataset| -> Vec<f32> { d.pixels.iter().map(|&b| b as f32 / 255.0).collect() };
    progress("encoding the training and test sets");
    let (ftr, fte) = (encode_dataset(s, &s.train)?, encode_dataset(s, &s.test)?);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut run = |name: &str, k: usize, xtr: &[f32], xte: &[f32]| -> Result<(f64, f64)> {
        let mut p = crate::probe::LinearProbe::new(&s.gpu, k, classes, 256, lr)?;
        let mut order: Vec<usize> = (0..s.train.len).collect();
        for e in 1..=epochs {
            order.shuffle(&mut rng);
            p.train_epoch(xtr, ytr, &order)?;
            progress(&format!("{name}: epoch {e}/{epochs}"));
        }
        p.evaluate(xte, yte)
    };
    let lat = s.model.config.latent;
    let (latent_loss, latent_accuracy) = run("posterior means", lat, &ftr, &fte)?;
    let d = s.model.config.pixels();
    let (pixel_loss, pixel_accuracy) = run("raw pixels", d, &pixels(&s.train), &pixels(&s.test))?;
    let finetuned = if finetune {
        let mut cl = crate::finetune::Classifier::new(&s.gpu, &s.model, classes, 128, 1e-3, &s.train, &s.test, seed)?;
        for e in 1..=epochs {
            let mut order: Vec<u32> = (0..s.train.len as u32).collect();
            order.shuffle(&mut rng);
            cl.train_epoch(&order, ytr)?;
            progress(&format!("fine-tuned encoder: epoch {e}/{epochs}"));
        }
        let (loss, acc) = cl.evaluate(yte)?;
        Some((acc, loss))
    } else {
        None
    };
    Ok(ProbeReport {
        train_images: s.train.len,
        test_images: s.test.len,
        latent_accuracy,
        latent_loss,
        pixel_accuracy,
        pixel_loss,
        finetuned,
    })
}
