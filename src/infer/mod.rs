//! Using a trained model: an opened model ([`OpenModel`]) and the commands on it,
//! [`explore`] (sample, reconstruct, manifold, traverse, interpolate, embed),
//! [`eval`], [`restore`], [`probe`] and [`finetune`]. Every command runs the
//! model's encoder and decoder on the GPU through the same kernels and dispatch
//! lists as training.

pub mod eval;
pub mod explore;
pub mod finetune;
pub mod probe;
pub mod restore;

pub use eval::*;
pub use explore::*;
pub use probe::*;
pub use restore::*;

use crate::data::Dataset;
use crate::data::FolderLoad;
use crate::gpu::{AdapterChoice, Gpu};
use crate::kernels::gemm::Choice;
use crate::model::Model;
use crate::plot::grid::{save_grid, Grid};
use crate::step::{ForwardOptions, Net};
use crate::train::{load_dataset, DatasetChoice, TrainOptions};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What every command takes: the model, the data it was trained on, the adapter.
#[derive(Clone, Debug)]
pub struct UseOptions {
    /// A run folder (holding model.safetensors) or a .safetensors file.
    pub model: PathBuf,
    pub dataset: DatasetChoice,
    pub data_dir: Option<PathBuf>,
    pub channels_in: usize,
    pub image_size: Option<(usize, usize)>,
    pub test_fraction: f64,
    /// The user's own images (a file or a folder) in place of the test split.
    pub images: Option<PathBuf>,
    pub seed: u64,
    /// Where to write [default: beside the model].
    pub out: Option<PathBuf>,
    pub adapter: AdapterChoice,
    pub quiet: bool,
}

/// The checkpoint file of `--model`, and the folder outputs go to by default.
pub fn model_paths(given: &Path) -> Result<(PathBuf, PathBuf)> {
    if given.is_dir() {
        let file = given.join("model.safetensors");
        if !file.exists() {
            bail!(
                "{} has no model.safetensors; pass a run folder written by `elbo train` or a .safetensors file",
                given.display()
            );
        }
        return Ok((file, given.to_path_buf()));
    }
    if !given.exists() {
        bail!("{} does not exist; pass a run folder written by `elbo train` or its model.safetensors", given.display());
    }
    let dir = given.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok((given.to_path_buf(), dir))
}

/// A model file and the GEMM variants its training recorded in it (none in files of
/// other writers), for `Net::forward_only`.
pub fn load_model(file: &Path) -> Result<(Model, Choice)> {
    // one read serves the tensors and the metadata
    let bytes = std::fs::read(file).with_context(|| format!("cannot read model file {}", file.display()))?;
    // a training checkpoint holds Adam's state beside the weights, not a model's metadata
    if Model::metadata(&bytes).is_ok_and(|m| m.contains_key("elbo.checkpoint")) {
        let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        bail!(
            "{} is a training checkpoint (for --resume), not a model; pass its run folder {} or {}",
            file.display(),
            dir.display(),
            dir.join("model.safetensors").display()
        );
    }
    let model =
        Model::from_safetensors(&bytes).with_context(|| format!("{} is not a usable elbo model", file.display()))?;
    let gemm = match Model::metadata(&bytes)?.get("gemm") {
        Some(text) => serde_json::from_str(text)
            .map_err(anyhow::Error::from)
            .and_then(|v| Choice::from_json(&v))
            .with_context(|| format!("{}: its recorded GEMM variants are damaged", file.display()))?,
        None => Choice::default(),
    };
    Ok((model, gemm))
}

/// An opened model with the data it is used on.
pub struct OpenModel {
    pub gpu: Gpu,
    pub model: Model,
    /// The GEMM variants training recorded in the model (none in files of other
    /// writers): inference reuses them and times nothing (`Choice::untimed`).
    pub gemm: Choice,
    pub train: Dataset,
    pub test: Dataset,
    pub out_dir: PathBuf,
    /// Whether outputs replace files of the same name (`--overwrite`); otherwise each
    /// takes the first free name (`output_path`).
    pub overwrite: bool,
    /// No spinner while kernels compile (`--quiet`).
    pub quiet: bool,
}

