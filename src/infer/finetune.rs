//! `probe --finetune`: a classifier initialised from a VAE's encoder — its
//! layers, then a new dense layer to the classes — trained end to end on the
//! GPU with softmax cross-entropy through the encoder's own backward kernels.

use crate::data::Dataset;
use crate::gpu::{Gpu, Matrix};
use crate::kernels::gemm;
use crate::kernels::{self, Bind, Dispatch, Kernels, MomentStore, Step};
use crate::model::{Activation, Layer, Model, Op, Shape};
use crate::step::{Builder, Chain};
use crate::train::{ADAM_BETA1, ADAM_BETA2, ADAM_EPS};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};

pub struct Classifier<'g> {
    gpu: &'g Gpu,
    layers: Vec<Layer>,
    batch: usize,
    params: wgpu::Buffer,
    step_uniform: wgpu::Buffer,
    labels: wgpu::Buffer,
    row_loss: wgpu::Buffer,
    weights: Vec<Matrix>,
    train_order: wgpu::Buffer,
    train_list: Vec<Dispatch>,
    eval_list: Vec<Dispatch>,
    lr: f32,
    t: i32,
    _keep: Vec<wgpu::Buffer>,
    _mats: Vec<Matrix>,
}

impl<'g> Classifier<'g> {
    /// The encoder of `model` and a new dense layer to `classes` classes (PyTorch's
    /// initialisation, seeded), trained with Adam at `lr` on batches of `batch`.
    pub fn new(
        gpu: &'g Gpu,
        model: &Model,
        o: &FinetuneOptions,
        train: &Dataset,
        test: &Dataset,
    ) -> Result<Classifier<'g>> {
        let (classes, batch, lr) = (o.classes, o.batch, o.lr);
        let c = &model.config;
        let (layers, init) = classifier_layers(model, classes, o.seed)?;
        let len = init.len();

