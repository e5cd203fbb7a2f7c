// The fused ELBO loss and its gradient, in two variants that share the arithmetic:
//   elbo_forward_backward: one invocation per image (CPU adapters: on lavapipe the
//     per-workgroup one took twice as long for the MLP at batch 128);
//   elbo_forward_backward_wide: one workgroup of 64 per image, its lanes striding
//     over the texels and summing in workgroup memory (GPUs: one invocation per
//     image took 364 us on an H100, leaving nearly every lane idle).
//   recon = -log p(x|z), summed over the image's values, for
//     Bernoulli: p = sigmoid(logit), computed from the logit;
//     Gaussian:  N(sigmoid(a), exp(logvar)) with logvar = LOGVAR_MID + LOGVAR_HALF tanh(raw),
//                including the constant 1/2 log(2 pi) per value;
//   kl    = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)) of the posterior;
//   loss  = mean over the batch's live rows of recon + beta * kl.
// It writes d loss / d (decoder output) and the per-image (recon, kl); the KL
// gradient is added in reparam_backward.
//
// Layouts: the target x stores value (pixel, channel) at column pixel * x_cp + channel.
// The decoder output holds the mean (or logit) and, for a Gaussian, the raw
// log-variance of each value: with `halves` (dense decoders) at columns e and
// D + e for value e = pixel * channels + channel; otherwise (convolutional
// decoders) at pixel * o_cp + channel and pixel * o_cp + channels + channel.

const LOGVAR_MID: f32 = -1.5;
const LOGVAR_HALF: f32 = 2.5;
const HALF_LOG_2PI: f32 = 0.9189385;

struct Elbo {
    m: u32,        // rows, a multiple of 4
    latent: u32,   // L
    pixels: u32,   // pixels per image (values / channels)
    channels: u32, // channels per pixel
    x_cp: u32,     // stored channels per pixel of x
    o_cp: u32,     // stored channels per pixel of the decoder output
    o_cols: u32,   // decoder output columns
    halves: u32,   // 1: [means | raw log-variances]; 0: interleaved per pixel
    gaussian: u32, // 0: Bernoulli; 1: Gaussian
    masked: u32,   // 1: only values with observed > 0 count (restoration by MAP search)
    noise_kind: u32, // how the observed values were corrupted: NOISE_* below
    noise: f32,      // NOISE_GAUSSIAN: its standard deviation; NOISE_FLIP: its probability
}

// Restoration scores the observed values under the corruption that made them
// (src/kernels/loss.rs: Observation; the reference is reference::noisy_value_nll).
const NOISE_NONE: u32 = 0u;
const NOISE_GAUSSIAN: u32 = 1u; // x = mean + N(0, noise^2) (a Gaussian decoder's variance gains noise^2)
const NOISE_FLIP: u32 = 2u;     // a binary x flipped with probability noise (Bernoulli decoders; a Gaussian one scores x as it is)

@group(0) @binding(0) var<uniform> p: Elbo;
@group(0) @binding(1) var<uniform> step: Step;
// the decoder output (m, o_cols)
@group(0) @binding(2) var dec_out: texture_storage_2d<rgba32float, read>;
// the target (m, pixels * x_cp)
@group(0) @binding(3) var target_x: texture_storage_2d<rgba32float, read>;
// [mu | logvar] (m, 2L)
@group(0) @binding(4) var mulv: texture_storage_2d<rgba32float, read>;
// d loss / d (decoder output) (m, o_cols)
@group(0) @binding(5) var d_out: texture_storage_2d<rgba32float, write>;
// per image (recon, kl) (m)
@group(0) @binding(6) var<storage, read_write> image_loss: array<vec2<f32>>;
// with `masked`: 1 where x is observed, 0 where it is unknown (laid out as x)
@group(0) @binding(7) var observed: texture_storage_2d<rgba32float, read>;

fn element(t: texture_storage_2d<rgba32float, read>, row: u32, col: u32) -> f32 {
    return textureLoad(t, vec2<u32>(col / 4u, row))[col % 4u];
}

// Columns of the mean and raw log-variance of value (pixel, channel) in the decoder output.
fn mean_col(pixel: u32, ch: u32) -> u32 {
    if p.halves == 1u {
        return pixel * p.channels + ch;
    }
    return pixel * p.o_cp + ch;
}

