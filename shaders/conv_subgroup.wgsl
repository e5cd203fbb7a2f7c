// The convolutions of conv.wgsl (conv_common.wgsl, in front, holds the uniform,
// bindings and layouts) as implicit GEMMs whose shared operand travels by subgroupBroadcast, for
// adapters whose subgroups are exactly 8 or 16 lanes wide (lavapipe on x86 CPUs).
// The rows of the GEMM are output (or input) pixels of the batch, the columns
// are channels and the reduction runs over taps and the other side's
// channels, fetched straight from the channels-last images (no im2col copy).
// Compiled only when the device has Features::SUBGROUP; used where the
// convolution's channels fill the lanes (`kernels::conv_variant`). The steps over
// the lanes are written out: subgroupBroadcast takes a constant lane, and a loop
// would also blend every accumulator with the execution mask once per lane.
// conv2d_forward_subgroup, conv2d_backward_input_subgroup and
// conv2d_backward_weight_subgroup are built for LANES (lanes8.wgsl or lanes16.wgsl in
// front); the `_c1` kernels are written for 8 lanes, and at 16 each half of a subgroup
// does an 8-lane subgroup's work (lanes16.wgsl's group8_ blocks broadcast within a half;
// tests/conv.rs checks every kernel at both widths, each with its own shader cache:
// gpu::shader_cache_for_width).

// Texel (col, row) of t where `ok`, else zero. Where `ok` is false the coordinates
// may lie outside the texture: WebGPU defines such loads (they return some texel
// or zero, never fault), and the value is dropped.
fn load_if(t: texture_storage_2d<rgba32float, read>, col: i32, row: u32, ok: bool) -> vec4<f32> {
    return select(vec4<f32>(0.0), textureLoad(t, vec2<u32>(u32(col), row)), ok);
}

// Row r of the implicit GEMM as pixel (y, x) of image b in an h x w grid; `live`
// is false for rows past the batch.
struct Pixel {
    b: u32,
    y: u32,
    x: u32,
    live: bool,
}

// The pixel after `px` in (b, y, x) order, without dividing.
fn next_pixel(px: Pixel, w: u32, h: u32) -> Pixel {
    var n = px;
    n.x += 1u;
    if n.x == w {
        n.x = 0u;
        n.y += 1u;
    }
    if n.y == h {
        n.y = 0u;
        n.b += 1u;
    }
    n.live = n.b < p.batch;
    return n;
}

fn pixel_of(r: u32, w: u32, h: u32) -> Pixel {
    let x = r % w;
    let t = r / w;
    return Pixel(t / h, t % h, x, t / h < p.batch);
}

