// The convolutions (conv_common.wgsl, in front, holds the layouts, the uniform
// and the bindings).

// The forward and backward-input passes come in two variants that share the arithmetic:
//   conv2d_forward, conv2d_backward_input: one invocation per block of outputs,
//     looping over every tap and channel (CPU adapters; lavapipe runs conv_subgroup.wgsl
//     where it can);
//   conv2d_forward_wide, conv2d_backward_input_wide: CONV_SPLIT lanes per block, each
//     taking every CONV_SPLIT-th channel texel of the sum, added up in workgroup memory
//     (GPUs: one invocation per block ran the 32- and 64-channel layers at 1.7-2.4
//     TFLOP/s on an H100, 170-240 us each at batch 128).

// out[b, oy, ox, o] = sum over ky, kx, i of in[b, oy s + ky - pad, ox s + kx - pad, i] W[o, i, ky, kx] (+ bias, activation)
// EPILOGUE_ACT_GRAD makes it a transposed convolution's backward-input pass through an activation.
// A block: 4 neighbouring output pixels of a row times 4 output channels.

// Block i as (q, xb, oy, b): output channel texel, 4-pixel block of the row, row, image.
fn forward_block(i: u32) -> vec4<u32> {
    let out_c4 = c4_of(p.out_c);
    let blocks = (p.out_w + 3u) / 4u;
    return vec4<u32>(i % out_c4, (i / out_c4) % blocks, (i / out_c4 / blocks) % p.out_h, i / out_c4 / blocks / p.out_h);
}

// A block's sums over input channel texels c0, c0 + dc, ...
fn forward_sums(blk: vec4<u32>, c0: u32, dc: u32) -> array<vec4<f32>, 4> {
    let in_c4 = c4_of(p.in_c);
    let q = blk.x;
    let xb = blk.y;
    let oy = blk.z;
    let b = blk.w;
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var ky = 0u; ky < p.kernel; ky++) {
        let iy = i32(oy * p.stride + ky) - i32(p.pad);
        if iy < 0 || iy >= i32(p.in_h) {
            continue;
        }
        for (var kx = 0u; kx < p.kernel; kx++) {
            for (var ci = c0; ci < in_c4; ci += dc) {
                let wcol = (ky * p.kernel + kx) * in_c4 + ci;
                let w0 = textureLoad(rhs, vec2<u32>(wcol, q * 4u));
                let w1 = textureLoad(rhs, vec2<u32>(wcol, q * 4u + 1u));
                let w2 = textureLoad(rhs, vec2<u32>(wcol, q * 4u + 2u));
                let w3 = textureLoad(rhs, vec2<u32>(wcol, q * 4u + 3u));
                for (var px = 0u; px < 4u; px++) {
                    let ox = xb * 4u + px;
                    let ix = i32(ox * p.stride + kx) - i32(p.pad);
                    if ox < p.out_w && ix >= 0 && ix < i32(p.in_w) {
                        let x = textureLoad(lhs, vec2<u32>((u32(iy) * p.in_w + u32(ix)) * in_c4 + ci, b));
                        acc[px] += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
                    }
                }
            }
        }
    }
    return acc;
}

fn forward_store(blk: vec4<u32>, acc: array<vec4<f32>, 4>) {
    let out_c4 = c4_of(p.out_c);
    let q = blk.x;
    let live = live_lanes(q, p.out_c);
    let bias = epilogue_bias(q, p.out_c);
    for (var px = 0u; px < 4u; px++) {
        let ox = blk.y * 4u + px;
        if ox < p.out_w {
            store(vec2<u32>((blk.z * p.out_w + ox) * out_c4 + q, blk.w), acc[px] + bias, live);
        }
    }
}

@compute @workgroup_size(64)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = forward_block(linear_id(gid, nwg));
    if blk.w >= p.batch {
        return;
    }
    forward_store(blk, forward_sums(blk, 0u, 1u));
}

// dIn[b, iy, ix, i] = sum over ky, kx, o of dOut[b, oy, ox, o] W[o, i, ky, kx], where iy = oy s + ky - pad
// (and the same in x). EPILOGUE_BIAS(_ACT) makes it a transposed convolution's
// forward pass; EPILOGUE_ACT_GRAD multiplies it by the derivative of the activation
// that produced the input.
// A block: 4 input pixels of a row, `stride` apart (so the same taps reach them,
// from 4 neighbouring output pixels), times 4 input channels.

