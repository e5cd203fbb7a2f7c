//! Every WGSL entry point against its CPU reference (src/reference/), on
//! several shapes, including sizes that are not multiples of 4 or of the
//! workgroup size, and batches whose last rows are padding.

mod common;
use common::{assert_close, gpu, random, rows, ACTIVATIONS};
use elbo::gpu::Matrix;
use elbo::kernels::gemm::{self, GemmPreference, Pass, Variant};
use elbo::kernels::{self, Bind, Dispatch, Kernels, MomentStore, Step};
use elbo::model::{Arch, Likelihood, VaeConfig};
use elbo::reference as r;
use std::sync::OnceLock;

fn k() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| Kernels::new(gpu()).expect("kernels compile"))
}

fn step(rows: u32) -> Step {
    Step {
        seed: 5,
        counter: 3,
        rows,
        batch_start: 0,
        slot: 0,
        inv_rows: 1.0 / rows as f32,
        noise: 1.0,
        beta: 0.7,
        lr_t: 0.01,
        bc2_sqrt: 0.3,
        pad0: 0,
        pad1: 0,
    }
}

use Bind::{Buffer as B, Texture as T};

/// Set to 1 to let the tests of the subgroup kernels pass without running them on a CPU
/// adapter other than lavapipe that has none of them. Lavapipe, which CI uses, must always
/// have them.
const ALLOW_NO_SUBGROUPS: &str = "ELBO_ALLOW_NO_SUBGROUPS";

/// Whether a test of the subgroup kernels runs: Ok(true) where the adapter has them;
/// Ok(false) (skipped, saying so) on a GPU without them (its subgroups are not 8 or 16
/// lanes, e.g. NVIDIA's 32, so elbo never runs them there), or on another CPU adapter
/// where the user set ALLOW_NO_SUBGROUPS=1; otherwise the error to fail with: lavapipe
/// without them, or another CPU adapter (a software fallback) without permission.
fn subgroup_rule(
    has_kernels: bool,
    is_llvmpipe: bool,
    is_gpu: bool,
    allow: Option<&str>,
    adapter: &str,
) -> Result<bool, String> {
    match (has_kernels, is_llvmpipe, is_gpu, allow) {
        (true, _, _, _) => Ok(true),
        (false, true, _, _) => Err(format!("lavapipe ({adapter}) should have the subgroup GEMMs")),
        (false, false, true, _) => Ok(false),
        (false, false, false, Some("1")) => Ok(false),
        (false, false, false, _) => Err(format!(
            "{adapter} has no subgroup GEMMs (8 or 16 lanes), so this test cannot run what it names; set {ALLOW_NO_SUBGROUPS}=1 to pass it untested on this adapter"
        )),
    }
}

