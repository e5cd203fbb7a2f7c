//! References of the element-wise activations (activation.wgsl).
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use crate::model::Activation;

/// The hidden layers' activation of one value (common.wgsl: act_forward).
pub fn activate(v: f32, act: Activation) -> f32 {
    match act {
        Activation::Identity => v,
        Activation::Relu => v.max(0.0),
        Activation::Tanh => v.tanh(),
        Activation::Elu => {
            if v > 0.0 {
                v
            } else {
                v.exp_m1()
            }
        }
        Activation::LeakyRelu => {
            if v > 0.0 {
                v
            } else {
                0.01 * v
            }
        }
    }
}

/// The activation's derivative from its output y = act(v) (common.wgsl: act_grad).
pub fn act_grad(y: f32, act: Activation) -> f32 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => (y > 0.0) as u8 as f32,
        Activation::Tanh => 1.0 - y * y,
        Activation::Elu => {
            if y > 0.0 {
                1.0
            } else {
                y + 1.0
            }
        }
        Activation::LeakyRelu => {
            if y > 0.0 {
                1.0
            } else {
                0.01
            }
        }
    }
}

/// y = act(x), element by element.
pub fn activation_forward(x: &[f32], act: Activation) -> Vec<f32> {
    x.iter().map(|&v| activate(v, act)).collect()
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
