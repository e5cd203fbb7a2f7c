//! The host scheduler: owns every buffer, texture and prebuilt dispatch list
//! of the MLP VAE, and replays them: one encoder and one submit per training
//! step, no host read-back except the loss history at logging intervals.
//!
//! The step, as dispatched (shapes for batch m, pixels D, hidden H, latent L):
//!   gather_batch          order, dataset      -> x (m, D)
//!   gemm_forward  enc     x, W_enc            -> h1 (m, H), ReLU
//!   gemm_forward  heads   h1, W_heads         -> mulv (m, 2L) = [mu | logvar]
//!   reparam_forward       mulv, eps           -> z (m, L)
//!   gemm_forward  dec     z, W_dec            -> h3 (m, H), ReLU
//!   gemm_forward  out     h3, W_out           -> logits (m, D)
//!   elbo_forward_backward logits, x, mulv     -> dlogits (m, D), image_loss (m)
//!   loss_reduce           image_loss          -> history[slot]
//!   gemm_backward_weight  out / dec / heads / enc -> grads (flat)
//!   gemm_backward_input   out / dec / heads   -> dh3, dz, dh1
//!   reparam_backward      dz, mulv            -> dmulv (m, 2L)
//!   adam_update           grads               -> params, moments (flat)
//!   then copies of the updated weights into the textures the GEMMs read.

use crate::data::Dataset;
use crate::gemm::{self, GemmPreference, Pass};
use crate::gpu::{Gpu, Matrix};
use crate::kernels::{self, Bind, Dispatch, Kernels, Step};
use crate::model::{Dense, Model};
use anyhow::{bail, Result};

pub const ADAM_BETA1: f32 = 0.9;
pub const ADAM_BETA2: f32 = 0.999;
pub const ADAM_EPS: f32 = 1e-8;

/// Optimisation settings that the kernels see.
#[derive(Clone, Debug)]
pub struct Hyper {
    pub lr: f32,
    pub beta: f32,
    pub seed: u32,
    pub binarize: bool,
    /// Which GEMM kernels to use (measured on this adapter by default).
    pub gemm: GemmPreference,
}

/// Sums over a pass of the data, in nats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSums {
    pub recon: f64,
    pub kl: f64,
    pub images: f64,
}

impl LossSums {
    /// -ELBO per image with the given KL weight.
    pub fn loss(&self, beta: f64) -> f64 {
        (self.recon + beta * self.kl) / self.images.max(1.0)
    }
    pub fn recon_per_image(&self) -> f64 {
        self.recon / self.images.max(1.0)
    }
    pub fn kl_per_image(&self) -> f64 {
        self.kl / self.images.max(1.0)
    }
}

struct Weights {
    enc: Matrix,
    heads: Matrix,
    dec: Matrix,
    out: Matrix,
}

pub struct Trainer<'g> {
    gpu: &'g Gpu,
    pub model: Model,
    pub hyper: Hyper,
    /// The GEMM variant of each layer and pass, measured fastest on this adapter (or forced).
    pub gemm_choice: gemm::Choice,
    /// Batch rows (the largest batch; smaller last batches mask their padding rows).
    pub batch: usize,
    /// Adam steps taken.
    pub steps_done: u32,
    /// Random-stream counter, advanced by every batch (training or evaluation).
    counter: u32,
    history_slots: usize,

    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    step_uniform: wgpu::Buffer,
    history: wgpu::Buffer,
    train_order: wgpu::Buffer,
    train_len: usize,
    test_len: usize,

    weights: Weights,
    pub x: Matrix,
    pub z: Matrix,
    pub probs: Matrix,

    train_step: Vec<Dispatch>,
    eval_step: Vec<Dispatch>,
    decode: Vec<Dispatch>,
    sigmoid: Vec<Dispatch>,
    // kept alive for the bind groups
    _keep: Vec<wgpu::Buffer>,
    _mats: Vec<Matrix>,
}

