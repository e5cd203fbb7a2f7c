//! A model on the device: its flat parameters and weight textures, its activations,
//! the test set and the forward lists (evaluation, decoding, encoding, restoration),
//! with the calls that run them and the loss history they fill. A `Trainer` is one of
//! these plus the training state; inference opens one forward-only
//! (`Net::forward_only`): no gradient, no Adam moments, no training list, and GEMM
//! variants given rather than timed.

use super::fusion::FusionInputs;
use super::history::PendingHistory;
use super::vae::{vae_lists, Sampling, TrainBuffers, VaeBuffers};
use super::{Builder, Fusions, LossSums, VaeLists, VaeTensors};
use crate::data::Dataset;
use crate::gpu::{Gpu, Matrix};
use crate::kernels::gemm::{Choice, GemmPreference};
use crate::kernels::{self, Kernels, MomentStore, Step};
use crate::model::{Model, ModelKind};
use anyhow::{bail, Result};
use std::sync::Mutex;

/// One evaluated batch, per row (images times samples).
pub struct EvalRows {
    pub recon: Vec<f32>,
    pub kl: Vec<f32>,
    pub mu: Vec<f32>,
    pub logvar: Vec<f32>,
    pub z: Vec<f32>,
}

/// What a forward-only model needs to know besides the model.
#[derive(Clone, Copy, Debug)]
pub struct ForwardOptions {
    /// Images per batch.
    pub batch: usize,
    /// Rows per image (Monte-Carlo samples of z).
    pub samples: usize,
    /// Score stochastically binarized images.
    pub binarize: bool,
    /// Seed of the random streams.
    pub seed: u32,
}

pub struct Net<'g> {
    pub(crate) gpu: &'g Gpu,
    /// The model as it was put on the device (`Trainer::model` reads the trained one back).
    pub(crate) model: Model,
    /// Images per batch; the textures hold batch * samples rows.
    pub batch: usize,
    /// Rows per image: Monte-Carlo samples of z.
    pub samples: usize,
    pub seed: u32,
    /// Weight of the KL term in the step uniform (a warm-up changes it as training goes).
    pub beta: f32,
    /// The lists train and evaluate the importance-weighted bound over the `samples` rows
    /// of each image (`Sampling::iwae`).
    pub iwae: bool,
    /// Random-stream counter, advanced by every batch (training or evaluation).
    pub(crate) counter: u32,
    pub(crate) params: wgpu::Buffer,
    /// Per layer (encoder, heads, decoder): its weight texture.
    pub(crate) weights: Vec<Matrix>,
    /// The activations, their gradients, z and the decoded means.
    pub(crate) t: VaeTensors,
    pub(crate) step_uniform: wgpu::Buffer,
    /// Per row (recon, kl) of the last batch.
    pub(crate) image_loss: wgpu::Buffer,
    pub(crate) kl_mask: wgpu::Buffer,
    /// Per batch of a pass, its loss sums (recon, kl, rows, 0).
    pub(crate) history: wgpu::Buffer,
    pub(crate) history_slots: usize,
    pub(crate) pending_history: Mutex<Option<PendingHistory>>,
    pub(crate) test_data: wgpu::Buffer,
    pub(crate) test_order: wgpu::Buffer,
    test_len: usize,
    /// Validation images, after the test set's in the same buffer (`set_validation_len`).
    val_len: usize,
    pub(crate) lists: VaeLists,
    /// Buffers the dispatches bind, kept alive with them.
    pub(crate) keep: Vec<wgpu::Buffer>,
}

