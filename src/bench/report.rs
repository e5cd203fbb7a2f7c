//! A bench report as a table, and two reports side by side.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// Above this ratio between the largest and the smallest of a measurement's repeats (a
/// comparison's interleaved rounds, a step's p90 and p10), `format_bench` calls it
/// unsteady: on a shared 2-core machine, bursts of other load moved
/// single rounds by 1.3-2.6x.
pub const UNSTEADY_SPREAD: f64 = 1.25;

/// The note after a comparison whose rounds' ratios spread past `UNSTEADY_SPREAD`.
fn unsteady_rounds(rounds: &[f64]) -> String {
    let (lo, hi) = rounds.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if rounds.len() > 1 && hi > UNSTEADY_SPREAD * lo {
        format!(
            "\n  unsteady: the rounds range from {lo:.2}x to {hi:.2}x (the largest more than {UNSTEADY_SPREAD} times \
             the smallest): something else was using the machine; rerun for a firmer ratio"
        )
    } else {
        String::new()
    }
}

/// The bench report as tables.
pub fn format_bench(r: &Value) -> String {
    let a = &r["adapter"];
    let threads = crate::gpu::threads_note(
        a["llvmpipe_threads"].as_u64().map(|n| n as usize),
        a["awake_threads"].as_u64().map(|n| n as usize),
    );
    let mut s = format!(
        "adapter: {} (vendor {}, {}, {}, driver {} {}{threads})\ntiming: {}\n\n",
        a["name"].as_str().unwrap_or("?"),
        a["vendor"].as_str().unwrap_or("?"),
        a["backend"].as_str().unwrap_or("?"),
        a["device_type"].as_str().unwrap_or("?"),
        a["driver"].as_str().unwrap_or("?"),
        a["driver_info"].as_str().unwrap_or(""),
        r["timing"].as_str().unwrap_or("?")
    );
    let f = &r["fixed_costs"];
    if let (Some(submit), Some(one), Some(each)) =
        (f["submit_wait_us"].as_f64(), f["one_dispatch_us"].as_f64(), f["each_dispatch_us"].as_f64())
    {
        s += &format!(
            "fixed costs (no work): an empty submit and wait {submit:.1} us; one dispatch, submitted and waited for \
             {one:.1} us; each further dispatch in the same pass {each:.1} us\n\n"
        );
    }
    s += &format!(
        "{:<30} {:<22} {:>10} {:>17} {:>8} {:>7}\n",
        "kernel", "shape", "median us", "p10..p90 us", "GFLOP/s", "GB/s"
    );
    for k in r["kernels"].as_array().into_iter().flatten() {
        s += &format!(
            "{:<30} {:<22} {:>10.1} {:>8.1}..{:<8.1} {:>8.2} {:>7.2}\n",
            k["kernel"].as_str().unwrap_or("?"),
            k["shape"].as_str().unwrap_or(""),
            k["median_us"].as_f64().unwrap_or(0.0),
            k["p10_us"].as_f64().unwrap_or(0.0),
            k["p90_us"].as_f64().unwrap_or(0.0),
            k["gflops"].as_f64().unwrap_or(0.0),
            k["gbps"].as_f64().unwrap_or(0.0)
        );
    }
    s += "\nGEMM variant chosen per layer (median us of each variant on this adapter):\n";
    for c in r["gemm_choice"].as_array().into_iter().flatten() {
        let timings: Vec<String> = c["timings_us"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(v, us)| format!("{v} {:.0}", us.as_f64().unwrap_or(0.0)))
            .collect();
        s += &format!(
            "  {:<22} m={:<4} n={:<4} k={:<4} -> {:<9} ({})\n",
            c["kernel"].as_str().unwrap_or("?"),
            c["m"],
            c["n"],
            c["k"],
            c["variant"].as_str().unwrap_or("?"),
            if timings.is_empty() { "forced or only variant".to_string() } else { timings.join(", ") }
        );
    }
    let steps = r["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !steps.is_empty() {
        s += &format!(
            "\n{:<22} {:>6} {:>10} {:>17} {:>10} {:>10} {:>8}\n",
            "training step", "batch", "median ms", "p10..p90 ms", "images/s", "dispatches", "submits"
        );
    }
    let mut unsteady_steps = false;
    for st in steps {
        let (p10, p90) = (st["p10_ms"].as_f64().unwrap_or(0.0), st["p90_ms"].as_f64().unwrap_or(0.0));
        let unsteady = p90 > UNSTEADY_SPREAD * p10;
        unsteady_steps |= unsteady;
        s += &format!(
            "{:<22} {:>6} {:>10.2} {:>8.2}..{:<8.2} {:>10.0} {:>10} {:>8}{}\n",
            st["model"].as_str().unwrap_or("?"),
            st["batch"],
            st["median_ms"].as_f64().unwrap_or(0.0),
            p10,
            p90,
            st["images_per_second"].as_f64().unwrap_or(0.0),
            st["dispatches"],
            st["submits"],
            if unsteady { "  unsteady" } else { "" }
        );
    }
    if unsteady_steps {
        s += &format!(
            "(unsteady: p90 more than {UNSTEADY_SPREAD}x p10: something else was using the machine; rerun for firmer figures)\n"
        );
    }
    // what the dispatches alone cost of each model's step at batch 128
    if let Some(each) = r["fixed_costs"]["each_dispatch_us"].as_f64() {
        for st in steps.iter().filter(|st| st["batch"] == 128) {
            let (n, ms) = (st["dispatches"].as_u64().unwrap_or(0), st["median_ms"].as_f64().unwrap_or(0.0));
            if n > 0 && ms > 0.0 {
                let fixed = n as f64 * each / 1e3;
                s += &format!(
                    "{} at batch 128: {n} dispatches x {each:.1} us = {fixed:.2} ms of fixed cost, {:.0}% of the step\n",
                    st["model"].as_str().unwrap_or("?"),
                    100.0 * fixed / ms
                );
            }
        }
    }
    let ratios = |rounds: &[Value]| -> Vec<f64> {
        rounds.iter().map(|r| r["elbo_over_pytorch"].as_f64().unwrap_or(f64::NAN)).collect()
    };
    for p in r["pytorch"].as_array().into_iter().flatten() {
        let rounds = ratios(p["rounds"].as_array().map_or(&[][..], |v| v));
        let per_round: Vec<String> = rounds.iter().map(|x| format!("{x:.2}")).collect();
        s += &format!(
            "\n{} ({}): {:.2} ms per step at batch {}, elbo {:.2} ms in the same rounds; elbo / PyTorch = {:.2}x (median of {} interleaved rounds: {})",
            p["system"].as_str().unwrap_or("PyTorch"),
            p["model"].as_str().unwrap_or("?"),
            p["median_ms"].as_f64().unwrap_or(0.0),
            p["batch"],
            p["elbo_ms"].as_f64().unwrap_or(f64::NAN),
            p["elbo_over_pytorch"].as_f64().unwrap_or(f64::NAN),
            per_round.len(),
            per_round.join(", ")
        );
        s += &unsteady_rounds(&rounds);
    }
    let e = &r["pytorch_epoch"];
    if let Some(rounds) = e["rounds"].as_array() {
        let rounds = ratios(rounds);
        let per_round: Vec<String> = rounds.iter().map(|x| format!("{x:.2}")).collect();
        s += &format!(
            "\nPyTorch with its {} ({}): {:.2} s an epoch at batch {}, elbo {:.2} s in the same rounds; elbo / PyTorch = {:.2}x (median of {} interleaved rounds: {})",
            e["loader"].as_str().unwrap_or("DataLoader"),
            e["model"].as_str().unwrap_or("?"),
            e["pytorch_s"].as_f64().unwrap_or(f64::NAN),
            e["batch"],
            e["elbo_s"].as_f64().unwrap_or(f64::NAN),
            e["elbo_over_pytorch"].as_f64().unwrap_or(f64::NAN),
            per_round.len(),
            per_round.join(", ")
        );
        s += &unsteady_rounds(&rounds);
    }
    s += "\n";
    s
}