// Y[b, oy, ox, o] = sum over ky, kx, i of X[b, oy s + ky - pad, ox s + kx - pad, i] W[o, i, ky, kx]
// as the GEMM Y (rows: output pixels, cols: out channels) = Xcol . W^T.
// Workgroup (x, y), one subgroup: 4 LANES output channels from x (lane l owns
// channels c0 = 4 LANES x + l + LANES j, j = 0..3), 32 output pixels from 32 y; lanes
// fetch the input texels of pixels 32 y + LANES g + l (g < 32 / LANES) and broadcast
// them. (Measured as the GEMMs of gemm_subgroup.wgsl: more outputs per lane, fewer
// fetches.)
@compute @workgroup_size(LANES)
fn conv2d_forward_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let in_c4 = c4_of(p.in_c);
    let out_c4 = c4_of(p.out_c);
    let c0 = wg.x * 4u * LANES + lane;
    let wrows = out_c4 * 4u;
    let w0_row = min(c0, wrows - 1u);
    let w1_row = min(c0 + LANES, wrows - 1u);
    let w2_row = min(c0 + 2u * LANES, wrows - 1u);
    let w3_row = min(c0 + 3u * LANES, wrows - 1u);
    let r0 = wg.y * 32u;
    let p0 = pixel_of(r0 + lane, p.out_w, p.out_h);
    let p1 = pixel_of(r0 + LANES + lane, p.out_w, p.out_h);
    let p2 = pixel_of(r0 + 2u * LANES + lane, p.out_w, p.out_h);
    let p3 = pixel_of(r0 + 3u * LANES + lane, p.out_w, p.out_h);
    var acc4 = Rows32();
    for (var ky = 0u; ky < p.kernel; ky++) {
        let iy0 = i32(p0.y * p.stride + ky) - i32(p.pad);
        let iy1 = i32(p1.y * p.stride + ky) - i32(p.pad);
        let iy2 = i32(p2.y * p.stride + ky) - i32(p.pad);
        let iy3 = i32(p3.y * p.stride + ky) - i32(p.pad);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ix0 = i32(p0.x * p.stride + kx) - i32(p.pad);
            let ok0 = p0.live && iy0 >= 0 && iy0 < i32(p.in_h) && ix0 >= 0 && ix0 < i32(p.in_w);
            let base0 = (iy0 * i32(p.in_w) + ix0) * i32(in_c4);
            let ix1 = i32(p1.x * p.stride + kx) - i32(p.pad);
            let ok1 = p1.live && iy1 >= 0 && iy1 < i32(p.in_h) && ix1 >= 0 && ix1 < i32(p.in_w);
            let base1 = (iy1 * i32(p.in_w) + ix1) * i32(in_c4);
            let ix2 = i32(p2.x * p.stride + kx) - i32(p.pad);
            let ok2 = p2.live && iy2 >= 0 && iy2 < i32(p.in_h) && ix2 >= 0 && ix2 < i32(p.in_w);
            let base2 = (iy2 * i32(p.in_w) + ix2) * i32(in_c4);
            let ix3 = i32(p3.x * p.stride + kx) - i32(p.pad);
            let ok3 = p3.live && iy3 >= 0 && iy3 < i32(p.in_h) && ix3 >= 0 && ix3 < i32(p.in_w);
            let base3 = (iy3 * i32(p.in_w) + ix3) * i32(in_c4);
            let tap = (ky * p.kernel + kx) * in_c4;
            for (var ci = 0u; ci < in_c4; ci++) {
                let w0 = textureLoad(rhs, vec2<u32>(tap + ci, w0_row));
                let w1 = textureLoad(rhs, vec2<u32>(tap + ci, w1_row));
                let w2 = textureLoad(rhs, vec2<u32>(tap + ci, w2_row));
                let w3 = textureLoad(rhs, vec2<u32>(tap + ci, w3_row));
                let x0 = load_if(lhs, base0 + i32(ci), p0.b, ok0);
                let x1 = load_if(lhs, base1 + i32(ci), p1.b, ok1);
                let x2 = load_if(lhs, base2 + i32(ci), p2.b, ok2);
                let x3 = load_if(lhs, base3 + i32(ci), p3.b, ok3);
                dot_rows32(&acc4, x0, x1, x2, x3, w0, w1, w2, w3);
            }
        }
    }
    var acc = rows32_array(acc4);
    let cols = vec4<u32>(c0, c0 + LANES, c0 + 2u * LANES, c0 + 3u * LANES);
    var bias = vec4<f32>(0.0);
    if p.epilogue == EPILOGUE_BIAS || p.epilogue == EPILOGUE_BIAS_ACT {
        let nm = p.out_c - 1u;
        bias = vec4<f32>(params[p.bias + min(cols[0], nm)], params[p.bias + min(cols[1], nm)], params[p.bias + min(cols[2], nm)], params[p.bias + min(cols[3], nm)]);
    }
    let live = vec4<f32>(cols < vec4<u32>(p.out_c));
    // lanes 4j..4j+3 hold the four channels of one output texel: gather them by shuffles
    let first = lane & ~3u;
    for (var r = 0u; r < 32u; r++) {
        var v = acc[r] + bias;
        if p.epilogue == EPILOGUE_BIAS_ACT {
            v = act_forward(v, p.act);
        }
        v *= live;
        let px = pixel_of(r0 + r, p.out_w, p.out_h);
        let base = (px.y * p.out_w + px.x) * out_c4;
        // lane first + c stores the texel of channel set c: one store for all the lanes
        // (llvmpipe runs each store as a loop over the lanes, active or not)
        var t = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            let tc = vec4<f32>(subgroupShuffle(v[c], first), subgroupShuffle(v[c], first + 1u), subgroupShuffle(v[c], first + 2u), subgroupShuffle(v[c], first + 3u));
            t = select(t, tc, lane - first == c);
        }
        // lane first + c owns channel first + c of the 4 LANES; set c begins at first + LANES c
        let ch = cols.x + (LANES - 1u) * (lane - first);
        if px.live && ch < p.out_c {
            let texel = vec2<u32>(base + ch / 4u, px.b);
            if p.epilogue == EPILOGUE_ACT_GRAD {
                t *= act_grad(textureLoad(mask, texel), p.act);
            }
            textureStore(out, texel, t);
        }
    }
}

