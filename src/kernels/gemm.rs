//! The GEMM kernels (gemm.wgsl, gemm_subgroup.wgsl): their uniform, their variants
//! and dispatch shapes, and their binding slots. `choice` picks a variant per shape.

pub use super::choice::{choose, time_variant, variants_timed, Choice, Decision};

use super::{Bind, Dispatch, Kernels};
use crate::gpu::Gpu;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Gemm {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub act: u32,
    pub bias: u32,
    /// `grad_w`, `stride` and `grad_b` are multiples of 4 floats and the bias region is
    /// padded to 4: backward_weight stores whole texels (the model's layout aligns to 64).
    pub grad_w: u32,
    pub stride: u32,
    pub grad_b: u32,
}

/// Which GEMM kernels to use: measured (auto), or forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GemmPreference {
    /// Time every variant the adapter supports on the model's shapes and keep the fastest.
    Auto,
    /// gemm.wgsl: 4x4 output blocks from texel fetches; runs everywhere.
    Texel,
    /// gemm_subgroup.wgsl: operands shared by subgroupBroadcast; needs subgroups of 8 or 16 lanes.
    Subgroup,
    /// gemm.wgsl's `_wide` kernels: 16 lanes share each block's inner dimension; runs everywhere.
    Wide,
    /// gemm.wgsl's `_tiled` kernels: 64x64 output tiles staged through workgroup memory, for
    /// GPUs; runs everywhere.
    Tiled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Texel,
    Subgroup,
    Wide,
    Tiled,
}

impl Variant {
    pub const ALL: [Variant; 4] = [Variant::Texel, Variant::Subgroup, Variant::Wide, Variant::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Texel => "texel",
            Variant::Subgroup => "subgroup",
            Variant::Wide => "wide",
            Variant::Tiled => "tiled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Y (m, n) = act(X (m, k) W (n, k)^T + b)
    Forward,
    /// dX (m, k) = dY (m, n) W (n, k), masked
    BackwardInput,
    /// dW (n, k) = dY (m, n)^T X (m, k), db
    BackwardWeight,
}

impl Pass {
    pub const ALL: [Pass; 3] = [Pass::Forward, Pass::BackwardInput, Pass::BackwardWeight];

    pub fn entry(self) -> &'static str {
        match self {
            Pass::Forward => "gemm_forward",
            Pass::BackwardInput => "gemm_backward_input",
            Pass::BackwardWeight => "gemm_backward_weight",
        }
    }
}

/// The variants this device can run (the tests force each of them).
pub fn available(k: &Kernels) -> Vec<Variant> {
    let mut v = vec![Variant::Texel, Variant::Wide];
    if k.subgroup.is_some() {
        v.push(Variant::Subgroup);
    }
    v.push(Variant::Tiled);
    v
}

/// The variants `choose` times: those available, less the tiled and the wide kernels on
/// CPU adapters, where workgroup memory and barriers are slow and they never win (the
/// wide ones took 17-26x the best variant's time on lavapipe over a model's shapes;
/// docs/PERFORMANCE.md), as the loss and convolutions keep their `_wide` kernels off them
/// (`wide_reductions`). Those are then never compiled there (`LazyPipeline`).
pub fn timed(gpu: &Gpu, k: &Kernels) -> Vec<Variant> {
    let cpu = gpu.info.device_type == wgpu::DeviceType::Cpu;
    available(k).into_iter().filter(|&v| !(cpu && matches!(v, Variant::Tiled | Variant::Wide))).collect()
}

/// gemm_adam_subgroup.wgsl's weight gradient with Adam in its epilogue (`super::GemmAdam`),
/// on gemm_backward_weight_subgroup's grid; `binds` as that file's, the moments (10, 11)
/// in `ga.moments`' storage.
pub fn dispatch_backward_weight_adam(
    gpu: &Gpu,
    ga: &super::GemmAdam,
    label: impl Into<std::borrow::Cow<'static, str>>,
    binds: &[(u32, Bind)],
    m: usize,
    n: usize,
    kk: usize,
) -> Dispatch {
    // at most 8 k-texels: the 8-lane build, where there is one beside a 16-lane one
    let (pipeline, lanes) = match &ga.pipeline8 {
        Some(p8) if kk.div_ceil(4) <= 8 => (p8, 8),
        _ => (&ga.pipeline, ga.lanes as usize),
    };
    Dispatch::with_groups(gpu, label, pipeline, binds, backward_weight_subgroup_groups(n, kk, lanes))
        .with_gemm_cost(n, kk, m)
}

/// gemm_backward_weight_subgroup's grid: `lanes` k-texels by 16 outputs per workgroup.
fn backward_weight_subgroup_groups(n: usize, kk: usize, lanes: usize) -> [u32; 3] {
    [kk.div_ceil(4).div_ceil(lanes).max(1) as u32, n.div_ceil(16).max(1) as u32, 1]
}

