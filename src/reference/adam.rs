//! The reference of Adam's update (adam.wgsl, adam_texel.wgsl).
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use crate::kernels::Step;

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
