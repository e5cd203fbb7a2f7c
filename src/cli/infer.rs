//! The commands on a trained model: their flags and what they print.

use anyhow::Result;
use clap::Args;
use elbo::gpu::AdapterChoice;
use std::path::PathBuf;

#[derive(Args)]
pub struct UseArgs {
    #[command(flatten)]
    adapter: AdapterChoice,
    /// A run folder written by `elbo train`, or its model.safetensors.
    #[arg(long)]
    model: PathBuf,
    /// The data the model was trained on: `mnist`, `faces`, or a folder of images.
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// Folder holding the dataset's files [default: data/mnist or data/lfw-faces-25x25].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Folder datasets: resize to N or WxH [default: the model's size].
    #[arg(long, value_parser = elbo::train::parse_size)]
    image_size: Option<(usize, usize)>,
    /// Faces and folders: the test share and seed of the split used in training.
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    /// Your own images in place of the dataset's test split: a PNG or JPEG file, or a
    /// folder of them (searched recursively), resized to the model's size.
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder [default: the model's folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print nothing but the paths written (and errors).
    #[arg(long)]
    quiet: bool,
    /// Replace files of the same name in the output folder [default: keep them and write
    /// NAME-2.png, NAME-3.png, ...].
    #[arg(long)]
    overwrite: bool,
}

impl UseArgs {
    fn options(&self) -> elbo::infer::UseOptions {
        elbo::infer::UseOptions {
            model: self.model.clone(),
            dataset: self.dataset.parse().unwrap(),
            data_dir: self.data_dir.clone(),
            channels_in: 1,
            image_size: self.image_size,
            test_fraction: self.test_fraction,
            images: self.images.clone(),
            seed: self.seed,
            out: self.out.clone(),
            adapter: self.adapter.clone(),
            quiet: self.quiet,
        }
    }

    /// The model these arguments name, opened, writing as `--overwrite` says.
    fn open(&self) -> Result<elbo::infer::OpenModel> {
        let mut s = elbo::infer::OpenModel::open(&self.options())?;
        s.overwrite = self.overwrite;
        Ok(s)
    }
}

#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Images to draw.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Scales the prior's standard deviation.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
}

#[derive(Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Test images to reconstruct.
    #[arg(long, default_value_t = 32)]
    n: usize,
}

#[derive(Args)]
pub struct ManifoldArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Images per side.
    #[arg(long, default_value_t = 20)]
    grid: usize,
    /// The two latent dimensions to sweep.
    #[arg(long, value_delimiter = ',', num_args = 2, default_value = "0,1")]
    dims: Vec<usize>,
}

#[derive(Args)]
pub struct TraverseArgs {
    #[command(flatten)]
    common: UseArgs,
    /// The test image whose posterior mean fixes the other dimensions.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// How many dimensions, by largest average KL [default: all, at most 20].
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Images per sweep.
    #[arg(long, default_value_t = 11)]
    steps: usize,
}

#[derive(Args)]
pub struct InterpolateArgs {
    #[command(flatten)]
    common: UseArgs,
    #[arg(long, default_value_t = 0)]
    from: usize,
    #[arg(long, default_value_t = 1)]
    to: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
}

#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Embed only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Test images to restore (at most 256).
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// A PNG mask: white pixels observed, black unknown (resized to the model's size).
    #[arg(long, conflicts_with_all = ["mask_kind", "noise"])]
    mask: Option<PathBuf>,
    /// Built-in masks: half (bottom unknown), center (a centred square unknown), random:P.
    #[arg(long, conflicts_with = "noise")]
    mask_kind: Option<String>,
    /// Denoise instead: add Gaussian noise of this standard deviation to every pixel; the
    /// search scores the noisy pixels as N(decoder mean, SIGMA^2).
    #[arg(long, conflicts_with = "noise_kind")]
    noise: Option<f32>,
    /// Denoise other noise: gaussian:SIGMA (as --noise), or flip:P (each pixel replaced by
    /// 1 - value with probability P, salt-and-pepper; scored as flipped with that probability).
    #[arg(long, conflicts_with_all = ["mask", "mask_kind"])]
    noise_kind: Option<String>,
    /// The images are noisy already (your own, with --images): restore them as they are,
    /// scored under gaussian:SIGMA, gaussian (σ estimated from the encoder's
    /// reconstruction) or flip:P.
    #[arg(long, conflicts_with_all = ["mask", "mask_kind", "noise", "noise_kind"])]
    noisy: Option<String>,
    /// Gradient steps on z.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Adam's step size on z.
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    common: UseArgs,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-2)]
    lr: f32,
    /// Also fine-tune: the encoder plus a new dense layer to the classes, trained end to end.
    #[arg(long)]
    finetune: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    common: UseArgs,
    /// K: importance samples per image.
    #[arg(long, default_value_t = 1000)]
    iw_samples: usize,
    /// Evaluate only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Score the test images binarized at random (for models trained with --binarize dynamic).
    #[arg(long)]
    binarized: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// An autoencoder was never fitted to N(0, I): what the prior's draws decode to says