fn logvar_col(pixel: u32, ch: u32) -> u32 {
    if p.halves == 1u {
        return p.pixels * p.channels + pixel * p.channels + ch;
    }
    return pixel * p.o_cp + p.channels + ch;
}

// Texels t0, t0 + dt, ... of row `row`: stores d loss / d out there and returns
// the recon of their values.
fn elbo_texels(row: u32, t0: u32, dt: u32, scale: f32) -> f32 {
    let values = p.pixels * p.channels;
    var recon = 0.0;
    if p.gaussian == 0u && p.masked == 0u && ((p.halves == 1u && p.x_cp == p.channels) || (p.halves == 0u && p.o_cp == p.x_cp)) {
        return bernoulli_texels(row, t0, dt, scale);
    }
    for (var t = t0; t < (p.o_cols + 3u) / 4u; t += dt) {
        var grad = vec4<f32>(0.0);
        for (var lane = 0u; lane < 4u; lane++) {
            let col = t * 4u + lane;
            // which value this column holds, and whether it is its mean (0) or log-variance (1)
            var pixel = 0u;
            var ch = 0u;
            var role = 2u;
            if p.halves == 1u {
                let e = select(col, col - values, col >= values);
                pixel = e / p.channels;
                ch = e % p.channels;
                if col < values {
                    role = 0u;
                } else if p.gaussian == 1u && col < 2u * values {
                    role = 1u;
                }
            } else {
                pixel = col / p.o_cp;
                let r = col % p.o_cp;
                if pixel < p.pixels && r < p.channels {
                    role = 0u;
                    ch = r;
                } else if pixel < p.pixels && p.gaussian == 1u && r < 2u * p.channels {
                    role = 1u;
                    ch = r - p.channels;
                }
            }
            if role == 2u {
                continue;
            }
            let x = element(target_x, row, pixel * p.x_cp + ch);
            let weight = select(1.0, element(observed, row, pixel * p.x_cp + ch), p.masked == 1u);
            let mean = element(dec_out, row, mean_col(pixel, ch));
            // the mean is sigmoid(output): pixels live in [0, 1]
            let mu = 1.0 / (1.0 + exp(-mean));
            if p.gaussian == 0u && p.noise_kind == NOISE_GAUSSIAN {
                // N(x; mu, noise^2)
                let diff = mu - x;
                let inv_var = 1.0 / (p.noise * p.noise);
                recon += weight * (HALF_LOG_2PI + log(p.noise) + 0.5 * diff * diff * inv_var);
                grad[lane] = weight * diff * inv_var * mu * (1.0 - mu) * scale;
            } else if p.gaussian == 0u && p.noise_kind == NOISE_FLIP {
                // x is 1 with probability q = noise + (1 - 2 noise) mu
                let q = p.noise + (1.0 - 2.0 * p.noise) * mu;
                recon -= weight * (x * log(q) + (1.0 - x) * log(1.0 - q));
                grad[lane] = weight * (q - x) / (q * (1.0 - q)) * (1.0 - 2.0 * p.noise) * mu * (1.0 - mu) * scale;
            } else if p.gaussian == 0u {
                // Bernoulli from the logit: BCE = max(l, 0) - x l + log(1 + exp(-|l|))
                let e = exp(-abs(mean));
                recon += weight * (max(mean, 0.0) - x * mean + log(1.0 + e));
                grad[lane] = weight * (select(e, 1.0, mean >= 0.0) / (1.0 + e) - x) * scale;
            } else if p.noise_kind == NOISE_GAUSSIAN {
                // the decoder's variance plus the noise's
                let th = tanh(element(dec_out, row, logvar_col(pixel, ch)));
                let own = exp(LOGVAR_MID + LOGVAR_HALF * th);
                let total = own + p.noise * p.noise;
                let diff = mu - x;
                if role == 0u {
                    recon += weight * (HALF_LOG_2PI + 0.5 * (log(total) + diff * diff / total));
                    grad[lane] = weight * diff / total * mu * (1.0 - mu) * scale;
                } else {
                    grad[lane] = weight * 0.5 * (1.0 - diff * diff / total) * (own / total) * LOGVAR_HALF * (1.0 - th * th) * scale;
                }
            } else {
                let th = tanh(element(dec_out, row, logvar_col(pixel, ch)));
                let lv = LOGVAR_MID + LOGVAR_HALF * th;
                let inv_var = exp(-lv);
                let diff = mu - x;
                if role == 0u {
                    recon += weight * (HALF_LOG_2PI + 0.5 * (lv + diff * diff * inv_var));
                    grad[lane] = weight * diff * inv_var * mu * (1.0 - mu) * scale;
                } else {
                    grad[lane] = weight * 0.5 * (1.0 - diff * diff * inv_var) * LOGVAR_HALF * (1.0 - th * th) * scale;
                }
            }
        }
        textureStore(d_out, vec2<u32>(t, row), grad);
    }
    return recon;
}

