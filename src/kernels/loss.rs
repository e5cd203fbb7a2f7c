//! The reparameterisation (reparam.wgsl), the ELBO's loss and gradient
//! (elbo.wgsl, and its fusion into the last GEMM), the loss reductions and the
//! element-wise activations' uniform.

use super::conv::{conv_variant, ConvVariant, LLVMPIPE_LOOP_TURNS};
use super::{Bind, Dispatch, Kernels};
use crate::gpu::Gpu;
use crate::model::ConvShape;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Elementwise {
    pub m: u32,
    pub cols: u32,
    pub pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Reparam {
    pub m: u32,
    pub latent: u32,
    /// Free bits: nats per latent dimension (loss_reduce; 0: off).
    pub free_bits: f32,
    /// reparam_backward_reduce_partials: the recon partial sums, `elbo_gemm_blocks` times
    /// m (block-major); else 0.
    pub partials: u32,
}

impl Reparam {
    pub fn new(m: usize, latent: usize, free_bits: f32) -> Reparam {
        Reparam { m: m as u32, latent: latent as u32, free_bits, partials: 0 }
    }

    /// For reparam_backward_reduce_partials: each row's recon comes in `blocks` sums,
    /// block-major (`partials[b * m + row]`).
    pub fn with_partials(self, blocks: usize) -> Reparam {
        Reparam { partials: blocks as u32 * self.m, ..self }
    }
}

/// Whether the training step takes loss_reduce and reparam_backward as one dispatch
/// (reparam_backward_reduce, one workgroup) at `m` rows and `latent` dimensions: where each
/// of its 64 invocations has at most 256 texels of d[mu | logvar] to write. That bounds
/// its serial work on a GPU, and keeps it far below llvmpipe's LLVMPIPE_LOOP_TURNS (a
/// texel takes 5 turns, and the loss sums 16 rows a turn).
pub fn reparam_reduce_fused(m: usize, latent: usize) -> bool {
    (2 * latent).div_ceil(4) * m <= 64 * 256
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Elbo {
    pub m: u32,
    pub latent: u32,
    pub pixels: u32,
    pub channels: u32,
    pub x_cp: u32,
    pub o_cp: u32,
    pub o_cols: u32,
    pub halves: u32,
    pub gaussian: u32,
    pub masked: u32,
    /// How the observed values were corrupted (`Observation::code`).
    pub noise_kind: u32,
    pub noise: f32,
}

/// How restoration scores the observed values (elbo.wgsl's `noise_kind` and `noise`):
/// as the decoder's likelihood has them (`Clean`), or under the corruption that made them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Observation {
    Clean,
    /// Gaussian noise of this standard deviation on the decoder's mean (a Gaussian
    /// decoder's variance and σ² add up).
    Gaussian(f32),
    /// Each binary value flipped with this probability (Bernoulli decoders): the value is 1
    /// with probability P + (1 - 2P) mean.
    Flip(f32),
}

impl Observation {
    /// elbo.wgsl's (noise_kind, noise).
    pub fn code(self) -> (u32, f32) {
        match self {
            Observation::Clean => (0, 0.0),
            Observation::Gaussian(sigma) => (1, sigma),
            Observation::Flip(p) => (2, p),
        }
    }
}

impl Elbo {
    /// The loss kernel's parameters for `m` rows, latent `latent`, the model's loss layout,
    /// and whether only observed values count.
    pub fn new(m: usize, latent: usize, lay: &crate::model::LossLayout, masked: bool) -> Elbo {
        Elbo {
            m: m as u32,
            latent: latent as u32,
            pixels: lay.pixels as u32,
            channels: lay.channels as u32,
            x_cp: lay.x_cp as u32,
            o_cp: lay.o_cp as u32,
            o_cols: lay.o_cols as u32,
            halves: lay.halves as u32,
            gaussian: lay.gaussian as u32,
            masked: masked as u32,
            noise_kind: 0,
            noise: 0.0,
        }
    }

    /// These parameters scoring the observed values under `o`.
    pub fn observing(self, o: Observation) -> Elbo {
        let (noise_kind, noise) = o.code();
        Elbo { noise_kind, noise, ..self }
    }
}

/// Whether the fused loss takes its `_wide` variant for `o_cols` output columns a row:
/// on GPUs (`Kernels::wide_reductions`), and on llvmpipe where one invocation's loop over
/// a row (at most 5 turns a texel) would pass LLVMPIPE_LOOP_TURNS, which a row of up to
/// 16384 texels (the texture limit) can. (The GEMMs' loops run over at most one texture
/// side, 16384 texels, and stay within it.)
pub fn elbo_wide(gpu: &Gpu, k: &Kernels, o_cols: usize) -> bool {
    k.wide_reductions || (gpu.is_llvmpipe() && 5 * o_cols.div_ceil(4) + 64 > LLVMPIPE_LOOP_TURNS)
}

/// The fused loss of elbo.wgsl for `m` rows: its `_wide` variant (one workgroup per
/// row) when `wide`, else one invocation per row. `binds` as elbo.wgsl's.
pub fn elbo_dispatch(gpu: &Gpu, k: &Kernels, wide: bool, binds: &[(u32, Bind)], m: usize) -> Dispatch {
    if wide {
        Dispatch::new(gpu, "elbo_forward_backward_wide", &k.elbo_forward_backward_wide, binds, m, 1)
    } else {
        Dispatch::new(gpu, "elbo_forward_backward", &k.elbo_forward_backward, binds, m, 64)
    }
}

/// `Taps` of elbo.wgsl: elbo_forward_backward_taps's geometry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Taps {
    pub width: u32,
    pub out_w: u32,
    pub out_h: u32,
    pub pad: u32,
    pub bias: u32,
    pub pad1: [u32; 3],
}

