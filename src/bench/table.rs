//! The profiler's events summed per kernel into a table sorted by time, and
//! Chrome traces of them.

use crate::kernels::timing::Event;

/// Per-label totals over several runs.
#[derive(Clone, Debug)]
pub struct Row {
    pub label: String,
    pub shape: String,
    pub calls: usize,
    pub total_ns: f64,
    pub flops: f64,
    pub bytes: f64,
}

impl Row {
    pub fn mean_ns(&self) -> f64 {
        self.total_ns / self.calls.max(1) as f64
    }
    pub fn gflops(&self) -> f64 {
        self.flops * self.calls as f64 / self.total_ns.max(1.0)
    }
    pub fn gbps(&self) -> f64 {
        self.bytes * self.calls as f64 / self.total_ns.max(1.0)
    }
}

/// Sums events by (label, shape), sorted by total time, longest first.
pub fn summarize(runs: &[Vec<Event>]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for e in runs.iter().flatten() {
        match rows.iter_mut().find(|r| r.label == e.label && r.shape == e.shape) {
            Some(r) => {
                r.calls += 1;
                r.total_ns += e.dur_ns;
            }
            None => rows.push(Row {
                label: e.label.clone(),
                shape: e.shape.clone(),
                calls: 1,
                total_ns: e.dur_ns,
                flops: e.flops,
                bytes: e.bytes,
            }),
        }
    }
    rows.sort_by(|a, b| b.total_ns.total_cmp(&a.total_ns));
    rows
}

/// The profile table, with each row's share of the summed time.
pub fn format_table(rows: &[Row]) -> String {
    let total: f64 = rows.iter().map(|r| r.total_ns).sum();
    let mut s = format!(
        "{:<30} {:<22} {:>5} {:>11} {:>10} {:>6} {:>8} {:>7}\n",
        "kernel", "shape", "calls", "total ms", "mean us", "share", "GFLOP/s", "GB/s"
    );
    for r in rows {
        s += &format!(
            "{:<30} {:<22} {:>5} {:>11.3} {:>10.1} {:>5.1}% {:>8.2} {:>7.2}\n",
            r.label,
            r.shape,
            r.calls,
            r.total_ns / 1e6,
            r.mean_ns() / 1e3,
            100.0 * r.total_ns / total.max(1.0),
            r.gflops(),
            r.gbps()
        );
    }
    s
}

/// A Chrome trace (chrome://tracing, Perfetto) of the runs laid end to end.
pub fn chrome_trace(runs: &[Vec<Event>], adapter: &str) -> serde_json::Value {
    let mut events = Vec::new();
    let mut offset = 0.0;
    for (i, run) in runs.iter().enumerate() {
        for e in run {
            events.push(serde_json::json!({
                "name": e.label, "cat": "kernel", "ph": "X", "pid": 0, "tid": 0,
                "ts": (offset + e.start_ns) / 1e3, "dur": e.dur_ns / 1e3,
                "args": { "shape": e.shape, "run": i, "GFLOP/s": e.flops / e.dur_ns.max(1.0) },
            }));
        }
        offset += run.iter().map(|e| e.start_ns + e.dur_ns).fold(0.0, f64::max) + 1000.0;
    }
    serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms", "otherData": { "adapter": adapter } })
}
