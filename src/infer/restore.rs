//! `elbo restore`: damaged images (masked, noisy) restored by a MAP search over z,
//! z* = argmax_z log p(x_observed | g(z)) + log p(z), x* = g(z*).

use super::OpenModel;
use crate::kernels::Observation;
use crate::step::Net;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

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
    /// Every pixel observed, each replaced by its negative (1 - value: a binary pixel
    /// flipped) with this probability: salt-and-pepper noise.
    Flip(f32),
    /// The images are noisy already (the user's own): restored as they are, scored under
    /// Gaussian noise of the given σ (None: estimated from the encoder's reconstruction)
    /// or flips of the given probability.
    AsIs(NoiseModel),
}

/// The noise already in images restored as they are (`Corruption::AsIs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoiseModel {
    Gaussian(Option<f32>),
    Flip(f32),
}

impl std::str::FromStr for NoiseModel {
    type Err = String;
    /// `gaussian` (σ estimated), `gaussian:SIGMA` or `flip:P`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.parse::<Corruption>() {
            _ if s == "gaussian" => Ok(NoiseModel::Gaussian(None)),
            Ok(Corruption::Noise(sigma)) => Ok(NoiseModel::Gaussian(Some(sigma))),
            Ok(Corruption::Flip(p)) => Ok(NoiseModel::Flip(p)),
            _ => Err(format!("expected gaussian (σ estimated), gaussian:SIGMA or flip:P, got {s:?}")),
        }
    }
}

impl Corruption {
    /// How the search scores the observed values: under the noise that made them
    /// (`estimated`: σ where the images' noise is Gaussian of unknown σ).
    pub fn observation(&self, estimated: f32) -> Observation {
        match self {
            Corruption::Noise(sigma) | Corruption::AsIs(NoiseModel::Gaussian(Some(sigma))) => {
                Observation::Gaussian(*sigma)
            }
            Corruption::AsIs(NoiseModel::Gaussian(None)) => Observation::Gaussian(estimated),
            Corruption::Flip(p) | Corruption::AsIs(NoiseModel::Flip(p)) => Observation::Flip(*p),
            _ => Observation::Clean,
        }
    }

    /// Whether every value is observed (with noise), rather than some unknown.
    pub fn is_noise(&self) -> bool {
        matches!(self, Corruption::Noise(_) | Corruption::Flip(_) | Corruption::AsIs(_))
    }
}

impl std::str::FromStr for Corruption {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "half" => Ok(Corruption::Half),
            "center" => Ok(Corruption::Center),
            _ => {
                if let Some(p) = s.strip_prefix("flip:") {
                    return match p.parse::<f32>() {
                        Ok(p) if p > 0.0 && p < 0.5 => Ok(Corruption::Flip(p)),
                        _ => Err(format!("expected flip:P with P in (0, 0.5), got {s:?}")),
                    };
                }
                if let Some(sigma) = s.strip_prefix("gaussian:") {
                    return match sigma.parse::<f32>() {
                        Ok(v) if v > 0.0 && v.is_finite() => Ok(Corruption::Noise(v)),
                        _ => Err(format!("expected gaussian:SIGMA with SIGMA > 0, got {s:?}")),
                    };
                }
                match s.strip_prefix("random:").map(str::parse::<f32>) {
                    Some(Ok(p)) if (0.0..1.0).contains(&p) => Ok(Corruption::Random(p)),
                    _ => Err(format!(
                        "expected half, center, random:P with P in [0, 1), gaussian:SIGMA or flip:P, got {s:?}"
                    )),
                }
            }
        }
    }
}

/// What `elbo restore` measured: mean squared errors over the unknown values
/// (over all values, for noise), against the original images.
/// (At most `MAX_IMAGES` images a run.)
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub images: usize,
    /// Unknown (or noisy) values scored.
    pub values: usize,
    /// The restoration: x* = g(z*) for masks; for noise on a Bernoulli decoder, each
    /// value's posterior mean E[x | x_observed, z*] under the noise model.
    pub mse_restored: f64,
    /// The decoder's mean at z* alone, g(z*).
    pub mse_decoded: f64,
    /// The decoder at the encoder's mean of the damaged input.
    pub mse_encoder: f64,
    /// The mean test image.
    pub mse_mean_image: f64,
    /// The damaged input itself (noise only; missing values count as 0).
    pub mse_input: f64,
    /// The σ of the Gaussian noise the search assumed (given, or estimated for
    /// `Corruption::AsIs(NoiseModel::Gaussian(None))`).
    pub noise_sigma: Option<f32>,
    pub path: PathBuf,
}

