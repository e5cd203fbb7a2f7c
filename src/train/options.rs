//! The training options: what the CLI parses, the checkpoint stores and
//! `--resume` reads back, the dataset they name, and the learning-rate schedule.

use crate::data::{
    cache_dir, crop_to_multiple, faces_dir, load_faces, load_mnist, mnist_dir, Dataset, FolderLoad, ImageSource,
    TrainSet,
};
use crate::gpu::AdapterChoice;
use crate::model::{Activation, Arch, Layout, Likelihood, ModelKind, Op, VaeConfig};
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

impl std::fmt::Display for DatasetChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DatasetChoice::Mnist => write!(f, "mnist"),
            DatasetChoice::Faces => write!(f, "faces"),
            DatasetChoice::Folder(p) => write!(f, "{}", p.display()),
        }
    }
}

// saved as the text `--dataset` takes
impl serde::Serialize for DatasetChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DatasetChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(text.parse().unwrap_or_else(|never| match never {}))
    }
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

/// The options of `elbo train`, written once: clap parses them (`elbo train --help`
/// shows these docs), the checkpoint stores the ones that define a run (serde: every
/// field not marked skip) and `--resume` reads those back (`resumed`).
#[derive(Clone, Debug, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainOptions {
    #[command(flatten)]
    #[serde(skip)]
    pub adapter: AdapterChoice,
    /// `mnist`, `faces` (100 LFW crops, 25x25), or a folder of PNG/JPEG images (searched recursively).
    #[arg(long, default_value = "mnist")]
    pub dataset: DatasetChoice,
    /// Folder holding the dataset's files [default: data/mnist or data/lfw-faces-25x25].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder datasets: 1 (greyscale) or 3 (RGB).
    #[arg(long, default_value_t = 1)]
    pub channels_in: usize,
    /// Folder datasets: resize every image to N or WxH pixels [default: keep; all must match].
    #[arg(long, value_parser = parse_size)]
    pub image_size: Option<(usize, usize)>,
    /// Faces and folders: the share of images held out for testing.
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Folder datasets: decode the images on every run and write no cache [default: decode
    /// once, then read them from $ELBO_CACHE_DIR, $XDG_CACHE_HOME/elbo/datasets or ~/.cache/elbo/datasets].
    #[arg(long)]
    #[serde(default)]
    pub no_cache: bool,
    /// Output folder [default: a new folder under runs/]
    #[arg(long)]
    #[serde(skip)]
    pub out: Option<PathBuf>,
    /// Architecture: dense layers, or 4x4 stride-2 convolutions (images cropped to a multiple of 2^layers).
    #[arg(long = "model", value_enum, default_value = "mlp")]
    pub arch: Arch,
    /// `vae`, or `ae`: a plain autoencoder (z = mu(x), reconstruction loss only).
    #[arg(long = "model-kind", value_enum, default_value = "vae")]
    pub kind: ModelKind,
    /// Decoder: Bernoulli (pixels in [0, 1]) or Gaussian with a learned per-pixel variance.
    #[arg(long, value_enum, default_value = "bernoulli")]
    pub likelihood: Likelihood,
    /// Epochs; with --resume, a count above the saved one extends the run.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Widths of the dense hidden layers, comma-separated (the decoder mirrors them), or
    /// none: the MLP's [400], or dense layers after the convolutions [none].
    #[arg(long, value_name = "W,W,..|none")]
    pub hidden: Option<Widths>,
    /// The decoder's dense hidden layers, first to last, or none [default: the
    /// encoder's, mirrored].
    #[arg(long, value_name = "W,W,..|none")]
    pub decoder_hidden: Option<Widths>,
    /// Channels of the stride-2 4x4 convolutions, first to last, one entry per layer
    /// (e.g. 32,64,128,256 for 64x64 images); transposed convolutions mirror them.
    #[arg(long = "channels", value_delimiter = ',', num_args = 1.., default_value = "32,64")]
    pub conv_channels: Vec<usize>,
    /// Dimension of the latent code z.
    #[arg(long, default_value_t = 20)]
    pub latent_dim: usize,
    /// The hidden layers' activation (dense and convolutional; the heads and the output
    /// layer have none).
    #[arg(long, value_enum, default_value = "relu")]
    pub activation: Activation,
    /// Adam learning rate; with --resume, a new rate from the resumed epoch on.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Multiply the learning rate by this after every epoch (1: constant, PyTorch's
    /// ExponentialLR); with --resume, a new decay from the resumed epoch on (e.g. --lr-decay 0.98).
    #[arg(long, default_value_t = 1.0)]
    pub lr_decay: f64,
    /// The epoch at which the schedule runs from `lr` (1, or where a resume changed it).
    #[arg(skip = 1usize)]
    pub lr_decay_start: usize,
    /// How the learning rate moves over the epochs: `exp` multiplies it by --lr-decay
    /// after every epoch; `burda` runs 3^i epochs at lr * 10^(-i/7) for i = 0..7 (3,280
    /// epochs in all, the last rate after that); `cosine` falls from lr to 0 over --epochs
    /// as (1 + cos(pi (epoch - 1) / epochs)) / 2.
    #[arg(long, value_enum, default_value = "exp")]
    pub lr_schedule: LrSchedule,
    /// Adam's epsilon (1e-8 as in PyTorch; Burda et al. used 1e-4).
    #[arg(long, default_value_t = 1e-8)]
    pub adam_eps: f32,
    /// A setting from the literature; the flags given beside it override its values.
    /// `burda-vae`: Burda et al.'s VAE on MNIST: --hidden 200,200 --activation tanh
    /// --latent-dim 50 --binarize dynamic --batch-size 20 --lr 1e-3 --lr-schedule burda
    /// --epochs 3280 --adam-eps 1e-4 --mc-samples 1. `burda-iwae`: the same with
    /// --objective iwae --k 50 in place of --mc-samples.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Weight of the KL term (1 = the ELBO).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f32,
    /// Epochs over which the KL weight rises linearly from 0 to --beta.
    #[arg(long, default_value_t = 0.0)]
    pub kl_warmup: f64,
    /// Free bits: a latent dimension whose batch-average KL is below this many nats gets no KL gradient.
    #[arg(long, default_value_t = 0.0)]
    pub free_bits: f32,
    /// Keep at most this many MiB of training images on the device, streaming a larger
    /// set in shards [default: the adapter's largest storage buffer].
    #[arg(long, value_name = "MIB")]
    pub data_limit_mib: Option<f64>,
    /// Monte-Carlo samples of z per image (the ELBO's estimate averages them).
    #[arg(long, default_value_t = 1)]
    pub mc_samples: usize,
    /// What training maximises: `elbo`, the evidence lower bound (its estimate averaged
    /// over --mc-samples draws), or `iwae`, the importance-weighted bound
    /// log (1/K) sum_k p(x, z_k) / q(z_k|x) over --k draws (Burda et al. 2015), tighter
    /// as K grows; train_loss, test_loss and val_loss are then that bound's loss.
    #[arg(long, value_enum, default_value = "elbo")]
    pub objective: Objective,
    /// Draws of z per image of --objective iwae [default: 50, Burda et al.'s].
    #[arg(long, value_name = "K")]
    pub k: Option<usize>,
    /// Seed of the initialisation, the data order and the GPU's random streams.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `dynamic`: resample binary pixels each time an image is used.
    #[arg(
        long,
        action = clap::ArgAction::Set,
        default_value = "none",
        value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["none", "dynamic"]), |v| v == "dynamic"),
    )]
    pub binarize: bool,
    /// Hold out N training images (or this fraction of them, below 1) for validation,
    /// chosen with --seed: their loss is val_loss in metrics.jsonl and loss.png, and
    /// best.safetensors keeps the model of the epoch where it was lowest. The test set
    /// chooses nothing.
    #[arg(long, value_name = "N|FRACTION")]
    pub validation: Option<f64>,
    /// Stop when the validation loss has not improved for this many epochs (needs --validation).
    #[arg(long, value_name = "PATIENCE")]
    pub early_stop: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Steps between loss read-backs (progress-bar updates).
    #[arg(long, default_value_t = 25)]
    #[serde(skip)]
    pub log_every: usize,
    /// Print nothing but errors.
    #[arg(long)]
    #[serde(skip)]
    pub quiet: bool,
    /// Print each epoch's metrics as one JSON line on stdout, and nothing else.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
    /// GEMM kernels: timed on this adapter (auto) or forced.
    #[arg(long, value_enum, default_value = "auto")]
    #[serde(skip)]
    pub gemm: crate::kernels::gemm::GemmPreference,
    /// Time the GEMM variants again on this adapter, replacing the choices this machine
    /// keeps (gemm-choices.json in the cache folder `elbo devices` names).
    #[arg(long)]
    #[serde(skip)]
    pub retime: bool,
    /// Continue the run in this folder from its checkpoint, with its saved options
    /// (an --epochs above the saved count extends the run).
    #[arg(long)]
    #[serde(skip)]
    pub resume: Option<PathBuf>,
    /// Train into an --out folder that holds another run, replacing it (its files are
    /// replaced as this run writes its own, from the end of its first epoch).
    #[arg(long)]
    #[serde(skip)]
    pub overwrite: bool,
    /// How model.safetensors and best.safetensors store the weights: `f32` as trained, or
    /// `f16` / `bf16` (half the size; the test loss this costs is printed at the end).
    /// The checkpoint keeps f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub save_dtype: crate::model::SaveDtype,
    /// Also save a checkpoint every N steps (one is always saved after every epoch and on Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// The options given on the command line (clap's ids, e.g. "lr"): with `resume`, they
    /// say which saved options the user changes.
    #[arg(skip)]
    #[serde(skip)]
    pub given: Vec<String>,
    /// Stop as Ctrl-C would after this many steps of this process (tests).
    #[arg(skip)]
    #[serde(skip)]
    pub stop_after_steps: Option<u32>,
}