/// little about it. Said on stderr by the commands that draw from the prior.
fn prior_warning(s: &elbo::infer::OpenModel) {
    if s.model.config.kind == elbo::model::ModelKind::Ae {
        eprintln!(
            "warning: this model is a plain autoencoder (--model-kind ae): nothing drew its codes toward N(0, I), so decoding draws from it may not give images like the data; a VAE's prior is part of its objective"
        );
    }
}

pub fn sample(a: SampleArgs) -> Result<()> {
    let s = a.common.open()?;
    prior_warning(&s);
    let path = elbo::infer::sample(&s, a.n, a.temperature, a.common.seed)?;
    println!("wrote {}", path.display());
    Ok(())
}

pub fn reconstruct(a: ReconstructArgs) -> Result<()> {
    let s = a.common.open()?;
    let path = elbo::infer::reconstruct(&s, a.n)?;
    println!("wrote {} (rows: test images, reconstructions from the posterior mean, from a sampled z)", path.display());
    Ok(())
}

pub fn manifold(a: ManifoldArgs) -> Result<()> {
    let s = a.common.open()?;
    prior_warning(&s);
    let path = elbo::infer::manifold(&s, a.grid.max(2), (a.dims[0], a.dims[1]))?;
    println!("wrote {}", path.display());
    Ok(())
}

pub fn traverse(a: TraverseArgs) -> Result<()> {
    let s = a.common.open()?;
    let (path, dims) = elbo::infer::traverse(&s, a.index, a.top.max(1), a.steps.max(2))?;
    if !a.common.quiet {
        for (row, (j, kl)) in dims.iter().enumerate() {
            println!("row {row}: z{j} (average KL {kl:.3} nats)");
        }
    }
    println!("wrote {}", path.display());
    Ok(())
}

pub fn interpolate(a: InterpolateArgs) -> Result<()> {
    let s = a.common.open()?;
    let path = elbo::infer::interpolate(&s, a.from, a.to, a.steps.max(2))?;
    println!(
        "wrote {} (first and last columns: test images {} and {} as they are; between them, the decoded path between their posterior means)",
        path.display(),
        a.from,
        a.to
    );
    Ok(())
}

pub fn embed(a: EmbedArgs) -> Result<()> {
    let s = a.common.open()?;
    let (csv, png) = elbo::infer::embed(&s, a.limit)?;
    println!("wrote {} and {}", csv.display(), png.display());
    Ok(())
}

