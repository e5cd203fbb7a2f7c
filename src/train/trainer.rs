//! The host scheduler of training: a `Net` (the model on the device) plus the flat
//! gradient, Adam's moments, the training set and its order, and the training step's
//! list, built by `step::vae` with the fusions `step::fusion` allows here. Each step
//! writes one uniform and replays the list: one encoder and one submit, no host
//! read-back except the loss history at logging intervals. Where Adam runs in the
//! weight gradients (`Fusions::adam`), the weight textures are the master copy;
//! otherwise each step ends by copying the flat weights into them.

use super::hyper::{Hyper, ADAM_BETA1, ADAM_BETA2};
use super::shards::TrainData;
use super::state::Moments;
use crate::data::{Dataset, ImageSource};
use crate::gpu::Gpu;
use crate::kernels::gemm;
use crate::kernels::{self, Dispatch, Kernels, Step};
use crate::model::{Layout, Model, Op, VaeConfig};
use crate::step::vae::{Sampling, TrainBuffers};
use crate::step::{Builder, FusedAdam, LossSums, Net};
use anyhow::{bail, Result};

/// A model being trained: a `Net` (its parameters, activations, test set and forward
/// lists, reached through `Deref`) plus the training state: the flat gradient, Adam's
/// moments, the training set and its order, and the training step's list.
pub struct Trainer<'g> {
    pub(super) net: Net<'g>,
    hyper: Hyper,
    /// The GEMM variant of each dense layer and pass, measured fastest on this adapter (or forced).
    gemm_choice: gemm::Choice,
    /// Adam steps taken.
    pub(super) steps_done: u32,
    pub(super) grads: wgpu::Buffer,
    pub(super) moments: Moments,
    /// Adam runs inside the weight-gradient GEMMs (no flat gradient is kept).
    pub(super) adam_fused: bool,
    /// The training set on the device, resident or streamed in shards.
    data: TrainData,
}

impl<'g> std::ops::Deref for Trainer<'g> {
    type Target = Net<'g>;
    fn deref(&self) -> &Net<'g> {
        &self.net
    }
}

impl<'g> std::ops::DerefMut for Trainer<'g> {
    fn deref_mut(&mut self) -> &mut Net<'g> {
        &mut self.net
    }
}

impl<'g> Trainer<'g> {
    /// A trainer for `model` at `batch` images a step (times `hyper.samples` rows), with
    /// the test set resident on the device and the training set resident or streamed in
    /// shards (`TrainData`). Builds every buffer and dispatch list, and
    /// times the GEMM variants on this adapter unless `hyper` fixes them.
    pub fn new(
        gpu: &'g Gpu,
        model: Model,
        hyper: Hyper,
        batch: usize,
        train: &dyn ImageSource,
        test: &Dataset,
    ) -> Result<Trainer<'g>> {
        let c = model.config.clone();
        c.check()?;
        check_datasets(&c, train, test)?;
        if batch == 0 || hyper.samples == 0 {
            bail!("--batch-size and --mc-samples must be at least 1");
        }
        crate::model::fit::check_fits(&c, batch, hyper.samples, &crate::model::fit::DeviceLimits::of(&gpu.limits))?;
        let k = Kernels::of(gpu)?;
        let m = (batch * hyper.samples).next_multiple_of(4);
        check_loop_turns(gpu, k, &model.layout, batch, hyper.samples)?;
        if hyper.iwae {
            check_iwae(gpu, &c, &hyper, m)?;
        }
        let len = model.layout.len;
        let grads = gpu.buffer("grads", (len * 4) as u64, wgpu::BufferUsages::empty())?;
        let moments = Moments::new(gpu, k, len)?;
        let data = TrainData::new(gpu, train, batch, hyper.data_limit)?;
        let history_slots = train.dims().len.div_ceil(batch).max(test.len.div_ceil(batch)) + 1;
        let mut net = Net::alloc(gpu, model, (batch, hyper.samples, hyper.seed), test, history_slots)?;
        net.beta = hyper.beta;
        net.iwae = hyper.iwae;

