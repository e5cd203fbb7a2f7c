//! The host scheduler: owns every buffer, texture and prebuilt dispatch list
//! of a model, and replays them: one encoder and one submit per training step,
//! no host read-back except the loss history at logging intervals.
//!
//! The step, as dispatched (batch m rows, latent L):
//!   gather_batch           order, dataset        -> x
//!   encoder layers         x -> ... -> h          (gemm_forward / conv2d_forward, bias and ReLU fused)
//!   gemm_forward heads     h                     -> mulv (m, 2L) = [mu | logvar]
//!   reparam_forward        mulv, eps             -> z (m, L)
//!     (one dispatch, gemm_forward_reparam_subgroup, where the adapter has the subgroup
//!     GEMMs, --gemm allows them and 2L fits one workgroup: Builder::heads_reparam)
//!   decoder layers         z -> ... -> out        (gemm_forward / transposed convolutions)
//!   elbo_forward_backward  out, x, mulv          -> d out, image_loss (m)
//!     (elbo_forward_backward_taps where the last layer is a one-channel transposed
//!     convolution run as taps and col2im: it sums the logits from the taps image
//!     itself, and the col2im dispatch is left out; kernels::elbo_taps_fits)
//!     (gemm_forward_elbo_subgroup where the last layer is dense into a Bernoulli
//!     output and the subgroup GEMMs run: the layer's GEMM computes the loss in its
//!     epilogue and stores d out in place of the logits, with recon partial sums per
//!     column block in place of image_loss; kernels::elbo_gemm_fits)
//!   decoder layers, last to first: backward_input -> d input; backward_weight -> grads (flat)
//!   reparam_backward_reduce  image_loss, mulv    -> `history[slot]`, free-bits mask
//!                          dz, mulv, mask        -> d mulv
//!     (reparam_backward_reduce_partials after gemm_forward_elbo_subgroup: recon from
//!     the partial sums, KL from mulv)
//!     (one workgroup; where the batch is too large for one, loss_reduce runs after the
//!     loss and reparam_backward here: kernels::reparam_reduce_fused)
//!   heads, encoder layers, last to first: the same
//!   adam_update(_texel)    grads                 -> params, moments (flat, or texels)
//!   then copies of the updated weights into the textures the kernels read.
//! Where every layer is dense and the adapter has gemm_adam_subgroup.wgsl (CPU
//! adapters), each backward_weight updates its layer's parameters and moments
//! itself and there is no adam dispatch and no flat gradient.

use crate::data::Dataset;
use crate::gemm::{self, GemmPreference, Pass};
use crate::gpu::{Gpu, Matrix};
use crate::kernels::{self, Bind, Dispatch, Kernels, Step};
use crate::model::{Layer, Model, ModelKind, Op};
use anyhow::{bail, Result};

pub const ADAM_BETA1: f32 = 0.9;
pub const ADAM_BETA2: f32 = 0.999;
pub const ADAM_EPS: f32 = 1e-8;

/// Optimisation settings that the kernels see.
#[derive(Clone, Debug)]
pub struct Hyper {
    pub lr: f32,
    /// Weight of the KL term (changed per step during a warm-up).
    pub beta: f32,
    pub seed: u32,
    pub binarize: bool,
    /// Which GEMM kernels to use (measured on this adapter by default).
    pub gemm: GemmPreference,
    /// Monte-Carlo samples of z per image.
    pub samples: usize,
    /// Free bits: per-dimension KL floor in nats (0: off).
    pub free_bits: f32,
    /// GEMM variants decided earlier (a resumed run replays its first run's choice).
    pub gemm_fixed: Option<gemm::Choice>,
    /// Fuse Adam into the weight-gradient GEMMs where the adapter has the kernel
    /// (gemm_adam_subgroup.wgsl: CPU adapters) and every layer is dense (default: on).
    /// Fused, the flat gradient is not kept (`Trainer::read_grads` fails). Results are
    /// the same either way.
    pub fuse_adam: bool,
}

impl Hyper {
    pub fn new(lr: f32, seed: u32) -> Hyper {
        Hyper {
            lr,
            beta: 1.0,
            seed,
            binarize: false,
            gemm: GemmPreference::Auto,
            samples: 1,
            free_bits: 0.0,
            gemm_fixed: None,
            fuse_adam: true,
        }
    }
}

/// Floats per row of Adam's moment textures (adam_texel.wgsl: 1024 texels).
pub const ADAM_TEXEL_COLS: usize = 4096;

/// Adam's moments on the device: storage buffers laid out like the parameters, or,
/// where rgba32float binds read_write and they pay (`Gpu::texel_moments_pay`), textures
/// of `ADAM_TEXEL_COLS` columns holding the same flat vector row by row (adam_texel.wgsl).
enum Moments {
    Buffers(wgpu::Buffer, wgpu::Buffer),
    Texels(Box<[Matrix; 2]>),
}

impl Moments {
    fn store(&self) -> kernels::MomentStore {
        match self {
            Moments::Buffers(..) => kernels::MomentStore::Buffers,
            Moments::Texels(_) => kernels::MomentStore::Texels,
        }
    }

    /// The first and second moment, bound as the kernels take them.
    fn binds(&self) -> [Bind<'_>; 2] {
        match self {
            Moments::Buffers(m1, m2) => [Bind::Buffer(m1), Bind::Buffer(m2)],
            Moments::Texels(m) => [Bind::Texture(&m[0].view), Bind::Texture(&m[1].view)],
        }
    }
}

/// The optimiser's state: parameters, Adam's moments, steps taken and the random-stream counter.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    pub params: Vec<f32>,
    pub moment1: Vec<f32>,
    pub moment2: Vec<f32>,
    pub steps_done: u32,
    pub counter: u32,
}

/// One evaluated batch, per row (images times samples).
pub struct EvalRows {
    pub recon: Vec<f32>,
    pub kl: Vec<f32>,
    pub mu: Vec<f32>,
    pub logvar: Vec<f32>,
    pub z: Vec<f32>,
}

/// `sums` continued with history slots `v` (recon sum, kl sum, rows, 0 each).
fn add_slots(sums: LossSums, v: &[f32]) -> LossSums {
    let mut s = sums;
    for slot in v.chunks(4) {
        s.recon += slot[0] as f64;
        s.kl += slot[1] as f64;
        s.images += slot[2] as f64;
    }
    s
}

/// A loss-history read under way (`Trainer::request_history`): slots up to `n`, to be
/// added to `base`.
struct PendingHistory {
    read: crate::gpu::Readback,
    n: usize,
    base: LossSums,
}

/// Sums over a pass of the data, in nats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSums {
    pub recon: f64,
    pub kl: f64,
    /// Rows summed: images times Monte-Carlo samples.
    pub images: f64,
}

impl LossSums {
    /// -ELBO per image with the given KL weight.
    pub fn loss(&self, beta: f64) -> f64 {
        (self.recon + beta * self.kl) / self.images.max(1.0)
    }
    pub fn recon_per_image(&self) -> f64 {
        self.recon / self.images.max(1.0)
    }
    pub fn kl_per_image(&self) -> f64 {
        self.kl / self.images.max(1.0)
    }
}

