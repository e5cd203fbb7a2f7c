// The GEMMs of gemm.wgsl (same uniform, bindings and texture layout), for
// adapters whose subgroups are exactly 8 lanes wide: lavapipe on AVX2 CPUs.
// Each lane fetches one texel of the operand that all lanes share and hands
// it to the others with subgroupBroadcast, so a texel fetch (a gather of 8
// lanes on llvmpipe) feeds 8 lanes' multiply-adds instead of one. Compiled only when
// the device has Features::SUBGROUP; chosen by measurement (src/kernels.rs).

struct Gemm {
    m: u32,      // batch rows, a multiple of 4
    n: u32,      // output features
    k: u32,      // input features
    act: u32,    // 0: identity; 1: ReLU (forward) or ReLU mask (backward_input)
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
// backward_input: the layer's input X (m, k), whose sign masks dX when act == 1
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
// Workgroup (x, y), one subgroup: 16 columns from 16 x, 16 rows from 16 y. Lane l
// owns columns c0 = 16 x + l and c0 + 8, for all 16 rows; lanes fetch rows 16 y + l
// and 16 y + 8 + l of X and broadcast them. (One-subgroup workgroups waste no lanes
// past n: 64-lane ones left up to a fifth of the lanes idle at n = 400.)
@compute @workgroup_size(8)
fn gemm_forward_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let c0 = wg.x * 16u + lid;
    let c1 = c0 + 8u;
    let r0 = wg.y * 16u;
    let wrows = (p.n + 3u) / 4u * 4u;
    let w0_row = min(c0, wrows - 1u);
    let w1_row = min(c1, wrows - 1u);
    var a0 = vec2<f32>(0.0);
    var a1 = vec2<f32>(0.0);
    var a2 = vec2<f32>(0.0);
    var a3 = vec2<f32>(0.0);
    var a4 = vec2<f32>(0.0);
    var a5 = vec2<f32>(0.0);
    var a6 = vec2<f32>(0.0);
    var a7 = vec2<f32>(0.0);
    var a8 = vec2<f32>(0.0);
    var a9 = vec2<f32>(0.0);
    var a10 = vec2<f32>(0.0);
    var a11 = vec2<f32>(0.0);
    var a12 = vec2<f32>(0.0);
    var a13 = vec2<f32>(0.0);
    var a14 = vec2<f32>(0.0);
    var a15 = vec2<f32>(0.0);
    let k4 = (p.k + 3u) / 4u;
    for (var t = 0u; t < k4; t++) {
        let w0 = textureLoad(rhs, vec2<u32>(t, w0_row));
        let w1 = textureLoad(rhs, vec2<u32>(t, w1_row));
        let xa = fetch_or_zero(lhs, t, r0 + lane, p.m);
        let xb = fetch_or_zero(lhs, t, r0 + 8u + lane, p.m);
        var x = subgroupBroadcast(xa, 0u);
        a0 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xa, 1u);
        a1 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xa, 2u);
        a2 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xa, 3u);
        a3 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xa, 4u);
        a4 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xa, 5u);
        a5 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xa, 6u);
        a6 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xa, 7u);
        a7 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xb, 0u);
        a8 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xb, 1u);
        a9 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xb, 2u);
        a10 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xb, 3u);
        a11 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xb, 4u);
        a12 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xb, 5u);
        a13 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xb, 6u);
        a14 += vec2<f32>(dot(x, w0), dot(x, w1));
        x = subgroupBroadcast(xb, 7u);
        a15 += vec2<f32>(dot(x, w0), dot(x, w1));
    }
    var acc = array<vec2<f32>, 16>(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    let b = vec2<f32>(params[p.bias + min(c0, p.n - 1u)], params[p.bias + min(c1, p.n - 1u)]);
    let live = vec2<f32>(f32(c0 < p.n), f32(c1 < p.n));
    // lanes 4j..4j+3 hold the four columns of one output texel: gather them by shuffles
    let first = lane & ~3u;
    for (var r = 0u; r < 16u; r++) {
        var v = acc[r] + b;
        if p.act == 1u {
            v = max(v, vec2<f32>(0.0));
        }
        v *= live;
        let t0 = vec4<f32>(subgroupShuffle(v.x, first), subgroupShuffle(v.x, first + 1u), subgroupShuffle(v.x, first + 2u), subgroupShuffle(v.x, first + 3u));
        let t1 = vec4<f32>(subgroupShuffle(v.y, first), subgroupShuffle(v.y, first + 1u), subgroupShuffle(v.y, first + 2u), subgroupShuffle(v.y, first + 3u));
        let row = r0 + r;
        if lane == first && row < p.m {
            if c0 < p.n {
                textureStore(out, vec2<u32>(c0 / 4u, row), t0);
            }
            if c1 < p.n {
                textureStore(out, vec2<u32>(c1 / 4u, row), t1);
            }
        }
    }
}

