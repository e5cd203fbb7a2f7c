//! `elbo eval`: the test set's ELBO and its importance-weighted log-likelihood.

use super::OpenModel;
use crate::model::ModelKind;
use crate::step::ForwardOptions;
use anyhow::{bail, Result};

/// What `elbo eval` measured, in nats per image.
#[derive(Clone, Debug)]
pub struct EvalReport {
    pub images: usize,
    pub elbo: f64,
    pub recon: f64,
    pub kl: f64,
    pub iw_samples: usize,
    pub log_px: f64,
    /// The standard error of `log_px` as an average over the images: their estimates'
    /// standard deviation over sqrt(images) (0 for one image).
    pub log_px_se: f64,
    /// Each image's estimate of log p(x), in test-set order.
    pub per_image: Vec<f64>,
    pub bits_per_dim: f64,
    /// -log p(x|z) with z the posterior mean (no sampling: a deterministic figure that an
    /// independent evaluation can match to the last digits), and that plus the KL.
    pub recon_at_mean: f64,
    pub loss_at_mean: f64,
    /// A Gaussian decoder's: log P(x) of the 8-bit image, its density integrated over
    /// each value's bin (`discretized_nll`), with the same draws as `log_px`; its standard
    /// error, and bits per dimension (never negative).
    pub discrete: Option<(f64, f64, f64)>,
}

