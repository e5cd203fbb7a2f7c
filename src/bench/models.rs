//! The benchmarked models: the reference MLP VAE and the convolutional VAE on MNIST,
//! and a 64x64 RGB convolutional VAE of the depth users train on face sets (CelebA's
//! usual setting in PyTorch-VAE and pythae) on synthetic images of that shape.

use crate::data::{load_mnist, mnist_dir, Dataset};
use crate::model::{Arch, VaeConfig};
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchModel {
    /// The reference MLP VAE, 784-400-20, on MNIST.
    Mlp,
    /// The convolutional VAE on MNIST: 32 and 64 channels, latent 16.
    Conv,
    /// The convolutional VAE on 64x64 RGB images: 32, 64, 128 and 256 channels, latent 128.
    Rgb64,
}

impl BenchModel {
    pub const ALL: [BenchModel; 3] = [BenchModel::Mlp, BenchModel::Conv, BenchModel::Rgb64];

    /// Its name in reports (the keys of earlier reports keep theirs).
    pub fn name(self) -> &'static str {
        match self {
            BenchModel::Mlp => "mlp-vae 784-400-20",
            BenchModel::Conv => "conv-vae 32-64-16",
            BenchModel::Rgb64 => "conv-vae 64x64x3 32-64-128-256-128",
        }
    }

    /// The batch its kernels are profiled at and PyTorch's step is compared at.
    pub fn peer_batch(self) -> usize {
        match self {
            BenchModel::Mlp | BenchModel::Conv => 128,
            BenchModel::Rgb64 => 64,
        }
    }

    /// The model for images of `train`'s shape.
    pub fn config(self, train: &Dataset) -> VaeConfig {
        let conv = |channels: Vec<usize>, latent| VaeConfig {
            arch: Arch::Conv,
            channels: train.channels,
            conv_channels: channels,
            ..VaeConfig::mlp(train.width, train.height, 0, latent)
        };
        match self {
            BenchModel::Mlp => VaeConfig::mlp(train.width, train.height, 400, 20),
            BenchModel::Conv => conv(vec![32, 64], 16),
            BenchModel::Rgb64 => conv(vec![32, 64, 128, 256], 128),
        }
    }

    /// Its training and test images: MNIST, or synthetic 64x64 RGB images (a step's time
    /// does not depend on what the pixels show).
    pub fn data(self) -> Result<(Dataset, Dataset)> {
        match self {
            BenchModel::Mlp | BenchModel::Conv => load_mnist(&mnist_dir(None)),
            BenchModel::Rgb64 => Ok((synthetic_rgb(512, 64, 1), synthetic_rgb(64, 64, 2))),
        }
    }

    /// Groups of steps timed, and steps in a group, out of `steps` asked for: fewer and
    /// smaller for the slower convolutional models.
    pub fn step_groups(self, steps: usize) -> (usize, usize) {
        match self {
            BenchModel::Mlp => (steps, 5),
            BenchModel::Conv => ((steps / 5).max(3), 2),
            BenchModel::Rgb64 => ((steps / 10).max(3), 1),
        }
    }

    /// tools/pytorch_vae.py's arguments for the same model's step.
    pub fn pytorch_args(self) -> &'static [&'static str] {
        match self {
            BenchModel::Mlp => &[],
            BenchModel::Conv => &["--conv", "--steps", "20"],
            BenchModel::Rgb64 => &["--rgb64", "--steps", "10"],
        }
    }
}

/// `len` smooth random colour images of `side` x `side`: a few colour gradients per
/// image, so that the pixels are neither constant nor noise.
pub fn synthetic_rgb(len: usize, side: usize, seed: u32) -> Dataset {
    let mut pixels = Vec::with_capacity(len * side * side * 3);
    for i in 0..len as u32 {
        let r = |k: u32| (crate::rng::rand_bits(seed, 11, i, k) >> 8) as f32 / 16_777_216.0;
        for y in 0..side {
            for x in 0..side {
                let (u, v) = (x as f32 / side as f32, y as f32 / side as f32);
                for c in 0..3u32 {
                    let val = r(3 * c) * u + r(3 * c + 1) * v + r(3 * c + 2) * (1.0 - u) * (1.0 - v);
                    pixels.push((val.min(1.0) * 255.0) as u8);
                }
            }
        }
    }
    Dataset { name: format!("synthetic-rgb{side}"), width: side, height: side, channels: 3, pixels, labels: None, len }
}