// dX (m, k) = dY (m, n) . W (n, k), times [X > 0] when act == 1
// Workgroup (x, y), one subgroup: 8 k-texels from 8 x, 8 rows from 8 y. Lane l owns
// k-texel 8 x + l for all 8 rows; lanes fetch row 8 y + l of dY and broadcast it.
@compute @workgroup_size(8)
fn gemm_backward_input_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let k4 = (p.k + 3u) / 4u;
    let c4 = wg.x * 8u + lid;
    let col = min(c4, k4 - 1u);
    let r0 = wg.y * 8u;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    let n4 = (p.n + 3u) / 4u;
    for (var t = 0u; t < n4; t++) {
        let w0 = textureLoad(rhs, vec2<u32>(col, 4u * t));
        let w1 = textureLoad(rhs, vec2<u32>(col, 4u * t + 1u));
        let w2 = textureLoad(rhs, vec2<u32>(col, 4u * t + 2u));
        let w3 = textureLoad(rhs, vec2<u32>(col, 4u * t + 3u));
        let gl = fetch_or_zero(lhs, t, r0 + lane, p.m);
        var g = subgroupBroadcast(gl, 0u);
        a0 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
        g = subgroupBroadcast(gl, 1u);
        a1 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
        g = subgroupBroadcast(gl, 2u);
        a2 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
        g = subgroupBroadcast(gl, 3u);
        a3 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
        g = subgroupBroadcast(gl, 4u);
        a4 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
        g = subgroupBroadcast(gl, 5u);
        a5 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
        g = subgroupBroadcast(gl, 6u);
        a6 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
        g = subgroupBroadcast(gl, 7u);
        a7 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    }
    if c4 >= k4 {
        return;
    }
    var acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var r = 0u; r < 8u; r++) {
        let row = r0 + r;
        if row < p.m {
            var v = acc[r];
            if p.act == 1u {
                v *= select(vec4<f32>(0.0), vec4<f32>(1.0), textureLoad(mask, vec2<u32>(c4, row)) > vec4<f32>(0.0));
            }
            textureStore(out, vec2<u32>(c4, row), v);
        }
    }
}

