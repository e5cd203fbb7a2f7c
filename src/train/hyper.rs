//! The optimisation settings the kernels see, and Adam's constants.

use crate::kernels::gemm::{self, GemmPreference};

/// Adam's β1, β2 and ε (PyTorch's defaults).
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
    /// Monte-Carlo samples of z per image (the importance-weighted bound's K).
    pub samples: usize,
    /// Train the importance-weighted bound over each image's `samples` draws (Burda et al.)
    /// in place of their mean ELBO.
    pub iwae: bool,
    /// Free bits: per-dimension KL floor in nats (0: off).
    pub free_bits: f32,
    /// GEMM variants decided earlier (a resumed run replays its first run's choice).
    pub gemm_fixed: Option<gemm::Choice>,
    /// Fuse Adam into the weight-gradient GEMMs where the adapter has the kernel
    /// (gemm_adam_subgroup.wgsl: CPU adapters) and every layer is dense (default: on).
    /// Fused, the flat gradient is not kept (`Trainer::read_grads` fails). Results are
    /// the same either way.
    pub fuse_adam: bool,
    /// The most bytes of training images held on the device at once: a larger set is
    /// streamed in shards (None: the adapter's largest storage buffer).
    pub data_limit: Option<u64>,
    /// Adam's ε (ADAM_EPS unless set).
    pub adam_eps: f32,
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
            iwae: false,
            free_bits: 0.0,
            gemm_fixed: None,
            fuse_adam: true,
            data_limit: None,
            adam_eps: ADAM_EPS,
        }
    }
}
