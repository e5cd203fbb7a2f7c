//! A VAE's activations on the device: the batch, every layer's output and the
//! gradient of its pre-activation, z, dz, the decoded means and the observed mask.

use crate::gpu::{Gpu, Matrix};
use crate::model::{Layout, VaeConfig};
use anyhow::Result;

/// A VAE's activations on the device at m rows.
pub struct VaeTensors {
    /// The batch's images (m, input columns).
    pub x: Matrix,
    /// Per layer (encoder, heads, decoder: `Layout::layers`), its output and the gradient
    /// of its pre-activation.
    pub outs: Vec<Matrix>,
    pub grads: Vec<Matrix>,
    pub z: Matrix,
    pub dz: Matrix,
    /// The sigmoid of the decoder's output: the means of both likelihoods.
    pub probs: Matrix,
    /// 1 where x is observed (restoration).
    pub observed: Matrix,
    /// The heads' index in `outs`.
    pub(crate) heads: usize,
}

impl VaeTensors {
    pub fn new(gpu: &Gpu, c: &VaeConfig, layout: &Layout, m: usize) -> Result<VaeTensors> {
        let layers = layout.layers();
        let each = |what: &str| -> Result<Vec<Matrix>> {
            layers.iter().map(|l| gpu.matrix(&format!("{what} {}", l.name), m, l.output.cols())).collect()
        };
        let cols = c.input_shape().cols();
        let out_cols = layout.decoder.last().expect("a decoder has layers").output.cols();
        Ok(VaeTensors {
            x: gpu.matrix("x", m, cols)?,
            outs: each("out")?,
            grads: each("grad")?,
            z: gpu.matrix("z", m, c.latent)?,
            dz: gpu.matrix("dz", m, c.latent)?,
            probs: gpu.matrix("probs", m, out_cols)?,
            observed: gpu.matrix("observed", m, cols)?,
            heads: layout.encoder.len(),
        })
    }

    /// [mu | logvar] (m, 2L).
    pub fn mulv(&self) -> &Matrix {
        &self.outs[self.heads]
    }

    /// The decoder's output (logits, or means and raw log-variances).
    pub fn out(&self) -> &Matrix {
        self.outs.last().unwrap()
    }
}