        let k = Kernels::of(gpu)?;
        let m = batch.next_multiple_of(4);
        let floats = (len * 4) as u64;
        let params = gpu.buffer_with("classifier params", bytemuck::cast_slice(&init))?;
        let [grads, m1, m2] = ["classifier grads", "classifier moment1", "classifier moment2"]
            .map(|name| gpu.buffer(name, floats, wgpu::BufferUsages::empty()));
        let (grads, m1, m2) = (grads?, m1?, m2?);
        let step_uniform = gpu.uniform("step", &Step::default());
        let labels = gpu.buffer("labels", (m * 4) as u64, wgpu::BufferUsages::empty())?;
        let row_loss = gpu.buffer("row loss", (m * 8) as u64, wgpu::BufferUsages::empty())?;
        let train_data = gpu.buffer_with("training set", &train.pixels)?;
        let test_data = gpu.buffer_with("test set", &test.pixels)?;
        let train_order = gpu.buffer("train order", (train.len * 4) as u64, wgpu::BufferUsages::empty())?;
        let test_order_v: Vec<u32> = (0..test.len as u32).collect();
        let test_order = gpu.buffer_with("test order", bytemuck::cast_slice(&test_order_v))?;
        let weights: Vec<Matrix> = layers.iter().map(|l| gpu.matrix(&l.name, l.rows, l.cols)).collect::<Result<_>>()?;
        let x = gpu.matrix("x", m, c.input_shape().cols())?;
        let each =
            |what| -> Result<Vec<Matrix>> { layers.iter().map(|l| gpu.matrix(what, m, l.output.cols())).collect() };
        let (outs, grads_t) = (each("out")?, each("grad")?);
        let choice = gemm::Choice::default(); // the portable texel GEMMs
        let mut builder = Builder::new(gpu, k, choice, m, &params, Some(&grads));
        let gather = kernels::Gather::new(m, &c.loss_layout(), c.channels, false, 1);
        let refs: Vec<&Layer> = layers.iter().collect();
        let chain = Chain { layers: &refs, weights: &weights, input: &x, outs: &outs, grads: &grads_t, d_input: None };
        let n = layers.len();
        let ce =
            builder.softmax_cross_entropy(classes, &step_uniform, &outs[n - 1], &labels, &grads_t[n - 1], &row_loss);
        let mut forward = chain.forward(&mut builder, 0..n);
        forward.push(ce);
        let mut train_list = vec![builder.gather(&gather, &step_uniform, &train_data, &train_order, &x)];
        train_list.extend(forward.iter().cloned());
        train_list.extend(chain.backward(&mut builder));
        let adam = kernels::Adam { count: (len / 4) as u32, beta1: ADAM_BETA1, beta2: ADAM_BETA2, eps: ADAM_EPS };
        train_list.push(builder.adam(
            &adam,
            &step_uniform,
            MomentStore::Buffers,
            [Bind::Buffer(&m1), Bind::Buffer(&m2)],
        ));
        let mut eval_list = vec![builder.gather(&gather, &step_uniform, &test_data, &test_order, &x)];
        eval_list.extend(forward);
        let mut keep = builder.keep;
        keep.extend([grads, m1, m2, train_data, test_data, test_order]);
        let mut mats = outs;
        mats.extend(grads_t);
        mats.push(x);
        let cl = Classifier {
            gpu,
            layers,
            batch,
            params,
            step_uniform,
            labels,
            row_loss,
            weights,
            train_order,
            train_list,
            eval_list,
            lr,
            t: 0,
            _keep: keep,
            _mats: mats,
        };
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        cl.copy_weights(&mut enc);
        gpu.submit(enc.finish());
        gpu.wait()?;
        Ok(cl)
    }

    fn copy_weights(&self, enc: &mut wgpu::CommandEncoder) {
        for (l, tex) in self.layers.iter().zip(&self.weights) {
            enc.copy_buffer_to_texture(
                crate::gpu::flat_rows(&self.params, l.w, l.stride),
                tex.texture.as_image_copy(),
                tex.texture.size(),
            );
        }
    }

    fn set_step(&self, rows: usize, start: usize, labels: &[u8]) {
        let t = self.t.max(1);
        let step = Step {
            rows: rows as u32,
            batch_start: start as u32,
            inv_rows: 1.0 / rows.max(1) as f32,
            lr_t: self.lr / (1.0 - ADAM_BETA1.powi(t)),
            bc2_sqrt: (1.0 - ADAM_BETA2.powi(t)).sqrt(),
            ..Default::default()
        };
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        let l: Vec<u32> = labels.iter().map(|&v| v as u32).collect();
        self.gpu.queue.write_buffer(&self.labels, 0, bytemuck::cast_slice(&l));
    }

    /// One epoch over the training set in `order`, whose labels are `labels`.
    pub fn train_epoch(&mut self, order: &[u32], labels: &[u8]) -> Result<()> {
        self.gpu.queue.write_buffer(&self.train_order, 0, bytemuck::cast_slice(order));
        for (b, idx) in order.chunks(self.batch).enumerate() {
            let y: Vec<u8> = idx.iter().map(|&i| labels[i as usize]).collect();
            self.t += 1;
            self.set_step(idx.len(), b * self.batch, &y);
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            kernels::encode_all(&mut enc, "classifier step", &self.train_list);
            self.copy_weights(&mut enc);
            self.gpu.submit(enc.finish());
        }
        self.gpu.wait()
    }

    /// Mean cross-entropy and accuracy over the test set, whose labels are `labels`.
    pub fn evaluate(&mut self, labels: &[u8]) -> Result<(f64, f64)> {
        let (mut loss, mut correct) = (0f64, 0f64);
        for (b, y) in labels.chunks(self.batch).enumerate() {
            self.set_step(y.len(), b * self.batch, y);
            kernels::run(self.gpu, &self.eval_list)?;
            for v in self.gpu.read_f32(&self.row_loss, 0, 2 * y.len())?.chunks(2) {
                loss += v[0] as f64;
                correct += v[1] as f64;
            }
        }
        Ok((loss / labels.len().max(1) as f64, correct / labels.len().max(1) as f64))
    }
}

/// What fine-tuning takes besides the model and the data.
#[derive(Clone, Copy, Debug)]
pub struct FinetuneOptions {
    pub classes: usize,
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Seed of the new head's initialisation.
    pub seed: u64,
}

/// The encoder's layers and a new dense head to the classes, the head in the place of the
/// latent heads in the flat buffer, and the flat parameters: the encoder's trained ones,
/// the head initialised as PyTorch's nn.Linear is.
fn classifier_layers(model: &Model, classes: usize, seed: u64) -> Result<(Vec<Layer>, Vec<f32>)> {
    let mut layers = model.layout.encoder.clone();
    let Some(last) = layers.last() else {
        bail!("this model's encoder has no layers to fine-tune");
    };
    let features = last.output;
    let (rows, cols) = (classes.next_multiple_of(4), features.cols());
    let stride = cols.next_multiple_of(64);
    let w = model.layout.heads.w;
    let head = Layer {
        name: "classifier".into(),
        op: Op::Dense,
        act: Activation::Identity,
        input: features,
        output: Shape::flat(classes),
        rows,
        cols,
        stride,
        w,
        b: w + rows * stride,
    };
    let len = head.b + classes.next_multiple_of(64);
    let mut init = model.params[..w].to_vec();
    init.resize(len, 0.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bound = 1.0 / (cols as f32).sqrt();
    for o in head.weight_offsets().1.into_iter().chain(head.bias_offsets()) {
        init[o] = rng.random_range(-bound..bound);
    }
    layers.push(head);
    Ok((layers, init))
}