// Block i as (q, g, iy, b): input channel texel, pixel group of the row, row, image.
fn backward_input_block(i: u32) -> vec4<u32> {
    let in_c4 = c4_of(p.in_c);
    let span = 4u * p.stride;
    let groups = (p.in_w + span - 1u) / span * p.stride;
    return vec4<u32>(i % in_c4, (i / in_c4) % groups, (i / in_c4 / groups) % p.in_h, i / in_c4 / groups / p.in_h);
}

// The first of a block's pixels; the others follow `stride` apart.
fn backward_input_x0(g: u32) -> u32 {
    return (g / p.stride) * 4u * p.stride + g % p.stride;
}

// A block's sums over output channel texels c0, c0 + dc, ...
fn backward_input_sums(blk: vec4<u32>, c0: u32, dc: u32) -> array<vec4<f32>, 4> {
    let in_c4 = c4_of(p.in_c);
    let out_c4 = c4_of(p.out_c);
    let span = 4u * p.stride;
    let q = blk.x;
    let iy = blk.z;
    let b = blk.w;
    let ix0 = backward_input_x0(blk.y);
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var ky = 0u; ky < p.kernel; ky++) {
        let ty = i32(iy + p.pad) - i32(ky);
        if ty < 0 || u32(ty) % p.stride != 0u || u32(ty) / p.stride >= p.out_h {
            continue;
        }
        let oy = u32(ty) / p.stride;
        for (var kx = 0u; kx < p.kernel; kx++) {
            // tx = ix + pad - kx has the same remainder for all four pixels
            let tx0 = i32(ix0 + p.pad) - i32(kx);
            if u32(tx0 + i32(span)) % p.stride != 0u {
                continue;
            }
            let wcol = (ky * p.kernel + kx) * in_c4 + q;
            for (var co = c0; co < out_c4; co += dc) {
                let w0 = textureLoad(rhs, vec2<u32>(wcol, co * 4u));
                let w1 = textureLoad(rhs, vec2<u32>(wcol, co * 4u + 1u));
                let w2 = textureLoad(rhs, vec2<u32>(wcol, co * 4u + 2u));
                let w3 = textureLoad(rhs, vec2<u32>(wcol, co * 4u + 3u));
                for (var px = 0u; px < 4u; px++) {
                    let tx = tx0 + i32(px * p.stride);
                    let ox = tx / i32(p.stride);
                    if tx >= 0 && ox < i32(p.out_w) && ix0 + px * p.stride < p.in_w {
                        let gv = textureLoad(lhs, vec2<u32>((oy * p.out_w + u32(ox)) * out_c4 + co, b));
                        acc[px] += gv.x * w0 + gv.y * w1 + gv.z * w2 + gv.w * w3;
                    }
                }
            }
        }
    }
    return acc;
}

fn backward_input_store(blk: vec4<u32>, acc: array<vec4<f32>, 4>) {
    let in_c4 = c4_of(p.in_c);
    let q = blk.x;
    let ix0 = backward_input_x0(blk.y);
    let live = live_lanes(q, p.in_c);
    let bias = epilogue_bias(q, p.in_c);
    for (var px = 0u; px < 4u; px++) {
        let ix = ix0 + px * p.stride;
        if ix >= p.in_w {
            continue;
        }
        store(vec2<u32>((blk.z * p.in_w + ix) * in_c4 + q, blk.w), acc[px] + bias, live);
    }
}

@compute @workgroup_size(64)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = backward_input_block(linear_id(gid, nwg));
    if blk.w >= p.batch {
        return;
    }
    backward_input_store(blk, backward_input_sums(blk, 0u, 1u));
}

// The _wide variants: CONV_SPLIT lanes per block, 64 / CONV_SPLIT blocks per workgroup.
const CONV_SPLIT: u32 = 8u;
var<workgroup> part: array<array<vec4<f32>, 4>, 64>;

// Adds up the sums of each block's CONV_SPLIT lanes: the block's first lane gets the
// totals. Called by the whole workgroup.
fn split_sum(lid: u32, v: array<vec4<f32>, 4>) -> array<vec4<f32>, 4> {
    part[lid] = v;
    workgroupBarrier();
    for (var half = CONV_SPLIT / 2u; half > 0u; half >>= 1u) {
        if lid % CONV_SPLIT < half {
            for (var j = 0u; j < 4u; j++) {
                part[lid][j] += part[lid + half][j];
            }
        }
        workgroupBarrier();
    }
    return part[lid];
}