pub struct Trainer<'g> {
    gpu: &'g Gpu,
    pub model: Model,
    pub hyper: Hyper,
    /// The GEMM variant of each dense layer and pass, measured fastest on this adapter (or forced).
    pub gemm_choice: gemm::Choice,
    /// Images per batch; the textures hold batch * samples rows.
    pub batch: usize,
    /// Adam steps taken.
    pub steps_done: u32,
    /// Random-stream counter, advanced by every batch (training or evaluation).
    counter: u32,
    history_slots: usize,

    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    moments: Moments,
    /// Adam runs inside the weight-gradient GEMMs (no flat gradient is kept).
    adam_fused: bool,
    step_uniform: wgpu::Buffer,
    history: wgpu::Buffer,
    pending_history: std::sync::Mutex<Option<PendingHistory>>,
    train_order: wgpu::Buffer,
    train_len: usize,
    test_len: usize,

    /// Per layer (encoder, heads, decoder): its weight texture.
    weights: Vec<Matrix>,
    pub x: Matrix,
    /// [mu | logvar] of the last batch (rows, 2L).
    pub mulv: Matrix,
    /// Per row (recon, kl) of the last batch.
    image_loss: wgpu::Buffer,
    pub z: Matrix,
    /// The decoder's output (logits, or means and raw log-variances).
    pub out: Matrix,
    /// The sigmoid of the decoder's output: the means of both likelihoods.
    pub probs: Matrix,

    train_step: Vec<Dispatch>,
    eval_step: Vec<Dispatch>,
    decode: Vec<Dispatch>,
    /// x -> [mu | logvar]
    encode: Vec<Dispatch>,
    /// z -> decoded, -log p(x_observed | z) and d/dz of it
    map_step: Vec<Dispatch>,
    /// 1 where x is observed (restoration)
    pub observed: Matrix,
    dz: Matrix,
    // kept alive for the bind groups
    _keep: Vec<wgpu::Buffer>,
    _mats: Vec<Matrix>,
}

fn gemm_params(l: &Layer, m: usize, relu: bool) -> kernels::Gemm {
    let (n, k) = l.gemm_nk();
    kernels::Gemm {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        act: relu as u32,
        bias: l.b as u32,
        grad_w: l.w as u32,
        stride: l.stride as u32,
        grad_b: l.b as u32,
    }
}

fn conv_params(l: &Layer, m: usize, epilogue: u32, bias_of: u32) -> kernels::Conv {
    kernels::Conv {
        bias: l.b as u32,
        grad_w: l.w as u32,
        w_stride: l.stride as u32,
        grad_b: l.b as u32,
        bias_of,
        ..kernels::Conv::new(&l.conv_shape(), m, epilogue)
    }
}

/// Builds dispatches for one model at batch rows m.
pub(crate) struct Builder<'a> {
    pub(crate) gpu: &'a Gpu,
    pub(crate) k: &'a Kernels,
    pub(crate) choice: &'a gemm::Choice,
    pub(crate) m: usize,
    pub(crate) params: &'a wgpu::Buffer,
    pub(crate) grads: &'a wgpu::Buffer,
    pub(crate) keep: Vec<wgpu::Buffer>,
    /// When set, dense layers' weight gradients go straight into Adam.
    pub(crate) fused_adam: Option<FusedAdam<'a>>,
    /// The taps image of the last convolution pass that made one (ConvVariant::SplitC1).
    pub(crate) taps: Option<Matrix>,
}

/// gemm_backward_weight_adam_subgroup, and what it binds besides the GEMM's operands.
#[derive(Clone, Copy)]
pub(crate) struct FusedAdam<'a> {
    pub(crate) kernel: &'a kernels::GemmAdam,
    pub(crate) adam: &'a wgpu::Buffer,
    pub(crate) step: &'a wgpu::Buffer,
    /// In the kernel's storage (`kernels::GemmAdam::moments`).
    pub(crate) moments: [Bind<'a>; 2],
}

