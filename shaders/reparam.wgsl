// The reparameterization trick, and the batch's loss reduction. The encoder's head
// writes mu and log-variance side by side, one (m, 2L) matrix: columns 0..L are mu,
// L..2L are logvar. eps ~ N(0, 1) comes from the counter-based generator
// (common.wgsl), so the backward pass recomputes it instead of storing it.
//
// loss_reduce sums the per-image (recon, kl) of one batch into its loss-history slot,
// so the host reads the losses once per logging interval, not once per step. With free
// bits, it also decides which latent dimensions' KL is optimised: a dimension whose
// KL, averaged over the batch, is below the floor gets no KL gradient this step
// (Kingma et al., 2016). The training step runs it together with reparam_backward, the
// one kernel that reads its mask (reparam_backward_reduce: one dispatch instead of two).

struct Reparam {
    m: u32,         // rows, a multiple of 4
    latent: u32,    // L
    free_bits: f32, // nats per dimension; 0: off
    partials: u32,  // reparam_backward_reduce_partials: recon partial sums (blocks * m; else 0)
}

@group(0) @binding(0) var<uniform> p: Reparam;
@group(0) @binding(1) var<uniform> step: Step;
// [mu | logvar] (m, 2L)
@group(0) @binding(2) var mulv: texture_storage_2d<rgba32float, read>;
// backward: dz (m, L)
@group(0) @binding(3) var dz: texture_storage_2d<rgba32float, read>;
// forward: z (m, L); backward: d[mu | logvar] (m, 2L)
@group(0) @binding(4) var out: texture_storage_2d<rgba32float, write>;
// per latent dimension, 1 if its KL term is optimised (free bits), else 0 (L)
@group(0) @binding(5) var<storage, read_write> kl_mask: array<f32>;
// per image (recon, kl) (m)
@group(0) @binding(6) var<storage, read> image_loss: array<vec2<f32>>;
// per batch (recon sum, kl sum, rows, 0) (slots)
@group(0) @binding(7) var<storage, read_write> history: array<vec4<f32>>;
// reparam_backward_reduce_partials: per column block of the decoder output and row, the
// recon of the block's values (gemm_forward_elbo_subgroup), block-major (p.partials)
@group(0) @binding(8) var<storage, read> recon_partials: array<f32>;

fn element(t: texture_storage_2d<rgba32float, read>, row: u32, col: u32) -> f32 {
    return textureLoad(t, vec2<u32>(col / 4u, row))[col % 4u];
}

fn eps(row: u32, j: u32) -> f32 {
    return rand_normal(step.seed, STREAM_EPS, step.counter, row * p.latent + j);
}

// z = mu + noise * exp(logvar / 2) * eps
@compute @workgroup_size(64)
fn reparam_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c4s = (p.latent + 3u) / 4u;
    let i = linear_id(gid, nwg);
    if i >= c4s * p.m {
        return;
    }
    let c4 = i % c4s;
    let row = i / c4s;
    var z = vec4<f32>(0.0);
    for (var lane = 0u; lane < 4u; lane++) {
        let j = c4 * 4u + lane;
        if j < p.latent {
            let mu = element(mulv, row, j);
            let lv = element(mulv, row, p.latent + j);
            z[lane] = mu + step.noise * exp(0.5 * lv) * eps(row, j);
        }
    }
    textureStore(out, vec2<u32>(c4, row), z);
}

