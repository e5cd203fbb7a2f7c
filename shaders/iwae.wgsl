// The importance-weighted objective (Burda, Grosse and Salakhutdinov, 2015), built on
// elbo.wgsl (compiled after it, sharing its bindings and elbo_texels). Rows
// i K .. i K + K - 1 hold image i with its own draw z_k (gather_batch's layout of
// Monte-Carlo samples). With the log importance weight of each draw
//   log w_k = log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)) = -(recon_k + beta kl_k),
//   kl_k = sum_j (z_j^2 - e_j^2 - lv_j) / 2, e_j = noise eps_j, z_j = mu_j + exp(lv_j / 2) e_j
// (the one-draw estimate of the KL: log q - log p, their 2 pi terms cancel), the loss of
// image i is -log (1/K) sum_k w_k, by a log-sum-exp from the largest log w_k, and the
// batch's loss is its mean over images. Its gradient is each draw's ELBO gradient
// weighted by its normalised weight w~_k = w_k / sum_k w_k (held constant): a row's
// d loss / d log w_k is -c with c = w~_k / images. So
//   iwae_weights           (one workgroup) c of every row into row_scale, the loss sums
//                          into the history slot (in place of loss_reduce);
//   elbo_backward_weighted d out as elbo_forward_backward writes it, each row scaled by c
//                          (in place of 1 / rows);
//   iwae_reparam_backward  d[mu | logvar] from dz and the sampled KL's gradient:
//                          g_j = dz_j + beta c z_j, d mu_j = g_j,
//                          d lv_j = g_j exp(lv_j / 2) e_j / 2 - beta c / 2.
// With K = 1, c = 1 / rows and this is the one-draw ELBO's step.

struct Iwae {
    m: u32,      // rows, a multiple of 4
    latent: u32, // L
    k: u32,      // rows per image
    pad: u32,
}

@group(0) @binding(11) var<uniform> iw: Iwae;
// per row: c (log w_k while iwae_weights runs)
@group(0) @binding(12) var<storage, read_write> row_scale: array<f32>;
// per batch (recon sum, sampled kl sum, rows, K times the sum of the images' losses)
@group(0) @binding(13) var<storage, read_write> history: array<vec4<f32>>;
// dz (m, L)
@group(0) @binding(14) var dz: texture_storage_2d<rgba32float, read>;
// d[mu | logvar] (m, 2L)
@group(0) @binding(15) var d_mulv: texture_storage_2d<rgba32float, write>;

// noise * eps of row `row`, dimension j: reparam_forward's draw
fn iwae_e(row: u32, j: u32) -> f32 {
    return step.noise * rand_normal(step.seed, STREAM_EPS, step.counter, row * iw.latent + j);
}

// kl_k of row `row`: log q(z|x) - log p(z) at its draw
fn sampled_kl(row: u32) -> f32 {
    var kl = 0.0;
    for (var j = 0u; j < iw.latent; j++) {
        let mu = element(mulv, row, j);
        let lv = element(mulv, row, iw.latent + j);
        let e = iwae_e(row, j);
        let z = mu + exp(0.5 * lv) * e;
        kl += 0.5 * (z * z - e * e - lv);
    }
    return kl;
}

var<workgroup> sums: array<vec4<f32>, 64>;

// One workgroup: its invocations take images lid, lid + 64, ... Reads recon_k from
// image_loss (elbo_forward_backward's first component); writes image_loss[row] =
// (recon_k, kl_k), row_scale and the history slot.
@compute @workgroup_size(64)
fn iwae_weights(@builtin(local_invocation_index) lid: u32) {
    let rows = min(step.rows, iw.m);
    let images = rows / iw.k;
    var s = vec4<f32>(0.0);
    for (var i = lid; i < images; i += 64u) {
        let r0 = i * iw.k;
        var top = -3.4e38;
        for (var r = r0; r < r0 + iw.k; r++) {
            let recon = image_loss[r].x;
            let kl = sampled_kl(r);
            image_loss[r] = vec2<f32>(recon, kl);
            let lw = -(recon + step.beta * kl);
            row_scale[r] = lw;
            top = max(top, lw);
            s.x += recon;
            s.y += kl;
        }
        var total = 0.0;
        for (var r = r0; r < r0 + iw.k; r++) {
            total += exp(row_scale[r] - top);
        }
        // -log (1/K) sum_k w_k, counted once per row as the history's rows are
        s.w += f32(iw.k) * (log(f32(iw.k)) - top - log(total));
        for (var r = r0; r < r0 + iw.k; r++) {
            row_scale[r] = exp(row_scale[r] - top) / (total * f32(images));
        }
    }
    for (var r = images * iw.k + lid; r < iw.m; r += 64u) {
        row_scale[r] = 0.0;
    }
    sums[lid] = s;
    workgroupBarrier();
    for (var half = 32u; half > 0u; half >>= 1u) {
        if lid < half {
            sums[lid] += sums[lid + half];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        history[step.slot] = vec4<f32>(sums[0].x, sums[0].y, f32(images * iw.k), sums[0].w);
    }
}

// d out of every row, scaled by its c (zero past the live rows); one invocation a row.
@compute @workgroup_size(64)
fn elbo_backward_weighted(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(gid, nwg);
    if row >= p.m {
        return;
    }
    _ = elbo_texels(row, 0u, 1u, row_scale[row]);
}

// elbo_backward_weighted with a workgroup a row (elbo_forward_backward_wide's split).
@compute @workgroup_size(64)
fn elbo_backward_weighted_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.m {
        return;
    }
    _ = elbo_texels(row, lid, 64u, row_scale[row]);
}

// Texel i of d[mu | logvar], row-major (zero on rows without weight).
@compute @workgroup_size(64)
fn iwae_reparam_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c4s = (2u * iw.latent + 3u) / 4u;
    let i = linear_id(gid, nwg);
    if i >= c4s * iw.m {
        return;
    }
    let c4 = i % c4s;
    let row = i / c4s;
    let c = step.beta * row_scale[row];
    var d = vec4<f32>(0.0);
    for (var lane = 0u; lane < 4u; lane++) {
        let col = c4 * 4u + lane;
        let j = select(col, col - iw.latent, col >= iw.latent);
        if col < 2u * iw.latent {
            let mu = element(mulv, row, j);
            let sd = exp(0.5 * element(mulv, row, iw.latent + j));
            let e = iwae_e(row, j);
            let g = element(dz, row, j) + c * (mu + sd * e);
            d[lane] = select(g * 0.5 * sd * e - 0.5 * c, g, col < iw.latent);
        }
    }
    textureStore(d_mulv, vec2<u32>(c4, row), d);
}