impl Builder<'_> {
    pub(crate) fn uniform<T: bytemuck::Pod>(&mut self, v: &T) -> wgpu::Buffer {
        let u = self.gpu.uniform("params", v);
        self.keep.push(u.clone());
        u
    }

    fn gemm(&self, pass: Pass, l: &Layer, binds: &[(u32, Bind)]) -> Dispatch {
        let (n, k) = l.gemm_nk();
        let v = self.choice.get(pass, self.m, n, k);
        gemm::dispatch(self.gpu, self.k, pass, v, label(l, pass.entry()), binds, self.m, n, k)
    }

    /// A conv.wgsl dispatch of `entry` for layer `l` (the transposed convolution's
    /// passes are the convolution's in the other order); `binds` as conv.wgsl's.
    fn conv(&mut self, l: &Layer, entry: &'static str, binds: &[(u32, Bind)]) -> Vec<Dispatch> {
        let (s, m) = (l.conv_shape(), self.m);
        let variant = kernels::conv_variant(self.k, entry, &s);
        let pass = kernels::conv_dispatch(self.gpu, self.k, entry, variant, l.name, binds, &s, m);
        self.taps = pass.taps;
        let shape = format!("{} m={m}", shape_text(&s));
        // the multiply-adds' cost goes with the dispatch that does them
        pass.dispatches
            .into_iter()
            .enumerate()
            .map(|(i, d)| d.with_cost(shape.clone(), if i == pass.main { conv_flops(&s, m) } else { 0.0 }, 0.0))
            .collect()
    }

    /// y = act(layer(x)), bias and ReLU fused (one dispatch, or more where the variant
    /// splits the pass: `kernels::ConvVariant::SplitC1`).
    pub(crate) fn forward(&mut self, l: &Layer, x: &Matrix, w: &Matrix, y: &Matrix) -> Vec<Dispatch> {
        use Bind::{Buffer as B, Texture as T};
        let m = self.m;
        let params = self.params;
        match l.op {
            Op::Dense => {
                let u = self.uniform(&gemm_params(l, m, l.relu));
                vec![self.gemm(
                    Pass::Forward,
                    l,
                    &[(0, B(&u)), (1, T(&x.view)), (2, T(&w.view)), (4, T(&y.view)), (5, B(params))],
                )]
            }
            Op::Conv { .. } | Op::Deconv { .. } => {
                // a transposed convolution runs the backward-input pass of its convolution
                let entry = if matches!(l.op, Op::Conv { .. }) { "conv2d_forward" } else { "conv2d_backward_input" };
                let epi = if l.relu { kernels::EPILOGUE_BIAS_RELU } else { kernels::EPILOGUE_BIAS };
                let u = self.uniform(&conv_params(l, m, epi, 0));
                self.conv(
                    l,
                    entry,
                    &[(0, B(&u)), (1, T(&x.view)), (2, T(&w.view)), (3, T(&x.view)), (4, T(&y.view)), (5, B(params))],
                )
            }
        }
    }

    /// A gemm_fused_subgroup.wgsl kernel `entry` (`pipeline` picks it) over layer `l`'s
    /// forward GEMM: x . w^T + b with gemm_subgroup.wgsl's bindings (its output `y` at 4),
    /// the fusion's own bindings `extra`, and `cols` workgroups across by 32-row blocks
    /// down. None unless the adapter has the subgroup GEMMs and `pref` allows them. Taken
    /// whatever the layer's own forward GEMM's timing chose: the dispatch it saves costs
    /// more than the variants' difference at these sizes.
    #[allow(clippy::too_many_arguments)]
    fn fused_forward(
        &mut self,
        pref: GemmPreference,
        l: &Layer,
        (x, w, y): (&Matrix, &Matrix, &Matrix),
        entry: &str,
        pipeline: fn(&kernels::SubgroupKernels) -> &wgpu::ComputePipeline,
        extra: &[(u32, Bind)],
        cols: impl Fn(u32) -> u32,
    ) -> Option<Dispatch> {
        use Bind::{Buffer as B, Texture as T};
        let (n, k) = l.gemm_nk();
        let s = self.k.subgroup.as_ref()?;
        if !matches!(pref, GemmPreference::Auto | GemmPreference::Subgroup) {
            return None;
        }
        let u = self.uniform(&gemm_params(l, self.m, false));
        let mut binds = vec![(0, B(&u)), (1, T(&x.view)), (2, T(&w.view)), (4, T(&y.view)), (5, B(self.params))];
        binds.extend_from_slice(extra);
        let groups = [cols(s.lanes), self.m.div_ceil(32) as u32, 1];
        let d = Dispatch::with_groups(self.gpu, label(l, entry), pipeline(s), &binds, groups);
        Some(d.with_gemm_cost(self.m, n, k))
    }

    /// The encoder's head and reparam_forward in one dispatch: mulv = [mu | logvar] of x,
    /// and z drawn from it, where the head's 2L columns fit one workgroup (4 lanes columns:
    /// gemm_forward_reparam_subgroup) or L is a multiple of 4 (workgroups of 2 lanes
    /// latent dimensions: gemm_forward_reparam_pairs_subgroup); see fused_forward.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn heads_reparam(
        &mut self,
        pref: GemmPreference,
        l: &Layer,
        x: &Matrix,
        w: &Matrix,
        mulv: &Matrix,
        z: &Matrix,
        step: &wgpu::Buffer,
    ) -> Option<Dispatch> {
        use Bind::{Buffer as B, Texture as T};
        let lanes = self.k.subgroup.as_ref()?.lanes as usize;
        let n = l.gemm_nk().0;
        let extra = [(7, B(step)), (8, T(&z.view))];
        if n <= 4 * lanes {
            let pipeline: fn(&kernels::SubgroupKernels) -> &wgpu::ComputePipeline =
                |s| &s.gemm_forward_reparam_subgroup;
            return self.fused_forward(pref, l, (x, w, mulv), "gemm_forward_reparam", pipeline, &extra, |_| 1);
        }
        // the pairs kernel needs L a multiple of 4
        if !n.is_multiple_of(8) {
            return None;
        }
        let pipeline: fn(&kernels::SubgroupKernels) -> &wgpu::ComputePipeline =
            |s| &s.gemm_forward_reparam_pairs_subgroup;
        let cols = |lanes: u32| (n as u32 / 2).div_ceil(2 * lanes);
        self.fused_forward(pref, l, (x, w, mulv), "gemm_forward_reparam", pipeline, &extra, cols)
    }

    /// The decoder's last dense layer and the Bernoulli loss in one dispatch
    /// (gemm_forward_elbo_subgroup, `kernels::elbo_gemm_fits`): d out of the layer's
    /// input x against the target, and `kernels::elbo_gemm_blocks` recon partial sums a
    /// row into `partials`; see fused_forward.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_elbo(
        &mut self,
        pref: GemmPreference,
        l: &Layer,
        x: &Matrix,
        w: &Matrix,
        d_out: &Matrix,
        target: &Matrix,
        partials: &wgpu::Buffer,
        step: &wgpu::Buffer,
    ) -> Option<Dispatch> {
        use Bind::{Buffer as B, Texture as T};
        let n = l.gemm_nk().0;
        let extra = [(7, B(step)), (9, T(&target.view)), (10, B(partials))];
        let blocks = |lanes| kernels::elbo_gemm_blocks(n, lanes) as u32;
        self.fused_forward(
            pref,
            l,
            (x, w, d_out),
            "gemm_forward_elbo",
            |s| &s.gemm_forward_elbo_subgroup,
            &extra,
            blocks,
        )
    }

    /// A layer's backward passes from dy (the gradient of its pre-activation): its input
    /// gradient into `dx.0` where `dx` is given (masked by its input's ReLU when `dx.1`),
    /// then dW and db. (Both passes of a dense layer in one dispatch, their grids side by
    /// side, was tried on lavapipe and dropped: the conv model's heads took 1.7-2.4 ms in
    /// the subgroup pair against 0.94 ms as two dispatches, dec.fc 0.95-1.03 ms in the
    /// texel pair against 0.79 ms.)
    pub(crate) fn backward(
        &mut self,
        l: &Layer,
        x: &Matrix,
        w: &Matrix,
        dy: &Matrix,
        dx: Option<(&Matrix, bool)>,
    ) -> Vec<Dispatch> {
        let mut list = Vec::new();
        // backward_input first: with Adam fused, backward_weight updates the weights
        if let Some((dx, masked)) = dx {
            list.extend(self.backward_input(l, x, w, dy, dx, masked));
        }
        list.extend(self.backward_weight(l, x, w, dy));
        list
    }

    /// dW and db of a layer from d out (gradient of its pre-activation) and its input x.
    /// With Adam fused in, the layer's weight texture `w` is updated in place: the layer's
    /// backward_input, which reads it, must come first.
    pub(crate) fn backward_weight(&mut self, l: &Layer, x: &Matrix, w: &Matrix, dy: &Matrix) -> Vec<Dispatch> {
        use Bind::{Buffer as B, Texture as T};
        let (m, grads) = (self.m, self.grads);
        match l.op {
            Op::Dense => {
                let u = self.uniform(&gemm_params(l, m, false));
                if let Some(f) = self.fused_adam {
                    let binds = [
                        (0, B(&u)),
                        (1, T(&dy.view)),
                        (2, T(&x.view)),
                        (7, B(f.adam)),
                        (8, B(f.step)),
                        (9, B(self.params)),
                        (10, f.moments[0]),
                        (11, f.moments[1]),
                        (12, T(&w.view)),
                    ];
                    let (n, k) = l.gemm_nk();
                    let name = label(l, "gemm_backward_weight_adam");
                    return vec![gemm::dispatch_backward_weight_adam(self.gpu, f.kernel, name, &binds, m, n, k)];
                }
                vec![self.gemm(
                    Pass::BackwardWeight,
                    l,
                    &[(0, B(&u)), (1, T(&dy.view)), (2, T(&x.view)), (6, B(grads))],
                )]
            }
            Op::Conv { .. } | Op::Deconv { .. } => {
                // a transposed convolution is the convolution from its output to its input
                let (lhs, rhs, bias_of) = if matches!(l.op, Op::Conv { .. }) { (dy, x, 0) } else { (x, dy, 1) };
                let u = self.uniform(&conv_params(l, m, 0, bias_of));
                self.conv(
                    l,
                    "conv2d_backward_weight",
                    &[(0, B(&u)), (1, T(&lhs.view)), (2, T(&rhs.view)), (6, B(grads))],
                )
            }
        }
    }

    /// d input of a layer, masked by `[x > 0]` when its input came out of a ReLU.
    pub(crate) fn backward_input(
        &mut self,
        l: &Layer,
        x: &Matrix,
        w: &Matrix,
        dy: &Matrix,
        dx: &Matrix,
        masked: bool,
    ) -> Vec<Dispatch> {
        use Bind::{Buffer as B, Texture as T};
        let (m, params) = (self.m, self.params);
        let epi = if masked { kernels::EPILOGUE_RELU_MASK } else { kernels::EPILOGUE_NONE };
        match l.op {
            Op::Dense => {
                let u = self.uniform(&gemm_params(l, m, masked));
                vec![self.gemm(
                    Pass::BackwardInput,
                    l,
                    &[(0, B(&u)), (1, T(&dy.view)), (2, T(&w.view)), (3, T(&x.view)), (4, T(&dx.view))],
                )]
            }
            Op::Conv { .. } | Op::Deconv { .. } => {
                // and a transposed convolution's input gradient is its convolution's forward pass
                let entry = if matches!(l.op, Op::Conv { .. }) { "conv2d_backward_input" } else { "conv2d_forward" };
                let u = self.uniform(&conv_params(l, m, epi, 0));
                let binds =
                    [(0, B(&u)), (1, T(&dy.view)), (2, T(&w.view)), (3, T(&x.view)), (4, T(&dx.view)), (5, B(params))];
                self.conv(l, entry, &binds)
            }
        }
    }
}