/// Layer widths: comma-separated whole numbers, or `none` for no layer. Saved as a
/// list; checkpoints written before stacks existed hold one number.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Widths(pub Vec<usize>);

impl std::str::FromStr for Widths {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Widths, String> {
        if s.trim() == "none" {
            return Ok(Widths(Vec::new()));
        }
        let width = |v: &str| match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("'{v}' is not a layer width: give whole numbers of at least 1, comma-separated, or none")),
        };
        s.split(',').map(width).collect::<std::result::Result<_, _>>().map(Widths)
    }
}

impl<'de> serde::Deserialize<'de> for Widths {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Saved {
            One(usize),
            List(Vec<usize>),
        }
        Ok(Widths(match Saved::deserialize(d)? {
            Saved::One(w) => vec![w],
            Saved::List(v) => v,
        }))
    }
}

/// `N` or `WxH`, each at least 1.
pub fn parse_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split(['x', 'X']).collect();
    let num = |t: &str| t.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match parts.as_slice() {
        [n] => num(n).map(|n| (n, n)),
        [w, h] => num(w).zip(num(h)),
        _ => None,
    }
    .ok_or_else(|| format!("expected N or WxH with positive numbers, got {s:?}"))
}

impl Default for TrainOptions {
    /// The defaults `elbo train` has with no flags.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            o: TrainOptions,
        }
        <Defaults as clap::Parser>::parse_from(["elbo"]).o
    }
}

