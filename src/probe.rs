//! A softmax (multinomial logistic) regression trained on the GPU on fixed
//! features: the linear probe that asks how much of the classes a VAE's
//! encoder has put into its posterior means, beside the same probe on pixels.

use crate::gemm::{self, Pass};
use crate::gpu::{Gpu, Matrix};
use crate::kernels::{self, Bind, Dispatch, Kernels, Step};
use anyhow::{bail, Result};

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
        let kern = Kernels::new(gpu)?;
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
        let gp = kernels::Gemm {
            m: m as u32,
            n: classes as u32,
            k: k as u32,
            act: 0,
            bias: (rows * stride) as u32,
            grad_w: 0,
            stride: stride as u32,
            grad_b: (rows * stride) as u32,
        };
        let gu = gpu.uniform("probe gemm", &gp);
        let cu = gpu.uniform("classify", &kernels::Classify { m: m as u32, classes: classes as u32, pad: [0; 2] });
        let au = gpu.uniform("adam", &kernels::Adam { count: (len / 4) as u32, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
        // the probe's GEMMs are small: the portable variant serves
        let v = |_: Pass| gemm::Variant::Texel;
        use Bind::{Buffer as B, Texture as T};
        let forward = gemm::dispatch(
            gpu,
            &kern,
            Pass::Forward,
            v(Pass::Forward),
            "gemm_forward probe",
            &[(0, B(&gu)), (1, T(&features.view)), (2, T(&weight.view)), (4, T(&logits.view)), (5, B(&params))],
            m,
            classes,
            k,
        );
        let ce = Dispatch::new(
            gpu,
            "softmax_cross_entropy",
            &kern.softmax_cross_entropy,
            &[
                (0, B(&cu)),
                (1, B(&step_uniform)),
                (2, T(&logits.view)),
                (3, B(&labels)),
                (4, T(&d_logits.view)),
                (5, B(&row_loss)),
            ],
            m,
            64,
        );
        let backward = gemm::dispatch(
            gpu,
            &kern,
            Pass::BackwardWeight,
            v(Pass::BackwardWeight),
            "gemm_backward_weight probe",
            &[(0, B(&gu)), (1, T(&d_logits.view)), (2, T(&features.view)), (6, B(&grads))],
            m,
            classes,
            k,
        );
        let adam = Dispatch::new(
            gpu,
            "adam_update",
            &kern.adam_update,
            &[(0, B(&au)), (1, B(&step_uniform)), (2, B(&params)), (3, B(&grads)), (4, B(&m1)), (5, B(&m2))],
            len / 4,
            64,
        );
        let eval_list = vec![forward.clone(), ce.clone()];
        let train_list = vec![forward, ce, backward, adam];
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
            _keep: vec![grads, m1, m2, gu, cu, au],
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