pub fn restore(a: RestoreArgs) -> Result<()> {
    use elbo::infer::Corruption;
    let as_is = match &a.noisy {
        Some(model) => Some(model.parse().map_err(|e: String| anyhow::anyhow!("--noisy: {e}"))?),
        None => None,
    };
    let corruption = match (&a.mask, &a.mask_kind, a.noise, &a.noise_kind) {
        _ if as_is.is_some() => Corruption::AsIs(as_is.unwrap()),
        (Some(p), _, _, _) => Corruption::MaskFile(p.clone()),
        (_, _, Some(sigma), _) => Corruption::Noise(sigma),
        (_, _, _, Some(kind)) => match kind.parse().map_err(|e: String| anyhow::anyhow!("--noise-kind: {e}"))? {
            c @ (Corruption::Noise(_) | Corruption::Flip(_)) => c,
            _ => anyhow::bail!("--noise-kind takes gaussian:SIGMA or flip:P; masks go to --mask-kind"),
        },
        (_, Some(kind), _, _) => match kind.parse().map_err(|e: String| anyhow::anyhow!("--mask-kind: {e}"))? {
            c @ (Corruption::Noise(_) | Corruption::Flip(_)) => {
                anyhow::bail!("--mask-kind takes half, center or random:P; noise goes to --noise-kind ({c:?})")
            }
            c => c,
        },
        _ => Corruption::Half,
    };
    let s = a.common.open()?;
    let r = elbo::infer::restore(&s, a.n, &corruption, a.steps, a.lr, a.common.seed)?;
    let what = match corruption {
        Corruption::AsIs(_) => "all values, to the noisy input itself: there are no clean images to compare with",
        _ if corruption.is_noise() => "all (noisy) values",
        _ => "the unknown values",
    };
    if let Some(sigma) = r.noise_sigma {
        println!("scored as Gaussian noise of σ = {sigma:.4}");
    }
    println!(
        "{} images, mean squared error on {what} ({}): restored {:.5} (the decoder at the MAP z alone {:.5}), encoder-only reconstruction {:.5}, mean image {:.5}, damaged input {:.5}",
        r.images, r.values, r.mse_restored, r.mse_decoded, r.mse_encoder, r.mse_mean_image, r.mse_input
    );
    println!("wrote {} (columns: original, damaged, encoder only, restored)", r.path.display());
    if let Some(path) = &a.json {
        let json = serde_json::json!({"images": r.images, "values": r.values, "mse_restored": r.mse_restored, "mse_decoded": r.mse_decoded,
            "mse_encoder": r.mse_encoder, "mse_mean_image": r.mse_mean_image, "mse_input": r.mse_input, "noise_sigma": r.noise_sigma});
        elbo::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

pub fn probe(a: ProbeArgs) -> Result<()> {
    let s = a.common.open()?;
    let quiet = a.common.quiet;
    let r = elbo::infer::probe(&s, a.epochs.max(1), a.lr, a.common.seed, a.finetune, &|what| {
        if !quiet {
            eprintln!("probe: {what}");
        }
    })?;
    println!(
        "softmax regression, {} training and {} test images: test accuracy {:.2}% on the posterior means ({} dims, loss {:.4}), {:.2}% on raw pixels ({} dims, loss {:.4})",
        r.train_images,
        r.test_images,
        100.0 * r.latent_accuracy,
        s.model.config.latent,
        r.latent_loss,
        100.0 * r.pixel_accuracy,
        s.model.config.pixels(),
        r.pixel_loss
    );
    if let Some((acc, loss)) = r.finetuned {
        println!("fine-tuned encoder with a new dense layer: test accuracy {:.2}% (loss {loss:.4})", 100.0 * acc);
    }
    if let Some(path) = &a.json {
        let json = serde_json::json!({"train_images": r.train_images, "test_images": r.test_images,
            "latent_accuracy": r.latent_accuracy, "latent_loss": r.latent_loss,
            "pixel_accuracy": r.pixel_accuracy, "pixel_loss": r.pixel_loss,
            "finetuned_accuracy": r.finetuned.map(|f| f.0), "finetuned_loss": r.finetuned.map(|f| f.1)});
        elbo::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let s = a.common.open()?;
    let n = a.limit.unwrap_or(s.test.len).min(s.test.len) as u64;
    let bar = if a.common.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(n) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} images, eta {eta}")
            .unwrap()
            .progress_chars("=> "),
    );
    let r = elbo::infer::eval(&s, a.iw_samples, a.limit, a.binarized, &|done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let mut json = serde_json::json!({
        "images": r.images, "elbo": r.elbo, "recon": r.recon, "kl": r.kl,
        "iw_samples": r.iw_samples, "log_px": r.log_px, "log_px_standard_error": r.log_px_se, "bits_per_dim": r.bits_per_dim,
        "elbo_bits_per_dim": -r.elbo / (s.model.config.pixels() as f64 * std::f64::consts::LN_2),
        "recon_at_mean": r.recon_at_mean, "loss_at_mean": r.loss_at_mean,
    });
    if let Some((log_p, se, bits)) = r.discrete {
        json["discrete_log_px"] = log_p.into();
        json["discrete_log_px_standard_error"] = se.into();
        json["discrete_bits_per_dim"] = bits.into();
    }
    println!(
        "{} test images: ELBO {:.3} nats (recon {:.3}, KL {:.3}); log p(x) >= {:.3} nats (standard error {:.3}) with K = {} ({:.4} bits/dim); with z = mu: loss {:.4} (recon {:.4})",
        r.images, r.elbo, r.recon, r.kl, r.log_px, r.log_px_se, r.iw_samples, r.bits_per_dim, r.loss_at_mean, r.recon_at_mean
    );
    if let Some((log_p, se, bits)) = r.discrete {
        // a density on [0, 1] can exceed 1: the 8-bit values' probabilities are the comparable figure
        println!(
            "the 8-bit images' probability (the Gaussian decoder integrated over each value's 1/255 bin): log P(x) >= {log_p:.3} nats (standard error {se:.3}), {bits:.4} bits/dim"
        );
    }
    if let Some(path) = &a.json {
        elbo::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
