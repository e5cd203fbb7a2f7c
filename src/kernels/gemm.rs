//! The GEMM kernels (gemm.wgsl, gemm_subgroup.wgsl): their uniform, their
//! variants and dispatch shapes, and the per-adapter choice between them, made
//! by timing each variant on the model's own shapes.

use super::timing::Profiler;
use super::{Bind, Dispatch, Kernels};
use crate::gpu::Gpu;
use anyhow::Result;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Gemm {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub act: u32,
    pub bias: u32,
    /// `grad_w`, `stride` and `grad_b` are multiples of 4 floats and the bias region is
    /// padded to 4: backward_weight stores whole texels (the model's layout aligns to 64).
    pub grad_w: u32,
    pub stride: u32,
    pub grad_b: u32,
}
/// Which GEMM kernels to use: measured (auto), or forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GemmPreference {
    /// Time every variant the adapter supports on the model's shapes and keep the fastest.
    Auto,
    /// gemm.wgsl: 4x4 output blocks from texel fetches; runs everywhere.
    Texel,
    /// gemm_subgroup.wgsl: operands shared by subgroupBroadcast; needs subgroups of 8 or 16 lanes.
    Subgroup,
    /// gemm.wgsl's `_wide` kernels: 16 lanes share each block's inner dimension; runs everywhere.
    Wide,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Texel,
    Subgroup,
    Wide,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Texel, Variant::Subgroup, Variant::Wide];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Texel => "texel",
            Variant::Subgroup => "subgroup",
            Variant::Wide => "wide",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Y (m, n) = act(X (m, k) W (n, k)^T + b)
    Forward,
    /// dX (m, k) = dY (m, n) W (n, k), masked
    BackwardInput,
    /// dW (n, k) = dY (m, n)^T X (m, k), db
    BackwardWeight,
}

impl Pass {
    pub const ALL: [Pass; 3] = [Pass::Forward, Pass::BackwardInput, Pass::BackwardWeight];

    pub fn entry(self) -> &'static str {
        match self {
            Pass::Forward => "gemm_forward",
            Pass::BackwardInput => "gemm_backward_input",
            Pass::BackwardWeight => "gemm_backward_weight",
        }
    }
}

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

/// The variants this device can run.
pub fn available(k: &Kernels) -> Vec<Variant> {
    let mut v = vec![Variant::Texel, Variant::Wide];
    if k.subgroup.is_some() {
        v.push(Variant::Subgroup);
    }
    v
}

/// gemm_adam_subgroup.wgsl's weight gradient with Adam in its epilogue (`super::GemmAdam`),
/// on gemm_backward_weight_subgroup's grid; `binds` as that file's, the moments (10, 11)
/// in `ga.moments`' storage.
pub fn dispatch_backward_weight_adam(
    gpu: &Gpu,
    ga: &super::GemmAdam,
    label: impl Into<std::borrow::Cow<'static, str>>,
    binds: &[(u32, Bind)],
    m: usize,
    n: usize,
    kk: usize,
) -> Dispatch {
    // at most 8 k-texels: the 8-lane build, where there is one beside a 16-lane one
    let (pipeline, lanes) = match &ga.pipeline8 {
        Some(p8) if kk.div_ceil(4) <= 8 => (p8, 8),
        _ => (&ga.pipeline, ga.lanes as usize),
    };
    Dispatch::with_groups(gpu, label, pipeline, binds, backward_weight_subgroup_groups(n, kk, lanes))
        .with_gemm_cost(n, kk, m)
}

/// gemm_backward_weight_subgroup's grid: `lanes` k-texels by 16 outputs per workgroup.
fn backward_weight_subgroup_groups(n: usize, kk: usize, lanes: usize) -> [u32; 3] {
    [kk.div_ceil(4).div_ceil(lanes).max(1) as u32, n.div_ceil(16).max(1) as u32, 1]
}