impl TrainOptions {
    /// Whether option `id` (clap's id: the field's name) was given on the command line.
    pub fn given(&self, id: &str) -> bool {
        self.given.iter().any(|g| g == id)
    }

    /// The options of a resumed run: the run-defining ones saved in its checkpoint
    /// (`saved`, as serde wrote them), the rest from `given`; a learning rate or decay
    /// given anew replaces the saved schedule from `next_epoch` on, and epochs given
    /// above the saved count extend the run.
    pub fn resumed(saved: &serde_json::Value, given: &TrainOptions, next_epoch: usize) -> Result<TrainOptions> {
        let saved: TrainOptions = serde_json::from_value(saved.clone())
            .map_err(|e| anyhow::anyhow!("the checkpoint's options are damaged: {e}"))?;
        // what a resumed run may change; the rest defines the run
        const CHANGEABLE: [&str; 15] = [
            "retime",
            "save_dtype",
            "resume",
            "epochs",
            "lr",
            "lr_decay",
            "log_every",
            "quiet",
            "json",
            "gemm",
            "no_cache",
            "backend",
            "adapter",
            "checkpoint_every",
            "early_stop",
        ];
        let fixed: Vec<String> = given
            .given
            .iter()
            .filter(|id| !CHANGEABLE.contains(&id.as_str()))
            .map(|id| match id.as_str() {
                "arch" => "--model".to_string(),
                "kind" => "--model-kind".to_string(),
                "conv_channels" => "--channels".to_string(),
                other => format!("--{}", other.replace('_', "-")),
            })
            .collect();
        if !fixed.is_empty() {
            bail!(
                "{} cannot change when a run is resumed (the checkpoint keeps the run's own; a resumed run writes into its folder); drop {} or start a new run. A resumed run takes --epochs, --lr, --lr-decay, --early-stop, --checkpoint-every and the display and adapter options",
                fixed.join(", "),
                if fixed.len() == 1 { "it" } else { "them" }
            );
        }
        let mut o = TrainOptions {
            adapter: given.adapter.clone(),
            // a resumed run writes into the folder it resumes
            out: given.resume.clone(),
            log_every: given.log_every,
            quiet: given.quiet,
            no_cache: given.no_cache,
            json: given.json,
            gemm: given.gemm,
            retime: given.retime,
            checkpoint_every: if given.given("checkpoint_every") {
                given.checkpoint_every
            } else {
                saved.checkpoint_every
            },
            early_stop: if given.given("early_stop") { given.early_stop } else { saved.early_stop },
            save_dtype: if given.given("save_dtype") { given.save_dtype } else { saved.save_dtype },
            resume: given.resume.clone(),
            given: given.given.clone(),
            stop_after_steps: given.stop_after_steps,
            ..saved
        };
        if given.given("epochs") {
            o.epochs = o.epochs.max(given.epochs);
        }
        if o.lr_schedule != LrSchedule::Exp {
            if given.given("lr") {
                o.lr = given.lr;
            }
        } else if given.given("lr") || given.given("lr_decay") {
            o.lr = if given.given("lr") { given.lr } else { o.lr_at(next_epoch) };
            if given.given("lr_decay") {
                o.lr_decay = given.lr_decay;
            }
            o.lr_decay_start = next_epoch;
        }
        Ok(o)
    }