// d mu     = dz + beta * mu / rows
// d logvar = dz * noise * exp(logvar / 2) * eps / 2 + beta * (exp(logvar) - 1) / (2 rows)
// (the KL term's gradient of the batch-averaged loss, times kl_mask; zero on padding rows)
// Texel i of d[mu | logvar], row-major.
fn reparam_backward_texel(i: u32) {
    let c4s = (2u * p.latent + 3u) / 4u;
    let c4 = i % c4s;
    let row = i / c4s;
    let scale = select(0.0, step.inv_rows, row < step.rows);
    var d = vec4<f32>(0.0);
    for (var lane = 0u; lane < 4u; lane++) {
        let col = c4 * 4u + lane;
        if col < p.latent {
            let mu = element(mulv, row, col);
            d[lane] = element(dz, row, col) + step.beta * kl_mask[col] * mu * scale;
        } else if col < 2u * p.latent {
            let j = col - p.latent;
            let lv = element(mulv, row, col);
            let dz_j = element(dz, row, j);
            d[lane] = dz_j * step.noise * 0.5 * exp(0.5 * lv) * eps(row, j) + step.beta * kl_mask[j] * 0.5 * (exp(lv) - 1.0) * scale;
        }
    }
    if row >= step.rows {
        d = vec4<f32>(0.0);
    }
    textureStore(out, vec2<u32>(c4, row), d);
}

@compute @workgroup_size(64)
fn reparam_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if i < (2u * p.latent + 3u) / 4u * p.m {
        reparam_backward_texel(i);
    }
}

// llvmpipe (Mesa 22.3) ends every loop of an invocation once their iterations add up to
// 65535 (a single counter), so this one-invocation kernel takes 16 rows a turn.

// image_loss summed over rows r0 .. r0 + 15, those below `rows`.
fn loss16(r0: u32, rows: u32) -> vec2<f32> {
    var s = vec2<f32>(0.0);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 0u, rows - 1u)], r0 + 0u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 1u, rows - 1u)], r0 + 1u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 2u, rows - 1u)], r0 + 2u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 3u, rows - 1u)], r0 + 3u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 4u, rows - 1u)], r0 + 4u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 5u, rows - 1u)], r0 + 5u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 6u, rows - 1u)], r0 + 6u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 7u, rows - 1u)], r0 + 7u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 8u, rows - 1u)], r0 + 8u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 9u, rows - 1u)], r0 + 9u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 10u, rows - 1u)], r0 + 10u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 11u, rows - 1u)], r0 + 11u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 12u, rows - 1u)], r0 + 12u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 13u, rows - 1u)], r0 + 13u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 14u, rows - 1u)], r0 + 14u < rows);
    s += select(vec2<f32>(0.0), image_loss[min(r0 + 15u, rows - 1u)], r0 + 15u < rows);
    return s;
}

// Row r's KL term of latent dimension j, or zero past `rows`.
fn kl_term(r: u32, j: u32, rows: u32) -> f32 {
    let rr = min(r, rows - 1u);
    let mu = element(mulv, rr, j);
    let lv = element(mulv, rr, p.latent + j);
    return select(0.0, -0.5 * (1.0 + lv - mu * mu - exp(lv)), r < rows);
}

// kl_term summed over rows r0 .. r0 + 15.
fn kl16(r0: u32, j: u32, rows: u32) -> f32 {
    var s = 0.0;
    s += kl_term(r0 + 0u, j, rows);
    s += kl_term(r0 + 1u, j, rows);
    s += kl_term(r0 + 2u, j, rows);
    s += kl_term(r0 + 3u, j, rows);
    s += kl_term(r0 + 4u, j, rows);
    s += kl_term(r0 + 5u, j, rows);
    s += kl_term(r0 + 6u, j, rows);
    s += kl_term(r0 + 7u, j, rows);
    s += kl_term(r0 + 8u, j, rows);
    s += kl_term(r0 + 9u, j, rows);
    s += kl_term(r0 + 10u, j, rows);
    s += kl_term(r0 + 11u, j, rows);
    s += kl_term(r0 + 12u, j, rows);
    s += kl_term(r0 + 13u, j, rows);
    s += kl_term(r0 + 14u, j, rows);
    s += kl_term(r0 + 15u, j, rows);
    return s;
}