// dW (n, k) = dY (m, n)^T . X (m, k) and db (n) = sum over rows of dY.
// Workgroup (x, y), one subgroup: 8 k-texels from 8 x, 8 outputs n from 8 y. Rows go
// in chunks of 8: lane l fetches dY's two texels of row (chunk + l) and broadcasts them.
// dY's padding rows are zero (the loss writes them so), so they add nothing.
@compute @workgroup_size(8)
fn gemm_backward_weight_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let k4 = (p.k + 3u) / 4u;
    let c4 = wg.x * 8u + lid;
    let col = min(c4, k4 - 1u);
    let n0 = wg.y * 8u;
    let n4 = (p.n + 3u) / 4u;
    let ta = min(n0 / 4u, n4 - 1u);
    let tb = min(n0 / 4u + 1u, n4 - 1u);
    let live_b = f32(n0 / 4u + 1u < n4);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    for (var r0 = 0u; r0 < p.m; r0 += 8u) {
        let ga = fetch_or_zero(lhs, ta, r0 + lane, p.m);
        let gb = fetch_or_zero(lhs, tb, r0 + lane, p.m) * live_b;
        // row r0 + j of X times the broadcast row r0 + j of dY, for j = 0..7
        var x: vec4<f32>;
        var da: vec4<f32>;
        var db: vec4<f32>;
        x = fetch_or_zero(rhs, col, r0 + 0u, p.m);
        da = subgroupBroadcast(ga, 0u);
        db = subgroupBroadcast(gb, 0u);
        a0 += da.x * x;
        a1 += da.y * x;
        a2 += da.z * x;
        a3 += da.w * x;
        a4 += db.x * x;
        a5 += db.y * x;
        a6 += db.z * x;
        a7 += db.w * x;
        x = fetch_or_zero(rhs, col, r0 + 1u, p.m);
        da = subgroupBroadcast(ga, 1u);
        db = subgroupBroadcast(gb, 1u);
        a0 += da.x * x;
        a1 += da.y * x;
        a2 += da.z * x;
        a3 += da.w * x;
        a4 += db.x * x;
        a5 += db.y * x;
        a6 += db.z * x;
        a7 += db.w * x;
        x = fetch_or_zero(rhs, col, r0 + 2u, p.m);
        da = subgroupBroadcast(ga, 2u);
        db = subgroupBroadcast(gb, 2u);
        a0 += da.x * x;
        a1 += da.y * x;
        a2 += da.z * x;
        a3 += da.w * x;
        a4 += db.x * x;
        a5 += db.y * x;
        a6 += db.z * x;
        a7 += db.w * x;
        x = fetch_or_zero(rhs, col, r0 + 3u, p.m);
        da = subgroupBroadcast(ga, 3u);
        db = subgroupBroadcast(gb, 3u);
        a0 += da.x * x;
        a1 += da.y * x;
        a2 += da.z * x;
        a3 += da.w * x;
        a4 += db.x * x;
        a5 += db.y * x;
        a6 += db.z * x;
        a7 += db.w * x;
        x = fetch_or_zero(rhs, col, r0 + 4u, p.m);
        da = subgroupBroadcast(ga, 4u);
        db = subgroupBroadcast(gb, 4u);
        a0 += da.x * x;
        a1 += da.y * x;
        a2 += da.z * x;
        a3 += da.w * x;
        a4 += db.x * x;
        a5 += db.y * x;
        a6 += db.z * x;
        a7 += db.w * x;
        x = fetch_or_zero(rhs, col, r0 + 5u, p.m);
        da = subgroupBroadcast(ga, 5u);
        db = subgroupBroadcast(gb, 5u);
        a0 += da.x * x;
        a1 += da.y * x;
        a2 += da.z * x;
        a3 += da.w * x;
        a4 += db.x * x;
        a5 += db.y * x;
        a6 += db.z * x;
        a7 += db.w * x;
        x = fetch_or_zero(rhs, col, r0 + 6u, p.m);
        da = subgroupBroadcast(ga, 6u);
        db = subgroupBroadcast(gb, 6u);
        a0 += da.x * x;
        a1 += da.y * x;
        a2 += da.z * x;
        a3 += da.w * x;
        a4 += db.x * x;
        a5 += db.y * x;
        a6 += db.z * x;
        a7 += db.w * x;
        x = fetch_or_zero(rhs, col, r0 + 7u, p.m);
        da = subgroupBroadcast(ga, 7u);
        db = subgroupBroadcast(gb, 7u);
        a0 += da.x * x;
        a1 += da.y * x;
        a2 += da.z * x;
        a3 += da.w * x;
        a4 += db.x * x;
        a5 += db.y * x;
        a6 += db.z * x;
        a7 += db.w * x;
    }
    // db: the first column of workgroups also sums dY's 8
    // columns; lanes take every 8th row and subgroupAdd combines them
    if wg.x == 0u && lid < 8u {
        var sa = vec4<f32>(0.0);
        var sb = vec4<f32>(0.0);
        for (var r = lane; r < p.m; r += 8u) {
            sa += textureLoad(lhs, vec2<u32>(ta, r));
            sb += textureLoad(lhs, vec2<u32>(tb, r)) * live_b;
        }
        sa = subgroupAdd(sa);
        sb = subgroupAdd(sb);
        if lid == 0u && n0 < p.n {
            grads[(p.grad_b + n0) / 4u] = sa;
            if n0 + 4u < p.n {
                grads[(p.grad_b + n0) / 4u + 1u] = sb;
            }
        }
    }
    if c4 >= k4 {
        return;
    }
    var acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var i = 0u; i < 8u; i++) {
        let n = n0 + i;
        if n >= p.n {
            break;
        }
        grads[(p.grad_w + n * p.stride) / 4u + c4] = acc[i];
    }
}
