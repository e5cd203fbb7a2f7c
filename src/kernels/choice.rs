//! The per-adapter choice between GEMM variants, made by timing each variant on the
//! model's own shapes (or forced by `--gemm`), and kept as `Choice`: checkpoints and
//! models record it, and a forward-only model reuses it untimed.

use super::gemm::{available, dispatch, timed, Gemm, GemmPreference, Pass, Variant};
use super::timing::Profiler;
use super::{Bind, Dispatch, Kernels};
use crate::gpu::Gpu;
use anyhow::Result;

/// The variant chosen for one GEMM (pass and shape), with the timings that chose it.
#[derive(Clone, Debug)]
pub struct Decision {
    pub pass: Pass,
    /// (m, n, k) as `dispatch` takes them.
    pub shape: (usize, usize, usize),
    pub variant: Variant,
    /// (variant, median microseconds) for every variant timed; empty when forced.
    pub timings: Vec<(Variant, f64)>,
}

/// The variant of every GEMM of a model.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    pub decisions: Vec<Decision>,
    /// For shapes no decision covers, in place of the texel kernel.
    pub otherwise: Option<Variant>,
    /// Decisions `choose` timed itself, and the file that keeps this machine's choices
    /// where it read or wrote one (`choice_cache_file`).
    pub timed_now: usize,
    pub cache: Option<std::path::PathBuf>,
}

impl Choice {
    /// The variants a model recorded, for a forward-only model that times nothing: each
    /// decision applies to its pass and (n, k) at any number of rows (`get`), and shapes
    /// the record lacks run the subgroup kernel where this adapter has it.
    pub fn untimed(k: &Kernels, recorded: Choice) -> Choice {
        Choice { otherwise: k.subgroup.as_ref().map(|_| Variant::Subgroup), ..recorded }
    }

    /// The variant for `pass` at (m, n, k): the decision made for it; else one made for
    /// the same pass and (n, k) at the nearest number of rows (a forward-only model runs
    /// its training's GEMMs at other batch sizes); else `otherwise`, or the texel kernel.
    pub fn get(&self, pass: Pass, m: usize, n: usize, k: usize) -> Variant {
        let same = |d: &&Decision| d.pass == pass && (d.shape.1, d.shape.2) == (n, k);
        let nearest = self.decisions.iter().filter(same).min_by_key(|d| d.shape.0.abs_diff(m));
        nearest.map(|d| d.variant).or(self.otherwise).unwrap_or(Variant::Texel)
    }

    /// Whether a decision was made for exactly `pass` at (m, n, k).
    pub fn has(&self, pass: Pass, m: usize, n: usize, k: usize) -> bool {
        self.decisions.iter().any(|d| d.pass == pass && d.shape == (m, n, k))
    }

    /// `other`'s decisions added to these (those for shapes these lack), with its
    /// timing count and cache file.
    pub fn merge(&mut self, other: Choice) {
        for d in other.decisions {
            if !self.has(d.pass, d.shape.0, d.shape.1, d.shape.2) {
                self.decisions.push(d);
            }
        }
        self.timed_now += other.timed_now;
        self.cache = self.cache.take().or(other.cache);
    }

    /// The decisions as JSON (pass, shape, variant), as checkpoints and models record them.
    pub fn to_json(&self) -> serde_json::Value {
        let one = |d: &Decision| {
            let (m, n, k) = d.shape;
            serde_json::json!({"pass": d.pass.entry(), "m": m, "n": n, "k": k, "variant": d.variant.name()})
        };
        serde_json::Value::Array(self.decisions.iter().map(one).collect())
    }

    /// Decisions read back from `to_json`'s form.
    pub fn from_json(v: &serde_json::Value) -> Result<Choice> {
        use anyhow::Context;
        let mut c = Choice::default();
        for d in v.as_array().context("gemm choice is not a list")? {
            let pass = Pass::ALL.into_iter().find(|p| d["pass"] == p.entry()).context("unknown GEMM pass")?;
            let variant =
                Variant::ALL.into_iter().find(|v| d["variant"] == v.name()).context("unknown GEMM variant")?;
            let num = |k: &str| d[k].as_u64().map(|v| v as usize).context("GEMM shape is not a number");
            c.decisions.push(Decision { pass, shape: (num("m")?, num("n")?, num("k")?), variant, timings: Vec::new() });
        }
        Ok(c)
    }