    /// Adam's learning rate in `epoch` (1-based) under `lr_schedule`: for `exp`, `lr`
    /// decayed once per epoch since the schedule started; `burda` and `cosine` follow the
    /// epoch count from the run's start.
    pub fn lr_at(&self, epoch: usize) -> f32 {
        let lr = self.lr as f64;
        let rate = match self.lr_schedule {
            LrSchedule::Exp => lr * self.lr_decay.powi(epoch.saturating_sub(self.lr_decay_start) as i32),
            LrSchedule::Burda => lr * 10f64.powf(-(burda_stage(epoch) as f64) / 7.0),
            LrSchedule::Cosine => {
                let t = (epoch.max(1) - 1) as f64 / self.epochs.max(1) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
            }
        };
        rate as f32
    }
}

/// Training objectives (`--objective`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    #[default]
    Elbo,
    Iwae,
}

impl TrainOptions {
    /// Rows per image: --k draws for the importance-weighted bound, else --mc-samples.
    pub fn samples(&self) -> usize {
        match self.objective {
            Objective::Elbo => self.mc_samples,
            Objective::Iwae => self.k.unwrap_or(50),
        }
    }
}

/// Learning-rate schedules (`--lr-schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    Exp,
    Burda,
    Cosine,
}

/// Settings from the literature (`--preset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Burda, Grosse and Salakhutdinov (2015), the VAE of their MNIST table (k = 1).
    BurdaVae,
    /// The same model and schedule trained on the importance-weighted bound with k = 50.
    BurdaIwae,
}

