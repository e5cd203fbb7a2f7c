//! The training options: what the CLI parses, the checkpoint stores and
//! `--resume` reads back, the dataset they name, and the learning-rate schedule.

use crate::data::{crop_to_multiple, faces_dir, load_faces, load_image_folder, load_mnist, mnist_dir, Dataset};
use crate::gpu::AdapterChoice;
use crate::model::{Arch, Layout, Likelihood, ModelKind, Op, VaeConfig};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;

/// Which images to train on.
#[derive(Clone, Debug, PartialEq)]
pub enum DatasetChoice {
    /// MNIST from `--data-dir` (default data/mnist).
    Mnist,
    /// The 100 LFW face crops (25x25 greyscale) in data/lfw-faces-25x25.
    Faces,
    /// Any folder of PNG/JPEG images, searched recursively.
    Folder(PathBuf),
}

impl std::str::FromStr for DatasetChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "mnist" => DatasetChoice::Mnist,
            "faces" => DatasetChoice::Faces,
            path => DatasetChoice::Folder(PathBuf::from(path)),
        })
    }
}

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub dataset: DatasetChoice,
    pub data_dir: Option<PathBuf>,
    /// Folder datasets: 1 (greyscale) or 3 (RGB).
    pub channels_in: usize,
    /// Folder datasets: resize every image to (width, height).
    pub image_size: Option<(usize, usize)>,
    /// Faces and folders: the share held out for testing.
    pub test_fraction: f64,
    pub out: Option<PathBuf>,
    pub arch: Arch,
    pub kind: ModelKind,
    pub likelihood: Likelihood,
    pub epochs: usize,
    pub batch_size: usize,
    /// Default: 400 for the MLP, 0 (no dense layer) for the convolutional model.
    pub hidden: Option<usize>,
    pub conv_channels: [usize; 2],
    pub latent_dim: usize,
    pub lr: f32,
    /// The learning rate is multiplied by this after every epoch (PyTorch's ExponentialLR).
    pub lr_decay: f64,
    /// The epoch at which the schedule runs from `lr` (1, or where a resume changed it).
    pub lr_decay_start: usize,
    /// With `resume`: `lr` / `lr_decay` were given and replace the saved schedule from
    /// the resumed epoch on.
    pub lr_given: bool,
    pub lr_decay_given: bool,
    pub beta: f32,
    /// Epochs over which the KL weight rises linearly from 0 to beta.
    pub kl_warmup: f64,
    pub free_bits: f32,
    pub mc_samples: usize,
    pub seed: u64,
    pub binarize: bool,
    /// Use only the first N training / test images (quick runs).
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub log_every: usize,
    pub quiet: bool,
    /// Print each epoch's metrics as one JSON line on stdout, and nothing else.
    pub json: bool,
    pub adapter: AdapterChoice,
    pub gemm: crate::kernels::gemm::GemmPreference,
    /// Continue the run in this folder from its checkpoint (its saved options win).
    pub resume: Option<PathBuf>,
    /// With `resume`: train up to this many epochs when it exceeds the saved count.
    pub extend_to: Option<usize>,
    /// Also checkpoint every N steps (0: at the end of every epoch only).
    pub checkpoint_every: usize,
    /// Stop as Ctrl-C would after this many steps of this process (tests).
    pub stop_after_steps: Option<u32>,
}

fn enum_name<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

impl TrainOptions {
    /// The options that define a run, as saved in its checkpoint.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "dataset": match &self.dataset {
                DatasetChoice::Mnist => "mnist".to_string(),
                DatasetChoice::Faces => "faces".to_string(),
                DatasetChoice::Folder(p) => p.display().to_string(),
            },
            "data_dir": self.data_dir.as_ref().map(|p| p.display().to_string()),
            "channels_in": self.channels_in,
            "image_size": self.image_size.map(|(w, h)| [w, h]),
            "test_fraction": self.test_fraction,
            "arch": enum_name(self.arch),
            "kind": enum_name(self.kind),
            "likelihood": enum_name(self.likelihood),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "hidden": self.hidden,
            "conv_channels": self.conv_channels,
            "latent_dim": self.latent_dim,
            "lr": self.lr,
            "lr_decay": self.lr_decay,
            "lr_decay_start": self.lr_decay_start,
            "beta": self.beta,
            "kl_warmup": self.kl_warmup,
            "free_bits": self.free_bits,
            "mc_samples": self.mc_samples,
            "seed": self.seed,
            "binarize": self.binarize,
            "train_limit": self.train_limit,
            "test_limit": self.test_limit,
            "checkpoint_every": self.checkpoint_every,
        })
    }

    /// Adam's learning rate in `epoch` (1-based): `lr` decayed once per epoch since the schedule started.
    pub fn lr_at(&self, epoch: usize) -> f32 {
        (self.lr as f64 * self.lr_decay.powi(epoch.saturating_sub(self.lr_decay_start) as i32)) as f32
    }

    /// `base` with the saved run-defining options of `v` put back.
    pub fn from_json(v: &serde_json::Value, base: &TrainOptions) -> Result<TrainOptions> {
        let bad = |k: &str| anyhow::anyhow!("the checkpoint's option {k} is missing or damaged");
        let u = |k: &str| v[k].as_u64().map(|x| x as usize).ok_or_else(|| bad(k));
        let f = |k: &str| v[k].as_f64().ok_or_else(|| bad(k));
        let opt_u = |k: &str| v[k].as_u64().map(|x| x as usize);
        let e = |k: &str| v[k].as_str().ok_or_else(|| bad(k));
        let parse = |k: &str| -> Result<String> { Ok(e(k)?.to_string()) };
        use clap::ValueEnum;
        Ok(TrainOptions {
            dataset: parse("dataset")?.parse().unwrap(),
            data_dir: v["data_dir"].as_str().map(PathBuf::from),
            channels_in: u("channels_in")?,
            image_size: v["image_size"]
                .as_array()
                .and_then(|a| Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize))),
            test_fraction: f("test_fraction")?,
            arch: Arch::from_str(e("arch")?, true).map_err(|_| bad("arch"))?,
            kind: ModelKind::from_str(e("kind")?, true).map_err(|_| bad("kind"))?,
            likelihood: Likelihood::from_str(e("likelihood")?, true).map_err(|_| bad("likelihood"))?,
            epochs: u("epochs")?,
            batch_size: u("batch_size")?,
            hidden: opt_u("hidden"),
            conv_channels: [
                v["conv_channels"][0].as_u64().ok_or_else(|| bad("conv_channels"))? as usize,
                v["conv_channels"][1].as_u64().ok_or_else(|| bad("conv_channels"))? as usize,
            ],
            latent_dim: u("latent_dim")?,
            lr: f("lr")? as f32,
            // runs saved before the schedule existed had a constant rate
            lr_decay: v["lr_decay"].as_f64().unwrap_or(1.0),
            lr_decay_start: opt_u("lr_decay_start").unwrap_or(1),
            beta: f("beta")? as f32,
            kl_warmup: f("kl_warmup")?,
            free_bits: f("free_bits")? as f32,
            mc_samples: u("mc_samples")?,
            seed: v["seed"].as_u64().ok_or_else(|| bad("seed"))?,
            binarize: v["binarize"].as_bool().ok_or_else(|| bad("binarize"))?,
            train_limit: opt_u("train_limit"),
            test_limit: opt_u("test_limit"),
            checkpoint_every: u("checkpoint_every")?,
            ..base.clone()
        })
    }
}