/// erfc(x) in f64: from the Maclaurin series of erf below 3, from the continued
/// fraction erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...))))
/// above, relative error near f64's.
pub fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 3.0 {
        // erf(x) = 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        return 1.0 - sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    // the continued fraction from its tail (60 levels: ample above 3)
    let mut f = x;
    for k in (1..=60).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// P(t > a) for a standard normal t.
fn upper_tail(a: f64) -> f64 {
    0.5 * erfc(a / std::f64::consts::SQRT_2)
}

/// -log P(byte) of a Gaussian decoder's value with mean sigmoid(`mean`) and log-variance
/// LOGVAR_MID + LOGVAR_HALF tanh(`raw_logvar`) (elbo.wgsl's), for an 8-bit value read as
/// byte / 255: the density's mass over the value's bin, [byte - 1/2, byte + 1/2] / 255,
/// the end bins reaching to -inf and +inf, so the 256 probabilities add up to 1. Each
/// difference of normal CDFs is taken from the tails on the bin's side of the mean.
pub fn discretized_nll(byte: u8, mean: f32, raw_logvar: f32) -> f64 {
    let mu = 1.0 / (1.0 + (-(mean as f64)).exp());
    let lv = crate::model::LOGVAR_MID as f64 + crate::model::LOGVAR_HALF as f64 * (raw_logvar as f64).tanh();
    let sd = (0.5 * lv).exp();
    let lo = if byte == 0 { f64::NEG_INFINITY } else { ((byte as f64 - 0.5) / 255.0 - mu) / sd };
    let hi = if byte == 255 { f64::INFINITY } else { ((byte as f64 + 0.5) / 255.0 - mu) / sd };
    let p = if lo >= 0.0 {
        upper_tail(lo) - upper_tail(hi)
    } else if hi <= 0.0 {
        upper_tail(-hi) - upper_tail(-lo)
    } else {
        1.0 - upper_tail(-lo) - upper_tail(hi)
    };
    -p.max(f64::MIN_POSITIVE).ln()
}

/// The random stream of eval's draws of z (the host's; the GPU's streams are rng's).
const STREAM_DRAWS: u32 = 0x1e7a;

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
    s: &OpenModel,
    iw_samples: usize,
    limit: Option<usize>,
    binarize: bool,
    progress: &dyn Fn(usize, usize),
) -> Result<EvalReport> {
    if s.model.config.kind == ModelKind::Ae {
        bail!("eval estimates a VAE's likelihood; this model is a plain autoencoder (its kind is ae)");
    }
    if iw_samples == 0 {
        bail!("--iw-samples 0: the estimate needs at least 1 importance sample an image (the literature uses 5000)");
    }
    if limit == Some(0) {
        bail!("--limit 0 evaluates no image; give at least 1, or leave it out for the whole test set");
    }
    let k = iw_samples;
    let n = limit.unwrap_or(s.test.len).min(s.test.len);
    let c = &s.model.config;
    let lat = c.latent;
    // image i as it is scored, in the stored layout: binarized at random once where asked,
    // the same for the encoder and for all its K draws
    let image = |i: usize| -> Vec<f32> {
        let mut v = s.image(i);
        if binarize {
            for (j, p) in v.iter_mut().enumerate() {
                *p = (crate::rng::rand_uniform(1, crate::rng::STREAM_BINARIZE, i as u32, j as u32) < *p) as u32 as f32;
            }
        }
        crate::reference::pad_channels(&v, 1, c.input_shape())
    };
    // the encoder once per image, and the loss with z = mu: a deterministic figure
    let per = 128.min(n);
    let mut one = s.net_over(&s.test, ForwardOptions { batch: per, samples: 1, binarize: false, seed: 1 })?;
    let (mut mu, mut lv) = (Vec::with_capacity(n * lat), Vec::with_capacity(n * lat));
    let (mut kl, mut recon_at_mean) = (0f64, 0f64);
    for first in (0..n).step_by(per) {
        let x: Vec<f32> = (first..n.min(first + per)).flat_map(image).collect();
        let mulv = one.encode_images(&x)?;
        let rows = x.len() / c.input_shape().cols();
        let z: Vec<f32> = (0..rows).flat_map(|r| mulv[r * 2 * lat..r * 2 * lat + lat].to_vec()).collect();
        recon_at_mean += one.score(&z, &x)?.iter().map(|&v| v as f64).sum::<f64>();
        for r in 0..rows {
            for j in 0..lat {
                let (m, v) = (mulv[r * 2 * lat + j] as f64, mulv[r * 2 * lat + lat + j] as f64);
                kl += -0.5 * (1.0 + v - m * m - v.exp());
            }
            mu.extend_from_slice(&mulv[r * 2 * lat..r * 2 * lat + lat]);
            lv.extend_from_slice(&mulv[r * 2 * lat + lat..(r + 1) * 2 * lat]);
        }
    }
    drop(one);
    // then the decoder alone over K draws of each image's q(z|x): up to about 1024 rows a
    // call, a single image's K rows past that
    let batch = (1024 / k).clamp(1, 128);
    let mut t = s.net_over(&s.test, ForwardOptions { batch, samples: k, binarize: false, seed: 1 })?;
    let mut recon = 0f64;
    let mut per_image = Vec::with_capacity(n);
    // a Gaussian decoder's discretised likelihood over the same draws
    let gaussian = c.likelihood == crate::model::Likelihood::Gaussian;
    let lay = c.loss_layout();
    let mut per_image_discrete = Vec::new();
    for first in (0..n).step_by(batch) {
        let images = batch.min(n - first);
        let (mut z, mut x, mut log_ratio) = (Vec::new(), Vec::new(), Vec::new());
        for i in first..first + images {
            let xi = image(i);
            for draw in 0..k {
                // log p(z) - log q(z|x) at z = mu + sigma eps
                let mut lr = 0f64;
                for j in 0..lat {
                    let (m, v) = (mu[i * lat + j], lv[i * lat + j]);
                    let eps = crate::rng::rand_normal(1, STREAM_DRAWS, i as u32, (draw * lat + j) as u32);
                    let zj = m + (0.5 * v).exp() * eps;
                    z.push(zj);
                    let (e, zz) = (eps as f64, zj as f64);
                    lr += 0.5 * (v as f64 + e * e - zz * zz);
                }
                log_ratio.push(lr);
                x.extend_from_slice(&xi);
            }
        }
        let rows = t.score(&z, &x)?;
        if gaussian {
            let out = t.scored_outputs(images * k)?;
            for i in 0..images {
                let bytes = s.test.image(first + i);
                let w: Vec<f64> = (i * k..(i + 1) * k)
                    .map(|r| {
                        let o = &out[r * lay.o_cols..(r + 1) * lay.o_cols];
                        let nll: f64 = (0..lay.pixels)
                            .flat_map(|p| (0..lay.channels).map(move |ch| (p, ch)))
                            .map(|(p, ch)| {
                                let byte = bytes[p * lay.channels + ch];
                                discretized_nll(byte, o[lay.mean_col(p, ch)], o[lay.logvar_col(p, ch)])
                            })
                            .sum();
                        -nll + log_ratio[r]
                    })
                    .collect();
                per_image_discrete.push(log_sum_exp(&w) - (k as f64).ln());
            }
        }
        for i in 0..images {
            let w: Vec<f64> = (i * k..(i + 1) * k).map(|r| -(rows[r] as f64) + log_ratio[r]).collect();
            recon += rows[i * k..(i + 1) * k].iter().map(|&v| v as f64).sum::<f64>() / k as f64;
            per_image.push(log_sum_exp(&w) - (k as f64).ln());
        }
        progress(first + images, n);
    }
    let nf = n as f64;
    let d = s.model.config.pixels() as f64;
    let (log_px, log_px_se) = mean_and_se(&per_image);
    Ok(EvalReport {
        images: n,
        elbo: -(recon + kl) / nf,
        recon: recon / nf,
        kl: kl / nf,
        iw_samples: k,
        log_px,
        log_px_se,
        per_image,
        bits_per_dim: -log_px / (d * std::f64::consts::LN_2),
        recon_at_mean: recon_at_mean / nf,
        loss_at_mean: (recon_at_mean + kl) / nf,
        discrete: gaussian.then(|| {
            let (mean, se) = mean_and_se(&per_image_discrete);
            (mean, se, -mean / (d * std::f64::consts::LN_2))
        }),
    })
}

/// The mean of `v` and its standard error (0 for one value).
fn mean_and_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, if v.len() > 1 { (var / n).sqrt() } else { 0.0 })
}