impl OpenModel {
    pub fn open(opts: &UseOptions) -> Result<OpenModel> {
        let (file, out_dir) = model_paths(&opts.model)?;
        let (model, gemm) = load_model(&file)?;
        let c = &model.config;
        let load = TrainOptions {
            dataset: opts.dataset.clone(),
            data_dir: opts.data_dir.clone(),
            channels_in: c.channels,
            image_size: opts
                .image_size
                .or(Some((c.width, c.height)))
                .filter(|_| matches!(opts.dataset, DatasetChoice::Folder(_))),
            test_fraction: opts.test_fraction,
            seed: opts.seed,
            arch: c.arch,
            quiet: opts.quiet,
            ..Default::default()
        };
        let (train, test) = match &opts.images {
            // the user's images stand for both sets: the commands that read the training
            // set (a probe's features) see them too
            Some(path) => {
                let all = FolderLoad {
                    channels: c.channels,
                    size: Some((c.width, c.height)),
                    test_fraction: 0.5,
                    seed: opts.seed,
                    cache_dir: None,
                    quiet: opts.quiet,
                }
                .load_all(path)?;
                (all.clone(), all)
            }
            None => {
                let (train, test, _) = load_dataset(&load)?;
                (train, test)
            }
        };
        if (test.width, test.height, test.channels) != (c.width, c.height, c.channels) {
            bail!(
                "the model was trained on {}x{} images with {} channel(s) but the data is {}x{} with {}; pass the --dataset (and --image-size) it was trained with",
                c.width, c.height, c.channels, test.width, test.height, test.channels
            );
        }
        let gpu = Gpu::new(&opts.adapter)?;
        let out_dir = opts.out.clone().unwrap_or(out_dir);
        std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
        Ok(OpenModel { gpu, model, gemm, train, test, out_dir, overwrite: false, quiet: opts.quiet })
    }

    /// The model forward-only over the test set, `samples` rows per image.
    pub fn net(&self, batch: usize, samples: usize) -> Result<Net<'_>> {
        self.net_over(&self.test, ForwardOptions { batch, samples, binarize: false, seed: 1 })
    }

    /// The model forward-only over `data` (as its test set).
    /// Shows `train`'s spinner while the kernels compile (seconds on a CPU adapter the
    /// first time a model's shapes are seen; Mesa caches them on disk after).
    pub fn net_over(&self, data: &Dataset, o: ForwardOptions) -> Result<Net<'_>> {
        let spin = if self.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
        spin.set_message("building the kernels for this model");
        spin.enable_steady_tick(std::time::Duration::from_millis(120));
        let net = Net::forward_only(&self.gpu, self.model.clone(), o, self.gemm.clone(), data);
        spin.finish_and_clear();
        net
    }

    /// Where output `name` goes in the output folder: `name` itself, or, where a file of
    /// that name exists (training's pictures, an earlier command's) and `overwrite` is off,
    /// the first free `stem-2.ext`, `stem-3.ext`, ... With several `names` (one output of
    /// several files), one number frees them all.
    pub fn output_paths(&self, names: &[&str]) -> Vec<PathBuf> {
        let numbered = |n: usize| -> Vec<PathBuf> {
            names
                .iter()
                .map(|name| {
                    if n == 1 {
                        return self.out_dir.join(name);
                    }
                    let p = Path::new(name);
                    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
                    let ext = p.extension().and_then(|s| s.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
                    self.out_dir.join(format!("{stem}-{n}{ext}"))
                })
                .collect()
        };
        if self.overwrite {
            return numbered(1);
        }
        (1..).map(numbered).find(|paths| paths.iter().all(|p| !p.exists())).expect("a free name")
    }

    fn save(&self, name: &str, tiles: &[&[f32]], cols: usize) -> Result<PathBuf> {
        let c = &self.model.config;
        let path = self.output_paths(&[name]).remove(0);
        save_grid(&path, tiles, &Grid::of(c, cols))?;
        Ok(path)
    }

    /// Decodes any number of codes (n, L), in chunks the textures hold.
    pub fn decode_all(&self, t: &mut Net, z: &[f32]) -> Result<Vec<f32>> {
        let lat = self.model.config.latent;
        let mut out = Vec::new();
        for chunk in z.chunks(t.rows() * lat) {
            out.extend(t.decode(chunk)?);
        }
        Ok(out)
    }

    /// Posterior means (n, L) and log-variances of the first `n` test images.
    pub fn encode(&self, t: &mut Net, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mut mu, mut lv) = (Vec::new(), Vec::new());
        let lat = self.model.config.latent;
        for b in 0..n.div_ceil(t.batch) {
            let rows = t.eval_rows(b, 0.0)?;
            mu.extend(rows.mu);
            lv.extend(rows.logvar);
        }
        mu.truncate(n * lat);
        lv.truncate(n * lat);
        Ok((mu, lv))
    }

    fn image(&self, i: usize) -> Vec<f32> {
        self.test.image(i).iter().map(|&b| b as f32 / 255.0).collect()
    }
}
