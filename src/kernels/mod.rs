//! The WGSL kernels: their sources, the uniform structs they take (mirroring
//! the WGSL structs field by field), their pipelines, and the dispatches that a
//! training step replays. One file per kernel family: [`gemm`], [`conv`],
//! [`loss`] (reparameterisation, the ELBO and its reductions), [`gather`],
//! [`adam`], [`classify`]; [`dispatch`] records and encodes dispatches and
//! [`timing`] times them.

pub mod adam;
pub mod choice;
pub mod classify;
pub mod conv;
pub mod dispatch;
pub mod gather;
pub mod gemm;
pub mod kernel;
pub mod loss;
pub mod timing;
pub mod warm;

pub use adam::*;
pub use classify::*;
pub use conv::*;
pub use dispatch::*;
pub use gather::*;
pub use gemm::{gemm_adam_slot, gemm_fused_slot, gemm_slot, Gemm};
pub use kernel::{Kernel, Module};
pub use loss::*;

use crate::gpu::Gpu;
use anyhow::Result;
use bytemuck::{Pod, Zeroable};

pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// The files of shaders/ named, joined with newlines, in order.
macro_rules! shader_files {
    ($first:literal $(, $rest:literal)* $(,)?) => {
        concat!(include_str!(concat!("../../shaders/", $first)) $(, "\n", include_str!(concat!("../../shaders/", $rest)))*)
    };
}

/// Every kernel file, by name; each is compiled with `COMMON` in front, the convolution
/// files with conv_common.wgsl (their uniform, bindings and epilogue) too, the subgroup
/// files with the width's blocks (lanes8.wgsl, lanes16.wgsl) and subgroup_common.wgsl, the
/// Adam files with adam_common.wgsl, and the fused weight-gradient-and-Adam kernel after
/// gemm_subgroup.wgsl and its moments' storage (texels or buffers: `MomentStore`).
pub const SHADERS: &[(&str, &str)] = &[
    ("gemm.wgsl", shader_files!("gemm.wgsl")),
    (
        "gemm_subgroup.wgsl",
        shader_files!("lanes8.wgsl", "subgroup_common.wgsl", "gemm_subgroup.wgsl", "gemm_fused_subgroup.wgsl"),
    ),
    (
        "gemm_subgroup16.wgsl",
        shader_files!("lanes16.wgsl", "subgroup_common.wgsl", "gemm_subgroup.wgsl", "gemm_fused_subgroup.wgsl"),
    ),
    (
        "conv_subgroup.wgsl",
        shader_files!("conv_common.wgsl", "lanes8.wgsl", "subgroup_common.wgsl", "conv_subgroup.wgsl"),
    ),
    (
        "conv_subgroup16.wgsl",
        shader_files!("conv_common.wgsl", "lanes16.wgsl", "subgroup_common.wgsl", "conv_subgroup.wgsl"),
    ),
    ("conv.wgsl", shader_files!("conv_common.wgsl", "conv.wgsl")),
    ("classify.wgsl", shader_files!("classify.wgsl")),
    ("activation.wgsl", shader_files!("activation.wgsl")),
    ("reparam.wgsl", shader_files!("reparam.wgsl")),
    ("elbo.wgsl", shader_files!("elbo.wgsl")),
    ("iwae.wgsl", shader_files!("elbo.wgsl", "iwae.wgsl")),
    ("adam.wgsl", shader_files!("adam_common.wgsl", "adam.wgsl")),
    ("adam_texel.wgsl", shader_files!("adam_common.wgsl", "adam_texel.wgsl")),
    (
        "gemm_adam_subgroup.wgsl",
        shader_files!(
            "lanes8.wgsl",
            "subgroup_common.wgsl",
            "gemm_subgroup.wgsl",
            "adam_common.wgsl",
            "gemm_adam_texels.wgsl",
            "gemm_adam_subgroup.wgsl"
        ),
    ),
    (
        "gemm_adam_subgroup16.wgsl",
        shader_files!(
            "lanes16.wgsl",
            "subgroup_common.wgsl",
            "gemm_subgroup.wgsl",
            "adam_common.wgsl",
            "gemm_adam_texels.wgsl",
            "gemm_adam_subgroup.wgsl"
        ),
    ),
    (
        "gemm_adam_buffers_subgroup.wgsl",
        shader_files!(
            "lanes8.wgsl",
            "subgroup_common.wgsl",
            "gemm_subgroup.wgsl",
            "adam_common.wgsl",
            "gemm_adam_buffers.wgsl",
            "gemm_adam_subgroup.wgsl"
        ),
    ),
    (
        "gemm_adam_buffers_subgroup16.wgsl",
        shader_files!(
            "lanes16.wgsl",
            "subgroup_common.wgsl",
            "gemm_subgroup.wgsl",
            "adam_common.wgsl",
            "gemm_adam_buffers.wgsl",
            "gemm_adam_subgroup.wgsl"
        ),
    ),
    ("gather.wgsl", shader_files!("gather.wgsl")),
    ("touch.wgsl", shader_files!("touch.wgsl")),
];

