//! Training checkpoints: everything `train --resume` needs to continue a run
//! bit for bit — the options, where it stopped, the parameters and Adam's
//! moments, the counters and the GEMM variants chosen — in one safetensors
//! file written atomically.

use crate::kernels::gemm::Choice;
use crate::train::{LossSums, TrainState};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

pub const FILE: &str = "checkpoint.safetensors";

#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The run's options (`train::TrainOptions::to_json`).
    pub options: Value,
    /// Epochs finished.
    pub epoch: usize,
    /// The next batch of epoch `epoch + 1` (0 at an epoch boundary).
    pub step: usize,
    /// Loss sums of that epoch's batches before `step`.
    pub partial: LossSums,
    pub state: TrainState,
    pub gemm: Choice,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta = HashMap::from([(
            "elbo.checkpoint".to_string(),
            json!({
                "options": self.options,
                "epoch": self.epoch,
                "step": self.step,
                "partial": [self.partial.recon, self.partial.kl, self.partial.images, self.partial.bound],
                "steps_done": self.state.steps_done,
                "counter": self.state.counter,
                "gemm": Choice::to_json(&self.gemm),
            })
            .to_string(),
        )]);
        let tensors = [
            ("params", &self.state.params),
            ("adam.moment1", &self.state.moment1),
            ("adam.moment2", &self.state.moment2),
        ];
        let bytes: Vec<(String, Vec<u8>)> =
            tensors.iter().map(|(n, v)| (n.to_string(), bytemuck::cast_slice(v.as_slice()).to_vec())).collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(n, b)| {
                Ok((n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![b.len() / 4], b)?))
            })
            .collect::<Result<_>>()?;
        meta.insert(
            crate::CHECKSUM_KEY.to_string(),
            crate::tensor_checksum(bytes.iter().map(|(n, b)| (n.as_str(), b.as_slice()))),
        );
        let data = crate::serialize_sorted(views, meta)?;
        crate::write_atomic(path, &data)
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {}; --resume needs a run folder with a checkpoint written by `elbo train`",
                path.display()
            )
        })?;
        Self::parse(&bytes).with_context(|| format!("{} is not a usable elbo checkpoint", path.display()))
    }

    fn parse(bytes: &[u8]) -> Result<Checkpoint> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).context("damaged safetensors header")?;
        let st = safetensors::SafeTensors::deserialize(bytes).context("damaged safetensors file")?;
        if let Some(m) = meta.metadata() {
            crate::verify_tensor_checksum(&st, m)?;
        }
        let text =
            meta.metadata().as_ref().and_then(|m| m.get("elbo.checkpoint")).context("no elbo.checkpoint metadata")?;
        let m: Value = serde_json::from_str(text).context("damaged checkpoint metadata")?;
        let tensor = |name: &str| -> Result<Vec<f32>> {
            let t = st.tensor(name).with_context(|| format!("tensor {name} is missing"))?;
            if t.dtype() != safetensors::Dtype::F32 {
                bail!("tensor {name} is not f32");
            }
            Ok(bytemuck::pod_collect_to_vec(t.data()))
        };
        let num = |k: &str| m[k].as_u64().with_context(|| format!("checkpoint field {k} is missing"));
        let partial = m["partial"].as_array().context("checkpoint field partial is missing")?;
        let f = |i: usize| partial.get(i).and_then(Value::as_f64).context("checkpoint field partial is damaged");
        Ok(Checkpoint {
            options: m["options"].clone(),
            epoch: num("epoch")? as usize,
            step: num("step")? as usize,
            // the bound came later: 0 in older checkpoints
            partial: LossSums {
                recon: f(0)?,
                kl: f(1)?,
                images: f(2)?,
                bound: partial.get(3).and_then(Value::as_f64).unwrap_or(0.0),
                iwae: false,
            },
            state: TrainState {
                params: tensor("params")?,
                moment1: tensor("adam.moment1")?,
                moment2: tensor("adam.moment2")?,
                steps_done: num("steps_done")? as u32,
                counter: num("counter")? as u32,
            },
            gemm: Choice::from_json(&m["gemm"])?,
        })
    }
}
