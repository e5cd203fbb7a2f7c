// The fused ELBO loss and its gradient for a Bernoulli decoder with a
// Gaussian posterior and a N(0, I) prior. One invocation per image:
//   recon = sum over pixels of BCE(x, sigmoid(logit)), computed from the logit
//   kl    = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))
//   loss  = mean over the batch of recon + beta * kl  (nats per image)
// It writes d loss / d logit = (sigmoid(logit) - x) / rows and the per-image
// (recon, kl); the KL gradient is added in reparam_backward.

struct Elbo {
    m: u32,      // rows, a multiple of 4
    pixels: u32, // D
    latent: u32, // L
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Elbo;
@group(0) @binding(1) var<uniform> step: Step;
// decoder logits (m, D)
@group(0) @binding(2) var logits: texture_2d<f32>;
// target pixels in [0, 1] (m, D)
@group(0) @binding(3) var target_x: texture_2d<f32>;
// [mu | logvar] (m, 2L)
@group(0) @binding(4) var mulv: texture_2d<f32>;
// d loss / d logits (m, D)
@group(0) @binding(5) var dlogits: texture_storage_2d<rgba32float, write>;
// per image (recon, kl) (m)
@group(0) @binding(6) var<storage, read_write> image_loss: array<vec2<f32>>;

@compute @workgroup_size(64)
fn elbo_forward_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(gid, nwg);
    if row >= p.m {
        return;
    }
    let live_row = row < step.rows;
    let scale = select(0.0, step.inv_rows, live_row);
    var recon = 0.0;
    let d4 = (p.pixels + 3u) / 4u;
    for (var t = 0u; t < d4; t++) {
        let l = textureLoad(logits, vec2<u32>(t, row), 0);
        let x = textureLoad(target_x, vec2<u32>(t, row), 0);
        let live = select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(t * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.pixels));
        let e = exp(-abs(l));
        // -[x log s + (1 - x) log(1 - s)] with s = sigmoid(l), without overflow
        let bce = max(l, vec4<f32>(0.0)) - x * l + log(1.0 + e);
        recon += dot(bce, live);
        // sigmoid(l) from e = exp(-|l|): 1 / (1 + e) for l >= 0, e / (1 + e) otherwise
        let s = select(e, vec4<f32>(1.0), l >= vec4<f32>(0.0)) / (1.0 + e);
        textureStore(dlogits, vec2<u32>(t, row), (s - x) * scale * live);
    }
    var kl = 0.0;
    for (var j = 0u; j < p.latent; j++) {
        let mu = textureLoad(mulv, vec2<u32>(j / 4u, row), 0)[j % 4u];
        let c = p.latent + j;
        let lv = textureLoad(mulv, vec2<u32>(c / 4u, row), 0)[c % 4u];
        kl += -0.5 * (1.0 + lv - mu * mu - exp(lv));
    }
    image_loss[row] = select(vec2<f32>(0.0), vec2<f32>(recon, kl), live_row);
}
