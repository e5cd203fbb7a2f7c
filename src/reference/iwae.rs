//! References of the importance-weighted objective (iwae.wgsl): K rows an image,
//! log w_k = -(recon_k + beta kl_k) with kl_k = log q(z_k|x) - log p(z_k) at the draw,
//! the loss of an image -log (1/K) sum_k w_k, and its gradient each row's weighted by
//! w~_k / images.
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use super::loss::{eps, value_nll};
use crate::kernels::Step;

/// log q(z|x) - log p(z) of row r at its draw z = mu + exp(lv / 2) noise eps, written
/// from the two densities (mulv = [mu | logvar] (m, 2L)).
pub fn sampled_kl(mulv: &[f32], latent: usize, r: usize, step: &Step) -> f64 {
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    (0..latent)
        .map(|j| {
            let mu = mulv[r * 2 * latent + j] as f64;
            let lv = mulv[r * 2 * latent + latent + j] as f64;
            let sd = (0.5 * lv).exp();
            let z = mu + sd * (step.noise * eps(step, latent, r, j)) as f64;
            let log_q = -half_log_2pi - sd.ln() - (z - mu).powi(2) / (2.0 * sd * sd);
            let log_p = -half_log_2pi - z * z / 2.0;
            log_q - log_p
        })
        .sum()
}

/// iwae_weights: from each row's recon (`image_loss`'s first component, m rows), per row
/// (recon, sampled kl), its scale c = w~_k / images (zero past the live rows) and the
/// history slot (recon sum, kl sum, rows, K times the sum of the images' losses).
pub fn iwae_weights(
    image_loss: &[[f32; 2]],
    mulv: &[f32],
    m: usize,
    latent: usize,
    k: usize,
    step: &Step,
) -> (Vec<[f32; 2]>, Vec<f32>, [f32; 4]) {
    let images = (step.rows as usize).min(m) / k;
    let mut out = image_loss.to_vec();
    let mut scale = vec![0f32; m];
    let (mut recon_sum, mut kl_sum, mut loss_sum) = (0f64, 0f64, 0f64);
    for i in 0..images {
        let rows = i * k..(i + 1) * k;
        let log_w: Vec<f64> = rows
            .clone()
            .map(|r| {
                let kl = sampled_kl(mulv, latent, r, step);
                out[r] = [image_loss[r][0], kl as f32];
                recon_sum += image_loss[r][0] as f64;
                kl_sum += kl;
                -(image_loss[r][0] as f64 + step.beta as f64 * kl)
            })
            .collect();
        let top = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = log_w.iter().map(|lw| (lw - top).exp()).sum();
        loss_sum += -(top + (total / k as f64).ln());
        for (r, lw) in rows.zip(&log_w) {
            scale[r] = ((lw - top).exp() / total / images as f64) as f32;
        }
    }
    let slot = [recon_sum as f32, kl_sum as f32, (images * k) as f32, (k as f64 * loss_sum) as f32];
    (out, scale, slot)
}

/// elbo_backward_weighted: d out of elbo_forward_backward (Bernoulli or Gaussian, every
/// value observed) with row r's gradient scaled by `scale[r]` in place of 1 / rows.
pub fn elbo_backward_weighted(
    dec_out: &[f32],
    x: &[f32],
    scale: &[f32],
    m: usize,
    lay: &crate::model::LossLayout,
) -> Vec<f32> {
    let x_cols = lay.pixels * lay.x_cp;
    let mut d_out = vec![0f32; m * lay.o_cols];
    for r in 0..m {
        for pixel in 0..lay.pixels {
            for ch in 0..lay.channels {
                let (mc, lc) = (lay.mean_col(pixel, ch), lay.logvar_col(pixel, ch));
                let raw = if lay.gaussian { dec_out[r * lay.o_cols + lc] } else { 0.0 };
                let xv = x[r * x_cols + pixel * lay.x_cp + ch];
                let (_, d_mean, d_raw) = value_nll(xv, dec_out[r * lay.o_cols + mc], raw, lay.gaussian);
                d_out[r * lay.o_cols + mc] = d_mean * scale[r];
                if lay.gaussian {
                    d_out[r * lay.o_cols + lc] = d_raw * scale[r];
                }
            }
        }
    }
    d_out
}

/// iwae_reparam_backward: d[mu | logvar] (m, 2L) from dz (m, L), weighted by `scale`:
/// the gradient through z, plus beta scale[r] times that of row r's sampled KL.
pub fn iwae_reparam_backward(
    mulv: &[f32],
    dz: &[f32],
    scale: &[f32],
    m: usize,
    latent: usize,
    step: &Step,
) -> Vec<f32> {
    let mut d = vec![0f32; m * 2 * latent];
    for r in 0..m {
        let c = step.beta * scale[r];
        for j in 0..latent {
            let mu = mulv[r * 2 * latent + j];
            let sd = (0.5 * mulv[r * 2 * latent + latent + j]).exp();
            let e = step.noise * eps(step, latent, r, j);
            let z = mu + sd * e;
            // d kl / d mu = z; d kl / d lv = z sd e / 2 - 1/2
            let g = dz[r * latent + j] + c * z;
            d[r * 2 * latent + j] = g;
            d[r * 2 * latent + latent + j] = g * 0.5 * sd * e - 0.5 * c;
        }
    }
    d
}

/// The whole model's importance-weighted loss (mean over the live images of
/// -log (1/K) sum_k w_k, `k` rows an image) and its flat gradient, composed from the
/// references as the training step composes the kernels; `x` in the model's stored input
/// layout (m rows, each image repeated over its K rows).
pub fn iwae_loss_and_grads(model: &crate::model::Model, x: &[f32], m: usize, k: usize, step: &Step) -> (f64, Vec<f32>) {
    use super::model::{vae_backward, vae_forward};
    let lat = model.config.latent;
    let f = vae_forward(model, x, m, step);
    let loss_layout = model.config.loss_layout();
    let (_, image_loss) = super::elbo_forward_backward(&f.out, x, &f.mulv, m, &loss_layout, lat, step);
    let (_, scale, slot) = iwae_weights(&image_loss, &f.mulv, m, lat, k, step);
    let d_out = elbo_backward_weighted(&f.out, x, &scale, m, &loss_layout);
    let grads = vae_backward(model, &f, &d_out, m, |dz| iwae_reparam_backward(&f.mulv, dz, &scale, m, lat, step));
    let images = slot[2] as usize / k;
    (image_losses(&image_loss, &f.mulv, lat, k, images, step).iter().sum::<f64>() / images.max(1) as f64, grads)
}

/// Each of the first `images` images' loss -log (1/K) sum_k w_k, in f64, from its rows'
/// recon (`image_loss`'s first component) and sampled KL.
pub fn image_losses(
    image_loss: &[[f32; 2]],
    mulv: &[f32],
    latent: usize,
    k: usize,
    images: usize,
    step: &Step,
) -> Vec<f64> {
    (0..images)
        .map(|i| {
            let log_w: Vec<f64> = (i * k..(i + 1) * k)
                .map(|r| -(image_loss[r][0] as f64 + step.beta as f64 * sampled_kl(mulv, latent, r, step)))
                .collect();
            let top = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            -(top + (log_w.iter().map(|lw| (lw - top).exp()).sum::<f64>() / k as f64).ln())
        })
        .collect()
}
