//! The command line: one subcommand a file's worth of flags, each run by a function
//! that calls the library and prints what it did.

mod bench;
mod infer;
mod train;

use anyhow::Result;
use bench::{BenchArgs, ProfileArgs};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use elbo::gpu::AdapterChoice;
use infer::*;

/// elbo: train variational autoencoders on any GPU (or none, through a software Vulkan driver).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a VAE (or autoencoder) on MNIST, the faces, or any folder of images.
    ///
    /// Example: elbo train --epochs 10 --out runs/mnist
    ///          elbo train --model conv --dataset faces --likelihood gaussian
    Train(elbo::train::TrainOptions),
    /// List the GPU adapters with their backend, type, driver, limits and features.
    ///
    /// Example: elbo devices --backend vulkan
    Devices(AdapterChoice),
    /// Benchmark the kernels and whole training steps on the chosen adapter.
    ///
    /// Reports the adapter, each kernel at the model's shapes and on square GEMMs
    /// (median and spread, GFLOP/s, GB/s), and training steps at several batch
    /// sizes (median step time, images/s, dispatches and submits per step).
    ///
    /// Example: elbo bench --json lavapipe.json --pytorch python3
    ///          elbo bench --compare lavapipe.json h100.json
    Bench(BenchArgs),
    /// Decode N images from z ~ N(0, T^2 I) into a PNG grid.
    ///
    /// Example: elbo sample --model runs/mnist --n 64 --temperature 0.8
    Sample(SampleArgs),
    /// Test images above their reconstructions from the posterior mean and from a sampled z.
    ///
    /// Example: elbo reconstruct --model runs/mnist --n 16
    Reconstruct(ReconstructArgs),
    /// Decode a grid over two latent dimensions placed through the inverse Gaussian CDF.
    ///
    /// For a 2-D latent this is Kingma & Welling's manifold figure; for larger ones the
    /// other dimensions stay at 0. Example: elbo manifold --model runs/mnist2d --grid 20
    Manifold(ManifoldArgs),
    /// Sweep each latent dimension (the K with the largest average KL) from -3 to 3.
    ///
    /// The other dimensions stay at a test image's posterior mean.
    /// Example: elbo traverse --model runs/mnist --top 8 --index 3
    Traverse(TraverseArgs),
    /// Decode the straight path between two test images' posterior means.
    ///
    /// Example: elbo interpolate --model runs/mnist --from 0 --to 1 --steps 10
    Interpolate(InterpolateArgs),
    /// Write the test set's posterior means to CSV and plot them coloured by class.
    ///
    /// 2-D latents are plotted as they are; larger ones by their first two principal
    /// components. Example: elbo embed --model runs/mnist
    Embed(EmbedArgs),
    /// Restore damaged test images by MAP search over z through the decoder.
    ///
    /// z* = argmax_z log p(x_observed | g(z)) + log p(z), from the encoder's mean, by
    /// gradient steps through the decoder's backward kernels on the GPU; x* = g(z*).
    /// Reports the error on the unknown pixels beside the encoder-only reconstruction
    /// and the mean image. Example: elbo restore --model runs/mnist --mask-kind half
    Restore(RestoreArgs),
    /// The test set's ELBO, its terms, and the importance-weighted log-likelihood.
    ///
    /// log p(x) is estimated with K samples per image (Burda et al., 2015), in nats
    /// per image and bits per dimension. Example: elbo eval --model runs/mnist --iw-samples 1000
    Eval(EvalArgs),
    /// Linear probes: a softmax classifier trained on the GPU on the posterior means, beside raw pixels.
    ///
    /// Reports test accuracy for the VAE's features and for the pixels side by side.
    /// Example: elbo probe --model runs/mnist --epochs 10
    Probe(ProbeArgs),
    /// Time every dispatch of a training step with GPU timestamps.
    ///
    /// Prints a table sorted by time (kernel, shape, calls, total and mean time,
    /// share of the step, GFLOP/s) and optionally a Chrome trace.
    ///
    /// Example: elbo profile --steps 10 --trace step.json
    Profile(ProfileArgs),
}

/// Parses the command line and runs its command.
pub fn run() -> Result<()> {
    let matches = Cli::command().get_matches();
    match Cli::from_arg_matches(&matches)?.command {
        Command::Train(opts) => train::train(&matches, opts),
        Command::Devices(a) => bench::devices(a),
        Command::Bench(b) => bench::bench(b),
        Command::Profile(p) => bench::profile(p),
        Command::Sample(a) => infer::sample(a),
        Command::Reconstruct(a) => infer::reconstruct(a),
        Command::Manifold(a) => infer::manifold(a),
        Command::Traverse(a) => infer::traverse(a),
        Command::Interpolate(a) => infer::interpolate(a),
        Command::Embed(a) => infer::embed(a),
        Command::Restore(a) => infer::restore(a),
        Command::Probe(a) => infer::probe(a),
        Command::Eval(a) => infer::eval(a),
    }
}
