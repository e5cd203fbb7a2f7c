// adam.wgsl's update with the moments in rgba32float textures bound read_write, 1024
// texels (4096 parameters) to a row, for adapters that allow read_write rgba32float
// (Gpu::read_write_texels), used on CPU adapters. On llvmpipe a storage-buffer load
// of a vec4 runs as a loop over 8 lanes and 4 components with a branch in each, while
// a texel load is 8 plain loads (stores loop either way): MLP at batch 128,
// adam_update 1751 us, adam_update_texel 1606 us (elbo profile).

@group(0) @binding(0) var<uniform> p: Adam;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(4) var moment1: texture_storage_2d<rgba32float, read_write>;
@group(0) @binding(5) var moment2: texture_storage_2d<rgba32float, read_write>;

@compute @workgroup_size(64)
fn adam_update_texel(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if i >= p.count {
        return;
    }
    let at = moment_texel(i);
    let o = adam_math(p, step, params[i], grads[i], textureLoad(moment1, at), textureLoad(moment2, at));
    textureStore(moment1, at, o.m);
    textureStore(moment2, at, o.v);
    params[i] = o.param;
}
