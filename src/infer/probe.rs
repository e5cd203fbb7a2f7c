//! `elbo probe`: how much of the classes a VAE's encoder has put into its
//! posterior means, asked by a softmax (multinomial logistic) regression trained
//! on the GPU on fixed features ([`LinearProbe`]), beside the same probe on pixels.

use super::OpenModel;
use crate::gpu::{Gpu, Matrix};
use crate::kernels::gemm;
use crate::kernels::{self, Bind, Dispatch, Kernels, MomentStore, Step};
use crate::model::{Activation, Layer, Op, Shape};
use crate::step::Builder;
use crate::step::ForwardOptions;
use crate::train::{ADAM_BETA1, ADAM_BETA2, ADAM_EPS};
use anyhow::{bail, Result};

/// What `elbo probe` measured: test accuracy of a softmax regression trained on
/// the VAE's posterior means, and of the same on raw pixels.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub train_images: usize,
    pub test_images: usize,
    pub latent_accuracy: f64,
    pub latent_loss: f64,
    pub pixel_accuracy: f64,
    pub pixel_loss: f64,
    /// With `--finetune`: the encoder plus a new dense layer, trained end to end.
    pub finetuned: Option<(f64, f64)>,
}

/// Posterior means (n, L) of every image of `data`.
fn encode_dataset(s: &OpenModel, data: &crate::data::Dataset) -> Result<Vec<f32>> {
    let mut t = s.net_over(data, ForwardOptions { batch: 256, samples: 1, binarize: false, seed: 1 })?;
    let lat = s.model.config.latent;
    let mut mu = Vec::with_capacity(data.len * lat);
    for b in 0..data.len.div_ceil(256) {
        mu.extend(t.eval_rows(b, 0.0)?.mu);
    }
    Ok(mu)
}

/// `elbo probe`: the encoder's features used for supervision. A linear softmax
/// classifier is trained on the GPU (Adam, `epochs` passes) on the training set's
/// posterior means, and the same on raw pixels; both are scored on the test set.
pub fn probe(
    s: &OpenModel,
    epochs: usize,
    lr: f32,
    seed: u64,
    finetune: bool,
    progress: &dyn Fn(&str),
) -> Result<ProbeReport> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let (Some(ytr), Some(yte)) = (s.train.labels.as_ref(), s.test.labels.as_ref()) else {
        bail!("probe needs class labels, and this dataset has none (MNIST has them)");
    };
    let classes = ytr.iter().chain(yte).copied().max().unwrap_or(0) as usize + 1;
    let pixels = |d: &crate::data::Dataset| -> Vec<f32> { d.pixels.iter().map(|&b| b as f32 / 255.0).collect() };
    progress("encoding the training and test sets");
    let (ftr, fte) = (encode_dataset(s, &s.train)?, encode_dataset(s, &s.test)?);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut run = |name: &str, k: usize, xtr: &[f32], xte: &[f32]| -> Result<(f64, f64)> {
        let mut p = crate::infer::probe::LinearProbe::new(&s.gpu, k, classes, 256, lr)?;
        let mut order: Vec<usize> = (0..s.train.len).collect();
        for e in 1..=epochs {
            order.shuffle(&mut rng);
            p.train_epoch(xtr, ytr, &order)?;
            progress(&format!("{name}: epoch {e}/{epochs}"));
        }
        p.evaluate(xte, yte)
    };
    let lat = s.model.config.latent;
    let (latent_loss, latent_accuracy) = run("posterior means", lat, &ftr, &fte)?;
    let d = s.model.config.pixels();
    let (pixel_loss, pixel_accuracy) = run("raw pixels", d, &pixels(&s.train), &pixels(&s.test))?;
    let finetuned = if finetune {
        let mut cl = {
            let o = crate::infer::finetune::FinetuneOptions { classes, batch: 128, lr: 1e-3, seed };
            crate::infer::finetune::Classifier::new(&s.gpu, &s.model, &o, &s.train, &s.test)?
        };
        for e in 1..=epochs {
            let mut order: Vec<u32> = (0..s.train.len as u32).collect();
            order.shuffle(&mut rng);
            cl.train_epoch(&order, ytr)?;
            progress(&format!("fine-tuned encoder: epoch {e}/{epochs}"));
        }
        let (loss, acc) = cl.evaluate(yte)?;
        Some((acc, loss))
    } else {
        None
    };
    Ok(ProbeReport {
        train_images: s.train.len,
        test_images: s.test.len,
        latent_accuracy,
        latent_loss,
        pixel_accuracy,
        pixel_loss,
        finetuned,
    })
}

pub struct LinearProbe<'g> {
    gpu: &'g Gpu,
    k: usize,
    classes: usize,
    batch: usize,
    params: wgpu::Buffer,
    step_uniform: wgpu::Buffer,
    labels: wgpu::Buffer,
    row_loss: wgpu::Buffer,
    weight: Matrix,
    features: Matrix,
    stride: usize,
    train_list: Vec<Dispatch>,
    eval_list: Vec<Dispatch>,
    lr: f32,
    t: i32,
    _keep: Vec<wgpu::Buffer>,
    _mats: Vec<Matrix>,
}

