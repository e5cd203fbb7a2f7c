//! The GEMM choice cache: the first run on a machine times the variants and keeps its
//! choices; later runs read them, time nothing and train to the same bits; a damaged
//! file is ignored with a warning and rewritten; --retime times again.

mod common;
use common::Scratch;
use std::path::Path;
use std::process::Output;

fn train(cache: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--epochs", "1", "--train-limit", "200", "--test-limit", "40", "--hidden", "24"];
    args.extend_from_slice(&["--latent-dim", "3", "--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let o = common::elbo_command().args(&args).env("ELBO_CACHE_DIR", cache).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn gemm_choices_are_kept_reused_and_retimed() {
    let dir = Scratch::new("gemm_cache");
    let cache = dir.as_ref().join("cache");
    let file = cache.join("gemm-choices.json");
    let first = train(&cache, &dir.as_ref().join("a"), &[]);
    assert!(text(&first).contains("timed now, kept in"), "{}", text(&first));
    let kept: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let adapters = kept["adapters"].as_object().expect("an adapters table");
    assert_eq!(adapters.len(), 1, "{kept}");
    let decisions = adapters.values().next().unwrap().as_array().unwrap();
    assert!(!decisions.is_empty() && decisions.iter().all(|d| d["variant"].is_string() && d["timings"].is_array()));
    // on lavapipe with more than one core the first run compiled its kernels in parallel
    let parallel = elbo::kernels::warm::applies(common::gpu());
    assert_eq!(text(&first).contains("compiled in parallel"), parallel, "{}", text(&first));
    // a second run times nothing, compiles nothing in parallel (what the first compiled is
    // in the shader cache: lavapipe-compiled.txt) and trains to the same bits
    let second = train(&cache, &dir.as_ref().join("b"), &[]);
    assert!(text(&second).contains("as this machine chose them before"), "{}", text(&second));
    assert!(!text(&second).contains("compiled in parallel"), "{}", text(&second));
    assert_eq!(cache.join("lavapipe-compiled.txt").exists(), parallel);
    let model = |run: &str| std::fs::read(dir.as_ref().join(run).join("model.safetensors")).unwrap();
    assert_eq!(model("a"), model("b"), "two runs of one seed on one adapter differ");
    // a damaged file: a warning, the run goes on, and the file is whole again
    std::fs::write(&file, "{ not json").unwrap();
    let damaged = train(&cache, &dir.as_ref().join("c"), &[]);
    assert!(text(&damaged).contains("ignoring the GEMM choice cache"), "{}", text(&damaged));
    let again: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(again["adapters"].as_object().is_some_and(|a| a.len() == 1), "{again}");
    // --retime times every shape again
    let retimed = train(&cache, &dir.as_ref().join("d"), &["--retime"]);
    assert!(text(&retimed).contains("timed now"), "{}", text(&retimed));
    // and devices names the file
    let o = common::elbo_command().arg("devices").env("ELBO_CACHE_DIR", &cache).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains(&file.display().to_string()), "{o:?}");
}

#[test]
fn a_cpu_adapter_compiles_none_of_the_variants_its_rules_leave_out() {
    // fresh kernels choosing for a model's shapes, then a second choice of the same shapes:
    // the tiled and wide GEMMs and the wide loss and convolutions stay uncompiled on a CPU
    // adapter, and the second choice times nothing
    use elbo::kernels::gemm::{self, GemmPreference, Pass};
    let g = common::gpu();
    let k = elbo::kernels::Kernels::new(g).unwrap();
    let shapes = [(Pass::Forward, 32, 40, 24), (Pass::BackwardInput, 32, 40, 24), (Pass::BackwardWeight, 32, 40, 24)];
    gemm::choose(g, &k, GemmPreference::Auto, &shapes).unwrap();
    let before = gemm::variants_timed();
    let again = gemm::choose(g, &k, GemmPreference::Auto, &shapes).unwrap();
    assert_eq!(gemm::variants_timed(), before, "the second choice timed {:?}", again.describe());
    assert_eq!(again.timed_now, 0);
    let lazy = [
        ("gemm_forward_wide", &k.gemm_forward_wide),
        ("gemm_backward_input_wide", &k.gemm_backward_input_wide),
        ("gemm_backward_weight_wide", &k.gemm_backward_weight_wide),
        ("gemm_forward_tiled", &k.gemm_forward_tiled),
        ("gemm_backward_input_tiled", &k.gemm_backward_input_tiled),
        ("gemm_backward_weight_tiled", &k.gemm_backward_weight_tiled),
        ("elbo_forward_backward_wide", &k.elbo_forward_backward_wide),
        ("conv2d_forward_wide", &k.conv2d_forward_wide),
        ("conv2d_backward_input_wide", &k.conv2d_backward_input_wide),
        ("conv2d_backward_weight_wide", &k.conv2d_backward_weight_wide),
    ];
    if g.info.device_type == wgpu::DeviceType::Cpu {
        let compiled: Vec<&str> = lazy.iter().filter(|(_, p)| p.compiled()).map(|(n, _)| *n).collect();
        assert!(compiled.is_empty(), "compiled on a CPU adapter without a dispatch: {compiled:?}");
    }
    // and one compiles when a dispatch takes it
    let _ = k.gemm_forward_wide.pipeline();
    assert!(k.gemm_forward_wide.compiled());
}
