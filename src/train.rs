//! `elbo train`: the epoch loop around the Trainer, with progress, metrics,
//! image grids and atomic checkpoints.

use crate::data::{load_mnist, mnist_dir};
use crate::gpu::{AdapterChoice, Gpu};
use crate::images::save_grid;
use crate::model::{Model, VaeConfig};
use crate::trainer::{Hyper, LossSums, Trainer};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub data_dir: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub epochs: usize,
    pub batch_size: usize,
    pub hidden: usize,
    pub latent_dim: usize,
    pub lr: f32,
    pub beta: f32,
    pub seed: u64,
    pub binarize: bool,
    /// Use only the first N training / test images (quick runs).
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub log_every: usize,
    pub quiet: bool,
    pub adapter: AdapterChoice,
    pub gemm: crate::gemm::GemmPreference,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            data_dir: None,
            out: None,
            epochs: 10,
            batch_size: 128,
            hidden: 400,
            latent_dim: 20,
            lr: 1e-3,
            beta: 1.0,
            seed: 1,
            binarize: false,
            train_limit: None,
            test_limit: None,
            log_every: 25,
            quiet: false,
            adapter: AdapterChoice::default(),
            gemm: crate::gemm::GemmPreference::Auto,
        }
    }
}

/// What an epoch measured.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    pub train: LossSums,
    pub test: LossSums,
    pub seconds: f64,
    pub images_per_second: f64,
}

fn new_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut dir = PathBuf::from(format!("runs/vae-{secs}"));
    let mut i = 1;
    while dir.exists() {
        dir = PathBuf::from(format!("runs/vae-{secs}-{i}"));
        i += 1;
    }
    dir
}

