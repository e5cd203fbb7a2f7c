//! The assembled training step against the CPU reference model, and short
//! training runs: the loss falls, and the same seed gives the same losses.

mod common;
use common::{assert_close, gpu};
use elbo::data::Dataset;
use elbo::model::{Model, VaeConfig};
use elbo::reference as r;
use elbo::trainer::{Hyper, Trainer};

fn synthetic(len: usize, width: usize, height: usize, seed: u32) -> Dataset {
    let pixels = (0..len * width * height).map(|i| (elbo::rng::rand_bits(seed, 7, 0, i as u32) & 0xff) as u8).collect();
    Dataset { name: "synthetic".into(), channels: 1, width, height, pixels, labels: None, len }
}

fn small() -> (VaeConfig, Dataset, Dataset) {
    let config = VaeConfig { width: 5, height: 6, hidden: 13, latent: 3 };
    (config, synthetic(25, 5, 6, 1), synthetic(17, 5, 6, 2))
}

#[test]
fn train_step_gradient_matches_reference_model() {
    let g = gpu();
    let (config, train, test) = small();
    let model = Model::init(&config, 3);
    let hyper = Hyper { lr: 1e-3, beta: 0.8, seed: 9, binarize: false, gemm: elbo::gemm::GemmPreference::Auto };
    let batch = 10;
    let mut t = Trainer::new(g, model.clone(), hyper, batch, &train, &test).unwrap();
    let order: Vec<u32> = (0..25).map(|i| (i * 7) % 25).collect();
    t.set_order(&order).unwrap();
    // the last batch of the epoch: 5 live rows out of 10
    for b in [0usize, 2] {
        let st = t.step_values(if b == 2 { 5 } else { 10 }, b * batch, b, 1.0);
        let before = Model {
            params: {
                t.sync_model().unwrap();
                t.model.params.clone()
            },
            ..model.clone()
        };
        t.train_step(b);
        t.wait().unwrap();
        let x = r::gather_batch(&train.pixels, &order, batch, config.pixels(), false, &st);
        let (loss, want) = r::vae_loss_and_grads(&before, &x, batch, &st);
        let got = t.read_grads().unwrap();
        assert_close(&format!("flat gradient, batch {b}"), &got, &want, 1e-5, 1e-3);
        let slot = t.batch_losses(b + 1).unwrap()[b];
        assert_close(&format!("batch loss, batch {b}"), &[slot], &[loss], 1e-4, 1e-4);
    }
}

#[test]
fn evaluation_matches_reference_model() {
    let g = gpu();
    let (config, train, test) = small();
    let model = Model::init(&config, 4);
    let hyper = Hyper { lr: 1e-3, beta: 1.0, seed: 2, binarize: false, gemm: elbo::gemm::GemmPreference::Auto };
    let batch = 8;
    let mut t = Trainer::new(g, model.clone(), hyper, batch, &train, &test).unwrap();
    let got = t.evaluate().unwrap();
    // the same batches through the reference, with the same random-stream counters
    let order: Vec<u32> = (0..test.len as u32).collect();
    let (mut recon, mut kl) = (0f64, 0f64);
    let d = config.pixels();
    for b in 0..test.len.div_ceil(batch) {
        let rows = batch.min(test.len - b * batch);
        let mut st = t.step_values(rows, b * batch, b, 1.0);
        st.step = b as u32;
        let x = r::gather_batch(&test.pixels, &order, batch, d, false, &st);
        let l = &model.layout;
        let h1 = r::gemm_forward(&x, &model.weight(&l.enc), &model.bias(&l.enc), batch, config.hidden, d, true);
        let mulv = r::gemm_forward(
            &h1,
            &model.weight(&l.heads),
            &model.bias(&l.heads),
            batch,
            2 * config.latent,
            config.hidden,
            false,
        );
        let z = r::reparam_forward(&mulv, batch, config.latent, &st);
        let h3 =
            r::gemm_forward(&z, &model.weight(&l.dec), &model.bias(&l.dec), batch, config.hidden, config.latent, true);
        let logits = r::gemm_forward(&h3, &model.weight(&l.out), &model.bias(&l.out), batch, d, config.hidden, false);
        let (_, per_image) = r::elbo_forward_backward(&logits, &x, &mulv, batch, d, config.latent, &st);
        let s = r::loss_reduce(&per_image, &st);
        recon += s[0] as f64;
        kl += s[1] as f64;
    }
    assert_eq!(got.images, test.len as f64);
    assert_close("test recon sum", &[got.recon as f32], &[recon as f32], 1e-3, 1e-5);
    assert_close("test kl sum", &[got.kl as f32], &[kl as f32], 1e-3, 1e-5);
}

