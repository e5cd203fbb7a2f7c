//! References of the reparameterisation, the ELBO and its reductions (reparam.wgsl,
//! elbo.wgsl).
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use super::conv2d_col2im_c1;
use crate::kernels::{Observation, Step};
use crate::model::ConvShape;
use crate::rng::{rand_normal, STREAM_EPS};

pub(crate) fn eps(step: &Step, latent: usize, row: usize, j: usize) -> f32 {
    rand_normal(step.seed, STREAM_EPS, step.counter, (row * latent + j) as u32)
}

/// z (m, L) = mu + noise * exp(logvar / 2) * eps, from mulv = [mu | logvar] (m, 2L)
pub fn reparam_forward(mulv: &[f32], m: usize, latent: usize, step: &Step) -> Vec<f32> {
    let mut z = vec![0f32; m * latent];
    for r in 0..m {
        for j in 0..latent {
            let mu = mulv[r * 2 * latent + j];
            let lv = mulv[r * 2 * latent + latent + j];
            z[r * latent + j] = mu + step.noise * (0.5 * lv).exp() * eps(step, latent, r, j);
        }
    }
    z
}

/// d[mu | logvar] (m, 2L) from dz (m, L) and the KL term's gradient (beta / rows, times kl_mask)
pub fn reparam_backward(mulv: &[f32], dz: &[f32], kl_mask: &[f32], m: usize, latent: usize, step: &Step) -> Vec<f32> {
    let mut d = vec![0f32; m * 2 * latent];
    for r in 0..(step.rows as usize).min(m) {
        for j in 0..latent {
            let mu = mulv[r * 2 * latent + j];
            let lv = mulv[r * 2 * latent + latent + j];
            let g = dz[r * latent + j];
            let kl = step.beta * kl_mask[j] * step.inv_rows;
            d[r * 2 * latent + j] = g + kl * mu;
            d[r * 2 * latent + latent + j] =
                g * step.noise * 0.5 * (0.5 * lv).exp() * eps(step, latent, r, j) + kl * 0.5 * (lv.exp() - 1.0);
        }
    }
    d
}

/// KL(q || N(0, I)) of row r's latent dimension j, from mulv = [mu | logvar] (m, 2L).
pub fn kl_term(mulv: &[f32], latent: usize, r: usize, j: usize) -> f32 {
    let (mu, lv) = (mulv[r * 2 * latent + j], mulv[r * 2 * latent + latent + j]);
    -0.5 * (1.0 + lv - mu * mu - lv.exp())
}

/// loss_reduce then reparam_backward with its mask, as the training step's one
/// dispatch runs them: ((recon sum, kl sum, rows, 0), the free-bits mask, d[mu | logvar]).
pub fn reparam_backward_reduce(
    image_loss: &[[f32; 2]],
    mulv: &[f32],
    dz: &[f32],
    m: usize,
    latent: usize,
    free_bits: f32,
    step: &Step,
) -> ([f32; 4], Vec<f32>, Vec<f32>) {
    let (slot, mask) = loss_reduce(image_loss, mulv, latent, free_bits, step);
    let d = reparam_backward(mulv, dz, &mask, m, latent, step);
    (slot, mask, d)
}

/// reparam_backward_reduce_partials: reparam_backward_reduce where each live row's recon
/// is the sum of its `blocks` partial sums (`partials[b * m + row]`, as
/// gemm_forward_elbo leaves them) and its KL term is computed from mulv.
#[allow(clippy::too_many_arguments)]
pub fn reparam_backward_reduce_partials(
    partials: &[f32],
    blocks: usize,
    mulv: &[f32],
    dz: &[f32],
    m: usize,
    latent: usize,
    free_bits: f32,
    step: &Step,
) -> ([f32; 4], Vec<f32>, Vec<f32>) {
    let image_loss: Vec<[f32; 2]> = (0..m)
        .map(|r| {
            let recon = (0..blocks).map(|b| partials[b * m + r] as f64).sum::<f64>();
            let kl = (0..latent).map(|j| kl_term(mulv, latent, r, j) as f64).sum::<f64>();
            [recon as f32, kl as f32]
        })
        .collect();
    reparam_backward_reduce(&image_loss, mulv, dz, m, latent, free_bits, step)
}

