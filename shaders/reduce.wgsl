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

@compute @workgroup_size(1)
fn loss_reduce() {
    var sum = vec2<f32>(0.0);
    let rows = min(step.rows, p.m);
    for (var r = 0u; r < rows; r++) {
        sum += image_loss[r];
    }
    history[step.slot] = vec4<f32>(sum, f32(rows), 0.0);
    for (var j = 0u; j < p.latent; j++) {
        var kl = 0.0;
        if p.free_bits > 0.0 {
            for (var r = 0u; r < rows; r++) {
                let mu = element(mulv, r, j);
                let lv = element(mulv, r, p.latent + j);
                kl += -0.5 * (1.0 + lv - mu * mu - exp(lv));
            }
            kl /= f32(max(rows, 1u));
        }
        kl_mask[j] = select(0.0, 1.0, kl >= p.free_bits);
    }
}
