//! The reference of the batch gather (gather.wgsl).
// References take the kernels' arguments, in their order.
#![allow(clippy::too_many_arguments)]

use crate::kernels::Step;
use crate::rng::{rand_uniform, STREAM_BINARIZE};

/// The batch x (m, pixels * x_cp) in [0, 1] gathered from `data` (images of
/// pixels * channels bytes) in `order`, `samples` rows per image.
pub fn gather_batch(
    data: &[u8],
    order: &[u32],
    m: usize,
    pixels: usize,
    channels: usize,
    x_cp: usize,
    binarize: bool,
    samples: usize,
    step: &Step,
) -> Vec<f32> {
    let cols = pixels * x_cp;
    let image_bytes = pixels * channels;
    let mut x = vec![0f32; m * cols];
    for r in 0..(step.rows as usize).min(m) {
        let image = order[step.batch_start as usize + r / samples] as usize;
        for pixel in 0..pixels {
            for ch in 0..channels {
                let value = pixel * channels + ch;
                let v = data[image * image_bytes + value] as f32 / 255.0;
                x[r * cols + pixel * x_cp + ch] = if binarize {
                    let u = rand_uniform(
                        step.seed,
                        STREAM_BINARIZE,
                        step.counter,
                        ((r / samples) * image_bytes + value) as u32,
                    );
                    if u < v {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    v
                };
            }
        }
    }
    x
}
