// The GEMMs of gemm.wgsl (same uniform, bindings and texture layout), for
// adapters whose subgroups are exactly LANES = 8 or 16 lanes wide (lanes8.wgsl or
// lanes16.wgsl in front): lavapipe on x86 CPUs, 16 with AVX-512.
// Each lane fetches one texel of the operand that all lanes share and hands
// it to the others with subgroupBroadcast, so a texel fetch (a gather of LANES
// lanes on llvmpipe) feeds LANES lanes' multiply-adds instead of one. Compiled only when
// the device has Features::SUBGROUP; chosen by measurement (src/kernels/choice.rs).
// Block sizes (elbo profile on lavapipe, MLP at batch 128): workgroups of one subgroup
// waste no lanes past n or k (64-lane ones idled up to a fifth of them at n = 400),
// and each lane owning more outputs amortises its own texel fetches: 32 rows per lane
// took the forward 1077 -> 918 us and the backward-input 1156 -> 857 us (16 and 8
// rows before; 64 gained nothing more), 4 columns instead of 2 the forward another
// 7-9% (at 32 rows; at 16 rows it lost), 16 outputs per lane the weight gradient
// 1760 -> 1570 us (8 before), and summing each 8-row chunk before adding it to the
// accumulator 1470 -> 1250 us (then 32 outputs per lane gained nothing).

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
// backward_weight: the flat gradient buffer (dW, db) as texels: its offsets and row
// strides are multiples of 64 floats, so whole texels are stored (one per-lane store
// instead of four; the padding columns get the zeros they hold)
@group(0) @binding(6) var<storage, read_write> grads: array<vec4<f32>>;

// Texel (col4, row) of t, or zero past `rows` (out-of-range fetches are clamped, then zeroed).
fn fetch_or_zero(t: texture_storage_2d<rgba32float, read>, col4: u32, row: u32, rows: u32) -> vec4<f32> {
    let v = textureLoad(t, vec2<u32>(col4, min(row, rows - 1u)));
    return select(vec4<f32>(0.0), v, row < rows);
}

// Y (m, n) = act(X (m, k) . W (n, k)^T + b)
// Workgroup (x, y), one subgroup: 4 LANES columns from x, 32 rows from 32 y. Lane l
// owns columns c0 = 4 LANES x + l, c0 + LANES, c0 + 2 LANES and c0 + 3 LANES, for all
// 32 rows; lanes fetch rows 32 y + LANES j + l of X (j < 32 / LANES) and broadcast them.
// The sums X . W^T of rows r0 .. r0 + 31 at the lane's four columns from c0, a vec4 a row.
fn forward_block(c0: u32, r0: u32, lane: u32) -> array<vec4<f32>, 32> {
    return forward_block_cols(c0 + vec4<u32>(0u, LANES, 2u * LANES, 3u * LANES), r0, lane);
}

// forward_block at the lane's four columns `cols` (rows of W), wherever they lie.
fn forward_block_cols(cols: vec4<u32>, r0: u32, lane: u32) -> array<vec4<f32>, 32> {
    let wrows = (p.n + 3u) / 4u * 4u;
    let w = min(cols, vec4<u32>(wrows - 1u));
    var acc4 = Rows32();
    let k4 = (p.k + 3u) / 4u;
    for (var t = 0u; t < k4; t++) {
        let w0 = textureLoad(rhs, vec2<u32>(t, w.x));
        let w1 = textureLoad(rhs, vec2<u32>(t, w.y));
        let w2 = textureLoad(rhs, vec2<u32>(t, w.z));
        let w3 = textureLoad(rhs, vec2<u32>(t, w.w));
        let x0 = fetch_or_zero(lhs, t, r0 + lane, p.m);
        let x1 = fetch_or_zero(lhs, t, r0 + LANES + lane, p.m);
        let x2 = fetch_or_zero(lhs, t, r0 + 2u * LANES + lane, p.m);
        let x3 = fetch_or_zero(lhs, t, r0 + 3u * LANES + lane, p.m);
        dot_rows32(&acc4, x0, x1, x2, x3, w0, w1, w2, w3);
    }
    return rows32_array(acc4);
}

// The bias at the lane's four columns from c0.
fn forward_bias(c0: u32) -> vec4<f32> {
    return forward_bias_cols(c0 + vec4<u32>(0u, LANES, 2u * LANES, 3u * LANES));
}

