// Element-wise activations on (m, cols) texture matrices (layout: gemm.wgsl).
// The training step fuses ReLU into the GEMMs; these stand alone for decoding
// (sigmoid of the logits) and as the reference point of the fused versions.

struct Elementwise {
    m: u32,    // rows, a multiple of 4
    cols: u32, // columns
}

@group(0) @binding(0) var<uniform> p: Elementwise;
// forward: the pre-activation X (m, cols); backward: the forward output Y (m, cols)
@group(0) @binding(1) var src: texture_storage_2d<rgba32float, read>;
// backward: the incoming gradient dY (m, cols)
@group(0) @binding(2) var grad: texture_storage_2d<rgba32float, read>;
// forward: Y (m, cols); backward: dX (m, cols)
@group(0) @binding(3) var out: texture_storage_2d<rgba32float, write>;

// The texel this invocation owns, or none past the end.
fn texel(gid: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let c4s = (p.cols + 3u) / 4u;
    let i = linear_id(gid, nwg);
    return vec3<u32>(i % c4s, i / c4s, u32(i < c4s * p.m));
}

fn live_lanes(c4: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols));
}

// Y = max(X, 0)
@compute @workgroup_size(64)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = texel(gid, nwg);
    if t.z == 0u {
        return;
    }
    let x = textureLoad(src, t.xy);
    textureStore(out, t.xy, max(x, vec4<f32>(0.0)));
}

// dX = dY * [Y > 0]
@compute @workgroup_size(64)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = texel(gid, nwg);
    if t.z == 0u {
        return;
    }
    let y = textureLoad(src, t.xy);
    let dy = textureLoad(grad, t.xy);
    textureStore(out, t.xy, select(vec4<f32>(0.0), dy, y > vec4<f32>(0.0)));
}

// Y = 1 / (1 + exp(-X))
@compute @workgroup_size(64)
fn sigmoid_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = texel(gid, nwg);
    if t.z == 0u {
        return;
    }
    let x = textureLoad(src, t.xy);
    textureStore(out, t.xy, live_lanes(t.x) / (1.0 + exp(-x)));
}

// dX = dY * Y * (1 - Y)
@compute @workgroup_size(64)
fn sigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = texel(gid, nwg);
    if t.z == 0u {
        return;
    }
    let y = textureLoad(src, t.xy);
    let dy = textureLoad(grad, t.xy);
    textureStore(out, t.xy, dy * y * (1.0 - y));
}