/// `elbo restore`: image restoration by MAP search,
///   z* = argmax_z log p(x_observed | g(z)) + log p(z),   x* = g(z*),
/// by Adam on z from the encoder's mean of the damaged image; each step runs the
/// decoder, the likelihood of the observed values and its backward pass on the GPU.
pub fn restore(
    s: &OpenModel,
    n: usize,
    corruption: &Corruption,
    steps: usize,
    lr: f32,
    seed: u64,
) -> Result<RestoreReport> {
    let c = &s.model.config;
    let d = c.pixels();
    if n == 0 || n > MAX_IMAGES {
        bail!("--n {n}: restore between 1 and {MAX_IMAGES} images");
    }
    if !(lr.is_finite() && lr > 0.0) {
        bail!("--lr {lr}: the search's step size must be a positive number, e.g. 0.05");
    }
    let n = n.min(s.test.len);
    match corruption {
        Corruption::Noise(sigma) if !(*sigma > 0.0 && sigma.is_finite()) => {
            bail!("--noise {sigma}: the noise's standard deviation must be a positive number, e.g. 0.3")
        }
        Corruption::Flip(p) if !(*p > 0.0 && *p < 0.5) => {
            bail!("flip:{p}: the flip probability must be in (0, 0.5), e.g. flip:0.1")
        }
        Corruption::Flip(_) | Corruption::AsIs(NoiseModel::Flip(_))
            if c.likelihood == crate::model::Likelihood::Gaussian =>
        {
            bail!("flip noise corrupts binary pixels, which a Bernoulli decoder models; this model's decoder is Gaussian: use --noise SIGMA")
        }
        _ => {}
    }
    let mut t = s.net(n, 1)?;
    let Damaged { originals, observed, damaged } = damage(s, n, corruption, seed)?;
    let stored = |v: &[f32]| crate::reference::pad_channels(v, n, c.input_shape());
    let (x_st, obs_st) = (stored(&damaged), stored(&observed));
    let lat = c.latent;
    let mulv = t.encode_images(&x_st)?;
    let z0: Vec<f32> = (0..n).flat_map(|r| mulv[r * 2 * lat..r * 2 * lat + lat].to_vec()).collect();
    let encoder_only = s.decode_all(&mut t, &z0)?;
    // noise of unknown σ: the root mean square of the input about its encoder reconstruction
    let estimated = {
        let sq: f64 = damaged.iter().zip(&encoder_only).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        ((sq / damaged.len().max(1) as f64).sqrt() as f32).max(1e-3)
    };
    let obs = corruption.observation(estimated);
    t.set_observation(obs);
    let z = map_search(&mut t, &z0, (&x_st, &obs_st), steps, lr)?;
    let decoded = s.decode_all(&mut t, &z)?;
    let restored: Vec<f32> = if c.likelihood == crate::model::Likelihood::Bernoulli {
        decoded.iter().zip(&damaged).map(|(&mu, &seen)| posterior_mean(mu, seen, obs)).collect()
    } else {
        decoded.clone()
    };
    let noise_sigma = match obs {
        Observation::Gaussian(sigma) => Some(sigma),
        _ => None,
    };
    let mean_image: Vec<f32> = (0..d)
        .map(|v| (0..s.test.len).map(|i| s.test.image(i)[v] as f32 / 255.0).sum::<f32>() / s.test.len as f32)
        .collect();
    let noise = corruption.is_noise();
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
    let (mse_decoded, _) = mse(&|i| decoded[i]);
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
    Ok(RestoreReport {
        images: n,
        values,
        mse_restored,
        mse_decoded,
        mse_encoder,
        mse_mean_image,
        mse_input,
        noise_sigma,
        path,
    })
}

/// The restored value of one pixel that the decoder, at the MAP z, gives mean `mu` and
/// Bernoulli variance mu (1 - mu), observed as `seen` under `corruption`. Under Gaussian
/// noise of σ: the linear least-squares estimate from both, (mu σ² + seen v) / (σ² + v)
/// with v = mu (1 - mu): it trusts the observation where the decoder is unsure and the
/// decoder where the observation is noisier. Elsewhere `mu`: flips and masks leave
/// nothing in a value to average with.
pub fn posterior_mean(mu: f32, seen: f32, obs: Observation) -> f32 {
    match obs {
        Observation::Gaussian(sigma) => {
            let (var, noise) = (mu * (1.0 - mu), sigma * sigma);
            (mu * noise + seen * var) / (noise + var)
        }
        _ => mu,
    }
}