pub fn with_common(source: &str) -> String {
    format!("{COMMON}\n{source}")
}

/// Kernel file `name` as it compiles: with `COMMON` in front.
pub(crate) fn source(name: &str) -> String {
    with_common(SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).expect("known shader"))
}

/// `Step` of common.wgsl: written once per step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct Step {
    pub seed: u32,
    /// The random streams' counter: distinct for every batch, training or evaluation.
    pub counter: u32,
    pub rows: u32,
    pub batch_start: u32,
    pub slot: u32,
    pub inv_rows: f32,
    pub noise: f32,
    pub beta: f32,
    pub lr_t: f32,
    pub bc2_sqrt: f32,
    pub pad0: u32,
    pub pad1: u32,
}

/// Every pipeline, named after its WGSL entry point.
pub struct Kernels {
    pub gemm_forward: Kernel,
    pub gemm_backward_input: Kernel,
    pub gemm_backward_weight: Kernel,
    pub relu_forward: Kernel,
    pub relu_backward: Kernel,
    pub sigmoid_forward: Kernel,
    pub sigmoid_backward: Kernel,
    pub reparam_forward: Kernel,
    pub reparam_backward: Kernel,
    pub reparam_backward_reduce: Kernel,
    /// reparam_backward_reduce after gemm_forward_elbo_subgroup's loss (recon partial sums)
    pub reparam_backward_reduce_partials: Kernel,
    pub elbo_forward_backward: Kernel,
    pub loss_reduce: Kernel,
    pub adam_update: Kernel,
    pub gather_batch: Kernel,
    /// gather_batch for one-channel images, four pixels a texel (`gather_dispatch`).
    pub gather_batch_words: Kernel,
    /// gather_batch for one-channel images, one pixel a texel (`gather_dispatch`).
    pub gather_batch_pixels: Kernel,
    pub gather_batch_pixels4: Kernel,
    pub gather_batch_rgb4: Kernel,
    /// touch.wgsl: a dispatch with almost no work (`bench::fixed_costs`)
    pub touch: Kernel,
    pub conv2d_forward: Kernel,
    pub conv2d_backward_input: Kernel,
    pub conv2d_backward_weight: Kernel,
    /// conv.wgsl's two steps around a 1x1 convolution for a 1-channel backward_input
    pub conv2d_taps_c1: Kernel,
    pub conv2d_col2im_c1: Kernel,
    /// conv.wgsl's step after a 1x1 convolution for a backward_input into 2-4 channels
    pub conv2d_col2im_c4: Kernel,
    pub softmax_cross_entropy: Kernel,
    /// The `_wide` variants: a workgroup's lanes share one block's reduction.
    pub gemm_forward_wide: Kernel,
    pub gemm_backward_input_wide: Kernel,
    pub gemm_backward_weight_wide: Kernel,
    /// The `_tiled` variants: 64x64 output tiles staged through workgroup memory.
    pub gemm_forward_tiled: Kernel,
    pub gemm_backward_input_tiled: Kernel,
    pub gemm_backward_weight_tiled: Kernel,
    pub elbo_forward_backward_wide: Kernel,
    pub elbo_forward_backward_taps: Kernel,
    pub conv2d_forward_wide: Kernel,
    pub conv2d_backward_input_wide: Kernel,
    pub conv2d_backward_weight_wide: Kernel,
    /// Whether the loss and the convolutions run their `_wide` variants: on every
    /// adapter but a CPU (see elbo.wgsl and conv.wgsl for the figures).
    pub wide_reductions: bool,
    /// gemm_subgroup.wgsl and conv_subgroup.wgsl, on adapters whose subgroups are 8 or 16
    /// lanes wide (`subgroup_lanes`).
    pub subgroup: Option<SubgroupKernels>,
    /// adam_texel.wgsl (the moments in textures), on CPU adapters with read_write rgba32float.
    pub adam_update_texel: Option<Kernel>,
    /// gemm_adam_subgroup.wgsl: where both `subgroup` and `adam_update_texel` exist, its
    /// moments where this adapter keeps them (`Gpu::texel_moments_pay`).
    pub gemm_adam: Option<GemmAdam>,
    /// iwae.wgsl, compiled the first time a model trains the importance-weighted bound
    /// (`Kernels::iwae`).
    iwae: std::sync::OnceLock<IwaeKernels>,
}