// conv2d_forward_subgroup as an 8-lane subgroup runs it (32 output channels a workgroup),
// where the output channels do not fill the 16-lane build's 64 columns: at 16 lanes each
// 8-lane half takes its own 32 output pixels (64 a workgroup), where the 8-lane build run
// at 16 had both halves compute the same 32 (the 1x1 convolution to the 16 taps: 2.8 ms
// at batch 128, 1.7 ms when that build came back from the 256-bit shader cache). Its
// body repeats conv2d_forward_subgroup's: one function for both, its width a parameter,
// ran both 3-10% slower (three alternations of `elbo profile --model conv`).
@compute @workgroup_size(LANES)
fn conv2d_forward_group8_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    let lane = sg_lane % 8u;
    let hi = sg_lane >= 8u;
    let in_c4 = c4_of(p.in_c);
    let out_c4 = c4_of(p.out_c);
    let c0 = wg.x * 32u + lane;
    let wrows = out_c4 * 4u;
    let w0_row = min(c0, wrows - 1u);
    let w1_row = min(c0 + 8u, wrows - 1u);
    let w2_row = min(c0 + 16u, wrows - 1u);
    let w3_row = min(c0 + 24u, wrows - 1u);
    let r0 = wg.y * 32u * (LANES / 8u) + select(0u, 32u, hi);
    let p0 = pixel_of(r0 + lane, p.out_w, p.out_h);
    let p1 = pixel_of(r0 + 8u + lane, p.out_w, p.out_h);
    let p2 = pixel_of(r0 + 16u + lane, p.out_w, p.out_h);
    let p3 = pixel_of(r0 + 24u + lane, p.out_w, p.out_h);
    var acc4 = Rows32();
    for (var ky = 0u; ky < p.kernel; ky++) {
        let iy0 = i32(p0.y * p.stride + ky) - i32(p.pad);
        let iy1 = i32(p1.y * p.stride + ky) - i32(p.pad);
        let iy2 = i32(p2.y * p.stride + ky) - i32(p.pad);
        let iy3 = i32(p3.y * p.stride + ky) - i32(p.pad);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ix0 = i32(p0.x * p.stride + kx) - i32(p.pad);
            let ok0 = p0.live && iy0 >= 0 && iy0 < i32(p.in_h) && ix0 >= 0 && ix0 < i32(p.in_w);
            let base0 = (iy0 * i32(p.in_w) + ix0) * i32(in_c4);
            let ix1 = i32(p1.x * p.stride + kx) - i32(p.pad);
            let ok1 = p1.live && iy1 >= 0 && iy1 < i32(p.in_h) && ix1 >= 0 && ix1 < i32(p.in_w);
            let base1 = (iy1 * i32(p.in_w) + ix1) * i32(in_c4);
            let ix2 = i32(p2.x * p.stride + kx) - i32(p.pad);
            let ok2 = p2.live && iy2 >= 0 && iy2 < i32(p.in_h) && ix2 >= 0 && ix2 < i32(p.in_w);
            let base2 = (iy2 * i32(p.in_w) + ix2) * i32(in_c4);
            let ix3 = i32(p3.x * p.stride + kx) - i32(p.pad);
            let ok3 = p3.live && iy3 >= 0 && iy3 < i32(p.in_h) && ix3 >= 0 && ix3 < i32(p.in_w);
            let base3 = (iy3 * i32(p.in_w) + ix3) * i32(in_c4);
            let tap = (ky * p.kernel + kx) * in_c4;
            for (var ci = 0u; ci < in_c4; ci++) {
                let w0 = textureLoad(rhs, vec2<u32>(tap + ci, w0_row));
                let w1 = textureLoad(rhs, vec2<u32>(tap + ci, w1_row));
                let w2 = textureLoad(rhs, vec2<u32>(tap + ci, w2_row));
                let w3 = textureLoad(rhs, vec2<u32>(tap + ci, w3_row));
                let x0 = load_if(lhs, base0 + i32(ci), p0.b, ok0);
                let x1 = load_if(lhs, base1 + i32(ci), p1.b, ok1);
                let x2 = load_if(lhs, base2 + i32(ci), p2.b, ok2);
                let x3 = load_if(lhs, base3 + i32(ci), p3.b, ok3);
                dot_rows32_group8(&acc4, hi, x0, x1, x2, x3, w0, w1, w2, w3);
            }
        }
    }
    var acc = rows32_array(acc4);
    let cols = vec4<u32>(c0, c0 + 8u, c0 + 16u, c0 + 24u);
    var bias = vec4<f32>(0.0);
    if p.epilogue == EPILOGUE_BIAS || p.epilogue == EPILOGUE_BIAS_ACT {
        let nm = p.out_c - 1u;
        bias = vec4<f32>(params[p.bias + min(cols[0], nm)], params[p.bias + min(cols[1], nm)], params[p.bias + min(cols[2], nm)], params[p.bias + min(cols[3], nm)]);
    }
    let live = vec4<f32>(cols < vec4<u32>(p.out_c));
    // lanes 4j..4j+3 hold the four channels of one output texel: gather them by shuffles
    let first = lane & ~3u;
    let first_sg = sg_lane & ~3u;
    for (var r = 0u; r < 32u; r++) {
        var v = acc[r] + bias;
        if p.epilogue == EPILOGUE_BIAS_ACT {
            v = act_forward(v, p.act);
        }
        v *= live;
        let px = pixel_of(r0 + r, p.out_w, p.out_h);
        let base = (px.y * p.out_w + px.x) * out_c4;
        // lane first + c stores the texel of channel set c: one store for all the lanes
        // (llvmpipe runs each store as a loop over the lanes, active or not)
        var t = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            let tc = vec4<f32>(subgroupShuffle(v[c], first_sg), subgroupShuffle(v[c], first_sg + 1u), subgroupShuffle(v[c], first_sg + 2u), subgroupShuffle(v[c], first_sg + 3u));
            t = select(t, tc, lane - first == c);
        }
        // lane first + c owns channel first + c of the 4 LANES; set c begins at first + LANES c
        let ch = cols.x + 7u * (lane - first);
        if px.live && ch < p.out_c {
            let texel = vec2<u32>(base + ch / 4u, px.b);
            if p.epilogue == EPILOGUE_ACT_GRAD {
                t *= act_grad(textureLoad(mask, texel), p.act);
            }
            textureStore(out, texel, t);
        }
    }
}

// Block i of 8 input pixels (ix = px + stride (8 g + j), j = 0..7, of row iy of image b)
// as (b, iy, px, g).
fn input_block(i: u32) -> vec4<u32> {
    let groups = (p.in_w + 8u * p.stride - 1u) / (8u * p.stride);
    let a = div_u(i, groups);
    let c = div_u(a, p.stride);
    let b = div_u(c, p.in_h);
    return vec4<u32>(b, c - b * p.in_h, a - c * p.stride, i - a * groups);
}