fn gemm_params(gpu: &Gpu, d: &Dense, m: usize, relu: bool) -> wgpu::Buffer {
    gpu.uniform(
        "gemm",
        &kernels::Gemm {
            m: m as u32,
            n: d.n as u32,
            k: d.k as u32,
            act: relu as u32,
            bias: d.b as u32,
            grad_w: d.w as u32,
            stride: d.stride as u32,
            grad_b: d.b as u32,
        },
    )
}

impl<'g> Trainer<'g> {
    pub fn new(
        gpu: &'g Gpu,
        model: Model,
        hyper: Hyper,
        batch: usize,
        train: &Dataset,
        test: &Dataset,
    ) -> Result<Trainer<'g>> {
        let c = model.config.clone();
        let l = model.layout.clone();
        let (d, hid, lat) = (c.pixels(), c.hidden, c.latent);
        if train.image_len() != d || test.image_len() != d {
            bail!(
                "the model expects {}x{} images but the data has {}x{}",
                c.width,
                c.height,
                train.width,
                train.height
            );
        }
        if batch == 0 {
            bail!("--batch-size must be at least 1");
        }
        let k = Kernels::new(gpu)?;
        let m = batch.next_multiple_of(4);
        let floats = (l.len * 4) as u64;
        let params = gpu.buffer_with("params", bytemuck::cast_slice(&model.params))?;
        let grads = gpu.buffer("grads", floats, wgpu::BufferUsages::empty())?;
        let moment1 = gpu.buffer("adam moment1", floats, wgpu::BufferUsages::empty())?;
        let moment2 = gpu.buffer("adam moment2", floats, wgpu::BufferUsages::empty())?;
        let step_uniform = gpu.uniform("step", &Step::default());
        let image_loss = gpu.buffer("image_loss", (m * 8) as u64, wgpu::BufferUsages::empty())?;
        let history_slots = train.len.div_ceil(batch).max(test.len.div_ceil(batch)) + 1;
        let history = gpu.buffer("history", (history_slots * 16) as u64, wgpu::BufferUsages::empty())?;
        let train_data = gpu.buffer_with("training set", &train.pixels)?;
        let test_data = gpu.buffer_with("test set", &test.pixels)?;
        let train_order = gpu.buffer("train order", (train.len * 4) as u64, wgpu::BufferUsages::empty())?;
        let test_order_vec: Vec<u32> = (0..test.len as u32).collect();
        let test_order = gpu.buffer_with("test order", bytemuck::cast_slice(&test_order_vec))?;

        let weights = Weights {
            enc: gpu.matrix("W_enc", l.enc.rows, l.enc.k)?,
            heads: gpu.matrix("W_heads", l.heads.rows, l.heads.k)?,
            dec: gpu.matrix("W_dec", l.dec.rows, l.dec.k)?,
            out: gpu.matrix("W_out", l.out.rows, l.out.k)?,
        };
        let x = gpu.matrix("x", m, d)?;
        let h1 = gpu.matrix("h1", m, hid)?;
        let mulv = gpu.matrix("mulv", m, 2 * lat)?;
        let z = gpu.matrix("z", m, lat)?;
        let h3 = gpu.matrix("h3", m, hid)?;
        let logits = gpu.matrix("logits", m, d)?;
        let dlogits = gpu.matrix("dlogits", m, d)?;
        let dh3 = gpu.matrix("dh3", m, hid)?;
        let dz = gpu.matrix("dz", m, lat)?;
        let dmulv = gpu.matrix("dmulv", m, 2 * lat)?;
        let dh1 = gpu.matrix("dh1", m, hid)?;
        let probs = gpu.matrix("probs", m, d)?;

        let mut keep = Vec::new();
        use Bind::{Buffer as B, Texture as T};
        // element-wise kernels: one invocation per texel
        let texels = |rows: usize, cols: usize| rows * cols.div_ceil(4);

