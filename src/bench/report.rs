//! The bench report, typed, with the JSON keys `elbo bench --json` has always
//! written; as tables, and two reports side by side.
//!
//! Every struct lists its fields in alphabetical order: serde writes them in that
//! order, which is the order the untyped reports had, so a new report diffs line for
//! line against those in benches/results.

use super::pytorch::{PytorchEpoch, PytorchStep};
use crate::gpu::Gpu;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// What `elbo bench` measured on one adapter: what `--json` writes and `--compare` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub adapter: Adapter,
    /// Absent from reports made before the fixed costs were measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_costs: Option<FixedCosts>,
    /// The MLP VAE's GEMMs at batch 128, each with the variant this adapter runs.
    #[serde(default)]
    pub gemm_choice: Vec<GemmDecision>,
    #[serde(default)]
    pub kernels: Vec<KernelEntry>,
    /// Each model's step against PyTorch's; only with `--pytorch`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pytorch: Vec<PytorchStep>,
    /// Whole epochs against PyTorch's DataLoader; only with `--pytorch` and torchvision,
    /// and absent from reports made before epochs were compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch_epoch: Option<PytorchEpoch>,
    pub steps: Vec<StepEntry>,
    /// How the kernels were timed (`Timer::describe`).
    #[serde(default = "unknown")]
    pub timing: String,
}

/// What a report says where a hand-made one leaves a name out, as the tables always have.
fn unknown() -> String {
    "?".into()
}

/// The adapter the report was measured on, so that two reports say what they compare.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adapter {
    /// Threads kept spinning beside llvmpipe's (`gpu::awake`): 0 without them; absent
    /// from reports made before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awake_threads: Option<usize>,
    #[serde(default = "unknown")]
    pub backend: String,
    /// The PCI device id, in hex.
    #[serde(default = "unknown")]
    pub device: String,
    #[serde(default = "unknown")]
    pub device_type: String,
    #[serde(default = "unknown")]
    pub driver: String,
    #[serde(default)]
    pub driver_info: String,
    /// llvmpipe's worker threads, on lavapipe only (and not in its oldest reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llvmpipe_threads: Option<usize>,
    #[serde(default = "unknown")]
    pub name: String,
    /// The PCI vendor id, in hex.
    #[serde(default = "unknown")]
    pub vendor: String,
}

impl Adapter {
    /// `gpu`'s adapter, as a report names it.
    pub fn of(gpu: &Gpu) -> Adapter {
        let i = &gpu.info;
        Adapter {
            awake_threads: Some(gpu.spinners.map_or(0, |s| s.threads())),
            backend: format!("{:?}", i.backend),
            device: format!("0x{:04x}", i.device),
            device_type: format!("{:?}", i.device_type),
            driver: i.driver.clone(),
            driver_info: i.driver_info.clone(),
            llvmpipe_threads: gpu.lavapipe_threads(),
            name: i.name.clone(),
            vendor: format!("0x{:04x}", i.vendor),
        }
    }
}

/// What GPU work costs apart from the work (`bench::fixed_costs`), in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixedCosts {
    #[serde(default)]
    pub each_dispatch_p10_p90_us: [f64; 2],
    /// Each further dispatch in the same compute pass.
    pub each_dispatch_us: f64,
    /// One dispatch encoded, submitted and waited for.
    pub one_dispatch_us: f64,
    #[serde(default)]
    pub runs: usize,
    /// An empty submit and its wait.
    pub submit_wait_us: f64,
}

/// One kernel's times at one shape: in a model's step, or a square GEMM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelEntry {
    #[serde(default)]
    pub gbps: f64,
    #[serde(default)]
    pub gflops: f64,
    /// The entry point, then the layer where it ran in a step ("gemm_forward fc1").
    #[serde(default = "unknown")]
    pub kernel: String,
    #[serde(default)]
    pub median_us: f64,
    /// The model whose step ran it: none for the square GEMMs, and in reports made
    /// before the convolutional VAE was profiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub p10_us: f64,
    #[serde(default)]
    pub p90_us: f64,
    #[serde(default)]
    pub runs: usize,
    #[serde(default)]
    pub shape: String,
}

/// The GEMM variant chosen for one pass and shape, with the timings that chose it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemmDecision {
    pub k: usize,
    /// The pass's entry point ("gemm_forward").
    pub kernel: String,
    pub m: usize,
    pub n: usize,
    /// Median microseconds of each variant timed, by name; empty when forced.
    pub timings_us: BTreeMap<String, f64>,
    pub variant: String,
}

