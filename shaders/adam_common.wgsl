// Adam (Kingma & Ba), PyTorch's formulation, shared by adam.wgsl, adam_texel.wgsl and
// gemm_adam_subgroup.wgsl:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The bias corrections come in the per-step uniform (Step.lr_t, Step.bc2_sqrt).

struct Adam {
    count: u32, // vec4 elements in each buffer
    beta1: f32,
    beta2: f32,
    eps: f32,
}

// The new moments and parameters of four parameters.
struct AdamOut {
    m: vec4<f32>,
    v: vec4<f32>,
    param: vec4<f32>,
}

fn adam_math(a: Adam, s: Step, param: vec4<f32>, g: vec4<f32>, m0: vec4<f32>, v0: vec4<f32>) -> AdamOut {
    let m = a.beta1 * m0 + (1.0 - a.beta1) * g;
    let v = a.beta2 * v0 + (1.0 - a.beta2) * g * g;
    return AdamOut(m, v, param - s.lr_t * m / (sqrt(v) / s.bc2_sqrt + a.eps));
}

// Moment textures hold the flat vector 1024 texels (4096 floats) to a row
// (src/kernels/adam.rs: ADAM_TEXEL_COLS).
fn moment_texel(i: u32) -> vec2<u32> {
    return vec2<u32>(i % 1024u, i / 1024u);
}