/// -log p(x|z) of one value and its gradients with respect to the decoder's two outputs:
/// the logit (Bernoulli) or the pre-sigmoid mean (Gaussian), and the raw log-variance.
pub fn value_nll(x: f32, mean: f32, raw_logvar: f32, gaussian: bool) -> (f32, f32, f32) {
    if !gaussian {
        let e = (-mean.abs()).exp();
        let nll = mean.max(0.0) - x * mean + e.ln_1p();
        return (nll, 1.0 / (1.0 + (-mean).exp()) - x, 0.0);
    }
    let th = raw_logvar.tanh();
    let lv = crate::model::LOGVAR_MID + crate::model::LOGVAR_HALF * th;
    let inv_var = (-lv).exp();
    let mu = 1.0 / (1.0 + (-mean).exp());
    let diff = mu - x;
    let nll = 0.918_938_5 + 0.5 * (lv + diff * diff * inv_var);
    let d_raw = 0.5 * (1.0 - diff * diff * inv_var) * crate::model::LOGVAR_HALF * (1.0 - th * th);
    (nll, diff * inv_var * mu * (1.0 - mu), d_raw)
}

/// Per image (recon, kl) (m) and d loss / d (decoder output) (m, o_cols), for the loss
/// mean over live rows of [-log p(x|z) + beta * KL(q || N(0, I))]; layouts as in elbo.wgsl.
pub fn elbo_forward_backward(
    dec_out: &[f32],
    x: &[f32],
    mulv: &[f32],
    m: usize,
    lay: &crate::model::LossLayout,
    latent: usize,
    step: &Step,
) -> (Vec<f32>, Vec<[f32; 2]>) {
    elbo_forward_backward_observed(dec_out, x, mulv, None, m, lay, latent, step)
}

/// elbo_forward_backward_taps: the loss of a one-channel Bernoulli decoder whose logits
/// are conv2d_col2im_c1 of its last layer's taps image `t` (batch, out_h, out_w, k * k) in
/// geometry `s` plus `bias`; d out and the per-image (recon, kl) as elbo_forward_backward's
/// (`lay` with one value a texel: o_cp = 4).
#[allow(clippy::too_many_arguments)]
pub fn elbo_forward_backward_taps(
    t: &[f32],
    bias: f32,
    s: &ConvShape,
    x: &[f32],
    mulv: &[f32],
    observed: Option<&[f32]>,
    m: usize,
    lay: &crate::model::LossLayout,
    latent: usize,
    step: &Step,
) -> (Vec<f32>, Vec<[f32; 2]>) {
    let logits = conv2d_col2im_c1(t, m, s);
    let mut out = vec![0f32; m * lay.o_cols];
    for (i, v) in logits.into_iter().enumerate() {
        out[(i / lay.pixels) * lay.o_cols + (i % lay.pixels) * lay.o_cp] = v + bias;
    }
    elbo_forward_backward_observed(&out, x, mulv, observed, m, lay, latent, step)
}

/// -log p(x|z) of one observed value under `obs` and its gradients as `value_nll`'s: with
/// Gaussian noise of σ, a Bernoulli decoder's mean mu = sigmoid(logit) is the centre of
/// N(mu, σ²) and a Gaussian decoder's variance gains σ²; with flips of probability P, the
/// value is 1 with probability P + (1 - 2P) mu.
pub fn noisy_value_nll(x: f32, mean: f32, raw_logvar: f32, gaussian: bool, obs: Observation) -> (f32, f32, f32) {
    let mu = 1.0 / (1.0 + (-mean).exp());
    match (obs, gaussian) {
        (Observation::Clean, _) => value_nll(x, mean, raw_logvar, gaussian),
        (Observation::Gaussian(sigma), false) => {
            let (diff, inv_var) = (mu - x, 1.0 / (sigma * sigma));
            let nll = 0.918_938_5 + sigma.ln() + 0.5 * diff * diff * inv_var;
            (nll, diff * inv_var * mu * (1.0 - mu), 0.0)
        }
        (Observation::Gaussian(sigma), true) => {
            let th = raw_logvar.tanh();
            let own = (crate::model::LOGVAR_MID + crate::model::LOGVAR_HALF * th).exp();
            let var = own + sigma * sigma;
            let diff = mu - x;
            let nll = 0.918_938_5 + 0.5 * (var.ln() + diff * diff / var);
            let d_raw = 0.5 * (1.0 - diff * diff / var) * (own / var) * crate::model::LOGVAR_HALF * (1.0 - th * th);
            (nll, diff / var * mu * (1.0 - mu), d_raw)
        }
        // flips corrupt binary values: a Gaussian decoder scores its values as they are
        (Observation::Flip(_), true) => value_nll(x, mean, raw_logvar, true),
        (Observation::Flip(p), false) => {
            let q = p + (1.0 - 2.0 * p) * mu;
            let nll = -(x * q.ln() + (1.0 - x) * (1.0 - q).ln());
            (nll, (q - x) / (q * (1.0 - q)) * (1.0 - 2.0 * p) * mu * (1.0 - mu), 0.0)
        }
    }
}

