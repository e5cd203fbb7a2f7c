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

/// dx (m, k) = dy (m, n) . w (n, k), times [x > 0] when `mask` (the layer's input x) is given
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

/// dx = dy * [y > 0]
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

/// d[mu | logvar] (m, 2L) from dz (m, L) and the KL term's gradient (beta / rows)
pub fn reparam_backward(mulv: &[f32], dz: &[f32], m: usize, latent: usize, step: &Step) -> Vec<f32> {
    let mut d = vec![0f32; m * 2 * latent];
    for r in 0..(step.rows as usize).min(m) {
        for j in 0..latent {
            let mu = mulv[r * 2 * latent + j];
            let lv = mulv[r * 2 * latent + latent + j];
            let g = dz[r * latent + j];
            d[r * 2 * latent + j] = g + step.beta * mu * step.inv_rows;
            d[r * 2 * latent + latent + j] = g * step.noise * 0.5 * (0.5 * lv).exp() * eps(step, latent, r, j)
                + step.beta * 0.5 * (lv.exp() - 1.0) * step.inv_rows;
        }
    }
    d
}

/// Per image (recon, kl) (m) and d loss / d logits (m, D), for the loss
/// mean over rows of [sum_pixels BCE(x, sigmoid(logits)) + beta * KL(q || N(0, I))].
pub fn elbo_forward_backward(
    logits: &[f32],
    x: &[f32],
    mulv: &[f32],
    m: usize,
    pixels: usize,
    latent: usize,
    step: &Step,
) -> (Vec<f32>, Vec<[f32; 2]>) {
    let mut dlogits = vec![0f32; m * pixels];
    let mut image_loss = vec![[0f32; 2]; m];
    for r in 0..(step.rows as usize).min(m) {
        let mut recon = 0f64;
        for p in 0..pixels {
            let l = logits[r * pixels + p];
            let t = x[r * pixels + p];
            recon += (l.max(0.0) - t * l + (-l.abs()).exp().ln_1p()) as f64;
            dlogits[r * pixels + p] = (1.0 / (1.0 + (-l).exp()) - t) * step.inv_rows;
        }
        let mut kl = 0f64;
        for j in 0..latent {
            let mu = mulv[r * 2 * latent + j];
            let lv = mulv[r * 2 * latent + latent + j];
            kl += (-0.5 * (1.0 + lv - mu * mu - lv.exp())) as f64;
        }
        image_loss[r] = [recon as f32, kl as f32];
    }
    (dlogits, image_loss)
}

/// The batch's (recon sum, kl sum, rows, 0) for its loss-history slot.
pub fn loss_reduce(image_loss: &[[f32; 2]], step: &Step) -> [f32; 4] {
    let rows = (step.rows as usize).min(image_loss.len());
    let recon = image_loss[..rows].iter().map(|l| l[0] as f64).sum::<f64>();
    let kl = image_loss[..rows].iter().map(|l| l[1] as f64).sum::<f64>();
    [recon as f32, kl as f32, rows as f32, 0.0]
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

/// The batch x (m, D) in [0, 1] gathered from `data` (images * D bytes) in `order`.
pub fn gather_batch(data: &[u8], order: &[u32], m: usize, pixels: usize, binarize: bool, step: &Step) -> Vec<f32> {
    let mut x = vec![0f32; m * pixels];
    for r in 0..(step.rows as usize).min(m) {
        let image = order[step.batch_start as usize + r] as usize;
        for p in 0..pixels {
            let v = data[image * pixels + p] as f32 / 255.0;
            x[r * pixels + p] = if binarize {
                let u = rand_uniform(step.seed, STREAM_BINARIZE, step.step, (r * pixels + p) as u32);
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
    x
}

/// The whole model's batch loss and flat gradient, composed from the references
/// above exactly as the training step composes the kernels.
pub fn vae_loss_and_grads(model: &crate::model::Model, x: &[f32], m: usize, step: &Step) -> (f32, Vec<f32>) {
    let l = &model.layout;
    let (d, hid, lat) = (model.config.pixels(), model.config.hidden, model.config.latent);
    let (we, wh, wd, wo) = (model.weight(&l.enc), model.weight(&l.heads), model.weight(&l.dec), model.weight(&l.out));
    let h1 = gemm_forward(x, &we, &model.bias(&l.enc), m, hid, d, true);
    let mulv = gemm_forward(&h1, &wh, &model.bias(&l.heads), m, 2 * lat, hid, false);
    let z = reparam_forward(&mulv, m, lat, step);
    let h3 = gemm_forward(&z, &wd, &model.bias(&l.dec), m, hid, lat, true);
    let logits = gemm_forward(&h3, &wo, &model.bias(&l.out), m, d, hid, false);
    let (dlogits, image_loss) = elbo_forward_backward(&logits, x, &mulv, m, d, lat, step);
    let sums = loss_reduce(&image_loss, step);
    let loss = (sums[0] + step.beta * sums[1]) * step.inv_rows;

    let mut grads = vec![0f32; l.len];
    let mut put = |dense: &crate::model::Dense, (dw, db): (Vec<f32>, Vec<f32>)| {
        for r in 0..dense.n {
            grads[dense.w + r * dense.stride..dense.w + r * dense.stride + dense.k]
                .copy_from_slice(&dw[r * dense.k..(r + 1) * dense.k]);
        }
        grads[dense.b..dense.b + dense.n].copy_from_slice(&db);
    };
    put(&l.out, gemm_backward_weight(&dlogits, &h3, m, d, hid));
    let dh3 = gemm_backward_input(&dlogits, &wo, Some(&h3), m, d, hid);
    put(&l.dec, gemm_backward_weight(&dh3, &z, m, hid, lat));
    let dz = gemm_backward_input(&dh3, &wd, None, m, hid, lat);
    let dmulv = reparam_backward(&mulv, &dz, m, lat, step);
    put(&l.heads, gemm_backward_weight(&dmulv, &h1, m, 2 * lat, hid));
    let dh1 = gemm_backward_input(&dmulv, &wh, Some(&h1), m, 2 * lat, hid);
    put(&l.enc, gemm_backward_weight(&dh1, x, m, hid, d));
    (loss, grads)
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

/// dx (batch, in_h, in_w, in_c) from dy (batch, out_h, out_w, out_c), times [x > 0] when `mask` (x) is given.
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
