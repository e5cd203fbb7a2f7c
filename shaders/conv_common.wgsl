// Put in front of conv.wgsl and conv_subgroup.wgsl (src/kernels/mod.rs: SHADERS): the
// layout, uniform, bindings and epilogue that both files' kernels share.
//
// 2-D convolutions on batches of channels-last images. An image (h, w, c) is
// one row of an rgba32float texture: texel (y * w + x) * c4 + q holds channels
// 4q..4q+3 of pixel (y, x), with c4 = ceil(c / 4) and the padding channels
// zero; row b is image b of the batch. Channels-last makes one texel fetch
// carry four channels of a pixel, the unit every loop below steps by.
//
// The weight W of a convolution from c_in to c_out channels is stored as a
// (c_out, k * k * c4_in * 4) matrix texture: row o, texel (ky * k + kx) * c4_in + q
// holds W[o, 4q..4q+3, ky, kx]. A transposed convolution (PyTorch's
// ConvTranspose2d, weight (in, out, kh, kw)) is the backward-input pass of the
// convolution that maps its output back to its input, with the same storage.

struct Conv {
    batch: u32,    // images: texture rows, a multiple of 4
    in_w: u32,
    in_h: u32,
    in_c: u32,     // channels of the convolution's input
    out_w: u32,
    out_h: u32,
    out_c: u32,    // channels of the convolution's output
    kernel: u32,   // k: the kernel is k x k
    stride: u32,
    pad: u32,      // zero padding on every side
    epilogue: u32, // EPILOGUE_* below
    bias: u32,     // offset of the bias in the flat parameters (out_c for forward, in_c for backward_input)
    grad_w: u32,   // backward_weight: offset of dW in the flat gradients
    w_stride: u32, // backward_weight: row stride of dW, floats
    grad_b: u32,   // backward_weight: offset of db
    bias_of: u32,  // backward_weight: db sums 0: dOut (convolution), 1: the input (transposed convolution), 2: none
    act: u32,      // the activation of EPILOGUE_BIAS_ACT, or the one whose derivative EPILOGUE_ACT_GRAD takes (common.wgsl: ACT_*)
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// What a forward or backward-input pass does to its result (src/kernels/conv.rs: EPILOGUE_*).
const EPILOGUE_NONE: u32 = 0u;
const EPILOGUE_BIAS: u32 = 1u;      // + bias
const EPILOGUE_BIAS_ACT: u32 = 2u;  // + bias, then the activation
const EPILOGUE_ACT_GRAD: u32 = 3u;  // times act'(mask), the mask laid out as the result

@group(0) @binding(0) var<uniform> p: Conv;
// forward: the input (batch, in_h * in_w * c4_in texels); backward_*: dOut (batch, out_h * out_w * c4_out)
@group(0) @binding(1) var lhs: texture_storage_2d<rgba32float, read>;
// forward, backward_input: W (c_out, k * k * c4_in texels); backward_weight: the input
@group(0) @binding(2) var rhs: texture_storage_2d<rgba32float, read>;
// EPILOGUE_ACT_GRAD: an activation's output (laid out as the result), whose derivative multiplies it
@group(0) @binding(3) var mask: texture_storage_2d<rgba32float, read>;
// forward: the output; backward_input: dIn
@group(0) @binding(4) var out: texture_storage_2d<rgba32float, write>;
// forward, backward_input: the flat parameters (bias)
@group(0) @binding(5) var<storage, read> params: array<f32>;
// backward_weight: the flat gradients (dW, db)
@group(0) @binding(6) var<storage, read_write> grads: array<f32>;

fn c4_of(c: u32) -> u32 {
    return (c + 3u) / 4u;
}

// llvmpipe (Mesa 22.3) ends every loop of an invocation once their iterations add up to
// 65535 (LP_MAX_TGSI_LOOP_ITERATIONS: a single counter, not one per loop), and loops after
// that run once: long sums step 16 texels a turn.

// The sum of `count` texels of row `row` of t from texel `first` on, `stride` apart.
fn row_sum16(t: texture_storage_2d<rgba32float, read>, row: u32, first: u32, stride: u32, count: u32) -> vec4<f32> {
    var sum = vec4<f32>(0.0);
    for (var i = 0u; i < count; i += 16u) {
        var part = vec4<f32>(0.0);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 0u) * stride, row)), i + 0u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 1u) * stride, row)), i + 1u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 2u) * stride, row)), i + 2u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 3u) * stride, row)), i + 3u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 4u) * stride, row)), i + 4u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 5u) * stride, row)), i + 5u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 6u) * stride, row)), i + 6u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 7u) * stride, row)), i + 7u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 8u) * stride, row)), i + 8u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 9u) * stride, row)), i + 9u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 10u) * stride, row)), i + 10u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 11u) * stride, row)), i + 11u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 12u) * stride, row)), i + 12u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 13u) * stride, row)), i + 13u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 14u) * stride, row)), i + 14u < count);
        part += select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(first + (i + 15u) * stride, row)), i + 15u < count);
        sum += part;
    }
    return sum;
}

fn live_lanes(q: u32, c: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(q * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(c));
}

fn bias4(q: u32, c: u32) -> vec4<f32> {
    var b = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if q * 4u + j < c {
            b[j] = params[p.bias + q * 4u + j];
        }
    }
    return b;
}

// The bias of channels 4q..4q+3 of c that the epilogue adds: bias4 for EPILOGUE_BIAS and
// EPILOGUE_BIAS_ACT, else zero.
fn epilogue_bias(q: u32, c: u32) -> vec4<f32> {
    if p.epilogue == EPILOGUE_BIAS || p.epilogue == EPILOGUE_BIAS_ACT {
        return bias4(q, c);
    }
    return vec4<f32>(0.0);
}

// Writes a result texel after the epilogue's activation or activation derivative; `live`
// zeroes padding channels.
fn store(texel: vec2<u32>, value: vec4<f32>, live: vec4<f32>) {
    var v = value;
    if p.epilogue == EPILOGUE_BIAS_ACT {
        v = act_forward(v, p.act);
    } else if p.epilogue == EPILOGUE_ACT_GRAD {
        v *= act_grad(textureLoad(mask, texel), p.act);
    }
    textureStore(out, texel, v * live);
}
