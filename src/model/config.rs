//! What the user chooses: architecture, likelihood, model kind and sizes
//! (`VaeConfig`), its metadata in the safetensors file, and where the loss finds
//! each pixel's values in the decoder's output (`LossLayout`).

use super::layout::{Layout, Shape};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Dense layers (`--hidden`), each followed by `--activation`.
    Mlp,
    /// Stride-2 4x4 convolutions (`--channels`), each followed by `--activation`, mirrored by
    /// transposed convolutions.
    Conv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Likelihood {
    /// p(x|z) = Bernoulli(sigmoid(logits)); pixels in [0, 1].
    Bernoulli,
    /// p(x|z) = N(mu(z), sigma^2(z) I) with a learned per-pixel log-variance;
    /// mu = sigmoid(decoder output), as pixels are in [0, 1].
    Gaussian,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Variational autoencoder: sampled z, loss = -ELBO.
    Vae,
    /// Plain autoencoder: z = mu(x), loss = reconstruction only.
    Ae,
}

/// The hidden layers' activation, fused in the GEMM and convolution epilogues (the
/// heads and the decoder's output layer have none). Every one is monotonic, so its
/// derivative is a function of its output, which the backward passes read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// No activation (the heads and output layers).
    #[value(skip)]
    Identity,
    /// max(x, 0).
    #[default]
    Relu,
    /// tanh(x) (the density literature's choice: Burda et al.).
    Tanh,
    /// x for x > 0, else exp(x) - 1 (PyTorch's nn.ELU, alpha 1).
    Elu,
    /// x for x > 0, else 0.01 x (PyTorch's nn.LeakyReLU).
    #[value(name = "leaky_relu")]
    LeakyRelu,
}

impl Activation {
    /// The kernels' code for it (common.wgsl: ACT_*).
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Tanh => 2,
            Activation::Elu => 3,
            Activation::LeakyRelu => 4,
        }
    }

    /// The name the command line and the metadata use.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Elu => "elu",
            Activation::LeakyRelu => "leaky_relu",
        }
    }

    /// Whether the layer has one.
    pub fn is_some(self) -> bool {
        self != Activation::Identity
    }
}

/// The Gaussian decoder's log-variance is bounded: logvar = MID + HALF tanh(raw),
/// so sigma stays within [exp(-2), exp(0.5)] = [0.135, 1.65] and cannot run away.
pub const LOGVAR_MID: f32 = -1.5;

pub const LOGVAR_HALF: f32 = 2.5;

fn name_of<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

fn parse_enum<T: clap::ValueEnum>(s: &str, what: &str) -> Result<T> {
    T::from_str(s, true).map_err(|_| anyhow::anyhow!("the model file's metadata {what} = {s:?} is not known"))
}

/// The whole model's configuration, as stored in the checkpoint's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct VaeConfig {
    pub arch: Arch,
    pub kind: ModelKind,
    pub likelihood: Likelihood,
    pub width: usize,
    pub height: usize,
    /// Image channels: 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// Widths of the encoder's dense hidden layers, first to last (the decoder mirrors
    /// them): the MLP's layers, or the convolutional model's between the convolutions and
    /// the latent heads. Any number, none included.
    pub hidden: Vec<usize>,
    /// The decoder's dense hidden layers, first to last, where they do not mirror the
    /// encoder's (`--decoder-hidden`).
    pub decoder_hidden: Option<Vec<usize>>,
    /// Conv: channels of the stride-2 convolutions, first to last (one entry per layer;
    /// transposed convolutions mirror them).
    pub conv_channels: Vec<usize>,
    pub latent: usize,
    /// The hidden layers' activation.
    pub activation: Activation,
}

impl VaeConfig {
    /// The reference MLP VAE on greyscale images: one hidden layer of `hidden` units (none
    /// for 0).
    pub fn mlp(width: usize, height: usize, hidden: usize, latent: usize) -> VaeConfig {
        VaeConfig {
            arch: Arch::Mlp,
            kind: ModelKind::Vae,
            likelihood: Likelihood::Bernoulli,
            width,
            height,
            channels: 1,
            hidden: if hidden == 0 { Vec::new() } else { vec![hidden] },
            decoder_hidden: None,
            conv_channels: vec![32, 64],
            latent,
            activation: Activation::Relu,
        }
    }