/// "<entry point> <layer>": the profiler's row names.
fn label(l: &Layer, entry: &str) -> String {
    format!("{entry} {}", l.name)
}

fn shape_text(s: &crate::reference::ConvShape) -> String {
    format!("{}x{}x{}>{}x{}x{} k{}s{}", s.in_h, s.in_w, s.in_c, s.out_h, s.out_w, s.out_c, s.kernel, s.stride)
}

fn conv_flops(s: &crate::reference::ConvShape, m: usize) -> f64 {
    2.0 * (m * s.out_h * s.out_w * s.out_c * s.in_c * s.kernel * s.kernel) as f64
}

impl<'g> Trainer<'g> {
    pub fn new(
        gpu: &'g Gpu,
        model: Model,
        hyper: Hyper,
        batch: usize,
        train: &Dataset,
        test: &Dataset,
    ) -> Result<Trainer<'g>> {
        let c = model.config.clone();
        c.check()?;
        let l = model.layout.clone();
        let lat = c.latent;
        for (what, ds) in [("training", train), ("test", test)] {
            if (ds.width, ds.height, ds.channels) != (c.width, c.height, c.channels) {
                bail!(
                    "the model expects {}x{} images with {} channel(s) but the {what} set has {}x{} with {}",
                    c.width,
                    c.height,
                    c.channels,
                    ds.width,
                    ds.height,
                    ds.channels
                );
            }
            if ds.len == 0 {
                bail!("the {what} set is empty");
            }
        }
        if batch == 0 || hyper.samples == 0 {
            bail!("--batch-size and --mc-samples must be at least 1");
        }
        let k = Kernels::new(gpu)?;
        let m = (batch * hyper.samples).next_multiple_of(4);
        // a convolution's weight gradient loops over the images and output pixels in one
        // invocation, which llvmpipe cuts short past LLVMPIPE_LOOP_TURNS
        if gpu.is_llvmpipe() {
            for layer in l.layers().iter().filter(|ly| ly.op != Op::Dense) {
                let s = layer.conv_shape();
                let variant = kernels::conv_variant(&k, "conv2d_backward_weight", &s);
                let transposed = matches!(layer.op, Op::Deconv { .. });
                let turns = |rows: usize| kernels::weight_loop_turns(variant, &s, rows, transposed);
                if turns(m) > kernels::LLVMPIPE_LOOP_TURNS {
                    let most = (1..=batch).rev().find(|&b| turns(b * hyper.samples) <= kernels::LLVMPIPE_LOOP_TURNS);
                    bail!(
                        "a batch of {batch} images x {} Monte-Carlo sample(s) is too large for layer {} on lavapipe: its weight gradient would run {} loop turns in one shader invocation, past llvmpipe's limit of {} (the results would be wrong). Use --batch-size {} or less",
                        hyper.samples,
                        layer.name,
                        turns(m),
                        kernels::LLVMPIPE_LOOP_TURNS,
                        most.unwrap_or(1)
                    );
                }
            }
        }
        let floats = (l.len * 4) as u64;
        let params = gpu.buffer_with("params", bytemuck::cast_slice(&model.params))?;
        let grads = gpu.buffer("grads", floats, wgpu::BufferUsages::empty())?;
        // texel moments where the adapter has adam_texel.wgsl, they pay on this adapter
        // and the texture fits
        let rows = l.len.div_ceil(ADAM_TEXEL_COLS);
        let moments = match &k.adam_update_texel {
            Some(_)
                if gpu.texel_moments_pay()
                    && rows.next_multiple_of(4) <= gpu.limits.max_texture_dimension_2d as usize =>
            {
                Moments::Texels(Box::new([
                    gpu.matrix("adam moment1", rows, ADAM_TEXEL_COLS)?,
                    gpu.matrix("adam moment2", rows, ADAM_TEXEL_COLS)?,
                ]))
            }
            _ => Moments::Buffers(
                gpu.buffer("adam moment1", floats, wgpu::BufferUsages::empty())?,
                gpu.buffer("adam moment2", floats, wgpu::BufferUsages::empty())?,
            ),
        };
        let step_uniform = gpu.uniform("step", &Step::default());
        let image_loss = gpu.buffer("image_loss", (m * 8) as u64, wgpu::BufferUsages::empty())?;
        let kl_mask = gpu.buffer("kl_mask", (lat * 4) as u64, wgpu::BufferUsages::empty())?;
        let history_slots = train.len.div_ceil(batch).max(test.len.div_ceil(batch)) + 1;
        let history = gpu.buffer("history", (history_slots * 16) as u64, wgpu::BufferUsages::empty())?;
        let train_data = gpu.buffer_with("training set", &train.pixels)?;
        let test_data = gpu.buffer_with("test set", &test.pixels)?;
        let train_order = gpu.buffer("train order", (train.len * 4) as u64, wgpu::BufferUsages::empty())?;
        let test_order_vec: Vec<u32> = (0..test.len as u32).collect();
        let test_order = gpu.buffer_with("test order", bytemuck::cast_slice(&test_order_vec))?;

        let layers = l.layers();
        let weights: Vec<Matrix> =
            layers.iter().map(|ly| gpu.matrix(ly.name, ly.rows, ly.cols)).collect::<Result<_>>()?;
        let act = |ly: &Layer, what: &str| gpu.matrix(&format!("{what} {}", ly.name), m, ly.output.cols());
        // activations: enc_out[i] is encoder layer i's output; h = the last; dec_out likewise
        let x = gpu.matrix("x", m, c.input_shape().cols())?;
        let enc_out: Vec<Matrix> = l.encoder.iter().map(|ly| act(ly, "out")).collect::<Result<_>>()?;
        let enc_grad: Vec<Matrix> = l.encoder.iter().map(|ly| act(ly, "grad")).collect::<Result<_>>()?;
        let mulv = act(&l.heads, "out")?;
        let dmulv = act(&l.heads, "grad")?;
        let z = gpu.matrix("z", m, lat)?;
        let dz = gpu.matrix("dz", m, lat)?;
        let dec_out: Vec<Matrix> = l.decoder.iter().map(|ly| act(ly, "out")).collect::<Result<_>>()?;
        let dec_grad: Vec<Matrix> = l.decoder.iter().map(|ly| act(ly, "grad")).collect::<Result<_>>()?;
        let out_shape = l.decoder.last().unwrap().output;
        let probs = gpu.matrix("probs", m, out_shape.cols())?;