// The bias at the lane's four columns `cols` (clamped to n - 1 past it).
fn forward_bias_cols(cols: vec4<u32>) -> vec4<f32> {
    let c = min(cols, vec4<u32>(p.n - 1u));
    return vec4<f32>(params[p.bias + c.x], params[p.bias + c.y], params[p.bias + c.z], params[p.bias + c.w]);
}

// 1 at the lane's four columns from c0 that are below n, else 0.
fn forward_live(c0: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(c0, c0 + LANES, c0 + 2u * LANES, c0 + 3u * LANES) < vec4<u32>(p.n));
}

// v holds one row's values at the lane's four columns from c0; lanes 4j..4j+3 hold the
// four columns of one texel. Shuffles gather them so that lane first + c gets the texel
// of column set c: one store for all the lanes (llvmpipe runs each store as a loop over
// the lanes, active or not), at column store_col(c0, lane).
fn row_texel(v: vec4<f32>, lane: u32) -> vec4<f32> {
    let first = lane & ~3u;
    var texel = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let tc = vec4<f32>(subgroupShuffle(v[c], first), subgroupShuffle(v[c], first + 1u), subgroupShuffle(v[c], first + 2u), subgroupShuffle(v[c], first + 3u));
        texel = select(texel, tc, lane - first == c);
    }
    return texel;
}

// The first column of row_texel's texel: lane first + c owns column first + c of the
// 4 LANES, and set c begins at first + LANES c.
fn store_col(c0: u32, lane: u32) -> u32 {
    return c0 + (LANES - 1u) * (lane - (lane & ~3u));
}

@compute @workgroup_size(LANES)
fn gemm_forward_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let c0 = wg.x * 4u * LANES + lid;
    let r0 = wg.y * 32u;
    var acc = forward_block(c0, r0, lane);
    let b = forward_bias(c0);
    let live = forward_live(c0);
    for (var r = 0u; r < 32u; r++) {
        let v = act_forward(acc[r] + b, p.act);
        let texel = row_texel(v * live, lane);
        let row = r0 + r;
        let col = store_col(c0, lane);
        if row < p.m && col < p.n {
            textureStore(out, vec2<u32>(col / 4u, row), texel);
        }
    }
}

// dX (m, k) = dY (m, n) . W (n, k), times act'(X)
// Workgroup (x, y), one subgroup: LANES k-texels from x, 32 rows from 32 y. Lane l owns
// k-texel LANES x + l for all 32 rows; lanes fetch rows 32 y + LANES j + l of dY
// (j < 32 / LANES) and broadcast them.
@compute @workgroup_size(LANES)
fn gemm_backward_input_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let k4 = (p.k + 3u) / 4u;
    let c4 = wg.x * LANES + lid;
    let col = min(c4, k4 - 1u);
    let r0 = wg.y * 32u;
    var acc4 = Rows32();
    let n4 = (p.n + 3u) / 4u;
    for (var t = 0u; t < n4; t++) {
        let w0 = textureLoad(rhs, vec2<u32>(col, 4u * t));
        let w1 = textureLoad(rhs, vec2<u32>(col, 4u * t + 1u));
        let w2 = textureLoad(rhs, vec2<u32>(col, 4u * t + 2u));
        let w3 = textureLoad(rhs, vec2<u32>(col, 4u * t + 3u));
        let gl0 = fetch_or_zero(lhs, t, r0 + lane, p.m);
        let gl1 = fetch_or_zero(lhs, t, r0 + LANES + lane, p.m);
        let gl2 = fetch_or_zero(lhs, t, r0 + 2u * LANES + lane, p.m);
        let gl3 = fetch_or_zero(lhs, t, r0 + 3u * LANES + lane, p.m);
        combine_rows32(&acc4, gl0, gl1, gl2, gl3, w0, w1, w2, w3);
    }
    if c4 >= k4 {
        return;
    }
    var acc = rows32_array(acc4);
    for (var r = 0u; r < 32u; r++) {
        let row = r0 + r;
        if row < p.m {
            var v = acc[r];
            if p.act != ACT_IDENTITY {
                v *= act_grad(textureLoad(mask, vec2<u32>(c4, row)), p.act);
            }
            textureStore(out, vec2<u32>(c4, row), v);
        }
    }
}