    /// One line per decision: pass, shape, variant and the timings behind it.
    pub fn describe(&self) -> String {
        self.decisions
            .iter()
            .map(|d| {
                let times: Vec<String> = d.timings.iter().map(|(v, us)| format!("{} {us:.0} us", v.name())).collect();
                let (m, n, k) = d.shape;
                format!(
                    "{} m={m} n={n} k={k}: {}{}",
                    d.pass.entry(),
                    d.variant.name(),
                    if times.is_empty() { " (forced)".to_string() } else { format!(" ({})", times.join(", ")) }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// GEMM variants timed by this process so far (`time_variant` calls): forward-only
/// models must time none.
pub fn variants_timed() -> usize {
    TIMED.load(std::sync::atomic::Ordering::Relaxed)
}

static TIMED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The dispatch `time_variant` times: `pass` in `variant` on random data of the given
/// shape (resources its bind group keeps).
fn timing_dispatch(
    gpu: &Gpu,
    k: &Kernels,
    pass: Pass,
    variant: Variant,
    m: usize,
    n: usize,
    kk: usize,
) -> Result<Dispatch> {
    let m = m.next_multiple_of(4);
    let fill = |rows: usize, cols: usize, seed: u32| -> Result<crate::gpu::Matrix> {
        let mat = gpu.matrix("gemm timing", rows, cols)?;
        let data: Vec<f32> = (0..rows * cols).map(|i| crate::rng::rand_uniform(seed, 9, 0, i as u32) - 0.5).collect();
        gpu.write_matrix(&mat, &data);
        Ok(mat)
    };
    let (lhs_cols, rhs_rows, rhs_cols, out_cols) = match pass {
        Pass::Forward => (kk, n, kk, n),
        Pass::BackwardInput => (n, n, kk, kk),
        Pass::BackwardWeight => (n, m, kk, kk),
    };
    let (lhs, rhs, out) =
        (fill(m, lhs_cols, 1)?, fill(rhs_rows, rhs_cols, 2)?, gpu.matrix("gemm timing out", m, out_cols)?);
    let stride = kk.next_multiple_of(64);
    let flat =
        gpu.buffer("gemm timing flat", ((n.next_multiple_of(4) * stride + n) * 4) as u64, wgpu::BufferUsages::empty())?;
    let u = gpu.uniform(
        "gemm timing",
        &Gemm {
            m: m as u32,
            n: n as u32,
            k: kk as u32,
            act: 1,
            bias: 0,
            grad_w: 0,
            stride: stride as u32,
            grad_b: (n.next_multiple_of(4) * stride) as u32,
        },
    );
    let dx = gpu.matrix("gemm timing dx", m, kk)?;
    use super::gemm_slot::*;
    use Bind::{Buffer as B, Texture as T};
    let binds: Vec<(u32, Bind)> = match pass {
        Pass::Forward => {
            vec![(P, B(&u)), (LHS, T(&lhs.view)), (RHS, T(&rhs.view)), (OUT, T(&out.view)), (PARAMS, B(&flat))]
        }
        // `out` (m, k) serves as the ReLU mask
        Pass::BackwardInput => {
            vec![(P, B(&u)), (LHS, T(&lhs.view)), (RHS, T(&rhs.view)), (MASK, T(&out.view)), (OUT, T(&dx.view))]
        }
        Pass::BackwardWeight => vec![(P, B(&u)), (LHS, T(&lhs.view)), (RHS, T(&rhs.view)), (GRADS, B(&flat))],
    };
    Ok(dispatch(gpu, k, pass, variant, pass.entry(), &binds, m, n, kk))
}

/// Microseconds of `runs` runs of `pass` in `variant` on random data of the given shape,
/// fastest first.
#[allow(clippy::too_many_arguments)]
pub fn time_variant(
    gpu: &Gpu,
    k: &Kernels,
    pass: Pass,
    variant: Variant,
    m: usize,
    n: usize,
    kk: usize,
    runs: usize,
) -> Result<Vec<f64>> {
    TIMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = timing_dispatch(gpu, k, pass, variant, m, n, kk)?;
    let profiler = Profiler::new(gpu, 1);
    profiler.run(gpu, &[&d], None)?; // first run compiles the pipeline
    let mut t: Vec<f64> = (0..runs).map(|_| Ok(profiler.run(gpu, &[&d], None)?[0].dur_ns)).collect::<Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t.into_iter().map(|ns| ns / 1e3).collect())
}

type ChoiceKey = (String, Pass, (usize, usize, usize));

/// The file that keeps this machine's GEMM choices, per adapter, so that a run times
/// only shapes no earlier run timed, and runs with the same seed choose the same
/// kernels: gemm-choices.json in $ELBO_CACHE_DIR, else $XDG_CACHE_HOME/elbo, else
/// ~/.cache/elbo. None where none of those is set.
pub fn choice_cache_file() -> Option<std::path::PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    var("ELBO_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").filter(|p| p.is_absolute()).map(|p| p.join("elbo")))
        .or_else(|| var("HOME").map(|p| p.join(".cache/elbo")))
        .map(|d| d.join("gemm-choices.json"))
}

/// Time every shape again and replace the file's choices for this adapter (`--retime`).
pub static RETIME: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Adapters whose cached choices this process has read (or found none of).
static LOADED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// What tells adapters apart in the cache: name (llvmpipe's holds its vector width),
/// backend, driver and its version, and the variants timed on it (another set, from
/// another build of elbo, is timed afresh).
pub fn adapter_key(gpu: &Gpu, k: &Kernels) -> String {
    let i = &gpu.info;
    let variants: Vec<&str> = timed(gpu, k).iter().map(|v| v.name()).collect();
    format!("{} | {:?} | {} {} | {}", i.name, i.backend, i.driver, i.driver_info, variants.join(","))
}

fn decision_json(d: &Decision) -> serde_json::Value {
    let (m, n, k) = d.shape;
    let timings: Vec<serde_json::Value> = d.timings.iter().map(|(v, us)| serde_json::json!([v.name(), us])).collect();
    serde_json::json!({"pass": d.pass.entry(), "m": m, "n": n, "k": k, "variant": d.variant.name(), "timings": timings})
}

/// The cache file's decisions for adapter `key`.
fn read_cached(path: &std::path::Path, key: &str) -> Result<Vec<Decision>> {
    use anyhow::Context;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let v: serde_json::Value = serde_json::from_str(&text).context("not JSON")?;
    let Some(list) = v.get("adapters").and_then(|a| a.get(key)) else { return Ok(Vec::new()) };
    let mut out = Choice::from_json(list)?.decisions;
    for (d, j) in out.iter_mut().zip(list.as_array().context("not a list")?) {
        for t in j["timings"].as_array().into_iter().flatten() {
            let v = Variant::ALL.into_iter().find(|v| t[0] == v.name()).context("unknown GEMM variant")?;
            d.timings.push((v, t[1].as_f64().context("a timing is not a number")?));
        }
    }
    Ok(out)
}

/// Writes adapter `key`'s decisions into the cache file (the other adapters' kept),
/// atomically.
fn write_cached(path: &std::path::Path, key: &str, decisions: &[&Decision]) -> Result<()> {
    let mut v: serde_json::Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|v: &serde_json::Value| v.get("adapters").is_some_and(|a| a.is_object()))
        .unwrap_or_else(|| serde_json::json!({"adapters": {}}));
    v["adapters"][key] = serde_json::Value::Array(decisions.iter().map(|d| decision_json(d)).collect());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::write_atomic(path, serde_json::to_string_pretty(&v)?.as_bytes())
}

/// Choices already timed in this process, per adapter: later trainers (evaluation,
/// tests, a second run) reuse them, so one process never mixes variants for a shape.
static CHOSEN: std::sync::Mutex<Vec<(ChoiceKey, Decision)>> = std::sync::Mutex::new(Vec::new());

/// Chooses a variant for each (pass, m, n, k) of `gemms`: forced by `pref`, or
/// the fastest of the adapter's variants timed at that shape.
pub fn choose(gpu: &Gpu, k: &Kernels, pref: GemmPreference, gemms: &[(Pass, usize, usize, usize)]) -> Result<Choice> {
    let avail = available(k);
    let forced = match pref {
        GemmPreference::Texel => Some(Variant::Texel),
        GemmPreference::Subgroup if !avail.contains(&Variant::Subgroup) => anyhow::bail!(
            "--gemm subgroup needs subgroups of exactly 8 or 16 lanes; adapter {} has {}..{} lanes{}. Use --gemm auto",
            gpu.info.name,
            gpu.info.subgroup_min_size,
            gpu.info.subgroup_max_size,
            if gpu.features.contains(wgpu::Features::SUBGROUP) { "" } else { " and no SUBGROUP feature" }
        ),
        GemmPreference::Subgroup => Some(Variant::Subgroup),
        GemmPreference::Wide => Some(Variant::Wide),
        GemmPreference::Tiled => Some(Variant::Tiled),
        GemmPreference::Auto => None,
    };
    let mut choice = Choice::default();
    let adapter = adapter_key(gpu, k);
    let file = if forced.is_none() { choice_cache_file() } else { None };
    // this machine's earlier choices for the adapter, once per process (not with --retime)
    if let Some(path) = &file {
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        if !loaded.contains(&adapter) {
            loaded.push(adapter.clone());
            if !RETIME.load(std::sync::atomic::Ordering::Relaxed) {
                match read_cached(path, &adapter) {
                    Ok(ds) => {
                        let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
                        for d in ds {
                            let key = (adapter.clone(), d.pass, d.shape);
                            if !chosen.iter().any(|(k, _)| *k == key) {
                                chosen.push((key, d));
                            }
                        }
                    }
                    Err(e) => eprintln!(
                        "warning: ignoring the GEMM choice cache {} ({e:#}); its choices are timed again and the file rewritten",
                        path.display()
                    ),
                }
            }
        }
        choice.cache = Some(path.clone());
    }
    if forced.is_none() {
        // the variants of every shape to time, compiled at once (in parallel on lavapipe,
        // where each shape is a compilation of its own: `warm`) before any is timed
        let chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
        let todo: Vec<_> = gemms
            .iter()
            .filter(|&&(pass, m, n, kk)| !chosen.iter().any(|(key, _)| *key == (adapter.clone(), pass, (m, n, kk))))
            .collect();
        drop(chosen);
        let mut cases = Vec::new();
        for &&(pass, m, n, kk) in &todo {
            for &v in &timed(gpu, k) {
                cases.push(timing_dispatch(gpu, k, pass, v, m, n, kk)?);
            }
        }
        super::warm::warm(gpu, &cases)?;
    }
    for &(pass, m, n, kk) in gemms {
        if choice.decisions.iter().any(|d| d.pass == pass && d.shape == (m, n, kk)) {
            continue;
        }
        let (variant, timings) = match forced {
            Some(v) => (v, Vec::new()),
            None => {
                let key = (adapter.clone(), pass, (m, n, kk));
                // the lock is held while timing, so concurrent trainers agree on every shape
                let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
                match chosen.iter().find(|(k, _)| *k == key).map(|(_, d)| d.clone()) {
                    Some(d) => (d.variant, d.timings),
                    None => {
                        // each variant's fastest of three runs: a burst of load on a
                        // shared machine slows some runs, and the median of three then
                        // flipped a few small layers' choices between runs
                        let timings: Vec<(Variant, f64)> = timed(gpu, k)
                            .iter()
                            .map(|&v| Ok((v, time_variant(gpu, k, pass, v, m, n, kk, 3)?[0])))
                            .collect::<Result<_>>()?;
                        // the portable texel kernel unless another is clearly faster, so that
                        // near-ties do not flip between runs
                        let texel = timings.iter().find(|t| t.0 == Variant::Texel).map_or(f64::INFINITY, |t| t.1);
                        let best = timings.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
                        let v = if best.1 < 0.9 * texel { best.0 } else { Variant::Texel };
                        let d = Decision { pass, shape: (m, n, kk), variant: v, timings: timings.clone() };
                        chosen.push((key, d));
                        choice.timed_now += 1;
                        if let Some(path) = &file {
                            let mine: Vec<&Decision> =
                                chosen.iter().filter(|(k, _)| k.0 == adapter).map(|(_, d)| d).collect();
                            if let Err(e) = write_cached(path, &adapter, &mine) {
                                eprintln!("warning: cannot write the GEMM choice cache {}: {e:#}", path.display());
                            }
                        }
                        (v, timings)
                    }
                }
            }
        };
        choice.decisions.push(Decision { pass, shape: (m, n, kk), variant, timings });
    }
    Ok(choice)
}
