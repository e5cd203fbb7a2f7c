// Adam (Kingma & Ba) over the flat parameter buffer, PyTorch's formulation:
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
@group(0) @binding(4) var<storage, read_write> moment1: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> moment2: array<vec4<f32>>;

@compute @workgroup_size(64)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if i >= p.count {
        return;
    }
    let g = grads[i];
    let m = p.beta1 * moment1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * moment2[i] + (1.0 - p.beta2) * g * g;
    moment1[i] = m;
    moment2[i] = v;
    params[i] -= step.lr_t * m / (sqrt(v) / step.bc2_sqrt + p.eps);
}
