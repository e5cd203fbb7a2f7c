//! The architecture as a list of layers: each layer's shapes, its place in the
//! flat parameter buffer, and the table of named tensors.
//!
//! Every weight is a matrix in the flat buffer, rows padded to a multiple of 4
//! and the row stride to a multiple of 64 floats (256 bytes), so it copies
//! straight into the texture its kernel reads. Padding stays zero: its
//! gradient is zero, so Adam never moves it.

use super::config::{Activation, Arch, Likelihood, VaeConfig};

/// The geometry of a 2-D convolution from (in_h, in_w, in_c) to (out_h, out_w, out_c)
/// images, channels-last, k x k kernel.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    /// The convolution of an (h, w, c_in) image to c_out channels, output size floor((h + 2 pad - k) / stride) + 1.
    pub fn new(
        in_h: usize,
        in_w: usize,
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> ConvShape {
        let out = |n: usize| (n + 2 * pad - kernel) / stride + 1;
        ConvShape { in_h, in_w, in_c, out_h: out(in_h), out_w: out(in_w), out_c, kernel, stride, pad }
    }

    /// Input pixel (iy, ix) that tap (ky, kx) of output pixel (oy, ox) reads, if inside the image.
    pub(crate) fn tap(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad)?;
        (iy < self.in_h && ix < self.in_w).then_some((iy, ix))
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
    pub name: String,
    pub op: Op,
    /// The activation after the layer (`Activation::Identity` for none).
    pub act: Activation,
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
    pub(crate) fn fan_in(&self) -> usize {
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
    pub fn conv_shape(&self) -> crate::model::ConvShape {
        let (from, to, kernel, stride, pad) = match self.op {
            Op::Conv { kernel, stride, pad } => (self.input, self.output, kernel, stride, pad),
            Op::Deconv { kernel, stride, pad } => (self.output, self.input, kernel, stride, pad),
            Op::Dense => panic!("{} is not a convolution", self.name),
        };
        crate::model::ConvShape {
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

/// Places layers one after another in the flat buffer, each weight and bias at an
/// offset that is a multiple of ALIGN floats.
struct Placer {
    len: usize,
    /// The hidden layers' activation.
    act: Activation,
}

impl Placer {
    /// The next layer; `hidden` layers take the model's activation, the others none.
    fn layer(&mut self, name: &str, op: Op, hidden: bool, input: Shape, output: Shape) -> Layer {
        let (rows, cols) = match op {
            Op::Dense => (output.cols(), input.cols()),
            Op::Conv { kernel, .. } => (output.c, kernel * kernel * input.c.next_multiple_of(4)),
            Op::Deconv { kernel, .. } => (input.c, kernel * kernel * output.c.next_multiple_of(4)),
        };
        let rows = rows.next_multiple_of(4);
        let stride = cols.next_multiple_of(ALIGN);
        let w = self.len;
        let b = w + rows * stride;
        let bias = if op == Op::Dense { output.cols() } else { output.c };
        self.len = b + bias.next_multiple_of(ALIGN);
        let act = if hidden { self.act } else { Activation::Identity };
        Layer { name: name.to_string(), op, act, input, output, rows, cols, stride, w, b }
    }

    /// Dense layers of `widths` from `from`, named by `name(i)`; their last output shape.
    fn dense_stack(
        &mut self,
        widths: &[usize],
        mut from: Shape,
        name: impl Fn(usize) -> String,
        out: &mut Vec<Layer>,
    ) -> Shape {
        for (i, &h) in widths.iter().enumerate() {
            out.push(self.layer(&name(i), Op::Dense, true, from, Shape::flat(h)));
            from = Shape::flat(h);
        }
        from
    }

    /// The MLP: one hidden layer keeps pytorch/examples' names (fc1, fc3, fc4); a stack
    /// is encoder.0.. and decoder.0.. (the last decoder layer is the output).
    fn mlp(&mut self, c: &VaeConfig) -> (Vec<Layer>, Layer, Vec<Layer>) {
        let dec_widths = c.decoder_widths();
        let (n, legacy) = (dec_widths.len(), c.hidden.len() == 1 && dec_widths.len() == 1);
        let enc_name = |i: usize| if legacy { "fc1".to_string() } else { format!("encoder.{i}") };
        let dec_name = |i: usize| if legacy { ["fc3", "fc4"][i].to_string() } else { format!("decoder.{i}") };
        let mut enc = Vec::new();
        let features = self.dense_stack(&c.hidden, c.input_shape(), enc_name, &mut enc);
        let heads = self.layer("heads", Op::Dense, false, features, Shape::flat(2 * c.latent));
        let mut dec = Vec::new();
        let last = self.dense_stack(&dec_widths, Shape::flat(c.latent), dec_name, &mut dec);
        dec.push(self.layer(&dec_name(n), Op::Dense, false, last, Shape::flat(c.planes() * c.pixels())));
        (enc, heads, dec)
    }

    /// The convolutional model: enc.conv1..N halve the image; dense layers between the
    /// convolutions and the heads (enc.fc alone, or enc.fc0.. in a stack), mirrored by
    /// dec.fc0..; dec.fc to the deepest convolution's shape; dec.deconv1..N double it back,
    /// the last one to the decoder's output planes.
    fn conv(&mut self, c: &VaeConfig) -> (Vec<Layer>, Layer, Vec<Layer>) {
        let k4 = Op::Conv { kernel: 4, stride: 2, pad: 1 };
        let d4 = Op::Deconv { kernel: 4, stride: 2, pad: 1 };
        let x = c.input_shape();
        let n_conv = c.conv_channels.len();
        let shapes: Vec<Shape> = std::iter::once(x)
            .chain(c.conv_channels.iter().enumerate().map(|(i, &ch)| Shape {
                h: c.height >> (i + 1),
                w: c.width >> (i + 1),
                c: ch,
            }))
            .collect();
        let mut enc = Vec::new();
        for i in 0..n_conv {
            enc.push(self.layer(&format!("enc.conv{}", i + 1), k4, true, shapes[i], shapes[i + 1]));
        }
        let deepest = shapes[n_conv];
        let one = c.hidden.len() == 1;
        let enc_name = |i: usize| if one { "enc.fc".to_string() } else { format!("enc.fc{i}") };
        let features = self.dense_stack(&c.hidden, deepest, enc_name, &mut enc);
        let heads = self.layer("heads", Op::Dense, false, features, Shape::flat(2 * c.latent));
        let mut dec = Vec::new();
        let from = self.dense_stack(&c.decoder_widths(), Shape::flat(c.latent), |i| format!("dec.fc{i}"), &mut dec);
        dec.push(self.layer("dec.fc", Op::Dense, true, from, deepest));
        for j in 1..=n_conv {
            let last = j == n_conv;
            let to = if last { Shape { c: c.planes() * c.channels, ..x } } else { shapes[n_conv - j] };
            dec.push(self.layer(&format!("dec.deconv{j}"), d4, !last, shapes[n_conv - j + 1], to));
        }
        (enc, heads, dec)
    }
}

impl Layout {
    pub fn new(c: &VaeConfig) -> Layout {
        let mut placer = Placer { len: 0, act: c.activation };
        let (encoder, heads, decoder) = match c.arch {
            Arch::Mlp => placer.mlp(c),
            Arch::Conv => placer.conv(c),
        };
        Layout { encoder, heads, decoder, len: placer.len }
    }

    /// Every layer: encoder, heads, decoder.
    pub fn layers(&self) -> Vec<&Layer> {
        self.encoder.iter().chain(std::iter::once(&self.heads)).chain(self.decoder.iter()).collect()
    }

    /// The checkpoint's tensors in PyTorch's names and layouts.
    pub fn tensors(&self, c: &VaeConfig) -> Vec<TensorMap> {
        let mut out = Vec::new();
        let t = |name: String, shape: Vec<usize>, offsets: Vec<usize>| TensorMap { name, shape, offsets };
        let last = self.decoder.last().expect("a decoder has layers");
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
            } else if c.arch == Arch::Mlp && c.likelihood == Likelihood::Gaussian && std::ptr::eq(layer, last) {
                // the MLP's output layer splits into the means and the log-variances
                let (d, k, name) = (c.pixels(), shape[1], &layer.name);
                out.push(t(format!("{name}.weight"), vec![d, k], offs[..d * k].to_vec()));
                out.push(t(format!("{name}.bias"), vec![d], bias[..d].to_vec()));
                out.push(t(format!("{name}_logvar.weight"), vec![d, k], offs[d * k..].to_vec()));
                out.push(t(format!("{name}_logvar.bias"), vec![d], bias[d..].to_vec()));
            } else {
                out.push(t(format!("{}.weight", layer.name), shape, offs));
                out.push(t(format!("{}.bias", layer.name), vec![bias.len()], bias));
            }
        }
        out
    }
}