// dIn[b, iy, ix, i] = sum over ky, kx, o of dOut[b, oy, ox, o] W[o, i, ky, kx], where iy = oy s + ky - pad
// (and the same in x); the epilogues as conv2d_backward_input's.
// Rows of the GEMM come in blocks of 8 input pixels of one row iy, `stride` apart
// (ix = px + stride (8 g + j), j = 0..7), so that the same taps reach all eight.
// Workgroup (x, y), one subgroup: lane l owns input-channel texel q = 8 x + l of the
// same 8-pixel block in 4 images (they share taps and weights: the weights' fetches
// feed 4 times the multiply-adds; enc.conv2 7.0 -> 5.4 ms); lane j fetches the dOut
// texels that reach pixel j and broadcasts them. With 16 lanes, each 8-lane half does
// this for its own 4 images (combine_rows32_halves).
@compute @workgroup_size(LANES)
fn conv2d_backward_input_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane_id: u32,
) {
    let half = lane_id / 8u;
    let lane = lane_id % 8u;
    let in_c4 = c4_of(p.in_c);
    let out_c4 = c4_of(p.out_c);
    let q = wg.x * 8u + lane;
    let qc = min(q, in_c4 - 1u);
    // workgroup y: the block of 8 pixels (iy, px, g) in images b0 .. b0 + 3 (of this half)
    let images = 4u * (LANES / 8u);
    let image_groups = (p.batch + images - 1u) / images;
    let rest = div_u(wg.y, image_groups);
    let b0 = (wg.y - rest * image_groups) * images + 4u * half;
    let groups = (p.in_w + 8u * p.stride - 1u) / (8u * p.stride);
    let a = div_u(rest, groups);
    let iy = div_u(a, p.stride);
    let px = a - iy * p.stride;
    let ix0 = px + 8u * p.stride * (rest - a * groups);
    // this lane's pixel (for its dOut fetches): ix0 + stride * lane
    let my_ix = ix0 + p.stride * lane;
    // the taps that reach row iy: ky = ky0, ky0 + s, ... from output rows oy0, oy0 - 1, ...;
    // and the columns: kx = kx0, kx0 + s, ... (the same remainder for all eight pixels).
    // No division inside the loops: llvmpipe runs a vector division as a scalar divide per lane.
    let s = p.stride;
    let ky0 = (iy + p.pad) % s;
    let oy0 = i32((iy + p.pad) / s);
    let kx0 = (px + p.pad) % s;
    let ox0 = i32(div_u(my_ix + p.pad - kx0, s));
    var acc4 = Rows32();
    for (var jy = 0u; ky0 + jy * s < p.kernel; jy++) {
        let ky = ky0 + jy * s;
        let oy = oy0 - i32(jy);
        if oy < 0 || oy >= i32(p.out_h) {
            continue;
        }
        for (var jx = 0u; kx0 + jx * s < p.kernel; jx++) {
            let kx = kx0 + jx * s;
            let ox = ox0 - i32(jx);
            let ok = ox >= 0 && ox < i32(p.out_w) && my_ix < p.in_w;
            let gbase = (oy * i32(p.out_w) + ox) * i32(out_c4);
            let wcol = (ky * p.kernel + kx) * in_c4 + qc;
            for (var co = 0u; co < out_c4; co++) {
                let w0 = textureLoad(rhs, vec2<u32>(wcol, co * 4u));
                let w1 = textureLoad(rhs, vec2<u32>(wcol, co * 4u + 1u));
                let w2 = textureLoad(rhs, vec2<u32>(wcol, co * 4u + 2u));
                let w3 = textureLoad(rhs, vec2<u32>(wcol, co * 4u + 3u));
                let g0 = load_if(lhs, gbase + i32(co), b0 + 0u, ok && b0 + 0u < p.batch);
                let g1 = load_if(lhs, gbase + i32(co), b0 + 1u, ok && b0 + 1u < p.batch);
                let g2 = load_if(lhs, gbase + i32(co), b0 + 2u, ok && b0 + 2u < p.batch);
                let g3 = load_if(lhs, gbase + i32(co), b0 + 3u, ok && b0 + 3u < p.batch);
                combine_rows32_halves(&acc4, half, g0, g1, g2, g3, w0, w1, w2, w3);
            }
        }
    }
    if q >= in_c4 {
        return;
    }
    let live = live_lanes(q, p.in_c);
    let bias = epilogue_bias(q, p.in_c);
    var acc = rows32_array(acc4);
    for (var h = 0u; h < 4u; h++) {
        let b = b0 + h;
        if b >= p.batch {
            break;
        }
        for (var j = 0u; j < 8u; j++) {
            let ix = ix0 + p.stride * j;
            if ix >= p.in_w {
                break;
            }
            store(vec2<u32>((iy * p.in_w + ix) * in_c4 + q, b), acc[8u * h + j] + bias, live);
        }
    }
}


