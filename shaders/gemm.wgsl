// Matrix products for dense layers. Every activation and weight matrix lives
// in an rgba32float texture: a (rows, cols) matrix is a texture of width
// ceil(cols / 4) texels and height rows (padded to a multiple of 4); texel
// (t, r) holds columns 4t..4t+3 of row r and columns past `cols` are zero.
// Inputs are read-only storage textures: on lavapipe their loads are inline
// vector code (a sampled texture's textureLoad is an out-of-line call). The
// unit of work is a 4x4 block of the output, in two variants per pass:
//   gemm_*: one invocation per block, looping over the whole inner dimension
//     (CPU adapters, whose few cores want long independent loops);
//   gemm_*_wide: SPLIT lanes per block, each summing every SPLIT-th step of the
//     inner dimension, then added up in workgroup memory (GPUs: with one
//     invocation per block the MLP's 128x400x784 product ran 50 workgroups on an
//     H100's 132 multiprocessors, 157 us at 0.5 TFLOP/s);
//   gemm_*_tiled: a 64x64 output tile per workgroup of 256, each invocation a 4x4
//     block, the inner dimension staged through workgroup memory (GPUs: the square
//     1024^3 product ran at 11% of an H100's FP32 peak without it).
// src/kernels/choice.rs times the variants on the model's shapes and keeps the fastest.
//
// Weights follow PyTorch's nn.Linear: W is (out = n, in = k).

struct Gemm {
    m: u32,      // batch rows, a multiple of 4
    n: u32,      // output features
    k: u32,      // input features
    act: u32,    // forward: the activation (common.wgsl: ACT_*); backward_input: the one that made X
    bias: u32,   // forward: offset of b (n) in the flat parameters, floats
    grad_w: u32, // backward_weight: offset of dW (n, k) in the flat gradients, a multiple of 4
    stride: u32, // backward_weight: row stride of dW, floats, a multiple of 4
    grad_b: u32, // backward_weight: offset of db (n, padded to 4) in the flat gradients, a multiple of 4
}

@group(0) @binding(0) var<uniform> p: Gemm;
// forward: X (m, k); backward_input: dY (m, n); backward_weight: dY (m, n)
@group(0) @binding(1) var lhs: texture_storage_2d<rgba32float, read>;
// forward: W (n, k); backward_input: W (n, k); backward_weight: X (m, k)
@group(0) @binding(2) var rhs: texture_storage_2d<rgba32float, read>;
// backward_input: the layer's input X (m, k), the output of activation `act`, whose
// derivative (act_grad) multiplies dX
@group(0) @binding(3) var mask: texture_storage_2d<rgba32float, read>;
// forward: Y (m, n); backward_input: dX (m, k)
@group(0) @binding(4) var out: texture_storage_2d<rgba32float, write>;
// forward: the flat parameter buffer (bias)
@group(0) @binding(5) var<storage, read> params: array<f32>;
// backward_weight: the flat gradient buffer (dW, db)
// as texels: its offsets and row strides are multiples of 64 floats, so whole texels
// are stored (the padding columns get the zeros they hold)
@group(0) @binding(6) var<storage, read_write> grads: array<vec4<f32>>;

fn fetch(t: texture_storage_2d<rgba32float, read>, col4: u32, row: u32) -> vec4<f32> {
    return textureLoad(t, vec2<u32>(col4, row));
}

// 1.0 for the lanes of texel c4 that hold one of the first `cols` columns.
fn live_lanes(c4: u32, cols: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(cols));
}

// Block (rows r0..r0+3, columns n0..n0+3) of X . W^T over inner texels t0, t0 + dt, ...
fn forward_block(r0: u32, n0: u32, t0: u32, dt: u32) -> array<vec4<f32>, 4> {
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let k4 = (p.k + 3u) / 4u;
    for (var t = t0; t < k4; t += dt) {
        let x0 = fetch(lhs, t, r0);
        let x1 = fetch(lhs, t, r0 + 1u);
        let x2 = fetch(lhs, t, r0 + 2u);
        let x3 = fetch(lhs, t, r0 + 3u);
        let w0 = fetch(rhs, t, n0);
        let w1 = fetch(rhs, t, n0 + 1u);
        let w2 = fetch(rhs, t, n0 + 2u);
        let w3 = fetch(rhs, t, n0 + 3u);
        acc0 += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
        acc1 += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
        acc2 += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
        acc3 += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
    }
    return array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
}

