//! A chain: a run of layers where each one's output feeds the next, with the device
//! tensors of each. A model is chains joined by stages (the reparameterisation, the
//! loss); walking a chain forward gives its layers' forward dispatches in order, and
//! walking it backward their backward dispatches from the last layer to the first.

use super::Builder;
use crate::gpu::Matrix;
use crate::kernels::Dispatch;
use crate::model::{Activation, Layer};
use std::ops::Range;

pub struct Chain<'a> {
    pub layers: &'a [&'a Layer],
    /// Per layer, its weight texture.
    pub weights: &'a [Matrix],
    /// The first layer's input.
    pub input: &'a Matrix,
    /// Per layer, its output and the gradient of its pre-activation.
    pub outs: &'a [Matrix],
    pub grads: &'a [Matrix],
    /// Where the gradient of the first layer's input goes (never through an activation): none
    /// when nothing upstream learns.
    pub d_input: Option<&'a Matrix>,
}

impl<'a> Chain<'a> {
    /// Layer i's input.
    pub fn input_of(&self, i: usize) -> &'a Matrix {
        if i == 0 {
            self.input
        } else {
            &self.outs[i - 1]
        }
    }

    /// Where layer i's input gradient goes, and the activation its input came out of.
    pub fn d_input_of(&self, i: usize) -> Option<(&'a Matrix, Activation)> {
        if i == 0 {
            self.d_input.map(|d| (d, Activation::Identity))
        } else {
            Some((&self.grads[i - 1], self.layers[i - 1].act))
        }
    }

    /// The forward dispatches of layers `range`.
    pub fn forward(&self, b: &mut Builder, range: Range<usize>) -> Vec<Dispatch> {
        let mut list = Vec::new();
        for i in range {
            list.extend(b.forward(self.layers[i], self.input_of(i), &self.weights[i], &self.outs[i]));
        }
        list
    }

    /// Every layer's backward dispatches, last layer first.
    pub fn backward(&self, b: &mut Builder) -> Vec<Dispatch> {
        let mut list = Vec::new();
        for i in (0..self.layers.len()).rev() {
            let (x, w, dy) = (self.input_of(i), &self.weights[i], &self.grads[i]);
            list.extend(b.backward(self.layers[i], x, w, dy, self.d_input_of(i)));
        }
        list
    }

    /// The input gradients alone, last layer first, down to `d_input` (no weight
    /// gradients: restoration moves z, not the model).
    pub fn backward_input(&self, b: &mut Builder) -> Vec<Dispatch> {
        let mut list = Vec::new();
        for i in (0..self.layers.len()).rev() {
            if let Some((dx, act)) = self.d_input_of(i) {
                let (x, w, dy) = (self.input_of(i), &self.weights[i], &self.grads[i]);
                list.extend(b.backward_input(self.layers[i], x, w, dy, dx, act));
            }
        }
        list
    }
}
