//! CPU references, one per WGSL entry point, with the same names. Matrices are
//! row-major `&[f32]` without padding; shapes are in the comments. The tests
//! check each kernel against its reference and each backward reference
//! against central finite differences of its forward reference.

// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use crate::kernels::Step;
use crate::rng::{rand_normal, rand_uniform, STREAM_BINARIZE, STREAM_EPS};

/// y (m, n) = act(x (m, k) . w (n, k)^T + b (n))
pub fn gemm_forward(x: &[f32], w: &[f32], b: &[f32], m: usize, n: usize, k: usize, relu: bool) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = b[j] as f64;
            for t in 0..k {
                acc += x[i * k + t] as f64 * w[j * k + t] as f64;
            }
            let v = acc as f32;
            y[i * n + j] = if relu { v.max(0.0) } else { v };
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
    let mulv = gemm_forward(x, w, b, m, 2 * latent, k, false);
    let z = reparam_forward(&mulv, m, latent, step);
    (mulv, z)
}

/// dx (m, k) = dy (m, n) . w (n, k), times `[x > 0]` when `mask` (the layer's input x) is given
pub fn gemm_backward_input(dy: &[f32], w: &[f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut dx = vec![0f32; m * k];
    for i in 0..m {
        for t in 0..k {
            let mut acc = 0f64;
            for j in 0..n {
                acc += dy[i * n + j] as f64 * w[j * k + t] as f64;
            }
            let keep = mask.is_none_or(|x| x[i * k + t] > 0.0);
            dx[i * k + t] = if keep { acc as f32 } else { 0.0 };
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

/// y = max(x, 0)
pub fn relu_forward(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| v.max(0.0)).collect()
}

/// dx = dy * `[y > 0]`
pub fn relu_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
    y.iter().zip(dy).map(|(y, d)| if *y > 0.0 { *d } else { 0.0 }).collect()
}

/// y = 1 / (1 + exp(-x))
pub fn sigmoid_forward(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect()
}

/// dx = dy * y * (1 - y)
pub fn sigmoid_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
    y.iter().zip(dy).map(|(y, d)| d * y * (1.0 - y)).collect()
}

fn eps(step: &Step, latent: usize, row: usize, j: usize) -> f32 {
    rand_normal(step.seed, STREAM_EPS, step.step, (row * latent + j) as u32)
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
    let logits = gemm_forward(h, w, b, m, n, k, false);
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
                let (nll, d_mean, d_raw) = value_nll(xv, dec_out[r * lay.o_cols + mc], raw, lay.gaussian);
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

/// One Adam step in place (PyTorch's formulation; bias corrections in `step`).
pub fn adam_update(
    params: &mut [f32],
    grads: &[f32],
    m1: &mut [f32],
    m2: &mut [f32],
    beta1: f32,
    beta2: f32,
    eps: f32,
    step: &Step,
) {
    for i in 0..params.len() {
        let g = grads[i];
        m1[i] = beta1 * m1[i] + (1.0 - beta1) * g;
        m2[i] = beta2 * m2[i] + (1.0 - beta2) * g * g;
        params[i] -= step.lr_t * m1[i] / (m2[i].sqrt() / step.bc2_sqrt + eps);
    }
}

/// The batch x (m, pixels * x_cp) in [0, 1] gathered from `data` (images of
/// pixels * channels bytes) in `order`, `samples` rows per image.
pub fn gather_batch(
    data: &[u8],
    order: &[u32],
    m: usize,
    pixels: usize,
    channels: usize,
    x_cp: usize,
    binarize: bool,
    samples: usize,
    step: &Step,
) -> Vec<f32> {
    let cols = pixels * x_cp;
    let image_bytes = pixels * channels;
    let mut x = vec![0f32; m * cols];
    for r in 0..(step.rows as usize).min(m) {
        let image = order[step.batch_start as usize + r / samples] as usize;
        for pixel in 0..pixels {
            for ch in 0..channels {
                let value = pixel * channels + ch;
                let v = data[image * image_bytes + value] as f32 / 255.0;
                x[r * cols + pixel * x_cp + ch] = if binarize {
                    let u = rand_uniform(
                        step.seed,
                        STREAM_BINARIZE,
                        step.step,
                        ((r / samples) * image_bytes + value) as u32,
                    );
                    if u < v {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    v
                };
            }
        }
    }
    x
}

/// The geometry of a 2-D convolution from (in_h, in_w, in_c) to (out_h, out_w, out_c)
/// images, channels-last, k x k kernel.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    /// The convolution of an (h, w, c_in) image to c_out channels, output size floor((h + 2 pad - k) / stride) + 1.
    pub fn new(
        in_h: usize,
        in_w: usize,
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> ConvShape {
        let out = |n: usize| (n + 2 * pad - kernel) / stride + 1;
        ConvShape { in_h, in_w, in_c, out_h: out(in_h), out_w: out(in_w), out_c, kernel, stride, pad }
    }

    /// Input pixel (iy, ix) that tap (ky, kx) of output pixel (oy, ox) reads, if inside the image.
    fn tap(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad)?;
        (iy < self.in_h && ix < self.in_w).then_some((iy, ix))
    }
}

/// y (batch, out_h, out_w, out_c) = conv(x (batch, in_h, in_w, in_c), w (out_c, in_c, k, k)) + b, ReLU when `relu`
pub fn conv2d_forward(x: &[f32], w: &[f32], b: &[f32], batch: usize, s: &ConvShape, relu: bool) -> Vec<f32> {
    let k = s.kernel;
    let mut y = vec![0f32; batch * s.out_h * s.out_w * s.out_c];
    for n in 0..batch {
        for oy in 0..s.out_h {
            for ox in 0..s.out_w {
                for o in 0..s.out_c {
                    let mut acc = b[o] as f64;
                    for ky in 0..k {
                        for kx in 0..k {
                            if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                                for i in 0..s.in_c {
                                    acc += x[((n * s.in_h + iy) * s.in_w + ix) * s.in_c + i] as f64
                                        * w[((o * s.in_c + i) * k + ky) * k + kx] as f64;
                                }
                            }
                        }
                    }
                    let v = acc as f32;
                    y[((n * s.out_h + oy) * s.out_w + ox) * s.out_c + o] = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
    y
}

/// dx (batch, in_h, in_w, in_c) from dy (batch, out_h, out_w, out_c), times `[x > 0]` when `mask` (x) is given.
/// With dy := a transposed convolution's input, it is that transposed convolution (without bias).
pub fn conv2d_backward_input(dy: &[f32], w: &[f32], mask: Option<&[f32]>, batch: usize, s: &ConvShape) -> Vec<f32> {
    let k = s.kernel;
    let mut dx = vec![0f64; batch * s.in_h * s.in_w * s.in_c];
    for n in 0..batch {
        for oy in 0..s.out_h {
            for ox in 0..s.out_w {
                for ky in 0..k {
                    for kx in 0..k {
                        if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                            for o in 0..s.out_c {
                                let g = dy[((n * s.out_h + oy) * s.out_w + ox) * s.out_c + o] as f64;
                                for i in 0..s.in_c {
                                    dx[((n * s.in_h + iy) * s.in_w + ix) * s.in_c + i] +=
                                        g * w[((o * s.in_c + i) * k + ky) * k + kx] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    dx.iter().enumerate().map(|(j, &v)| if mask.is_none_or(|m| m[j] > 0.0) { v as f32 } else { 0.0 }).collect()
}

/// dw (out_c, in_c, k, k) and db (out_c) of a convolution from dy (batch, out_h, out_w, out_c) and x.
pub fn conv2d_backward_weight(dy: &[f32], x: &[f32], batch: usize, s: &ConvShape) -> (Vec<f32>, Vec<f32>) {
    let k = s.kernel;
    let mut dw = vec![0f64; s.out_c * s.in_c * k * k];
    let mut db = vec![0f64; s.out_c];
    for n in 0..batch {
        for oy in 0..s.out_h {
            for ox in 0..s.out_w {
                for o in 0..s.out_c {
                    let g = dy[((n * s.out_h + oy) * s.out_w + ox) * s.out_c + o] as f64;
                    db[o] += g;
                    for ky in 0..k {
                        for kx in 0..k {
                            if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                                for i in 0..s.in_c {
                                    dw[((o * s.in_c + i) * k + ky) * k + kx] +=
                                        g * x[((n * s.in_h + iy) * s.in_w + ix) * s.in_c + i] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dw.iter().map(|&v| v as f32).collect(), db.iter().map(|&v| v as f32).collect())
}

/// Image activations (m, h * w * c) without channel padding -> the stored layout (m, shape.cols()).
pub fn pad_channels(v: &[f32], m: usize, shape: crate::model::Shape) -> Vec<f32> {
    let (cs, c) = (shape.channel_stride(), shape.c);
    if cs == c {
        return v.to_vec();
    }
    let mut out = vec![0f32; m * shape.cols()];
    for (i, px) in v.chunks(c).enumerate() {
        out[i * cs..i * cs + c].copy_from_slice(px);
    }
    out
}

/// The stored layout -> image activations without channel padding.
pub fn unpad_channels(v: &[f32], shape: crate::model::Shape) -> Vec<f32> {
    let (cs, c) = (shape.channel_stride(), shape.c);
    if cs == c {
        return v.to_vec();
    }
    v.chunks(cs).flat_map(|px| px[..c].iter().copied()).collect()
}

/// One layer's forward pass in stored layouts, as the training step dispatches it.
pub fn layer_forward(model: &crate::model::Model, l: &crate::model::Layer, input: &[f32], m: usize) -> Vec<f32> {
    use crate::model::Op;
    match l.op {
        Op::Dense => {
            let (n, k) = l.gemm_nk();
            gemm_forward(input, &model.weight(l), &model.bias(l), m, n, k, l.relu)
        }
        Op::Conv { .. } => {
            let s = l.conv_shape();
            let y =
                conv2d_forward(&unpad_channels(input, l.input), &model.conv_weight(l), &model.bias(l), m, &s, l.relu);
            pad_channels(&y, m, l.output)
        }
        Op::Deconv { .. } => {
            let s = l.conv_shape();
            let y = conv2d_backward_input(&unpad_channels(input, l.input), &model.conv_weight(l), None, m, &s);
            let b = model.bias(l);
            let y: Vec<f32> = y
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = v + b[i % s.in_c];
                    if l.relu {
                        v.max(0.0)
                    } else {
                        v
                    }
                })
                .collect();
            pad_channels(&y, m, l.output)
        }
    }
}

/// One layer's backward pass in stored layouts: writes dW and db into `grads` and
/// returns d input, masked by `[input > 0]` when the input came out of a ReLU.
pub fn layer_backward(
    model: &crate::model::Model,
    l: &crate::model::Layer,
    input: &[f32],
    d_out: &[f32],
    mask_input: bool,
    m: usize,
    grads: &mut [f32],
) -> Vec<f32> {
    use crate::model::Op;
    let (w_offs, b_offs) = (l.weight_offsets().1, l.bias_offsets());
    match l.op {
        Op::Dense => {
            let (n, k) = l.gemm_nk();
            let (dw, db) = gemm_backward_weight(d_out, input, m, n, k);
            for r in 0..n {
                grads[l.w + r * l.stride..l.w + r * l.stride + k].copy_from_slice(&dw[r * k..(r + 1) * k]);
            }
            grads[l.b..l.b + n].copy_from_slice(&db);
            gemm_backward_input(d_out, &model.weight(l), mask_input.then_some(input), m, n, k)
        }
        Op::Conv { .. } => {
            let s = l.conv_shape();
            let (x, dy) = (unpad_channels(input, l.input), unpad_channels(d_out, l.output));
            let (dw, db) = conv2d_backward_weight(&dy, &x, m, &s);
            w_offs.iter().zip(&dw).for_each(|(&o, &v)| grads[o] = v);
            b_offs.iter().zip(&db).for_each(|(&o, &v)| grads[o] = v);
            let dx = conv2d_backward_input(&dy, &model.conv_weight(l), mask_input.then_some(&x[..]), m, &s);
            pad_channels(&dx, m, l.input)
        }
        Op::Deconv { .. } => {
            // the convolution from the deconv's output (its "in") back to its input (its "out")
            let s = l.conv_shape();
            let (x, dy) = (unpad_channels(input, l.input), unpad_channels(d_out, l.output));
            let (dw, _) = conv2d_backward_weight(&x, &dy, m, &s);
            w_offs.iter().zip(&dw).for_each(|(&o, &v)| grads[o] = v);
            for (c, &o) in b_offs.iter().enumerate() {
                grads[o] = dy.iter().skip(c).step_by(s.in_c).map(|&v| v as f64).sum::<f64>() as f32;
            }
            let dx = conv2d_forward(&dy, &model.conv_weight(l), &vec![0.0; s.out_c], m, &s, false);
            let dx: Vec<f32> =
                if mask_input { dx.iter().zip(&x).map(|(d, v)| if *v > 0.0 { *d } else { 0.0 }).collect() } else { dx };
            pad_channels(&dx, m, l.input)
        }
    }
}

/// The whole model's batch loss (mean over live rows of recon + beta kl), the flat
/// gradient of the objective (the same, with free bits' floor when `free_bits` > 0)
/// and that objective, composed from the references above as the training step
/// composes the kernels; `x` in the model's stored input layout (m rows).
pub fn vae_loss_and_grads(
    model: &crate::model::Model,
    x: &[f32],
    m: usize,
    free_bits: f32,
    step: &Step,
) -> (f32, Vec<f32>, f64) {
    let lay = &model.layout;
    let lat = model.config.latent;
    let mut grads = vec![0f32; lay.len];
    let mut enc_in = vec![x.to_vec()];
    for l in &lay.encoder {
        let y = layer_forward(model, l, enc_in.last().unwrap(), m);
        enc_in.push(y);
    }
    let h = enc_in.pop().unwrap();
    let mulv = layer_forward(model, &lay.heads, &h, m);
    let z = reparam_forward(&mulv, m, lat, step);
    let mut dec_in = vec![z];
    for l in &lay.decoder {
        let y = layer_forward(model, l, dec_in.last().unwrap(), m);
        dec_in.push(y);
    }
    let out = dec_in.pop().unwrap();
    let (mut d, image_loss) = elbo_forward_backward(&out, x, &mulv, m, &model.config.loss_layout(), lat, step);
    let (sums, kl_mask) = loss_reduce(&image_loss, &mulv, lat, free_bits, step);
    let loss = (sums[0] + step.beta * sums[1]) * step.inv_rows;
    // the objective optimised: with free bits, sum_j max(free_bits, batch-mean KL_j) replaces the KL
    let mut objective = loss as f64;
    if free_bits > 0.0 {
        let rows = (step.rows as usize).min(m);
        let mut kl_used = 0f64;
        for r in 0..rows {
            for j in 0..lat {
                let (mu, lv) = (mulv[r * 2 * lat + j] as f64, mulv[r * 2 * lat + lat + j] as f64);
                kl_used += kl_mask[j] as f64 * -0.5 * (1.0 + lv - mu * mu - lv.exp());
            }
        }
        let floor: f64 = kl_mask.iter().map(|&k| (1.0 - k as f64) * free_bits as f64).sum();
        objective = (sums[0] as f64 + step.beta as f64 * kl_used) * step.inv_rows as f64 + step.beta as f64 * floor;
    }
    for (i, l) in lay.decoder.iter().enumerate().rev() {
        let masked = i > 0 && lay.decoder[i - 1].relu;
        d = layer_backward(model, l, &dec_in[i], &d, masked, m, &mut grads);
    }
    let dmulv = reparam_backward(&mulv, &d, &kl_mask, m, lat, step);
    let masked = lay.encoder.last().is_some_and(|l| l.relu);
    d = layer_backward(model, &lay.heads, &h, &dmulv, masked, m, &mut grads);
    for (i, l) in lay.encoder.iter().enumerate().rev() {
        let masked = i > 0 && lay.encoder[i - 1].relu;
        d = layer_backward(model, l, &enc_in[i], &d, masked, m, &mut grads);
    }
    (loss, grads, objective)
}

/// d loss / d logits (m, C) for the mean over live rows of `-log softmax(logits)[label]`,
/// and per row (loss, 1 if the largest logit is the label's).
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    m: usize,
    classes: usize,
    step: &Step,
) -> (Vec<f32>, Vec<[f32; 2]>) {
    let mut d = vec![0f32; m * classes];
    let mut rows = vec![[0f32; 2]; m];
    for r in 0..(step.rows as usize).min(m) {
        let l = &logits[r * classes..(r + 1) * classes];
        let (arg, top) =
            l.iter().enumerate().fold((0, f32::NEG_INFINITY), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        let sum: f64 = l.iter().map(|&v| ((v - top) as f64).exp()).sum();
        for c in 0..classes {
            let p = ((l[c] - top) as f64).exp() / sum;
            d[r * classes + c] = ((p - (c == labels[r] as usize) as u32 as f64) as f32) * step.inv_rows;
        }
        rows[r] =
            [(sum.ln() + top as f64 - l[labels[r] as usize] as f64) as f32, (arg == labels[r] as usize) as u32 as f32];
    }
    (d, rows)
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

/// conv2d_taps_c1: the weights (out_c, 1, k, k) of a convolution from one channel laid out
/// as a 1x1 convolution's (k * k, out_c): row tap holds W[., 0, tap].
pub fn conv2d_taps_c1(w: &[f32], s: &ConvShape) -> Vec<f32> {
    let taps = s.kernel * s.kernel;
    (0..taps).flat_map(|t| (0..s.out_c).map(move |o| w[o * taps + t])).collect()
}

/// conv2d_col2im_c1: dIn (batch, in_h, in_w, 1) from the taps image t (batch, out_h,
/// out_w, k * k): each input pixel sums t at the taps that reach it. With t from
/// conv2d_taps_c1's 1x1 convolution of dOut this is conv2d_backward_input.
pub fn conv2d_col2im_c1(t: &[f32], batch: usize, s: &ConvShape) -> Vec<f32> {
    let (k, taps) = (s.kernel, s.kernel * s.kernel);
    let mut dx = vec![0f64; batch * s.in_h * s.in_w];
    for n in 0..batch {
        for oy in 0..s.out_h {
            for ox in 0..s.out_w {
                for ky in 0..k {
                    for kx in 0..k {
                        if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                            dx[(n * s.in_h + iy) * s.in_w + ix] +=
                                t[((n * s.out_h + oy) * s.out_w + ox) * taps + ky * k + kx] as f64;
                        }
                    }
                }
            }
        }
    }
    dx.into_iter().map(|v| v as f32).collect()
}

/// touch.wgsl: its counter after `dispatches` dispatches from `start`.
pub fn touch(start: u32, dispatches: u32) -> u32 {
    start.wrapping_add(dispatches)
}