        // a resumed run's recorded variants; else each GEMM the lists run is chosen when
        // the builder first asks for it (a forced --gemm the adapter lacks is refused here)
        let choice = match &hyper.gemm_fixed {
            Some(c) => c.clone(),
            None => gemm::choose(gpu, k, hyper.gemm, &[])?,
        };
        let adam = kernels::Adam { count: (len / 4) as u32, beta1: ADAM_BETA1, beta2: ADAM_BETA2, eps: hyper.adam_eps };
        let adam_u = gpu.uniform("adam", &adam);
        let f = net.fusions(k, hyper.gemm, hyper.fuse_adam, moments.store());
        let mut b = Builder::new(gpu, k, choice, m, &net.params, Some(&grads));
        if hyper.gemm_fixed.is_none() {
            b.choose = Some(hyper.gemm);
        }
        if f.adam {
            let kernel = k.gemm_adam.as_ref().expect("Fusions::adam needs the fused kernel");
            b.fused_adam = Some(FusedAdam { kernel, adam: &adam_u, step: &net.step_uniform, moments: moments.binds() });
        }
        let buffers =
            TrainBuffers { data: &data.buffer, order: &data.order, adam, moments: (moments.store(), moments.binds()) };
        let sampling =
            Sampling { binarize: hyper.binarize, samples: hyper.samples, free_bits: hyper.free_bits, iwae: hyper.iwae };
        let lists = net.build_lists(&mut b, f, Some(buffers), sampling)?;
        // what a run's first epoch runs, compiled at once (in parallel on lavapipe)
        kernels::warm::warm(gpu, lists.train.iter().chain(&lists.eval).chain(&lists.decode))?;
        let (keep, choice) = (b.keep, b.choice.into_inner());
        net.lists = lists;
        net.keep.extend(keep);
        net.keep.push(adam_u);
        net.upload_weights()?;
        Ok(Trainer { net, hyper, gemm_choice: choice, steps_done: 0, grads, moments, adam_fused: f.adam, data })
    }

    /// Bytes copied into the weight textures per step.
    pub fn weight_copy_bytes(&self) -> usize {
        self.model.layout.layers().iter().map(|d| d.rows * d.cols * 4).sum()
    }

    /// The optimisation settings in force.
    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// Adam's learning rate from the next step on (a schedule changes it per epoch).
    pub fn set_lr(&mut self, lr: f32) {
        self.hyper.lr = lr;
    }

    /// The KL term's weight from the next step on (a warm-up raises it step by step);
    /// evaluation uses it too.
    pub fn set_beta(&mut self, beta: f32) {
        self.hyper.beta = beta;
        self.net.beta = beta;
    }

    /// The GEMM variant of each dense layer and pass, timed on this adapter (or forced).
    pub fn gemm_choice(&self) -> &gemm::Choice {
        &self.gemm_choice
    }

    /// Adam steps taken.
    pub fn steps_done(&self) -> u32 {
        self.steps_done
    }

    /// The model as trained so far, read back from the device.
    pub fn model(&mut self) -> Result<&Model> {
        self.sync_model()?;
        Ok(&self.net.model)
    }

    /// Writes the trained model as safetensors, atomically, with `extra` and the GEMM
    /// variants this trainer timed in its metadata (inference reuses them untimed).
    pub fn save_model(
        &mut self,
        path: &std::path::Path,
        extra: std::collections::HashMap<String, String>,
    ) -> Result<()> {
        self.save_model_as(path, extra, crate::model::SaveDtype::F32)
    }

    /// `save_model` with the weights stored as `dtype`.
    pub fn save_model_as(
        &mut self,
        path: &std::path::Path,
        mut extra: std::collections::HashMap<String, String>,
        dtype: crate::model::SaveDtype,
    ) -> Result<()> {
        extra.insert("gemm".to_string(), self.gemm_choice.to_json().to_string());
        self.model()?.save_as(path, &extra, dtype)
    }

    /// One epoch: the training images in `epoch`'s order (shuffled with the run's seed,
    /// `epoch_order`), every step, and the epoch's loss sums. Waits for the GPU.
    pub fn train_epoch(&mut self, epoch: usize) -> Result<LossSums> {
        let order = super::options::epoch_order(self.hyper.seed as u64, epoch, self.data.len);
        self.set_order(&order)?;
        let steps = self.train_batches();
        for b in 0..steps {
            self.train_step(b)?;
        }
        self.read_history(steps)
    }

    /// The per-step uniform of a training batch: `Net::step_values` with Adam's learning
    /// rate and bias corrections for the next step.
    pub fn step_values(&self, images: usize, batch_start: usize, slot: usize, noise: f32) -> Step {
        let t = (self.steps_done + 1) as i32;
        Step {
            lr_t: self.hyper.lr / (1.0 - ADAM_BETA1.powi(t)),
            bc2_sqrt: (1.0 - ADAM_BETA2.powi(t)).sqrt(),
            ..self.net.step_values(images, batch_start, slot, noise)
        }
    }

    /// Takes this epoch's order of the training images (and drops a history read in
    /// flight: the epoch's steps rewrite the slots from 0).
    pub fn set_order(&mut self, order: &[u32]) -> Result<()> {
        if order.len() != self.data.len {
            bail!("the order lists {} images but the training set has {}", order.len(), self.data.len);
        }
        self.cancel_history();
        let gpu = self.net.gpu;
        self.data.set_order(gpu, order);
        Ok(())
    }

    /// Images in the training set.
    pub fn train_len(&self) -> usize {
        self.data.len
    }

    /// Images per shard where the training set is streamed, None where it is resident.
    pub fn shard_images(&self) -> Option<usize> {
        self.data.shard()
    }

    /// Steps per epoch.
    pub fn train_batches(&self) -> usize {
        self.batches(self.data.len)
    }

    /// Writes the uniform of training step `b` of the epoch (its loss goes to
    /// history slot `b`) and advances the counters; the caller then encodes
    /// `train_dispatches()` and `copy_weights` and submits. An error where a streamed
    /// training set's images cannot be read.
    pub fn begin_train_step(&mut self, b: usize) -> Result<()> {
        let start = b * self.batch;
        let rows = self.batch.min(self.data.len - start);
        let gpu = self.net.gpu;
        self.data.prepare(gpu, start)?;
        let step = self.step_values(rows, start, b, 1.0);
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        self.steps_done += 1;
        self.counter += 1;
        Ok(())
    }

    /// Submits training step `b` of the epoch. Does not wait. An error where a streamed
    /// training set's images cannot be read.
    pub fn train_step(&mut self, b: usize) -> Result<()> {
        self.begin_train_step(b)?;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        kernels::encode_all(&mut enc, "train step", &self.lists.train);
        if self.copies_weights_each_step() {
            self.copy_weights(&mut enc);
        }
        self.gpu.submit(enc.finish());
        Ok(())
    }

    /// The dispatches of one training step, in order.
    pub fn train_dispatches(&self) -> &[Dispatch] {
        &self.lists.train
    }
}

