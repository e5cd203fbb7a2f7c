// Fusions of gemm_subgroup.wgsl's kernels, after it (same uniform and bindings).
//
// gemm_forward_elbo_subgroup: the decoder's last dense layer and the Bernoulli loss in
// one dispatch (the training step's; evaluation keeps the logits and elbo.wgsl).
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
            let noise = rand_normal(step.seed, STREAM_EPS, step.counter, row * latent + min(j, latent - 1u));
            z[s] = select(0.0, v[s] + step.noise * exp(0.5 * lv) * noise, j < latent);
        }
        let z_texel = row_texel(z, lane);
        if row < p.m && col < latent {
            textureStore(z_out, vec2<u32>(col / 4u, row), z_texel);
        }
    }
}

// gemm_forward_reparam_subgroup for heads wider than one workgroup (2L > 4 LANES: the MLP's
// L = 20 at 8 lanes), where L is a multiple of 4: workgroup x takes latent dimensions
// d0 = 2 LANES x .. d0 + 2 LANES - 1, and lane l the columns of dimensions a = d0 + l and
// b = d0 + LANES + l: mu_a, mu_b, logvar_a, logvar_b. Each lane draws z for its own two
// dimensions, and each of the four column sets fills whole texels of [mu | logvar]
// (L a multiple of 4 puts the logvar sets on texel boundaries).
// Workgroups (ceil(L / 2 LANES), y): 32 rows each.
@compute @workgroup_size(LANES)
fn gemm_forward_reparam_pairs_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let latent = p.n / 2u;
    let d0 = wg.x * 2u * LANES;
    // the dimensions of the lane's column sets, and their columns
    let dims = vec4<u32>(d0 + lid, d0 + LANES + lid, d0 + lid, d0 + LANES + lid);
    let cols = dims + vec4<u32>(0u, 0u, latent, latent);
    let r0 = wg.y * 32u;
    var acc = forward_block_cols(cols, r0, lane);
    let live = vec4<f32>(dims < vec4<u32>(latent));
    let b = forward_bias_cols(cols);
    // lane first + c stores set c's texel: dimensions from d0 + LANES (c % 2) + first
    let first = lane & ~3u;
    let c = lane - first;
    let set_dim = d0 + LANES * (c % 2u) + first;
    let set_col = set_dim + select(0u, latent, c >= 2u);
    for (var r = 0u; r < 32u; r++) {
        let row = r0 + r;
        let v = (acc[r] + b) * live;
        let texel = row_texel(v, lane);
        if row < p.m && set_dim < latent {
            textureStore(out, vec2<u32>(set_col / 4u, row), texel);
        }
        let na = rand_normal(step.seed, STREAM_EPS, step.counter, row * latent + min(dims.x, latent - 1u));
        let nb = rand_normal(step.seed, STREAM_EPS, step.counter, row * latent + min(dims.y, latent - 1u));
        let z = vec4<f32>(v.x + step.noise * exp(0.5 * v.z) * na, v.y + step.noise * exp(0.5 * v.w) * nb, 0.0, 0.0) * live;
        let z_texel = row_texel(z, lane);
        if row < p.m && c < 2u && set_dim < latent {
            textureStore(z_out, vec2<u32>(set_dim / 4u, row), z_texel);
        }
    }
}

// gemm_forward_elbo_subgroup: the logits X . W^T + b of a Bernoulli decoder's last dense
// layer go straight into elbo.wgsl's loss (bernoulli_texels' arithmetic), where the
// target x lines up with the output (value e at column e of both): the step stores
// d loss / d logit in place of the logits, and the loss dispatch with its reads of the
// logits is left out. Each workgroup writes the recon of its columns of each of its rows
// to recon_partials[wg.x * m + row] (a subgroup sum); reparam_backward_reduce_partials
// adds a row's partials and its KL term. The rows past step.rows (padding) get zero
// gradients and partials, as in elbo.wgsl. Workgroups as gemm_forward_subgroup's.
// the target x (m, n)
@group(0) @binding(9) var target_x: texture_storage_2d<rgba32float, read>;
// per column block and row: the recon of the block's values of that row (blocks * m)
@group(0) @binding(10) var<storage, read_write> recon_partials: array<f32>;

@compute @workgroup_size(LANES)
fn gemm_forward_elbo_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let c0 = wg.x * 4u * LANES + lid;
    let r0 = wg.y * 32u;
    var acc = forward_block(c0, r0, lane);
    let b = forward_bias(c0);
    let live = forward_live(c0);
    // the texel this lane stores (row_texel), and which of its columns hold values
    let col = store_col(c0, lane);
    let live_cols = vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.n);
    for (var r = 0u; r < 32u; r++) {
        let row = r0 + r;
        let l = row_texel((acc[r] + b) * live, lane);
        let x = textureLoad(target_x, vec2<u32>(col / 4u, min(row, p.m - 1u)));
        let counts = live_cols & vec4<bool>(row < step.rows);
        // BCE = max(l, 0) - x l + log(1 + exp(-|l|)), and its gradient sigmoid(l) - x
        let e = exp(-abs(l));
        let nll = select(vec4<f32>(0.0), max(l, vec4<f32>(0.0)) - x * l + log(1.0 + e), counts);
        let g = (select(e, vec4<f32>(1.0), l >= vec4<f32>(0.0)) / (1.0 + e) - x) * step.inv_rows;
        if row < p.m && col < p.n {
            textureStore(out, vec2<u32>(col / 4u, row), select(vec4<f32>(0.0), g, counts));
        }
        let recon = subgroupAdd(nll.x + nll.y + nll.z + nll.w);
        if lane == 0u && row < p.m {
            recon_partials[wg.x * p.m + row] = recon;
        }
    }
}
