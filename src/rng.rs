//! The counter-based random numbers of `shaders/common.wgsl`, bit for bit on
//! the integer side, so that CPU references reproduce what the kernels draw.

pub const STREAM_EPS: u32 = 0;
pub const STREAM_BINARIZE: u32 = 1;

/// "lowbias32" integer hash (Wellons).
pub fn hash_u32(x: u32) -> u32 {
    let mut h = x;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

pub fn rand_bits(seed: u32, stream: u32, step: u32, index: u32) -> u32 {
    let key = hash_u32(hash_u32(seed.wrapping_add(hash_u32(stream))).wrapping_add(step));
    hash_u32(key.wrapping_add(index))
}

/// Uniform in (0, 1) with 24 bits.
pub fn rand_uniform(seed: u32, stream: u32, step: u32, index: u32) -> f32 {
    ((rand_bits(seed, stream, step, index) >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// Standard normal by Box-Muller from the uniforms at 2*index and 2*index+1.
pub fn rand_normal(seed: u32, stream: u32, step: u32, index: u32) -> f32 {
    let u1 = rand_uniform(seed, stream, step, 2 * index);
    let u2 = rand_uniform(seed, stream, step, 2 * index + 1);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_unit_moments() {
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|i| rand_normal(7, STREAM_EPS, 3, i) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean} (tolerance 0.01)");
        assert!((var - 1.0).abs() < 0.02, "variance {var} (tolerance 0.02)");
    }

    #[test]
    fn streams_and_steps_differ() {
        let a: Vec<u32> = (0..64).map(|i| rand_bits(1, 0, 0, i)).collect();
        let b: Vec<u32> = (0..64).map(|i| rand_bits(1, 1, 0, i)).collect();
        let c: Vec<u32> = (0..64).map(|i| rand_bits(1, 0, 1, i)).collect();
        let d: Vec<u32> = (0..64).map(|i| rand_bits(2, 0, 0, i)).collect();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