/// The order of the training images in `epoch`: a function of the seed and the
/// epoch alone, so a resumed run sees the same order.
pub fn epoch_order(seed: u64, epoch: usize, len: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    order.shuffle(&mut rng);
    order
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            dataset: DatasetChoice::Mnist,
            data_dir: None,
            channels_in: 1,
            image_size: None,
            test_fraction: 0.1,
            out: None,
            arch: Arch::Mlp,
            kind: ModelKind::Vae,
            likelihood: Likelihood::Bernoulli,
            epochs: 10,
            batch_size: 128,
            hidden: None,
            conv_channels: [32, 64],
            latent_dim: 20,
            lr: 1e-3,
            lr_decay: 1.0,
            lr_decay_start: 1,
            lr_given: false,
            lr_decay_given: false,
            beta: 1.0,
            kl_warmup: 0.0,
            free_bits: 0.0,
            mc_samples: 1,
            seed: 1,
            binarize: false,
            train_limit: None,
            test_limit: None,
            log_every: 25,
            quiet: false,
            json: false,
            adapter: AdapterChoice::default(),
            gemm: crate::kernels::gemm::GemmPreference::Auto,
            resume: None,
            extend_to: None,
            checkpoint_every: 0,
            stop_after_steps: None,
        }
    }
}

/// Loads the chosen dataset, cropped to a multiple of 4 for the convolutional model.
pub fn load_dataset(opts: &TrainOptions) -> Result<(Dataset, Dataset, String)> {
    let (mut train, mut test, from) = match &opts.dataset {
        DatasetChoice::Mnist => {
            let dir = mnist_dir(opts.data_dir.as_deref());
            let (a, b) = load_mnist(&dir)?;
            (a, b, dir.display().to_string())
        }
        DatasetChoice::Faces => {
            let dir = faces_dir(opts.data_dir.as_deref());
            let (a, b) = load_faces(&dir, opts.test_fraction, opts.seed)?;
            (a, b, dir.display().to_string())
        }
        DatasetChoice::Folder(dir) => {
            let (a, b) = load_image_folder(dir, opts.channels_in, opts.image_size, opts.test_fraction, opts.seed)?;
            (a, b, dir.display().to_string())
        }
    };
    if let Some(n) = opts.train_limit {
        train.truncate(n);
    }
    if let Some(n) = opts.test_limit {
        test.truncate(n);
    }
    if opts.arch == Arch::Conv && (!train.width.is_multiple_of(4) || !train.height.is_multiple_of(4)) {
        if train.width < 4 || train.height < 4 {
            bail!("the convolutional model needs images of at least 4x4 pixels, got {}x{}", train.width, train.height);
        }
        train = crop_to_multiple(&train, 4);
        test = crop_to_multiple(&test, 4);
    }
    Ok((train, test, from))
}

/// One line naming the architecture.
pub fn describe(c: &VaeConfig) -> String {
    let kind = match c.kind {
        ModelKind::Vae => "VAE",
        ModelKind::Ae => "autoencoder",
    };
    let lik = match c.likelihood {
        Likelihood::Bernoulli => "Bernoulli",
        Likelihood::Gaussian => "Gaussian",
    };
    let layers: Vec<String> = Layout::new(c)
        .layers()
        .iter()
        .map(|l| match l.op {
            Op::Dense => format!("{} {}->{}", l.name, l.input.values(), l.output.values()),
            _ => format!(
                "{} {}x{}x{}->{}x{}x{}",
                l.name, l.input.h, l.input.w, l.input.c, l.output.h, l.output.w, l.output.c
            ),
        })
        .collect();
    format!(
        "{} {kind}, latent {}, {lik} decoder: {}",
        if c.arch == Arch::Mlp { "MLP" } else { "convolutional" },
        c.latent,
        layers.join(", ")
    )
}
