//! Adam (adam.wgsl, adam_texel.wgsl, and fused into the weight gradient in
//! gemm_adam_subgroup.wgsl): its uniform, where its moments live, and the fused
//! kernel's builds.

use crate::gpu::Gpu;
use anyhow::Result;
use bytemuck::{Pod, Zeroable};

/// Floats per row of Adam's moment textures (adam_texel.wgsl: 1024 texels).
pub const ADAM_TEXEL_COLS: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Adam {
    pub count: u32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// Where Adam's moments live: rgba32float textures bound read_write, 1024 texels a row
/// (adam_texel.wgsl, gemm_adam_texels.wgsl), or storage buffers laid out as the flat
/// parameters (adam.wgsl, gemm_adam_buffers.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MomentStore {
    Texels,
    Buffers,
}

/// The weight gradient with Adam in its epilogue (gemm_adam_subgroup.wgsl), for one
/// storage of the moments.
pub struct GemmAdam {
    pub moments: MomentStore,
    /// Built for the adapter's subgroup width.
    pub pipeline: super::Kernel,
    pub lanes: u32,
    /// The 8-lane build, beside the 16-lane one on 16-lane adapters: for layers of at
    /// most 8 input texels, which leave most of 16 lanes idle (fc3, k = 20: 200 -> 126 us).
    pub pipeline8: Option<super::Kernel>,
}

impl GemmAdam {
    /// The kernel for subgroups of `lanes` (8 or 16) lanes with its moments in `moments`.
    pub fn new(gpu: &Gpu, lanes: u32, moments: MomentStore) -> Result<GemmAdam> {
        let build = |lanes: u32| {
            let file = match (moments, lanes) {
                (MomentStore::Texels, 16) => "gemm_adam_subgroup16.wgsl",
                (MomentStore::Texels, _) => "gemm_adam_subgroup.wgsl",
                (MomentStore::Buffers, 16) => "gemm_adam_buffers_subgroup16.wgsl",
                (MomentStore::Buffers, _) => "gemm_adam_buffers_subgroup.wgsl",
            };
            Ok::<_, anyhow::Error>(super::Kernel::new(
                gpu,
                &super::Module::new(gpu, file)?,
                "gemm_backward_weight_adam_subgroup",
            ))
        };
        let pipeline8 = if lanes == 16 { Some(build(8)?) } else { None };
        Ok(GemmAdam { moments, pipeline: build(lanes)?, lanes, pipeline8 })
    }
}

/// adam.wgsl's and adam_texel.wgsl's binding slots.
pub mod adam_slot {
    /// The `Adam` uniform.
    pub const P: u32 = 0;
    pub const STEP: u32 = 1;
    pub const PARAMS: u32 = 2;
    pub const GRADS: u32 = 3;
    pub const MOMENT1: u32 = 4;
    pub const MOMENT2: u32 = 5;
    pub const ALL: &[(&str, u32)] =
        &[("p", P), ("step", STEP), ("params", PARAMS), ("grads", GRADS), ("moment1", MOMENT1), ("moment2", MOMENT2)];
}