fn mnist_subset(n_train: usize, n_test: usize) -> (Dataset, Dataset) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let (mut train, mut test) = elbo::data::load_mnist(&dir).unwrap();
    train.truncate(n_train);
    test.truncate(n_test);
    (train, test)
}

/// Per-batch losses of `epochs` epochs on the MNIST subset.
fn run_losses(train: &Dataset, test: &Dataset, seed: u64, epochs: usize) -> Vec<f32> {
    let config = VaeConfig { width: 28, height: 28, hidden: 64, latent: 8 };
    let hyper =
        Hyper { lr: 3e-3, beta: 1.0, seed: seed as u32, binarize: true, gemm: elbo::gemm::GemmPreference::Auto };
    let mut t = Trainer::new(gpu(), Model::init(&config, seed), hyper, 64, train, test).unwrap();
    let mut losses = Vec::new();
    let steps = t.batches(train.len);
    for e in 0..epochs {
        let order: Vec<u32> = (0..train.len as u32).map(|i| (i * 7 + e as u32 * 13) % train.len as u32).collect();
        t.set_order(&order).unwrap();
        for b in 0..steps {
            t.train_step(b);
        }
        losses.extend(t.batch_losses(steps).unwrap());
    }
    losses
}

#[test]
fn loss_falls_on_an_mnist_subset() {
    let (train, test) = mnist_subset(1024, 128);
    let losses = run_losses(&train, &test, 1, 4);
    let first: f32 = losses[..4].iter().sum::<f32>() / 4.0;
    let last: f32 = losses[losses.len() - 4..].iter().sum::<f32>() / 4.0;
    assert!(losses.iter().all(|l| l.is_finite()), "non-finite loss: {losses:?}");
    assert!(
        last < 0.75 * first,
        "the loss did not fall by a quarter: first steps {first:.2}, last steps {last:.2}; all: {losses:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_losses() {
    let (train, test) = mnist_subset(512, 64);
    let a = run_losses(&train, &test, 7, 1);
    let b = run_losses(&train, &test, 7, 1);
    let c = run_losses(&train, &test, 8, 1);
    assert_eq!(a, b, "two runs with seed 7 differ");
    assert_ne!(a, c, "seeds 7 and 8 gave identical losses");
}

#[test]
fn train_command_writes_its_outputs() {
    let out = std::env::temp_dir().join(format!("elbo-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = elbo::train::TrainOptions {
        out: Some(out.clone()),
        epochs: 2,
        hidden: 32,
        latent_dim: 4,
        train_limit: Some(600),
        test_limit: Some(100),
        quiet: true,
        ..Default::default()
    };
    let reports = elbo::train::train(&opts).unwrap();
    assert_eq!(reports.len(), 2);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for key in ["epoch", "train_loss", "test_loss", "test_recon", "test_kl", "epoch_seconds", "images_per_second"] {
        assert!(lines[1].get(key).is_some(), "metrics.jsonl lacks {key}: {}", lines[1]);
    }
    let tl = lines[1]["test_loss"].as_f64().unwrap();
    let parts = lines[1]["test_recon"].as_f64().unwrap() + lines[1]["test_kl"].as_f64().unwrap();
    assert!((tl - parts).abs() < 1e-6 * tl.abs(), "test_loss {tl} is not recon + kl {parts}");
    for png in ["samples.png", "reconstructions.png"] {
        let img = image::open(out.join(png)).unwrap();
        assert!(img.width() > 100 && img.height() > 50, "{png} is {}x{}", img.width(), img.height());
    }
    // the checkpoint loads back with its configuration, and PyTorch's names and shapes
    let model = Model::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(model.config, VaeConfig { width: 28, height: 28, hidden: 32, latent: 4 });
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("fc1.weight").unwrap().shape(), &[32, 784]);
    assert_eq!(st.tensor("fc_mu.weight").unwrap().shape(), &[4, 32]);
    assert_eq!(st.tensor("fc_logvar.bias").unwrap().shape(), &[4]);
    assert_eq!(st.tensor("fc4.weight").unwrap().shape(), &[784, 32]);
    assert!(
        !out.read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp")),
        "a temporary file was left behind"
    );
}

#[test]
fn safetensors_round_trip_is_exact() {
    let config = VaeConfig { width: 7, height: 3, hidden: 10, latent: 3 };
    let model = Model::init(&config, 12);
    let bytes = model.to_safetensors(&Default::default()).unwrap();
    let back = Model::from_safetensors(&bytes).unwrap();
    assert_eq!(back.config, config);
    assert_eq!(back.params, model.params);
    let mut damaged = bytes.clone();
    damaged.truncate(bytes.len() - 10);
    assert!(Model::from_safetensors(&damaged).is_err());
}