impl Taps {
    /// The geometry of a one-channel transposed convolution `s` (in its convolution's
    /// direction: the image is its input) whose bias sits at flat float `bias`.
    pub fn new(s: &ConvShape, bias: usize) -> Taps {
        Taps {
            width: s.in_w as u32,
            out_w: s.out_w as u32,
            out_h: s.out_h as u32,
            pad: s.pad as u32,
            bias: bias as u32,
            pad1: [0; 3],
        }
    }
}

/// Whether the loss may sum the decoder's logits from the taps image of its last layer
/// `l` (elbo_forward_backward_taps, in place of conv2d_col2im_c1 and the loss): a
/// Bernoulli decoder whose last layer is a transposed convolution into one channel with
/// a 4x4 kernel and stride 2 that runs as ConvVariant::SplitC1, with one value a texel
/// (`lay`), and (on llvmpipe) a loop over the image's pixels and the latent dimensions
/// within LLVMPIPE_LOOP_TURNS.
pub fn elbo_taps_fits(
    gpu: &Gpu,
    k: &Kernels,
    l: &crate::model::Layer,
    lay: &crate::model::LossLayout,
    latent: usize,
) -> bool {
    let s = match l.op {
        crate::model::Op::Deconv { kernel: 4, stride: 2, .. } => l.conv_shape(),
        _ => return false,
    };
    conv_variant(k, "conv2d_backward_input", &s) == ConvVariant::SplitC1
        && !lay.gaussian
        && lay.channels == 1
        && lay.x_cp == 4
        && lay.o_cp == 4
        && !(gpu.is_llvmpipe() && lay.pixels + latent + 64 > LLVMPIPE_LOOP_TURNS)
}

/// Whether the training step may run the decoder's last layer `l` and the loss as one
/// dispatch (gemm_forward_elbo_subgroup, where the adapter has the subgroup GEMMs): a
/// dense layer without ReLU into a Bernoulli decoder's output whose values line up with
/// the target's (value e at column e of both: `lay`).
pub fn elbo_gemm_fits(l: &crate::model::Layer, lay: &crate::model::LossLayout) -> bool {
    l.op == crate::model::Op::Dense && !l.act.is_some() && !lay.gaussian && lay.halves && lay.x_cp == lay.channels
}

/// gemm_forward_elbo_subgroup's column blocks (workgroups across) for `n` output columns
/// at `lanes` lanes: the recon partial sums it writes a row.
pub fn elbo_gemm_blocks(n: usize, lanes: u32) -> usize {
    n.div_ceil(4 * lanes as usize)
}

/// elbo.wgsl's binding slots.
pub mod elbo_slot {
    /// The `Elbo` uniform.
    pub const P: u32 = 0;
    pub const STEP: u32 = 1;
    /// The decoder's output (logits, or means and raw log-variances).
    pub const DEC_OUT: u32 = 2;
    pub const TARGET_X: u32 = 3;
    pub const MULV: u32 = 4;
    pub const D_OUT: u32 = 5;
    /// Per row (recon, kl).
    pub const IMAGE_LOSS: u32 = 6;
    /// 1 where a value is observed (restoration); the targets themselves elsewhere.
    pub const OBSERVED: u32 = 7;
    /// The `Taps` uniform (elbo_forward_backward_taps).
    pub const TP: u32 = 8;
    pub const TAPS: u32 = 9;
    pub const PARAMS: u32 = 10;
    pub const ALL: &[(&str, u32)] = &[
        ("p", P),
        ("step", STEP),
        ("dec_out", DEC_OUT),
        ("target_x", TARGET_X),
        ("mulv", MULV),
        ("d_out", D_OUT),
        ("image_loss", IMAGE_LOSS),
        ("observed", OBSERVED),
        ("tp", TP),
        ("taps", TAPS),
        ("params", PARAMS),
    ];
}

