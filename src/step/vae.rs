//! A VAE's dispatch lists, composed from its two chains:
//!
//! ```text
//! gather_batch        dataset, order        -> x
//! encoder chain       x -> ... -> mulv = [mu | logvar]   (its last layer: the heads)
//! reparam_forward     mulv, eps             -> z
//! decoder chain       z -> ... -> out
//! elbo_forward_backward  out, x, mulv       -> d out, per-row loss
//! decoder chain backward, down to dz
//! reparam_backward(_reduce)  dz, mulv       -> d mulv, the loss sums into `history`
//! encoder chain backward
//! adam_update         grads                 -> params, moments
//! ```
//!
//! with the `Fusions` that apply. Evaluation is the forward half with the loss
//! reduced; decoding the decoder chain and a sigmoid; encoding the encoder chain;
//! restoration the decoder chain, the loss over the observed values, and the decoder's
//! input gradients down to dz.

use super::{Builder, Chain, Fusions, VaeTensors};
use crate::gpu::Matrix;
use crate::kernels::{self, elbo_slot, iwae_slot, reparam_slot, Bind, Dispatch, MomentStore};
use crate::model::{Layer, LossLayout, VaeConfig};
use anyhow::Result;
use Bind::{Buffer as B, Texture as T};

/// How the batch is sampled.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    /// Pixels drawn as Bernoulli(value) each time an image is gathered.
    pub binarize: bool,
    /// Monte-Carlo samples of z per image (rows per image).
    pub samples: usize,
    /// Per-dimension KL floor in nats (0: off).
    pub free_bits: f32,
    /// The importance-weighted bound over each image's `samples` draws (iwae.wgsl) in place
    /// of their mean ELBO.
    pub iwae: bool,
}

/// The buffers a VAE's lists bind besides its tensors and the builder's parameters.
pub struct VaeBuffers<'a> {
    /// The per-step uniform (`kernels::Step`).
    pub step: &'a wgpu::Buffer,
    /// Per row (recon, kl) of the last batch.
    pub image_loss: &'a wgpu::Buffer,
    pub kl_mask: &'a wgpu::Buffer,
    /// Per step of the epoch, the batch's loss sums.
    pub history: &'a wgpu::Buffer,
    /// What the training list binds: none for a forward-only model.
    pub train: Option<TrainBuffers<'a>>,
    /// The test set and the order it is gathered in.
    pub test: (&'a wgpu::Buffer, &'a wgpu::Buffer),
}

