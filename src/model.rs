//! The model's architecture as a list of layers, its parameters in one flat
//! f32 buffer with a table of named offsets, PyTorch's initialisation, and
//! safetensors in and out with PyTorch's names and layouts.
//!
//! Every weight is a matrix in the flat buffer, rows padded to a multiple of 4
//! and the row stride to a multiple of 64 floats (256 bytes), so it copies
//! straight into the texture its kernel reads. Padding stays zero: its
//! gradient is zero, so Adam never moves it.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// Dense layers with ReLU.
    Mlp,
    /// Stride-2 4x4 convolutions with ReLU, mirrored by transposed convolutions.
    Conv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Likelihood {
    /// p(x|z) = Bernoulli(sigmoid(logits)); pixels in [0, 1].
    Bernoulli,
    /// p(x|z) = N(mu(z), sigma^2(z) I) with a learned per-pixel log-variance;
    /// mu = sigmoid(decoder output), as pixels are in [0, 1].
    Gaussian,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// Variational autoencoder: sampled z, loss = -ELBO.
    Vae,
    /// Plain autoencoder: z = mu(x), loss = reconstruction only.
    Ae,
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
    /// MLP: width of the hidden layers. Conv: width of a dense layer between the
    /// convolutions and the latent heads (0: none).
    pub hidden: usize,
    /// Conv: channels of the two convolutions.
    pub conv_channels: [usize; 2],
    pub latent: usize,
}

impl VaeConfig {
    /// The reference MLP VAE on greyscale images.
    pub fn mlp(width: usize, height: usize, hidden: usize, latent: usize) -> VaeConfig {
        VaeConfig {
            arch: Arch::Mlp,
            kind: ModelKind::Vae,
            likelihood: Likelihood::Bernoulli,
            width,
            height,
            channels: 1,
            hidden,
            conv_channels: [32, 64],
            latent,
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
        match self.arch {
            Arch::Mlp if self.hidden == 0 => bail!("--hidden must be at least 1 for the MLP"),
            Arch::Conv if !self.width.is_multiple_of(4) || !self.height.is_multiple_of(4) => bail!(
                "the convolutional model needs a width and height divisible by 4 (two stride-2 layers), got {}x{}; the data loader crops images to fit",
                self.width,
                self.height
            ),
            Arch::Conv if self.conv_channels.contains(&0) => bail!("--channels must be positive"),
            _ => Ok(()),
        }
    }

    pub fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            ("format".to_string(), "elbo".to_string()),
            ("arch".to_string(), name_of(self.arch)),
            ("kind".to_string(), name_of(self.kind)),
            ("likelihood".to_string(), name_of(self.likelihood)),
            ("width".to_string(), self.width.to_string()),
            ("height".to_string(), self.height.to_string()),
            ("channels".to_string(), self.channels.to_string()),
            ("hidden".to_string(), self.hidden.to_string()),
            ("conv_channels".to_string(), format!("{},{}", self.conv_channels[0], self.conv_channels[1])),
            ("latent".to_string(), self.latent.to_string()),
        ])
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
        let cc: Vec<usize> = get("conv_channels")?
            .split(',')
            .map(|v| v.parse().context("conv_channels in the metadata is not two numbers"))
            .collect::<Result<_>>()?;
        if cc.len() != 2 {
            bail!("conv_channels in the metadata is not two numbers");
        }
        let c = VaeConfig {
            arch: parse_enum(get("arch")?, "arch")?,
            kind: parse_enum(get("kind")?, "kind")?,
            likelihood: parse_enum(get("likelihood")?, "likelihood")?,
            width: num("width")?,
            height: num("height")?,
            channels: num("channels")?,
            hidden: num("hidden")?,
            conv_channels: [cc[0], cc[1]],
            latent: num("latent")?,
        };
        c.check()?;
        Ok(c)
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

/// An activation's layout: an image (h, w, c), stored channels-last with the
/// channels padded to 4 per pixel, or flat (h = w = 1: c values, no padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub fn flat(n: usize) -> Shape {
        Shape { h: 1, w: 1, c: n }
    }

    pub fn is_flat(&self) -> bool {
        self.h * self.w == 1
    }

    /// Channels stored per pixel (c, padded to 4 for images).
    pub fn channel_stride(&self) -> usize {
        if self.is_flat() {
            self.c
        } else {
            self.c.next_multiple_of(4)
        }
    }

    /// Floats per image in the texture.
    pub fn cols(&self) -> usize {
        self.h * self.w * self.channel_stride()
    }

    /// Real values per image.
    pub fn values(&self) -> usize {
        self.h * self.w * self.c
    }

    /// The stored column of value (y, x, channel), and the PyTorch (c, y, x) order index of it.
    fn col(&self, y: usize, x: usize, ch: usize) -> usize {
        (y * self.w + x) * self.channel_stride() + ch
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// y = x W^T + b, W (n, k)
    Dense,
    /// 2-D convolution, W (out_c, in_c, k, k)
    Conv { kernel: usize, stride: usize, pad: usize },
    /// transposed convolution, W (in_c, out_c, k, k) as PyTorch's ConvTranspose2d
    Deconv { kernel: usize, stride: usize, pad: usize },
}