impl<'g> Net<'g> {
    /// The buffers and textures of `model` at `batch` images of `samples` rows, with the
    /// test set resident and room for `history_slots` batches of loss sums; no lists yet.
    pub(crate) fn alloc(
        gpu: &'g Gpu,
        model: Model,
        (batch, samples, seed): (usize, usize, u32),
        test: &Dataset,
        history_slots: usize,
    ) -> Result<Net<'g>> {
        let m = (batch * samples).next_multiple_of(4);
        let c = &model.config;
        let layout = &model.layout;
        let weights: Vec<Matrix> =
            layout.layers().iter().map(|ly| gpu.matrix(&ly.name, ly.rows, ly.cols)).collect::<Result<_>>()?;
        let test_order: Vec<u32> = (0..test.len as u32).collect();
        Ok(Net {
            gpu,
            batch,
            samples,
            seed,
            beta: 1.0,
            iwae: false,
            counter: 0,
            params: gpu.buffer_with("params", bytemuck::cast_slice(&model.params))?,
            weights,
            t: VaeTensors::new(gpu, c, layout, m)?,
            step_uniform: gpu.uniform("step", &Step::default()),
            image_loss: gpu.buffer("image_loss", (m * 8) as u64, wgpu::BufferUsages::empty())?,
            kl_mask: gpu.buffer("kl_mask", (c.latent * 4) as u64, wgpu::BufferUsages::empty())?,
            history: gpu.buffer("history", (history_slots * 16) as u64, wgpu::BufferUsages::empty())?,
            history_slots,
            pending_history: Mutex::new(None),
            test_data: gpu.buffer_with("test set", &test.pixels)?,
            test_order: gpu.buffer_with("test order", bytemuck::cast_slice(&test_order))?,
            test_len: test.len,
            val_len: 0,
            lists: VaeLists::default(),
            keep: Vec::new(),
            model,
        })
    }

    /// `model` on the device for the forward passes alone, over `test`, its GEMMs in the
    /// variants `recorded` names, untimed (`Choice::untimed`).
    pub fn forward_only(
        gpu: &'g Gpu,
        model: Model,
        o: ForwardOptions,
        recorded: Choice,
        test: &Dataset,
    ) -> Result<Net<'g>> {
        model.config.check()?;
        if o.batch == 0 || o.samples == 0 {
            bail!("the batch and the samples per image must be at least 1");
        }
        if test.len == 0 {
            bail!("the test set is empty");
        }
        let k = Kernels::of(gpu)?;
        let choice = Choice::untimed(k, recorded);
        let history_slots = test.len.div_ceil(o.batch) + 1;
        let mut net = Net::alloc(gpu, model, (o.batch, o.samples, o.seed), test, history_slots)?;
        let f = net.fusions(k, GemmPreference::Auto, false, MomentStore::Buffers);
        let mut b = Builder::new(gpu, k, choice, net.t.x.rows, &net.params, None);
        let sampling = Sampling { binarize: o.binarize, samples: o.samples, free_bits: 0.0, iwae: false };
        let lists = net.build_lists(&mut b, f, None, sampling)?;
        let keep = b.keep;
        net.lists = lists;
        net.keep.extend(keep);
        net.upload_weights()?;
        Ok(net)
    }

    /// The model on the device: for a forward-only model, as it was opened.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Every dispatch of the model's lists (training step, evaluation, decoding,
    /// encoding, restoration, scoring).
    pub fn all_dispatches(&self) -> impl Iterator<Item = &kernels::Dispatch> {
        let l = &self.lists;
        l.train.iter().chain(&l.eval).chain(&l.decode).chain(&l.encode).chain(&l.restore).chain(&l.score)
    }

    /// Dispatches per training step (none in a forward-only model).
    pub fn dispatches_per_step(&self) -> usize {
        self.lists.train.len()
    }

    /// The fusions this model's lists take on this adapter, with `gemm` the GEMM
    /// preference, `fuse_adam` whether Adam may run in the weight gradients and `moments`
    /// where the optimiser keeps its moments.
    pub(crate) fn fusions(&self, k: &Kernels, gemm: GemmPreference, fuse_adam: bool, moments: MomentStore) -> Fusions {
        let c = &self.model.config;
        let inputs = FusionInputs {
            layout: &self.model.layout,
            loss: &c.loss_layout(),
            latent: c.latent,
            m: self.t.x.rows,
            gemm,
            fuse_adam,
            moments,
        };
        Fusions::decide(self.gpu, k, &inputs)
    }

    /// This model's dispatch lists through `b`, over its own buffers; the training list
    /// only where `train` gives what it binds besides them.
    pub(crate) fn build_lists(
        &self,
        b: &mut Builder,
        f: Fusions,
        train: Option<TrainBuffers>,
        sampling: Sampling,
    ) -> Result<VaeLists> {
        let bufs = VaeBuffers {
            step: &self.step_uniform,
            image_loss: &self.image_loss,
            kl_mask: &self.kl_mask,
            history: &self.history,
            train,
            test: (&self.test_data, &self.test_order),
        };
        let layers = self.model.layout.layers();
        vae_lists(b, f, &self.model.config, &layers, &self.weights, &self.t, &bufs, sampling)
    }

    /// Copies the flat parameters into the weight textures and waits.
    pub(crate) fn upload_weights(&self) -> Result<()> {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.copy_weights(&mut enc);
        self.gpu.submit(enc.finish());
        self.gpu.wait()
    }

    /// The per-step uniform of a forward batch of `images` images starting at
    /// `batch_start`, its loss into history slot `slot`, z drawn with `noise` (1) or the
    /// posterior mean (0). An autoencoder always decodes the posterior mean and has no KL term.
    pub fn step_values(&self, images: usize, batch_start: usize, slot: usize, noise: f32) -> Step {
        let rows = images * self.samples;
        let ae = self.model.config.kind == ModelKind::Ae;
        Step {
            seed: self.seed,
            counter: self.counter,
            rows: rows as u32,
            batch_start: batch_start as u32,
            slot: slot as u32,
            inv_rows: 1.0 / rows.max(1) as f32,
            noise: if ae { 0.0 } else { noise },
            beta: if ae { 0.0 } else { self.beta },
            ..Step::default()
        }
    }

    /// Copies the flat parameters' weight matrices into the textures the kernels read.
    pub fn copy_weights(&self, enc: &mut wgpu::CommandEncoder) {
        for (layer, tex) in self.model.layout.layers().into_iter().zip(&self.weights) {
            enc.copy_buffer_to_texture(
                crate::gpu::flat_rows(&self.params, layer.w, layer.stride),
                tex.texture.as_image_copy(),
                tex.texture.size(),
            );
        }
    }

    /// Steps per pass over `len` images.
    pub fn batches(&self, len: usize) -> usize {
        len.div_ceil(self.batch)
    }

    fn eval_batch(&mut self, b: usize, noise: f32) -> Result<()> {
        self.eval_batch_of(0, self.test_len, b, noise)
    }

    /// Batch `b` of the evaluation images `first..first + len` (the test set's, or the
    /// validation set's after them), its loss into history slot `b`.
    fn eval_batch_of(&mut self, first: usize, len: usize, b: usize, noise: f32) -> Result<()> {
        let start = first + b * self.batch;
        let rows = self.batch.min(first + len - start);
        let step = self.step_values(rows, start, b, noise);
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        kernels::warm::warm(self.gpu, &self.lists.eval)?;
        kernels::encode_all(&mut enc, "eval step", &self.lists.eval);
        self.gpu.submit(enc.finish());
        self.counter += 1;
        Ok(())
    }

    /// Runs test batch `b` forward (z sampled when `noise` is 1, the posterior mean when 0)
    /// and returns per row: (recon, kl), then mu and logvar (rows, L each) and z (rows, L).
    pub fn eval_rows(&mut self, b: usize, noise: f32) -> Result<EvalRows> {
        self.eval_batch(b, noise)?;
        let images = self.batch.min(self.test_len - b * self.batch);
        let rows = images * self.samples;
        let lat = self.model.config.latent;
        let loss = self.gpu.read_f32(&self.image_loss, 0, 2 * rows)?;
        let mulv = self.gpu.read_matrix(self.t.mulv())?;
        let z = self.gpu.read_matrix(&self.t.z)?;
        Ok(EvalRows {
            recon: loss.chunks(2).map(|v| v[0]).collect(),
            kl: loss.chunks(2).map(|v| v[1]).collect(),
            mu: (0..rows).flat_map(|r| mulv[r * 2 * lat..r * 2 * lat + lat].to_vec()).collect(),
            logvar: (0..rows).flat_map(|r| mulv[r * 2 * lat + lat..(r + 1) * 2 * lat].to_vec()).collect(),
            z: z[..rows * lat].to_vec(),
        })
    }

    /// Test images in this trainer's test set.
    pub fn test_len(&self) -> usize {
        self.test_len
    }

    /// Makes the last `n` images of the set this model was built with (`alloc`'s `test`)
    /// the validation set, the others the test set.
    pub fn set_validation_len(&mut self, n: usize) {
        let all = self.test_len + self.val_len;
        assert!(n < all, "{n} validation images leave no test image of {all}");
        (self.test_len, self.val_len) = (all - n, n);
    }

    /// Validation images (none unless `set_validation_len`).
    pub fn validation_len(&self) -> usize {
        self.val_len
    }

    /// The validation set's loss sums, as `evaluate` sums the test set's.
    pub fn evaluate_validation(&mut self) -> Result<LossSums> {
        let n = self.batches(self.val_len);
        for b in 0..n {
            self.eval_batch_of(self.test_len, self.val_len, b, 1.0)?;
        }
        self.read_history(n)
    }

    /// The test set's loss sums with z sampled (one Monte-Carlo sample per image).
    pub fn evaluate(&mut self) -> Result<LossSums> {
        let n = self.batches(self.test_len);
        for b in 0..n {
            self.eval_batch(b, 1.0)?;
        }
        self.read_history(n)
    }

    /// The first test batch and its reconstructions from the posterior mean, both
    /// (images, pixels * channels) channels-last with values in [0, 1].
    pub fn reconstruct_first_batch(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.eval_batch(0, 0.0)?;
        kernels::run_refs(self.gpu, &[self.lists.decode.last().unwrap()])?;
        let rows = self.batch.min(self.test_len) * self.samples;
        let c = &self.model.config;
        let loss = c.loss_layout();
        let x = self.gpu.read_matrix(&self.t.x)?;
        let x_cols = c.input_shape().cols();
        let images: Vec<f32> = (0..rows)
            .step_by(self.samples)
            .flat_map(|r| (0..loss.pixels).flat_map(move |p| (0..loss.channels).map(move |ch| (r, p, ch))))
            .map(|(r, p, ch)| x[r * x_cols + p * loss.x_cp + ch])
            .collect();
        let recon = self.decoded_means(rows)?;
        let recon = recon.chunks(c.pixels()).step_by(self.samples).flatten().copied().collect();
        Ok((images, recon))
    }

    /// The decoder's means for the first `rows` rows, (rows, pixels * channels) channels-last.
    fn decoded_means(&self, rows: usize) -> Result<Vec<f32>> {
        let c = &self.model.config;
        let loss = c.loss_layout();
        // both likelihoods' means are the sigmoid of the decoder's first output
        let v = self.gpu.read_matrix(&self.t.probs)?;
        let mut means = Vec::with_capacity(rows * c.pixels());
        for r in 0..rows {
            for p in 0..loss.pixels {
                for ch in 0..loss.channels {
                    means.push(v[r * loss.o_cols + loss.mean_col(p, ch)].clamp(0.0, 1.0));
                }
            }
        }
        Ok(means)
    }

    /// Decodes latent codes z (n, L), n <= the batch rows, to images (n, pixels * channels).
    pub fn decode(&mut self, z: &[f32]) -> Result<Vec<f32>> {
        let lat = self.model.config.latent;
        let n = z.len() / lat;
        if n > self.t.z.rows {
            bail!("can decode at most {} codes at once, got {n}", self.t.z.rows);
        }
        self.gpu.write_matrix(&self.t.z, z);
        kernels::warm::warm(self.gpu, &self.lists.decode)?;
        kernels::run(self.gpu, &self.lists.decode)?;
        self.decoded_means(n)
    }

    /// Posterior [mu | logvar] (rows, 2L) of images x (rows, x columns) given directly.
    pub fn encode_images(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        self.gpu.write_matrix(&self.t.x, x);
        kernels::warm::warm(self.gpu, &self.lists.encode)?;
        kernels::run(self.gpu, &self.lists.encode)?;
        let rows = x.len() / self.model.config.input_shape().cols();
        let v = self.gpu.read_matrix(self.t.mulv())?;
        Ok(v[..rows * 2 * self.model.config.latent].to_vec())
    }

    /// For codes z (rows, L) and targets x with their observed mask (rows, x columns):
    /// per row -log p(x_observed | g(z)) and its gradient d/dz (rows, L).
    /// Scores the observed values of `observed_nll_and_grad` under `o` from now on.
    pub fn set_observation(&self, o: kernels::Observation) {
        let (u, params) = self.lists.restore_loss.as_ref().expect("the restore list is built");
        self.gpu.queue.write_buffer(u, 0, bytemuck::bytes_of(&params.observing(o)));
    }

    pub fn observed_nll_and_grad(&mut self, z: &[f32], x: &[f32], observed: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let lat = self.model.config.latent;
        let rows = z.len() / lat;
        if rows > self.t.z.rows {
            bail!("at most {} codes at once, got {rows}", self.t.z.rows);
        }
        let step = Step { rows: rows as u32, inv_rows: 1.0, ..self.step_values(0, 0, 0, 0.0) };
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        self.gpu.write_matrix(&self.t.z, z);
        self.gpu.write_matrix(&self.t.x, x);
        self.gpu.write_matrix(&self.t.observed, observed);
        kernels::warm::warm(self.gpu, &self.lists.restore)?;
        kernels::run(self.gpu, &self.lists.restore)?;
        let loss = self.gpu.read_f32(&self.image_loss, 0, 2 * rows)?;
        let dz = self.gpu.read_matrix(&self.t.dz)?;
        Ok((loss.chunks(2).map(|v| v[0]).collect(), dz[..rows * lat].to_vec()))
    }

    /// -log p(x|z) per row for codes z (rows, L) and images x (rows, x columns, the
    /// stored layout): the decoder and the loss alone.
    pub fn score(&mut self, z: &[f32], x: &[f32]) -> Result<Vec<f32>> {
        let lat = self.model.config.latent;
        let rows = z.len() / lat;
        if rows > self.t.z.rows || x.len() != rows * self.model.config.input_shape().cols() {
            bail!("score takes at most {} codes with one image each, got {rows}", self.t.z.rows);
        }
        let step = Step { rows: rows as u32, inv_rows: 1.0 / rows.max(1) as f32, ..self.step_values(0, 0, 0, 0.0) };
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        self.gpu.write_matrix(&self.t.z, z);
        self.gpu.write_matrix(&self.t.x, x);
        kernels::warm::warm(self.gpu, &self.lists.score)?;
        kernels::run(self.gpu, &self.lists.score)?;
        let loss = self.gpu.read_f32(&self.image_loss, 0, 2 * rows)?;
        Ok(loss.chunks(2).map(|v| v[0]).collect())
    }

    /// The decoder's outputs of the first `rows` rows of the last `score` (rows, output
    /// columns: logits, or means and raw log-variances as `LossLayout` places them).
    pub fn scored_outputs(&self, rows: usize) -> Result<Vec<f32>> {
        let o_cols = self.model.config.loss_layout().o_cols;
        Ok(self.gpu.read_matrix(self.t.out())?[..rows * o_cols].to_vec())
    }

    pub fn wait(&self) -> Result<()> {
        self.gpu.wait()
    }

    /// The most rows one call of `decode`, `encode_images` or `observed_nll_and_grad`
    /// takes: the batch times the Monte-Carlo samples, rounded up to 4.
    pub fn rows(&self) -> usize {
        self.t.z.rows
    }
}