impl<'g> LinearProbe<'g> {
    /// A probe from `k` features to `classes` classes, zero-initialised.
    pub fn new(gpu: &'g Gpu, k: usize, classes: usize, batch: usize, lr: f32) -> Result<LinearProbe<'g>> {
        let kern = Kernels::of(gpu)?;
        let m = batch.next_multiple_of(4);
        let rows = classes.next_multiple_of(4);
        let stride = k.next_multiple_of(64);
        let len = (rows * stride + classes.next_multiple_of(64)).next_multiple_of(64);
        let params = gpu.buffer("probe params", (len * 4) as u64, wgpu::BufferUsages::empty())?;
        let grads = gpu.buffer("probe grads", (len * 4) as u64, wgpu::BufferUsages::empty())?;
        let m1 = gpu.buffer("probe moment1", (len * 4) as u64, wgpu::BufferUsages::empty())?;
        let m2 = gpu.buffer("probe moment2", (len * 4) as u64, wgpu::BufferUsages::empty())?;
        let step_uniform = gpu.uniform("step", &Step::default());
        let labels = gpu.buffer("labels", (m * 4) as u64, wgpu::BufferUsages::empty())?;
        let row_loss = gpu.buffer("row loss", (m * 8) as u64, wgpu::BufferUsages::empty())?;
        let weight = gpu.matrix("probe W", rows, k)?;
        let features = gpu.matrix("features", m, k)?;
        let logits = gpu.matrix("logits", m, classes)?;
        let d_logits = gpu.matrix("d logits", m, classes)?;
        let layer = Layer {
            name: "probe".into(),
            op: Op::Dense,
            act: Activation::Identity,
            input: Shape::flat(k),
            output: Shape::flat(classes),
            rows,
            cols: k,
            stride,
            w: 0,
            b: rows * stride,
        };
        // the probe's GEMMs are small: the portable texel variant serves
        let choice = gemm::Choice::default();
        let mut builder = Builder::new(gpu, kern, choice, m, &params, Some(&grads));
        let forward = builder.forward(&layer, &features, &weight, &logits).remove(0);
        let ce = builder.softmax_cross_entropy(classes, &step_uniform, &logits, &labels, &d_logits, &row_loss);
        let backward = builder.backward_weight(&layer, &features, &weight, &d_logits).remove(0);
        let au = kernels::Adam { count: (len / 4) as u32, beta1: ADAM_BETA1, beta2: ADAM_BETA2, eps: ADAM_EPS };
        let adam = builder.adam(&au, &step_uniform, MomentStore::Buffers, [Bind::Buffer(&m1), Bind::Buffer(&m2)]);
        let eval_list = vec![forward.clone(), ce.clone()];
        let train_list = vec![forward, ce, backward, adam];
        let mut keep = builder.keep;
        keep.extend([grads, m1, m2]);
        Ok(LinearProbe {
            gpu,
            k,
            classes,
            batch,
            params,
            step_uniform,
            labels,
            row_loss,
            weight,
            features,
            stride,
            train_list,
            eval_list,
            lr,
            t: 0,
            _keep: keep,
            _mats: vec![logits, d_logits],
        })
    }

    fn load(&self, x: &[f32], y: &[u8], rows: usize) {
        self.gpu.write_matrix(&self.features, x);
        let labels: Vec<u32> =
            y.iter().map(|&v| v as u32).chain(std::iter::repeat(0)).take(self.features.rows).collect();
        self.gpu.queue.write_buffer(&self.labels, 0, bytemuck::cast_slice(&labels));
        let t = self.t.max(1);
        let step = Step {
            rows: rows as u32,
            inv_rows: 1.0 / rows.max(1) as f32,
            lr_t: self.lr / (1.0 - 0.9f32.powi(t)),
            bc2_sqrt: (1.0 - 0.999f32.powi(t)).sqrt(),
            ..Default::default()
        };
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
    }

    /// One epoch of Adam over features x (n, k) with labels y (n), in `order`.
    pub fn train_epoch(&mut self, x: &[f32], y: &[u8], order: &[usize]) -> Result<()> {
        if x.len() != y.len() * self.k {
            bail!("{} features for {} labels of {} features each", x.len(), y.len(), self.k);
        }
        for idx in order.chunks(self.batch) {
            let xb: Vec<f32> = idx.iter().flat_map(|&i| x[i * self.k..(i + 1) * self.k].iter().copied()).collect();
            let yb: Vec<u8> = idx.iter().map(|&i| y[i]).collect();
            self.t += 1;
            self.load(&xb, &yb, idx.len());
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            kernels::encode_all(&mut enc, "probe step", &self.train_list);
            enc.copy_buffer_to_texture(
                crate::gpu::flat_rows(&self.params, 0, self.stride),
                self.weight.texture.as_image_copy(),
                self.weight.texture.size(),
            );
            self.gpu.submit(enc.finish());
        }
        self.gpu.wait()
    }

    /// Mean cross-entropy (nats) and accuracy on features x (n, k) with labels y.
    pub fn evaluate(&mut self, x: &[f32], y: &[u8]) -> Result<(f64, f64)> {
        let (mut loss, mut correct) = (0f64, 0f64);
        for (xb, yb) in x.chunks(self.batch * self.k).zip(y.chunks(self.batch)) {
            self.load(xb, yb, yb.len());
            kernels::run(self.gpu, &self.eval_list)?;
            let r = self.gpu.read_f32(&self.row_loss, 0, 2 * yb.len())?;
            for v in r.chunks(2) {
                loss += v[0] as f64;
                correct += v[1] as f64;
            }
        }
        Ok((loss / y.len().max(1) as f64, correct / y.len().max(1) as f64))
    }

    pub fn classes(&self) -> usize {
        self.classes
    }
}
