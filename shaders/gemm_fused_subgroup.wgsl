// Fusions of gemm_subgroup.wgsl's kernels, after it (same uniform and bindings).
//
// gemm_forward_reparam_subgroup: the encoder's head and the reparameterization trick in
// one dispatch, for layers whose n = 2L columns [mu | logvar] fit one workgroup's
// 4 LANES columns. Each lane finds the logvar of its mu columns in the lane L columns
// on (a shuffle), and z = mu + noise * exp(logvar / 2) * eps as reparam_forward computes
// it, from the same values and noise.

@group(0) @binding(7) var<uniform> step: Step;
// z (m, L)
@group(0) @binding(8) var z_out: texture_storage_2d<rgba32float, write>;

// [mu | logvar] = X . W^T + b, stored as gemm_forward_subgroup stores Y; then z.
// Workgroups (1, y): 32 rows each.
@compute @workgroup_size(LANES)
fn gemm_forward_reparam_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let r0 = wg.y * 32u;
    var acc = forward_block(lid, r0, lane);
    let b = forward_bias(lid);
    let live = forward_live(lid);
    let latent = p.n / 2u;
    // column j = LANES s + lane's logvar, column j + L: set s + d of lane src
    let src = (lane + latent) % LANES;
    let d = (lane + latent) / LANES;
    for (var r = 0u; r < 32u; r++) {
        let row = r0 + r;
        let v = (acc[r] + b) * live;
        let col = store_col(lid, lane);
        let texel = row_texel(v, lane);
        if row < p.m && col < p.n {
            textureStore(out, vec2<u32>(col / 4u, row), texel);
        }
        let lv4 = vec4<f32>(subgroupShuffle(v.x, src), subgroupShuffle(v.y, src), subgroupShuffle(v.z, src), subgroupShuffle(v.w, src));
        var z = vec4<f32>(0.0);
        for (var s = 0u; s < 4u; s++) {
            let j = lid + s * LANES;
            let lv = lv4[min(s + d, 3u)];
            let noise = rand_normal(step.seed, STREAM_EPS, step.step, row * latent + min(j, latent - 1u));
            z[s] = select(0.0, v[s] + step.noise * exp(0.5 * lv) * noise, j < latent);
        }
        let z_texel = row_texel(z, lane);
        if row < p.m && col < latent {
            textureStore(z_out, vec2<u32>(col / 4u, row), z_texel);
        }
    }
}