pub struct SubgroupKernels {
    pub gemm_forward_subgroup: Kernel,
    pub gemm_backward_input_subgroup: Kernel,
    pub gemm_backward_weight_subgroup: Kernel,
    /// gemm_fused_subgroup.wgsl: the heads' forward pass and reparam_forward in one
    /// dispatch, for 2L up to one workgroup's 4 LANES columns
    pub gemm_forward_reparam_subgroup: Kernel,
    /// The same for heads wider than one workgroup, where L is a multiple of 4.
    pub gemm_forward_reparam_pairs_subgroup: Kernel,
    /// gemm_fused_subgroup.wgsl: a Bernoulli decoder's last dense layer and its loss in one
    /// dispatch
    pub gemm_forward_elbo_subgroup: Kernel,
    /// conv_subgroup.wgsl, built for `lanes`: the forward pass over 32 columns
    /// (conv2d_forward_group8_subgroup: at 16 lanes, each 8-lane half on its own 32 rows),
    /// and the backward passes
    pub conv2d_forward_subgroup: Kernel,
    pub conv2d_backward_input_subgroup: Kernel,
    pub conv2d_backward_weight_subgroup: Kernel,
    /// conv_subgroup.wgsl's kernels for 1-channel inputs
    pub conv2d_forward_c1_subgroup: Kernel,
    pub conv2d_forward_c4_subgroup: Kernel,
    pub conv2d_backward_input_c1_subgroup: Kernel,
    pub conv2d_backward_weight_c1_subgroup: Kernel,
    /// conv2d_forward_subgroup built for 16 lanes, on 16-lane adapters: used where the
    /// output channels fill its 64 columns (conv2d_forward_group8_subgroup elsewhere).
    pub conv2d_forward_subgroup16: Option<Kernel>,
    /// The subgroup width gemm_subgroup.wgsl and the conv backward passes were built for:
    /// 8 or 16 (`subgroup_lanes`).
    pub lanes: u32,
}

/// Kernel variants are named `<op>_<pass>_<variant>`; they share the reference `<op>_<pass>`.
pub const VARIANT_SUFFIXES: &[&str] = &[
    "_c1_subgroup",
    "_c4_subgroup",
    "_group8_subgroup",
    "_pairs_subgroup",
    "_subgroup",
    "_wide",
    "_tiled",
    "_texel",
    "_words",
    "_pixels",
    "_pixels4",
    "_rgb4",
];

/// The CPU reference an entry point is checked against.
pub fn reference_name(entry: &str) -> &str {
    VARIANT_SUFFIXES.iter().find_map(|s| entry.strip_suffix(s)).unwrap_or(entry)
}