// dW[o, i, ky, kx] = sum over images and output pixels of dOut[b, oy, ox, o] in[b, iy, ix, i]
// (and db per bias_of), written into the flat gradients as conv2d_backward_weight does.
// For input channels in whole subgroups (c4_in a multiple of 8): the 8 lanes of a
// subgroup own 8 input-channel texels of one tap, so they share the output pixels
// whose tap lands inside the image, and loop over those only.
// Workgroup (x, y), one subgroup: 8 columns (tap, input-channel texel) of dW from 8 x,
// 16 output channels from 16 y. Per output pixel, images go in runs of 8: lane j
// fetches dOut's four texels of image b0 + j and broadcasts them, and each accumulator
// takes the run's 8 products in one update (as gemm_backward_weight_subgroup; 8
// channels a lane and an update per image before: enc.conv2 8.0 -> 4.9 ms).
// With 16 lanes over 8 input-channel texels, a subgroup's lanes span two taps: the
// loops run over the union of their output pixels, and each lane drops those its tap
// does not reach.
@compute @workgroup_size(LANES)
fn conv2d_backward_weight_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let in_c4 = c4_of(p.in_c);
    let out_c4 = c4_of(p.out_c);
    let taps = p.kernel * p.kernel;
    let col = wg.x * LANES + lane;
    let live_col = col < taps * in_c4;
    let colc = min(col, taps * in_c4 - 1u);
    let tap = colc / in_c4;
    let q = colc % in_c4;
    let ky = tap / p.kernel;
    let kx = tap % p.kernel;
    // the output pixels whose tap (ky, kx) is inside the image: oy in [oy0, oy1), ox in [ox0, ox1)
    let oy0 = (max(p.pad, ky) - ky + p.stride - 1u) / p.stride;
    let oy1 = min(p.out_h, (p.in_h + p.pad - ky + p.stride - 1u) / p.stride);
    let ox_lo = (max(p.pad, kx) - kx + p.stride - 1u) / p.stride;
    let ox_hi = min(p.out_w, (p.in_w + p.pad - kx + p.stride - 1u) / p.stride);
    let n0 = wg.y * 16u;
    // dOut's texels t0 .. t0 + 3 (zero past the channels)
    let first_t = n0 / 4u;
    let t0 = min(first_t + 0u, out_c4 - 1u);
    let live0 = first_t + 0u < out_c4;
    let t1 = min(first_t + 1u, out_c4 - 1u);
    let live1 = first_t + 1u < out_c4;
    let t2 = min(first_t + 2u, out_c4 - 1u);
    let live2 = first_t + 2u < out_c4;
    let t3 = min(first_t + 3u, out_c4 - 1u);
    let live3 = first_t + 3u < out_c4;
    var acc16 = Outs16();
    for (var oy = subgroupMin(oy0); oy < subgroupMax(oy1); oy++) {
        let iy = oy * p.stride + ky - p.pad;
        for (var ox = subgroupMin(ox_lo); ox < subgroupMax(ox_hi); ox++) {
            // this tap's input texel of pixel (oy, ox) where its tap reaches it, and dOut's texels there
            let inside = oy >= oy0 && oy < oy1 && ox >= ox_lo && ox < ox_hi;
            let xc = select(0u, (iy * p.in_w + ox * p.stride + kx - p.pad) * in_c4 + q, inside);
            let gc = (oy * p.out_w + ox) * out_c4;
            for (var b0 = 0u; b0 < p.batch; b0 += 8u) {
                // images b0 + j, j = 0..7: lane j fetches dOut of image b0 + j; each
                // accumulator then takes the 8 images' products in one update
                let gr = min(b0 + lane, p.batch - 1u);
                let g0 = select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>(gc + t0, gr)), live0 && b0 + lane < p.batch);
                let g1 = select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>(gc + t1, gr)), live1 && b0 + lane < p.batch);
                let g2 = select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>(gc + t2, gr)), live2 && b0 + lane < p.batch);
                let g3 = select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>(gc + t3, gr)), live3 && b0 + lane < p.batch);
                let x0 = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>(xc, b0)), inside);
                let x1 = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>(xc, b0 + 1u)), inside && b0 + 1u < p.batch);
                let x2 = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>(xc, b0 + 2u)), inside && b0 + 2u < p.batch);
                let x3 = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>(xc, b0 + 3u)), inside && b0 + 3u < p.batch);
                let x4 = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>(xc, b0 + 4u)), inside && b0 + 4u < p.batch);
                let x5 = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>(xc, b0 + 5u)), inside && b0 + 5u < p.batch);
                let x6 = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>(xc, b0 + 6u)), inside && b0 + 6u < p.batch);
                let x7 = select(vec4<f32>(0.0), textureLoad(rhs, vec2<u32>(xc, b0 + 7u)), inside && b0 + 7u < p.batch);
                weight_chunk(&acc16, g0, g1, g2, g3, x0, x1, x2, x3, x4, x5, x6, x7);
            }
        }
    }
    // a convolution's bias: the first column of workgroups sums dOut's 16 channels over
    // every pixel, lanes taking every LANES-th
    if p.bias_of == 0u && wg.x == 0u {
        var sums = array<vec4<f32>, 4>();
        for (var b = 0u; b < p.batch; b++) {
            for (var px = lane; px < p.out_h * p.out_w; px += LANES) {
                sums[0] += select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>(px * out_c4 + t0, b)), live0);
                sums[1] += select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>(px * out_c4 + t1, b)), live1);
                sums[2] += select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>(px * out_c4 + t2, b)), live2);
                sums[3] += select(vec4<f32>(0.0), textureLoad(lhs, vec2<u32>(px * out_c4 + t3, b)), live3);
            }
        }
        for (var t = 0u; t < 4u; t++) {
            sums[t] = subgroupAdd(sums[t]);
        }
        if lane == 0u {
            for (var i = 0u; i < 16u && n0 + i < p.out_c; i++) {
                grads[p.grad_b + n0 + i] = sums[i / 4u][i % 4u];
            }
        }
    }
    if !live_col {
        return;
    }
    // a transposed convolution's bias sits on this convolution's input side
    if p.bias_of == 1u && wg.y == 0u && tap == 0u {
        var xsum = vec4<f32>(0.0);
        for (var b = 0u; b < p.batch; b++) {
            xsum += row_sum16(rhs, b, q, in_c4, p.in_h * p.in_w);
        }
        for (var j = 0u; j < 4u; j++) {
            if q * 4u + j < p.in_c {
                grads[p.grad_b + q * 4u + j] = xsum[j];
            }
        }
    }
    var acc = outs16_array(acc16);
    let c = tap * in_c4 * 4u + q * 4u;
    for (var i = 0u; i < 16u; i++) {
        let o = n0 + i;
        if o >= p.out_c {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            grads[p.grad_w + o * p.w_stride + c + j] = acc[i][j];
        }
    }
}