/// The most images one `restore` takes (one batch of the model's kernels).
pub const MAX_IMAGES: usize = 256;

/// The first n test images, which values of them are observed, and the damaged images
/// the search starts from (unknown values 0), all channels-last.
struct Damaged {
    originals: Vec<f32>,
    observed: Vec<f32>,
    damaged: Vec<f32>,
}

fn damage(s: &OpenModel, n: usize, corruption: &Corruption, seed: u64) -> Result<Damaged> {
    let c = &s.model.config;
    let (w, h, ch, d) = (c.width, c.height, c.channels, c.pixels());
    let file_mask: Option<Vec<f32>> = match corruption {
        Corruption::MaskFile(p) => {
            let img = image::open(p).with_context(|| format!("cannot read the mask {}", p.display()))?.into_luma8();
            let img = image::imageops::resize(&img, w as u32, h as u32, image::imageops::FilterType::Nearest);
            Some(img.pixels().map(|v| (v.0[0] > 127) as u32 as f32).collect())
        }
        _ => None,
    };
    let mut out = Damaged {
        originals: Vec::with_capacity(n * d),
        observed: Vec::with_capacity(n * d),
        damaged: Vec::with_capacity(n * d),
    };
    for i in 0..n {
        let img = s.image(i);
        for (v, value) in img.iter().enumerate() {
            let (pixel, y, x) = (v / ch, v / ch / w, v / ch % w);
            let seen = match corruption {
                Corruption::Half => y < h / 2,
                Corruption::Center => !(y >= h / 4 && y < h / 4 + h / 2 && x >= w / 4 && x < w / 4 + w / 2),
                Corruption::Random(p) => crate::rng::rand_uniform(seed as u32, 5, i as u32, pixel as u32) >= *p,
                Corruption::MaskFile(_) => file_mask.as_ref().unwrap()[pixel] > 0.0,
                Corruption::Noise(_) | Corruption::Flip(_) | Corruption::AsIs(_) => true,
            };
            let noisy = match corruption {
                Corruption::Noise(sigma) => {
                    (value + sigma * crate::rng::rand_normal(seed as u32, 6, i as u32, v as u32)).clamp(0.0, 1.0)
                }
                Corruption::Flip(p) => {
                    let flip = crate::rng::rand_uniform(seed as u32, 7, i as u32, v as u32) < *p;
                    if flip {
                        1.0 - value
                    } else {
                        *value
                    }
                }
                _ if seen => *value,
                _ => 0.0,
            };
            out.originals.push(*value);
            out.observed.push(seen as u32 as f32);
            out.damaged.push(noisy);
        }
    }
    if out.observed.iter().all(|&o| o == 0.0) {
        bail!("the mask hides every pixel: there is nothing to restore from");
    }
    if !corruption.is_noise() && out.observed.iter().all(|&o| o > 0.0) {
        bail!("the mask leaves every pixel observed: there is nothing to restore (black pixels of a --mask are the unknown ones)");
    }
    Ok(out)
}

/// z* = argmax_z log p(x_observed | g(z)) + log p(z) from `z0`, by `steps` steps of Adam
/// on -log p(x_observed | g(z)) + |z|^2 / 2 (the prior up to a constant), each gradient
/// through the decoder's backward kernels; `x` and its observed mask as the kernels store them.
fn map_search(t: &mut Net, z0: &[f32], (x, observed): (&[f32], &[f32]), steps: usize, lr: f32) -> Result<Vec<f32>> {
    let mut z = z0.to_vec();
    let (mut m1, mut m2) = (vec![0f32; z.len()], vec![0f32; z.len()]);
    for it in 1..=steps {
        let (_, dz) = t.observed_nll_and_grad(&z, x, observed)?;
        let (b1, b2) = (0.9f32, 0.999f32);
        for j in 0..z.len() {
            let g = dz[j] + z[j];
            m1[j] = b1 * m1[j] + (1.0 - b1) * g;
            m2[j] = b2 * m2[j] + (1.0 - b2) * g * g;
            let step = lr / (1.0 - b1.powi(it as i32)) * m1[j] / ((m2[j] / (1.0 - b2.powi(it as i32))).sqrt() + 1e-8);
            z[j] -= step;
        }
    }
    Ok(z)
}
