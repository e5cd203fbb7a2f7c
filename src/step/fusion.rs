//! The fusions: where two or more dispatches of a step become one. Each rule is
//! decided once per model, here, from the adapter's kernels, the shapes and the
//! user's `--gemm` choice; the step's lists then ask `Fusions` and never test the
//! conditions themselves.
//!
//! - z drawn in the heads' GEMM (gemm_forward_reparam[_pairs]_subgroup) in place of
//!   gemm_forward and reparam_forward;
//! - the Bernoulli loss in the last dense layer's GEMM epilogue (gemm_forward_elbo_subgroup)
//!   in place of gemm_forward and elbo_forward_backward;
//! - the loss summing the logits from a one-channel transposed convolution's taps image
//!   (elbo_forward_backward_taps) in place of conv2d_col2im_c1 and the loss;
//! - the loss sums reduced in reparam_backward_reduce in place of loss_reduce;
//! - Adam in the weight-gradient GEMMs (gemm_backward_weight_adam_subgroup) in place of
//!   the flat gradient and adam_update.

use super::layers::{gemm_params, label};
use super::Builder;
use crate::gpu::{Gpu, Matrix};
use crate::kernels::gemm::GemmPreference;
use crate::kernels::{self, gemm_fused_slot, gemm_slot, Bind, Dispatch, Kernels, MomentStore, SubgroupKernels};
use crate::model::{Activation, Layer, Layout, LossLayout, Op};
use Bind::{Buffer as B, Texture as T};

/// Which gemm_fused_subgroup.wgsl kernel draws z in the heads' GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadsReparam {
    /// gemm_forward_reparam_subgroup: the heads' 2L columns fit one workgroup (4 lanes columns).
    OneGroup,
    /// gemm_forward_reparam_pairs_subgroup: workgroups of 2 lanes latent dimensions, for
    /// wider heads where L is a multiple of 4.
    Pairs,
}

/// The fusions one model's step takes on this adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fusions {
    pub heads_reparam: Option<HeadsReparam>,
    /// The training step reduces the loss sums in reparam_backward_reduce (one
    /// workgroup holds the batch: `kernels::reparam_reduce_fused`).
    pub reduce_in_backward: bool,
    /// The training step's last dense layer computes the loss: the column blocks of its
    /// recon partial sums (`kernels::elbo_gemm_blocks`).
    pub loss_in_gemm: Option<usize>,
    /// The training step's loss reads the last layer's taps image (`kernels::elbo_taps_fits`).
    pub loss_from_taps: bool,
    /// Adam runs in the weight-gradient GEMMs: no flat gradient, no adam_update.
    pub adam: bool,
}

/// What decides the fusions besides the adapter's kernels.
pub struct FusionInputs<'a> {
    pub layout: &'a Layout,
    pub loss: &'a LossLayout,
    pub latent: usize,
    /// Rows of the step's activations.
    pub m: usize,
    pub gemm: GemmPreference,
    /// `Hyper::fuse_adam`.
    pub fuse_adam: bool,
    /// Where the trainer keeps Adam's moments.
    pub moments: MomentStore,
}

impl Fusions {
    pub fn decide(gpu: &Gpu, k: &Kernels, f: &FusionInputs) -> Fusions {
        // the fused kernels are subgroup GEMMs: only where they run and --gemm allows them
        let subgroup =
            k.subgroup.as_ref().filter(|_| matches!(f.gemm, GemmPreference::Auto | GemmPreference::Subgroup));
        let heads_n = f.layout.heads.gemm_nk().0;
        let heads_reparam = subgroup.and_then(|s| {
            if heads_n <= 4 * s.lanes as usize {
                Some(HeadsReparam::OneGroup)
            } else if heads_n.is_multiple_of(8) {
                Some(HeadsReparam::Pairs)
            } else {
                None
            }
        });
        let reduce_in_backward = kernels::reparam_reduce_fused(f.m, f.latent);
        let last = f.layout.decoder.last().expect("a decoder has layers");
        // its partial sums are added by reparam_backward_reduce_partials
        let loss_in_gemm = subgroup
            .filter(|_| reduce_in_backward && kernels::elbo_gemm_fits(last, f.loss))
            .map(|s| kernels::elbo_gemm_blocks(last.gemm_nk().0, s.lanes));
        let loss_from_taps = kernels::elbo_taps_fits(gpu, k, last, f.loss, f.latent);
        // every parameter must belong to a dense layer, and the kernel must keep the
        // moments where the trainer does
        let adam = matches!(&k.gemm_adam, Some(ga) if ga.moments == f.moments)
            && f.fuse_adam
            && matches!(f.gemm, GemmPreference::Auto | GemmPreference::Subgroup)
            && f.layout.layers().iter().all(|l| l.op == Op::Dense);
        Fusions { heads_reparam, reduce_in_backward, loss_in_gemm, loss_from_taps, adam }
    }
}