// ---- One input channel ------------------------------------------------------
// An encoder's first layer and a decoder's last see 1-channel images, where the
// kernels above use one lane of four in every input texel and leave most of the
// subgroup idle (10-17 ms a pass at batch 128 on lavapipe, half the conv step).
// These three need in_c == 1 and a 4x4 kernel (any stride and padding): the lanes
// of a subgroup own 8 output-channel texels, so a tap's weights for a lane are one
// vec4 kept in registers, and the 1-channel side's values travel by subgroupBroadcast.

// Output channels 4q..4q+3 of W at tap t (with in_c == 1, .x of rows 4q..4q+3).
fn w4(q: u32, t: u32) -> vec4<f32> {
    return vec4<f32>(
        textureLoad(rhs, vec2<u32>(t, q * 4u)).x,
        textureLoad(rhs, vec2<u32>(t, q * 4u + 1u)).x,
        textureLoad(rhs, vec2<u32>(t, q * 4u + 2u)).x,
        textureLoad(rhs, vec2<u32>(t, q * 4u + 3u)).x,
    );
}

// Value of the 1-channel input at (iy, ix) of image b, or zero outside it.
fn c1_input(t: texture_storage_2d<rgba32float, read>, b: u32, iy: i32, ix: i32) -> f32 {
    let ok = b < p.batch && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
    return load_if(t, iy * i32(p.in_w) + ix, b, ok).x;
}

const C1_PIXELS: u32 = 64u;

// Y = conv(X) for 1-channel X. Workgroup (x, y): output-channel texel q = 8 x + lane;
// subgroup s takes C1_PIXELS output pixels from (8 y + s) C1_PIXELS on. Per pixel,
// lane l fetches the input under taps l and l + 8 and broadcasts them.
@compute @workgroup_size(64)
fn conv2d_forward_c1_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    // written for 8 lanes: at 16, each half of the subgroup does what an 8-lane one does
    let lane = sg_lane % 8u;
    let hi = sg_lane >= 8u;
    let out_c4 = c4_of(p.out_c);
    let q = wg.x * 8u + lane;
    let qw = min(q, out_c4 - 1u);
    let w0 = w4(qw, 0u);
    let w1 = w4(qw, 1u);
    let w2 = w4(qw, 2u);
    let w3 = w4(qw, 3u);
    let w4_ = w4(qw, 4u);
    let w5 = w4(qw, 5u);
    let w6 = w4(qw, 6u);
    let w7 = w4(qw, 7u);
    let w8 = w4(qw, 8u);
    let w9 = w4(qw, 9u);
    let w10 = w4(qw, 10u);
    let w11 = w4(qw, 11u);
    let w12 = w4(qw, 12u);
    let w13 = w4(qw, 13u);
    let w14 = w4(qw, 14u);
    let w15 = w4(qw, 15u);
    let bias = epilogue_bias(qw, p.out_c);
    let live = live_lanes(q, p.out_c);
    // this lane's taps: (ky, kx) = (lane / 4, lane % 4) and (lane / 4 + 2, lane % 4)
    let kx = lane % 4u;
    let ky = lane / 4u;
    // pixels first, first + 1, ... stepped through (x, y, b) without dividing
    var px = pixel_of((wg.y * 8u + lid / 8u) * C1_PIXELS, p.out_w, p.out_h);
    for (var r = 0u; r < C1_PIXELS; r++) {
        if r > 0u {
            px = next_pixel(px, p.out_w, p.out_h);
        }
        let ix = i32(px.x * p.stride + kx) - i32(p.pad);
        let iy = i32(px.y * p.stride + ky) - i32(p.pad);
        let xa = c1_input(lhs, px.b, iy, ix);
        let xb = c1_input(lhs, px.b, iy + 2, ix);
        var acc = group8_f0(xa, hi) * w0;
        acc += group8_f1(xa, hi) * w1;
        acc += group8_f2(xa, hi) * w2;
        acc += group8_f3(xa, hi) * w3;
        acc += group8_f4(xa, hi) * w4_;
        acc += group8_f5(xa, hi) * w5;
        acc += group8_f6(xa, hi) * w6;
        acc += group8_f7(xa, hi) * w7;
        acc += group8_f0(xb, hi) * w8;
        acc += group8_f1(xb, hi) * w9;
        acc += group8_f2(xb, hi) * w10;
        acc += group8_f3(xb, hi) * w11;
        acc += group8_f4(xb, hi) * w12;
        acc += group8_f5(xb, hi) * w13;
        acc += group8_f6(xb, hi) * w14;
        acc += group8_f7(xb, hi) * w15;
        if px.live && q < out_c4 {
            store(vec2<u32>((px.y * p.out_w + px.x) * out_c4 + q, px.b), acc + bias, live);
        }
    }
}

// ---- Two to four input channels -----------------------------------------------
// An RGB encoder's first layer (and the decoder's last, for its input gradient) has one
// texel a pixel: conv2d_forward_subgroup then sums 16 texels an output and spends most
// of its time gathering the lanes' results by shuffles (36 ms at 64x64, batch 64 on
// lavapipe). This kernel is conv2d_forward_c1_subgroup with a texel in place of each
// value: each tap's weights for a lane's 4 output channels are a 4x4 matrix kept in
// registers, and the input texels under the taps travel by subgroupBroadcast.

// The weights of output channels 4q..4q+3 at tap t for an input of one texel a pixel:
// x * wmat(q, t) is those channels' sum over the texel x's channels.
fn wmat(q: u32, t: u32) -> mat4x4<f32> {
    return mat4x4<f32>(
        textureLoad(rhs, vec2<u32>(t, q * 4u)),
        textureLoad(rhs, vec2<u32>(t, q * 4u + 1u)),
        textureLoad(rhs, vec2<u32>(t, q * 4u + 2u)),
        textureLoad(rhs, vec2<u32>(t, q * 4u + 3u)),
    );
}