// Block (64 / CONV_SPLIT) * workgroup + lid / CONV_SPLIT; more than 65535 workgroups spill into y.
fn split_block(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * (64u / CONV_SPLIT) + lid / CONV_SPLIT;
}

@compute @workgroup_size(64)
fn conv2d_forward_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blk = forward_block(split_block(wid, lid, nwg));
    let live = blk.w < p.batch;
    var acc = array<vec4<f32>, 4>();
    if live {
        acc = forward_sums(blk, lid % CONV_SPLIT, CONV_SPLIT);
    }
    let total = split_sum(lid, acc);
    if live && lid % CONV_SPLIT == 0u {
        forward_store(blk, total);
    }
}

@compute @workgroup_size(64)
fn conv2d_backward_input_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blk = backward_input_block(split_block(wid, lid, nwg));
    let live = blk.w < p.batch;
    var acc = array<vec4<f32>, 4>();
    if live {
        acc = backward_input_sums(blk, lid % CONV_SPLIT, CONV_SPLIT);
    }
    let total = split_sum(lid, acc);
    if live && lid % CONV_SPLIT == 0u {
        backward_input_store(blk, total);
    }
}

// dW[o, i, ky, kx] = sum over images and output pixels of dOut[b, oy, ox, o] in[b, iy, ix, i],
// written into the flat gradients; db per bias_of. The unit of work is a block of
// 4 output channels times one tap (ky, kx) times 4 input channels, in two variants:
//   conv2d_backward_weight: one invocation per block, looping over every image
//     and output pixel (CPU adapters: 6 ms for the 1-channel layer at batch 128 on
//     lavapipe, where the per-workgroup variant takes 11);
//   conv2d_backward_weight_wide: one workgroup per block, its 256 lanes taking the
//     images and output rows in a 32 x 8 pattern and summing in workgroup memory
//     (GPUs: one invocation per block took 18 ms for that layer on an H100).

struct WeightSums {
    acc: array<vec4<f32>, 4>, // dW of output channels 4q..4q+3 for input channels 4ci..4ci+3
    g: vec4<f32>,             // the sum of dOut of those output channels
}

// The sums over images b0, b0 + db, ... and output rows oy0, oy0 + doy, ...
fn weight_sums(q: u32, tap: u32, ci: u32, b0: u32, db: u32, oy0: u32, doy: u32) -> WeightSums {
    let ky = tap / p.kernel;
    let kx = tap % p.kernel;
    var sums = WeightSums(array<vec4<f32>, 4>(), vec4<f32>(0.0));
    // four output columns a turn (row_sum16 says why)
    for (var b = b0; b < p.batch; b += db) {
        for (var oy = oy0; oy < p.out_h; oy += doy) {
            let iy = i32(oy * p.stride + ky) - i32(p.pad);
            for (var ox = 0u; ox < p.out_w; ox += 4u) {
                weight_px(&sums, q, ci, b, oy, iy, ox, kx);
                weight_px(&sums, q, ci, b, oy, iy, ox + 1u, kx);
                weight_px(&sums, q, ci, b, oy, iy, ox + 2u, kx);
                weight_px(&sums, q, ci, b, oy, iy, ox + 3u, kx);
            }
        }
    }
    return sums;
}

// weight_sums' products at output pixel (oy, ox) of image b, nothing past the row.
fn weight_px(sums: ptr<function, WeightSums>, q: u32, ci: u32, b: u32, oy: u32, iy: i32, ox: u32, kx: u32) {
    let in_c4 = c4_of(p.in_c);
    let live = ox < p.out_w;
    let g = select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>((oy * p.out_w + min(ox, p.out_w - 1u)) * c4_of(p.out_c) + q, b)), live);
    (*sums).g += g;
    let ix = i32(ox * p.stride + kx) - i32(p.pad);
    let inside = live && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
    let x = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>((u32(max(iy, 0)) * p.in_w + u32(max(ix, 0))) * in_c4 + ci, b)), inside);
    (*sums).acc[0] += g.x * x;
    (*sums).acc[1] += g.y * x;
    (*sums).acc[2] += g.z * x;
    (*sums).acc[3] += g.w * x;
}

// The sum of input channels 4ci..4ci+3 over images b0, b0 + db, ... and input rows
// y0, y0 + dy, ...: the bias gradient of a transposed convolution (bias_of 1).
fn input_sum(ci: u32, b0: u32, db: u32, y0: u32, dy: u32) -> vec4<f32> {
    let in_c4 = c4_of(p.in_c);
    var xsum = vec4<f32>(0.0);
    for (var b = b0; b < p.batch; b += db) {
        for (var iy = y0; iy < p.in_h; iy += dy) {
            xsum += row_sum16(rhs, b, iy * p.in_w * in_c4 + ci, in_c4, p.in_w);
        }
    }
    return xsum;
}