// Adds the bias, applies the activation and stores the block at texel column c4, rows r0..r0+3.
fn forward_store(c4: u32, r0: u32, acc: array<vec4<f32>, 4>) {
    let n0 = c4 * 4u;
    let live = live_lanes(c4, p.n);
    var b = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if n0 + j < p.n {
            b[j] = params[p.bias + n0 + j];
        }
    }
    for (var i = 0u; i < 4u; i++) {
        textureStore(out, vec2<u32>(c4, r0 + i), act_forward(acc[i] + b, p.act) * live);
    }
}

// Block (rows r0..r0+3, texel column c4) of dY . W over the output texels t0, t0 + dt, ...
fn backward_input_block(r0: u32, c4: u32, t0: u32, dt: u32) -> array<vec4<f32>, 4> {
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let n4 = (p.n + 3u) / 4u;
    for (var t = t0; t < n4; t += dt) {
        let g0 = fetch(lhs, t, r0);
        let g1 = fetch(lhs, t, r0 + 1u);
        let g2 = fetch(lhs, t, r0 + 2u);
        let g3 = fetch(lhs, t, r0 + 3u);
        let w0 = fetch(rhs, c4, 4u * t);
        let w1 = fetch(rhs, c4, 4u * t + 1u);
        let w2 = fetch(rhs, c4, 4u * t + 2u);
        let w3 = fetch(rhs, c4, 4u * t + 3u);
        acc0 += g0.x * w0 + g0.y * w1 + g0.z * w2 + g0.w * w3;
        acc1 += g1.x * w0 + g1.y * w1 + g1.z * w2 + g1.w * w3;
        acc2 += g2.x * w0 + g2.y * w1 + g2.z * w2 + g2.w * w3;
        acc3 += g3.x * w0 + g3.y * w1 + g3.z * w2 + g3.w * w3;
    }
    return array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
}

// Multiplies by the derivative of the activation that made X and stores the block at texel column c4, rows r0..r0+3.
fn backward_input_store(c4: u32, r0: u32, acc: array<vec4<f32>, 4>) {
    for (var i = 0u; i < 4u; i++) {
        var v = acc[i];
        if p.act != ACT_IDENTITY {
            v *= act_grad(fetch(mask, c4, r0 + i), p.act);
        }
        textureStore(out, vec2<u32>(c4, r0 + i), v);
    }
}

// Block (outputs n0..n0+3, texel column c4) of dY^T . X over rows r0, r0 + dr, ...,
// and in [4] the sums of dY's columns n0..n0+3 over those rows.
fn backward_weight_block(n0: u32, c4: u32, r0: u32, dr: u32) -> array<vec4<f32>, 5> {
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var gsum = vec4<f32>(0.0);
    for (var r = r0; r < p.m; r += dr) {
        let g = fetch(lhs, n0 / 4u, r);
        let x = fetch(rhs, c4, r);
        acc0 += g.x * x;
        acc1 += g.y * x;
        acc2 += g.z * x;
        acc3 += g.w * x;
        gsum += g;
    }
    return array<vec4<f32>, 5>(acc0, acc1, acc2, acc3, gsum);
}

// Writes (not accumulates) the block's dW rows and, from column block 0, db.
fn backward_weight_store(n0: u32, c4: u32, acc: array<vec4<f32>, 5>) {
    for (var i = 0u; i < 4u; i++) {
        let n = n0 + i;
        if n >= p.n {
            break;
        }
        grads[(p.grad_w + n * p.stride) / 4u + c4] = acc[i];
    }
    if c4 == 0u {
        grads[(p.grad_b + n0) / 4u] = acc[4];
    }
}

