//! References of the element-wise activations (activation.wgsl).
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

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
