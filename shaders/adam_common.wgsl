// Adam (Kingma & Ba), PyTorch's formulation, shared by adam.wgsl and adam_texel.wgsl:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The bias corrections come in the per-step uniform.

struct Adam {
    count: u32, // vec4 elements in each buffer
    beta1: f32,
    beta2: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Adam;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grads: array<vec4<f32>>;

// The new moments and parameters of four parameters.
struct AdamOut {
    m: vec4<f32>,
    v: vec4<f32>,
    param: vec4<f32>,
}

fn adam_step(param: vec4<f32>, g: vec4<f32>, m0: vec4<f32>, v0: vec4<f32>) -> AdamOut {
    let m = p.beta1 * m0 + (1.0 - p.beta1) * g;
    let v = p.beta2 * v0 + (1.0 - p.beta2) * g * g;
    return AdamOut(m, v, param - step.lr_t * m / (sqrt(v) / step.bc2_sqrt + p.eps));
}