        // the GEMM variants: every dense layer's passes, timed unless forced
        let gemms: Vec<(Pass, usize, usize, usize)> = layers
            .iter()
            .filter(|ly| ly.op == Op::Dense)
            .flat_map(|ly| Pass::ALL.map(|p| (p, m, ly.gemm_nk().0, ly.gemm_nk().1)))
            .collect();
        let choice = match &hyper.gemm_fixed {
            Some(c) => c.clone(),
            None => gemm::choose(gpu, &k, hyper.gemm, &gemms)?,
        };
        let adam_u = gpu.uniform(
            "adam",
            &kernels::Adam { count: (l.len / 4) as u32, beta1: ADAM_BETA1, beta2: ADAM_BETA2, eps: ADAM_EPS },
        );
        // Adam fused into the weight gradients: every parameter must belong to a dense
        // layer's weights or bias, the GEMMs must not have been forced to another variant,
        // and the kernel must keep the moments where they are (only not where the
        // moment textures would not fit)
        let fused_adam = match &k.gemm_adam {
            Some(ga)
                if hyper.fuse_adam
                    && ga.moments == moments.store()
                    && matches!(hyper.gemm, GemmPreference::Auto | GemmPreference::Subgroup)
                    && layers.iter().all(|ly| ly.op == Op::Dense) =>
            {
                Some(FusedAdam { kernel: ga, adam: &adam_u, step: &step_uniform, moments: moments.binds() })
            }
            _ => None,
        };
        let adam_fused = fused_adam.is_some();
        let mut bld = Builder {
            gpu,
            k: &k,
            choice: &choice,
            m,
            params: &params,
            grads: &grads,
            keep: Vec::new(),
            fused_adam,
            taps: None,
        };
        let wi = |i: usize| &weights[i];
        let (ne, nd) = (l.encoder.len(), l.decoder.len());
        let heads_w = wi(ne);
        let enc_in = |i: usize| if i == 0 { &x } else { &enc_out[i - 1] };
        let h = enc_out.last().unwrap_or(&x);
        let dec_in = |i: usize| if i == 0 { &z } else { &dec_out[i - 1] };
        let out = dec_out.last().unwrap();

        use Bind::{Buffer as B, Texture as T};
        let lay = c.loss_layout();
        let texels = |rows: usize, cols: usize| rows * cols.div_ceil(4);
        let gather = |bld: &mut Builder, data: &wgpu::Buffer, order: &wgpu::Buffer| {
            let shape = c.input_shape();
            let gp = kernels::Gather {
                m: m as u32,
                pixels: lay.pixels as u32,
                channels: c.channels as u32,
                x_cp: lay.x_cp as u32,
                binarize: hyper.binarize as u32,
                samples: hyper.samples as u32,
                pad: [0; 2],
            };
            let u = bld.uniform(&gp);
            let binds = [(0, B(&u)), (1, B(&step_uniform)), (2, B(data)), (3, B(order)), (4, T(&x.view))];
            kernels::gather_dispatch(gpu, &k, &gp, &binds).with_elementwise_cost(
                format!("m={m} D={}", shape.cols()),
                m * shape.cols(),
                1.0,
                5.0,
            )
        };
        let reparam_u = bld.uniform(&kernels::Reparam::new(m, lat, hyper.free_bits));
        let reparam_forward = || {
            Dispatch::new(
                gpu,
                "reparam_forward",
                &k.reparam_forward,
                &[(0, B(&reparam_u)), (1, B(&step_uniform)), (2, T(&mulv.view)), (4, T(&z.view))],
                texels(m, lat),
                64,
            )
            .with_elementwise_cost(format!("m={m} L={lat}"), m * lat, 30.0, 12.0)
        };
        let elbo_u = bld.uniform(&kernels::Elbo::new(m, lat, &lay, false));
        let d_out = dec_grad.last().unwrap();
        // the loss for training and evaluation (every value observed), and for restoration
        let elbo_with =
            |u: &wgpu::Buffer, observed: &Matrix| {
                let binds = [
                    (0, B(u)),
                    (1, B(&step_uniform)),
                    (2, T(&out.view)),
                    (3, T(&x.view)),
                    (4, T(&mulv.view)),
                    (5, T(&d_out.view)),
                    (6, B(&image_loss)),
                    (7, T(&observed.view)),
                ];
                kernels::elbo_dispatch(gpu, &k, kernels::elbo_wide(gpu, &k, lay.o_cols), &binds, m)
                    .with_elementwise_cost(format!("m={m} out={}", lay.o_cols), m * lay.o_cols, 12.0, 12.0)
            };
        let elbo = || elbo_with(&elbo_u, &x);
        // the loss summing the logits from the last layer's taps image (kernels::elbo_taps_fits)
        let last = l.decoder.last().unwrap();
        let taps_u = kernels::elbo_taps_fits(gpu, &k, last, &lay, lat)
            .then(|| bld.uniform(&kernels::Taps::new(&last.conv_shape(), last.b)));
        let elbo_taps = |taps_u: &wgpu::Buffer, taps: &Matrix| {
            let binds = [
                (0, B(&elbo_u)),
                (1, B(&step_uniform)),
                (3, T(&x.view)),
                (4, T(&mulv.view)),
                (5, T(&d_out.view)),
                (6, B(&image_loss)),
                (7, T(&x.view)),
                (8, B(taps_u)),
                (9, T(&taps.view)),
                (10, B(&params)),
            ];
            Dispatch::new(gpu, "elbo_forward_backward_taps", &k.elbo_forward_backward_taps, &binds, m, 64)
                .with_elementwise_cost(format!("m={m} out={}", lay.o_cols), m * lay.o_cols, 20.0, 16.0)
        };
        // the loss sums and the free-bits mask (reparam.wgsl)
        let reduce_binds = [
            (0, B(&reparam_u)),
            (1, B(&step_uniform)),
            (2, T(&mulv.view)),
            (5, B(&kl_mask)),
            (6, B(&image_loss)),
            (7, B(&history)),
        ];
        let reduce = || {
            Dispatch::new(gpu, "loss_reduce", &k.loss_reduce, &reduce_binds, 1, 1).with_elementwise_cost(
                format!("m={m}"),
                m,
                2.0,
                8.0,
            )
        };
        // the training step reduces the loss in reparam_backward_reduce where that pays
        let reduce_fused = kernels::reparam_reduce_fused(m, lat);
        // and runs the decoder's last layer and the loss as one dispatch where it can
        // (then reparam_backward_reduce_partials adds the recon partial sums it leaves)
        // (its column blocks, and the buffer of their partial sums)
        let elbo_gemm = match &k.subgroup {
            Some(s)
                if reduce_fused
                    && matches!(hyper.gemm, GemmPreference::Auto | GemmPreference::Subgroup)
                    && kernels::elbo_gemm_fits(last, &lay) =>
            {
                let blocks = kernels::elbo_gemm_blocks(last.gemm_nk().0, s.lanes);
                Some((blocks, gpu.buffer("recon partials", (blocks * m * 4) as u64, wgpu::BufferUsages::empty())?))
            }
            _ => None,
        };