/// Two bench reports side by side: each kernel and step, and the ratio B / A.
pub fn compare(a: &Value, b: &Value) -> String {
    let name = |r: &Value| r["adapter"]["name"].as_str().unwrap_or("?").to_string();
    let mut s = format!("A: {}\nB: {}\n\n", name(a), name(b));
    s += &format!("{:<30} {:<22} {:>12} {:>12} {:>8}\n", "kernel", "shape", "A median us", "B median us", "B/A");
    for (key, what) in [
        ("submit_wait_us", "empty submit and wait"),
        ("one_dispatch_us", "one dispatch, submit, wait"),
        ("each_dispatch_us", "each further dispatch"),
    ] {
        // either report may predate them
        let (ta, tb) = (a["fixed_costs"][key].as_f64(), b["fixed_costs"][key].as_f64());
        if ta.is_some() || tb.is_some() {
            let us = |t: Option<f64>| t.map(|v| format!("{v:.1}")).unwrap_or("-".into());
            let ratio = ta.zip(tb).map(|(a, b)| format!("{:.2}", b / a)).unwrap_or("-".into());
            s += &format!("{:<30} {:<22} {:>12} {:>12} {:>8}\n", what, "(fixed cost)", us(ta), us(tb), ratio);
        }
    }
    // kernels line up by pass, layer and shape whichever variant each adapter ran
    // ("conv2d_forward_subgroup enc.conv2" against "conv2d_forward_wide enc.conv2")
    let key = |k: &Value| {
        let label = k["kernel"].as_str().unwrap_or("?");
        let (entry, rest) = label.split_once(' ').unwrap_or((label, ""));
        (crate::kernels::reference_name(entry).to_string(), rest.to_string(), k["shape"].clone())
    };
    for ka in a["kernels"].as_array().into_iter().flatten() {
        let kb = b["kernels"].as_array().into_iter().flatten().find(|k| key(k) == key(ka));
        let (ta, tb) = (ka["median_us"].as_f64().unwrap_or(0.0), kb.and_then(|k| k["median_us"].as_f64()));
        let b_label = kb.map(|k| k["kernel"].clone()).filter(|l| *l != ka["kernel"]);
        s += &format!(
            "{:<30} {:<22} {:>12.1} {:>12} {:>8}{}\n",
            ka["kernel"].as_str().unwrap_or("?"),
            ka["shape"].as_str().unwrap_or(""),
            ta,
            tb.map(|v| format!("{v:.1}")).unwrap_or("-".into()),
            tb.map(|v| format!("{:.2}", v / ta)).unwrap_or("-".into()),
            b_label.map(|l| format!("  (B: {})", l.as_str().unwrap_or("?"))).unwrap_or_default()
        );
    }
    s +=
        &format!("\n{:<22} {:>6} {:>12} {:>12} {:>8}\n", "training step", "batch", "A median ms", "B median ms", "B/A");
    for sa in a["steps"].as_array().into_iter().flatten() {
        let sb = b["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["model"] == sa["model"] && x["batch"] == sa["batch"]);
        let (ta, tb) = (sa["median_ms"].as_f64().unwrap_or(0.0), sb.and_then(|x| x["median_ms"].as_f64()));
        s += &format!(
            "{:<22} {:>6} {:>12.2} {:>12} {:>8}\n",
            sa["model"].as_str().unwrap_or("?"),
            sa["batch"],
            ta,
            tb.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
            tb.map(|v| format!("{:.2}", v / ta)).unwrap_or("-".into())
        );
    }
    s
}

pub fn read_report(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if v.get("adapter").is_none() || v.get("steps").is_none() {
        bail!("{} is not an `elbo bench --json` report (no adapter or steps)", path.display());
    }
    Ok(v)
}