pub fn train(opts: &TrainOptions) -> Result<Vec<EpochReport>> {
    if opts.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if opts.hidden == 0 || opts.latent_dim == 0 {
        bail!("--hidden and --latent-dim must be at least 1");
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        bail!("--lr must be a positive number, got {}", opts.lr);
    }
    let dir = mnist_dir(opts.data_dir.as_deref());
    let (mut train_set, mut test_set) = load_mnist(&dir)?;
    if let Some(n) = opts.train_limit {
        train_set.truncate(n);
    }
    if let Some(n) = opts.test_limit {
        test_set.truncate(n);
    }
    let gpu = Gpu::new(&opts.adapter)?;
    let out = opts.out.clone().unwrap_or_else(new_run_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create output folder {}", out.display()))?;
    let say = |s: String| {
        if !opts.quiet {
            println!("{s}");
        }
    };
    say(format!("adapter: {}", gpu.adapter_line()));
    say(format!(
        "data: {} training and {} test images of {}x{} from {}",
        train_set.len,
        test_set.len,
        train_set.width,
        train_set.height,
        dir.display()
    ));

    let config =
        VaeConfig { width: train_set.width, height: train_set.height, hidden: opts.hidden, latent: opts.latent_dim };
    let model = Model::init(&config, opts.seed);
    let hyper =
        Hyper { lr: opts.lr, beta: opts.beta, seed: opts.seed as u32, binarize: opts.binarize, gemm: opts.gemm };
    let mut trainer = Trainer::new(&gpu, model, hyper, opts.batch_size, &train_set, &test_set)?;
    say(format!("GEMM kernels measured on this adapter:\n  {}", trainer.gemm_choice.describe().replace('\n', "\n  ")));
    say(format!(
        "model: MLP VAE {d}-{h}-({l} mu, {l} logvar)-{h}-{d}, Bernoulli decoder; {} dispatches and 1 submit per step; writing to {}",
        trainer.dispatches_per_step(),
        out.display(),
        d = config.pixels(),
        h = config.hidden,
        l = config.latent
    ));

    let metrics_path = out.join("metrics.jsonl");
    let mut metrics =
        std::fs::File::create(&metrics_path).with_context(|| format!("cannot create {}", metrics_path.display()))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut order: Vec<u32> = (0..train_set.len as u32).collect();
    let steps = trainer.batches(train_set.len);
    let prior: Vec<f32> =
        (0..64 * config.latent).map(|i| crate::rng::rand_normal(opts.seed as u32, 2, 0, i as u32)).collect();
    let mut reports = Vec::new();

    for epoch in 1..=opts.epochs {
        order.shuffle(&mut rng);
        trainer.set_order(&order)?;
        let bar = if opts.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(steps as u64) };
        bar.set_style(
            indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{}", opts.epochs));
        let t0 = Instant::now();
        for b in 0..steps {
            trainer.train_step(b);
            if (b + 1) % opts.log_every.max(1) == 0 || b + 1 == steps {
                let sums = trainer.read_history(b + 1)?;
                let loss = sums.loss(opts.beta as f64);
                if !loss.is_finite() {
                    bar.abandon();
                    bail!(
                        "the loss became {loss} by step {} of epoch {epoch}; lower --lr (now {}) or the KL weight --beta (now {}). {} holds the metrics of the finished epochs and the model of the last one",
                        b + 1,
                        opts.lr,
                        opts.beta,
                        out.display()
                    );
                }
                let rate = sums.images / t0.elapsed().as_secs_f64();
                bar.set_message(format!("loss {loss:.2} {rate:.0} img/s"));
                bar.set_position((b + 1) as u64);
            }
        }
        trainer.wait()?;
        let seconds = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let train_sums = trainer.read_history(steps)?;
        let test_sums = trainer.evaluate()?;
        let report = EpochReport {
            epoch,
            train: train_sums,
            test: test_sums,
            seconds,
            images_per_second: train_sums.images / seconds,
        };
        let line = serde_json::json!({
            "epoch": epoch,
            "train_loss": train_sums.loss(opts.beta as f64),
            "train_recon": train_sums.recon_per_image(),
            "train_kl": train_sums.kl_per_image(),
            "test_loss": test_sums.loss(1.0),
            "test_recon": test_sums.recon_per_image(),
            "test_kl": test_sums.kl_per_image(),
            "epoch_seconds": seconds,
            "images_per_second": report.images_per_second,
            "steps": trainer.steps_done,
        });
        writeln!(metrics, "{line}")
            .and_then(|_| metrics.flush())
            .with_context(|| format!("cannot write {}", metrics_path.display()))?;

        // pictures and weights after every epoch
        let d = config.pixels();
        let (w, h) = (config.width, config.height);
        let samples = trainer.decode(&prior[..prior.len().min(trainer.batch * config.latent)])?;
        let tiles: Vec<&[f32]> = samples.chunks(d).collect();
        save_grid(&out.join("samples.png"), &tiles, w, h, 8, 2)?;
        let (x, recon) = trainer.reconstruct_first_batch()?;
        let n = (x.len() / d).min(32);
        let mut tiles: Vec<&[f32]> = Vec::new();
        for row in 0..n.div_ceil(8) {
            let idx = row * 8..(row * 8 + 8).min(n);
            tiles.extend(idx.clone().map(|i| &x[i * d..(i + 1) * d]));
            tiles.extend(idx.map(|i| &recon[i * d..(i + 1) * d]));
        }
        save_grid(&out.join("reconstructions.png"), &tiles, w, h, 8, 2)?;
        trainer.sync_model()?;
        let extra = std::collections::HashMap::from([
            ("epoch".to_string(), epoch.to_string()),
            ("test_loss".to_string(), format!("{:.4}", test_sums.loss(1.0))),
            ("seed".to_string(), opts.seed.to_string()),
        ]);
        trainer.model.save(&out.join("model.safetensors"), &extra)?;
        say(format!(
            "epoch {epoch:>3}/{}  train {:.2}  test {:.2} (recon {:.2} + kl {:.2})  {:.1} s  {:.0} img/s",
            opts.epochs,
            train_sums.loss(opts.beta as f64),
            test_sums.loss(1.0),
            test_sums.recon_per_image(),
            test_sums.kl_per_image(),
            seconds,
            report.images_per_second
        ));
        reports.push(report);
    }
    say(format!("wrote {}/{{metrics.jsonl, model.safetensors, samples.png, reconstructions.png}}", out.display()));
    Ok(reports)
}
