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
    Dataset { name: "synthetic".into(), width, height, pixels, labels: None, len }
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
    let hyper = Hyper { lr: 1e-3, beta: 0.8, seed: 9, binarize: false };
    let batch = 10;
    let mut t = Trainer::new(g, model.clone(), hyper, batch, &train, &test).unwrap();
    let order: Vec<u32> = (0..25).map(|i| (i * 7) % 25).collect();
    t.set_order(&order).unwrap();
    // the last batch of the epoch: 5 live rows out of 10
    for b in [0usize, 2] {
        let st = t.step_values(if b == 2 { 5 } else { 10 }, b * batch, b, 1.0);
        let before = Model { params: { t.sync_model().unwrap(); t.model.params.clone() }, ..model.clone() };
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
    let hyper = Hyper { lr: 1e-3, beta: 1.0, seed: 2, binarize: false };
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
        let mulv = r::gemm_forward(&h1, &model.weight(&l.heads), &model.bias(&l.heads), batch, 2 * config.latent, config.hidden, false);
        let z = r::reparam_forward(&mulv, batch, config.latent, &st);
        let h3 = r::gemm_forward(&z, &model.weight(&l.dec), &model.bias(&l.dec), batch, config.hidden, config.latent, true);
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