// elbo_texels for a Bernoulli decoder whose output texels line up with the target's
// (every value observed): texel t of the output holds the logits of texel t of x, and
// its lanes are live where they hold a value. The same arithmetic as the general path,
// a texel at a time, without its per-column divisions (one scalar divide per lane on
// llvmpipe) and per-column fetches: 560 -> 175 us for the MLP, 2090 -> 480 us for the
// convolutional VAE (elbo profile, lavapipe).
fn bernoulli_texels(row: u32, t0: u32, dt: u32, scale: f32) -> f32 {
    let values = p.pixels * p.channels;
    let o4 = p.o_cp / 4u;
    var recon = 0.0;
    for (var t = t0; t < (p.o_cols + 3u) / 4u; t += dt) {
        let lanes = vec4<u32>(0u, 1u, 2u, 3u);
        var live: vec4<bool>;
        if p.halves == 1u {
            live = vec4<u32>(t * 4u) + lanes < vec4<u32>(values);
        } else {
            // channel (t mod o_cp / 4) * 4 + lane of its pixel
            live = vec4<u32>((t - div_u(t, o4) * o4) * 4u) + lanes < vec4<u32>(p.channels);
        }
        let l = textureLoad(dec_out, vec2<u32>(t, row));
        let x = textureLoad(target_x, vec2<u32>(t, row));
        // BCE = max(l, 0) - x l + log(1 + exp(-|l|)), elbo_texels' formula in vector form
        // (a scalar helper called per component measured 8-20% slower here)
        let e = exp(-abs(l));
        let r = select(vec4<f32>(0.0), max(l, vec4<f32>(0.0)) - x * l + log(1.0 + e), live);
        recon += r.x;
        recon += r.y;
        recon += r.z;
        recon += r.w;
        let g = (select(e, vec4<f32>(1.0), l >= vec4<f32>(0.0)) / (1.0 + e) - x) * scale;
        textureStore(d_out, vec2<u32>(t, row), select(vec4<f32>(0.0), g, live));
    }
    return recon;
}

// KL(q(z|x) || N(0, I)) of row `row`.
fn kl_of(row: u32) -> f32 {
    var kl = 0.0;
    for (var j = 0u; j < p.latent; j++) {
        let mu = element(mulv, row, j);
        let lv = element(mulv, row, p.latent + j);
        kl += -0.5 * (1.0 + lv - mu * mu - exp(lv));
    }
    return kl;
}

@compute @workgroup_size(64)
fn elbo_forward_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(gid, nwg);
    if row >= p.m {
        return;
    }
    let live_row = row < step.rows;
    let scale = select(0.0, step.inv_rows, live_row);
    let recon = elbo_texels(row, 0u, 1u, scale);
    image_loss[row] = select(vec2<f32>(0.0), vec2<f32>(recon, kl_of(row)), live_row);
}

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn elbo_forward_backward_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // one workgroup per row; more than 65535 rows spill into y
    let row = wid.x + wid.y * nwg.x;
    if row >= p.m {
        return; // uniform across the workgroup
    }
    let live_row = row < step.rows;
    let scale = select(0.0, step.inv_rows, live_row);
    partial[lid] = elbo_texels(row, lid, 64u, scale);
    workgroupBarrier();
    for (var half = 32u; half > 0u; half >>= 1u) {
        if lid < half {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        image_loss[row] = select(vec2<f32>(0.0), vec2<f32>(partial[0], kl_of(row)), live_row);
    }
}