        // forward
        // the training step's forward pass (`train`) leaves out what only its backward pass
        // reads: the loss sums (then in reparam_backward_reduce) and the logits (summed
        // from the taps image by the loss); evaluation and reconstruction keep them
        let forward_list = |bld: &mut Builder, list: &mut Vec<Dispatch>, train: bool| {
            for (i, ly) in l.encoder.iter().enumerate() {
                list.extend(bld.forward(ly, enc_in(i), wi(i), &enc_out[i]));
            }
            match bld.heads_reparam(hyper.gemm, &l.heads, h, heads_w, &mulv, &z, &step_uniform) {
                Some(d) => list.push(d),
                None => {
                    list.extend(bld.forward(&l.heads, h, heads_w, &mulv));
                    list.push(reparam_forward());
                }
            }
            for (i, ly) in l.decoder.iter().enumerate() {
                bld.taps = None;
                if train && i == nd - 1 {
                    if let Some((_, partials)) = &elbo_gemm {
                        let d = bld.forward_elbo(
                            hyper.gemm,
                            ly,
                            dec_in(i),
                            wi(ne + 1 + i),
                            d_out,
                            &x,
                            partials,
                            &step_uniform,
                        );
                        list.push(d.expect("elbo_gemm is set only where the subgroup GEMMs run"));
                        return;
                    }
                }
                list.extend(bld.forward(ly, dec_in(i), wi(ne + 1 + i), &dec_out[i]));
            }
            match bld.taps.take() {
                // the loss reads the taps image in place of conv2d_col2im_c1's logits
                Some(taps) if train && taps_u.is_some() => {
                    list.pop();
                    list.push(elbo_taps(taps_u.as_ref().unwrap(), &taps));
                }
                _ => list.push(elbo()),
            }
            if !(train && reduce_fused) {
                list.push(reduce());
            }
        };
        let mut train_step = vec![gather(&mut bld, &train_data, &train_order)];
        forward_list(&mut bld, &mut train_step, true);
        // backward: decoder, reparam, heads, encoder
        for i in (0..nd).rev() {
            let ly = &l.decoder[i];
            let dy = &dec_grad[i];
            let (dx, masked) = if i == 0 { (&dz, false) } else { (&dec_grad[i - 1], l.decoder[i - 1].relu) };
            train_step.extend(bld.backward(ly, dec_in(i), wi(ne + 1 + i), dy, Some((dx, masked))));
        }
        let mut binds = vec![(3, T(&dz.view)), (4, T(&dmulv.view))];
        // reparam_backward reads the mask; the fused kernel writes it and the loss sums too
        binds.extend(reduce_binds.iter().copied().filter(|&(i, _)| reduce_fused || i <= 5));
        train_step.push(if let Some((blocks, partials)) = &elbo_gemm {
            // no per-image loss: the recon partial sums of gemm_forward_elbo_subgroup, and
            // a uniform that says how many
            let u = bld.uniform(&kernels::Reparam::new(m, lat, hyper.free_bits).with_partials(*blocks));
            let binds: Vec<(u32, Bind)> = (binds.iter().copied())
                .filter(|&(i, _)| i != 0 && i != 6)
                .chain([(0, B(&u)), (8, B(partials))])
                .collect();
            Dispatch::new(gpu, "reparam_backward_reduce_partials", &k.reparam_backward_reduce_partials, &binds, 64, 64)
                .with_elementwise_cost(format!("m={m} L={lat}"), m * lat, 42.0, 28.0)
        } else if reduce_fused {
            Dispatch::new(gpu, "reparam_backward_reduce", &k.reparam_backward_reduce, &binds, 64, 64)
                .with_elementwise_cost(format!("m={m} L={lat}"), m * lat, 42.0, 28.0)
        } else {
            Dispatch::new(gpu, "reparam_backward", &k.reparam_backward, &binds, texels(m, 2 * lat), 64)
                .with_elementwise_cost(format!("m={m} L={lat}"), m * lat, 40.0, 20.0)
        });
        let dh = (ne > 0).then(|| (&enc_grad[ne - 1], l.encoder[ne - 1].relu));
        train_step.extend(bld.backward(&l.heads, h, heads_w, &dmulv, dh));
        for i in (0..ne).rev() {
            let dx = (i > 0).then(|| (&enc_grad[i - 1], l.encoder[i - 1].relu));
            train_step.extend(bld.backward(&l.encoder[i], enc_in(i), wi(i), &enc_grad[i], dx));
        }
        if !adam_fused {
            let [m1, m2] = moments.binds();
            let (entry, pipeline) = match (moments.store(), &k.adam_update_texel) {
                (kernels::MomentStore::Texels, Some(p)) => ("adam_update_texel", p),
                (kernels::MomentStore::Buffers, _) => ("adam_update", &k.adam_update),
                (kernels::MomentStore::Texels, None) => unreachable!("texel moments come with adam_update_texel"),
            };
            let binds = [(0, B(&adam_u)), (1, B(&step_uniform)), (2, B(&params)), (3, B(&grads)), (4, m1), (5, m2)];
            train_step.push(Dispatch::new(gpu, entry, pipeline, &binds, l.len / 4, 64).with_elementwise_cost(
                format!("params={}", l.len),
                l.len,
                10.0,
                28.0,
            ));
        }

        let mut eval_step = vec![gather(&mut bld, &test_data, &test_order)];
        forward_list(&mut bld, &mut eval_step, false);
        let mut decode = Vec::new();
        for (i, ly) in l.decoder.iter().enumerate() {
            decode.extend(bld.forward(ly, dec_in(i), wi(ne + 1 + i), &dec_out[i]));
        }
        let sig_u = bld.uniform(&kernels::Elementwise { m: m as u32, cols: out_shape.cols() as u32, pad: [0; 2] });
        decode.push(Dispatch::new(
            gpu,
            "sigmoid_forward",
            &k.sigmoid_forward,
            &[(0, B(&sig_u)), (1, T(&out.view)), (3, T(&probs.view))],
            texels(m, out_shape.cols()),
            64,
        ));

        // restoration by MAP search: encode a given x; then, from a given z, decode, the
        // likelihood of the observed values only, and its gradient back to dz
        let observed = gpu.matrix("observed", m, c.input_shape().cols())?;
        let mut encode = Vec::new();
        for (i, ly) in l.encoder.iter().enumerate() {
            encode.extend(bld.forward(ly, enc_in(i), wi(i), &enc_out[i]));
        }
        encode.extend(bld.forward(&l.heads, h, heads_w, &mulv));
        // the decoder's dispatches, without the sigmoid
        let mut map_step: Vec<Dispatch> = decode[..decode.len() - 1].to_vec();
        let masked_u = bld.uniform(&kernels::Elbo::new(m, lat, &lay, true));
        map_step.push(elbo_with(&masked_u, &observed));
        for i in (0..nd).rev() {
            let (dx, masked) = if i == 0 { (&dz, false) } else { (&dec_grad[i - 1], l.decoder[i - 1].relu) };
            map_step.extend(bld.backward_input(&l.decoder[i], dec_in(i), wi(ne + 1 + i), &dec_grad[i], dx, masked));
        }