/// The subgroup width the `_subgroup` kernels run at on this device, where it has
/// Features::SUBGROUP and subgroups of exactly 8 or 16 lanes (lavapipe on x86: 16 with
/// LP_NATIVE_VECTOR_WIDTH=512, `gpu::prefer_wide_cpu_vectors`). gemm_subgroup.wgsl is
/// built for that width (lanes8.wgsl or lanes16.wgsl in front), and so are
/// conv_subgroup.wgsl's kernels (its `_c1` ones are written for 8 lanes: at 16, each half
/// of a subgroup does their work, through lanes16.wgsl's group8_ blocks; tests/conv.rs
/// checks every kernel at both widths).
pub fn subgroup_lanes(gpu: &Gpu) -> Option<u32> {
    let (lo, hi) = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
    (gpu.features.contains(wgpu::Features::SUBGROUP) && lo == hi && (lo == 8 || lo == 16)).then_some(lo)
}

impl SubgroupKernels {
    /// gemm_subgroup.wgsl and conv_subgroup.wgsl built for subgroups of `lanes` (8 or 16).
    pub fn new(gpu: &Gpu, lanes: u32) -> Result<SubgroupKernels> {
        let gemm_file = if lanes == 16 { "gemm_subgroup16.wgsl" } else { "gemm_subgroup.wgsl" };
        let m = Module::new(gpu, gemm_file)?;
        // conv_subgroup.wgsl built for the adapter's width
        let conv_file = if lanes == 16 { "conv_subgroup16.wgsl" } else { "conv_subgroup.wgsl" };
        let cl = Module::new(gpu, conv_file)?;
        Ok(SubgroupKernels {
            conv2d_forward_subgroup: Kernel::new(gpu, &cl, "conv2d_forward_group8_subgroup"),
            conv2d_backward_input_subgroup: Kernel::new(gpu, &cl, "conv2d_backward_input_subgroup"),
            conv2d_backward_weight_subgroup: Kernel::new(gpu, &cl, "conv2d_backward_weight_subgroup"),
            conv2d_forward_c1_subgroup: Kernel::new(gpu, &cl, "conv2d_forward_c1_subgroup"),
            conv2d_forward_c4_subgroup: Kernel::new(gpu, &cl, "conv2d_forward_c4_subgroup"),
            conv2d_backward_input_c1_subgroup: Kernel::new(gpu, &cl, "conv2d_backward_input_c1_subgroup"),
            conv2d_backward_weight_c1_subgroup: Kernel::new(gpu, &cl, "conv2d_backward_weight_c1_subgroup"),
            gemm_forward_subgroup: Kernel::new(gpu, &m, "gemm_forward_subgroup"),
            gemm_backward_input_subgroup: Kernel::new(gpu, &m, "gemm_backward_input_subgroup"),
            gemm_backward_weight_subgroup: Kernel::new(gpu, &m, "gemm_backward_weight_subgroup"),
            gemm_forward_reparam_subgroup: Kernel::new(gpu, &m, "gemm_forward_reparam_subgroup"),
            gemm_forward_reparam_pairs_subgroup: Kernel::new(gpu, &m, "gemm_forward_reparam_pairs_subgroup"),
            gemm_forward_elbo_subgroup: Kernel::new(gpu, &m, "gemm_forward_elbo_subgroup"),
            conv2d_forward_subgroup16: (lanes == 16).then(|| Kernel::new(gpu, &cl, "conv2d_forward_subgroup")),
            lanes,
        })
    }
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        let gemm = Module::new(gpu, "gemm.wgsl")?;
        let act = Module::new(gpu, "activation.wgsl")?;
        let reparam = Module::new(gpu, "reparam.wgsl")?;
        let elbo = Module::new(gpu, "elbo.wgsl")?;
        let adam = Module::new(gpu, "adam.wgsl")?;
        let gather = Module::new(gpu, "gather.wgsl")?;
        let touch = Module::new(gpu, "touch.wgsl")?;
        let conv = Module::new(gpu, "conv.wgsl")?;
        let classify = Module::new(gpu, "classify.wgsl")?;
        let lanes = subgroup_lanes(gpu);
        let subgroup = lanes.map(|lanes| SubgroupKernels::new(gpu, lanes)).transpose()?;
        // only on CPU adapters, where it was measured (adam_texel.wgsl)
        let adam_update_texel = if gpu.read_write_texels && gpu.info.device_type == wgpu::DeviceType::Cpu {
            let a = Module::new(gpu, "adam_texel.wgsl")?;
            Some(Kernel::new(gpu, &a, "adam_update_texel"))
        } else {
            None
        };
        let gemm_adam = match lanes {
            Some(lanes) if adam_update_texel.is_some() => {
                let moments = if gpu.texel_moments_pay() { MomentStore::Texels } else { MomentStore::Buffers };
                Some(GemmAdam::new(gpu, lanes, moments)?)
            }
            _ => None,
        };
        Ok(Kernels {
            subgroup,
            adam_update_texel,
            gemm_adam,
            gemm_forward: Kernel::new(gpu, &gemm, "gemm_forward"),
            gemm_backward_input: Kernel::new(gpu, &gemm, "gemm_backward_input"),
            gemm_backward_weight: Kernel::new(gpu, &gemm, "gemm_backward_weight"),
            relu_forward: Kernel::new(gpu, &act, "relu_forward"),
            relu_backward: Kernel::new(gpu, &act, "relu_backward"),
            sigmoid_forward: Kernel::new(gpu, &act, "sigmoid_forward"),
            sigmoid_backward: Kernel::new(gpu, &act, "sigmoid_backward"),
            reparam_forward: Kernel::new(gpu, &reparam, "reparam_forward"),
            reparam_backward: Kernel::new(gpu, &reparam, "reparam_backward"),
            reparam_backward_reduce: Kernel::new(gpu, &reparam, "reparam_backward_reduce"),
            reparam_backward_reduce_partials: Kernel::new(gpu, &reparam, "reparam_backward_reduce_partials"),
            elbo_forward_backward: Kernel::new(gpu, &elbo, "elbo_forward_backward"),
            loss_reduce: Kernel::new(gpu, &reparam, "loss_reduce"),
            adam_update: Kernel::new(gpu, &adam, "adam_update"),
            gather_batch: Kernel::new(gpu, &gather, "gather_batch"),
            gather_batch_words: Kernel::new(gpu, &gather, "gather_batch_words"),
            gather_batch_pixels: Kernel::new(gpu, &gather, "gather_batch_pixels"),
            gather_batch_pixels4: Kernel::new(gpu, &gather, "gather_batch_pixels4"),
            gather_batch_rgb4: Kernel::new(gpu, &gather, "gather_batch_rgb4"),
            touch: Kernel::new(gpu, &touch, "touch"),
            conv2d_forward: Kernel::new(gpu, &conv, "conv2d_forward"),
            conv2d_backward_input: Kernel::new(gpu, &conv, "conv2d_backward_input"),
            conv2d_backward_weight: Kernel::new(gpu, &conv, "conv2d_backward_weight"),
            conv2d_taps_c1: Kernel::new(gpu, &conv, "conv2d_taps_c1"),
            conv2d_col2im_c1: Kernel::new(gpu, &conv, "conv2d_col2im_c1"),
            conv2d_col2im_c4: Kernel::new(gpu, &conv, "conv2d_col2im_c4"),
            softmax_cross_entropy: Kernel::new(gpu, &classify, "softmax_cross_entropy"),
            gemm_forward_wide: Kernel::new(gpu, &gemm, "gemm_forward_wide"),
            gemm_backward_input_wide: Kernel::new(gpu, &gemm, "gemm_backward_input_wide"),
            gemm_backward_weight_wide: Kernel::new(gpu, &gemm, "gemm_backward_weight_wide"),
            gemm_forward_tiled: Kernel::new(gpu, &gemm, "gemm_forward_tiled"),
            gemm_backward_input_tiled: Kernel::new(gpu, &gemm, "gemm_backward_input_tiled"),
            gemm_backward_weight_tiled: Kernel::new(gpu, &gemm, "gemm_backward_weight_tiled"),
            elbo_forward_backward_wide: Kernel::new(gpu, &elbo, "elbo_forward_backward_wide"),
            elbo_forward_backward_taps: Kernel::new(gpu, &elbo, "elbo_forward_backward_taps"),
            conv2d_forward_wide: Kernel::new(gpu, &conv, "conv2d_forward_wide"),
            conv2d_backward_input_wide: Kernel::new(gpu, &conv, "conv2d_backward_input_wide"),
            conv2d_backward_weight_wide: Kernel::new(gpu, &conv, "conv2d_backward_weight_wide"),
            wide_reductions: gpu.info.device_type != wgpu::DeviceType::Cpu,
            iwae: std::sync::OnceLock::new(),
        })
    }

    /// The device's kernels, made once (no pipeline is created until a dispatch takes
    /// it), so that a second model on the device creates only the pipelines that the
    /// first did not.
    pub fn of(gpu: &Gpu) -> Result<&Kernels> {
        if let Some(k) = gpu.kernels.get() {
            return Ok(k);
        }
        let made = Kernels::new(gpu)?;
        Ok(gpu.kernels.get_or_init(|| made))
    }

    /// Every kernel made for this device: the adapter's variants, and the importance-
    /// weighted objective's where a model trained it.
    pub fn all(&self) -> Vec<&Kernel> {
        let mut all = vec![
            &self.gemm_forward,
            &self.gemm_backward_input,
            &self.gemm_backward_weight,
            &self.relu_forward,
            &self.relu_backward,
            &self.sigmoid_forward,
            &self.sigmoid_backward,
            &self.reparam_forward,
            &self.reparam_backward,
            &self.reparam_backward_reduce,
            &self.reparam_backward_reduce_partials,
            &self.elbo_forward_backward,
            &self.loss_reduce,
            &self.adam_update,
            &self.gather_batch,
            &self.gather_batch_words,
            &self.gather_batch_pixels,
            &self.gather_batch_pixels4,
            &self.gather_batch_rgb4,
            &self.touch,
            &self.conv2d_forward,
            &self.conv2d_backward_input,
            &self.conv2d_backward_weight,
            &self.conv2d_taps_c1,
            &self.conv2d_col2im_c1,
            &self.conv2d_col2im_c4,
            &self.softmax_cross_entropy,
            &self.gemm_forward_wide,
            &self.gemm_backward_input_wide,
            &self.gemm_backward_weight_wide,
            &self.gemm_forward_tiled,
            &self.gemm_backward_input_tiled,
            &self.gemm_backward_weight_tiled,
            &self.elbo_forward_backward_wide,
            &self.elbo_forward_backward_taps,
            &self.conv2d_forward_wide,
            &self.conv2d_backward_input_wide,
            &self.conv2d_backward_weight_wide,
        ];
        if let Some(s) = &self.subgroup {
            all.extend([
                &s.gemm_forward_subgroup,
                &s.gemm_backward_input_subgroup,
                &s.gemm_backward_weight_subgroup,
                &s.gemm_forward_reparam_subgroup,
                &s.gemm_forward_reparam_pairs_subgroup,
                &s.gemm_forward_elbo_subgroup,
                &s.conv2d_forward_subgroup,
                &s.conv2d_backward_input_subgroup,
                &s.conv2d_backward_weight_subgroup,
                &s.conv2d_forward_c1_subgroup,
                &s.conv2d_forward_c4_subgroup,
                &s.conv2d_backward_input_c1_subgroup,
                &s.conv2d_backward_weight_c1_subgroup,
            ]);
            all.extend(&s.conv2d_forward_subgroup16);
        }
        all.extend(&self.adam_update_texel);
        if let Some(a) = &self.gemm_adam {
            all.push(&a.pipeline);
            all.extend(&a.pipeline8);
        }
        if let Some(i) = self.iwae.get() {
            all.extend([
                &i.iwae_weights,
                &i.elbo_backward_weighted,
                &i.elbo_backward_weighted_wide,
                &i.iwae_reparam_backward,
            ]);
        }
        all
    }

    /// iwae.wgsl's pipelines, compiled on first use.
    pub fn iwae(&self, gpu: &Gpu) -> Result<&IwaeKernels> {
        if let Some(k) = self.iwae.get() {
            return Ok(k);
        }
        let built = IwaeKernels::new(gpu)?;
        Ok(self.iwae.get_or_init(|| built))
    }
}
