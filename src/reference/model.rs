//! A whole model on the CPU: each layer's forward and backward pass from the kernel
//! references, and the loss and every gradient of one step.
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use super::*;
use crate::kernels::Step;
use crate::model::Activation;

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
            gemm_forward(input, &model.weight(l), &model.bias(l), m, n, k, l.act)
        }
        Op::Conv { .. } => {
            let s = l.conv_shape();
            let y =
                conv2d_forward(&unpad_channels(input, l.input), &model.conv_weight(l), &model.bias(l), m, &s, l.act);
            pad_channels(&y, m, l.output)
        }
        Op::Deconv { .. } => {
            let s = l.conv_shape();
            let y = conv2d_backward_input(&unpad_channels(input, l.input), &model.conv_weight(l), None, m, &s);
            let b = model.bias(l);
            let y: Vec<f32> = y.iter().enumerate().map(|(i, v)| activate(v + b[i % s.in_c], l.act)).collect();
            pad_channels(&y, m, l.output)
        }
    }
}

/// One layer's backward pass in stored layouts: writes dW and db into `grads` and
/// returns d input, times act'(input) where the input came out of activation `input_act`.
pub fn layer_backward(
    model: &crate::model::Model,
    l: &crate::model::Layer,
    input: &[f32],
    d_out: &[f32],
    input_act: Activation,
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
            gemm_backward_input(d_out, &model.weight(l), Some((input, input_act)), m, n, k)
        }
        Op::Conv { .. } => {
            let s = l.conv_shape();
            let (x, dy) = (unpad_channels(input, l.input), unpad_channels(d_out, l.output));
            let (dw, db) = conv2d_backward_weight(&dy, &x, m, &s);
            w_offs.iter().zip(&dw).for_each(|(&o, &v)| grads[o] = v);
            b_offs.iter().zip(&db).for_each(|(&o, &v)| grads[o] = v);
            let dx = conv2d_backward_input(&dy, &model.conv_weight(l), Some((&x[..], input_act)), m, &s);
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
            let dx = conv2d_forward(&dy, &model.conv_weight(l), &vec![0.0; s.out_c], m, &s, Activation::Identity);
            let dx: Vec<f32> = dx.iter().zip(&x).map(|(d, &v)| d * act_grad(v, input_act)).collect();
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
    let lat = model.config.latent;
    let f = vae_forward(model, x, m, step);
    let mulv = &f.mulv;
    let (d, image_loss) = elbo_forward_backward(&f.out, x, mulv, m, &model.config.loss_layout(), lat, step);
    let (sums, kl_mask) = loss_reduce(&image_loss, mulv, lat, free_bits, step);
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
    let grads = vae_backward(model, &f, &d, m, |dz| reparam_backward(mulv, dz, &kl_mask, m, lat, step));
    (loss, grads, objective)
}

/// A VAE's forward pass as the training step runs it, with what its backward pass reads.
pub struct VaeForward {
    /// Each encoder layer's input.
    enc_in: Vec<Vec<f32>>,
    /// The heads' input.
    h: Vec<f32>,
    /// [mu | logvar] (m, 2L).
    pub mulv: Vec<f32>,
    /// Each decoder layer's input (z first).
    dec_in: Vec<Vec<f32>>,
    /// The decoder's output.
    pub out: Vec<f32>,
}

/// The encoder, z drawn with `step`'s noise, and the decoder, over `x` (m rows, the stored layout).
pub fn vae_forward(model: &crate::model::Model, x: &[f32], m: usize, step: &Step) -> VaeForward {
    let lay = &model.layout;
    let mut enc_in = vec![x.to_vec()];
    for l in &lay.encoder {
        let y = layer_forward(model, l, enc_in.last().unwrap(), m);
        enc_in.push(y);
    }
    let h = enc_in.pop().unwrap();
    let mulv = layer_forward(model, &lay.heads, &h, m);
    let mut dec_in = vec![reparam_forward(&mulv, m, model.config.latent, step)];
    for l in &lay.decoder {
        let y = layer_forward(model, l, dec_in.last().unwrap(), m);
        dec_in.push(y);
    }
    let out = dec_in.pop().unwrap();
    VaeForward { enc_in, h, mulv, dec_in, out }
}

/// The flat gradient from d out through the decoder to dz, `d_mulv` of dz (the
/// objective's reparameterisation backward), and the heads and encoder.
pub fn vae_backward(
    model: &crate::model::Model,
    f: &VaeForward,
    d_out: &[f32],
    m: usize,
    d_mulv: impl FnOnce(&[f32]) -> Vec<f32>,
) -> Vec<f32> {
    let lay = &model.layout;
    let mut grads = vec![0f32; lay.len];
    let mut d = d_out.to_vec();
    for (i, l) in lay.decoder.iter().enumerate().rev() {
        let act = if i > 0 { lay.decoder[i - 1].act } else { Activation::Identity };
        d = layer_backward(model, l, &f.dec_in[i], &d, act, m, &mut grads);
    }
    let dmulv = d_mulv(&d);
    let act = lay.encoder.last().map_or(Activation::Identity, |l| l.act);
    d = layer_backward(model, &lay.heads, &f.h, &dmulv, act, m, &mut grads);
    for (i, l) in lay.encoder.iter().enumerate().rev() {
        let act = if i > 0 { lay.encoder[i - 1].act } else { Activation::Identity };
        d = layer_backward(model, l, &f.enc_in[i], &d, act, m, &mut grads);
    }
    grads
}