/// A GEMM dispatch of `pass` in `variant` for batch rows m (a multiple of 4), n outputs,
/// k inputs; `binds` follow gemm.wgsl's layout.
#[allow(clippy::too_many_arguments)]
pub fn dispatch(
    gpu: &Gpu,
    k: &Kernels,
    pass: Pass,
    variant: Variant,
    label: impl Into<std::borrow::Cow<'static, str>>,
    binds: &[(u32, Bind)],
    m: usize,
    n: usize,
    kk: usize,
) -> Dispatch {
    let g = |x: usize| x.max(1) as u32;
    let d = match (variant, &k.subgroup) {
        (Variant::Subgroup, Some(s)) => match pass {
            Pass::Forward => Dispatch::with_groups(
                gpu,
                label,
                &s.gemm_forward_subgroup,
                binds,
                [g(n.div_ceil(4 * s.lanes as usize)), g(m.div_ceil(32)), 1],
            ),
            Pass::BackwardInput => Dispatch::with_groups(
                gpu,
                label,
                &s.gemm_backward_input_subgroup,
                binds,
                [g(kk.div_ceil(4).div_ceil(s.lanes as usize)), g(m.div_ceil(32)), 1],
            ),
            Pass::BackwardWeight => Dispatch::with_groups(
                gpu,
                label,
                &s.gemm_backward_weight_subgroup,
                binds,
                backward_weight_subgroup_groups(n, kk, s.lanes as usize),
            ),
        },
        // four 4x4 blocks per workgroup of 64 (gemm.wgsl's SPLIT = 16 lanes per block)
        (Variant::Wide, _) => match pass {
            Pass::Forward => Dispatch::new(gpu, label, &k.gemm_forward_wide, binds, (m / 4) * n.div_ceil(4), 4),
            Pass::BackwardInput => {
                Dispatch::new(gpu, label, &k.gemm_backward_input_wide, binds, (m / 4) * kk.div_ceil(4), 4)
            }
            Pass::BackwardWeight => {
                Dispatch::new(gpu, label, &k.gemm_backward_weight_wide, binds, n.div_ceil(4) * kk.div_ceil(4), 4)
            }
        },
        // a 64x64 output tile per workgroup: texel columns in x, rows in y
        (Variant::Tiled, _) => {
            let (pipeline, rows, cols) = match pass {
                Pass::Forward => (&k.gemm_forward_tiled, m, n),
                Pass::BackwardInput => (&k.gemm_backward_input_tiled, m, kk),
                Pass::BackwardWeight => (&k.gemm_backward_weight_tiled, n, kk),
            };
            Dispatch::with_groups(gpu, label, pipeline, binds, [g(cols.div_ceil(64)), g(rows.div_ceil(64)), 1])
        }
        _ => match pass {
            Pass::Forward => Dispatch::new(gpu, label, &k.gemm_forward, binds, (m / 4) * n.div_ceil(4), 64),
            Pass::BackwardInput => {
                Dispatch::new(gpu, label, &k.gemm_backward_input, binds, (m / 4) * kk.div_ceil(4), 64)
            }
            Pass::BackwardWeight => {
                Dispatch::new(gpu, label, &k.gemm_backward_weight, binds, n.div_ceil(4) * kk.div_ceil(4), 64)
            }
        },
    };
    match pass {
        Pass::Forward => d.with_gemm_cost(m, n, kk),
        Pass::BackwardInput => d.with_gemm_cost(m, kk, n),
        Pass::BackwardWeight => d.with_gemm_cost(n, kk, m),
    }
}

/// gemm.wgsl's and gemm_subgroup.wgsl's binding slots.
pub mod gemm_slot {
    /// The `Gemm` uniform.
    pub const P: u32 = 0;
    /// The left operand: x in the forward pass, d out in the backward passes.
    pub const LHS: u32 = 1;
    /// The right operand: W in the forward and backward-input passes, x in backward-weight.
    pub const RHS: u32 = 2;
    /// The ReLU mask of backward-input (its layer's input).
    pub const MASK: u32 = 3;
    pub const OUT: u32 = 4;
    /// The flat parameters (the forward pass reads the bias there).
    pub const PARAMS: u32 = 5;
    /// The flat gradient (backward-weight writes dW and db there).
    pub const GRADS: u32 = 6;
    pub const ALL: &[(&str, u32)] =
        &[("p", P), ("lhs", LHS), ("rhs", RHS), ("mask", MASK), ("out", OUT), ("params", PARAMS), ("grads", GRADS)];
}

/// gemm_fused_subgroup.wgsl's slots beside `gemm_slot`'s.
pub mod gemm_fused_slot {
    pub const STEP: u32 = 7;
    /// z, drawn from the heads' output (gemm_forward_reparam).
    pub const Z_OUT: u32 = 8;
    /// The images the loss is taken against (gemm_forward_elbo).
    pub const TARGET_X: u32 = 9;
    /// Per row and column block, the recon partial sums (gemm_forward_elbo).
    pub const RECON_PARTIALS: u32 = 10;
    pub const ALL: &[(&str, u32)] =
        &[("step", STEP), ("z_out", Z_OUT), ("target_x", TARGET_X), ("recon_partials", RECON_PARTIALS)];
}

/// gemm_adam_subgroup.wgsl's slots beside `gemm_slot`'s P, LHS and RHS.
pub mod gemm_adam_slot {
    /// The `Adam` uniform.
    pub const ADAM: u32 = 7;
    pub const STEP: u32 = 8;
    pub const PARAMS_RW: u32 = 9;
    pub const MOMENT1: u32 = 10;
    pub const MOMENT2: u32 = 11;
    /// The layer's weight texture, updated in place.
    pub const WEIGHTS: u32 = 12;
    pub const ALL: &[(&str, u32)] = &[
        ("adam", ADAM),
        ("step", STEP),
        ("params_rw", PARAMS_RW),
        ("moment1", MOMENT1),
        ("moment2", MOMENT2),
        ("weights", WEIGHTS),
    ];
}