/// Both datasets have the model's image shape and at least one image.
fn check_datasets(c: &VaeConfig, train: &dyn ImageSource, test: &Dataset) -> Result<()> {
    for (what, ds) in [("training", train.dims()), ("test", test.dims())] {
        if (ds.width, ds.height, ds.channels) != (c.width, c.height, c.channels) {
            bail!(
                "the model expects {}x{} images with {} channel(s) but the {what} set has {}x{} with {}",
                c.width,
                c.height,
                c.channels,
                ds.width,
                ds.height,
                ds.channels
            );
        }
        if ds.len == 0 {
            bail!("the {what} set is empty");
        }
    }
    Ok(())
}

/// On lavapipe, a convolution's weight gradient loops over the images and output pixels
/// in one invocation, which llvmpipe cuts short past LLVMPIPE_LOOP_TURNS: refuse a batch
/// that would, naming the largest that fits.
fn check_loop_turns(gpu: &Gpu, k: &Kernels, layout: &Layout, batch: usize, samples: usize) -> Result<()> {
    if !gpu.is_llvmpipe() {
        return Ok(());
    }
    for layer in layout.layers().iter().filter(|ly| ly.op != Op::Dense) {
        let s = layer.conv_shape();
        let variant = kernels::conv_variant(k, "conv2d_backward_weight", &s);
        let transposed = matches!(layer.op, Op::Deconv { .. });
        let turns = |rows: usize| kernels::weight_loop_turns(variant, &s, rows, transposed);
        let m = (batch * samples).next_multiple_of(4);
        if turns(m) > kernels::LLVMPIPE_LOOP_TURNS {
            let most = (1..=batch).rev().find(|&b| turns(b * samples) <= kernels::LLVMPIPE_LOOP_TURNS);
            bail!(
                "a batch of {batch} images x {samples} Monte-Carlo sample(s) is too large for layer {} on lavapipe: its weight gradient would run {} loop turns in one shader invocation, past llvmpipe's limit of {} (the results would be wrong). Use --batch-size {} or less",
                layer.name,
                turns(m),
                kernels::LLVMPIPE_LOOP_TURNS,
                most.unwrap_or(1)
            );
        }
    }
    Ok(())
}

/// What the importance-weighted objective needs: a VAE (an autoencoder has no q(z|x) to
/// weigh by), no free bits (its KL is estimated per draw, not per dimension), and
/// iwae_weights' loop within llvmpipe's bound at `m` rows.
fn check_iwae(gpu: &Gpu, c: &crate::model::VaeConfig, hyper: &Hyper, m: usize) -> Result<()> {
    if c.kind == crate::model::ModelKind::Ae {
        bail!("--objective iwae weighs draws of z from q(z|x): an autoencoder (--model-kind ae) has none; train it with --objective elbo");
    }
    if hyper.free_bits > 0.0 {
        bail!("--free-bits applies to the ELBO's per-dimension KL; the importance-weighted bound has none: drop --free-bits or use --objective elbo");
    }
    if !kernels::iwae_fits(gpu, m, hyper.samples, c.latent) {
        bail!(
            "--k {} at --batch-size {} with latent {} is more work per invocation than this CPU adapter runs (llvmpipe ends long loops); give a smaller --k or --batch-size",
            hyper.samples,
            m / hyper.samples,
            c.latent
        );
    }
    Ok(())
}
