// Builds a batch on the GPU: the whole dataset sits in one buffer of bytes
// (channels-last, one byte per value) and the host only uploads a shuffled
// order once per epoch. With L Monte-Carlo samples per image, rows
// r L .. r L + L - 1 all hold image r of the batch (binarized the same way).

struct Gather {
    m: u32,        // rows, a multiple of 4
    pixels: u32,   // pixels per image
    channels: u32, // channels per pixel in the dataset
    x_cp: u32,     // stored channels per pixel in x (channels, or padded to 4)
    binarize: u32, // 1: each value becomes 1 with probability x, else 0
    samples: u32,  // rows per image (Monte-Carlo samples)
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Gather;
@group(0) @binding(1) var<uniform> step: Step;
// the dataset, four pixels to a word (images * D bytes)
@group(0) @binding(2) var<storage, read> data: array<u32>;
// image indices in the order of this epoch
@group(0) @binding(3) var<storage, read> order: array<u32>;
// the batch x in [0, 1] (m, pixels * x_cp)
@group(0) @binding(4) var out: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(64)
fn gather_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let cols = p.pixels * p.x_cp;
    let c4s = (cols + 3u) / 4u;
    let i = linear_id(gid, nwg);
    if i >= c4s * p.m {
        return;
    }
    let row = div_u(i, c4s);
    let c4 = i - row * c4s;
    var x = vec4<f32>(0.0);
    if row < step.rows {
        let r = div_u(row, p.samples);
        let image = order[step.batch_start + r];
        let image_bytes = p.pixels * p.channels;
        for (var lane = 0u; lane < 4u; lane++) {
            let col = c4 * 4u + lane;
            let pixel = div_u(col, p.x_cp);
            let ch = col - pixel * p.x_cp;
            if pixel < p.pixels && ch < p.channels {
                let value = pixel * p.channels + ch;
                let byte = image * image_bytes + value;
                x[lane] = byte_value((data[byte / 4u] >> (8u * (byte % 4u))) & 0xffu, r, value);
            }
        }
    }
    textureStore(out, vec2<u32>(c4, row), x);
}

// Variants for one-channel images, chosen on the host (kernels::gather_dispatch), as
// llvmpipe runs both sides of a lane-varying `if`: gather_batch's loop fetches a word
// of the dataset per value, and its buffer loads are loops over the lanes.

// A byte of the dataset as a value in [0, 1], binarized (the stream keyed by batch row r
// and the value's index in its image, `value`) when p.binarize is 1.
fn byte_value(byte: u32, r: u32, value: u32) -> f32 {
    let v = f32(byte) / 255.0;
    if p.binarize == 1u {
        let u = rand_uniform(step.seed, STREAM_BINARIZE, step.counter, r * p.pixels * p.channels + value);
        return select(0.0, 1.0, u < v);
    }
    return v;
}

// The four values in word c4 of row `row`'s image (c4s words an image), binarized as
// gather_batch does; zero past the batch's rows.
fn word_values(row: u32, c4: u32, c4s: u32) -> vec4<f32> {
    var x = vec4<f32>(0.0);
    if row < step.rows {
        let r = div_u(row, p.samples);
        let word = data[order[step.batch_start + r] * c4s + c4];
        let bytes = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
        let v = 4u * c4;
        x = vec4<f32>(byte_value(bytes.x, r, v), byte_value(bytes.y, r, v + 1u), byte_value(bytes.z, r, v + 2u), byte_value(bytes.w, r, v + 3u));
    }
    return x;
}

// x_cp 1 and pixels a multiple of 4: texel c4 of a row is word c4 of its image.
@compute @workgroup_size(64)
fn gather_batch_words(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c4s = p.pixels / 4u;
    let i = linear_id(gid, nwg);
    if i >= c4s * p.m {
        return;
    }
    let row = div_u(i, c4s);
    let c4 = i - row * c4s;
    textureStore(out, vec2<u32>(c4, row), word_values(row, c4, c4s));
}

// x_cp 4: texel c4 of a row is pixel c4, in its first component.
@compute @workgroup_size(64)
fn gather_batch_pixels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if i >= p.pixels * p.m {
        return;
    }
    let row = div_u(i, p.pixels);
    let c4 = i - row * p.pixels;
    var x = vec4<f32>(0.0);
    if row < step.rows {
        let r = div_u(row, p.samples);
        let byte = order[step.batch_start + r] * p.pixels + c4;
        x.x = byte_value((data[byte / 4u] >> (8u * (byte % 4u))) & 0xffu, r, c4);
    }
    textureStore(out, vec2<u32>(c4, row), x);
}

// x_cp 4 and pixels a multiple of 4: an invocation takes the four pixels of one word of
// the dataset and stores them as four texels, so that the order and the data are loaded
// once for four stores (buffer loads are loops over the lanes on llvmpipe).
@compute @workgroup_size(64)
fn gather_batch_pixels4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c4s = p.pixels / 4u;
    let i = linear_id(gid, nwg);
    if i >= c4s * p.m {
        return;
    }
    let row = div_u(i, c4s);
    let c4 = i - row * c4s;
    let x = word_values(row, c4, c4s);
    textureStore(out, vec2<u32>(4u * c4, row), vec4<f32>(x.x, 0.0, 0.0, 0.0));
    textureStore(out, vec2<u32>(4u * c4 + 1u, row), vec4<f32>(x.y, 0.0, 0.0, 0.0));
    textureStore(out, vec2<u32>(4u * c4 + 2u, row), vec4<f32>(x.z, 0.0, 0.0, 0.0));
    textureStore(out, vec2<u32>(4u * c4 + 3u, row), vec4<f32>(x.w, 0.0, 0.0, 0.0));
}

// channels 3, x_cp 4 and pixels a multiple of 4 (RGB images for the convolutions): an
// invocation takes the three words that hold four pixels and stores them as four texels,
// where gather_batch loads a word per value (12 loads, each a loop over the lanes on
// llvmpipe, for the same four texels).
@compute @workgroup_size(64)
fn gather_batch_rgb4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let groups = p.pixels / 4u;
    let i = linear_id(gid, nwg);
    if i >= groups * p.m {
        return;
    }
    let row = div_u(i, groups);
    let g = i - row * groups;
    var t = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if row < step.rows {
        let r = div_u(row, p.samples);
        let at = order[step.batch_start + r] * 3u * groups + 3u * g;
        let words = array<u32, 3>(data[at], data[at + 1u], data[at + 2u]);
        for (var k = 0u; k < 4u; k++) {
            for (var c = 0u; c < 3u; c++) {
                let j = 3u * k + c;
                let byte = (words[j / 4u] >> (8u * (j % 4u))) & 0xffu;
                t[k][c] = byte_value(byte, r, 12u * g + j);
            }
        }
    }
    for (var k = 0u; k < 4u; k++) {
        textureStore(out, vec2<u32>(4u * g + k, row), t[k]);
    }
}
