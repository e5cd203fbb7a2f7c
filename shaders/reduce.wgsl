// Sums the per-image (recon, kl) of one batch into its loss-history slot, so
// the host reads the losses once per logging interval, not once per step.

struct Reduce {
    m: u32, // rows of image_loss
}

@group(0) @binding(0) var<uniform> p: Reduce;
@group(0) @binding(1) var<uniform> step: Step;
// per image (recon, kl) (m)
@group(0) @binding(2) var<storage, read> image_loss: array<vec2<f32>>;
// per batch (recon sum, kl sum, rows, 0) (slots)
@group(0) @binding(3) var<storage, read_write> history: array<vec4<f32>>;

@compute @workgroup_size(1)
fn loss_reduce() {
    var sum = vec2<f32>(0.0);
    let rows = min(step.rows, p.m);
    for (var r = 0u; r < rows; r++) {
        sum += image_loss[r];
    }
    history[step.slot] = vec4<f32>(sum, f32(rows), 0.0);
}
