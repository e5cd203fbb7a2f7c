//! The MLP VAE's parameters: one flat f32 buffer with a table of named
//! offsets, PyTorch's initialisation, and safetensors in and out.
//!
//! Each weight matrix W (out, in) is stored row-major with its rows padded to
//! a multiple of 4 and its row stride to a multiple of 64 floats (256 bytes),
//! so that it copies straight into the texture the GEMMs read. Padding stays
//! zero: its gradient is zero, so Adam never moves it.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

/// The architecture: D -> hidden -> (L mu, L logvar) -> hidden -> D.
#[derive(Clone, Debug, PartialEq)]
pub struct VaeConfig {
    pub width: usize,
    pub height: usize,
    pub hidden: usize,
    pub latent: usize,
}

impl VaeConfig {
    pub fn pixels(&self) -> usize {
        self.width * self.height
    }

    pub fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            ("model".to_string(), "mlp-vae".to_string()),
            ("likelihood".to_string(), "bernoulli".to_string()),
            ("width".to_string(), self.width.to_string()),
            ("height".to_string(), self.height.to_string()),
            ("hidden".to_string(), self.hidden.to_string()),
            ("latent".to_string(), self.latent.to_string()),
        ])
    }

    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<VaeConfig> {
        let get = |key: &str| -> Result<usize> {
            meta.get(key)
                .with_context(|| format!("the model file's metadata has no {key:?}; was it written by elbo?"))?
                .parse()
                .with_context(|| format!("the model file's metadata {key:?} is not a number"))
        };
        if meta.get("model").map(String::as_str) != Some("mlp-vae") {
            bail!("the model file is not an elbo MLP VAE (metadata model = {:?})", meta.get("model"));
        }
        Ok(VaeConfig { width: get("width")?, height: get("height")?, hidden: get("hidden")?, latent: get("latent")? })
    }
}

/// A dense layer's place in the flat buffer.
#[derive(Clone, Copy, Debug)]
pub struct Dense {
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Rows of W including padding (n rounded up to 4).
    pub rows: usize,
    /// Row stride of W in floats (k rounded up to 64).
    pub stride: usize,
    /// Offset of W (rows, stride).
    pub w: usize,
    /// Offset of b (n).
    pub b: usize,
}

/// A named tensor for export: `rows` rows of `cols` floats at `offset`, `stride` apart.
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub stride: usize,
}

/// Where every layer lives in the flat parameter buffer.
#[derive(Clone, Debug)]
pub struct Layout {
    /// x (D) -> h (hidden), ReLU
    pub enc: Dense,
    /// h -> [mu | logvar] (2L): rows 0..L are the mean head, L..2L the log-variance head
    pub heads: Dense,
    /// z (L) -> h (hidden), ReLU
    pub dec: Dense,
    /// h -> logits (D)
    pub out: Dense,
    /// Floats in the flat buffer, a multiple of 64.
    pub len: usize,
}

const ALIGN: usize = 64;

impl Layout {
    pub fn new(c: &VaeConfig) -> Layout {
        let mut len = 0;
        let mut dense = |n: usize, k: usize| {
            let rows = n.next_multiple_of(4);
            let stride = k.next_multiple_of(ALIGN);
            let w = len;
            let b = w + rows * stride;
            len = b + n.next_multiple_of(ALIGN);
            Dense { n, k, rows, stride, w, b }
        };
        let enc = dense(c.hidden, c.pixels());
        let heads = dense(2 * c.latent, c.hidden);
        let dec = dense(c.hidden, c.latent);
        let out = dense(c.pixels(), c.hidden);
        Layout { enc, heads, dec, out, len }
    }

    pub fn layers(&self) -> [&Dense; 4] {
        [&self.enc, &self.heads, &self.dec, &self.out]
    }

    /// The checkpoint's tensors, PyTorch nn.Linear convention.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let l = self.heads.n / 2;
        let (e, h, d, o) = (&self.enc, &self.heads, &self.dec, &self.out);
        let t = |name, shape: Vec<usize>, offset, stride| TensorSpec { name, shape, offset, stride };
        vec![
            t("fc1.weight", vec![e.n, e.k], e.w, e.stride),
            t("fc1.bias", vec![e.n], e.b, e.n),
            t("fc_mu.weight", vec![l, h.k], h.w, h.stride),
            t("fc_mu.bias", vec![l], h.b, l),
            t("fc_logvar.weight", vec![l, h.k], h.w + l * h.stride, h.stride),
            t("fc_logvar.bias", vec![l], h.b + l, l),
            t("fc3.weight", vec![d.n, d.k], d.w, d.stride),
            t("fc3.bias", vec![d.n], d.b, d.n),
            t("fc4.weight", vec![o.n, o.k], o.w, o.stride),
            t("fc4.bias", vec![o.n], o.b, o.n),
        ]
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
    /// PyTorch's nn.Linear initialisation: W and b ~ U(-1/sqrt(in), 1/sqrt(in)).
    pub fn init(config: &VaeConfig, seed: u64) -> Model {
        let layout = Layout::new(config);
        let mut params = vec![0f32; layout.len];
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for d in layout.layers() {
            let bound = 1.0 / (d.k as f32).sqrt();
            for r in 0..d.n {
                for c in 0..d.k {
                    params[d.w + r * d.stride + c] = rng.random_range(-bound..bound);
                }
            }
            for r in 0..d.n {
                params[d.b + r] = rng.random_range(-bound..bound);
            }
        }
        Model { config: config.clone(), layout, params }
    }

    /// Dense weight W (n, k) of a layer, without padding.
    pub fn weight(&self, d: &Dense) -> Vec<f32> {
        (0..d.n).flat_map(|r| self.params[d.w + r * d.stride..d.w + r * d.stride + d.k].iter().copied()).collect()
    }

    pub fn bias(&self, d: &Dense) -> Vec<f32> {
        self.params[d.b..d.b + d.n].to_vec()
    }

    /// Serialises to safetensors bytes (f32, PyTorch names, configuration in the metadata).
    pub fn to_safetensors(&self, extra: &HashMap<String, String>) -> Result<Vec<u8>> {
        let specs = self.layout.tensors();
        let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for s in &specs {
            let rows = if s.shape.len() == 2 { s.shape[0] } else { 1 };
            let cols = *s.shape.last().unwrap();
            let mut data = Vec::with_capacity(rows * cols * 4);
            for r in 0..rows {
                let row = &self.params[s.offset + r * s.stride..s.offset + r * s.stride + cols];
                data.extend_from_slice(bytemuck::cast_slice(row));
            }
            blobs.push((s.name.to_string(), s.shape.clone(), data));
        }
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
        for s in layout.tensors() {
            let t = st.tensor(s.name).with_context(|| format!("tensor {} is missing", s.name))?;
            if t.shape() != s.shape.as_slice() || t.dtype() != safetensors::Dtype::F32 {
                bail!("tensor {} is {:?} {:?}, expected F32 {:?}", s.name, t.dtype(), t.shape(), s.shape);
            }
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
            let cols = *s.shape.last().unwrap();
            for (r, row) in values.chunks(cols).enumerate() {
                params[s.offset + r * s.stride..s.offset + r * s.stride + cols].copy_from_slice(row);
            }
        }
        Ok(Model { config, layout, params })
    }
}
