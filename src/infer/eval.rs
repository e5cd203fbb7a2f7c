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
    let lat = s.model.config.latent;
    // rows: images times K samples, up to about 1024 rows a batch
    let batch = (1024 / k).clamp(1, 128);
    let mut t = s.net_over(&s.test, ForwardOptions { batch, samples: k, binarize, seed: 1 })?;
    let (mut recon, mut kl, mut recon_at_mean) = (0f64, 0f64, 0f64);
    let mut per_image = Vec::with_capacity(n);
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
            per_image.push(log_sum_exp(&w) - (k as f64).ln());
        }
        progress((b * batch + images).min(n), n);
    }
    // the same images with z = mu, after the sampled passes (whose random streams stay as
    // they were without this one)
    for b in 0..n.div_ceil(batch) {
        let images = batch.min(n - b * batch);
        let at_mean = t.eval_rows(b, 0.0)?;
        recon_at_mean += (0..images).map(|i| at_mean.recon[i * k] as f64).sum::<f64>();
    }
    let nf = n as f64;
    let d = s.model.config.pixels() as f64;
    let log_px = per_image.iter().sum::<f64>();
    let mean = log_px / nf;
    let var = per_image.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (nf - 1.0).max(1.0);
    let log_px_se = if n > 1 { (var / nf).sqrt() } else { 0.0 };
    Ok(EvalReport {
        images: n,
        elbo: -(recon + kl) / nf,
        recon: recon / nf,
        kl: kl / nf,
        iw_samples: k,
        log_px: log_px / nf,
        log_px_se,
        per_image,
        bits_per_dim: -log_px / nf / (d * std::f64::consts::LN_2),
        recon_at_mean: recon_at_mean / nf,
        loss_at_mean: (recon_at_mean + kl) / nf,
    })
}
