//! Shared by the integration tests: one GPU per test binary, random data and
//! a comparison that prints its evidence.
#![allow(dead_code)]

use elbo::gpu::{AdapterChoice, Gpu};
use elbo::model::{Activation, VaeConfig};
use elbo::train::Hyper;
use std::sync::OnceLock;

/// Every activation a layer can have, none included.
pub const ACTIVATIONS: [Activation; 5] =
    [Activation::Identity, Activation::Relu, Activation::Tanh, Activation::Elu, Activation::LeakyRelu];

/// The adapter every GPU test runs on, under the Khronos validation layer (whose
/// messages fail the test that checks the GPU next). No adapter, or no layer, is a
/// failure, not a skip: CI installs lavapipe and the layer, so either missing means a
/// broken setup.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        elbo::gpu::validation::enable();
        // as the program does (src/main.rs); `rerun_at_other_vector_width` covers the other
        elbo::gpu::prefer_wide_cpu_vectors();
        match Gpu::new(&AdapterChoice::default()) {
            Ok(g) => {
                eprintln!("testing on {}", g.adapter_line());
                g
            }
            Err(e) => panic!("GPU tests need an adapter: {e:#}"),
        }
    })
}

/// The elbo program as the tests run it: no device-select layer's choice
/// (`NODEVICE_SELECT`), and under the Khronos validation layer as `gpu()` is.
pub fn elbo_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_elbo"));
    c.env("NODEVICE_SELECT", "1").env(elbo::gpu::validation::ENV, "1");
    c
}

/// On lavapipe, runs this test binary again (all tests but `this_test`) with llvmpipe's
/// other vector width: 256 bits where this process has 512 and the reverse, so that CI
/// checks the kernels at both subgroup widths (8 and 16 lanes) whatever the CPU.
/// Fails where the child fails or does not run on the other width.
pub fn rerun_at_other_vector_width(this_test: &str) {
    let g = gpu();
    assert!(
        g.is_llvmpipe() || g.info.device_type != wgpu::DeviceType::Cpu,
        "CPU adapter {} is not lavapipe: which vector widths it has is unknown",
        g.adapter_line()
    );
    if !g.is_llvmpipe() {
        // a GPU: its subgroup width is fixed; the other tests ran at it
        return;
    }
    let other = if g.info.name.contains("512 bits") { "256" } else { "512" };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--skip", this_test, "--test-threads", "2", "--nocapture"])
        .env(elbo::gpu::LP_VECTOR_WIDTH, other)
        .output()
        .expect("rerun the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "at {other} bits the tests failed:\n{text}");
    assert!(text.contains(&format!("{other} bits")), "the rerun did not get {other}-bit vectors:\n{text}");
    let lanes = if other == "512" { "16" } else { "8" };
    eprintln!("the tests also passed at {other}-bit vectors ({lanes}-lane subgroups)");
}

/// `len` one-channel images of random bytes.
pub fn synthetic(len: usize, width: usize, height: usize, seed: u32) -> elbo::data::Dataset {
    let pixels = (0..len * width * height).map(|i| (elbo::rng::rand_bits(seed, 7, 0, i as u32) & 0xff) as u8).collect();
    elbo::data::Dataset { name: "synthetic".into(), channels: 1, width, height, pixels, labels: None, len }
}

/// Deterministic values uniform in [lo, hi).
pub fn random(n: usize, seed: u32, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|i| lo + (hi - lo) * elbo::rng::rand_uniform(seed, 99, 0, i as u32)).collect()
}

/// Asserts |got - want| <= atol + rtol * |want| everywhere; on failure prints
/// the first mismatches, the max absolute and relative error and the tolerances.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: got {} values, want {}", got.len(), want.len());
    let mut bad = Vec::new();
    let (mut max_abs, mut max_rel) = (0f32, 0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / w.abs().max(1e-12));
        if err.is_nan() || err > atol + rtol * w.abs() {
            bad.push((i, g, w));
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> = bad.iter().take(6).map(|(i, g, w)| format!("[{i}] got {g} want {w}")).collect();
        panic!(
            "{what}: {} of {} values differ (atol {atol}, rtol {rtol}); max abs error {max_abs}, max rel error {max_rel}; first: {}",
            bad.len(),
            got.len(),
            first.join(", ")
        );
    }
}

/// A matrix for a kernel to write, every texel NaN beforehand: a value the kernel
/// leaves unwritten fails the comparison instead of passing with whatever the memory
/// held (a new texture may reuse a freed one's memory).
pub fn output(label: &str, rows: usize, cols: usize) -> elbo::gpu::Matrix {
    let g = gpu();
    let m = g.matrix(label, rows, cols).unwrap();
    g.write_matrix(&m, &vec![f32::NAN; m.rows * m.cols]);
    m
}

/// Drops the padding rows of a matrix read back from the GPU.
pub fn rows(v: Vec<f32>, rows: usize, cols: usize) -> Vec<f32> {
    v[..rows * cols].to_vec()
}