// Block i's (output channel block, tap, input channel block).
fn weight_block(i: u32) -> vec3<u32> {
    let in_c4 = c4_of(p.in_c);
    let taps = p.kernel * p.kernel;
    return vec3<u32>(i / in_c4 / taps, (i / in_c4) % taps, i % in_c4);
}

// Writes a block's dW and its share of db (xsum: the input_sum when this block owns a
// transposed convolution's bias).
fn store_weight_grads(q: u32, tap: u32, ci: u32, s: WeightSums, xsum: vec4<f32>) {
    let col = tap * c4_of(p.in_c) * 4u + ci * 4u;
    for (var j = 0u; j < 4u; j++) {
        let o = q * 4u + j;
        if o < p.out_c {
            for (var lane = 0u; lane < 4u; lane++) {
                grads[p.grad_w + o * p.w_stride + col + lane] = s.acc[j][lane];
            }
            if p.bias_of == 0u && tap == 0u && ci == 0u {
                grads[p.grad_b + o] = s.g[j];
            }
        }
    }
    // a transposed convolution's bias sits on this convolution's input side
    if p.bias_of == 1u && q == 0u && tap == 0u {
        for (var lane = 0u; lane < 4u; lane++) {
            if ci * 4u + lane < p.in_c {
                grads[p.grad_b + ci * 4u + lane] = xsum[lane];
            }
        }
    }
}

@compute @workgroup_size(64)
fn conv2d_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = weight_block(linear_id(gid, nwg));
    let q = blk.x;
    let tap = blk.y;
    let ci = blk.z;
    if q >= c4_of(p.out_c) {
        return;
    }
    var xsum = vec4<f32>(0.0);
    if p.bias_of == 1u && q == 0u && tap == 0u {
        xsum = input_sum(ci, 0u, 1u, 0u, 1u);
    }
    store_weight_grads(q, tap, ci, weight_sums(q, tap, ci, 0u, 1u, 0u, 1u), xsum);
}

// lanes of the _wide variant: image phase lid % 32, output-row phase lid / 32
const WIDE_LANES: u32 = 256u;
var<workgroup> red: array<array<vec4<f32>, 5>, 128>;

@compute @workgroup_size(256)
fn conv2d_backward_weight_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // one workgroup per block; more than 65535 blocks spill into y
    let blk = weight_block(wid.x + wid.y * nwg.x);
    let q = blk.x;
    let tap = blk.y;
    let ci = blk.z;
    if q >= c4_of(p.out_c) {
        return; // uniform across the workgroup
    }
    let s = weight_sums(q, tap, ci, lid % 32u, 32u, lid / 32u, 8u);
    var bsum = s.g;
    if p.bias_of == 1u && q == 0u && tap == 0u {
        bsum = input_sum(ci, lid % 32u, 32u, lid / 32u, 8u);
    }
    var v = array<vec4<f32>, 5>(s.acc[0], s.acc[1], s.acc[2], s.acc[3], bsum);
    // each round the upper half of the lanes still summing hands its sums to the lower half
    for (var half = WIDE_LANES / 2u; half > 0u; half >>= 1u) {
        if lid >= half && lid < 2u * half {
            red[lid - half] = v;
        }
        workgroupBarrier();
        if lid < half {
            for (var r = 0u; r < 5u; r++) {
                v[r] += red[lid][r];
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        store_weight_grads(q, tap, ci, WeightSums(array<vec4<f32>, 4>(v[0], v[1], v[2], v[3]), v[4]), v[4]);
    }
}

// A transposed convolution into one channel (conv2d_backward_input with in_c == 1) in
// three dispatches, on adapters with the subgroup kernels (kernels::ConvVariant::SplitC1):
// conv2d_taps_c1 lays the weights out as a 1x1 convolution from out_c channels to the
// k * k taps; conv2d_forward_subgroup runs it, giving the taps image
// T[b, oy, ox, tap] = sum over o of dOut[b, oy, ox, o] W[o, 0, tap]; and
// conv2d_col2im_c1 sums, for each input pixel, T at the taps that reach it. Each dOut
// texel is fetched once per output pixel instead of once per tap and input pixel.

// W' (k * k rows, c4(out_c) texels): texel (q, tap) holds W[4q..4q+3, 0, tap].
@compute @workgroup_size(64)
fn conv2d_taps_c1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let out_c4 = c4_of(p.out_c);
    let i = linear_id(gid, nwg);
    if i >= p.kernel * p.kernel * out_c4 {
        return;
    }
    let tap = i / out_c4;
    let q = i % out_c4;
    var w = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if q * 4u + j < p.out_c {
            w[j] = textureLoad(rhs, vec2<u32>(tap, q * 4u + j)).x;
        }
    }
    textureStore(out, vec2<u32>(q, tap), w);
}