// Y = conv(X) for X of 2-4 channels and a 4x4 kernel, laid out and dispatched as
// conv2d_forward_c1_subgroup.
@compute @workgroup_size(64)
fn conv2d_forward_c4_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    // written for 8 lanes: at 16, each half of the subgroup does what an 8-lane one does
    let lane = sg_lane % 8u;
    let hi = sg_lane >= 8u;
    let out_c4 = c4_of(p.out_c);
    let q = wg.x * 8u + lane;
    let qw = min(q, out_c4 - 1u);
    let m0 = wmat(qw, 0u);
    let m1 = wmat(qw, 1u);
    let m2 = wmat(qw, 2u);
    let m3 = wmat(qw, 3u);
    let m4 = wmat(qw, 4u);
    let m5 = wmat(qw, 5u);
    let m6 = wmat(qw, 6u);
    let m7 = wmat(qw, 7u);
    let m8 = wmat(qw, 8u);
    let m9 = wmat(qw, 9u);
    let m10 = wmat(qw, 10u);
    let m11 = wmat(qw, 11u);
    let m12 = wmat(qw, 12u);
    let m13 = wmat(qw, 13u);
    let m14 = wmat(qw, 14u);
    let m15 = wmat(qw, 15u);
    let bias = epilogue_bias(qw, p.out_c);
    let live = live_lanes(q, p.out_c);
    // this lane's taps: (ky, kx) = (lane / 4, lane % 4) and (lane / 4 + 2, lane % 4)
    let kx = lane % 4u;
    let ky = lane / 4u;
    var px = pixel_of((wg.y * 8u + lid / 8u) * C1_PIXELS, p.out_w, p.out_h);
    for (var r = 0u; r < C1_PIXELS; r++) {
        if r > 0u {
            px = next_pixel(px, p.out_w, p.out_h);
        }
        let ix = i32(px.x * p.stride + kx) - i32(p.pad);
        let iy = i32(px.y * p.stride + ky) - i32(p.pad);
        let ok_a = px.b < p.batch && ix >= 0 && ix < i32(p.in_w) && iy >= 0 && iy < i32(p.in_h);
        let ok_b = px.b < p.batch && ix >= 0 && ix < i32(p.in_w) && iy + 2 >= 0 && iy + 2 < i32(p.in_h);
        let xa = load_if(lhs, iy * i32(p.in_w) + ix, px.b, ok_a);
        let xb = load_if(lhs, (iy + 2) * i32(p.in_w) + ix, px.b, ok_b);
        var acc = group8_v0(xa, hi) * m0;
        acc += group8_v1(xa, hi) * m1;
        acc += group8_v2(xa, hi) * m2;
        acc += group8_v3(xa, hi) * m3;
        acc += group8_v4(xa, hi) * m4;
        acc += group8_v5(xa, hi) * m5;
        acc += group8_v6(xa, hi) * m6;
        acc += group8_v7(xa, hi) * m7;
        acc += group8_v0(xb, hi) * m8;
        acc += group8_v1(xb, hi) * m9;
        acc += group8_v2(xb, hi) * m10;
        acc += group8_v3(xb, hi) * m11;
        acc += group8_v4(xb, hi) * m12;
        acc += group8_v5(xb, hi) * m13;
        acc += group8_v6(xb, hi) * m14;
        acc += group8_v7(xb, hi) * m15;
        if px.live && q < out_c4 {
            store(vec2<u32>((px.y * p.out_w + px.x) * out_c4 + q, px.b), acc + bias, live);
        }
    }
}