// The batch's (recon, kl) sums into its history slot.
fn reduce_history() {
    var sum = vec2<f32>(0.0);
    let rows = min(step.rows, p.m);
    for (var r = 0u; r < rows; r += 16u) {
        sum += loss16(r, rows);
    }
    history[step.slot] = vec4<f32>(sum, f32(rows), 0.0);
}

// kl_mask[j]: whether dimension j's batch-averaged KL reaches the free-bits floor.
fn reduce_mask(j: u32) {
    let rows = min(step.rows, p.m);
    var kl = 0.0;
    if p.free_bits > 0.0 {
        for (var r = 0u; r < rows; r += 16u) {
            kl += kl16(r, j, rows);
        }
    }
    set_mask(j, kl, rows);
}

// kl_mask[j] from dimension j's KL summed over the batch's `rows` rows: 1 where free bits
// are off or its mean reaches the floor.
fn set_mask(j: u32, kl_sum: f32, rows: u32) {
    let mean = select(0.0, kl_sum / f32(max(rows, 1u)), p.free_bits > 0.0);
    kl_mask[j] = select(0.0, 1.0, mean >= p.free_bits);
}

@compute @workgroup_size(1)
fn loss_reduce() {
    reduce_history();
    for (var j = 0u; j < p.latent; j++) {
        reduce_mask(j);
    }
}

// loss_reduce, then reparam_backward, in one workgroup: its 64 invocations share the
// mask's dimensions, then the texels of d[mu | logvar]. The batch is small next to the
// GEMMs' work (m * 2L values), so one workgroup costs less than a second dispatch
// (70-90 us on lavapipe).
@compute @workgroup_size(64)
fn reparam_backward_reduce(@builtin(local_invocation_index) lid: u32) {
    if lid == 0u {
        reduce_history();
    }
    for (var j = lid; j < p.latent; j += 64u) {
        reduce_mask(j);
    }
    storageBarrier();
    let texels = (2u * p.latent + 3u) / 4u * p.m;
    for (var i = lid; i < texels; i += 64u) {
        reparam_backward_texel(i);
    }
}

// reparam_backward_reduce where the loss was summed in the decoder's last GEMM
// (gemm_forward_elbo_subgroup): there is no per-image loss, but recon partial sums, one
// per column block of the output and row (p.partials of them, block-major). The 64
// invocations share the partials and the latent dimensions (a dimension's KL summed
// over the rows is also its free-bits test), invocation 0 adds the 64 sums into the
// history slot; then d[mu | logvar] as in reparam_backward_reduce.
// The loops' bounds are single uniforms or involve the invocation: lavapipe 22.3
// recompiled this kernel every time it was bound (2 ms a step) when one loop ran to
// p.latent from 0, and another to a product of uniforms.
var<workgroup> row_sums: array<vec2<f32>, 64>;

@compute @workgroup_size(64)
fn reparam_backward_reduce_partials(@builtin(local_invocation_index) lid: u32) {
    let rows = min(step.rows, p.m);
    var sum = vec2<f32>(0.0);
    for (var i = lid; i < p.partials; i += 64u) {
        sum.x += select(0.0, recon_partials[i], i % p.m < rows);
    }
    for (var j = lid; j < p.latent; j += 64u) {
        var kl = 0.0;
        for (var r = 0u; r < rows; r += 16u) {
            kl += kl16(r, j, rows);
        }
        sum.y += kl;
        set_mask(j, kl, rows);
    }
    row_sums[lid] = sum;
    workgroupBarrier();
    storageBarrier();
    if lid == 0u {
        var total = vec2<f32>(0.0);
        for (var i = 0u; i < 64u; i++) {
            total += row_sums[i];
        }
        history[step.slot] = vec4<f32>(total, f32(rows), 0.0);
    }
    let texels = (2u * p.latent + 3u) / 4u * p.m;
    for (var i = lid; i < texels; i += 64u) {
        reparam_backward_texel(i);
    }
}