/// A scratch folder under the system's temp dir, named for the test and the
/// process: removed when the test passes, kept after a failure for a look at
/// what the run wrote.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("elbo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Scratch(d)
    }

    /// The same, created.
    pub fn created(name: &str) -> Scratch {
        let s = Scratch::new(name);
        std::fs::create_dir_all(&s.0).unwrap();
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

/// Small models of every kind: (name, config, hyper-parameters).
pub fn small_models() -> Vec<(&'static str, VaeConfig, Hyper)> {
    use elbo::model::{Arch, Likelihood, ModelKind};
    let base = VaeConfig::mlp(5, 6, 13, 3);
    let hyper = Hyper { beta: 0.8, ..Hyper::new(1e-3, 9) };
    let conv =
        VaeConfig { arch: Arch::Conv, width: 8, height: 4, conv_channels: vec![4, 8], hidden: vec![], ..base.clone() };
    vec![
        ("mlp bernoulli", base.clone(), hyper.clone()),
        // a head wider than one subgroup workgroup at 8 and 16 lanes (2L = 72 columns)
        ("mlp bernoulli, latent 36", VaeConfig { latent: 36, ..base.clone() }, hyper.clone()),
        (
            "mlp gaussian rgb",
            VaeConfig { likelihood: Likelihood::Gaussian, channels: 3, ..base.clone() },
            hyper.clone(),
        ),
        ("mlp autoencoder", VaeConfig { kind: ModelKind::Ae, ..base.clone() }, hyper.clone()),
        // dense stacks: three hidden layers, and none at all
        ("mlp 3 hidden layers", VaeConfig { hidden: vec![11, 7, 9], ..base.clone() }, hyper.clone()),
        (
            "mlp, a decoder of its own",
            VaeConfig { hidden: vec![11, 7], decoder_hidden: Some(vec![5]), ..base.clone() },
            hyper.clone(),
        ),
        (
            "mlp gaussian, no hidden layer",
            VaeConfig { likelihood: Likelihood::Gaussian, hidden: vec![], ..base.clone() },
            hyper.clone(),
        ),
        ("mlp 3 samples, free bits", base.clone(), Hyper { samples: 3, free_bits: 0.05, ..hyper.clone() }),
        // the other activations in the dense and the convolutional epilogues
        (
            "mlp tanh, 2 hidden layers",
            VaeConfig { hidden: vec![11, 7], activation: Activation::Tanh, ..base.clone() },
            hyper.clone(),
        ),
        ("mlp elu", VaeConfig { activation: Activation::Elu, ..base.clone() }, hyper.clone()),
        (
            "conv leaky relu, hidden",
            VaeConfig { hidden: vec![6], activation: Activation::LeakyRelu, ..conv.clone() },
            hyper.clone(),
        ),
        (
            "conv tanh gaussian",
            VaeConfig { likelihood: Likelihood::Gaussian, activation: Activation::Tanh, ..conv.clone() },
            hyper.clone(),
        ),
        ("conv bernoulli", conv.clone(), hyper.clone()),
        (
            "conv gaussian rgb, hidden",
            VaeConfig { likelihood: Likelihood::Gaussian, channels: 3, hidden: vec![6], ..conv.clone() },
            hyper.clone(),
        ),
        ("conv, 2 dense layers", VaeConfig { hidden: vec![6, 5], ..conv.clone() }, hyper.clone()),
        // conv stacks of other depths, odd channel counts and image sizes
        ("conv, 1 layer of 3 channels", VaeConfig { conv_channels: vec![3], ..conv.clone() }, hyper.clone()),
        (
            "conv 3 layers gaussian rgb, 5 and 6 channels",
            VaeConfig {
                likelihood: Likelihood::Gaussian,
                channels: 3,
                width: 8,
                height: 16,
                conv_channels: vec![3, 5, 6],
                ..conv.clone()
            },
            hyper.clone(),
        ),
        (
            "conv 36x36 rgb, 48 and 96 channels",
            VaeConfig { channels: 3, width: 36, height: 36, conv_channels: vec![48, 96], ..conv.clone() },
            hyper.clone(),
        ),
        (
            "conv 64x48, 4 layers, tanh",
            VaeConfig {
                width: 64,
                height: 48,
                conv_channels: vec![3, 5, 8, 16],
                activation: Activation::Tanh,
                ..conv.clone()
            },
            hyper.clone(),
        ),
        (
            "conv autoencoder, 2 samples",
            VaeConfig { kind: ModelKind::Ae, conv_channels: vec![3, 5], ..conv },
            Hyper { samples: 2, ..hyper },
        ),
    ]
}

/// The loss layout of a dense decoder over `values` one-channel values: the means, and
/// for a Gaussian the raw log-variances after them.
pub fn flat_layout(values: usize, gaussian: bool) -> elbo::model::LossLayout {
    elbo::model::LossLayout {
        pixels: values,
        channels: 1,
        x_cp: 1,
        o_cp: 1,
        o_cols: values * (1 + gaussian as usize),
        halves: true,
        gaussian,
    }
}
