// The reparameterization trick. The encoder's head writes mu and log-variance
// side by side, one (m, 2L) matrix: columns 0..L are mu, L..2L are logvar.
// eps ~ N(0, 1) comes from the counter-based generator (common.wgsl), so the
// backward pass recomputes it instead of storing it.

struct Reparam {
    m: u32,      // rows, a multiple of 4
    latent: u32, // L
}

@group(0) @binding(0) var<uniform> p: Reparam;
@group(0) @binding(1) var<uniform> step: Step;
// [mu | logvar] (m, 2L)
@group(0) @binding(2) var mulv: texture_storage_2d<rgba32float, read>;
// backward: dz (m, L)
@group(0) @binding(3) var dz: texture_storage_2d<rgba32float, read>;
// backward: per latent dimension, 1 if its KL term is optimised (free bits), else 0 (L)
@group(0) @binding(5) var<storage, read> kl_mask: array<f32>;
// forward: z (m, L); backward: d[mu | logvar] (m, 2L)
@group(0) @binding(4) var out: texture_storage_2d<rgba32float, write>;

fn element(t: texture_storage_2d<rgba32float, read>, row: u32, col: u32) -> f32 {
    return textureLoad(t, vec2<u32>(col / 4u, row))[col % 4u];
}

fn eps(row: u32, j: u32) -> f32 {
    return rand_normal(step.seed, STREAM_EPS, step.step, row * p.latent + j);
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
@compute @workgroup_size(64)
fn reparam_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c4s = (2u * p.latent + 3u) / 4u;
    let i = linear_id(gid, nwg);
    if i >= c4s * p.m {
        return;
    }
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
