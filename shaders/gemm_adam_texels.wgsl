// gemm_adam_subgroup.wgsl's moments in rgba32float textures bound read_write, laid out
// as adam_texel.wgsl's (`moment_texel`): Mesa 22's lavapipe, where a texel store is
// cheaper than a storage-buffer store (Gpu::texel_moments_pay).
// Adam's first and second moments of the flat parameters, 4 to a texel, 1024 texels a
// row (rows = ceil(parameters / 4096))
@group(0) @binding(10) var moment1: texture_storage_2d<rgba32float, read_write>;
@group(0) @binding(11) var moment2: texture_storage_2d<rgba32float, read_write>;

// The two moments of flat texel i.
fn moments_at(i: u32) -> array<vec4<f32>, 2> {
    let at = moment_texel(i);
    return array<vec4<f32>, 2>(textureLoad(moment1, at), textureLoad(moment2, at));
}

fn store_moments(i: u32, m: vec4<f32>, v: vec4<f32>) {
    let at = moment_texel(i);
    textureStore(moment1, at, m);
    textureStore(moment2, at, v);
}