/// A GEMM dispatch of `pass` in `variant` for batch rows m (a multiple of 4), n outputs,
/// k inputs; `binds` follow gemm.wgsl's layout.
#[allow(clippy::too_many_arguments)]
pub fn dispatch(
    gpu: &Gpu,
    k: &Kernels,
    pass: Pass,
    variant: Variant,
    label: impl Into<std::borrow::Cow<'static, str>>,
    binds: &[(u32, Bind)],
    m: usize,
    n: usize,
    kk: usize,
) -> Dispatch {
    let g = |x: usize| x.max(1) as u32;
    let d = match (variant, &k.subgroup) {
        (Variant::Subgroup, Some(s)) => match pass {
            Pass::Forward => Dispatch::with_groups(
                gpu,
                label,
                &s.gemm_forward_subgroup,
                binds,
                [g(n.div_ceil(4 * s.lanes as usize)), g(m.div_ceil(32)), 1],
            ),
            Pass::BackwardInput => Dispatch::with_groups(
                gpu,
                label,
                &s.gemm_backward_input_subgroup,
                binds,
                [g(kk.div_ceil(4).div_ceil(s.lanes as usize)), g(m.div_ceil(32)), 1],
            ),
            Pass::BackwardWeight => Dispatch::with_groups(
                gpu,
                label,
                &s.gemm_backward_weight_subgroup,
                binds,
                backward_weight_subgroup_groups(n, kk, s.lanes as usize),
            ),
        },
        // four 4x4 blocks per workgroup of 64 (gemm.wgsl's SPLIT = 16 lanes per block)
        (Variant::Wide, _) => match pass {
            Pass::Forward => Dispatch::new(gpu, label, &k.gemm_forward_wide, binds, (m / 4) * n.div_ceil(4), 4),
            Pass::BackwardInput => {
                Dispatch::new(gpu, label, &k.gemm_backward_input_wide, binds, (m / 4) * kk.div_ceil(4), 4)
            }
            Pass::BackwardWeight => {
                Dispatch::new(gpu, label, &k.gemm_backward_weight_wide, binds, n.div_ceil(4) * kk.div_ceil(4), 4)
            }
        },
        _ => match pass {
            Pass::Forward => Dispatch::new(gpu, label, &k.gemm_forward, binds, (m / 4) * n.div_ceil(4), 64),
            Pass::BackwardInput => {
                Dispatch::new(gpu, label, &k.gemm_backward_input, binds, (m / 4) * kk.div_ceil(4), 64)
            }
            Pass::BackwardWeight => {
                Dispatch::new(gpu, label, &k.gemm_backward_weight, binds, n.div_ceil(4) * kk.div_ceil(4), 64)
            }
        },
    };
    match pass {
        Pass::Forward => d.with_gemm_cost(m, n, kk),
        Pass::BackwardInput => d.with_gemm_cost(m, kk, n),
        Pass::BackwardWeight => d.with_gemm_cost(n, kk, m),
    }
}

/// GEMM variants timed by this process so far (`time_variant` calls): forward-only
/// models must time none.
pub fn variants_timed() -> usize {
    TIMED.load(std::sync::atomic::Ordering::Relaxed)
}

static TIMED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
    use Bind::{Buffer as B, Texture as T};
    let binds: Vec<(u32, Bind)> = match pass {
        Pass::Forward => vec![(0, B(&u)), (1, T(&lhs.view)), (2, T(&rhs.view)), (4, T(&out.view)), (5, B(&flat))],
        // `out` (m, k) serves as the ReLU mask
        Pass::BackwardInput => {
            vec![(0, B(&u)), (1, T(&lhs.view)), (2, T(&rhs.view)), (3, T(&out.view)), (4, T(&dx.view))]
        }
        Pass::BackwardWeight => vec![(0, B(&u)), (1, T(&lhs.view)), (2, T(&rhs.view)), (6, B(&flat))],
    };
    let d = dispatch(gpu, k, pass, variant, pass.entry(), &binds, m, n, kk);
    let profiler = Profiler::new(gpu, 1);
    profiler.run(gpu, &[&d], None)?; // first run compiles the pipeline
    let mut t: Vec<f64> = (0..runs).map(|_| Ok(profiler.run(gpu, &[&d], None)?[0].dur_ns)).collect::<Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t.into_iter().map(|ns| ns / 1e3).collect())
}

