// Matrix products for dense layers. Every activation and weight matrix lives
// in an rgba32float texture: a (rows, cols) matrix is a texture of width
// ceil(cols / 4) texels and height rows (padded to a multiple of 4); texel
// (t, r) holds columns 4t..4t+3 of row r and columns past `cols` are zero.
// Inputs are read-only storage textures: on lavapipe their loads are inline
// vector code (a sampled texture's textureLoad is an out-of-line call); each
// invocation computes a 4x4 block of the output.
//
// Weights follow PyTorch's nn.Linear: W is (out = n, in = k).

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

fn activate(v: vec4<f32>) -> vec4<f32> {
    if p.act == 1u {
        return max(v, vec4<f32>(0.0));
    }
    return v;
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
    let n0 = c4 * 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let k4 = (p.k + 3u) / 4u;
    for (var t = 0u; t < k4; t++) {
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
    let live = live_lanes(c4, p.n);
    var b = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if n0 + j < p.n {
            b[j] = params[p.bias + n0 + j];
        }
    }
    textureStore(out, vec2<u32>(c4, r0), activate(acc0 + b) * live);
    textureStore(out, vec2<u32>(c4, r0 + 1u), activate(acc1 + b) * live);
    textureStore(out, vec2<u32>(c4, r0 + 2u), activate(acc2 + b) * live);
    textureStore(out, vec2<u32>(c4, r0 + 3u), activate(acc3 + b) * live);
}

// dX (m, k) = dY (m, n) . W (n, k), times [X > 0] when act == 1
@compute @workgroup_size(64)
fn gemm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k4 = (p.k + 3u) / 4u;
    let tile = linear_id(gid, nwg);
    if tile >= k4 * (p.m / 4u) {
        return;
    }
    let c4 = tile % k4;
    let r0 = (tile / k4) * 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let n4 = (p.n + 3u) / 4u;
    for (var t = 0u; t < n4; t++) {
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
    if p.act == 1u {
        acc0 *= select(vec4<f32>(0.0), vec4<f32>(1.0), fetch(mask, c4, r0) > vec4<f32>(0.0));
        acc1 *= select(vec4<f32>(0.0), vec4<f32>(1.0), fetch(mask, c4, r0 + 1u) > vec4<f32>(0.0));
        acc2 *= select(vec4<f32>(0.0), vec4<f32>(1.0), fetch(mask, c4, r0 + 2u) > vec4<f32>(0.0));
        acc3 *= select(vec4<f32>(0.0), vec4<f32>(1.0), fetch(mask, c4, r0 + 3u) > vec4<f32>(0.0));
    }
    textureStore(out, vec2<u32>(c4, r0), acc0);
    textureStore(out, vec2<u32>(c4, r0 + 1u), acc1);
    textureStore(out, vec2<u32>(c4, r0 + 2u), acc2);
    textureStore(out, vec2<u32>(c4, r0 + 3u), acc3);
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
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var gsum = vec4<f32>(0.0);
    for (var r = 0u; r < p.m; r++) {
        let g = fetch(lhs, n0 / 4u, r);
        let x = fetch(rhs, c4, r);
        acc0 += g.x * x;
        acc1 += g.y * x;
        acc2 += g.z * x;
        acc3 += g.w * x;
        gsum += g;
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let n = n0 + i;
        if n >= p.n {
            break;
        }
        grads[(p.grad_w + n * p.stride) / 4u + c4] = acc[i];
    }
    if c4 == 0u {
        grads[(p.grad_b + n0) / 4u] = gsum;
    }
}