// Y (m, n) = act(X (m, k) . W (n, k)^T + b (n))
@compute @workgroup_size(64)
fn gemm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n4 = (p.n + 3u) / 4u;
    let tile = linear_id(gid, nwg);
    if tile >= n4 * (p.m / 4u) {
        return;
    }
    let c4 = tile % n4;
    let r0 = (tile / n4) * 4u;
    forward_store(c4, r0, forward_block(r0, c4 * 4u, 0u, 1u));
}

// dX (m, k) = dY (m, n) . W (n, k), times act'(X)
@compute @workgroup_size(64)
fn gemm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k4 = (p.k + 3u) / 4u;
    let tile = linear_id(gid, nwg);
    if tile >= k4 * (p.m / 4u) {
        return;
    }
    let c4 = tile % k4;
    let r0 = (tile / k4) * 4u;
    backward_input_store(c4, r0, backward_input_block(r0, c4, 0u, 1u));
}

// dW (n, k) = dY (m, n)^T . X (m, k) and db (n) = sum over rows of dY, written
// (not accumulated) into the flat gradient buffer.
@compute @workgroup_size(64)
fn gemm_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k4 = (p.k + 3u) / 4u;
    let n4 = (p.n + 3u) / 4u;
    let tile = linear_id(gid, nwg);
    if tile >= k4 * n4 {
        return;
    }
    let c4 = tile % k4;
    let n0 = (tile / k4) * 4u;
    backward_weight_store(n0, c4, backward_weight_block(n0, c4, 0u, 1u));
}

// The wide variants: SPLIT lanes per block, 64 / SPLIT blocks per workgroup.
const SPLIT: u32 = 16u;
var<workgroup> red: array<array<vec4<f32>, 5>, 64>;

// Block (64 / SPLIT) * workgroup + lid / SPLIT; more than 65535 workgroups spill into y.
fn wide_tile(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * (64u / SPLIT) + lid / SPLIT;
}

// Adds up the partial sums of each block's SPLIT lanes: the first lane of a block
// gets the block's totals. Called by the whole workgroup.
fn split_sum(lid: u32, v: array<vec4<f32>, 5>) -> array<vec4<f32>, 5> {
    red[lid] = v;
    workgroupBarrier();
    for (var half = SPLIT / 2u; half > 0u; half >>= 1u) {
        if lid % SPLIT < half {
            for (var j = 0u; j < 5u; j++) {
                red[lid][j] += red[lid + half][j];
            }
        }
        workgroupBarrier();
    }
    return red[lid];
}

fn first4(a: array<vec4<f32>, 5>) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(a[0], a[1], a[2], a[3]);
}

@compute @workgroup_size(64)
fn gemm_forward_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n4 = (p.n + 3u) / 4u;
    let tile = wide_tile(wid, lid, nwg);
    let live = tile < n4 * (p.m / 4u);
    let c4 = tile % n4;
    let r0 = (tile / n4) * 4u;
    var acc = array<vec4<f32>, 4>();
    if live {
        acc = forward_block(r0, c4 * 4u, lid % SPLIT, SPLIT);
    }
    let total = split_sum(lid, array<vec4<f32>, 5>(acc[0], acc[1], acc[2], acc[3], vec4<f32>(0.0)));
    if live && lid % SPLIT == 0u {
        forward_store(c4, r0, first4(total));
    }
}

@compute @workgroup_size(64)
fn gemm_backward_input_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let k4 = (p.k + 3u) / 4u;
    let tile = wide_tile(wid, lid, nwg);
    let live = tile < k4 * (p.m / 4u);
    let c4 = tile % k4;
    let r0 = (tile / k4) * 4u;
    var acc = array<vec4<f32>, 4>();
    if live {
        acc = backward_input_block(r0, c4, lid % SPLIT, SPLIT);
    }
    let total = split_sum(lid, array<vec4<f32>, 5>(acc[0], acc[1], acc[2], acc[3], vec4<f32>(0.0)));
    if live && lid % SPLIT == 0u {
        backward_input_store(c4, r0, first4(total));
    }
}