type ChoiceKey = (String, Pass, (usize, usize, usize));

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
        GemmPreference::Auto => None,
    };
    let mut choice = Choice::default();
    for &(pass, m, n, kk) in gemms {
        if choice.decisions.iter().any(|d| d.pass == pass && d.shape == (m, n, kk)) {
            continue;
        }
        let (variant, timings) = match forced {
            Some(v) => (v, Vec::new()),
            None => {
                let key = (gpu.info.name.clone(), pass, (m, n, kk));
                // the lock is held while timing, so concurrent trainers agree on every shape
                let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
                match chosen.iter().find(|(k, _)| *k == key).map(|(_, d)| d.clone()) {
                    Some(d) => (d.variant, d.timings),
                    None => {
                        // each variant's fastest of three runs: a burst of load on a
                        // shared machine slows some runs, and the median of three then
                        // flipped a few small layers' choices between runs
                        let timings: Vec<(Variant, f64)> = avail
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
                        (v, timings)
                    }
                }
            }
        };
        choice.decisions.push(Decision { pass, shape: (m, n, kk), variant, timings });
    }
    Ok(choice)
}

/// gemm.wgsl's and gemm_subgroup.wgsl's binding slots.
pub mod gemm_slot {
    /// The `Gemm` uniform.
    pub const P: u32 = 0;
    /// The left operand: x in the forward pass, d out in the backward passes.
    pub const LHS: u32 = 1;
    /// The right operand: W in the forward and backward-input passes, x in backward-weight.
    pub const RHS: u32 = 2;
    /// The ReLU mask of backward-input (its layer's input).
    pub const MASK: u32 = 3;
    pub const OUT: u32 = 4;
    /// The flat parameters (the forward pass reads the bias there).
    pub const PARAMS: u32 = 5;
    /// The flat gradient (backward-weight writes dW and db there).
    pub const GRADS: u32 = 6;
    pub const ALL: &[(&str, u32)] =
        &[("p", P), ("lhs", LHS), ("rhs", RHS), ("mask", MASK), ("out", OUT), ("params", PARAMS), ("grads", GRADS)];
}

/// gemm_fused_subgroup.wgsl's slots beside `gemm_slot`'s.
pub mod gemm_fused_slot {
    pub const STEP: u32 = 7;
    /// z, drawn from the heads' output (gemm_forward_reparam).
    pub const Z_OUT: u32 = 8;
    /// The images the loss is taken against (gemm_forward_elbo).
    pub const TARGET_X: u32 = 9;
    /// Per row and column block, the recon partial sums (gemm_forward_elbo).
    pub const RECON_PARTIALS: u32 = 10;
    pub const ALL: &[(&str, u32)] =
        &[("step", STEP), ("z_out", Z_OUT), ("target_x", TARGET_X), ("recon_partials", RECON_PARTIALS)];
}

/// gemm_adam_subgroup.wgsl's slots beside `gemm_slot`'s P, LHS and RHS.
pub mod gemm_adam_slot {
    /// The `Adam` uniform.
    pub const ADAM: u32 = 7;
    pub const STEP: u32 = 8;
    pub const PARAMS_RW: u32 = 9;
    pub const MOMENT1: u32 = 10;
    pub const MOMENT2: u32 = 11;
    /// The layer's weight texture, updated in place.
    pub const WEIGHTS: u32 = 12;
    pub const ALL: &[(&str, u32)] = &[
        ("adam", ADAM),
        ("step", STEP),
        ("params_rw", PARAMS_RW),
        ("moment1", MOMENT1),
        ("moment2", MOMENT2),
        ("weights", WEIGHTS),
    ];
}