    /// Values per image (pixels times channels).
    pub fn pixels(&self) -> usize {
        self.width * self.height * self.channels
    }

    /// Decoder output planes: the mean, and the log-variance for a Gaussian decoder.
    pub fn planes(&self) -> usize {
        match self.likelihood {
            Likelihood::Bernoulli => 1,
            Likelihood::Gaussian => 2,
        }
    }

    /// Conv: how many times the convolutions halve the image, 2^depth (1 for the MLP).
    pub fn conv_stride(&self) -> usize {
        match self.arch {
            Arch::Mlp => 1,
            Arch::Conv => 1 << self.conv_channels.len(),
        }
    }

    /// The layout of an image the model reads: flat for the MLP, an image for convolutions.
    pub fn input_shape(&self) -> Shape {
        match self.arch {
            Arch::Mlp => Shape::flat(self.pixels()),
            Arch::Conv => Shape { h: self.height, w: self.width, c: self.channels },
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.latent == 0 || self.width == 0 || self.height == 0 {
            bail!("the latent dimension and the image size must be at least 1");
        }
        if self.channels != 1 && self.channels != 3 {
            bail!("images must have 1 or 3 channels, not {}", self.channels);
        }
        if self.hidden.contains(&0) {
            bail!("--hidden widths must be at least 1 (got {}); give none for no hidden layer", list(&self.hidden));
        }
        if self.decoder_hidden.as_ref().is_some_and(|d| d.contains(&0)) {
            bail!("--decoder-hidden widths must be at least 1; give none for no hidden layer");
        }
        if self.arch != Arch::Conv {
            return Ok(());
        }
        let depth = self.conv_channels.len();
        if depth == 0 || self.conv_channels.contains(&0) {
            bail!(
                "--channels needs one positive channel count per convolution, e.g. 32,64 (got {:?})",
                list(&self.conv_channels)
            );
        }
        let side = 1usize.checked_shl(depth as u32).filter(|s| *s <= self.width.min(self.height));
        let Some(side) = side else {
            let most = (usize::BITS - 1 - self.width.min(self.height).leading_zeros()) as usize;
            bail!(
                "--channels lists {depth} convolutions, but {}x{} images halve at most {most} times; give at most {most} channel counts (or larger images: --image-size)",
                self.width,
                self.height
            );
        };
        if !self.width.is_multiple_of(side) || !self.height.is_multiple_of(side) {
            bail!(
                "the convolutional model with {depth} stride-2 layers needs a width and height divisible by {side}, got {}x{}; the data loader crops images to fit",
                self.width,
                self.height
            );
        }
        Ok(())
    }

    /// The decoder's hidden widths, first to last: `decoder_hidden`, or the encoder's mirrored.
    pub fn decoder_widths(&self) -> Vec<usize> {
        self.decoder_hidden.clone().unwrap_or_else(|| self.hidden.iter().rev().copied().collect())
    }

    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut meta = HashMap::from([
            ("format".to_string(), "elbo".to_string()),
            ("arch".to_string(), name_of(self.arch)),
            ("kind".to_string(), name_of(self.kind)),
            ("likelihood".to_string(), name_of(self.likelihood)),
            ("width".to_string(), self.width.to_string()),
            ("height".to_string(), self.height.to_string()),
            ("channels".to_string(), self.channels.to_string()),
            ("hidden".to_string(), list(&self.hidden)),
            ("conv_channels".to_string(), list(&self.conv_channels)),
            ("latent".to_string(), self.latent.to_string()),
        ]);
        if let Some(d) = &self.decoder_hidden {
            meta.insert("decoder_hidden".to_string(), list(d));
        }
        meta.insert("activation".to_string(), self.activation.name().to_string());
        meta
    }

    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<VaeConfig> {
        let get = |key: &str| -> Result<&str> {
            meta.get(key)
                .map(String::as_str)
                .with_context(|| format!("the model file's metadata has no {key:?}; was it written by elbo?"))
        };
        let num = |key: &str| -> Result<usize> {
            get(key)?.parse().with_context(|| format!("the model file's metadata {key:?} is not a number"))
        };
        if meta.get("format").map(String::as_str) != Some("elbo") {
            bail!("the safetensors file was not written by elbo (no format = elbo in its metadata)");
        }
        let conv_channels: Vec<usize> = get("conv_channels")?
            .split(',')
            .map(|v| v.trim().parse().context("conv_channels in the metadata is not a list of numbers"))
            .collect::<Result<_>>()?;
        let c = VaeConfig {
            arch: parse_enum(get("arch")?, "arch")?,
            kind: parse_enum(get("kind")?, "kind")?,
            likelihood: parse_enum(get("likelihood")?, "likelihood")?,
            width: num("width")?,
            height: num("height")?,
            channels: num("channels")?,
            hidden: hidden_widths(get("hidden")?, get("arch")?)?,
            decoder_hidden: meta.get("decoder_hidden").map(|d| hidden_widths(d, "")).transpose()?,
            conv_channels,
            latent: num("latent")?,
            // files written before the choice existed are ReLU models
            activation: match meta.get("activation") {
                Some(a) if a != "identity" => parse_enum(a, "activation")?,
                Some(a) => bail!("the model file's metadata activation = {a:?} is not a hidden layer's activation"),
                None => Activation::Relu,
            },
        };
        c.check()?;
        Ok(c)
    }
}