/// The subgroup GEMM kernels (gemm_subgroup.wgsl and its fusions), which lavapipe must
/// have. Elsewhere their absence skips the test that needs them only by `subgroup_rule`:
/// then None, and the test says it skipped.
fn subgroup_kernels(test: &str) -> Option<&'static kernels::SubgroupKernels> {
    let sub = k().subgroup.as_ref();
    let allow = std::env::var(ALLOW_NO_SUBGROUPS).ok();
    let is_gpu = gpu().info.device_type != wgpu::DeviceType::Cpu;
    match subgroup_rule(sub.is_some(), gpu().is_llvmpipe(), is_gpu, allow.as_deref(), &gpu().adapter_line()) {
        Ok(true) => sub,
        Ok(false) => {
            eprintln!("{test}: skipped on {} (no subgroup GEMMs: elbo does not run them here)", gpu().adapter_line());
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

#[test]
fn a_test_of_the_subgroup_kernels_skips_only_where_allowed_and_never_on_lavapipe() {
    let run = |has, lavapipe, is_gpu, allow| subgroup_rule(has, lavapipe, is_gpu, allow, "adapter X");
    assert_eq!(run(true, true, false, None), Ok(true));
    assert_eq!(run(true, false, false, Some("1")), Ok(true), "kernels present run even where a skip is allowed");
    for allow in [None, Some("1"), Some("0")] {
        let e = run(false, true, false, allow).expect_err("lavapipe without the subgroup GEMMs must fail");
        assert!(e.contains("lavapipe"), "{e}");
    }
    for allow in [None, Some("0"), Some("yes")] {
        let e = run(false, false, false, allow).expect_err("a CPU fallback without permission must fail");
        assert!(e.contains(ALLOW_NO_SUBGROUPS) && e.contains("adapter X"), "{e}");
    }
    assert_eq!(run(false, false, false, Some("1")), Ok(false));
    // a GPU of other subgroup widths never runs the kernels: skipped, saying so
    assert_eq!(run(false, false, true, None), Ok(false));
    // the adapter the tests run on: lavapipe (CI) must have the kernels
    if gpu().is_llvmpipe() {
        assert!(k().subgroup.is_some(), "lavapipe ({}) lacks the subgroup GEMMs", gpu().adapter_line());
    }
}

/// (m, n, k). The last two span several of the tiled kernels' 64x64 tiles in every
/// dimension of every pass, with partial tiles and inner dimensions that end inside a
/// staged step (32 values).
const GEMM_SHAPES: &[(usize, usize, usize)] = &[
    (4, 4, 4),
    (5, 7, 9),
    (13, 37, 61),
    (128, 40, 400),
    (64, 784, 20),
    (3, 2, 1),
    (40, 300, 12),
    (36, 9, 520),
    (200, 150, 130),
    (4, 300, 70),
];

/// Every GEMM variant this adapter runs. On lavapipe (subgroups of 8 or 16) that must
/// include the subgroup kernels, so CI cannot silently test only one variant.
fn variants() -> Vec<Variant> {
    let v = gemm::available(k());
    if gpu().is_llvmpipe() && matches!(gpu().info.subgroup_max_size, 8 | 16) {
        assert!(v.contains(&Variant::Subgroup), "lavapipe with 8- or 16-lane subgroups should run gemm_subgroup.wgsl");
    }
    v
}

fn each_gemm_case() -> Vec<((usize, usize, usize), Variant)> {
    GEMM_SHAPES.iter().flat_map(|&s| variants().into_iter().map(move |v| (s, v))).collect()
}

#[test]
fn gemm_forward_matches_reference() {
    let g = gpu();
    for ((m, n, kk), variant) in each_gemm_case() {
        for act in ACTIVATIONS {
            let x = random(m * kk, 1, -1.0, 1.0);
            let w = random(n * kk, 2, -1.0, 1.0);
            let b = random(n, 3, -1.0, 1.0);
            let (xm, wm, ym) =
                (g.matrix("x", m, kk).unwrap(), g.matrix("w", n, kk).unwrap(), common::output("y", m, n));
            g.write_matrix(&xm, &x);
            g.write_matrix(&wm, &w);
            let params = g.buffer_with("params", bytemuck::cast_slice(&b)).unwrap();
            let gp =
                kernels::Gemm { m: xm.rows as u32, n: n as u32, k: kk as u32, act: act.code(), ..Default::default() };
            let u = g.uniform("gemm", &gp);
            let binds = [(0, B(&u)), (1, T(&xm.view)), (2, T(&wm.view)), (4, T(&ym.view)), (5, B(&params))];
            let d = gemm::dispatch(g, k(), Pass::Forward, variant, "gemm_forward", &binds, xm.rows, n, kk);
            kernels::run(g, &[d]).unwrap();
            let got = rows(g.read_matrix(&ym).unwrap(), m, n);
            let want = r::gemm_forward(&x, &w, &b, m, n, kk, act);
            let what = format!("gemm_forward {} m={m} n={n} k={kk} act={}", variant.name(), act.name());
            assert_close(&what, &got, &want, 1e-4, 1e-4);
        }
    }
}

#[test]
fn gemm_forward_reparam_matches_reference() {
    // the heads' forward GEMM with reparam_forward in its epilogue: mulv and z as the two
    // references make them. gemm_forward_reparam_subgroup: 2L up to one workgroup's 4
    // lanes columns, rows past one 32-row block, padding rows and latent sizes that leave
    // part of z's last texel empty; gemm_forward_reparam_pairs_subgroup: L a multiple of 4,
    // in one workgroup, several, and a last one partly past L
    let g = gpu();
    let Some(sub) = subgroup_kernels("gemm_forward_reparam_matches_reference") else { return };
    let lanes = sub.lanes as usize;
    let most = 2 * lanes;
    let single = [(4, 1, 5, 3), (12, 3, 7, 12), (36, 8, 50, 33), (128, 16, 400, 128), (40, most, 33, 40)];
    let pairs =
        [(8, 4, 9, 8), (36, 12, 50, 33), (128, most + 4, 400, 128), (40, 2 * most, 33, 40), (12, 3 * most + 8, 7, 12)];
    let cases = single.iter().map(|&c| (c, false)).chain(pairs.iter().map(|&c| (c, true)));
    for ((m, lat, kk, live), wide) in cases {
        let x = random(m * kk, 31, -1.0, 1.0);
        let w = random(2 * lat * kk, 32, -0.3, 0.3);
        let mut flat = random(8 + 2 * lat, 33, -1.0, 1.0);
        let b = flat[8..].to_vec();
        flat.truncate(8 + 2 * lat);
        let (xm, wm) = (g.matrix("x", m, kk).unwrap(), g.matrix("w", 2 * lat, kk).unwrap());
        let (mv, zm) = (common::output("mulv", m, 2 * lat), common::output("z", m, lat));
        g.write_matrix(&xm, &x);
        g.write_matrix(&wm, &w);
        let params = g.buffer_with("params", bytemuck::cast_slice(&flat)).unwrap();
        let gp = kernels::Gemm { m: xm.rows as u32, n: 2 * lat as u32, k: kk as u32, bias: 8, ..Default::default() };
        let u = g.uniform("gemm", &gp);
        let st = step(live);
        let su = g.uniform("step", &st);
        let binds = [
            (0, B(&u)),
            (1, T(&xm.view)),
            (2, T(&wm.view)),
            (4, T(&mv.view)),
            (5, B(&params)),
            (7, B(&su)),
            (8, T(&zm.view)),
        ];
        let (entry, pipeline, cols) = if wide {
            ("gemm_forward_reparam_pairs_subgroup", &sub.gemm_forward_reparam_pairs_subgroup, lat.div_ceil(2 * lanes))
        } else {
            ("gemm_forward_reparam_subgroup", &sub.gemm_forward_reparam_subgroup, 1)
        };
        let d =
            kernels::Dispatch::with_groups(g, entry, pipeline, &binds, [cols as u32, xm.rows.div_ceil(32) as u32, 1]);
        kernels::run(g, &[d]).unwrap();
        let (want_mulv, want_z) = r::gemm_forward_reparam(&x, &w, &b, m, lat, kk, &st);
        let what = format!("{entry} ({lanes} lanes) m={m} L={lat} k={kk}");
        assert_close(&format!("{what} mulv"), &rows(g.read_matrix(&mv).unwrap(), m, 2 * lat), &want_mulv, 1e-4, 1e-4);
        assert_close(&format!("{what} z"), &rows(g.read_matrix(&zm).unwrap(), m, lat), &want_z, 1e-4, 1e-4);
        // z's padding columns hold zeros, as reparam_forward leaves them
        let cols = lat.next_multiple_of(4);
        let whole = Matrix { texture: zm.texture.clone(), view: zm.view.clone(), rows: zm.rows, cols };
        let full = g.read_matrix(&whole).unwrap();
        let pad: Vec<f32> = (0..m).flat_map(|r| full[r * cols + lat..(r + 1) * cols].to_vec()).collect();
        assert_close(&format!("{what} z padding"), &pad, &vec![0.0; pad.len()], 0.0, 0.0);
    }
}

#[test]
fn gemm_forward_elbo_matches_reference() {
    // the decoder's last GEMM with the Bernoulli loss in its epilogue: d out and the recon
    // partial sums (one per 4 lanes columns and row) as the references make them, into
    // NaN-filled outputs; columns past one block and within a texel, rows past one
    // 32-row block, and padding rows (zero gradient and partials)
    let g = gpu();
    let Some(sub) = subgroup_kernels("gemm_forward_elbo_matches_reference") else { return };
    let block = 4 * sub.lanes as usize;
    for (m, n, kk, live) in [(4, 5, 3, 3), (36, 70, 33, 33), (40, 2 * block + 3, 20, 40), (128, 784, 400, 100)] {
        let h = random(m * kk, 41, -1.0, 1.0);
        let w = random(n * kk, 42, -0.5, 0.5);
        let flat = random(8 + n, 43, -1.0, 1.0);
        let b = flat[8..].to_vec();
        // binary and grey targets
        let target: Vec<f32> = random(m * n, 44, 0.0, 1.0)
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % 3 == 0 { v } else { v.round() })
            .collect();
        let (hm, wm, xm) = (g.matrix("h", m, kk).unwrap(), g.matrix("w", n, kk).unwrap(), g.matrix("x", m, n).unwrap());
        g.write_matrix(&hm, &h);
        g.write_matrix(&wm, &w);
        g.write_matrix(&xm, &target);
        let dm = common::output("d out", m, n);
        let params = g.buffer_with("params", bytemuck::cast_slice(&flat)).unwrap();
        let blocks = kernels::elbo_gemm_blocks(n, sub.lanes);
        let mrows = hm.rows;
        let partials = g.buffer_with("partials", bytemuck::cast_slice(&vec![f32::NAN; blocks * mrows])).unwrap();
        let gp = kernels::Gemm { m: mrows as u32, n: n as u32, k: kk as u32, bias: 8, ..Default::default() };
        let u = g.uniform("gemm", &gp);
        let st = step(live);
        let su = g.uniform("step", &st);
        let binds = [
            (0, B(&u)),
            (1, T(&hm.view)),
            (2, T(&wm.view)),
            (4, T(&dm.view)),
            (5, B(&params)),
            (7, B(&su)),
            (9, T(&xm.view)),
            (10, B(&partials)),
        ];
        let groups = [blocks as u32, mrows.div_ceil(32) as u32, 1];
        let d = Dispatch::with_groups(g, "gemm_forward_elbo_subgroup", &sub.gemm_forward_elbo_subgroup, &binds, groups);
        kernels::run(g, &[d]).unwrap();
        let mut tpad = target.clone();
        tpad.resize(mrows * n, 0.0);
        let mut hpad = h.clone();
        hpad.resize(mrows * kk, 0.0);
        let (want_d, want_p) = r::gemm_forward_elbo(&hpad, &w, &b, &tpad, mrows, n, kk, block, &st);
        let what = format!("gemm_forward_elbo_subgroup ({} lanes) m={m} n={n} k={kk} rows={live}", sub.lanes);
        assert_close(&format!("{what} d out"), &rows(g.read_matrix(&dm).unwrap(), m, n), &want_d[..m * n], 1e-6, 1e-4);
        assert_close(
            &format!("{what} recon partials"),
            &g.read_f32(&partials, 0, blocks * mrows).unwrap(),
            &want_p,
            1e-4,
            1e-5,
        );
    }
}

#[test]
fn reparam_backward_reduce_partials_matches_reference() {
    // the training step's reduce after gemm_forward_elbo_subgroup: the history slot (recon
    // from the partial sums, KL from mu and logvar), the free-bits mask and d[mu | logvar],
    // into NaN-filled outputs; more latent dimensions than invocations, padding rows
    let g = gpu();
    for (m, lat, live, blocks, free_bits) in
        [(4, 1, 3, 1, 0.0), (12, 3, 12, 2, 0.3), (128, 20, 128, 13, 0.0), (40, 70, 37, 4, 0.05), (128, 16, 100, 7, 0.3)]
    {
        // odd dimensions far from the prior, even ones close to it: free bits masks some
        let mulv: Vec<f32> = random(m * 2 * lat, 51, -1.0, 1.0)
            .iter()
            .enumerate()
            .map(|(i, &v)| if (i % (2 * lat)) % lat % 2 == 1 { 3.0 * v } else { 0.3 * v })
            .collect();
        let dz = random(m * lat, 52, -1.0, 1.0);
        let parts = random(blocks * m, 53, 0.0, 40.0);
        let (mv, dzm) = (g.matrix("mulv", m, 2 * lat).unwrap(), g.matrix("dz", m, lat).unwrap());
        g.write_matrix(&mv, &mulv);
        g.write_matrix(&dzm, &dz);
        let dmv = common::output("dmulv", m, 2 * lat);
        let history = g.buffer_with("history", bytemuck::cast_slice(&[f32::NAN; 16])).unwrap();
        let maskb = g.buffer_with("kl_mask", bytemuck::cast_slice(&vec![f32::NAN; lat])).unwrap();
        let pb = g.buffer_with("partials", bytemuck::cast_slice(&parts)).unwrap();
        let ru = g.uniform("reparam", &kernels::Reparam::new(m, lat, free_bits).with_partials(blocks));
        let mut st = step(live as u32);
        st.slot = 2;
        let su = g.uniform("step", &st);
        let binds = [
            (0, B(&ru)),
            (1, B(&su)),
            (2, T(&mv.view)),
            (3, T(&dzm.view)),
            (4, T(&dmv.view)),
            (5, B(&maskb)),
            (7, B(&history)),
            (8, B(&pb)),
        ];
        let d =
            Dispatch::new(g, "reparam_backward_reduce_partials", &k().reparam_backward_reduce_partials, &binds, 64, 64);
        kernels::run(g, &[d]).unwrap();
        let (want_slot, want_mask, want_d) =
            r::reparam_backward_reduce_partials(&parts, blocks, &mulv, &dz, m, lat, free_bits, &st);
        let what =
            format!("reparam_backward_reduce_partials m={m} L={lat} rows={live} blocks={blocks} free_bits={free_bits}");
        assert_close(&format!("{what} history"), &g.read_f32(&history, 8, 4).unwrap(), &want_slot, 1e-2, 1e-5);
        assert_close(&format!("{what} kl_mask"), &g.read_f32(&maskb, 0, lat).unwrap(), &want_mask, 0.0, 0.0);
        if free_bits > 0.0 && lat > 1 {
            assert!(
                want_mask.contains(&0.0) && want_mask.contains(&1.0),
                "{what}: the case should test both sides of the floor: {want_mask:?}"
            );
        }
        assert_close(&format!("{what} d mulv"), &rows(g.read_matrix(&dmv).unwrap(), m, 2 * lat), &want_d, 1e-5, 1e-4);
    }
}

#[test]
fn gemm_backward_input_matches_reference() {
    let g = gpu();
    for ((m, n, kk), variant) in each_gemm_case() {
        for act in ACTIVATIONS {
            let dy = random(m * n, 4, -1.0, 1.0);
            let w = random(n * kk, 5, -1.0, 1.0);
            // the layer's input: an output of the activation whose derivative is taken
            let x = r::activation_forward(&random(m * kk, 6, -2.0, 2.0), act);
            let (dym, wm) = (g.matrix("dy", m, n).unwrap(), g.matrix("w", n, kk).unwrap());
            let (xm, dxm) = (g.matrix("x", m, kk).unwrap(), common::output("dx", m, kk));
            g.write_matrix(&dym, &dy);
            g.write_matrix(&wm, &w);
            g.write_matrix(&xm, &x);
            let gp =
                kernels::Gemm { m: dym.rows as u32, n: n as u32, k: kk as u32, act: act.code(), ..Default::default() };
            let u = g.uniform("gemm", &gp);
            let binds = [(0, B(&u)), (1, T(&dym.view)), (2, T(&wm.view)), (3, T(&xm.view)), (4, T(&dxm.view))];
            let d =
                gemm::dispatch(g, k(), Pass::BackwardInput, variant, "gemm_backward_input", &binds, dym.rows, n, kk);
            kernels::run(g, &[d]).unwrap();
            let got = rows(g.read_matrix(&dxm).unwrap(), m, kk);
            let want = r::gemm_backward_input(&dy, &w, Some((&x[..], act)), m, n, kk);
            let what = format!("gemm_backward_input {} m={m} n={n} k={kk} act={}", variant.name(), act.name());
            assert_close(&what, &got, &want, 1e-4, 1e-4);
        }
    }
}

/// A weight gradient's uniform for a layer laid out as the model lays out its flat
/// buffers: W at 0 in rows of `stride` floats, then b; offsets, row strides and the
/// bias region in multiples of 64 floats (the kernels store whole texels). Returns
/// (uniform, stride, offset of b).
fn weight_layout(rows: usize, n: usize, kk: usize) -> (kernels::Gemm, usize, usize) {
    let stride = kk.next_multiple_of(64);
    let bias_at = n.next_multiple_of(4) * stride;
    let gp = kernels::Gemm {
        m: rows as u32,
        n: n as u32,
        k: kk as u32,
        act: 0,
        bias: 0,
        grad_w: 0,
        stride: stride as u32,
        grad_b: bias_at as u32,
    };
    (gp, stride, bias_at)
}

/// A flat vector as an Adam moment texture: rows of `ADAM_TEXEL_COLS` floats, the tail zero.
fn moment_texture(v: &[f32]) -> Matrix {
    let cols = elbo::kernels::ADAM_TEXEL_COLS;
    let mt = gpu().matrix("moment", v.len().div_ceil(cols), cols).unwrap();
    gpu().write_matrix_flat(&mt, v);
    mt
}

#[test]
fn gemm_backward_weight_matches_reference() {
    let g = gpu();
    for ((m, n, kk), variant) in each_gemm_case() {
        let dy = random(m * n, 7, -1.0, 1.0);
        let x = random(m * kk, 8, -1.0, 1.0);
        let (dym, xm) = (g.matrix("dy", m, n).unwrap(), g.matrix("x", m, kk).unwrap());
        g.write_matrix(&dym, &dy);
        g.write_matrix(&xm, &x);
        let (gp, stride, bias_at) = weight_layout(dym.rows, n, kk);
        let grads =
            g.buffer("grads", ((bias_at + n.next_multiple_of(64)) * 4) as u64, wgpu::BufferUsages::empty()).unwrap();
        let u = g.uniform("gemm", &gp);
        let binds = [(0, B(&u)), (1, T(&dym.view)), (2, T(&xm.view)), (6, B(&grads))];
        let d = gemm::dispatch(g, k(), Pass::BackwardWeight, variant, "gemm_backward_weight", &binds, dym.rows, n, kk);
        kernels::run(g, &[d]).unwrap();
        let flat = g.read_f32(&grads, 0, bias_at + n).unwrap();
        let got_w: Vec<f32> = (0..n).flat_map(|j| flat[j * stride..j * stride + kk].to_vec()).collect();
        let (want_w, want_b) = r::gemm_backward_weight(&dy, &x, m, n, kk);
        let what = format!("gemm_backward_weight {} m={m} n={n} k={kk}", variant.name());
        assert_close(&format!("{what} dW"), &got_w, &want_w, 1e-4, 1e-4);
        assert_close(&format!("{what} db"), &flat[bias_at..bias_at + n], &want_b, 1e-4, 1e-4);
        // nothing written outside dW's rows and columns: the padding stays zero
        let pad: f32 = (0..n.next_multiple_of(4))
            .flat_map(|j| flat[j * stride + kk..(j + 1) * stride].to_vec())
            .map(f32::abs)
            .sum();
        assert_eq!(pad, 0.0, "{what} wrote into the row padding");
    }
}

#[test]
fn gemm_backward_weight_adam_matches_reference() {
    let g = gpu();
    let Some(lanes) = k().gemm_adam.as_ref().map(|ga| ga.lanes) else {
        assert!(g.info.device_type != wgpu::DeviceType::Cpu, "no gemm_backward_weight_adam_subgroup on a CPU adapter");
        return;
    };
    let st = step(3);
    let (b1, b2, eps) = (0.9, 0.999, 1e-8);
    // both storages of the moments, whichever this adapter's training uses
    let builds = [MomentStore::Texels, MomentStore::Buffers].map(|s| kernels::GemmAdam::new(g, lanes, s).unwrap());
    for (ga, &(m, n, kk)) in builds.iter().flat_map(|ga| GEMM_SHAPES.iter().map(move |shape| (ga, shape))) {
        let dy = random(m * n, 7, -1.0, 1.0);
        let x = random(m * kk, 8, -1.0, 1.0);
        let (dym, xm) = (g.matrix("dy", m, n).unwrap(), g.matrix("x", m, kk).unwrap());
        g.write_matrix(&dym, &dy);
        g.write_matrix(&xm, &x);
        let (gp, stride, bias_at) = weight_layout(dym.rows, n, kk);
        let len = bias_at + n.next_multiple_of(64);
        // random where the layer has parameters; zero in the padding, as the model keeps it
        let live = |i: usize| if i >= bias_at { i - bias_at < n } else { i / stride < n && i % stride < kk };
        let laid_out = |v: Vec<f32>| -> Vec<f32> {
            v.into_iter().enumerate().map(|(i, x)| if live(i) { x } else { 0.0 }).collect()
        };
        let params = laid_out(random(len, 9, -1.0, 1.0));
        let moments = [laid_out(random(len, 10, -0.01, 0.01)), laid_out(random(len, 11, 0.0, 0.001))];
        let tex: Vec<Matrix> = moments.iter().map(|v| moment_texture(v)).collect();
        let bufs: Vec<wgpu::Buffer> =
            moments.iter().map(|v| g.buffer_with("moment", bytemuck::cast_slice(v)).unwrap()).collect();
        let mb = |i: usize| match ga.moments {
            MomentStore::Texels => T(&tex[i].view),
            MomentStore::Buffers => B(&bufs[i]),
        };
        let pb = g.buffer_with("params", bytemuck::cast_slice(&params)).unwrap();
        // W lives in its texture, updated there; the flat copy of it must stay as it was
        let rows = |v: &[f32]| -> Vec<f32> { (0..n).flat_map(|j| v[j * stride..j * stride + kk].to_vec()).collect() };
        let wm = g.matrix("w", n, kk).unwrap();
        g.write_matrix(&wm, &rows(&params));
        let u = g.uniform("gemm", &gp);
        let au = g.uniform("adam", &kernels::Adam { count: (len / 4) as u32, beta1: b1, beta2: b2, eps });
        let su = g.uniform("step", &st);
        let binds = [
            (0, B(&u)),
            (1, T(&dym.view)),
            (2, T(&xm.view)),
            (7, B(&au)),
            (8, B(&su)),
            (9, B(&pb)),
            (10, mb(0)),
            (11, mb(1)),
            (12, T(&wm.view)),
        ];
        let d = gemm::dispatch_backward_weight_adam(g, ga, "gemm_backward_weight_adam", &binds, dym.rows, n, kk);
        kernels::run(g, &[d]).unwrap();
        // the reference on W and b taken out of the flat layout, then put back
        let (mut w, mut b) = (rows(&params), params[bias_at..bias_at + n].to_vec());
        let (mut mw, mut vw) = (rows(&moments[0]), rows(&moments[1]));
        let (mut mb, mut vb) = (moments[0][bias_at..bias_at + n].to_vec(), moments[1][bias_at..bias_at + n].to_vec());
        r::gemm_backward_weight_adam(
            &dy,
            &x,
            m,
            n,
            kk,
            (&mut w, &mut b),
            (&mut mw, &mut vw),
            (&mut mb, &mut vb),
            (b1, b2, eps),
            &st,
        );
        let mut want = [params.clone(), moments[0].clone(), moments[1].clone()];
        for (i, (flat, (wv, bv))) in want.iter_mut().zip([(&w, &b), (&mw, &mb), (&vw, &vb)]).enumerate() {
            // the weights themselves are checked in their texture
            if i > 0 {
                for j in 0..n {
                    flat[j * stride..j * stride + kk].copy_from_slice(&wv[j * kk..(j + 1) * kk]);
                }
            }
            flat[bias_at..bias_at + n].copy_from_slice(bv);
        }
        let what = format!("gemm_backward_weight_adam ({:?} moments) m={m} n={n} k={kk}", ga.moments);
        // every float of the layout: updated ones as the reference, the rest untouched
        assert_close(&format!("{what} params"), &g.read_f32(&pb, 0, len).unwrap(), &want[0], 1e-6, 1e-5);
        let got_w = g.read_matrix(&wm).unwrap()[..n * kk].to_vec();
        assert_close(&format!("{what} W in its texture"), &got_w, &w, 1e-6, 1e-5);
        for i in 0..2 {
            let got = match ga.moments {
                MomentStore::Texels => g.read_matrix(&tex[i]).unwrap()[..len].to_vec(),
                MomentStore::Buffers => g.read_f32(&bufs[i], 0, len).unwrap(),
            };
            assert_close(&format!("{what} moment{}", i + 1), &got, &want[i + 1], 1e-6, 1e-5);
        }
    }
}

#[test]
fn gemm_choice_picks_an_available_variant_for_every_layer() {
    let g = gpu();
    let gemms = [(Pass::Forward, 64, 100, 30), (Pass::BackwardInput, 64, 100, 30), (Pass::BackwardWeight, 64, 100, 30)];
    let auto = gemm::choose(g, k(), GemmPreference::Auto, &gemms).unwrap();
    assert_eq!(auto.decisions.len(), 3);
    // every variant but the tiled and the wide ones on a CPU adapter, where they never win
    let timed = gemm::timed(g, k());
    let cpu = g.info.device_type == wgpu::DeviceType::Cpu;
    assert_eq!(timed.len(), variants().len() - 2 * cpu as usize);
    for d in &auto.decisions {
        assert!(timed.contains(&d.variant));
        if timed.len() > 1 {
            let names: Vec<Variant> = d.timings.iter().map(|t| t.0).collect();
            assert_eq!(names, timed, "{}", auto.describe());
            // the fastest, unless it beats the texel kernel by less than 10%
            let best = d.timings.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
            let texel = d.timings.iter().find(|t| t.0 == Variant::Texel).unwrap().1;
            let want = if best.1 < 0.9 * texel { best.0 } else { Variant::Texel };
            assert_eq!(want, d.variant, "{}", auto.describe());
        }
    }
    let texel = gemm::choose(g, k(), GemmPreference::Texel, &gemms).unwrap();
    assert!(texel.decisions.iter().all(|d| d.variant == Variant::Texel && d.timings.is_empty()));
    let forced = gemm::choose(g, k(), GemmPreference::Subgroup, &gemms);
    assert_eq!(forced.is_ok(), variants().contains(&Variant::Subgroup));
    let tiled = gemm::choose(g, k(), GemmPreference::Tiled, &gemms).unwrap();
    assert!(tiled.decisions.iter().all(|d| d.variant == Variant::Tiled && d.timings.is_empty()));
}

fn elementwise(
    pipeline: &elbo::kernels::Kernel,
    label: &'static str,
    src: &[f32],
    grad: Option<&[f32]>,
    m: usize,
    cols: usize,
) -> Vec<f32> {
    let g = gpu();
    let (sm, gm, om) =
        (g.matrix("src", m, cols).unwrap(), g.matrix("grad", m, cols).unwrap(), common::output("out", m, cols));
    g.write_matrix(&sm, src);
    let u = g.uniform("elementwise", &kernels::Elementwise { m: sm.rows as u32, cols: cols as u32, pad: [0; 2] });
    let mut binds = vec![(0, B(&u)), (1, T(&sm.view)), (3, T(&om.view))];
    if let Some(gr) = grad {
        g.write_matrix(&gm, gr);
        binds.push((2, T(&gm.view)));
    }
    let d = Dispatch::new(g, label, pipeline, &binds, (sm.rows / 4) * 4 * cols.div_ceil(4), 64);
    kernels::run(g, &[d]).unwrap();
    rows(g.read_matrix(&om).unwrap(), m, cols)
}

#[test]
fn activations_match_reference() {
    for (m, cols) in [(4, 4), (7, 13), (130, 785)] {
        let x = random(m * cols, 9, -4.0, 4.0);
        let dy = random(m * cols, 10, -1.0, 1.0);
        let what = |op: &str| format!("{op} m={m} cols={cols}");
        assert_close(
            &what("relu_forward"),
            &elementwise(&k().relu_forward, "relu_forward", &x, None, m, cols),
            &r::relu_forward(&x),
            0.0,
            0.0,
        );
        assert_close(
            &what("relu_backward"),
            &elementwise(&k().relu_backward, "relu_backward", &x, Some(&dy), m, cols),
            &r::relu_backward(&x, &dy),
            0.0,
            0.0,
        );
        assert_close(
            &what("sigmoid_forward"),
            &elementwise(&k().sigmoid_forward, "sigmoid_forward", &x, None, m, cols),
            &r::sigmoid_forward(&x),
            1e-6,
            1e-5,
        );
        let y = r::sigmoid_forward(&x);
        assert_close(
            &what("sigmoid_backward"),
            &elementwise(&k().sigmoid_backward, "sigmoid_backward", &y, Some(&dy), m, cols),
            &r::sigmoid_backward(&y, &dy),
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn reparam_matches_reference() {
    let g = gpu();
    for (m, lat, live) in [(4, 4, 4), (9, 3, 7), (128, 20, 128), (70, 2, 65)] {
        let mulv = random(m * 2 * lat, 11, -2.0, 2.0);
        let dz = random(m * lat, 12, -1.0, 1.0);
        let st = step(live);
        // free bits switch some dimensions' KL gradient off
        let kl_mask: Vec<f32> = (0..lat).map(|j| (j % 3 != 1) as u32 as f32).collect();
        let maskb = g.buffer_with("kl_mask", bytemuck::cast_slice(&kl_mask)).unwrap();
        let (mv, dzm, zm, dmv) = (
            g.matrix("mulv", m, 2 * lat).unwrap(),
            g.matrix("dz", m, lat).unwrap(),
            common::output("z", m, lat),
            common::output("dmulv", m, 2 * lat),
        );
        g.write_matrix(&mv, &mulv);
        g.write_matrix(&dzm, &dz);
        let su = g.uniform("step", &st);
        let u = g.uniform("reparam", &kernels::Reparam::new(mv.rows, lat, 0.0));
        let f = Dispatch::new(
            g,
            "reparam_forward",
            &k().reparam_forward,
            &[(0, B(&u)), (1, B(&su)), (2, T(&mv.view)), (4, T(&zm.view))],
            (mv.rows) * lat.div_ceil(4),
            64,
        );
        let b = Dispatch::new(
            g,
            "reparam_backward",
            &k().reparam_backward,
            &[(0, B(&u)), (1, B(&su)), (2, T(&mv.view)), (3, T(&dzm.view)), (4, T(&dmv.view)), (5, B(&maskb))],
            mv.rows * (2 * lat).div_ceil(4),
            64,
        );
        kernels::run(g, &[f, b]).unwrap();
        let z = rows(g.read_matrix(&zm).unwrap(), m, lat);
        assert_close(
            &format!("reparam_forward m={m} L={lat}"),
            &z,
            &r::reparam_forward(&mulv, m, lat, &st),
            1e-5,
            1e-4,
        );
        let d = rows(g.read_matrix(&dmv).unwrap(), m, 2 * lat);
        assert_close(
            &format!("reparam_backward m={m} L={lat} rows={live}"),
            &d,
            &r::reparam_backward(&mulv, &dz, &kl_mask, m, lat, &st),
            1e-5,
            1e-4,
        );
    }
}

/// The loss layouts of every model: (config, rows, live rows).
fn loss_cases() -> Vec<(VaeConfig, usize, u32)> {
    let mut cases = Vec::new();
    for (arch, w, h, c, lat, m, live) in [
        (Arch::Mlp, 2, 2, 1, 1, 4, 4),
        (Arch::Mlp, 7, 4, 1, 3, 12, 10),
        (Arch::Mlp, 28, 28, 1, 20, 128, 128),
        (Arch::Mlp, 5, 4, 3, 5, 67, 66),
        // 15 values: the last texel is part padding
        (Arch::Mlp, 5, 3, 1, 2, 8, 6),
        (Arch::Conv, 8, 4, 1, 2, 9, 7),
        (Arch::Conv, 4, 8, 3, 3, 16, 16),
        // more rows times latent dimensions than llvmpipe's 65535 loop turns an invocation
        (Arch::Mlp, 2, 2, 1, 20, 4000, 3990),
    ] {
        for likelihood in [Likelihood::Bernoulli, Likelihood::Gaussian] {
            let mut cfg = VaeConfig::mlp(w, h, 8, lat);
            cfg.arch = arch;
            cfg.channels = c;
            cfg.likelihood = likelihood;
            cfg.conv_channels = vec![4, 8];
            cases.push((cfg, m, live));
        }
    }
    cases
}

#[test]
fn elbo_and_loss_reduce_match_reference() {
    let g = gpu();
    for (cfg, m, live) in loss_cases() {
        let lay = cfg.loss_layout();
        let lat = cfg.latent;
        let x_cols = cfg.input_shape().cols();
        // Gaussian log-variances near the bounds of their tanh map lose precision on GPUs' tanh
        let span = if lay.gaussian { 2.5 } else { 6.0 };
        let out = random(m * lay.o_cols, 13, -span, span);
        let x: Vec<f32> = random(m * x_cols, 14, 0.0, 1.0);
        let mulv = random(m * 2 * lat, 15, -2.0, 2.0);
        // some values unobserved (restoration's likelihood)
        let observed: Vec<f32> =
            (0..m * x_cols).map(|i| !elbo::rng::hash_u32(i as u32).is_multiple_of(3) as u32 as f32).collect();
        // restoration's likelihoods: the observed values clean, under Gaussian noise, flipped
        use kernels::Observation::{Clean, Flip, Gaussian};
        let cases = [
            (0.0f32, false, Clean),
            (0.8, false, Clean),
            (0.0, true, Clean),
            (0.0, true, Gaussian(0.3)),
            (0.0, true, Flip(0.2)),
        ];
        // both variants: one invocation per row, and one workgroup per row (_wide)
        for (free_bits, masked, noise, wide) in
            cases.into_iter().flat_map(|(f, m, o)| [(f, m, o, false), (f, m, o, true)])
        {
            let st = step(live);
            let (om, xm, mv, dm) = (
                g.matrix("out", m, lay.o_cols).unwrap(),
                g.matrix("x", m, x_cols).unwrap(),
                g.matrix("mulv", m, 2 * lat).unwrap(),
                common::output("d_out", m, lay.o_cols),
            );
            g.write_matrix(&om, &out);
            g.write_matrix(&xm, &x);
            g.write_matrix(&mv, &mulv);
            let su = g.uniform("step", &Step { slot: 2, ..st });
            let image_loss = g.buffer("image_loss", (om.rows * 8) as u64, wgpu::BufferUsages::empty()).unwrap();
            let history = g.buffer("history", 4 * 16, wgpu::BufferUsages::empty()).unwrap();
            let maskb = g.buffer("kl_mask", (lat * 4) as u64, wgpu::BufferUsages::empty()).unwrap();
            let u = g.uniform("elbo", &kernels::Elbo::new(om.rows, lat, &lay, masked).observing(noise));
            let ru = g.uniform("reduce", &kernels::Reparam::new(om.rows, lat, free_bits));
            let obs = g.matrix("observed", m, x_cols).unwrap();
            g.write_matrix(&obs, &observed);
            let binds = [
                (0, B(&u)),
                (1, B(&su)),
                (2, T(&om.view)),
                (3, T(&xm.view)),
                (4, T(&mv.view)),
                (5, T(&dm.view)),
                (6, B(&image_loss)),
                (7, T(&obs.view)),
            ];
            let e = kernels::elbo_dispatch(g, k(), wide, &binds, om.rows);
            let binds =
                [(0, B(&ru)), (1, B(&su)), (2, T(&mv.view)), (5, B(&maskb)), (6, B(&image_loss)), (7, B(&history))];
            let red = Dispatch::new(g, "loss_reduce", &k().loss_reduce, &binds, 1, 1);
            kernels::run(g, &[e, red]).unwrap();
            let (want_d, want_l) = r::elbo_forward_backward_noisy(
                &out,
                &x,
                &mulv,
                masked.then_some(&observed[..]),
                noise,
                m,
                &lay,
                lat,
                &st,
            );
            let what = format!(
                "{:?} {:?} {}x{}x{} m={m} L={lat} rows={live} free_bits={free_bits} masked={masked} {noise:?} wide={wide}",
                cfg.arch, cfg.likelihood, cfg.width, cfg.height, cfg.channels
            );
            assert_close(
                &format!("elbo d_out {what}"),
                &rows(g.read_matrix(&dm).unwrap(), m, lay.o_cols),
                &want_d,
                1e-6,
                1e-4,
            );
            let got_l = g.read_f32(&image_loss, 0, 2 * m).unwrap();
            let want_flat: Vec<f32> = want_l.iter().flatten().copied().collect();
            assert_close(&format!("elbo image_loss {what}"), &got_l, &want_flat, 1e-3, 1e-5);
            let (want_slot, want_mask) = r::loss_reduce(&want_l, &mulv, lat, free_bits, &st);
            assert_close(&format!("loss_reduce {what}"), &g.read_f32(&history, 8, 4).unwrap(), &want_slot, 1e-2, 1e-5);
            assert_close(
                &format!("loss_reduce kl_mask {what}"),
                &g.read_f32(&maskb, 0, lat).unwrap(),
                &want_mask,
                0.0,
                0.0,
            );
            if free_bits > 0.0 && lat > 2 {
                assert!(want_mask.contains(&0.0) || want_mask.iter().all(|&v| v == 1.0));
            }
            if wide {
                continue;
            }
            // the training step's one-workgroup loss_reduce + reparam_backward, into fresh
            // (NaN) outputs, from this loss (every case, fused by the trainer or not)
            let dz = random(m * lat, 16, -1.0, 1.0);
            let dzm = g.matrix("dz", m, lat).unwrap();
            g.write_matrix(&dzm, &dz);
            let dmv = common::output("dmulv", m, 2 * lat);
            let nan = vec![f32::NAN; 16];
            let history = g.buffer_with("history", bytemuck::cast_slice(&nan)).unwrap();
            let maskb = g.buffer_with("kl_mask", bytemuck::cast_slice(&vec![f32::NAN; lat])).unwrap();
            let binds = [
                (0, B(&ru)),
                (1, B(&su)),
                (2, T(&mv.view)),
                (3, T(&dzm.view)),
                (4, T(&dmv.view)),
                (5, B(&maskb)),
                (6, B(&image_loss)),
                (7, B(&history)),
            ];
            let fused = Dispatch::new(g, "reparam_backward_reduce", &k().reparam_backward_reduce, &binds, 64, 64);
            kernels::run(g, &[fused]).unwrap();
            let what = format!("reparam_backward_reduce {what}");
            let (want_slot, want_mask, want_d) =
                r::reparam_backward_reduce(&want_l, &mulv, &dz, m, lat, free_bits, &st);
            assert_close(&format!("{what} history"), &g.read_f32(&history, 8, 4).unwrap(), &want_slot, 1e-2, 1e-5);
            assert_close(&format!("{what} kl_mask"), &g.read_f32(&maskb, 0, lat).unwrap(), &want_mask, 0.0, 0.0);
            assert_close(
                &format!("{what} d mulv"),
                &rows(g.read_matrix(&dmv).unwrap(), m, 2 * lat),
                &want_d,
                1e-5,
                1e-4,
            );
        }
    }
}

#[test]
fn adam_matches_reference() {
    let g = gpu();
    // adam_texel.wgsl runs wherever the adapter is a CPU (lavapipe binds rgba32float read_write)
    assert!(
        k().adam_update_texel.is_some() || g.info.device_type != wgpu::DeviceType::Cpu,
        "no adam_update_texel on a CPU adapter"
    );
    let texel_cases = k().adam_update_texel.iter().map(|p| (true, p));
    for (texel, pipeline) in std::iter::once((false, &k().adam_update)).chain(texel_cases) {
        for n4 in [1usize, 17, 5000] {
            let n = n4 * 4;
            let mut p = random(n, 16, -1.0, 1.0);
            let grads = random(n, 17, -0.1, 0.1);
            let mut m1 = random(n, 18, -0.01, 0.01);
            let mut m2 = random(n, 19, 0.0, 0.001);
            let st = step(1);
            let bufs: Vec<wgpu::Buffer> = [&p, &grads, &m1, &m2]
                .iter()
                .map(|v| g.buffer_with("adam", bytemuck::cast_slice(v)).unwrap())
                .collect();
            let tex: Vec<Matrix> = [&m1, &m2].iter().map(|v| moment_texture(v)).collect();
            let su = g.uniform("step", &st);
            let u = g.uniform("adam", &kernels::Adam { count: n4 as u32, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
            let (m1b, m2b) = if texel { (T(&tex[0].view), T(&tex[1].view)) } else { (B(&bufs[2]), B(&bufs[3])) };
            let label = if texel { "adam_update_texel" } else { "adam_update" };
            let binds = [(0, B(&u)), (1, B(&su)), (2, B(&bufs[0])), (3, B(&bufs[1])), (4, m1b), (5, m2b)];
            kernels::run(g, &[Dispatch::new(g, label, pipeline, &binds, n4, 64)]).unwrap();
            r::adam_update(&mut p, &grads, &mut m1, &mut m2, 0.9, 0.999, 1e-8, &st);
            let read = |i: usize| -> Vec<f32> {
                if texel {
                    g.read_matrix(&tex[i - 2]).unwrap()[..n].to_vec()
                } else {
                    g.read_f32(&bufs[i], 0, n).unwrap()
                }
            };
            assert_close(&format!("{label} params n={n}"), &g.read_f32(&bufs[0], 0, n).unwrap(), &p, 1e-6, 1e-5);
            assert_close(&format!("{label} moment1 n={n}"), &read(2), &m1, 1e-7, 1e-5);
            assert_close(&format!("{label} moment2 n={n}"), &read(3), &m2, 1e-9, 1e-5);
        }
    }
}

#[test]
fn gather_matches_reference() {
    let g = gpu();
    let mut seen = std::collections::BTreeSet::new();
    // (images, pixels, channels, stored channels per pixel, rows, live rows, start, binarize, samples)
    for (images, pixels, ch, cp, m, live, start, binarize, samples) in [
        (10, 784, 1, 1, 4, 4, 2, false, 1),
        (37, 25, 1, 1, 12, 9, 20, true, 1),
        (300, 784, 1, 1, 128, 128, 100, true, 1),
        (5, 3, 1, 1, 8, 5, 0, false, 1),
        (20, 16, 3, 3, 12, 12, 4, false, 2),
        (20, 16, 1, 4, 12, 9, 4, true, 3),
        (20, 16, 3, 4, 8, 8, 1, false, 1),
        // RGB for the convolutions: four pixels from three words, and past whole words
        (30, 36, 3, 4, 16, 13, 5, true, 2),
        (20, 25, 3, 4, 8, 7, 2, true, 1),
        // one channel: four pixels a texel with two samples, one pixel a texel (four a
        // invocation where the image is whole words)
        (30, 36, 1, 1, 16, 14, 3, true, 2),
        (30, 25, 1, 4, 16, 16, 5, false, 1),
        (30, 36, 1, 4, 16, 13, 5, true, 2),
        (300, 784, 1, 4, 128, 128, 100, false, 1),
    ] {
        let data: Vec<u8> = (0..images * pixels * ch).map(|i| (elbo::rng::hash_u32(i as u32) & 0xff) as u8).collect();
        let order: Vec<u32> = (0..images as u32).rev().collect();
        let st = Step { batch_start: start, ..step(live) };
        let xm = g.matrix("x", m, pixels * cp).unwrap();
        let db = g.buffer_with("data", &data).unwrap();
        let ob = g.buffer_with("order", bytemuck::cast_slice(&order)).unwrap();
        let su = g.uniform("step", &st);
        let gp = kernels::Gather {
            m: xm.rows as u32,
            pixels: pixels as u32,
            channels: ch as u32,
            x_cp: cp as u32,
            binarize: binarize as u32,
            samples: samples as u32,
            pad: [0; 2],
        };
        let u = g.uniform("gather", &gp);
        let binds = [(0, B(&u)), (1, B(&su)), (2, B(&db)), (3, B(&ob)), (4, T(&xm.view))];
        // the variant gather_dispatch picks, and the general kernel too where that is another
        let chosen = kernels::gather_dispatch(g, k(), &gp, &binds);
        let general =
            Dispatch::new(g, "gather_batch", &k().gather_batch, &binds, xm.rows * (pixels * cp).div_ceil(4), 64);
        let expected = match (ch, cp) {
            (1, 1) if pixels % 4 == 0 => "gather_batch_words",
            (1, 4) if pixels % 4 == 0 => "gather_batch_pixels4",
            (1, 4) => "gather_batch_pixels",
            (3, 4) if pixels % 4 == 0 => "gather_batch_rgb4",
            _ => "gather_batch",
        };
        assert_eq!(chosen.label, expected, "channels {ch}/{cp}, pixels {pixels}");
        seen.insert(expected);
        for d in [chosen, general] {
            g.write_matrix(&xm, &vec![-1.0; m * pixels * cp]);
            kernels::run(g, std::slice::from_ref(&d)).unwrap();
            let got = rows(g.read_matrix(&xm).unwrap(), m, pixels * cp);
            let want = r::gather_batch(&data, &order, m, pixels, ch, cp, binarize, samples, &st);
            let what = format!("{} images={images} pixels={pixels} channels={ch}/{cp} m={m} rows={live} binarize={binarize} samples={samples}", d.label);
            assert_close(&what, &got, &want, 1e-6, 0.0);
        }
    }
    assert_eq!(seen.len(), 5, "cases for every gather variant: {seen:?}");
}

#[test]
fn random_streams_match_cpu() {
    // reparam_forward with mu = 0, logvar = 0 returns eps itself
    let g = gpu();
    let (m, lat) = (64, 8);
    let mulv = vec![0f32; m * 2 * lat];
    let st = step(m as u32);
    let (mv, zm) = (g.matrix("mulv", m, 2 * lat).unwrap(), common::output("z", m, lat));
    g.write_matrix(&mv, &mulv);
    let su = g.uniform("step", &st);
    let u = g.uniform("reparam", &kernels::Reparam::new(m, lat, 0.0));
    let f = Dispatch::new(
        g,
        "reparam_forward",
        &k().reparam_forward,
        &[(0, B(&u)), (1, B(&su)), (2, T(&mv.view)), (4, T(&zm.view))],
        m * 2,
        64,
    );
    kernels::run(g, &[f]).unwrap();
    let eps = g.read_matrix(&zm).unwrap();
    let want: Vec<f32> =
        (0..m * lat).map(|i| elbo::rng::rand_normal(st.seed, elbo::rng::STREAM_EPS, st.counter, i as u32)).collect();
    assert_close("eps", &eps, &want, 1e-5, 1e-5);
}

#[test]
fn softmax_cross_entropy_matches_reference() {
    let g = gpu();
    for (m, classes, live) in [(4, 10, 4), (13, 3, 11), (128, 10, 128), (9, 7, 9)] {
        let logits = random(m * classes, 20, -4.0, 4.0);
        let labels: Vec<u32> = (0..m).map(|i| elbo::rng::hash_u32(i as u32) % classes as u32).collect();
        let st = step(live);
        let (lm, dm) = (g.matrix("logits", m, classes).unwrap(), g.matrix("d", m, classes).unwrap());
        g.write_matrix(&lm, &logits);
        let mut padded = labels.clone();
        padded.resize(lm.rows, 0);
        let lb = g.buffer_with("labels", bytemuck::cast_slice(&padded)).unwrap();
        let rl = g.buffer("row_loss", (lm.rows * 8) as u64, wgpu::BufferUsages::empty()).unwrap();
        let su = g.uniform("step", &st);
        let u = g.uniform("classify", &kernels::Classify { m: lm.rows as u32, classes: classes as u32, pad: [0; 2] });
        let binds = [(0, B(&u)), (1, B(&su)), (2, T(&lm.view)), (3, B(&lb)), (4, T(&dm.view)), (5, B(&rl))];
        let d = Dispatch::new(g, "softmax_cross_entropy", &k().softmax_cross_entropy, &binds, lm.rows, 64);
        kernels::run(g, &[d]).unwrap();
        let (want_d, want_rows) = r::softmax_cross_entropy(&logits, &labels, m, classes, &st);
        let what = format!("softmax_cross_entropy m={m} classes={classes} rows={live}");
        assert_close(&format!("{what} d logits"), &rows(g.read_matrix(&dm).unwrap(), m, classes), &want_d, 1e-6, 1e-4);
        let want_flat: Vec<f32> = want_rows.iter().flatten().copied().collect();
        assert_close(&format!("{what} per row"), &g.read_f32(&rl, 0, 2 * m).unwrap(), &want_flat, 1e-5, 1e-5);
    }
}

#[test]
fn kernels_pass_at_the_other_vector_width() {
    common::rerun_at_other_vector_width("kernels_pass_at_the_other_vector_width");
}

#[test]
fn the_loss_goes_wide_where_a_row_would_pass_llvmpipes_loop_limit() {
    let g = gpu();
    let (mnist, huge) = (784, 2 * 128 * 128 * 3);
    if g.is_llvmpipe() {
        assert!(!kernels::elbo_wide(g, k(), mnist), "MNIST's rows fit one invocation's loops");
        assert!(kernels::elbo_wide(g, k(), huge), "a 128x128 RGB Gaussian row needs the wide variant");
    } else {
        assert_eq!(kernels::elbo_wide(g, k(), mnist), k().wide_reductions);
        assert_eq!(kernels::elbo_wide(g, k(), huge), k().wide_reductions);
    }
}

/// touch (the fixed-cost probe of `elbo bench`) adds 1 to its counter once a dispatch,
/// however many dispatches share a pass: each reads what the one before wrote.
#[test]
fn touch_counts_its_dispatches() {
    let g = gpu();
    let counter = g.buffer("counter", 16, wgpu::BufferUsages::empty()).unwrap();
    g.queue.write_buffer(&counter, 0, bytemuck::cast_slice(&[7u32, 0, 0, 0]));
    let d = Dispatch::with_groups(g, "touch", &k().touch, &[(0, B(&counter))], [1, 1, 1]);
    let list = vec![d; 41];
    kernels::run(g, &list).unwrap();
    kernels::run(g, &list[..1]).unwrap();
    let got = g.read_buffer(&counter, 0, 8).unwrap();
    let words: Vec<u32> = got.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(words, [r::touch(7, 42), 0], "the counter after 42 dispatches from 7, and the word after it");
}