// elbo_forward_backward_taps: the loss of a Bernoulli decoder whose last layer is a
// transposed convolution into one channel with a 4x4 kernel and stride 2, run as
// ConvVariant::SplitC1 (src/kernels/conv.rs). The logits are not stored: each comes from the
// layer's taps image, the four taps that reach its pixel plus the bias (what
// conv2d_col2im_c1 would store), so the step has one dispatch less and writes and reads
// the logits once less. Target and d out keep one value a texel (x_cp = o_cp = 4).
// One invocation per image, as elbo_forward_backward.
struct Taps {
    width: u32,  // of the image (the decoder's output)
    out_w: u32,  // of the taps image (the transposed convolution's input)
    out_h: u32,
    pad: u32,    // the convolution's zero padding
    bias: u32,   // offset of the layer's bias in the flat parameters
    pad1: u32,
    pad2: u32,
    pad3: u32,
}

@group(0) @binding(8) var<uniform> tp: Taps;
// (m, out_h * out_w * 16): texel (oy * out_w + ox) * 4 + q holds taps 4q..4q+3 of (oy, ox)
@group(0) @binding(9) var taps: texture_storage_2d<rgba32float, read>;
// the flat parameters (the layer's bias at tp.bias)
@group(0) @binding(10) var<storage, read> params: array<f32>;

// Tap (ky, kx) of taps-image pixel (oy, ox) of row b, or zero outside the taps image.
fn tap_at(b: u32, oy: i32, ox: i32, ky: u32, kx: u32) -> f32 {
    let inside = oy >= 0 && oy < i32(tp.out_h) && ox >= 0 && ox < i32(tp.out_w);
    let pix = u32(select(0, oy * i32(tp.out_w) + ox, inside));
    let tap = ky * 4u + kx;
    return select(0.0, textureLoad(taps, vec2<u32>(pix * 4u + tap / 4u, b))[tap % 4u], inside);
}

// The logit of image pixel (iy, ix) of row b: stride 2, so the taps ky0, ky0 + 2 of taps
// rows oy0, oy0 - 1 reach it (ky0 = (iy + pad) mod 2), and so in x.
fn taps_logit(b: u32, iy: u32, ix: u32) -> f32 {
    let oy0 = (iy + tp.pad) / 2u;
    let ky0 = iy + tp.pad - oy0 * 2u;
    let ox0 = (ix + tp.pad) / 2u;
    let kx0 = ix + tp.pad - ox0 * 2u;
    let y0 = i32(oy0);
    let x0 = i32(ox0);
    var s = params[tp.bias];
    s += tap_at(b, y0, x0, ky0, kx0);
    s += tap_at(b, y0, x0 - 1, ky0, kx0 + 2u);
    s += tap_at(b, y0 - 1, x0, ky0 + 2u, kx0);
    s += tap_at(b, y0 - 1, x0 - 1, ky0 + 2u, kx0 + 2u);
    return s;
}

@compute @workgroup_size(64)
fn elbo_forward_backward_taps(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(gid, nwg);
    if row >= p.m {
        return;
    }
    let live_row = row < step.rows;
    let scale = select(0.0, step.inv_rows, live_row);
    var recon = 0.0;
    var iy = 0u;
    var ix = 0u;
    for (var pix = 0u; pix < p.pixels; pix++) {
        let l = taps_logit(row, iy, ix);
        let x = textureLoad(target_x, vec2<u32>(pix, row)).x;
        let weight = select(1.0, textureLoad(observed, vec2<u32>(pix, row)).x, p.masked == 1u);
        // elbo_texels' Bernoulli arithmetic
        let e = exp(-abs(l));
        recon += weight * (max(l, 0.0) - x * l + log(1.0 + e));
        let g = weight * (select(e, 1.0, l >= 0.0) / (1.0 + e) - x) * scale;
        textureStore(d_out, vec2<u32>(pix, row), vec4<f32>(g, 0.0, 0.0, 0.0));
        ix += 1u;
        if ix == tp.width {
            ix = 0u;
            iy += 1u;
        }
    }
    image_loss[row] = select(vec2<f32>(0.0), vec2<f32>(recon, kl_of(row)), live_row);
}
