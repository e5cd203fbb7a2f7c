// gemm_adam_subgroup.wgsl's moments in storage buffers laid out as the flat parameters
// (adam.wgsl's): Mesa 25's lavapipe, whose image loads and stores are out-of-line calls
// (Gpu::texel_moments_pay).
// Adam's first and second moments of the flat parameters (parameters / 4)
@group(0) @binding(10) var<storage, read_write> moment1: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> moment2: array<vec4<f32>>;

// The two moments of flat texel i.
fn moments_at(i: u32) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(moment1[i], moment2[i]);
}

fn store_moments(i: u32, m: vec4<f32>, v: vec4<f32>) {
    moment1[i] = m;
    moment2[i] = v;
}