/// Burda et al.'s schedule: stage i (0-based) runs 3^i epochs at 10^(-i/7) of the
/// base rate, for i = 0..7; epoch `epoch` (1-based) is in stage `burda_stage(epoch)`,
/// the last stage after the 3,280 epochs.
pub fn burda_stage(epoch: usize) -> u32 {
    let mut end = 0;
    for i in 0..8u32 {
        end += 3usize.pow(i);
        if epoch <= end {
            return i;
        }
    }
    7
}

/// Burda et al.'s model and schedule, shared by both of their presets.
const BURDA: [(&str, &str); 11] = [
    ("dataset", "--dataset mnist"),
    ("arch", "--model mlp"),
    ("hidden", "--hidden 200,200"),
    ("activation", "--activation tanh"),
    ("latent_dim", "--latent-dim 50"),
    ("binarize", "--binarize dynamic"),
    ("batch_size", "--batch-size 20"),
    ("lr", "--lr 1e-3"),
    ("lr_schedule", "--lr-schedule burda"),
    ("epochs", "--epochs 3280"),
    ("adam_eps", "--adam-eps 1e-4"),
];

/// The option values `preset` sets, as (clap id, the flag as the user would give it).
fn preset_flags(preset: Preset) -> Vec<(&'static str, &'static str)> {
    let own: &[(&str, &str)] = match preset {
        Preset::BurdaVae => &[("mc_samples", "--mc-samples 1")],
        Preset::BurdaIwae => &[("objective", "--objective iwae"), ("k", "--k 50")],
    };
    BURDA.iter().chain(own).copied().collect()
}