        // the GEMM variants: measured on the model's two large layers unless forced
        let gemms: Vec<(Pass, usize, usize, usize)> =
            l.layers().iter().flat_map(|d| Pass::ALL.map(|p| (p, m, d.n, d.k))).collect();
        let choice = gemm::choose(gpu, &k, hyper.gemm, &gemms)?;
        // forward: y = act(x W^T + b)
        let forward = |keep: &mut Vec<wgpu::Buffer>,
                       label,
                       dense: &Dense,
                       relu: bool,
                       input: &Matrix,
                       w: &Matrix,
                       output: &Matrix| {
            let u = gemm_params(gpu, dense, m, relu);
            let binds = [(0, B(&u)), (1, T(&input.view)), (2, T(&w.view)), (4, T(&output.view)), (5, B(&params))];
            let dsp = gemm::dispatch(
                gpu,
                &k,
                Pass::Forward,
                choice.get(Pass::Forward, m, dense.n, dense.k),
                label,
                &binds,
                m,
                dense.n,
                dense.k,
            );
            keep.push(u);
            dsp
        };
        let backward_weight = |keep: &mut Vec<wgpu::Buffer>, label, dense: &Dense, dy: &Matrix, input: &Matrix| {
            let u = gemm_params(gpu, dense, m, false);
            let binds = [(0, B(&u)), (1, T(&dy.view)), (2, T(&input.view)), (6, B(&grads))];
            let pass = Pass::BackwardWeight;
            let dsp = gemm::dispatch(
                gpu,
                &k,
                pass,
                choice.get(pass, m, dense.n, dense.k),
                label,
                &binds,
                m,
                dense.n,
                dense.k,
            );
            keep.push(u);
            dsp
        };
        let backward_input = |keep: &mut Vec<wgpu::Buffer>,
                              label,
                              dense: &Dense,
                              dy: &Matrix,
                              w: &Matrix,
                              mask: Option<&Matrix>,
                              dx: &Matrix| {
            let u = gemm_params(gpu, dense, m, mask.is_some());
            let mask = mask.unwrap_or(dy);
            let binds = [(0, B(&u)), (1, T(&dy.view)), (2, T(&w.view)), (3, T(&mask.view)), (4, T(&dx.view))];
            let pass = Pass::BackwardInput;
            let dsp = gemm::dispatch(
                gpu,
                &k,
                pass,
                choice.get(pass, m, dense.n, dense.k),
                label,
                &binds,
                m,
                dense.n,
                dense.k,
            );
            keep.push(u);
            dsp
        };
        let gather = |keep: &mut Vec<wgpu::Buffer>, data: &wgpu::Buffer, order: &wgpu::Buffer| {
            let u = gpu.uniform(
                "gather",
                &kernels::Gather { m: m as u32, pixels: d as u32, binarize: hyper.binarize as u32, pad: 0 },
            );
            let dsp = Dispatch::new(
                gpu,
                "gather_batch",
                &k.gather_batch,
                &[(0, B(&u)), (1, B(&step_uniform)), (2, B(data)), (3, B(order)), (4, T(&x.view))],
                texels(m, d),
                64,
            )
            .with_elementwise_cost(format!("m={m} D={d}"), m * d, 1.0, 5.0);
            keep.push(u);
            dsp
        };
        let reparam_u = gpu.uniform("reparam", &kernels::Reparam { m: m as u32, latent: lat as u32, pad: [0; 2] });
        let reparam_forward = || {
            Dispatch::new(
                gpu,
                "reparam_forward",
                &k.reparam_forward,
                &[(0, B(&reparam_u)), (1, B(&step_uniform)), (2, T(&mulv.view)), (4, T(&z.view))],
                texels(m, lat),
                64,
            )
            .with_elementwise_cost(format!("m={m} L={lat}"), m * lat, 30.0, 12.0)
        };
        let elbo_u = gpu.uniform("elbo", &kernels::Elbo { m: m as u32, pixels: d as u32, latent: lat as u32, pad: 0 });
        let elbo = || {
            Dispatch::new(
                gpu,
                "elbo_forward_backward",
                &k.elbo_forward_backward,
                &[
                    (0, B(&elbo_u)),
                    (1, B(&step_uniform)),
                    (2, T(&logits.view)),
                    (3, T(&x.view)),
                    (4, T(&mulv.view)),
                    (5, T(&dlogits.view)),
                    (6, B(&image_loss)),
                ],
                m,
                64,
            )
            .with_elementwise_cost(format!("m={m} D={d} L={lat}"), m * d, 12.0, 12.0)
        };
        let reduce_u = gpu.uniform("reduce", &kernels::Reduce { m: m as u32, pad: [0; 3] });
        let reduce = || {
            Dispatch::new(
                gpu,
                "loss_reduce",
                &k.loss_reduce,
                &[(0, B(&reduce_u)), (1, B(&step_uniform)), (2, B(&image_loss)), (3, B(&history))],
                1,
                1,
            )
            .with_elementwise_cost(format!("m={m}"), m, 2.0, 8.0)
        };