// dW (n, k) = dY (m, n)^T . X (m, k) and db (n) = sum over rows of dY.
// Workgroup (x, y), one subgroup: LANES k-texels from x, 16 outputs n from 16 y. Rows go
// in chunks of 8 (at either width): lane l < 8 fetches dY's four texels of row
// (chunk + l) and broadcasts them,
// and each accumulator takes the chunk's 8 products in one update (llvmpipe keeps
// loop-carried accumulators in memory once they outnumber the registers).
// dY's padding rows are zero (the loss writes them so), so they add nothing.
// The 16 outputs n0 .. n0 + 15 of dW at k-texel `col`, one vec4 per output.
fn weight_block(col: u32, n0: u32, lane: u32) -> array<vec4<f32>, 16> {
    let n4 = (p.n + 3u) / 4u;
    let t0 = n0 / 4u;
    var acc = Outs16();
    for (var r0 = 0u; r0 < p.m; r0 += LANES) {
        // lane l fetches dY's texels of row r0 + l (zero past n) and broadcasts them
        let g0 = fetch_or_zero(lhs, min(t0 + 0u, n4 - 1u), r0 + lane, p.m) * f32(t0 + 0u < n4);
        let g1 = fetch_or_zero(lhs, min(t0 + 1u, n4 - 1u), r0 + lane, p.m) * f32(t0 + 1u < n4);
        let g2 = fetch_or_zero(lhs, min(t0 + 2u, n4 - 1u), r0 + lane, p.m) * f32(t0 + 2u < n4);
        let g3 = fetch_or_zero(lhs, min(t0 + 3u, n4 - 1u), r0 + lane, p.m) * f32(t0 + 3u < n4);
        let x0 = fetch_or_zero(rhs, col, r0 + 0u, p.m);
        let x1 = fetch_or_zero(rhs, col, r0 + 1u, p.m);
        let x2 = fetch_or_zero(rhs, col, r0 + 2u, p.m);
        let x3 = fetch_or_zero(rhs, col, r0 + 3u, p.m);
        let x4 = fetch_or_zero(rhs, col, r0 + 4u, p.m);
        let x5 = fetch_or_zero(rhs, col, r0 + 5u, p.m);
        let x6 = fetch_or_zero(rhs, col, r0 + 6u, p.m);
        let x7 = fetch_or_zero(rhs, col, r0 + 7u, p.m);
        if LANES == 16u {
            let x8 = fetch_or_zero(rhs, col, r0 + 8u, p.m);
            let x9 = fetch_or_zero(rhs, col, r0 + 9u, p.m);
            let x10 = fetch_or_zero(rhs, col, r0 + 10u, p.m);
            let x11 = fetch_or_zero(rhs, col, r0 + 11u, p.m);
            let x12 = fetch_or_zero(rhs, col, r0 + 12u, p.m);
            let x13 = fetch_or_zero(rhs, col, r0 + 13u, p.m);
            let x14 = fetch_or_zero(rhs, col, r0 + 14u, p.m);
            let x15 = fetch_or_zero(rhs, col, r0 + 15u, p.m);
            weight_chunk16(&acc, g0, g1, g2, g3, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15);
        } else {
            weight_chunk(&acc, g0, g1, g2, g3, x0, x1, x2, x3, x4, x5, x6, x7);
        }
    }
    return outs16_array(acc);
}

// db's texel t: the sum over rows of dY's texel t. Lanes take every LANES-th row and
// subgroupAdd combines them.
fn bias_texel(t: u32, lane: u32) -> vec4<f32> {
    var sum = vec4<f32>(0.0);
    for (var r = lane; r < p.m; r += LANES) {
        sum += textureLoad(lhs, vec2<u32>(t, r));
    }
    return subgroupAdd(sum);
}

@compute @workgroup_size(LANES)
fn gemm_backward_weight_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let k4 = (p.k + 3u) / 4u;
    let c4 = wg.x * LANES + lane;
    let n0 = wg.y * 16u;
    var acc = weight_block(min(c4, k4 - 1u), n0, lane);
    // db: the first column of workgroups also sums dY's 16 columns
    if wg.x == 0u {
        let t0 = n0 / 4u;
        for (var t = t0; t < min(t0 + 4u, (p.n + 3u) / 4u); t++) {
            let sum = bias_texel(t, lane);
            if lane == 0u {
                grads[p.grad_b / 4u + t] = sum;
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
        grads[(p.grad_w + n * p.stride) / 4u + c4] = acc[i];
    }
}