/// The training list's own buffers.
pub struct TrainBuffers<'a> {
    /// The training set and the epoch's order of it.
    pub data: &'a wgpu::Buffer,
    pub order: &'a wgpu::Buffer,
    /// Adam's uniform and moments, for the separate adam dispatch (`Fusions::adam` off).
    pub adam: kernels::Adam,
    pub moments: (MomentStore, [Bind<'a>; 2]),
}

/// Every dispatch list of a VAE.
#[derive(Default)]
pub struct VaeLists {
    /// Empty for a forward-only model.
    pub train: Vec<Dispatch>,
    pub eval: Vec<Dispatch>,
    /// z -> probs
    pub decode: Vec<Dispatch>,
    /// x -> [mu | logvar]
    pub encode: Vec<Dispatch>,
    /// z -> decoded, -log p(x_observed | z) and d/dz of it
    pub restore: Vec<Dispatch>,
    /// z, x -> -log p(x|z) per row (the decoder chain and the loss, no encoder)
    pub score: Vec<Dispatch>,
    /// The uniform of `restore`'s loss and what it holds (`Net::set_observation` rewrites
    /// its observation model).
    pub restore_loss: Option<(wgpu::Buffer, kernels::Elbo)>,
}

/// What every list of one VAE shares.
struct Vae<'a> {
    c: &'a VaeConfig,
    loss: LossLayout,
    last: &'a Layer,
    t: &'a VaeTensors,
    bufs: &'a VaeBuffers<'a>,
    s: Sampling,
    f: Fusions,
    encoder: Chain<'a>,
    decoder: Chain<'a>,
    reparam_u: wgpu::Buffer,
    elbo_u: wgpu::Buffer,
    m: usize,
    /// With `Sampling::iwae`: iwae.wgsl's uniform and its per-row weights.
    iwae: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

/// The lists of a VAE with configuration `c` and layers `layers` (`Layout::layers`),
/// weight textures `weights` in the same order.
#[allow(clippy::too_many_arguments)]
pub fn vae_lists(
    b: &mut Builder,
    f: Fusions,
    c: &VaeConfig,
    layers: &[&Layer],
    weights: &[Matrix],
    t: &VaeTensors,
    bufs: &VaeBuffers,
    s: Sampling,
) -> Result<VaeLists> {
    let (m, lat, ne) = (b.m, c.latent, t.heads);
    let loss = c.loss_layout();
    let encoder = Chain {
        layers: &layers[..=ne],
        weights: &weights[..=ne],
        input: &t.x,
        outs: &t.outs[..=ne],
        grads: &t.grads[..=ne],
        d_input: None,
    };
    let decoder = Chain {
        layers: &layers[ne + 1..],
        weights: &weights[ne + 1..],
        input: &t.z,
        outs: &t.outs[ne + 1..],
        grads: &t.grads[ne + 1..],
        d_input: Some(&t.dz),
    };
    let reparam_u = b.uniform(&kernels::Reparam::new(m, lat, s.free_bits));
    let elbo_u = b.uniform(&kernels::Elbo::new(m, lat, &loss, false));
    let last = *layers.last().expect("a decoder has layers");
    let mut f = f;
    let iwae = if s.iwae {
        // the loss is weighted per image after it is summed: no fusion into it
        (f.loss_in_gemm, f.loss_from_taps, f.reduce_in_backward) = (None, false, false);
        let u = b.uniform(&kernels::Iwae { m: m as u32, latent: lat as u32, k: s.samples as u32, pad: 0 });
        Some((u, b.gpu.buffer("iwae row scale", (m * 4) as u64, wgpu::BufferUsages::empty())?))
    } else {
        None
    };
    let v = Vae { c, loss, last, t, bufs, s, f, encoder, decoder, reparam_u, elbo_u, m, iwae };
    let train = match &bufs.train {
        Some(tb) => v.train(b, tb)?,
        None => Vec::new(),
    };
    let eval = v.eval(b)?;
    let decode = v.decode(b);
    let encode = v.encode(b);
    let (restore, restore_loss) = v.restore(b, &decode[..decode.len() - 1]);
    let mut score = decode[..decode.len() - 1].to_vec();
    score.push(v.elbo(b, &v.elbo_u, &t.x));
    b.keep.extend(v.iwae.into_iter().flat_map(|(u, scale)| [u, scale]));
    Ok(VaeLists { train, eval, decode, encode, restore, score, restore_loss: Some(restore_loss) })
}

impl Vae<'_> {
    fn gather(&self, b: &mut Builder, (data, order): (&wgpu::Buffer, &wgpu::Buffer)) -> Dispatch {
        let (c, s) = (self.c, self.s);
        let g = kernels::Gather::new(self.m, &self.loss, c.channels, s.binarize, s.samples);
        b.gather(&g, self.bufs.step, data, order, &self.t.x)
    }

    /// The encoder chain to [mu | logvar] and z drawn from it.
    fn encode_and_draw(&self, b: &mut Builder) -> Vec<Dispatch> {
        let ne = self.encoder.layers.len() - 1;
        let mut list = self.encoder.forward(b, 0..ne);
        let (heads, x, w) = (self.encoder.layers[ne], self.encoder.input_of(ne), &self.encoder.weights[ne]);
        match self.f.heads_reparam {
            Some(how) => list.push(b.heads_reparam(how, heads, x, w, self.t.mulv(), &self.t.z, self.bufs.step)),
            None => {
                list.extend(self.encoder.forward(b, ne..ne + 1));
                list.push(self.reparam_forward(b));
            }
        }
        list
    }

    fn reparam_forward(&self, b: &mut Builder) -> Dispatch {
        use reparam_slot::*;
        let (m, lat) = (self.m, self.c.latent);
        let binds = [
            (P, B(&self.reparam_u)),
            (STEP, B(self.bufs.step)),
            (MULV, T(&self.t.mulv().view)),
            (OUT, T(&self.t.z.view)),
        ];
        Dispatch::new(b.gpu, "reparam_forward", &b.k.reparam_forward, &binds, m * lat.div_ceil(4), 64)
            .with_elementwise_cost(format!("m={m} L={lat}"), m * lat, 30.0, 12.0)
    }

    /// The loss and its gradient d out, per row into `image_loss`; `observed` masks it
    /// (x itself where every value is observed).
    fn elbo(&self, b: &mut Builder, u: &wgpu::Buffer, observed: &Matrix) -> Dispatch {
        use elbo_slot::*;
        let t = self.t;
        let binds = [
            (P, B(u)),
            (STEP, B(self.bufs.step)),
            (DEC_OUT, T(&t.out().view)),
            (TARGET_X, T(&t.x.view)),
            (MULV, T(&t.mulv().view)),
            (D_OUT, T(&t.grads.last().unwrap().view)),
            (IMAGE_LOSS, B(self.bufs.image_loss)),
            (OBSERVED, T(&observed.view)),
        ];
        let (m, o_cols) = (self.m, self.loss.o_cols);
        kernels::elbo_dispatch(b.gpu, b.k, kernels::elbo_wide(b.gpu, b.k, o_cols), &binds, m).with_elementwise_cost(
            format!("m={m} out={o_cols}"),
            m * o_cols,
            12.0,
            12.0,
        )
    }

    /// The loss summing the logits from the last layer's taps image (`Fusions::loss_from_taps`).
    fn elbo_taps(&self, b: &mut Builder, taps: &Matrix) -> Dispatch {
        use elbo_slot::*;
        let t = self.t;
        let taps_u = b.uniform(&kernels::Taps::new(&self.last.conv_shape(), self.last.b));
        let binds = [
            (P, B(&self.elbo_u)),
            (STEP, B(self.bufs.step)),
            (TARGET_X, T(&t.x.view)),
            (MULV, T(&t.mulv().view)),
            (D_OUT, T(&t.grads.last().unwrap().view)),
            (IMAGE_LOSS, B(self.bufs.image_loss)),
            (OBSERVED, T(&t.x.view)),
            (TP, B(&taps_u)),
            (TAPS, T(&taps.view)),
            (PARAMS, B(b.params)),
        ];
        let (m, o_cols) = (self.m, self.loss.o_cols);
        Dispatch::new(b.gpu, "elbo_forward_backward_taps", &b.k.elbo_forward_backward_taps, &binds, m, 64)
            .with_elementwise_cost(format!("m={m} out={o_cols}"), m * o_cols, 20.0, 16.0)
    }

    /// reparam.wgsl's loss-sum bindings: what loss_reduce binds, and what the fused
    /// reparam_backward_reduce binds besides dz and d mulv.
    fn reduce_binds(&self) -> [(u32, Bind<'_>); 6] {
        use reparam_slot::*;
        let bufs = self.bufs;
        [
            (P, B(&self.reparam_u)),
            (STEP, B(bufs.step)),
            (MULV, T(&self.t.mulv().view)),
            (KL_MASK, B(bufs.kl_mask)),
            (IMAGE_LOSS, B(bufs.image_loss)),
            (HISTORY, B(bufs.history)),
        ]
    }

    /// loss_reduce: the batch's loss sums into `history` and the free-bits mask.
    fn reduce(&self, b: &mut Builder) -> Dispatch {
        Dispatch::new(b.gpu, "loss_reduce", &b.k.loss_reduce, &self.reduce_binds(), 1, 1).with_elementwise_cost(
            format!("m={}", self.m),
            self.m,
            2.0,
            8.0,
        )
    }

    /// The forward half of the training step (`train`) or of evaluation: the training
    /// step leaves out what only its backward pass reads (the loss sums, then in
    /// reparam_backward_reduce, and the logits, summed from the taps image by the loss).
    fn forward(&self, b: &mut Builder, train: bool) -> Result<(Vec<Dispatch>, Option<wgpu::Buffer>)> {
        let mut list = self.encode_and_draw(b);
        let nd = self.decoder.layers.len();
        let partials = match self.f.loss_in_gemm {
            Some(blocks) if train => {
                Some(b.gpu.buffer("recon partials", (blocks * self.m * 4) as u64, wgpu::BufferUsages::empty())?)
            }
            _ => None,
        };
        if let Some(partials) = partials {
            list.extend(self.decoder.forward(b, 0..nd - 1));
            let (x, w) = (self.decoder.input_of(nd - 1), &self.decoder.weights[nd - 1]);
            let d_out = self.t.grads.last().unwrap();
            list.push(b.forward_elbo(self.last, x, w, d_out, &self.t.x, &partials, self.bufs.step));
            return Ok((list, Some(partials)));
        }
        list.extend(self.decoder.forward(b, 0..nd));
        match b.taps.take() {
            // the loss reads the taps image in place of conv2d_col2im_c1's logits
            Some(taps) if train && self.f.loss_from_taps => {
                list.pop();
                list.push(self.elbo_taps(b, &taps));
            }
            _ => list.push(self.elbo(b, &self.elbo_u, &self.t.x)),
        }
        if self.iwae.is_some() {
            list.push(self.iwae_weights(b)?);
        } else if !(train && self.f.reduce_in_backward) {
            list.push(self.reduce(b));
        }
        Ok((list, None))
    }

    fn train(&self, b: &mut Builder, tb: &TrainBuffers) -> Result<Vec<Dispatch>> {
        let mut list = vec![self.gather(b, (tb.data, tb.order))];
        let (forward, partials) = self.forward(b, true)?;
        list.extend(forward);
        if self.iwae.is_some() {
            list.push(self.elbo_weighted(b)?);
            list.extend(self.decoder.backward(b));
            list.push(self.iwae_reparam_backward(b)?);
        } else {
            list.extend(self.decoder.backward(b));
            list.push(self.reparam_backward(b, partials.as_ref()));
        }
        list.extend(self.encoder.backward(b));
        if !self.f.adam {
            let (store, moments) = tb.moments;
            list.push(b.adam(&tb.adam, self.bufs.step, store, moments));
        }
        b.keep.extend(partials);
        Ok(list)
    }

    /// dz and the KL's gradient into d mulv, with the loss sums where they are reduced
    /// here (`Fusions::reduce_in_backward`), from the last GEMM's recon partial sums where
    /// it computed the loss (`partials`).
    fn reparam_backward(&self, b: &mut Builder, partials: Option<&wgpu::Buffer>) -> Dispatch {
        use reparam_slot::*;
        let (m, lat) = (self.m, self.c.latent);
        let t = self.t;
        let mut binds = vec![(DZ, T(&t.dz.view)), (OUT, T(&t.grads[self.encoder.layers.len() - 1].view))];
        // reparam_backward reads the mask; the fused kernels write it and the loss sums too
        let fused = self.f.reduce_in_backward;
        binds.extend(self.reduce_binds().into_iter().filter(|&(i, _)| fused || i <= KL_MASK));
        let cost = |d: Dispatch, flops, bytes| d.with_elementwise_cost(format!("m={m} L={lat}"), m * lat, flops, bytes);
        if let Some(partials) = partials {
            // no per-row loss: the partial sums, and a uniform that says how many
            let blocks = self.f.loss_in_gemm.expect("partials come from the loss in the last GEMM");
            let u = b.uniform(&kernels::Reparam::new(m, lat, self.s.free_bits).with_partials(blocks));
            binds.retain(|&(i, _)| i != P && i != IMAGE_LOSS);
            binds.extend([(P, B(&u)), (RECON_PARTIALS, B(partials))]);
            let pipeline = &b.k.reparam_backward_reduce_partials;
            cost(Dispatch::new(b.gpu, "reparam_backward_reduce_partials", pipeline, &binds, 64, 64), 42.0, 28.0)
        } else if fused {
            let pipeline = &b.k.reparam_backward_reduce;
            cost(Dispatch::new(b.gpu, "reparam_backward_reduce", pipeline, &binds, 64, 64), 42.0, 28.0)
        } else {
            let texels = m * (2 * lat).div_ceil(4);
            cost(Dispatch::new(b.gpu, "reparam_backward", &b.k.reparam_backward, &binds, texels, 64), 40.0, 20.0)
        }
    }

    fn eval(&self, b: &mut Builder) -> Result<Vec<Dispatch>> {
        let mut list = vec![self.gather(b, self.bufs.test)];
        list.extend(self.forward(b, false)?.0);
        Ok(list)
    }

    /// iwae_weights: each row's weight, its sampled KL, and the batch's loss sums into
    /// its history slot.
    fn iwae_weights(&self, b: &mut Builder) -> Result<Dispatch> {
        let (u, scale) = self.iwae.as_ref().expect("an importance-weighted model");
        let (m, lat) = (self.m, self.c.latent);
        let binds = [
            (elbo_slot::STEP, B(self.bufs.step)),
            (elbo_slot::MULV, T(&self.t.mulv().view)),
            (elbo_slot::IMAGE_LOSS, B(self.bufs.image_loss)),
            (iwae_slot::IW, B(u)),
            (iwae_slot::ROW_SCALE, B(scale)),
            (iwae_slot::HISTORY, B(self.bufs.history)),
        ];
        let k = b.k.iwae(b.gpu)?;
        Ok(Dispatch::new(b.gpu, "iwae_weights", &k.iwae_weights, &binds, 64, 64).with_elementwise_cost(
            format!("m={m} K={} L={lat}", self.s.samples),
            m * lat,
            12.0,
            12.0,
        ))
    }

    /// d out of every row, weighted by its importance weight (elbo_backward_weighted).
    fn elbo_weighted(&self, b: &mut Builder) -> Result<Dispatch> {
        let (_, scale) = self.iwae.as_ref().expect("an importance-weighted model");
        let t = self.t;
        let binds = [
            (elbo_slot::P, B(&self.elbo_u)),
            (elbo_slot::DEC_OUT, T(&t.out().view)),
            (elbo_slot::TARGET_X, T(&t.x.view)),
            (elbo_slot::D_OUT, T(&t.grads.last().unwrap().view)),
            (elbo_slot::OBSERVED, T(&t.x.view)),
            (iwae_slot::ROW_SCALE, B(scale)),
        ];
        let (m, o_cols) = (self.m, self.loss.o_cols);
        let k = b.k.iwae(b.gpu)?;
        let d = if kernels::elbo_wide(b.gpu, b.k, o_cols) {
            Dispatch::new(b.gpu, "elbo_backward_weighted_wide", &k.elbo_backward_weighted_wide, &binds, m, 1)
        } else {
            Dispatch::new(b.gpu, "elbo_backward_weighted", &k.elbo_backward_weighted, &binds, m, 64)
        };
        Ok(d.with_elementwise_cost(format!("m={m} out={o_cols}"), m * o_cols, 12.0, 12.0))
    }

    /// d[mu | logvar] from dz and the sampled KL, by each row's weight.
    fn iwae_reparam_backward(&self, b: &mut Builder) -> Result<Dispatch> {
        let (u, scale) = self.iwae.as_ref().expect("an importance-weighted model");
        let (m, lat) = (self.m, self.c.latent);
        let t = self.t;
        let binds = [
            (elbo_slot::STEP, B(self.bufs.step)),
            (elbo_slot::MULV, T(&t.mulv().view)),
            (iwae_slot::IW, B(u)),
            (iwae_slot::ROW_SCALE, B(scale)),
            (iwae_slot::DZ, T(&t.dz.view)),
            (iwae_slot::D_MULV, T(&t.grads[self.encoder.layers.len() - 1].view)),
        ];
        let k = b.k.iwae(b.gpu)?;
        let texels = m * (2 * lat).div_ceil(4);
        Ok(Dispatch::new(b.gpu, "iwae_reparam_backward", &k.iwae_reparam_backward, &binds, texels, 64)
            .with_elementwise_cost(format!("m={m} L={lat}"), m * lat, 40.0, 20.0))
    }

    fn decode(&self, b: &mut Builder) -> Vec<Dispatch> {
        let mut list = self.decoder.forward(b, 0..self.decoder.layers.len());
        list.push(b.sigmoid(self.t.out(), &self.t.probs));
        list
    }

    fn encode(&self, b: &mut Builder) -> Vec<Dispatch> {
        self.encoder.forward(b, 0..self.encoder.layers.len())
    }

    /// Restoration's step from a given z: `decoder` (the decoder chain's forward
    /// dispatches), the loss over the observed values, and d/dz.
    /// Also returns the loss's uniform and its contents.
    fn restore(&self, b: &mut Builder, decoder: &[Dispatch]) -> (Vec<Dispatch>, (wgpu::Buffer, kernels::Elbo)) {
        let mut list = decoder.to_vec();
        let params = kernels::Elbo::new(self.m, self.c.latent, &self.loss, true);
        let masked_u = b.uniform(&params);
        list.push(self.elbo(b, &masked_u, &self.t.observed));
        list.extend(self.decoder.backward_input(b));
        (list, (masked_u, params))
    }
}