/// One layer and its place in the flat buffer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The PyTorch-style name of its tensors (`NAME.weight`, `NAME.bias`).
    pub name: &'static str,
    pub op: Op,
    pub relu: bool,
    pub input: Shape,
    pub output: Shape,
    /// Rows of W including padding (a multiple of 4).
    pub rows: usize,
    /// Floats per row of W that the kernels read (channel padding included).
    pub cols: usize,
    /// Row stride of W in floats (cols rounded up to 64).
    pub stride: usize,
    /// Offset of W (rows, stride).
    pub w: usize,
    /// Offset of the bias.
    pub b: usize,
}

impl Layer {
    /// The real (unpadded) rows of W: output features, output channels, or a
    /// transposed convolution's input channels.
    pub fn weight_rows(&self) -> usize {
        match self.op {
            Op::Dense => self.output.values(),
            Op::Conv { .. } => self.output.c,
            Op::Deconv { .. } => self.input.c,
        }
    }

    pub fn bias_len(&self) -> usize {
        match self.op {
            Op::Dense => self.output.values(),
            Op::Conv { .. } | Op::Deconv { .. } => self.output.c,
        }
    }

    /// Fan-in for PyTorch's default initialisation.
    fn fan_in(&self) -> usize {
        match self.op {
            Op::Dense => self.input.values(),
            Op::Conv { kernel, .. } => self.input.c * kernel * kernel,
            // ConvTranspose2d computes its fan-in from weight.size(1) * k * k = out_c k^2
            Op::Deconv { kernel, .. } => self.output.c * kernel * kernel,
        }
    }

    /// Dense: the (n, k) matrix as the GEMMs see it (n = output values, k = input columns).
    pub fn gemm_nk(&self) -> (usize, usize) {
        (self.output.cols(), self.input.cols())
    }

    /// Conv geometry in the convolution's own direction (a transposed
    /// convolution's output is that convolution's input).
    pub fn conv_shape(&self) -> crate::reference::ConvShape {
        let (from, to, kernel, stride, pad) = match self.op {
            Op::Conv { kernel, stride, pad } => (self.input, self.output, kernel, stride, pad),
            Op::Deconv { kernel, stride, pad } => (self.output, self.input, kernel, stride, pad),
            Op::Dense => panic!("{} is not a convolution", self.name),
        };
        crate::reference::ConvShape {
            in_h: from.h,
            in_w: from.w,
            in_c: from.c,
            out_h: to.h,
            out_w: to.w,
            out_c: to.c,
            kernel,
            stride,
            pad,
        }
    }

    /// Flat-buffer offsets of the weight in PyTorch's layout, element by element, and that shape.
    pub fn weight_offsets(&self) -> (Vec<usize>, Vec<usize>) {
        let at = |row: usize, col: usize| self.w + row * self.stride + col;
        match self.op {
            Op::Dense => {
                // PyTorch flattens images (c, y, x) and unflattens its outputs the same way
                let (inp, out) = (self.input, self.output);
                let mut offs = Vec::with_capacity(out.values() * inp.values());
                for (oc, oy, ox) in chw(out) {
                    for (ic, iy, ix) in chw(inp) {
                        offs.push(at(out.col(oy, ox, oc), inp.col(iy, ix, ic)));
                    }
                }
                (vec![out.values(), inp.values()], offs)
            }
            Op::Conv { kernel: k, .. } | Op::Deconv { kernel: k, .. } => {
                let s = self.conv_shape();
                let c4 = s.in_c.next_multiple_of(4);
                let mut offs = Vec::new();
                for o in 0..s.out_c {
                    for i in 0..s.in_c {
                        for t in 0..k * k {
                            offs.push(at(o, t * c4 + i));
                        }
                    }
                }
                (vec![s.out_c, s.in_c, k, k], offs)
            }
        }
    }

    pub fn bias_offsets(&self) -> Vec<usize> {
        match self.op {
            Op::Dense => chw(self.output).map(|(c, y, x)| self.b + self.output.col(y, x, c)).collect(),
            _ => (0..self.output.c).map(|c| self.b + c).collect(),
        }
    }
}

/// (channel, y, x) in PyTorch's order.
fn chw(s: Shape) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..s.c).flat_map(move |c| (0..s.h).flat_map(move |y| (0..s.w).map(move |x| (c, y, x))))
}

