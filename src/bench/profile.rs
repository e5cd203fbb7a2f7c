//! `elbo profile`: every dispatch of a model's training step timed, as a table
//! and optionally a Chrome trace.

use super::{model_trainer_with, profile_steps, spread, table, time_steps, BenchModel};
use crate::gpu::Gpu;
use crate::kernels::timing::Profiler;
use anyhow::Result;

#[derive(Clone, Debug)]
pub struct ProfileOptions {
    pub model: BenchModel,
    pub batch: usize,
    pub steps: usize,
    pub trace: Option<std::path::PathBuf>,
    /// GEMM kernels: timed on the adapter (auto) or forced, as `elbo train --gemm`.
    pub gemm: crate::kernels::gemm::GemmPreference,
}

/// `elbo profile`: the table of one or more MLP VAE training steps, and the step time beside it.
pub fn profile_command(gpu: &Gpu, opts: &ProfileOptions) -> Result<String> {
    let (train, test) = opts.model.data()?;
    let mut t = model_trainer_with(gpu, opts.model, &train, &test, opts.batch, opts.gemm)?;
    let runs = profile_steps(gpu, &mut t, 2, opts.steps.max(1))?;
    let rows = table::summarize(&runs);
    let timer = Profiler::new(gpu, 1).timer;
    let mut out = format!(
        "adapter: {}\ntiming: {}\n{} training step, batch {}, {} step(s), {} dispatches{}, 1 submit per step\n\n",
        gpu.adapter_line(),
        timer.describe(),
        opts.model.name(),
        opts.batch,
        runs.len(),
        t.dispatches_per_step(),
        if t.copies_weights_each_step() {
            " + weight copies"
        } else {
            " (Adam updates the weight textures: no copies)"
        }
    );
    out += &table::format_table(&rows);
    if !t.gemm_choice().decisions.is_empty() {
        out += &format!(
            "\nGEMM variants (median us of each on this adapter):\n  {}\n",
            t.gemm_choice().describe().replace('\n', "\n  ")
        );
    }
    let sum_ms: f64 = rows.iter().map(|r| r.total_ns).sum::<f64>() / 1e6 / runs.len() as f64;
    let groups = if opts.model == BenchModel::Mlp { 10 } else { 3 };
    let (median, p10, p90) = spread(&time_steps(&mut t, 1, groups, 5)?);
    out += &format!(
        "\nsum of the timed work per step: {sum_ms:.2} ms; measured step time as in training ({groups} groups of 5 steps, one wait per group): median {median:.2} ms (p10 {p10:.2}, p90 {p90:.2})\n"
    );
    if let Some(path) = &opts.trace {
        let trace = table::chrome_trace(&runs, &gpu.adapter_line());
        crate::write_atomic(path, serde_json::to_string(&trace)?.as_bytes())?;
        out +=
            &format!("wrote the Chrome trace to {} (open it in chrome://tracing or ui.perfetto.dev)\n", path.display());
    }
    Ok(out)
}
