// Prepended to every kernel file: the per-step uniform, the linear invocation
// index and the counter-based random numbers (mirrored in src/rng.rs).

// Written by the host once per step (src/kernels/mod.rs: Step).
struct Step {
    seed: u32,        // --seed
    counter: u32,     // counter of the random streams (distinct for every batch)
    rows: u32,        // valid rows in this batch; rows past it are padding
    batch_start: u32, // offset of this batch in the order buffer
    slot: u32,        // loss-history slot written by loss_reduce
    inv_rows: f32,    // 1 / rows: the loss is averaged over the batch
    noise: f32,       // 1: z is sampled; 0: z is the posterior mean
    beta: f32,        // weight of the KL term
    lr_t: f32,        // Adam: lr / (1 - beta1^t)
    bc2_sqrt: f32,    // Adam: sqrt(1 - beta2^t)
    pad0: u32,
    pad1: u32,
}

// 1-D kernels run in workgroups of 64; more than 65535 of them spill into y.
fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// a / d for a < 2^24, d > 0, without an integer division: llvmpipe turns a vector
// division into one scalar divide per lane (about 200 cycles for 8 lanes), where the
// float quotient, within one of the answer and then corrected, is a few vector ops.
fn div_u(a: u32, d: u32) -> u32 {
    var q = u32(f32(a) / f32(d));
    if q * d > a {
        q -= 1u;
    } else if (q + 1u) * d <= a {
        q += 1u;
    }
    return q;
}

// "lowbias32" integer hash (Wellons).
fn hash_u32(x: u32) -> u32 {
    var h = x;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

// 32 random bits for (seed, stream, step, index): a pure function, so any kernel
// (and the CPU) can recompute the same number instead of storing it.
fn rand_bits(seed: u32, stream: u32, step: u32, index: u32) -> u32 {
    let key = hash_u32(hash_u32(seed + hash_u32(stream)) + step);
    return hash_u32(key + index);
}

// Uniform in the open interval (0, 1), 24 bits.
fn rand_uniform(seed: u32, stream: u32, step: u32, index: u32) -> f32 {
    return (f32(rand_bits(seed, stream, step, index) >> 8u) + 0.5) * (1.0 / 16777216.0);
}

// Standard normal by Box-Muller from the uniforms at 2*index and 2*index+1.
fn rand_normal(seed: u32, stream: u32, step: u32, index: u32) -> f32 {
    let u1 = rand_uniform(seed, stream, step, 2u * index);
    let u2 = rand_uniform(seed, stream, step, 2u * index + 1u);
    return sqrt(-2.0 * log(u1)) * cos(6.2831853 * u2);
}

// Random streams.
const STREAM_EPS: u32 = 0u;       // reparameterization noise
const STREAM_BINARIZE: u32 = 1u;  // dynamic binarization of the input pixels

// Hidden-layer activations, fused in the GEMM and convolution epilogues (the `act`
// field of their uniforms; src/model/layout.rs: Activation::code).
const ACT_IDENTITY: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_TANH: u32 = 2u;
const ACT_ELU: u32 = 3u;        // alpha = 1, as PyTorch's nn.ELU
const ACT_LEAKY_RELU: u32 = 4u; // negative slope 0.01, as PyTorch's nn.LeakyReLU
const LEAKY_SLOPE: f32 = 0.01;

fn act_forward(v: vec4<f32>, act: u32) -> vec4<f32> {
    let positive = v > vec4<f32>(0.0);
    switch act {
        case ACT_RELU: {
            return max(v, vec4<f32>(0.0));
        }
        case ACT_TANH: {
            // tanh(15) is 1 in f32; the clamp keeps a tanh lowered to exponentials finite
            return tanh(clamp(v, vec4<f32>(-15.0), vec4<f32>(15.0)));
        }
        case ACT_ELU: {
            return select(exp(min(v, vec4<f32>(0.0))) - 1.0, v, positive);
        }
        case ACT_LEAKY_RELU: {
            return select(v * LEAKY_SLOPE, v, positive);
        }
        default: {
            return v;
        }
    }
}

// The activation's derivative, from its output y: every activation here is monotonic,
// so the backward passes need the stored output only, not the pre-activation.
fn act_grad(y: vec4<f32>, act: u32) -> vec4<f32> {
    let one = vec4<f32>(1.0);
    let positive = y > vec4<f32>(0.0);
    switch act {
        case ACT_RELU: {
            return select(vec4<f32>(0.0), one, positive);
        }
        case ACT_TANH: {
            return one - y * y;
        }
        case ACT_ELU: {
            return select(y + 1.0, one, positive);
        }
        case ACT_LEAKY_RELU: {
            return select(vec4<f32>(LEAKY_SLOPE), one, positive);
        }
        default: {
            return one;
        }
    }
}
