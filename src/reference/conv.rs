//! References of the convolutions (conv.wgsl, conv_subgroup.wgsl).
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use super::{act_grad, activate};
use crate::model::{Activation, ConvShape};

/// y (batch, out_h, out_w, out_c) = conv(x (batch, in_h, in_w, in_c), w (out_c, in_c, k, k)) + b, then `act`
pub fn conv2d_forward(x: &[f32], w: &[f32], b: &[f32], batch: usize, s: &ConvShape, act: Activation) -> Vec<f32> {
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
                    y[((n * s.out_h + oy) * s.out_w + ox) * s.out_c + o] = activate(v, act);
                }
            }
        }
    }
    y
}

/// dx (batch, in_h, in_w, in_c) from dy (batch, out_h, out_w, out_c), times act'(x) when
/// `through` gives the input x and the activation that made it.
/// With dy := a transposed convolution's input, it is that transposed convolution (without bias).
pub fn conv2d_backward_input(
    dy: &[f32],
    w: &[f32],
    through: Option<(&[f32], Activation)>,
    batch: usize,
    s: &ConvShape,
) -> Vec<f32> {
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
    dx.iter().enumerate().map(|(j, &v)| v as f32 * through.map_or(1.0, |(x, act)| act_grad(x[j], act))).collect()
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

/// conv2d_taps_c1: the weights (out_c, 1, k, k) of a convolution from one channel laid out
/// as a 1x1 convolution's (k * k, out_c): row tap holds W[., 0, tap].
pub fn conv2d_taps_c1(w: &[f32], s: &ConvShape) -> Vec<f32> {
    let taps = s.kernel * s.kernel;
    (0..taps).flat_map(|t| (0..s.out_c).map(move |o| w[o * taps + t])).collect()
}

/// conv2d_col2im_c4: dIn (batch, in_h, in_w, in_c) from the taps image t (batch, out_h,
/// out_w, k * k, in_c): each input pixel sums, channel by channel, t at the taps that
/// reach it (conv2d_col2im_c1 for each channel). With t[.., tap, c] the sum over o of
/// dOut[.., o] W[o, c, tap] this is conv2d_backward_input.
pub fn conv2d_col2im_c4(t: &[f32], batch: usize, s: &ConvShape) -> Vec<f32> {
    let (taps, c) = (s.kernel * s.kernel, s.in_c);
    let mut dx = vec![0f32; batch * s.in_h * s.in_w * c];
    for ch in 0..c {
        let plane: Vec<f32> = t.iter().skip(ch).step_by(c).copied().collect();
        let one = ConvShape { in_c: 1, ..*s };
        for (i, v) in conv2d_col2im_c1(&plane, batch, &one).into_iter().enumerate() {
            dx[i * c + ch] = v;
        }
    }
    debug_assert_eq!(t.len(), batch * s.out_h * s.out_w * taps * c);
    dx
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