@compute @workgroup_size(64)
fn gemm_backward_weight_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let k4 = (p.k + 3u) / 4u;
    let n4 = (p.n + 3u) / 4u;
    let tile = wide_tile(wid, lid, nwg);
    let live = tile < k4 * n4;
    let c4 = tile % k4;
    let n0 = (tile / k4) * 4u;
    var acc = array<vec4<f32>, 5>();
    if live {
        acc = backward_weight_block(n0, c4, lid % SPLIT, SPLIT);
    }
    let total = split_sum(lid, acc);
    if live && lid % SPLIT == 0u {
        backward_weight_store(n0, c4, total);
    }
}

// The tiled variants: workgroup (x, y) computes output texel columns 16 x .. 16 x + 15
// (64 columns) of rows 64 y .. 64 y + 63; invocation (tx, ty) = (lid % 16, lid / 16)
// owns the 4x4 block at texel column 16 x + tx, rows 64 y + 4 ty .. + 3. Each step
// stages DEPTH values of the inner dimension of both operands in workgroup memory,
// each invocation fetching 2 texels of each: 4 texel fetches per 512 multiply-adds,
// where gemm_forward makes 8 per 64. The tiles hold, per inner index d, the 16
// 4-row (TILE_A) or 4-column (TILE_B) groups of the tile as vec4s: the inner loop
// reads one vec4 of each (a[d][ty] is the same for 16 invocations, b[d][tx] adjacent
// across them, so neither conflicts in shared-memory banks) for 16 multiply-adds.
// 2 x 512 x 16 B = 16 KiB: WebGPU's minimum maxComputeWorkgroupStorageSize. Both tiles
// live in one array (naga takes no pointers to workgroup memory as arguments).
const TILE: u32 = 64u;
const DEPTH: u32 = 32u;
const TILE_A: u32 = 0u;   // [DEPTH][TILE / 4]: output rows 4q..4q+3 at inner index d
const TILE_B: u32 = 512u; // [DEPTH][TILE / 4]: output columns 4q..4q+3 at inner index d
var<workgroup> tiles: array<vec4<f32>, 1024>;

// Texel (col4, row) of t, or zero outside cols4 texels by `rows` rows (a fetch out of
// bounds is clamped to the texture, then replaced).
fn fetch_or_zero(t: texture_storage_2d<rgba32float, read>, col4: u32, row: u32, cols4: u32, rows: u32) -> vec4<f32> {
    let v = textureLoad(t, vec2<u32>(min(col4, cols4 - 1u), min(row, rows - 1u)));
    return select(vec4<f32>(0.0), v, col4 < cols4 && row < rows);
}

// Stages texels t0 .. t0 + DEPTH / 4 - 1 of rows r0 .. r0 + TILE - 1 of a (rows, cols4
// texels) matrix whose inner dimension runs along its texels (X and W in the forward
// pass, dY in backward-input), transposed into the tile at `at`:
// tiles[at + d * 16 + q][i] = M[r0 + 4 q + i][4 t0 + d]. Consecutive invocations fetch
// consecutive rows and store consecutive floats.
fn stage_across(
    at: u32,
    t: texture_storage_2d<rgba32float, read>,
    lid: u32,
    t0: u32,
    cols4: u32,
    r0: u32,
    rows: u32,
) {
    for (var e = 0u; e < 2u; e++) {
        let i = lid + 256u * e;
        let row = i % TILE;
        let d0 = 4u * (i / TILE);
        let v = fetch_or_zero(t, t0 + i / TILE, r0 + row, cols4, rows);
        for (var c = 0u; c < 4u; c++) {
            tiles[at + (d0 + c) * 16u + row / 4u][row % 4u] = v[c];
        }
    }
}

// Stages texels c0 .. c0 + 15 of rows s0 .. s0 + DEPTH - 1 of a (rows, cols4 texels)
// matrix whose inner dimension runs down its rows (W in backward-input, dY and X in
// backward-weight): a texel already holds 4 output columns, tiles[at + d * 16 + q] =
// texel (c0 + q, s0 + d).
fn stage_down(
    at: u32,
    t: texture_storage_2d<rgba32float, read>,
    lid: u32,
    s0: u32,
    rows: u32,
    c0: u32,
    cols4: u32,
) {
    for (var e = 0u; e < 2u; e++) {
        let i = lid + 256u * e;
        tiles[at + i] = fetch_or_zero(t, c0 + i % 16u, s0 + i / 16u, cols4, rows);
    }
}