        let mut keep = bld.keep;
        keep.extend([kl_mask, train_data, test_data, test_order, adam_u]);
        keep.extend(elbo_gemm.map(|(_, partials)| partials));
        let mut mats = enc_out;
        mats.extend(enc_grad);
        let out_index = dec_out.len() - 1;
        let mut dec_out = dec_out;
        let out = dec_out.remove(out_index);
        mats.extend(dec_out);
        mats.extend(dec_grad);
        mats.extend([dmulv]);
        let trainer = Trainer {
            gpu,
            model,
            hyper,
            gemm_choice: choice,
            batch,
            steps_done: 0,
            counter: 0,
            history_slots,
            params,
            grads,
            moments,
            adam_fused,
            step_uniform,
            history,
            pending_history: std::sync::Mutex::new(None),
            train_order,
            train_len: train.len,
            test_len: test.len,
            weights,
            x,
            mulv,
            image_loss,
            z,
            out,
            probs,
            train_step,
            eval_step,
            decode,
            encode,
            map_step,
            observed,
            dz,
            _keep: keep,
            _mats: mats,
        };
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        trainer.copy_weights(&mut enc);
        gpu.submit(enc.finish());
        gpu.wait()?;
        Ok(trainer)
    }

    /// Dispatches per training step.
    pub fn dispatches_per_step(&self) -> usize {
        self.train_step.len()
    }

    /// Bytes copied into the weight textures per step.
    pub fn weight_copy_bytes(&self) -> usize {
        self.model.layout.layers().iter().map(|d| d.rows * d.cols * 4).sum()
    }

    /// Copies the flat parameters' weight matrices into the textures the kernels read.
    pub fn copy_weights(&self, enc: &mut wgpu::CommandEncoder) {
        for (layer, tex) in self.model.layout.layers().into_iter().zip(&self.weights) {
            enc.copy_buffer_to_texture(
                crate::gpu::flat_rows(&self.params, layer.w, layer.stride),
                tex.texture.as_image_copy(),
                tex.texture.size(),
            );
        }
    }

    /// The per-step uniform for a batch of `images` images starting at `batch_start`.
    /// An autoencoder always decodes the posterior mean and has no KL term.
    pub fn step_values(&self, images: usize, batch_start: usize, slot: usize, noise: f32) -> Step {
        let t = (self.steps_done + 1) as i32;
        let rows = images * self.hyper.samples;
        let ae = self.model.config.kind == ModelKind::Ae;
        Step {
            seed: self.hyper.seed,
            step: self.counter,
            rows: rows as u32,
            batch_start: batch_start as u32,
            slot: slot as u32,
            inv_rows: 1.0 / rows.max(1) as f32,
            noise: if ae { 0.0 } else { noise },
            beta: if ae { 0.0 } else { self.hyper.beta },
            lr_t: self.hyper.lr / (1.0 - ADAM_BETA1.powi(t)),
            bc2_sqrt: (1.0 - ADAM_BETA2.powi(t)).sqrt(),
            pad0: 0,
            pad1: 0,
        }
    }

    /// Uploads this epoch's order of the training images (and drops a history read in
    /// flight: the epoch's steps rewrite the slots from 0).
    pub fn set_order(&self, order: &[u32]) -> Result<()> {
        if order.len() != self.train_len {
            bail!("the order lists {} images but the training set has {}", order.len(), self.train_len);
        }
        self.cancel_history();
        self.gpu.queue.write_buffer(&self.train_order, 0, bytemuck::cast_slice(order));
        Ok(())
    }

    /// Images in the training set.
    pub fn train_len(&self) -> usize {
        self.train_len
    }

    /// Steps per epoch.
    pub fn train_batches(&self) -> usize {
        self.batches(self.train_len)
    }

    /// Steps per pass over `len` images.
    pub fn batches(&self, len: usize) -> usize {
        len.div_ceil(self.batch)
    }

    /// Writes the uniform of training step `b` of the epoch (its loss goes to
    /// history slot `b`) and advances the counters; the caller then encodes
    /// `train_dispatches()` and `copy_weights` and submits.
    pub fn begin_train_step(&mut self, b: usize) {
        let start = b * self.batch;
        let rows = self.batch.min(self.train_len - start);
        let step = self.step_values(rows, start, b, 1.0);
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        self.steps_done += 1;
        self.counter += 1;
    }

    /// Submits training step `b` of the epoch. Does not wait.
    pub fn train_step(&mut self, b: usize) {
        self.begin_train_step(b);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        kernels::encode_all(&mut enc, "train step", &self.train_step);
        if self.copies_weights_each_step() {
            self.copy_weights(&mut enc);
        }
        self.gpu.submit(enc.finish());
    }

    /// Whether each training step ends by copying the flat weights into the textures.
    /// Not with Adam fused into the weight gradients: those update the textures, which
    /// are then the weights' master copy (`copy_weights_back` brings them to the flat
    /// parameters).
    pub fn copies_weights_each_step(&self) -> bool {
        !self.adam_fused
    }

    /// Copies the weight textures back into the flat parameters, where Adam updates
    /// the textures (`copies_weights_each_step` is false), and waits.
    fn copy_weights_back(&self) -> Result<()> {
        if self.copies_weights_each_step() {
            return Ok(());
        }
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        for (layer, tex) in self.model.layout.layers().into_iter().zip(&self.weights) {
            enc.copy_texture_to_buffer(
                tex.texture.as_image_copy(),
                crate::gpu::flat_rows(&self.params, layer.w, layer.stride),
                tex.texture.size(),
            );
        }
        self.gpu.submit(enc.finish());
        self.gpu.wait()
    }

    /// The dispatches of one training step, in order.
    pub fn train_dispatches(&self) -> &[Dispatch] {
        &self.train_step
    }

    /// Reads the loss sums of history slots 0..n.
    pub fn read_history(&self, n: usize) -> Result<LossSums> {
        self.read_history_from(0, n, LossSums::default())
    }

    /// Continues `sums` with history slots start..n, in order (a resumed epoch adds
    /// exactly what the uninterrupted one would have). Waits for the GPU to finish what
    /// was submitted; `request_history` does not.
    pub fn read_history_from(&self, start: usize, n: usize, sums: LossSums) -> Result<LossSums> {
        let n = n.min(self.history_slots);
        if start >= n {
            return Ok(sums);
        }
        Ok(add_slots(sums, &self.gpu.read_f32(&self.history, start * 4, (n - start) * 4)?))
    }

    /// Starts reading history slots start..n (continuing `base`) without waiting: the copy
    /// runs after the steps submitted so far, and `poll_history` gives the sums once the
    /// GPU has reached it. So logging does not drain the queue: on lavapipe, a blocking
    /// read every 25 steps made an MLP epoch about 10% slower. One read is in flight at a
    /// time: while one is, this does nothing and returns false.
    pub fn request_history(&self, start: usize, n: usize, base: LossSums) -> bool {
        let mut pending = self.pending_history.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(self.history_slots);
        if pending.is_some() || start >= n {
            return false;
        }
        let read = self.gpu.read_buffer_later(&self.history, (start * 16) as u64, ((n - start) * 16) as u64);
        *pending = Some(PendingHistory { read, n, base });
        true
    }

    /// The read `request_history` started, once the GPU has reached it: the number of steps
    /// it covers (its `n`) and their sums. None while it is under way or when none is.
    /// Never waits.
    pub fn poll_history(&self) -> Result<Option<(usize, LossSums)>> {
        let mut pending = self.pending_history.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.as_ref() else { return Ok(None) };
        let bytes = self.gpu.poll_read(&p.read);
        // spent when it has data or failed
        let Some(bytes) = bytes.inspect_err(|_| *pending = None)? else { return Ok(None) };
        let p = pending.take().unwrap();
        Ok(Some((p.n, add_slots(p.base, &bytemuck::pod_collect_to_vec::<u8, f32>(&bytes)))))
    }

    /// Drops the history read in flight, if any (its slots are about to be rewritten).
    pub fn cancel_history(&self) {
        *self.pending_history.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Per-batch losses (recon + beta kl, per image) of history slots 0..n.
    pub fn batch_losses(&self, n: usize) -> Result<Vec<f32>> {
        let v = self.gpu.read_f32(&self.history, 0, n.min(self.history_slots) * 4)?;
        let beta = if self.model.config.kind == ModelKind::Ae { 0.0 } else { self.hyper.beta };
        Ok(v.chunks(4).map(|s| (s[0] + beta * s[1]) / s[2].max(1.0)).collect())
    }

    fn eval_batch(&mut self, b: usize, noise: f32) {
        let start = b * self.batch;
        let rows = self.batch.min(self.test_len - start);
        let step = self.step_values(rows, start, b, noise);
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        kernels::encode_all(&mut enc, "eval step", &self.eval_step);
        self.gpu.submit(enc.finish());
        self.counter += 1;
    }

    /// Runs test batch `b` forward (z sampled when `noise` is 1, the posterior mean when 0)
    /// and returns per row: (recon, kl), then mu and logvar (rows, L each) and z (rows, L).
    pub fn eval_rows(&mut self, b: usize, noise: f32) -> Result<EvalRows> {
        self.eval_batch(b, noise);
        let images = self.batch.min(self.test_len - b * self.batch);
        let rows = images * self.hyper.samples;
        let lat = self.model.config.latent;
        let loss = self.gpu.read_f32(&self.image_loss, 0, 2 * rows)?;
        let mulv = self.gpu.read_matrix(&self.mulv)?;
        let z = self.gpu.read_matrix(&self.z)?;
        Ok(EvalRows {
            recon: loss.chunks(2).map(|v| v[0]).collect(),
            kl: loss.chunks(2).map(|v| v[1]).collect(),
            mu: (0..rows).flat_map(|r| mulv[r * 2 * lat..r * 2 * lat + lat].to_vec()).collect(),
            logvar: (0..rows).flat_map(|r| mulv[r * 2 * lat + lat..(r + 1) * 2 * lat].to_vec()).collect(),
            z: z[..rows * lat].to_vec(),
        })
    }

    /// Test images in this trainer's test set.
    pub fn test_len(&self) -> usize {
        self.test_len
    }

    /// The test set's loss sums with z sampled (one Monte-Carlo sample per image).
    pub fn evaluate(&mut self) -> Result<LossSums> {
        let n = self.batches(self.test_len);
        for b in 0..n {
            self.eval_batch(b, 1.0);
        }
        self.read_history(n)
    }

    /// The first test batch and its reconstructions from the posterior mean, both
    /// (images, pixels * channels) channels-last with values in [0, 1].
    pub fn reconstruct_first_batch(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.eval_batch(0, 0.0);
        kernels::run_refs(self.gpu, &[self.decode.last().unwrap()])?;
        let rows = self.batch.min(self.test_len) * self.hyper.samples;
        let c = &self.model.config;
        let lay = c.loss_layout();
        let x = self.gpu.read_matrix(&self.x)?;
        let x_cols = c.input_shape().cols();
        let images: Vec<f32> = (0..rows)
            .step_by(self.hyper.samples)
            .flat_map(|r| (0..lay.pixels).flat_map(move |p| (0..lay.channels).map(move |ch| (r, p, ch))))
            .map(|(r, p, ch)| x[r * x_cols + p * lay.x_cp + ch])
            .collect();
        let recon = self.decoded_means(rows)?;
        let recon = recon.chunks(c.pixels()).step_by(self.hyper.samples).flatten().copied().collect();
        Ok((images, recon))
    }

    /// The decoder's means for the first `rows` rows, (rows, pixels * channels) channels-last.
    fn decoded_means(&self, rows: usize) -> Result<Vec<f32>> {
        let c = &self.model.config;
        let lay = c.loss_layout();
        // both likelihoods' means are the sigmoid of the decoder's first output
        let v = self.gpu.read_matrix(&self.probs)?;
        let mut means = Vec::with_capacity(rows * c.pixels());
        for r in 0..rows {
            for p in 0..lay.pixels {
                for ch in 0..lay.channels {
                    means.push(v[r * lay.o_cols + lay.mean_col(p, ch)].clamp(0.0, 1.0));
                }
            }
        }
        Ok(means)
    }

    /// Decodes latent codes z (n, L), n <= the batch rows, to images (n, pixels * channels).
    pub fn decode(&mut self, z: &[f32]) -> Result<Vec<f32>> {
        let lat = self.model.config.latent;
        let n = z.len() / lat;
        if n > self.z.rows {
            bail!("can decode at most {} codes at once, got {n}", self.z.rows);
        }
        self.gpu.write_matrix(&self.z, z);
        kernels::run(self.gpu, &self.decode)?;
        self.decoded_means(n)
    }

    /// Posterior [mu | logvar] (rows, 2L) of images x (rows, x columns) given directly.
    pub fn encode_images(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        self.gpu.write_matrix(&self.x, x);
        kernels::run(self.gpu, &self.encode)?;
        let rows = x.len() / self.model.config.input_shape().cols();
        let v = self.gpu.read_matrix(&self.mulv)?;
        Ok(v[..rows * 2 * self.model.config.latent].to_vec())
    }

    /// For codes z (rows, L) and targets x with their observed mask (rows, x columns):
    /// per row -log p(x_observed | g(z)) and its gradient d/dz (rows, L).
    pub fn observed_nll_and_grad(&mut self, z: &[f32], x: &[f32], observed: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let lat = self.model.config.latent;
        let rows = z.len() / lat;
        if rows > self.z.rows {
            bail!("at most {} codes at once, got {rows}", self.z.rows);
        }
        let step = Step { rows: rows as u32, inv_rows: 1.0, ..self.step_values(0, 0, 0, 0.0) };
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        self.gpu.write_matrix(&self.z, z);
        self.gpu.write_matrix(&self.x, x);
        self.gpu.write_matrix(&self.observed, observed);
        kernels::run(self.gpu, &self.map_step)?;
        let loss = self.gpu.read_f32(&self.image_loss, 0, 2 * rows)?;
        let dz = self.gpu.read_matrix(&self.dz)?;
        Ok((loss.chunks(2).map(|v| v[0]).collect(), dz[..rows * lat].to_vec()))
    }

    /// Copies the GPU's parameters back into `self.model`.
    pub fn sync_model(&mut self) -> Result<()> {
        self.copy_weights_back()?;
        self.model.params = self.gpu.read_f32(&self.params, 0, self.model.layout.len)?;
        Ok(())
    }

    /// Everything a resumed run needs from this one (read back from the GPU).
    pub fn state(&self) -> Result<TrainState> {
        self.copy_weights_back()?;
        let len = self.model.layout.len;
        Ok(TrainState {
            params: self.gpu.read_f32(&self.params, 0, len)?,
            moment1: self.read_moment(0)?,
            moment2: self.read_moment(1)?,
            steps_done: self.steps_done,
            counter: self.counter,
        })
    }

    /// Adam's first (0) or second (1) moment, flat like the parameters.
    fn read_moment(&self, which: usize) -> Result<Vec<f32>> {
        let len = self.model.layout.len;
        match &self.moments {
            Moments::Buffers(m1, m2) => self.gpu.read_f32([m1, m2][which], 0, len),
            Moments::Texels(m) => {
                let mut v = self.gpu.read_matrix(&m[which])?;
                v.truncate(len);
                Ok(v)
            }
        }
    }

    /// Puts a saved state back: parameters, Adam's moments and the counters.
    pub fn restore_state(&mut self, st: &TrainState) -> Result<()> {
        let len = self.model.layout.len;
        if st.params.len() != len || st.moment1.len() != len || st.moment2.len() != len {
            bail!("the checkpoint holds {} parameters but this model has {len}", st.params.len());
        }
        self.gpu.queue.write_buffer(&self.params, 0, bytemuck::cast_slice(&st.params));
        match &self.moments {
            Moments::Buffers(m1, m2) => {
                self.gpu.queue.write_buffer(m1, 0, bytemuck::cast_slice(&st.moment1));
                self.gpu.queue.write_buffer(m2, 0, bytemuck::cast_slice(&st.moment2));
            }
            Moments::Texels(m) => {
                self.gpu.write_matrix_flat(&m[0], &st.moment1);
                self.gpu.write_matrix_flat(&m[1], &st.moment2);
            }
        }
        self.steps_done = st.steps_done;
        self.counter = st.counter;
        self.model.params = st.params.clone();
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.copy_weights(&mut enc);
        self.gpu.submit(enc.finish());
        self.gpu.wait()
    }

    /// Whether Adam runs inside the weight-gradient GEMMs (gemm_adam_subgroup.wgsl).
    pub fn adam_fused(&self) -> bool {
        self.adam_fused
    }

    /// Where Adam's moments live.
    pub fn moment_store(&self) -> kernels::MomentStore {
        self.moments.store()
    }

    /// The flat gradient of the last step (for tests).
    pub fn read_grads(&self) -> Result<Vec<f32>> {
        if self.adam_fused {
            bail!("the flat gradient is not kept when Adam runs inside the weight-gradient GEMMs; set Hyper::fuse_adam = false");
        }
        self.gpu.read_f32(&self.grads, 0, self.model.layout.len)
    }

    pub fn wait(&self) -> Result<()> {
        self.gpu.wait()
    }
}
