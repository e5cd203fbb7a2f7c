//! The batch gather (gather.wgsl): a batch's images from the resident dataset
//! into the input texture, in the epoch's order, binarized where asked.

use super::{Bind, Dispatch, Kernels};
use crate::gpu::Gpu;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Gather {
    pub m: u32,
    pub pixels: u32,
    pub channels: u32,
    pub x_cp: u32,
    pub binarize: u32,
    pub samples: u32,
    pub pad: [u32; 2],
}

impl Gather {
    /// The gather of `m` rows of images laid out as `loss` says (`channels` a pixel), each
    /// image repeated for its `samples` rows, binarized when `binarize`.
    pub fn new(m: usize, loss: &crate::model::LossLayout, channels: usize, binarize: bool, samples: usize) -> Gather {
        Gather {
            m: m as u32,
            pixels: loss.pixels as u32,
            channels: channels as u32,
            x_cp: loss.x_cp as u32,
            binarize: binarize as u32,
            samples: samples as u32,
            pad: [0; 2],
        }
    }
}

/// The dispatch of gather.wgsl for `g` (its uniform at binding 0 of `binds`): the
/// one-channel variants where they apply (lavapipe at 512 bits, batch 128: MLP 257 ->
/// 209 us, conv 808 -> 616 us), else gather_batch. Each writes the texels of (g.m, pixels * x_cp).
pub fn gather_dispatch(gpu: &Gpu, k: &Kernels, g: &Gather, binds: &[(u32, Bind)]) -> Dispatch {
    let (m, pixels) = (g.m as usize, g.pixels as usize);
    let (name, pipeline, texels) = match (g.channels, g.x_cp) {
        (1, 1) if pixels.is_multiple_of(4) => ("gather_batch_words", &k.gather_batch_words, m * pixels / 4),
        (1, 4) if pixels.is_multiple_of(4) => ("gather_batch_pixels4", &k.gather_batch_pixels4, m * pixels / 4),
        (1, 4) => ("gather_batch_pixels", &k.gather_batch_pixels, m * pixels),
        (3, 4) if pixels.is_multiple_of(4) => ("gather_batch_rgb4", &k.gather_batch_rgb4, m * pixels / 4),
        _ => ("gather_batch", &k.gather_batch, m * (pixels * g.x_cp as usize).div_ceil(4)),
    };
    Dispatch::new(gpu, name, pipeline, binds, texels, 64)
}

/// gather.wgsl's binding slots.
pub mod gather_slot {
    /// The `Gather` uniform.
    pub const P: u32 = 0;
    pub const STEP: u32 = 1;
    /// The dataset's bytes.
    pub const DATA: u32 = 2;
    /// The epoch's order of the images.
    pub const ORDER: u32 = 3;
    pub const OUT: u32 = 4;
    pub const ALL: &[(&str, u32)] = &[("p", P), ("step", STEP), ("data", DATA), ("order", ORDER), ("out", OUT)];
}