/// A named tensor of the checkpoint: its shape and where each element lives in the flat buffer.
pub struct TensorMap {
    pub name: String,
    pub shape: Vec<usize>,
    pub offsets: Vec<usize>,
}

/// Where every layer lives in the flat parameter buffer.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Input -> features, in order.
    pub encoder: Vec<Layer>,
    /// Features -> [mu | logvar] (2L): rows 0..L are the mean head, L..2L the log-variance head.
    pub heads: Layer,
    /// z -> decoder output (logits, or means and raw log-variances), in order.
    pub decoder: Vec<Layer>,
    /// Floats in the flat buffer, a multiple of 64.
    pub len: usize,
}

const ALIGN: usize = 64;

impl Layout {
    pub fn new(c: &VaeConfig) -> Layout {
        let mut len = 0;
        let mut layer = |name: &'static str, op: Op, relu: bool, input: Shape, output: Shape| {
            let (rows, cols) = match op {
                Op::Dense => (output.cols(), input.cols()),
                Op::Conv { kernel, .. } => (output.c, kernel * kernel * input.c.next_multiple_of(4)),
                Op::Deconv { kernel, .. } => (input.c, kernel * kernel * output.c.next_multiple_of(4)),
            };
            let rows = rows.next_multiple_of(4);
            let stride = cols.next_multiple_of(ALIGN);
            let w = len;
            let b = w + rows * stride;
            let bias = if op == Op::Dense { output.cols() } else { output.c };
            len = b + bias.next_multiple_of(ALIGN);
            Layer { name, op, relu, input, output, rows, cols, stride, w, b }
        };
        let (l, p) = (c.latent, c.planes());
        let k4 = |stride| Op::Conv { kernel: 4, stride, pad: 1 };
        let d4 = |stride| Op::Deconv { kernel: 4, stride, pad: 1 };
        let (encoder, heads, decoder) = match c.arch {
            Arch::Mlp => {
                let x = c.input_shape();
                let h = Shape::flat(c.hidden);
                let enc = vec![layer("fc1", Op::Dense, true, x, h)];
                let heads = layer("heads", Op::Dense, false, h, Shape::flat(2 * l));
                let dec = vec![
                    layer("fc3", Op::Dense, true, Shape::flat(l), h),
                    layer("fc4", Op::Dense, false, h, Shape::flat(p * c.pixels())),
                ];
                (enc, heads, dec)
            }
            Arch::Conv => {
                let [c1, c2] = c.conv_channels;
                let (hh, ww) = (c.height, c.width);
                let x = c.input_shape();
                let s1 = Shape { h: hh / 2, w: ww / 2, c: c1 };
                let s2 = Shape { h: hh / 4, w: ww / 4, c: c2 };
                let mut enc = vec![layer("enc.conv1", k4(2), true, x, s1), layer("enc.conv2", k4(2), true, s1, s2)];
                let mut features = s2;
                if c.hidden > 0 {
                    enc.push(layer("enc.fc", Op::Dense, true, s2, Shape::flat(c.hidden)));
                    features = Shape::flat(c.hidden);
                }
                let heads = layer("heads", Op::Dense, false, features, Shape::flat(2 * l));
                let mut dec = Vec::new();
                let mut from = Shape::flat(l);
                if c.hidden > 0 {
                    dec.push(layer("dec.fc0", Op::Dense, true, from, Shape::flat(c.hidden)));
                    from = Shape::flat(c.hidden);
                }
                dec.push(layer("dec.fc", Op::Dense, true, from, s2));
                dec.push(layer("dec.deconv1", d4(2), true, s2, s1));
                dec.push(layer("dec.deconv2", d4(2), false, s1, Shape { h: hh, w: ww, c: p * c.channels }));
                (enc, heads, dec)
            }
        };
        Layout { encoder, heads, decoder, len }
    }

    /// Every layer: encoder, heads, decoder.
    pub fn layers(&self) -> Vec<&Layer> {
        self.encoder.iter().chain(std::iter::once(&self.heads)).chain(self.decoder.iter()).collect()
    }

    /// The checkpoint's tensors in PyTorch's names and layouts.
    pub fn tensors(&self, c: &VaeConfig) -> Vec<TensorMap> {
        let mut out = Vec::new();
        let t = |name: String, shape: Vec<usize>, offsets: Vec<usize>| TensorMap { name, shape, offsets };
        for layer in self.layers() {
            let (shape, offs) = layer.weight_offsets();
            let bias = layer.bias_offsets();
            if layer.name == "heads" {
                // split into the mean and log-variance heads
                let (l, k) = (c.latent, shape[1]);
                out.push(t("fc_mu.weight".into(), vec![l, k], offs[..l * k].to_vec()));
                out.push(t("fc_mu.bias".into(), vec![l], bias[..l].to_vec()));
                out.push(t("fc_logvar.weight".into(), vec![l, k], offs[l * k..].to_vec()));
                out.push(t("fc_logvar.bias".into(), vec![l], bias[l..].to_vec()));
            } else if layer.name == "fc4" && c.likelihood == Likelihood::Gaussian {
                let (d, k) = (c.pixels(), shape[1]);
                out.push(t("fc4.weight".into(), vec![d, k], offs[..d * k].to_vec()));
                out.push(t("fc4.bias".into(), vec![d], bias[..d].to_vec()));
                out.push(t("fc4_logvar.weight".into(), vec![d, k], offs[d * k..].to_vec()));
                out.push(t("fc4_logvar.bias".into(), vec![d], bias[d..].to_vec()));
            } else {
                out.push(t(format!("{}.weight", layer.name), shape, offs));
                out.push(t(format!("{}.bias", layer.name), vec![bias.len()], bias));
            }
        }
        out
    }
}

