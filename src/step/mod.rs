//! The step builder: a model's layers become dispatch lists.
//!
//! [`Builder`] makes the dispatches of one model at batch rows m. Each layer kind
//! (dense, convolution, transposed convolution) contributes its forward and
//! backward passes ([`layers`]); the stages between layers (the batch gather, the
//! reparameterisation, the loss and its reductions, Adam, a classifier's loss) are
//! made here. [`fusion`] holds the rules that merge dispatches, each in one place;
//! [`chain`] walks a run of layers forward and backward; [`vae`] composes a VAE's
//! lists (training step, evaluation, decoding, encoding, restoration) from its two
//! chains. The trainer, the probe and the fine-tuner all build through it.

pub mod chain;
pub mod fusion;
pub mod history;
pub mod layers;
pub mod net;
pub mod tensors;
pub mod vae;

pub use chain::Chain;
pub use fusion::{FusedAdam, Fusions, HeadsReparam};
pub use history::LossSums;
pub use net::{EvalRows, ForwardOptions, Net};
pub use tensors::VaeTensors;
pub use vae::VaeLists;

use crate::gpu::{Gpu, Matrix};
use crate::kernels::gemm::Choice;
use crate::kernels::{self, adam_slot, classify_slot, gather_slot, Bind, Dispatch, Kernels, MomentStore};
use Bind::{Buffer as B, Texture as T};

/// Builds dispatches for one model at batch rows m. Every uniform it makes is kept in
/// `keep`, which must outlive the dispatches.
pub struct Builder<'a> {
    pub gpu: &'a Gpu,
    pub k: &'a Kernels,
    /// The GEMM variant of each dense layer's passes.
    pub choice: std::cell::RefCell<Choice>,
    /// Where set, a GEMM shape `choice` lacks is chosen when a pass first asks for it
    /// (`gemm::choose`, timed unless the preference forces a variant): only the GEMMs
    /// the lists run as GEMMs are timed, none that a fusion replaces.
    pub choose: Option<crate::kernels::gemm::GemmPreference>,
    /// Rows of every activation: images times Monte-Carlo samples, a multiple of 4.
    pub m: usize,
    /// The flat parameters and gradient (`model::Layout`); no gradient for a forward-only
    /// model, whose lists have no backward-weight passes.
    pub params: &'a wgpu::Buffer,
    pub grads: Option<&'a wgpu::Buffer>,
    pub keep: Vec<wgpu::Buffer>,
    /// When set, dense layers' weight gradients go straight into Adam (`Fusions::adam`).
    pub fused_adam: Option<FusedAdam<'a>>,
    /// The taps image of the last convolution pass that made one (ConvVariant::SplitC1).
    pub taps: Option<Matrix>,
}

impl<'a> Builder<'a> {
    pub fn new(
        gpu: &'a Gpu,
        k: &'a Kernels,
        choice: Choice,
        m: usize,
        params: &'a wgpu::Buffer,
        grads: Option<&'a wgpu::Buffer>,
    ) -> Builder<'a> {
        let choice = std::cell::RefCell::new(choice);
        Builder { gpu, k, choice, choose: None, m, params, grads, keep: Vec::new(), fused_adam: None, taps: None }
    }

    /// The flat gradient, which only the training lists bind.
    pub fn grads(&self) -> &'a wgpu::Buffer {
        self.grads.expect("a forward-only model builds no pass that writes gradients")
    }

    /// A uniform buffer holding `v`, kept alive with the builder's dispatches.
    pub fn uniform<T: bytemuck::Pod>(&mut self, v: &T) -> wgpu::Buffer {
        let u = self.gpu.uniform("params", v);
        self.keep.push(u.clone());
        u
    }

    /// gather_batch (or its one-channel variants): the images `order` names, from
    /// `data`, into x (m, g's columns), binarized where `g` says.
    pub fn gather(
        &mut self,
        g: &kernels::Gather,
        step: &wgpu::Buffer,
        data: &wgpu::Buffer,
        order: &wgpu::Buffer,
        x: &Matrix,
    ) -> Dispatch {
        use gather_slot::*;
        let u = self.uniform(g);
        let binds = [(P, B(&u)), (STEP, B(step)), (DATA, B(data)), (ORDER, B(order)), (OUT, T(&x.view))];
        let cols = x.cols;
        kernels::gather_dispatch(self.gpu, self.k, g, &binds).with_elementwise_cost(
            format!("m={} D={cols}", self.m),
            self.m * cols,
            1.0,
            5.0,
        )
    }

    /// Adam over the flat parameters from the flat gradient, its moments in `moments`
    /// (adam_update, or adam_update_texel for moments in textures).
    pub fn adam(
        &mut self,
        adam: &kernels::Adam,
        step: &wgpu::Buffer,
        store: MomentStore,
        moments: [Bind; 2],
    ) -> Dispatch {
        use adam_slot::*;
        let u = self.uniform(adam);
        let (entry, pipeline) = match (store, &self.k.adam_update_texel) {
            (MomentStore::Texels, Some(p)) => ("adam_update_texel", p),
            (MomentStore::Buffers, _) => ("adam_update", &self.k.adam_update),
            (MomentStore::Texels, None) => unreachable!("texel moments come with adam_update_texel"),
        };
        let binds = [
            (P, B(&u)),
            (STEP, B(step)),
            (PARAMS, B(self.params)),
            (GRADS, B(self.grads())),
            (MOMENT1, moments[0]),
            (MOMENT2, moments[1]),
        ];
        let len = adam.count as usize * 4;
        Dispatch::new(self.gpu, entry, pipeline, &binds, len / 4, 64).with_elementwise_cost(
            format!("params={len}"),
            len,
            10.0,
            28.0,
        )
    }

    /// softmax_cross_entropy: per row the loss of `logits` (m, classes) against
    /// `labels` into `row_loss`, and d logits.
    pub fn softmax_cross_entropy(
        &mut self,
        classes: usize,
        step: &wgpu::Buffer,
        logits: &Matrix,
        labels: &wgpu::Buffer,
        d_logits: &Matrix,
        row_loss: &wgpu::Buffer,
    ) -> Dispatch {
        use classify_slot::*;
        let u = self.uniform(&kernels::Classify { m: self.m as u32, classes: classes as u32, pad: [0; 2] });
        let binds = [
            (P, B(&u)),
            (STEP, B(step)),
            (LOGITS, T(&logits.view)),
            (LABELS, B(labels)),
            (D_LOGITS, T(&d_logits.view)),
            (ROW_LOSS, B(row_loss)),
        ];
        Dispatch::new(self.gpu, "softmax_cross_entropy", &self.k.softmax_cross_entropy, &binds, self.m, 64)
            .with_elementwise_cost(format!("m={} classes={classes}", self.m), self.m * classes, 8.0, 12.0)
    }

    /// sigmoid_forward: `out`'s sigmoid into `probs` (the means of both likelihoods).
    pub fn sigmoid(&mut self, out: &Matrix, probs: &Matrix) -> Dispatch {
        use kernels::activation_slot::*;
        let u = self.uniform(&kernels::Elementwise { m: self.m as u32, cols: out.cols as u32, pad: [0; 2] });
        let binds = [(P, B(&u)), (SRC, T(&out.view)), (OUT, T(&probs.view))];
        Dispatch::new(self.gpu, "sigmoid_forward", &self.k.sigmoid_forward, &binds, self.m * out.cols.div_ceil(4), 64)
    }
}