/// gemm_backward_weight_adam_subgroup, and what it binds besides the GEMM's operands.
#[derive(Clone, Copy)]
pub struct FusedAdam<'a> {
    pub kernel: &'a kernels::GemmAdam,
    pub adam: &'a wgpu::Buffer,
    pub step: &'a wgpu::Buffer,
    /// In the kernel's storage (`kernels::GemmAdam::moments`).
    pub moments: [Bind<'a>; 2],
}

impl Builder<'_> {
    /// A gemm_fused_subgroup.wgsl kernel `entry` (`pipeline` picks it) over layer `l`'s
    /// forward GEMM: x . w^T + b with gemm_subgroup.wgsl's bindings (its output `y`),
    /// the fusion's own bindings `extra`, and `cols` workgroups across by 32-row blocks
    /// down. Taken whatever the layer's own forward GEMM's timing chose: the dispatch it
    /// saves costs more than the variants' difference at these sizes.
    #[allow(clippy::too_many_arguments)]
    fn fused_forward(
        &mut self,
        l: &Layer,
        (x, w, y): (&Matrix, &Matrix, &Matrix),
        entry: &str,
        pipeline: fn(&SubgroupKernels) -> &kernels::Kernel,
        extra: &[(u32, Bind)],
        cols: impl Fn(u32) -> u32,
    ) -> Dispatch {
        use gemm_slot::*;
        let (n, k) = l.gemm_nk();
        let s = self.k.subgroup.as_ref().expect("Fusions takes the fused GEMMs only where the subgroup GEMMs run");
        let u = self.uniform(&gemm_params(l, self.m, Activation::Identity));
        let mut binds =
            vec![(P, B(&u)), (LHS, T(&x.view)), (RHS, T(&w.view)), (OUT, T(&y.view)), (PARAMS, B(self.params))];
        binds.extend_from_slice(extra);
        let groups = [cols(s.lanes), self.m.div_ceil(32) as u32, 1];
        let d = Dispatch::with_groups(self.gpu, label(l, entry), pipeline(s), &binds, groups);
        d.with_gemm_cost(self.m, n, k)
    }

    /// The encoder's heads and reparam_forward in one dispatch: mulv = [mu | logvar] of
    /// x, and z drawn from it.
    #[allow(clippy::too_many_arguments)]
    pub fn heads_reparam(
        &mut self,
        how: HeadsReparam,
        l: &Layer,
        x: &Matrix,
        w: &Matrix,
        mulv: &Matrix,
        z: &Matrix,
        step: &wgpu::Buffer,
    ) -> Dispatch {
        use gemm_fused_slot::{STEP, Z_OUT};
        let extra = [(STEP, B(step)), (Z_OUT, T(&z.view))];
        let n = l.gemm_nk().0 as u32;
        match how {
            HeadsReparam::OneGroup => {
                let pipeline: fn(&SubgroupKernels) -> &kernels::Kernel = |s| &s.gemm_forward_reparam_subgroup;
                self.fused_forward(l, (x, w, mulv), "gemm_forward_reparam", pipeline, &extra, |_| 1)
            }
            HeadsReparam::Pairs => {
                let pipeline: fn(&SubgroupKernels) -> &kernels::Kernel = |s| &s.gemm_forward_reparam_pairs_subgroup;
                let cols = |lanes: u32| (n / 2).div_ceil(2 * lanes);
                self.fused_forward(l, (x, w, mulv), "gemm_forward_reparam", pipeline, &extra, cols)
            }
        }
    }

    /// The decoder's last dense layer and the Bernoulli loss in one dispatch: d out of the
    /// layer's input x against the target, and `kernels::elbo_gemm_blocks` recon partial
    /// sums a row into `partials`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_elbo(
        &mut self,
        l: &Layer,
        x: &Matrix,
        w: &Matrix,
        d_out: &Matrix,
        target: &Matrix,
        partials: &wgpu::Buffer,
        step: &wgpu::Buffer,
    ) -> Dispatch {
        use gemm_fused_slot::{RECON_PARTIALS, STEP, TARGET_X};
        let n = l.gemm_nk().0;
        let extra = [(STEP, B(step)), (TARGET_X, T(&target.view)), (RECON_PARTIALS, B(partials))];
        let blocks = |lanes| kernels::elbo_gemm_blocks(n, lanes) as u32;
        let pipeline: fn(&SubgroupKernels) -> &kernels::Kernel = |s| &s.gemm_forward_elbo_subgroup;
        self.fused_forward(l, (x, w, d_out), "gemm_forward_elbo", pipeline, &extra, blocks)
    }
}