/// A model on the host: configuration, layout and the flat parameters.
#[derive(Clone)]
pub struct Model {
    pub config: VaeConfig,
    pub layout: Layout,
    pub params: Vec<f32>,
}

impl Model {
    /// PyTorch's default initialisation: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    /// drawn layer by layer in PyTorch's element order.
    pub fn init(config: &VaeConfig, seed: u64) -> Model {
        let layout = Layout::new(config);
        let mut params = vec![0f32; layout.len];
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for layer in layout.layers() {
            let bound = 1.0 / (layer.fan_in() as f32).sqrt();
            for o in layer.weight_offsets().1.into_iter().chain(layer.bias_offsets()) {
                params[o] = rng.random_range(-bound..bound);
            }
        }
        Model { config: config.clone(), layout, params }
    }

    /// A dense layer's W (n, k) as the GEMMs see it: output columns by input columns.
    pub fn weight(&self, d: &Layer) -> Vec<f32> {
        let (n, k) = d.gemm_nk();
        (0..n).flat_map(|r| self.params[d.w + r * d.stride..d.w + r * d.stride + k].iter().copied()).collect()
    }

    /// A convolution's W in PyTorch's layout: (out_c, in_c, k, k) of the convolution's own direction.
    pub fn conv_weight(&self, d: &Layer) -> Vec<f32> {
        d.weight_offsets().1.iter().map(|&o| self.params[o]).collect()
    }

    /// A layer's bias as the kernels see it (dense: per stored output column).
    pub fn bias(&self, d: &Layer) -> Vec<f32> {
        let n = if d.op == Op::Dense { d.output.cols() } else { d.output.c };
        self.params[d.b..d.b + n].to_vec()
    }

    /// Serialises to safetensors bytes (f32, PyTorch names and layouts, configuration in the metadata).
    pub fn to_safetensors(&self, extra: &HashMap<String, String>) -> Result<Vec<u8>> {
        let blobs: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .layout
            .tensors(&self.config)
            .into_iter()
            .map(|t| {
                let values: Vec<f32> = t.offsets.iter().map(|&o| self.params[o]).collect();
                (t.name, t.shape, bytemuck::cast_slice(&values).to_vec())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = blobs
            .iter()
            .map(|(n, shape, d)| {
                Ok((n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), d)?))
            })
            .collect::<Result<_>>()?;
        let mut meta = self.config.to_metadata();
        meta.extend(extra.clone());
        Ok(safetensors::tensor::serialize(views, Some(meta))?)
    }

    /// Writes the safetensors file atomically: a temporary file beside it, then a rename.
    pub fn save(&self, path: &Path, extra: &HashMap<String, String>) -> Result<()> {
        let bytes = self.to_safetensors(extra)?;
        crate::write_atomic(path, &bytes)
    }

    pub fn load(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read model file {}", path.display()))?;
        Self::from_safetensors(&bytes).with_context(|| format!("{} is not a usable elbo model", path.display()))
    }

    pub fn from_safetensors(bytes: &[u8]) -> Result<Model> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).context("damaged safetensors header")?;
        let st = safetensors::SafeTensors::deserialize(bytes).context("damaged safetensors file")?;
        let config =
            VaeConfig::from_metadata(meta.metadata().as_ref().context("no metadata in the safetensors file")?)?;
        let layout = Layout::new(&config);
        let mut params = vec![0f32; layout.len];
        for t in layout.tensors(&config) {
            let v = st.tensor(&t.name).with_context(|| format!("tensor {} is missing", t.name))?;
            if v.shape() != t.shape.as_slice() || v.dtype() != safetensors::Dtype::F32 {
                bail!("tensor {} is {:?} {:?}, expected F32 {:?}", t.name, v.dtype(), v.shape(), t.shape);
            }
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(v.data());
            for (&o, &x) in t.offsets.iter().zip(&values) {
                params[o] = x;
            }
        }
        Ok(Model { config, layout, params })
    }
}