        let mut train_step = vec![gather(&mut keep, &train_data, &train_order)];
        train_step.push(forward(&mut keep, "gemm_forward enc", &l.enc, true, &x, &weights.enc, &h1));
        train_step.push(forward(&mut keep, "gemm_forward heads", &l.heads, false, &h1, &weights.heads, &mulv));
        train_step.push(reparam_forward());
        train_step.push(forward(&mut keep, "gemm_forward dec", &l.dec, true, &z, &weights.dec, &h3));
        train_step.push(forward(&mut keep, "gemm_forward out", &l.out, false, &h3, &weights.out, &logits));
        train_step.push(elbo());
        train_step.push(reduce());
        train_step.push(backward_weight(&mut keep, "gemm_backward_weight out", &l.out, &dlogits, &h3));
        train_step.push(backward_input(
            &mut keep,
            "gemm_backward_input out",
            &l.out,
            &dlogits,
            &weights.out,
            Some(&h3),
            &dh3,
        ));
        train_step.push(backward_weight(&mut keep, "gemm_backward_weight dec", &l.dec, &dh3, &z));
        train_step.push(backward_input(&mut keep, "gemm_backward_input dec", &l.dec, &dh3, &weights.dec, None, &dz));
        train_step.push(
            Dispatch::new(
                gpu,
                "reparam_backward",
                &k.reparam_backward,
                &[(0, B(&reparam_u)), (1, B(&step_uniform)), (2, T(&mulv.view)), (3, T(&dz.view)), (4, T(&dmulv.view))],
                texels(m, 2 * lat),
                64,
            )
            .with_elementwise_cost(format!("m={m} L={lat}"), m * lat, 40.0, 20.0),
        );
        train_step.push(backward_weight(&mut keep, "gemm_backward_weight heads", &l.heads, &dmulv, &h1));
        train_step.push(backward_input(
            &mut keep,
            "gemm_backward_input heads",
            &l.heads,
            &dmulv,
            &weights.heads,
            Some(&h1),
            &dh1,
        ));
        train_step.push(backward_weight(&mut keep, "gemm_backward_weight enc", &l.enc, &dh1, &x));
        let adam_u = gpu.uniform(
            "adam",
            &kernels::Adam { count: (l.len / 4) as u32, beta1: ADAM_BETA1, beta2: ADAM_BETA2, eps: ADAM_EPS },
        );
        train_step.push(
            Dispatch::new(
                gpu,
                "adam_update",
                &k.adam_update,
                &[
                    (0, B(&adam_u)),
                    (1, B(&step_uniform)),
                    (2, B(&params)),
                    (3, B(&grads)),
                    (4, B(&moment1)),
                    (5, B(&moment2)),
                ],
                l.len / 4,
                64,
            )
            .with_elementwise_cost(format!("params={}", l.len), l.len, 10.0, 28.0),
        );