impl TrainOptions {
    /// These options with `--preset`'s values in place of those not given on the
    /// command line, and a line that names the preset and every value it set; the
    /// options themselves and None without a preset.
    pub fn with_preset(&self) -> Result<(TrainOptions, Option<String>)> {
        let Some(preset) = self.preset else {
            return Ok((self.clone(), None));
        };
        let flags = preset_flags(preset);
        let mut args = vec!["elbo".to_string()];
        let mut set = Vec::new();
        let mut kept = Vec::new();
        for (id, flag) in &flags {
            if self.given(id) {
                kept.push(*flag);
                continue;
            }
            args.extend(flag.split(' ').map(str::to_string));
            set.push(*flag);
        }
        #[derive(clap::Parser)]
        struct Values {
            #[command(flatten)]
            o: TrainOptions,
        }
        let values = <Values as clap::Parser>::try_parse_from(&args)
            .map_err(|e| anyhow::anyhow!("preset {preset:?} does not parse: {e}"))?
            .o;
        let mut o = self.clone();
        for (id, _) in flags.iter().filter(|(id, _)| !self.given(id)) {
            match *id {
                "dataset" => o.dataset = values.dataset.clone(),
                "arch" => o.arch = values.arch,
                "hidden" => o.hidden = values.hidden.clone(),
                "activation" => o.activation = values.activation,
                "latent_dim" => o.latent_dim = values.latent_dim,
                "binarize" => o.binarize = values.binarize,
                "batch_size" => o.batch_size = values.batch_size,
                "lr" => o.lr = values.lr,
                "lr_schedule" => o.lr_schedule = values.lr_schedule,
                "epochs" => o.epochs = values.epochs,
                "adam_eps" => o.adam_eps = values.adam_eps,
                "mc_samples" => o.mc_samples = values.mc_samples,
                "objective" => o.objective = values.objective,
                "k" => o.k = values.k,
                other => anyhow::bail!("preset option {other} has no field"),
            }
        }
        let name = clap::ValueEnum::to_possible_value(&preset).map(|v| v.get_name().to_string()).unwrap_or_default();
        let mut line = format!("preset {name}: {}", set.join(" "));
        if !kept.is_empty() {
            line += &format!(" (given instead of the preset's {})", kept.join(", "));
        }
        Ok((o, Some(line)))
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

/// Loads the chosen dataset, cropped to a multiple of 2^depth for the convolutional model.
pub fn load_dataset(opts: &TrainOptions) -> Result<(Dataset, Dataset, String)> {
    let (train, test, from) = load_sets(opts, false)?;
    Ok((train.into_dataset()?, test, from))
}

/// As [`load_dataset`], for training: a folder read from its cache leaves the training
/// set in the cache file ([`TrainSet::Cached`]), read a shard at a time where it is
/// streamed; and `--validation`'s images, taken out of the training set.
pub fn load_training_data(opts: &TrainOptions) -> Result<(TrainSet, Dataset, Option<Dataset>, String)> {
    let (mut train, test, from) = load_sets(opts, true)?;
    let validation = match opts.validation {
        Some(v) => {
            let len = train.dims().len;
            let n = if v >= 1.0 { v as usize } else { (v * len as f64).round() as usize };
            if v.is_nan() || v <= 0.0 || n == 0 || n >= len {
                bail!(
                    "--validation {v} leaves no validation image or no training image of the {len}; give a count below {len} or a fraction in (0, 1), e.g. 0.1"
                );
            }
            Some(train.split_validation(n, opts.seed)?)
        }
        None => None,
    };
    Ok((train, test, validation, from))
}

fn load_sets(opts: &TrainOptions, streaming: bool) -> Result<(TrainSet, Dataset, String)> {
    let (mut train, mut test, from) = match &opts.dataset {
        DatasetChoice::Mnist => {
            let dir = mnist_dir(opts.data_dir.as_deref());
            let (a, b) = load_mnist(&dir)?;
            (TrainSet::Memory(a), b, dir.display().to_string())
        }
        DatasetChoice::Faces => {
            let dir = faces_dir(opts.data_dir.as_deref());
            let (a, b) = load_faces(&dir, opts.test_fraction, opts.seed)?;
            (TrainSet::Memory(a), b, dir.display().to_string())
        }
        DatasetChoice::Folder(dir) => {
            let load = FolderLoad {
                channels: opts.channels_in,
                size: opts.image_size,
                test_fraction: opts.test_fraction,
                seed: opts.seed,
                cache_dir: if opts.no_cache { None } else { cache_dir() },
                quiet: opts.quiet || opts.json,
            };
            let (a, b) = if streaming {
                let (a, b, _) = load.load_streaming(dir)?;
                (a, b)
            } else {
                let (a, b, _) = load.load(dir)?;
                (TrainSet::Memory(a), b)
            };
            (a, b, dir.display().to_string())
        }
    };
    if let Some(n) = opts.train_limit {
        train.truncate(n);
    }
    if let Some(n) = opts.test_limit {
        test.truncate(n);
    }
    // each stride-2 convolution halves the image: crop to a multiple of 2^depth
    let side = 1usize << opts.conv_channels.len().min(16);
    let d = train.dims();
    if opts.arch == Arch::Conv && (!d.width.is_multiple_of(side) || !d.height.is_multiple_of(side)) {
        if d.width < side || d.height < side {
            bail!(
                "{} convolutions (--channels {}) need images of at least {side}x{side} pixels, got {}x{}; give fewer channel counts or larger images (--image-size)",
                opts.conv_channels.len(),
                crate::model::list(&opts.conv_channels),
                d.width,
                d.height
            );
        }
        train.crop_to_multiple(side);
        test = crop_to_multiple(&test, side);
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
        "{} {kind}, latent {}, {lik} decoder, {}: {}",
        if c.arch == Arch::Mlp { "MLP" } else { "convolutional" },
        c.latent,
        c.activation.name(),
        layers.join(", ")
    )
}
