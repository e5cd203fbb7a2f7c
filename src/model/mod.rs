//! The model: its configuration ([`config`]), its layers and the flat parameter
//! layout ([`layout`]), the parameters themselves with PyTorch's initialisation,
//! and safetensors in and out with PyTorch's names and layouts.

pub mod config;
pub mod fit;
pub mod layout;

pub use config::*;
pub use layout::*;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

/// How model.safetensors stores the parameters (`--save-dtype`): f32 as trained, or
/// rounded to half precision (IEEE f16, or bfloat16 with f32's range), half the size.
/// Every elbo command and PyTorch's `load_file` read all three.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SaveDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

impl SaveDtype {
    /// The name `--save-dtype` takes.
    pub fn name(self) -> &'static str {
        match self {
            SaveDtype::F32 => "f32",
            SaveDtype::F16 => "f16",
            SaveDtype::Bf16 => "bf16",
        }
    }

    /// `v` rounded to this type and back.
    pub fn round(self, v: f32) -> f32 {
        match self {
            SaveDtype::F32 => v,
            SaveDtype::F16 => half::f16::from_f32(v).to_f32(),
            SaveDtype::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    fn encode(self, values: &[f32]) -> (safetensors::Dtype, Vec<u8>) {
        match self {
            SaveDtype::F32 => (safetensors::Dtype::F32, bytemuck::cast_slice(values).to_vec()),
            SaveDtype::F16 => {
                (safetensors::Dtype::F16, values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect())
            }
            SaveDtype::Bf16 => {
                (safetensors::Dtype::BF16, values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect())
            }
        }
    }
}

/// A tensor's values as f32, from f32, f16 or bf16 (little-endian, as safetensors stores them).
fn decode(dtype: safetensors::Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let halves = |f: fn([u8; 2]) -> f32| data.chunks_exact(2).map(|b| f([b[0], b[1]])).collect();
    match dtype {
        safetensors::Dtype::F32 => Some(bytemuck::pod_collect_to_vec(data)),
        safetensors::Dtype::F16 => Some(halves(|b| half::f16::from_le_bytes(b).to_f32())),
        safetensors::Dtype::BF16 => Some(halves(|b| half::bf16::from_le_bytes(b).to_f32())),
        _ => None,
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
        self.to_safetensors_as(extra, SaveDtype::F32)
    }

    /// `to_safetensors` with the tensors stored as `dtype`.
    pub fn to_safetensors_as(&self, extra: &HashMap<String, String>, dtype: SaveDtype) -> Result<Vec<u8>> {
        let blobs: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = self
            .layout
            .tensors(&self.config)
            .into_iter()
            .map(|t| {
                let values: Vec<f32> = t.offsets.iter().map(|&o| self.params[o]).collect();
                let (dt, bytes) = dtype.encode(&values);
                (t.name, t.shape, dt, bytes)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = blobs
            .iter()
            .map(|(n, shape, dt, d)| Ok((n.clone(), safetensors::tensor::TensorView::new(*dt, shape.clone(), d)?)))
            .collect::<Result<_>>()?;
        let mut meta = self.config.to_metadata();
        meta.extend(extra.clone());
        meta.insert(
            crate::CHECKSUM_KEY.to_string(),
            crate::tensor_checksum(blobs.iter().map(|(n, _, _, d)| (n.as_str(), d.as_slice()))),
        );
        crate::serialize_sorted(views, meta)
    }

    /// Writes the safetensors file atomically: a temporary file beside it, then a rename.
    pub fn save(&self, path: &Path, extra: &HashMap<String, String>) -> Result<()> {
        self.save_as(path, extra, SaveDtype::F32)
    }

    /// `save` with the tensors stored as `dtype`.
    pub fn save_as(&self, path: &Path, extra: &HashMap<String, String>, dtype: SaveDtype) -> Result<()> {
        let bytes = self.to_safetensors_as(extra, dtype)?;
        crate::write_atomic(path, &bytes)
    }

    /// This model with every parameter rounded to `dtype` and back: what a file saved as
    /// `dtype` loads as.
    pub fn rounded(&self, dtype: SaveDtype) -> Model {
        Model { params: self.params.iter().map(|&v| dtype.round(v)).collect(), ..self.clone() }
    }

    pub fn load(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read model file {}", path.display()))?;
        Self::from_safetensors(&bytes).with_context(|| format!("{} is not a usable elbo model", path.display()))
    }

    /// The metadata of a safetensors file: the configuration's keys and whatever else its
    /// writer recorded (elbo: the epoch, the test loss, the seed, the GEMM variants).
    pub fn metadata(bytes: &[u8]) -> Result<HashMap<String, String>> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).context("damaged safetensors header")?;
        Ok(meta.metadata().clone().unwrap_or_default())
    }

    pub fn from_safetensors(bytes: &[u8]) -> Result<Model> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).context("damaged safetensors header")?;
        let st = safetensors::SafeTensors::deserialize(bytes).context("damaged safetensors file")?;
        let metadata = meta.metadata().as_ref().context("no metadata in the safetensors file")?;
        crate::verify_tensor_checksum(&st, metadata)?;
        let config = VaeConfig::from_metadata(metadata)?;
        let layout = Layout::new(&config);
        // metadata that describes a larger model than the file holds is damaged: say so
        // before allocating its parameters (the layout pads rows, never by 8x)
        let width =
            |d: safetensors::Dtype| if matches!(d, safetensors::Dtype::F16 | safetensors::Dtype::BF16) { 2 } else { 4 };
        let values: usize = st.tensors().iter().map(|(_, t)| t.data().len() / width(t.dtype())).sum();
        if layout.len > 8 * values + 65536 {
            bail!(
                "its metadata describes a {}x{}x{} model of {} parameters, and its tensors hold {values} values: the metadata is damaged or was edited",
                config.width,
                config.height,
                config.channels,
                layout.len
            );
        }
        let mut params = vec![0f32; layout.len];
        for t in layout.tensors(&config) {
            let v = st.tensor(&t.name).with_context(|| format!("tensor {} is missing", t.name))?;
            let values = decode(v.dtype(), v.data()).filter(|_| v.shape() == t.shape.as_slice());
            let Some(values) = values else {
                bail!("tensor {} is {:?} {:?}, expected F32, F16 or BF16 {:?}", t.name, v.dtype(), v.shape(), t.shape);
            };
            for (&o, &x) in t.offsets.iter().zip(&values) {
                params[o] = x;
            }
        }
        Ok(Model { config, layout, params })
    }
}