// Adds the staged tiles' product to the invocation's block: acc[i] is its row 4 ty + i.
fn multiply_tiles(acc: ptr<function, array<vec4<f32>, 4>>, tx: u32, ty: u32) {
    for (var d = 0u; d < DEPTH; d++) {
        let a = tiles[TILE_A + d * 16u + ty];
        let b = tiles[TILE_B + d * 16u + tx];
        (*acc)[0] += a.x * b;
        (*acc)[1] += a.y * b;
        (*acc)[2] += a.z * b;
        (*acc)[3] += a.w * b;
    }
}

@compute @workgroup_size(256)
fn gemm_forward_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k4 = (p.k + 3u) / 4u;
    let n4 = (p.n + 3u) / 4u;
    let r0 = wid.y * TILE;
    let c0 = wid.x * (TILE / 4u);
    var acc = array<vec4<f32>, 4>();
    for (var t = 0u; t < k4; t += DEPTH / 4u) {
        stage_across(TILE_A, lhs, lid, t, k4, r0, p.m);
        stage_across(TILE_B, rhs, lid, t, k4, 4u * c0, p.n);
        workgroupBarrier();
        multiply_tiles(&acc, lid % 16u, lid / 16u);
        workgroupBarrier();
    }
    let c4 = c0 + lid % 16u;
    let r = r0 + 4u * (lid / 16u);
    if c4 < n4 && r < p.m {
        forward_store(c4, r, acc);
    }
}

// The rows of W are the inner dimension here: TILE_B holds W's texels as they are.
@compute @workgroup_size(256)
fn gemm_backward_input_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k4 = (p.k + 3u) / 4u;
    let n4 = (p.n + 3u) / 4u;
    let r0 = wid.y * TILE;
    let c0 = wid.x * (TILE / 4u);
    var acc = array<vec4<f32>, 4>();
    for (var t = 0u; t < n4; t += DEPTH / 4u) {
        stage_across(TILE_A, lhs, lid, t, n4, r0, p.m);
        stage_down(TILE_B, rhs, lid, 4u * t, p.n, c0, k4);
        workgroupBarrier();
        multiply_tiles(&acc, lid % 16u, lid / 16u);
        workgroupBarrier();
    }
    let c4 = c0 + lid % 16u;
    let r = r0 + 4u * (lid / 16u);
    if c4 < k4 && r < p.m {
        backward_input_store(c4, r, acc);
    }
}

// Output rows are dW's (n) and the inner dimension is the batch, which runs down both
// dY and X: both tiles are texels as they are. The first column of workgroups also sums
// dY's staged rows for db.
@compute @workgroup_size(256)
fn gemm_backward_weight_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k4 = (p.k + 3u) / 4u;
    let n4 = (p.n + 3u) / 4u;
    let nq0 = wid.y * (TILE / 4u);
    let c0 = wid.x * (TILE / 4u);
    let ty = lid / 16u;
    var acc = array<vec4<f32>, 4>();
    var gsum = vec4<f32>(0.0);
    for (var s = 0u; s < p.m; s += DEPTH) {
        stage_down(TILE_A, lhs, lid, s, p.m, nq0, n4);
        stage_down(TILE_B, rhs, lid, s, p.m, c0, k4);
        workgroupBarrier();
        multiply_tiles(&acc, lid % 16u, ty);
        if wid.x == 0u {
            for (var d = 0u; d < DEPTH; d++) {
                gsum += tiles[TILE_A + d * 16u + ty];
            }
        }
        workgroupBarrier();
    }
    let c4 = c0 + lid % 16u;
    if c4 < k4 && nq0 + ty < n4 {
        backward_weight_store(4u * (nq0 + ty), c4, array<vec4<f32>, 5>(acc[0], acc[1], acc[2], acc[3], gsum));
    }
}