impl GemmDecision {
    /// A trainer's decision, as a report records it (variants by name).
    pub fn of(d: &crate::kernels::gemm::Decision) -> GemmDecision {
        GemmDecision {
            k: d.shape.2,
            kernel: d.pass.entry().into(),
            m: d.shape.0,
            n: d.shape.1,
            timings_us: d.timings.iter().map(|(v, us)| (v.name().to_string(), *us)).collect(),
            variant: d.variant.name().into(),
        }
    }
}

/// Whole training steps of one model at one batch size, as training runs them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepEntry {
    pub batch: usize,
    #[serde(default)]
    pub dispatches: usize,
    #[serde(default)]
    pub images_per_second: f64,
    #[serde(default)]
    pub median_ms: f64,
    #[serde(default = "unknown")]
    pub model: String,
    #[serde(default)]
    pub p10_ms: f64,
    #[serde(default)]
    pub p90_ms: f64,
    #[serde(default)]
    pub submits: usize,
}

/// Above this ratio between the largest and the smallest of a measurement's repeats (a
/// comparison's interleaved rounds, a step's p90 and p10), `format_bench` calls it
/// unsteady: on a shared 2-core machine, bursts of other load moved
/// single rounds by 1.3-2.6x.
pub const UNSTEADY_SPREAD: f64 = 1.25;

/// The bench report as tables.
pub fn format_bench(r: &Report) -> String {
    let mut s = adapter_section(r);
    s += &kernel_table(&r.kernels);
    s += &gemm_section(&r.gemm_choice);
    s += &step_table(&r.steps);
    if let Some(f) = &r.fixed_costs {
        s += &dispatch_shares(&r.steps, f.each_dispatch_us);
    }
    for p in &r.pytorch {
        s += &p.summary();
    }
    if let Some(e) = &r.pytorch_epoch {
        s += &e.summary();
    }
    s += "\n";
    s
}

/// The adapter, how it was timed, and its fixed costs where the report has them.
fn adapter_section(r: &Report) -> String {
    let a = &r.adapter;
    let threads = crate::gpu::threads_note(a.llvmpipe_threads, a.awake_threads);
    let mut s = format!(
        "adapter: {} (vendor {}, {}, {}, driver {} {}{threads})\ntiming: {}\n\n",
        a.name, a.vendor, a.backend, a.device_type, a.driver, a.driver_info, r.timing
    );
    if let Some(f) = &r.fixed_costs {
        s += &format!(
            "fixed costs (no work): an empty submit and wait {:.1} us; one dispatch, submitted and waited for \
             {:.1} us; each further dispatch in the same pass {:.1} us\n\n",
            f.submit_wait_us, f.one_dispatch_us, f.each_dispatch_us
        );
    }
    s
}

/// Each kernel's spread and throughput, to see where a step's time goes.
fn kernel_table(kernels: &[KernelEntry]) -> String {
    let mut s = format!(
        "{:<30} {:<22} {:>10} {:>17} {:>8} {:>7}\n",
        "kernel", "shape", "median us", "p10..p90 us", "GFLOP/s", "GB/s"
    );
    for k in kernels {
        s += &format!(
            "{:<30} {:<22} {:>10.1} {:>8.1}..{:<8.1} {:>8.2} {:>7.2}\n",
            k.kernel, k.shape, k.median_us, k.p10_us, k.p90_us, k.gflops, k.gbps
        );
    }
    s
}

/// The GEMM variant of each layer and the timings that chose it, since the variant that
/// wins differs between adapters.
fn gemm_section(choice: &[GemmDecision]) -> String {
    let mut s = "\nGEMM variant chosen per layer (median us of each variant on this adapter):\n".to_string();
    for c in choice {
        let timings: Vec<String> = c.timings_us.iter().map(|(v, us)| format!("{v} {us:.0}")).collect();
        // m, n and k unpadded, as the untyped report printed them (serde_json::Value takes no width)
        s += &format!(
            "  {:<22} m={} n={} k={} -> {:<9} ({})\n",
            c.kernel,
            c.m,
            c.n,
            c.k,
            c.variant,
            if timings.is_empty() { "forced or only variant".to_string() } else { timings.join(", ") }
        );
    }
    s
}

/// The training steps, each flagged where its p90 and p10 spread past `UNSTEADY_SPREAD`.
fn step_table(steps: &[StepEntry]) -> String {
    if steps.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\n{:<22} {:>6} {:>10} {:>17} {:>10} {:>10} {:>8}\n",
        "training step", "batch", "median ms", "p10..p90 ms", "images/s", "dispatches", "submits"
    );
    let mut unsteady_steps = false;
    for st in steps {
        let unsteady = st.p90_ms > UNSTEADY_SPREAD * st.p10_ms;
        unsteady_steps |= unsteady;
        // batch, dispatches and submits unpadded, as the untyped report printed them
        s += &format!(
            "{:<22} {} {:>10.2} {:>8.2}..{:<8.2} {:>10.0} {} {}{}\n",
            st.model,
            st.batch,
            st.median_ms,
            st.p10_ms,
            st.p90_ms,
            st.images_per_second,
            st.dispatches,
            st.submits,
            if unsteady { "  unsteady" } else { "" }
        );
    }
    if unsteady_steps {
        s += &format!(
            "(unsteady: p90 more than {UNSTEADY_SPREAD}x p10: something else was using the machine; rerun for firmer figures)\n"
        );
    }
    s
}

