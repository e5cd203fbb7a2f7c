//! References of the GEMMs (gemm.wgsl, gemm_subgroup.wgsl, and the fused kernels of
//! gemm_fused_subgroup.wgsl and gemm_adam_subgroup.wgsl).
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use super::{act_grad, activate, adam_update, value_nll};
use crate::kernels::Step;
use crate::model::Activation;

/// y (m, n) = act(x (m, k) . w (n, k)^T + b (n))
pub fn gemm_forward(x: &[f32], w: &[f32], b: &[f32], m: usize, n: usize, k: usize, act: Activation) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = b[j] as f64;
            for t in 0..k {
                acc += x[i * k + t] as f64 * w[j * k + t] as f64;
            }
            y[i * n + j] = activate(acc as f32, act);
        }
    }
    y
}

/// gemm_forward_reparam: the encoder's head [mu | logvar] (m, 2L) = x . w^T + b, and z
/// (m, L) from it as reparam_forward draws it.
pub fn gemm_forward_reparam(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    m: usize,
    latent: usize,
    k: usize,
    step: &Step,
) -> (Vec<f32>, Vec<f32>) {
    let mulv = gemm_forward(x, w, b, m, 2 * latent, k, Activation::Identity);
    let z = super::reparam_forward(&mulv, m, latent, step);
    (mulv, z)
}

/// dx (m, k) = dy (m, n) . w (n, k), times act'(x) when `through` gives the layer's input
/// x and the activation that made it
pub fn gemm_backward_input(
    dy: &[f32],
    w: &[f32],
    through: Option<(&[f32], Activation)>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    let mut dx = vec![0f32; m * k];
    for i in 0..m {
        for t in 0..k {
            let mut acc = 0f64;
            for j in 0..n {
                acc += dy[i * n + j] as f64 * w[j * k + t] as f64;
            }
            let slope = through.map_or(1.0, |(x, act)| act_grad(x[i * k + t], act));
            dx[i * k + t] = acc as f32 * slope;
        }
    }
    dx
}

/// dw (n, k) = dy (m, n)^T . x (m, k); db (n) = column sums of dy
pub fn gemm_backward_weight(dy: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut dw = vec![0f32; n * k];
    let mut db = vec![0f32; n];
    for j in 0..n {
        for t in 0..k {
            let mut acc = 0f64;
            for i in 0..m {
                acc += dy[i * n + j] as f64 * x[i * k + t] as f64;
            }
            dw[j * k + t] = acc as f32;
        }
        db[j] = (0..m).map(|i| dy[i * n + j] as f64).sum::<f64>() as f32;
    }
    (dw, db)
}

/// gemm_forward_elbo: the logits x . w^T + b (m, n) of a Bernoulli decoder's last dense
/// layer and its loss against the target x (m, n), as elbo_forward_backward computes it:
/// d loss / d logit (m, n), and per column block of `block` columns and row the recon of
/// the block's values (blocks * m, block-major; zero on padding rows).
#[allow(clippy::too_many_arguments)]
pub fn gemm_forward_elbo(
    h: &[f32],
    w: &[f32],
    b: &[f32],
    target: &[f32],
    m: usize,
    n: usize,
    k: usize,
    block: usize,
    step: &Step,
) -> (Vec<f32>, Vec<f32>) {
    let logits = gemm_forward(h, w, b, m, n, k, Activation::Identity);
    let blocks = n.div_ceil(block);
    let mut d = vec![0f32; m * n];
    let mut partials = vec![0f32; blocks * m];
    for r in 0..(step.rows as usize).min(m) {
        for c in 0..n {
            let (nll, d_logit, _) = value_nll(target[r * n + c], logits[r * n + c], 0.0, false);
            d[r * n + c] = d_logit * step.inv_rows;
            partials[(c / block) * m + r] += nll;
        }
    }
    (d, partials)
}

/// gemm_backward_weight followed by adam_update on the layer's weights (n, k) and bias
/// (n): the fused kernel gemm_backward_weight_adam_subgroup.
#[allow(clippy::too_many_arguments)]
pub fn gemm_backward_weight_adam(
    dy: &[f32],
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
    w_b: (&mut [f32], &mut [f32]),
    moments_w: (&mut [f32], &mut [f32]),
    moments_b: (&mut [f32], &mut [f32]),
    (beta1, beta2, eps): (f32, f32, f32),
    step: &Step,
) {
    let (dw, db) = gemm_backward_weight(dy, x, m, n, k);
    adam_update(w_b.0, &dw, moments_w.0, moments_w.1, beta1, beta2, eps, step);
    adam_update(w_b.1, &db, moments_b.0, moments_b.1, beta1, beta2, eps, step);
}