        let eval_step = vec![
            gather(&mut keep, &test_data, &test_order),
            forward(&mut keep, "gemm_forward enc", &l.enc, true, &x, &weights.enc, &h1),
            forward(&mut keep, "gemm_forward heads", &l.heads, false, &h1, &weights.heads, &mulv),
            reparam_forward(),
            forward(&mut keep, "gemm_forward dec", &l.dec, true, &z, &weights.dec, &h3),
            forward(&mut keep, "gemm_forward out", &l.out, false, &h3, &weights.out, &logits),
            elbo(),
            reduce(),
        ];
        let decode = vec![
            forward(&mut keep, "gemm_forward dec", &l.dec, true, &z, &weights.dec, &h3),
            forward(&mut keep, "gemm_forward out", &l.out, false, &h3, &weights.out, &logits),
        ];
        let sig_u = gpu.uniform("sigmoid", &kernels::Elementwise { m: m as u32, cols: d as u32, pad: [0; 2] });
        let sigmoid = vec![Dispatch::new(
            gpu,
            "sigmoid_forward",
            &k.sigmoid_forward,
            &[(0, B(&sig_u)), (1, T(&logits.view)), (3, T(&probs.view))],
            texels(m, d),
            64,
        )];

        keep.extend([
            moment1, moment2, image_loss, train_data, test_data, test_order, reparam_u, elbo_u, reduce_u, adam_u, sig_u,
        ]);
        let trainer = Trainer {
            gpu,
            model,
            hyper,
            gemm_choice: choice,
            batch,
            steps_done: 0,
            counter: 0,
            history_slots,
            params,
            grads,
            step_uniform,
            history,
            train_order,
            train_len: train.len,
            test_len: test.len,
            weights,
            x,
            z,
            probs,
            train_step,
            eval_step,
            decode,
            sigmoid,
            _keep: keep,
            _mats: vec![h1, mulv, h3, logits, dlogits, dh3, dz, dmulv, dh1],
        };
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        trainer.copy_weights(&mut enc);
        gpu.queue.submit([enc.finish()]);
        gpu.wait()?;
        Ok(trainer)
    }

    /// Dispatches per training step.
    pub fn dispatches_per_step(&self) -> usize {
        self.train_step.len()
    }

    /// Bytes copied into the weight textures per step.
    pub fn weight_copy_bytes(&self) -> usize {
        self.model.layout.layers().iter().map(|d| d.rows * d.k.div_ceil(4) * 16).sum()
    }

    /// Copies the flat parameters' weight matrices into the GEMMs' textures.
    pub fn copy_weights(&self, enc: &mut wgpu::CommandEncoder) {
        let l = &self.model.layout;
        for (dense, tex) in [
            (&l.enc, &self.weights.enc),
            (&l.heads, &self.weights.heads),
            (&l.dec, &self.weights.dec),
            (&l.out, &self.weights.out),
        ] {
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.params,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: (dense.w * 4) as u64,
                        bytes_per_row: Some((dense.stride * 4) as u32),
                        rows_per_image: None,
                    },
                },
                tex.texture.as_image_copy(),
                tex.texture.size(),
            );
        }
    }

    pub fn step_values(&self, rows: usize, batch_start: usize, slot: usize, noise: f32) -> Step {
        let t = (self.steps_done + 1) as i32;
        Step {
            seed: self.hyper.seed,
            step: self.counter,
            rows: rows as u32,
            batch_start: batch_start as u32,
            slot: slot as u32,
            inv_rows: 1.0 / rows.max(1) as f32,
            noise,
            beta: self.hyper.beta,
            lr_t: self.hyper.lr / (1.0 - ADAM_BETA1.powi(t)),
            bc2_sqrt: (1.0 - ADAM_BETA2.powi(t)).sqrt(),
            pad0: 0,
            pad1: 0,
        }
    }

    /// Uploads this epoch's order of the training images.
    pub fn set_order(&self, order: &[u32]) -> Result<()> {
        if order.len() != self.train_len {
            bail!("the order lists {} images but the training set has {}", order.len(), self.train_len);
        }
        self.gpu.queue.write_buffer(&self.train_order, 0, bytemuck::cast_slice(order));
        Ok(())
    }

    /// Steps per epoch.
    pub fn train_batches(&self) -> usize {
        self.batches(self.train_len)
    }

    /// Steps per pass over `len` images.
    pub fn batches(&self, len: usize) -> usize {
        len.div_ceil(self.batch)
    }

    /// Writes the uniform of training step `b` of the epoch (its loss goes to
    /// history slot `b`) and advances the counters; the caller then encodes
    /// `train_dispatches()` and `copy_weights` and submits.
    pub fn begin_train_step(&mut self, b: usize) {
        let start = b * self.batch;
        let rows = self.batch.min(self.train_len - start);
        let step = self.step_values(rows, start, b, 1.0);
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        self.steps_done += 1;
        self.counter += 1;
    }

    /// Submits training step `b` of the epoch. Does not wait.
    pub fn train_step(&mut self, b: usize) {
        self.begin_train_step(b);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        kernels::encode_all(&mut enc, "train step", &self.train_step);
        self.copy_weights(&mut enc);
        self.gpu.queue.submit([enc.finish()]);
    }

    /// The dispatches of one training step, in order.
    pub fn train_dispatches(&self) -> &[Dispatch] {
        &self.train_step
    }

    /// Reads the loss sums of history slots 0..n.
    pub fn read_history(&self, n: usize) -> Result<LossSums> {
        let v = self.gpu.read_f32(&self.history, 0, n.min(self.history_slots) * 4)?;
        let mut s = LossSums::default();
        for slot in v.chunks(4) {
            s.recon += slot[0] as f64;
            s.kl += slot[1] as f64;
            s.images += slot[2] as f64;
        }
        Ok(s)
    }

    /// Per-batch losses (recon + beta kl, per image) of history slots 0..n.
    pub fn batch_losses(&self, n: usize) -> Result<Vec<f32>> {
        let v = self.gpu.read_f32(&self.history, 0, n.min(self.history_slots) * 4)?;
        Ok(v.chunks(4).map(|s| (s[0] + self.hyper.beta * s[1]) / s[2].max(1.0)).collect())
    }

    fn eval_batch(&mut self, b: usize, noise: f32) {
        let start = b * self.batch;
        let rows = self.batch.min(self.test_len - start);
        let step = self.step_values(rows, start, b, noise);
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        kernels::encode_all(&mut enc, "eval step", &self.eval_step);
        self.gpu.queue.submit([enc.finish()]);
        self.counter += 1;
    }

    /// The test set's loss sums with z sampled (one Monte-Carlo sample per image).
    pub fn evaluate(&mut self) -> Result<LossSums> {
        let n = self.batches(self.test_len);
        for b in 0..n {
            self.eval_batch(b, 1.0);
        }
        self.read_history(n)
    }

    /// The first test batch and its reconstructions (sigmoid of the logits at z = mu),
    /// both (batch, D) with values in [0, 1].
    pub fn reconstruct_first_batch(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.eval_batch(0, 0.0);
        kernels::run(self.gpu, &self.sigmoid)?;
        let d = self.model.config.pixels();
        let mut x = self.gpu.read_matrix(&self.x)?;
        let mut p = self.gpu.read_matrix(&self.probs)?;
        x.truncate(self.batch.min(self.test_len) * d);
        p.truncate(x.len());
        Ok((x, p))
    }

    /// Decodes latent codes z (n, L), n <= batch, to pixel probabilities (n, D).
    pub fn decode(&mut self, z: &[f32]) -> Result<Vec<f32>> {
        let lat = self.model.config.latent;
        let n = z.len() / lat;
        if n > self.batch {
            bail!("can decode at most {} codes at once, got {n}", self.batch);
        }
        self.gpu.write_matrix(&self.z, z);
        let list: Vec<&Dispatch> = self.decode.iter().chain(self.sigmoid.iter()).collect();
        kernels::run_refs(self.gpu, &list)?;
        let mut p = self.gpu.read_matrix(&self.probs)?;
        p.truncate(n * self.model.config.pixels());
        Ok(p)
    }

    /// Copies the GPU's parameters back into `self.model`.
    pub fn sync_model(&mut self) -> Result<()> {
        self.model.params = self.gpu.read_f32(&self.params, 0, self.model.layout.len)?;
        Ok(())
    }

    /// The flat gradient of the last step (for tests).
    pub fn read_grads(&self) -> Result<Vec<f32>> {
        self.gpu.read_f32(&self.grads, 0, self.model.layout.len)
    }

    pub fn wait(&self) -> Result<()> {
        self.gpu.wait()
    }
}