/// What the dispatches alone cost of each model's step at batch 128, at `each` microseconds.
fn dispatch_shares(steps: &[StepEntry], each: f64) -> String {
    let mut s = String::new();
    for st in steps.iter().filter(|st| st.batch == 128 && st.dispatches > 0 && st.median_ms > 0.0) {
        let (n, fixed) = (st.dispatches, st.dispatches as f64 * each / 1e3);
        s += &format!(
            "{} at batch 128: {n} dispatches x {each:.1} us = {fixed:.2} ms of fixed cost, {:.0}% of the step\n",
            st.model,
            100.0 * fixed / st.median_ms
        );
    }
    s
}

/// Two bench reports side by side: each kernel and step, and the ratio B / A.
pub fn compare(a: &Report, b: &Report) -> String {
    let mut s = format!("A: {}\nB: {}\n\n", a.adapter.name, b.adapter.name);
    s += &format!("{:<30} {:<22} {:>12} {:>12} {:>8}\n", "kernel", "shape", "A median us", "B median us", "B/A");
    let costs = |r: &Report| r.fixed_costs.as_ref().map(|f| [f.submit_wait_us, f.one_dispatch_us, f.each_dispatch_us]);
    let rows = ["empty submit and wait", "one dispatch, submit, wait", "each further dispatch"];
    for (i, what) in rows.into_iter().enumerate() {
        // either report may predate them
        let (ta, tb) = (costs(a).map(|c| c[i]), costs(b).map(|c| c[i]));
        if ta.is_some() || tb.is_some() {
            let us = |t: Option<f64>| t.map(|v| format!("{v:.1}")).unwrap_or("-".into());
            let ratio = ta.zip(tb).map(|(a, b)| format!("{:.2}", b / a)).unwrap_or("-".into());
            s += &format!("{:<30} {:<22} {:>12} {:>12} {:>8}\n", what, "(fixed cost)", us(ta), us(tb), ratio);
        }
    }
    s += &compare_kernels(&a.kernels, &b.kernels);
    s +=
        &format!("\n{:<22} {:>6} {:>12} {:>12} {:>8}\n", "training step", "batch", "A median ms", "B median ms", "B/A");
    for sa in &a.steps {
        let tb = b.steps.iter().find(|x| x.model == sa.model && x.batch == sa.batch).map(|x| x.median_ms);
        // the batch unpadded, as the untyped report printed it
        s += &format!(
            "{:<22} {} {:>12.2} {:>12} {:>8}\n",
            sa.model,
            sa.batch,
            sa.median_ms,
            tb.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
            tb.map(|v| format!("{:.2}", v / sa.median_ms)).unwrap_or("-".into())
        );
    }
    s
}

/// A's kernels beside B's. They line up by pass, layer and shape whichever variant each
/// adapter ran ("conv2d_forward_subgroup enc.conv2" against "conv2d_forward_wide enc.conv2").
fn compare_kernels(a: &[KernelEntry], b: &[KernelEntry]) -> String {
    let key = |k: &KernelEntry| {
        let (entry, rest) = k.kernel.split_once(' ').unwrap_or((&k.kernel, ""));
        (crate::kernels::reference_name(entry).to_string(), rest.to_string(), k.shape.clone())
    };
    let mut s = String::new();
    for ka in a {
        let kb = b.iter().find(|k| key(k) == key(ka));
        let (ta, tb) = (ka.median_us, kb.map(|k| k.median_us));
        let b_label = kb.map(|k| &k.kernel).filter(|l| **l != ka.kernel);
        s += &format!(
            "{:<30} {:<22} {:>12.1} {:>12} {:>8}{}\n",
            ka.kernel,
            ka.shape,
            ta,
            tb.map(|v| format!("{v:.1}")).unwrap_or("-".into()),
            tb.map(|v| format!("{:.2}", v / ta)).unwrap_or("-".into()),
            b_label.map(|l| format!("  (B: {l})")).unwrap_or_default()
        );
    }
    s
}

/// A report `elbo bench --json` wrote, by this version or an earlier one.
pub fn read_report(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if v.get("adapter").is_none() || v.get("steps").is_none() {
        bail!("{} is not an `elbo bench --json` report (no adapter or steps)", path.display());
    }
    serde_json::from_value(v).with_context(|| format!("{} is not an `elbo bench --json` report", path.display()))
}