// The sum, for input pixel i of the batch, of the taps image T (lhs) at the taps that
// reach it. `texels`: T holds a texel a tap (k * k texels an output pixel: the 2-4
// channels that tap gives its input pixel, in_c 2..4); else a value a tap, four taps a
// texel (c4(k * k) texels an output pixel, in_c 1), summed into .x.
fn col2im_sum(i: u32, texels: bool) -> vec4<f32> {
    let pixels = p.in_h * p.in_w;
    let b = div_u(i, pixels);
    let pix = i - b * pixels;
    let iy = div_u(pix, p.in_w);
    let ix = pix - iy * p.in_w;
    let taps = p.kernel * p.kernel;
    let per_pixel = select(c4_of(taps), taps, texels);
    // the taps that reach (iy, ix): ky = ky0 + jy s from output row oy0 - jy, and so in x
    let s = p.stride;
    let oy0 = div_u(iy + p.pad, s);
    let ky0 = iy + p.pad - oy0 * s;
    let ox0 = div_u(ix + p.pad, s);
    let kx0 = ix + p.pad - ox0 * s;
    var sum = vec4<f32>(0.0);
    for (var jy = 0u; ky0 + jy * s < p.kernel; jy++) {
        let oy = i32(oy0) - i32(jy);
        if oy < 0 || oy >= i32(p.out_h) {
            continue;
        }
        for (var jx = 0u; kx0 + jx * s < p.kernel; jx++) {
            let ox = i32(ox0) - i32(jx);
            if ox >= 0 && ox < i32(p.out_w) {
                let tap = (ky0 + jy * s) * p.kernel + kx0 + jx * s;
                let at = u32(oy * i32(p.out_w) + ox) * per_pixel;
                if texels {
                    sum += textureLoad(lhs, vec2<u32>(at + tap, b));
                } else {
                    sum.x += textureLoad(lhs, vec2<u32>(at + tap / 4u, b))[tap % 4u];
                }
            }
        }
    }
    return sum;
}

// dIn from the taps image at input pixel `gid` (col2im_sum's `texels`), with the bias and
// epilogue of conv2d_backward_input.
fn col2im_store(gid: vec3<u32>, nwg: vec3<u32>, texels: bool) {
    let pixels = p.in_h * p.in_w;
    let i = linear_id(gid, nwg);
    if i >= p.batch * pixels {
        return;
    }
    let b = div_u(i, pixels);
    let texel = vec2<u32>(i - b * pixels, b);
    store(texel, col2im_sum(i, texels) + epilogue_bias(0u, p.in_c), live_lanes(0u, p.in_c));
}

// dIn (one channel) from the taps image T (lhs: batch rows, out_h * out_w * c4(k * k)
// texels), one invocation per input pixel.
@compute @workgroup_size(64)
fn conv2d_col2im_c1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    col2im_store(gid, nwg, false);
}

// A transposed convolution into 2-4 channels (conv2d_backward_input with in_c 2..4, one
// texel a pixel) in two dispatches (kernels::ConvVariant::SplitC4): the weights' texel
// (tap, row o) already holds W[o, 0..3, tap], so they are those of a 1x1 convolution
// from k * k * 4 channels to out_c, and its backward-input pass
// (conv2d_backward_input_subgroup) gives the taps image T[b, oy, ox, tap] = the four
// channels sum over o of dOut[b, oy, ox, o] W[o, c, tap]; conv2d_col2im_c4 sums, for
// each input pixel, the texels of the taps that reach it. In one dispatch, the
// subgroup kernel's 8 lanes share one input texel (a pixel) and most sit idle.

// dIn (2-4 channels) from the taps image T (lhs: batch rows, out_h * out_w * k * k
// texels), one invocation per input pixel.
@compute @workgroup_size(64)
fn conv2d_col2im_c4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    col2im_store(gid, nwg, true);
}