// dIn = conv^T(dOut) into a 1-channel image, where the three-dispatch path of conv.wgsl
// (kernels::ConvVariant::SplitC1) does not fit. Workgroup y: 8 blocks of 8 input pixels
// (input_block), one per subgroup, lane j computing pixel j. For each tap and run of
// 8 output-channel texels, lane l fetches the weights of texel l and broadcasts them.
@compute @workgroup_size(64)
fn conv2d_backward_input_c1_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    // written for 8 lanes: at 16, each half of the subgroup does what an 8-lane one does
    let lane = sg_lane % 8u;
    let hi = sg_lane >= 8u;
    let out_c4 = c4_of(p.out_c);
    let blk = input_block(wg.y * 8u + lid / 8u);
    let b = blk.x;
    let iy = blk.y;
    let px = blk.z;
    let s = p.stride;
    let ix = px + 8u * s * blk.w + s * lane;
    let live = b < p.batch && ix < p.in_w;
    var acc = vec4<f32>(0.0);
    // the taps that reach row iy: ky = ky0, ky0 + s, ... with output rows oy0, oy0 - 1, ...
    // (divisions only here: llvmpipe runs a vector division as one scalar divide per lane)
    let ky0 = (iy + p.pad) % s;
    let oy0 = i32((iy + p.pad) / s);
    // and the columns: kx = kx0, kx0 + s, ... (the same remainder for all eight pixels)
    let kx0 = (px + p.pad) % s;
    let ox0 = i32(div_u(ix + p.pad - kx0, s));
    for (var jy = 0u; ky0 + jy * s < 4u; jy++) {
        let ky = ky0 + jy * s;
        let oy = oy0 - i32(jy);
        if oy < 0 || oy >= i32(p.out_h) {
            continue;
        }
        let row = oy * i32(p.out_w);
        for (var jx = 0u; kx0 + jx * s < 4u; jx++) {
            let kx = kx0 + jx * s;
            let ox = ox0 - i32(jx);
            let ok = live && ox >= 0 && ox < i32(p.out_w);
            let base = (row + ox) * i32(out_c4);
            for (var q0 = 0u; q0 < out_c4; q0 += 8u) {
                let wl = w4(min(q0 + lane, out_c4 - 1u), ky * 4u + kx);
                let at = base + i32(q0);
                acc += load_if(lhs, at, b, ok) * group8_v0(wl, hi);
                acc += load_if(lhs, at + 1, b, ok && q0 + 1u < out_c4) * group8_v1(wl, hi);
                acc += load_if(lhs, at + 2, b, ok && q0 + 2u < out_c4) * group8_v2(wl, hi);
                acc += load_if(lhs, at + 3, b, ok && q0 + 3u < out_c4) * group8_v3(wl, hi);
                acc += load_if(lhs, at + 4, b, ok && q0 + 4u < out_c4) * group8_v4(wl, hi);
                acc += load_if(lhs, at + 5, b, ok && q0 + 5u < out_c4) * group8_v5(wl, hi);
                acc += load_if(lhs, at + 6, b, ok && q0 + 6u < out_c4) * group8_v6(wl, hi);
                acc += load_if(lhs, at + 7, b, ok && q0 + 7u < out_c4) * group8_v7(wl, hi);
            }
        }
    }
    if live {
        let v = vec4<f32>(acc.x + acc.y + acc.z + acc.w, 0.0, 0.0, 0.0);
        store(vec2<u32>(iy * p.in_w + ix, b), v + epilogue_bias(0u, 1u), live_lanes(0u, 1u));
    }
}

var<workgroup> wsum: array<array<vec4<f32>, 9>, 64>;

// dW of a 1-channel input (and db per bias_of). Workgroup (x, y): output-channel
// texel q = 8 x + lane, kernel rows 2 y and 2 y + 1 (8 taps); subgroup s takes images s,
// s + 8, ...; per output pixel lane l fetches the input under tap l of the eight and
// broadcasts it, so that each fetch of dOut feeds 32 multiply-adds (16 with one kernel
// row a workgroup: 1.2-1.5 ms a pass at batch 128). The 8 subgroups' sums meet in
// workgroup memory.
@compute @workgroup_size(64)
fn conv2d_backward_weight_c1_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    // written for 8 lanes: at 16, each half of the subgroup does what an 8-lane one does
    let lane = sg_lane % 8u;
    let hi = sg_lane >= 8u;
    let out_c4 = c4_of(p.out_c);
    let q = wg.x * 8u + lane;
    let qc = min(q, out_c4 - 1u);
    // taps 8 y .. 8 y + 7; this lane fetches tap 8 y + lane
    let half = wg.y;
    let ky = 2u * half + lane / 4u;
    let kx = lane % 4u;
    let sg = lid / 8u;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var gsum = vec4<f32>(0.0);
    for (var b = sg; b < p.batch; b += 8u) {
        for (var oy = 0u; oy < p.out_h; oy++) {
            let iy = i32(oy * p.stride + ky) - i32(p.pad);
            for (var ox = 0u; ox < p.out_w; ox++) {
                let g = textureLoad(lhs, vec2<u32>((oy * p.out_w + ox) * out_c4 + qc, b));
                gsum += g;
                let x = c1_input(rhs, b, iy, i32(ox * p.stride + kx) - i32(p.pad));
                a0 += group8_f0(x, hi) * g;
                a1 += group8_f1(x, hi) * g;
                a2 += group8_f2(x, hi) * g;
                a3 += group8_f3(x, hi) * g;
                a4 += group8_f4(x, hi) * g;
                a5 += group8_f5(x, hi) * g;
                a6 += group8_f6(x, hi) * g;
                a7 += group8_f7(x, hi) * g;
            }
        }
    }
    // a transposed convolution's bias sits on the 1-channel side: the sum of its values
    if p.bias_of == 1u && wg.x == 0u && half == 0u {
        var xs = 0.0;
        for (var b = sg; b < p.batch; b += 8u) {
            for (var i = lane; i < p.in_h * p.in_w; i += 8u) {
                xs += textureLoad(rhs, vec2<u32>(i, b)).x;
            }
        }
        gsum = vec4<f32>(group8_add(xs, hi), 0.0, 0.0, 0.0);
    }
    wsum[lid] = array<vec4<f32>, 9>(a0, a1, a2, a3, a4, a5, a6, a7, gsum);
    workgroupBarrier();
    if sg != 0u || q >= out_c4 {
        return;
    }
    var t = wsum[lane];
    for (var k = 1u; k < 8u; k++) {
        for (var j = 0u; j < 9u; j++) {
            t[j] += wsum[k * 8u + lane][j];
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let o = q * 4u + j;
        if o >= p.out_c {
            break;
        }
        for (var x = 0u; x < 8u; x++) {
            let col = p.grad_w + o * p.w_stride + (8u * half + x) * 4u;
            grads[col] = t[x][j];
            grads[col + 1u] = 0.0;
            grads[col + 2u] = 0.0;
            grads[col + 3u] = 0.0;
        }
        if p.bias_of == 0u && half == 0u {
            grads[p.grad_b + o] = t[8][j];
        }
    }
    if p.bias_of == 1u && q == 0u && half == 0u {
        grads[p.grad_b] = t[8].x;
    }
}