/// reparam.wgsl's binding slots.
pub mod reparam_slot {
    /// The `Reparam` uniform.
    pub const P: u32 = 0;
    pub const STEP: u32 = 1;
    pub const MULV: u32 = 2;
    pub const DZ: u32 = 3;
    /// z (reparam_forward) or d mulv (the backward kernels).
    pub const OUT: u32 = 4;
    pub const KL_MASK: u32 = 5;
    pub const IMAGE_LOSS: u32 = 6;
    pub const HISTORY: u32 = 7;
    pub const RECON_PARTIALS: u32 = 8;
    pub const ALL: &[(&str, u32)] = &[
        ("p", P),
        ("step", STEP),
        ("mulv", MULV),
        ("dz", DZ),
        ("out", OUT),
        ("kl_mask", KL_MASK),
        ("image_loss", IMAGE_LOSS),
        ("history", HISTORY),
        ("recon_partials", RECON_PARTIALS),
    ];
}

/// activation.wgsl's binding slots.
pub mod activation_slot {
    /// The `Elementwise` uniform.
    pub const P: u32 = 0;
    pub const SRC: u32 = 1;
    pub const GRAD: u32 = 2;
    pub const OUT: u32 = 3;
    pub const ALL: &[(&str, u32)] = &[("p", P), ("src", SRC), ("grad", GRAD), ("out", OUT)];
}

/// iwae.wgsl's uniform `Iwae`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Iwae {
    pub m: u32,
    pub latent: u32,
    /// Rows (draws of z) per image.
    pub k: u32,
    pub pad: u32,
}

/// iwae.wgsl's pipelines: the importance-weighted objective's weights and loss sums, d out
/// weighted per row (one invocation or one workgroup a row, as `elbo_wide` chooses) and
/// d[mu | logvar] with the sampled KL's gradient.
pub struct IwaeKernels {
    pub iwae_weights: super::Kernel,
    pub elbo_backward_weighted: super::Kernel,
    pub elbo_backward_weighted_wide: super::Kernel,
    pub iwae_reparam_backward: super::Kernel,
}

impl IwaeKernels {
    pub fn new(gpu: &Gpu) -> anyhow::Result<IwaeKernels> {
        use super::Kernel;
        let m = super::Module::new(gpu, "iwae.wgsl")?;
        Ok(IwaeKernels {
            iwae_weights: Kernel::new(gpu, &m, "iwae_weights"),
            elbo_backward_weighted: Kernel::new(gpu, &m, "elbo_backward_weighted"),
            elbo_backward_weighted_wide: Kernel::new(gpu, &m, "elbo_backward_weighted_wide"),
            iwae_reparam_backward: Kernel::new(gpu, &m, "iwae_reparam_backward"),
        })
    }
}

/// Whether iwae_weights' loop (one invocation takes images lid, lid + 64, ..., each K
/// draws of L dimensions, three passes) stays within llvmpipe's LLVMPIPE_LOOP_TURNS at
/// `m` rows.
pub fn iwae_fits(gpu: &Gpu, m: usize, k: usize, latent: usize) -> bool {
    let images = (m / k.max(1)).div_ceil(64);
    !gpu.is_llvmpipe() || images * k * (latent + 4) + m.div_ceil(64) + 64 <= LLVMPIPE_LOOP_TURNS
}

/// iwae.wgsl's own binding slots (elbo.wgsl's, `elbo_slot`, besides).
pub mod iwae_slot {
    /// The `Iwae` uniform.
    pub const IW: u32 = 11;
    /// Per row, its weight c.
    pub const ROW_SCALE: u32 = 12;
    pub const HISTORY: u32 = 13;
    pub const DZ: u32 = 14;
    pub const D_MULV: u32 = 15;
    pub const ALL: &[(&str, u32)] =
        &[("iw", IW), ("row_scale", ROW_SCALE), ("history", HISTORY), ("dz", DZ), ("d_mulv", D_MULV)];
}