impl VaeConfig {
    pub fn loss_layout(&self) -> LossLayout {
        let x = self.input_shape();
        let out = Layout::new(self).decoder.last().unwrap().output;
        LossLayout {
            pixels: self.width * self.height,
            channels: self.channels,
            x_cp: if x.is_flat() { self.channels } else { x.channel_stride() },
            o_cp: if out.is_flat() { self.channels } else { out.channel_stride() },
            o_cols: out.cols(),
            halves: out.is_flat(),
            gaussian: self.likelihood == Likelihood::Gaussian,
        }
    }
}

/// Where the loss kernel finds each value: in the target x and in the decoder's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossLayout {
    pub pixels: usize,
    pub channels: usize,
    /// Stored channels per pixel of x.
    pub x_cp: usize,
    /// Stored channels per pixel of the decoder output.
    pub o_cp: usize,
    /// Decoder output columns.
    pub o_cols: usize,
    /// Dense decoders put [means | raw log-variances]; convolutional ones interleave them per pixel.
    pub halves: bool,
    pub gaussian: bool,
}

impl LossLayout {
    /// Columns of the mean and raw log-variance of value (pixel, channel) in the decoder output.
    pub fn mean_col(&self, pixel: usize, ch: usize) -> usize {
        if self.halves {
            pixel * self.channels + ch
        } else {
            pixel * self.o_cp + ch
        }
    }

    pub fn logvar_col(&self, pixel: usize, ch: usize) -> usize {
        if self.halves {
            (self.pixels + pixel) * self.channels + ch
        } else {
            pixel * self.o_cp + self.channels + ch
        }
    }
}

/// Widths as the metadata and the messages write them: comma-separated, empty for none.
pub fn list(widths: &[usize]) -> String {
    widths.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(",")
}

/// The metadata's hidden widths. Files written before stacks existed hold one number,
/// and a convolutional model's 0 meant no dense layer.
fn hidden_widths(text: &str, arch: &str) -> Result<Vec<usize>> {
    let widths: Vec<usize> = text
        .split(',')
        .filter(|v| !v.is_empty())
        .map(|v| v.trim().parse().context("hidden in the metadata is not a list of numbers"))
        .collect::<Result<_>>()?;
    Ok(if arch == "conv" && widths == [0] { Vec::new() } else { widths })
}
