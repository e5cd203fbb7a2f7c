//! The reference of the classifier head's loss (classify.wgsl).
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use crate::kernels::Step;

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
