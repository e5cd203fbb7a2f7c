// gemm_backward_weight_subgroup with Adam in its epilogue: each dW and db texel goes
// straight into the update of its parameters and moments, instead of into the flat
// gradient buffer for adam_update(_texel) to read back. Compiled after gemm_subgroup.wgsl,
// adam_common.wgsl and the moments' storage (gemm_adam_texels.wgsl or
// gemm_adam_buffers.wgsl: `moments_at`, `store_moments`), for adapters with subgroups of
// LANES lanes and read_write rgba32float (CPU adapters); the trainer uses it when every
// layer is dense, so that these kernels update every parameter and no adam dispatch is
// left (src/train/trainer.rs).
// On llvmpipe every store runs a loop over lanes and components; this drops dW's store
// and one of Adam's storage-buffer loads per parameter, and a dispatch.
// The layer's weights are updated in their texture (`weights`), which the trainer keeps
// as their master copy in this mode: the GEMMs read it, so no copy from the flat
// parameters is needed each step, and Adam reads each weight with a texel fetch instead
// of a storage-buffer load (src/train/state.rs copies them back to the flat buffer for
// checkpoints). The bias stays in the flat parameters.

@group(0) @binding(7) var<uniform> adam: Adam;
@group(0) @binding(8) var<uniform> step: Step;
@group(0) @binding(9) var<storage, read_write> params_rw: array<vec4<f32>>;
// (10, 11: the moments)
// the layer's W (n, k): read by this layer's GEMMs, updated here
@group(0) @binding(12) var weights: texture_storage_2d<rgba32float, read_write>;

// Adam on the four parameters at flat texel i, whose gradient is g.
fn adam_at(i: u32, g: vec4<f32>) {
    let mv = moments_at(i);
    let o = adam_math(adam, step, params_rw[i], g, mv[0], mv[1]);
    store_moments(i, o.m, o.v);
    params_rw[i] = o.param;
}

// Adam on W's texel (c4, n), whose moments sit at flat texel i and whose gradient is g.
fn adam_weight(c4: u32, n: u32, i: u32, g: vec4<f32>) {
    let texel = vec2<u32>(c4, n);
    let mv = moments_at(i);
    let o = adam_math(adam, step, textureLoad(weights, texel), g, mv[0], mv[1]);
    store_moments(i, o.m, o.v);
    textureStore(weights, texel, o.param);
}

// The body repeats gemm_backward_weight_subgroup's with Adam where that stores: that
// kernel built with store hooks (Adam's here, the flat gradient's there) ran fc3's 8-lane
// build 124 -> 154 us on llvmpipe.
@compute @workgroup_size(LANES)
fn gemm_backward_weight_adam_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let k4 = (p.k + 3u) / 4u;
    let c4 = wg.x * LANES + lane;
    let n0 = wg.y * 16u;
    var acc = weight_block(min(c4, k4 - 1u), n0, lane);
    if wg.x == 0u {
        let t0 = n0 / 4u;
        for (var t = t0; t < min(t0 + 4u, (p.n + 3u) / 4u); t++) {
            let sum = bias_texel(t, lane);
            if lane == 0u {
                adam_at(p.grad_b / 4u + t, sum);
            }
        }
    }
    if c4 >= k4 {
        return;
    }
    for (var i = 0u; i < 16u; i++) {
        let n = n0 + i;
        if n >= p.n {
            break;
        }
        adam_weight(c4, n, (p.grad_w + n * p.stride) / 4u + c4, acc[i]);
    }
}
