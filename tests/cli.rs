//! The binary as a user meets it: errors are one clear line and a non-zero exit.

mod common;
use common::Scratch;

use std::process::Command;

fn elbo() -> Command {
    common::elbo_command()
}

#[test]
fn no_adapter_names_the_install_command() {
    let out = elbo()
        .args(["train", "--backend", "vulkan", "--epochs", "1", "--out"])
        .arg(std::env::temp_dir().join("elbo-no-adapter"))
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded without a Vulkan driver");
    assert!(err.contains("apt-get install mesa-vulkan-drivers"), "stderr: {err}");
}

#[test]
fn a_missing_data_dir_is_a_clear_error() {
    let out = elbo()
        .args(["train", "--data-dir", "/nonexistent/mnist", "--out"])
        .arg(std::env::temp_dir().join("elbo-no-data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.contains("/nonexistent/mnist") && err.contains("--data-dir"),
        "stderr: {err}"
    );
    assert!(!err.contains("panicked"), "stderr: {err}");
}

#[test]
fn an_unknown_adapter_lists_the_known_ones() {
    let out = elbo()
        .args(["train", "--adapter", "no-such-gpu-anywhere", "--out"])
        .arg(std::env::temp_dir().join("elbo-no-such"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no-such-gpu-anywhere") && err.contains("elbo devices"), "stderr: {err}");
}

#[test]
fn devices_lists_adapters_with_their_properties() {
    let out = elbo().arg("devices").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("backend") && text.contains("limits:") && text.contains("features:"), "{text}");
    // an adapter with subgroups says how wide they are
    for line in text.lines().filter(|l| l.contains("features:") && l.contains(" subgroup")) {
        assert!(line.contains(" lanes)"), "{line}");
    }
    // lavapipe: its vector width, as in its name, and who chose it
    let lines: Vec<&str> = text.lines().collect();
    for (i, name) in lines.iter().enumerate().filter(|(_, l)| l.starts_with('[') && l.contains("llvmpipe")) {
        let bits = if name.contains("512 bits") { "512 bits" } else { "256 bits" };
        let width = lines[i + 1..].iter().take_while(|l| !l.starts_with('[')).find(|l| l.contains("vectors:"));
        assert!(width.is_some_and(|w| w.contains(&format!("vectors: {bits} ("))), "{text}");
    }
}

#[test]
fn a_validation_error_is_an_error_not_a_panic() {
    // the binary's one GPU (common::gpu), which chooses lavapipe's vector width first
    let gpu = common::gpu();
    let kernels = elbo::kernels::Kernels::new(gpu).unwrap();
    let u = gpu.uniform("adam", &elbo::kernels::Adam { count: 4, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    // adam_update binds six resources; give it one
    let _ = elbo::kernels::Dispatch::new(
        gpu,
        "adam_update",
        &kernels.adam_update,
        &[(0, elbo::kernels::Bind::Buffer(&u))],
        4,
        64,
    );
    let err = gpu.wait().expect_err("a bind group with missing entries was accepted");
    assert!(format!("{err:#}").contains("validation"), "{err:#}");
}

#[test]
fn a_batch_beyond_the_adapters_limits_names_the_limit() {
    let out = elbo()
        .args([
            "train",
            "--batch-size",
            "40000",
            "--epochs",
            "1",
            "--train-limit",
            "50000",
            "--test-limit",
            "10",
            "--out",
        ])
        .arg(&*Scratch::new("too-large"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    // named before anything runs, with the largest batch a texture's side takes (16384 on lavapipe)
    assert!(err.contains("texture side may be at most") && err.contains("it fits with --batch-size"), "stderr: {err}");
}

#[test]
fn every_subcommand_explains_itself_with_an_example() {
    for cmd in [
        "train",
        "devices",
        "bench",
        "profile",
        "sample",
        "reconstruct",
        "manifold",
        "traverse",
        "interpolate",
        "embed",
        "restore",
        "eval",
        "probe",
    ] {
        let out = elbo().args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help failed");
        assert!(text.contains("Example: elbo"), "{cmd} --help shows no example:\n{text}");
    }
}

#[test]
fn a_damaged_or_foreign_model_file_is_refused() {
    let dir = Scratch::created("bad-model");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file at all").unwrap();
    // a real safetensors file, but not elbo's: no configuration in its metadata
    let foreign = dir.join("foreign.safetensors");
    let data = vec![0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    std::fs::write(&foreign, safetensors::tensor::serialize([("w", view)], None).unwrap()).unwrap();
    for (file, want) in [(&garbage, "damaged safetensors"), (&foreign, "metadata")] {
        let out = elbo().args(["sample", "--model"]).arg(file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("not a usable elbo model") && err.contains(want), "{}: {err}", file.display());
    }
}

#[test]
fn train_json_prints_only_metrics_lines() {
    let dir = Scratch::new("json");
    let out = elbo()
        .args([
            "train",
            "--epochs",
            "2",
            "--train-limit",
            "300",
            "--test-limit",
            "50",
            "--hidden",
            "16,8",
            "--json",
            "--out",
        ])
        .arg(&*dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["epoch"], 2);
    assert!(lines[1]["test_loss"].as_f64().unwrap().is_finite());
}

#[test]
fn a_model_of_other_images_is_refused_with_its_shape() {
    let dir = Scratch::created("other-arch");
    // a model of 25x25 faces, used on MNIST (the default dataset)
    let faces = elbo::VaeConfig::mlp(25, 25, 16, 3);
    elbo::Model::init(&faces, 1).save(&dir.join("model.safetensors"), &Default::default()).unwrap();
    let out = elbo().args(["sample", "--model"]).arg(&*dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("25x25") && err.contains("28x28") && err.contains("--dataset"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_the_remedies() {
    let dir = Scratch::new("diverge");
    let out = elbo()
        .args([
            "train",
            "--epochs",
            "3",
            "--lr",
            "1e9",
            "--train-limit",
            "2000",
            "--test-limit",
            "50",
            "--log-every",
            "1",
            "--out",
        ])
        .arg(&*dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("lower --lr") && err.contains("step"), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bench_sizes_below_one_are_a_clear_error() {
    for (flag, value, bad) in
        [("--squares", "0", "'0'"), ("--batch-sizes", "32,x", "'x'"), ("--conv-batch-sizes", "4,0", "'0'")]
    {
        let out = elbo().args(["bench", flag, value]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains(&format!("{bad} is not a size")), "{flag} {value}: {err}");
    }
}

#[test]
fn bench_reports_the_kernels_of_every_model_and_their_steps() {
    let json = std::env::temp_dir().join(format!("elbo-bench-{}.json", std::process::id()));
    let out = elbo()
        .args(["bench", "--steps", "3", "--batch-sizes", "32", "--conv-batch-sizes", "32", "--squares", "64"])
        .args(["--rgb64-batch-sizes", "4"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let kernels = r["kernels"].as_array().unwrap();
    let names: Vec<&str> = kernels.iter().map(|k| k["kernel"].as_str().unwrap()).collect();
    // the MLP step's kernels, each in whichever variant this adapter runs
    // (elbo_forward_backward_wide on GPUs); the convolutional model has its own head
    let mlp: Vec<&str> = kernels
        .iter()
        .filter(|k| k["model"] == elbo::bench::BenchModel::Mlp.name())
        .map(|k| k["kernel"].as_str().unwrap())
        .collect();
    assert!(!mlp.is_empty() && mlp.len() < names.len(), "kernels by model: {kernels:?}");
    let has = |want: &str| mlp.iter().any(|n| *n == want || n.starts_with(&format!("{want}_")));
    assert!(has("gemm_forward fc1"), "no gemm_forward fc1 in {mlp:?}");
    // the loss: its own kernel, or in the MLP's last GEMM (and the conv model's taps kernel)
    let loss = names.iter().any(|n| n.starts_with("elbo_forward_backward"));
    assert!(loss, "no elbo_forward_backward in {names:?}");
    // Adam: its own dispatch, or inside the weight gradients (CPU adapters)
    let fused = has("gemm_backward_weight_adam fc1");
    assert!(fused != (has("gemm_backward_weight fc1") && has("adam_update")), "weight gradient and Adam: {names:?}");
    // the convolutional model's passes, in whichever variant this adapter runs
    for pass in ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"] {
        assert!(names.iter().any(|n| n.starts_with(pass) && n.contains("enc.conv2")), "no {pass} in {names:?}");
    }
    // and the 64x64 RGB model's four convolutions, profiled at its batch of 64
    let rgb64 = elbo::bench::BenchModel::Rgb64.name();
    let deep: Vec<&str> =
        kernels.iter().filter(|k| k["model"] == rgb64).map(|k| k["kernel"].as_str().unwrap()).collect();
    assert!(deep.iter().any(|n| n.starts_with("conv2d_forward") && n.ends_with("enc.conv4")), "{deep:?}");
    assert!(deep.iter().any(|n| n.ends_with("dec.deconv4")), "{deep:?}");
    assert!(kernels.iter().all(|k| k["median_us"].as_f64().unwrap() > 0.0), "a kernel took no time: {kernels:?}");
    // the fixed costs: each of a submit, a lone dispatch and a further one in a pass
    let fixed = &r["fixed_costs"];
    for key in ["submit_wait_us", "one_dispatch_us", "each_dispatch_us"] {
        assert!(fixed[key].as_f64().is_some_and(|us| us > 0.0), "{key}: {fixed}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("each further dispatch in the same pass"), "{text}");
    let steps = r["steps"].as_array().unwrap();
    let dispatches: Vec<u64> = steps.iter().map(|s| s["dispatches"].as_u64().unwrap()).collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(steps.iter().any(|s| s["model"] == rgb64 && s["batch"] == 4), "{steps:?}");
    // the head's forward pass draws z itself where the subgroup GEMMs run (CPU adapters)
    let reparam = has("gemm_forward_reparam heads");
    assert_eq!(reparam, !has("reparam_forward"), "the head's forward and reparam_forward: {mlp:?}");
    // and the decoder's last GEMM sums the loss (no elbo_forward_backward in the MLP step)
    let elbo_gemm = has("gemm_forward_elbo fc4");
    // both need the subgroup GEMMs (lavapipe, at 8 or 16 lanes); the head's 2L = 40
    // columns fit one 16-lane workgroup, and at 8 lanes L = 20 is a multiple of 4 (the
    // pairs kernel)
    assert_eq!(reparam, elbo_gemm, "{mlp:?}");
    let want = 16 - fused as u64 - reparam as u64 - elbo_gemm as u64;
    assert_eq!(dispatches[0], want, "the MLP step's dispatches: {steps:?}");
    assert!(steps.iter().all(|s| s["median_ms"].as_f64().unwrap() > 0.0 && s["submits"] == 1), "{steps:?}");
    assert!(!r["gemm_choice"].as_array().unwrap().is_empty());
    assert!(r["adapter"]["name"].as_str().is_some_and(|n| !n.is_empty()));
}

#[test]
fn profile_shows_the_gemm_variants_and_takes_a_forced_one() {
    // forced texel GEMMs: every decision says so, and the head's GEMM cannot draw z (that
    // fusion needs the subgroup GEMMs), so reparam_forward is its own dispatch
    let out = elbo().args(["profile", "--steps", "1", "--gemm", "texel"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "profile failed: {}", String::from_utf8_lossy(&out.stderr));
    // every GEMM the step runs as a GEMM: 4 dense layers' three passes but the first
    // layer's input gradient, which nothing needs
    let variants: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("GEMM variants"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("gemm_"))
        .collect();
    assert_eq!(variants.len(), 11, "GEMM variant lines:\n{text}");
    assert!(variants.iter().all(|l| l.contains(": texel (forced)")), "not forced:\n{text}");
    assert!(text.contains("reparam_forward") && !text.contains("gemm_forward_reparam"), "{text}");
    assert!(text.contains("elbo_forward_backward") && !text.contains("gemm_forward_elbo"), "{text}");
    let out = elbo().args(["profile", "--steps", "1", "--gemm", "nonsense"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"), "no list of the variants");
}

/// `--rounds N` sets how many interleaved rounds stand behind each PyTorch comparison.
/// A stand-in for Python answers as tools/pytorch_vae.py does (one JSON line), so the
/// test needs no PyTorch; elbo's side runs for real.
#[test]
fn bench_rounds_against_pytorch_are_counted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::created("bench-rounds");
    let stub = dir.join("python");
    std::fs::write(
        &stub,
        "#!/bin/sh\ncase \"$*\" in\n\
         *\" step \"*) echo '{\"system\": \"stub\", \"batch\": 128, \"median_ms\": 5.0, \"p10_ms\": 4.0, \"p90_ms\": 6.0}' ;;\n\
         *\" train \"*) echo '{\"epoch\": 1, \"epoch_seconds\": 3.0}' ;;\n\
         *) exit 3 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let json = dir.join("report.json");
    let out = elbo()
        .args(["bench", "--steps", "3", "--batch-sizes", "none", "--conv-batch-sizes", "none", "--squares", "none"])
        .args(["--rgb64-batch-sizes", "none", "--rounds", "2", "--pytorch"])
        .arg(&stub)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // the MLP step (no conv model was asked for) and the epoch, two rounds each
    let peers = r["pytorch"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["rounds"].as_array().unwrap().len(), 2, "{:?}", peers[0]);
    assert_eq!(peers[0]["median_ms"], 5.0);
    let epoch = &r["pytorch_epoch"];
    assert_eq!(epoch["rounds"].as_array().unwrap().len(), 2, "{epoch:?}");
    assert_eq!(epoch["pytorch_s"], 3.0);
    assert!(epoch["elbo_s"].as_f64().unwrap() > 0.0, "{epoch:?}");
    assert!(text.contains("median of 2 interleaved rounds"), "{text}");
    // zero rounds is refused before any work
    let out = elbo().args(["bench", "--rounds", "0", "--pytorch"]).arg(&stub).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--rounds"), "{err}");
}

#[test]
fn a_resumed_run_takes_the_epochs_and_rate_given_on_the_command_line() {
    let dir = Scratch::new("resume-given");
    let first = ["train", "--epochs", "1", "--train-limit", "256", "--test-limit", "64", "--quiet", "--out"];
    let out = elbo().args(first).arg(&*dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // the defaults (10 epochs, lr 1e-3) are not "given": only the flags typed count
    let out =
        elbo().args(["train", "--epochs", "2", "--lr", "5e-4", "--json", "--resume"]).arg(&*dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "one more epoch: {text}");
    assert_eq!(lines[0]["epoch"], 2, "{text}");
    assert!((lines[0]["lr"].as_f64().unwrap() - 5e-4).abs() < 1e-9, "{text}");
}

#[test]
fn hidden_widths_are_checked_naming_the_flag() {
    for (value, bad) in [("0", "'0'"), ("200,x", "'x'"), ("200,0", "'0'")] {
        let out = elbo()
            .args(["train", "--hidden", value, "--epochs", "1", "--out"])
            .arg(std::env::temp_dir().join("elbo-bad-hidden"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--hidden {value} was accepted");
        assert!(err.contains("--hidden") && err.contains(bad) && err.contains("none"), "--hidden {value}: {err}");
    }
}

#[test]
fn conv_channels_are_checked_naming_the_flag_and_what_fits() {
    // MNIST's 28x28 halves twice to 7x7: a third layer cannot take it, whatever the crop
    let dir = Scratch::new("bad-channels");
    for (value, wanted) in [("0", "--channels"), ("32,0", "--channels"), ("8,8,8,8,8", "at least 32x32")] {
        let out = elbo()
            .args(["train", "--model", "conv", "--channels", value, "--epochs", "1", "--out"])
            .arg(dir.join("run"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--channels {value} was accepted");
        assert!(err.contains(wanted), "--channels {value}: {err}");
        assert!(!dir.join("run").exists(), "--channels {value}: the run folder was made before the error");
    }
}

#[test]
fn a_model_too_large_for_the_adapter_names_the_flag_before_writing() {
    // 784 x 100,000 x 2 weights are far past any adapter's largest storage buffer
    let dir = Scratch::new("too-wide");
    let out =
        elbo().args(["train", "--hidden", "100000", "--epochs", "1", "--out"]).arg(dir.join("run")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 100,000-wide layer was accepted");
    assert!(err.contains("too large for this adapter") && err.contains("--hidden widths of at most"), "{err}");
    assert!(!dir.join("run").exists(), "the run folder was made before the error");
}

/// SIGTERM (a shutdown, `kill`) stops a run as Ctrl-C does: the step finishes, a checkpoint
/// is saved, nothing half-written is left, and the exit status says it was interrupted.
#[cfg(unix)]
#[test]
fn sigterm_saves_a_checkpoint_and_stops() {
    let out = Scratch::new("sigterm");
    let child = elbo()
        .args(["train", "--epochs", "50", "--train-limit", "2000", "--test-limit", "100", "--quiet", "--out"])
        .arg(&*out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // the first epoch's metrics: the run is under way
    let t0 = std::time::Instant::now();
    while !out.join("metrics.jsonl").exists() {
        assert!(t0.elapsed().as_secs() < 300, "no epoch finished in 300 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // the shell's own kill: a minimal system may have no kill program
    let killed = Command::new("sh").args(["-c", &format!("kill -TERM {}", child.id())]).status().unwrap();
    assert!(killed.success());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("interrupted") && err.contains("--resume"), "stderr: {err}");
    assert!(out.join("checkpoint.safetensors").exists(), "no checkpoint saved");
    let left: Vec<String> = std::fs::read_dir(&*out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// The CI script (.ci/run): its Vulkan check finds the loader even where `ldconfig -p`
/// prints more than a pipe holds and names it first (a `| grep -q` under pipefail
/// then reports no loader), it checks that a Vulkan adapter enumerates before the
/// tests, and it ends with the README's test command.
#[cfg(target_os = "linux")]
#[test]
fn the_ci_script_finds_a_loader_in_a_long_listing_and_runs_the_readmes_tests() {
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    let start = script.find("have_vulkan() {").expect(".ci/run defines have_vulkan");
    let body = &script[start..start + script[start..].find("\n}\n").expect("have_vulkan's closing brace") + 3];
    // a listing of a megabyte whose first line names the loader
    let fake = "ldconfig() { echo '\tlibvulkan.so.1 (libc6,x86-64) => /usr/lib/libvulkan.so.1'; head -c 1000000 /dev/zero | tr '\\0' x; echo; }";
    let test = format!("set -euo pipefail\n{fake}\n{body}\nif have_vulkan; then echo found; else echo missing; fi\n");
    let out = Command::new("bash").args(["-c", &test]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // the manifests the function also looks for, as they are on this machine
    let manifest = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"].iter().any(|d| {
        std::fs::read_dir(d)
            .is_ok_and(|mut es| es.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))))
    });
    let want = if manifest { "found" } else { "missing" };
    assert_eq!(
        said,
        want,
        "have_vulkan with the loader first in a 1 MB listing (manifest present: {manifest}); stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let devices = script.find("devices --backend vulkan").expect(".ci/run checks that a Vulkan adapter enumerates");
    let last = script.trim_end().lines().last().unwrap();
    assert_eq!(last, "cargo test --release", "the README's test command ends .ci/run");
    assert!(devices < script.rfind(last).unwrap(), "the adapter check comes before the tests");
}
