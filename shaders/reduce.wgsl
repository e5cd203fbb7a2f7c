// Sums the per-image (recon, kl) of one batch into its loss-history slot, so
// the host reads the losses once per logging interval, not once per step.
// With free bits, it also decides which latent dimensions' KL is optimised:
// a dimension whose KL, averaged over the batch, is below the floor gets no
// KL gradient this step (Kingma et al., 2016).

struct Reduce {
    m: u32,         // rows of image_loss
    latent: u32,    // L
    free_bits: f32, // nats per dimension; 0: off
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Reduce;
@group(0) @binding(1) var<uniform> step: Step;
// per image (recon, kl) (m)
@group(0) @binding(2) var<storage, read> image_loss: array<vec2<f32>>;
// per batch (recon sum, kl sum, rows, 0) (slots)
@group(0) @binding(3) var<storage, read_write> history: array<vec4<f32>>;
// [mu | logvar] (m, 2L)
@group(0) @binding(4) var mulv: texture_storage_2d<rgba32float, read>;
// per latent dimension: 1 if its KL term is optimised this step, else 0 (L)
@group(0) @binding(5) var<storage, read_write> kl_mask: array<f32>;

fn element(t: texture_storage_2d<rgba32float, read>, row: u32, col: u32) -> f32 {
    return textureLoad(t, vec2<u32>(col / 4u, row))[col % 4u];
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

@compute @workgroup_size(1)
fn loss_reduce() {
    var sum = vec2<f32>(0.0);
    let rows = min(step.rows, p.m);
    for (var r = 0u; r < rows; r += 16u) {
        sum += loss16(r, rows);
    }
    history[step.slot] = vec4<f32>(sum, f32(rows), 0.0);
    for (var j = 0u; j < p.latent; j++) {
        var kl = 0.0;
        if p.free_bits > 0.0 {
            for (var r = 0u; r < rows; r += 16u) {
                kl += kl16(r, j, rows);
            }
            kl /= f32(max(rows, 1u));
        }
        kl_mask[j] = select(0.0, 1.0, kl >= p.free_bits);
    }
}