/// elbo_forward_backward with `masked`: only the values where `observed` (laid out as x) is 1 count.
pub fn elbo_forward_backward_observed(
    dec_out: &[f32],
    x: &[f32],
    mulv: &[f32],
    observed: Option<&[f32]>,
    m: usize,
    lay: &crate::model::LossLayout,
    latent: usize,
    step: &Step,
) -> (Vec<f32>, Vec<[f32; 2]>) {
    elbo_forward_backward_noisy(dec_out, x, mulv, observed, Observation::Clean, m, lay, latent, step)
}

/// elbo_forward_backward_observed with the observed values scored under `obs`
/// (`noisy_value_nll`).
#[allow(clippy::too_many_arguments)]
pub fn elbo_forward_backward_noisy(
    dec_out: &[f32],
    x: &[f32],
    mulv: &[f32],
    observed: Option<&[f32]>,
    obs: Observation,
    m: usize,
    lay: &crate::model::LossLayout,
    latent: usize,
    step: &Step,
) -> (Vec<f32>, Vec<[f32; 2]>) {
    let x_cols = lay.pixels * lay.x_cp;
    let mut d_out = vec![0f32; m * lay.o_cols];
    let mut image_loss = vec![[0f32; 2]; m];
    for r in 0..(step.rows as usize).min(m) {
        let mut recon = 0f64;
        for pixel in 0..lay.pixels {
            for ch in 0..lay.channels {
                let xv = x[r * x_cols + pixel * lay.x_cp + ch];
                let w = observed.map_or(1.0, |o| o[r * x_cols + pixel * lay.x_cp + ch]);
                let (mc, lc) = (lay.mean_col(pixel, ch), lay.logvar_col(pixel, ch));
                let raw = if lay.gaussian { dec_out[r * lay.o_cols + lc] } else { 0.0 };
                let (nll, d_mean, d_raw) = noisy_value_nll(xv, dec_out[r * lay.o_cols + mc], raw, lay.gaussian, obs);
                recon += (w * nll) as f64;
                d_out[r * lay.o_cols + mc] = w * d_mean * step.inv_rows;
                if lay.gaussian {
                    d_out[r * lay.o_cols + lc] = w * d_raw * step.inv_rows;
                }
            }
        }
        let kl = (0..latent).map(|j| kl_term(mulv, latent, r, j) as f64).sum::<f64>();
        image_loss[r] = [recon as f32, kl as f32];
    }
    (d_out, image_loss)
}

/// The batch's (recon sum, kl sum, rows, 0) for its loss-history slot, and the
/// free-bits mask: 1 for each latent dimension whose batch-mean KL is at least `free_bits`.
pub fn loss_reduce(
    image_loss: &[[f32; 2]],
    mulv: &[f32],
    latent: usize,
    free_bits: f32,
    step: &Step,
) -> ([f32; 4], Vec<f32>) {
    let rows = (step.rows as usize).min(image_loss.len());
    let recon = image_loss[..rows].iter().map(|l| l[0] as f64).sum::<f64>();
    let kl = image_loss[..rows].iter().map(|l| l[1] as f64).sum::<f64>();
    let mask = (0..latent)
        .map(|j| {
            let mean = if free_bits > 0.0 {
                (0..rows).map(|r| kl_term(mulv, latent, r, j)).sum::<f32>() / rows.max(1) as f32
            } else {
                0.0
            };
            if mean >= free_bits {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    ([recon as f32, kl as f32, rows as f32, 0.0], mask)
}
