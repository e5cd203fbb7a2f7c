//! The profiler's events and the bench report's shape, on the test adapter.

mod common;
use common::gpu;
use elbo::data::Dataset;
use elbo::model::{Model, VaeConfig};
use elbo::train::{Hyper, Trainer};

fn synthetic(len: usize) -> Dataset {
    let pixels = (0..len * 64).map(|i| (elbo::rng::hash_u32(i as u32) & 0xff) as u8).collect();
    Dataset { name: "synthetic".into(), channels: 1, width: 8, height: 8, pixels, labels: None, len }
}

#[test]
fn profiler_times_every_dispatch_of_a_step() {
    let g = gpu();
    let (train, test) = (synthetic(64), synthetic(16));
    let config = VaeConfig::mlp(8, 8, 32, 4);
    let hyper = Hyper::new(1e-3, 1);
    let mut t = Trainer::new(g, Model::init(&config, 1), hyper, 16, &train, &test).unwrap();
    t.set_order(&(0..64).collect::<Vec<u32>>()).unwrap();
    let runs = elbo::bench::profile_steps(g, &mut t, 1, 3).unwrap();
    assert_eq!(runs.len(), 3);
    let timer = elbo::kernels::timing::Timer::for_gpu(g);
    // the weight copy is timed as one more event where a step makes it
    let copy_timed =
        t.copies_weights_each_step() && g.features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
    let expected = t.dispatches_per_step() + usize::from(copy_timed);
    for run in &runs {
        assert_eq!(run.len(), expected, "events: {:?}", run.iter().map(|e| &e.label).collect::<Vec<_>>());
        assert!(run.iter().all(|e| e.dur_ns >= 0.0 && e.start_ns >= 0.0));
        assert!(run.iter().map(|e| e.dur_ns).sum::<f64>() > 0.0, "{timer:?} gave no time at all");
        // dispatches come in the order of the step and do not overlap
        for w in run.windows(2) {
            assert!(w[1].start_ns + 1.0 >= w[0].start_ns + w[0].dur_ns, "{} overlaps {}", w[0].label, w[1].label);
        }
    }
    let rows = elbo::bench::table::summarize(&runs);
    assert!(rows.windows(2).all(|w| w[0].total_ns >= w[1].total_ns), "rows are not sorted by time");
    assert!(rows.iter().all(|r| r.calls == 3 || r.label.starts_with("gemm_forward")), "{rows:?}");
    let table = elbo::bench::table::format_table(&rows);
    // the weight gradient, with Adam fused into it on CPU adapters
    assert!(table.contains("gemm_backward_weight fc1") || table.contains("gemm_backward_weight_adam fc1"), "{table}");
    assert!(table.contains("share"));
    let trace = elbo::bench::table::chrome_trace(&runs, "test");
    let events = trace["traceEvents"].as_array().unwrap();
    assert_eq!(events.len(), 3 * expected);
    assert!(events.iter().all(|e| e["ph"] == "X" && e["dur"].as_f64().is_some()));
}

#[test]
fn spread_is_median_and_deciles() {
    let v: Vec<f64> = (1..=11).map(f64::from).collect();
    assert_eq!(elbo::bench::spread(&v), (6.0, 2.0, 10.0));
}

/// A report as the JSON reads, through serde: the tests' reports are as small as they can
/// be, as the oldest reports are.
fn bench_report(v: &serde_json::Value) -> elbo::bench::Report {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

#[test]
fn compare_lines_up_two_reports() {
    let a = serde_json::json!({"adapter": {"name": "A"}, "kernels": [{"kernel": "gemm", "shape": "s", "median_us": 10.0}],
        "steps": [{"model": "m", "batch": 128, "median_ms": 2.0}]});
    let b = serde_json::json!({"adapter": {"name": "B"}, "kernels": [{"kernel": "gemm", "shape": "s", "median_us": 5.0}],
        "steps": [{"model": "m", "batch": 128, "median_ms": 8.0}]});
    let s = elbo::bench::compare(&bench_report(&a), &bench_report(&b));
    assert!(s.contains("0.50") && s.contains("4.00"), "{s}");
    // the fixed costs line up too, where both reports have them
    let (mut a2, mut b2) = (a.clone(), b.clone());
    a2["fixed_costs"] = serde_json::json!({"submit_wait_us": 20.0, "one_dispatch_us": 60.0, "each_dispatch_us": 40.0});
    b2["fixed_costs"] = serde_json::json!({"submit_wait_us": 10.0, "one_dispatch_us": 30.0, "each_dispatch_us": 5.0});
    let s = elbo::bench::compare(&bench_report(&a2), &bench_report(&b2));
    let row = s.lines().find(|l| l.starts_with("each further dispatch")).unwrap_or_else(|| panic!("{s}"));
    assert!(row.contains("40.0") && row.contains("5.0") && row.trim_end().ends_with("0.12"), "{s}");
    // a report from before fixed costs were measured still lines up with one after
    let s = elbo::bench::compare(&bench_report(&a), &bench_report(&b2));
    let row = s.lines().find(|l| l.starts_with("each further dispatch")).unwrap_or_else(|| panic!("{s}"));
    assert!(row.contains(" - ") && row.contains("5.0") && row.trim_end().ends_with('-'), "{s}");
    let text = elbo::bench::format_bench(&bench_report(&a2));
    assert!(text.contains("each further dispatch in the same pass 40.0 us"), "{text}");
    // and what the dispatches of a batch-128 step carry of it
    a2["steps"] = serde_json::json!([{"model": "m", "batch": 128, "median_ms": 2.0, "dispatches": 13},
                                     {"model": "m", "batch": 32, "median_ms": 1.0, "dispatches": 13}]);
    let text = elbo::bench::format_bench(&bench_report(&a2));
    assert!(
        text.contains("m at batch 128: 13 dispatches x 40.0 us = 0.52 ms of fixed cost, 26% of the step"),
        "{text}"
    );
    assert!(!text.contains("at batch 32:"), "{text}");

    // the same pass and layer in another variant lines up, and the row names B's kernel;
    // another layer does not
    let kernels = |v: &str, us: f64| {
        serde_json::json!([{"kernel": format!("conv2d_forward{v} enc.conv2"), "shape": "s", "median_us": us},
                           {"kernel": format!("conv2d_forward{v} dec.deconv1"), "shape": "t", "median_us": us}])
    };
    let a = serde_json::json!({"adapter": {"name": "A"}, "kernels": kernels("_subgroup", 40.0), "steps": []});
    let mut b = serde_json::json!({"adapter": {"name": "B"}, "kernels": kernels("_wide", 10.0), "steps": []});
    b["kernels"][1]["kernel"] = "conv2d_forward_wide enc.conv1".into();
    let s = elbo::bench::compare(&bench_report(&a), &bench_report(&b));
    let row = |layer: &str| s.lines().find(|l| l.contains(layer)).unwrap_or_else(|| panic!("no {layer} row: {s}"));
    assert!(
        row("enc.conv2").contains("0.25") && row("enc.conv2").contains("(B: conv2d_forward_wide enc.conv2)"),
        "{s}"
    );
    assert!(row("dec.deconv1").trim_end().ends_with('-'), "{s}");
}

/// The reports in benches/results, each written by the elbo of its day (the oldest
/// without fixed costs, kernels' models, rounds or the epoch comparison), load with every
/// key they hold, and the oldest and the newest still compare step by step.
#[test]
fn every_report_in_benches_results_loads_and_compares() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "reports in {}: {files:?}", dir.display());
    for f in &files {
        let r = elbo::bench::read_report(f).unwrap_or_else(|e| panic!("{e:#}"));
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), json, "{} lost or gained keys in loading", f.display());
        assert!(!r.steps.is_empty() && format_has_steps(&r), "{}", f.display());
    }
    let (old, new) = ("lavapipe-2core.json", "lavapipe-2core-512-awake.json");
    let [a, b] = [old, new].map(|f| elbo::bench::read_report(&dir.join(f)).unwrap());
    assert!(a.fixed_costs.is_none() && a.pytorch_epoch.is_none() && b.fixed_costs.is_some());
    let s = elbo::bench::compare(&a, &b);
    let steps = s.lines().skip_while(|l| !l.starts_with("training step")).skip(1);
    let row: Vec<&str> = steps
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() == 6 && w[..3] == ["mlp-vae", "784-400-20", "128"])
        .unwrap_or_else(|| panic!("no MLP step at batch 128: {s}"));
    let (ta, tb, ratio) = (row[3].parse::<f64>().unwrap(), row[4].parse::<f64>().unwrap(), row[5]);
    assert_eq!(ratio, format!("{:.2}", b.steps[1].median_ms / a.steps[1].median_ms), "{s}");
    assert!((ta - a.steps[1].median_ms).abs() < 0.01 && (tb - b.steps[1].median_ms).abs() < 0.01, "{s}");
    // and a file that is JSON but no report says so
    let not_one = std::env::temp_dir().join(format!("elbo-not-a-report-{}.json", std::process::id()));
    std::fs::write(&not_one, r#"{"kernels": []}"#).unwrap();
    let err = elbo::bench::read_report(&not_one).unwrap_err().to_string();
    let _ = std::fs::remove_file(&not_one);
    assert!(err.contains("is not an `elbo bench --json` report"), "{err}");
}

fn format_has_steps(r: &elbo::bench::Report) -> bool {
    let text = elbo::bench::format_bench(r);
    r.steps.iter().all(|st| text.lines().any(|l| l.starts_with(&format!("{:<22} {} ", st.model, st.batch))))
}

/// A report survives writing and reading: the same JSON, keys the PyTorch script added
/// that elbo does not know included, in the order the reports have always had.
#[test]
fn a_report_round_trips() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results/lavapipe-2core-512-awake.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    // a key elbo does not know, after all it knows (where serde writes the unknown ones)
    json["pytorch"][0]["threads"] = 2.into();
    let r = bench_report(&json);
    assert_eq!(r.pytorch[0].extra.get("threads"), Some(&2.into()));
    let text = serde_json::to_string_pretty(&r).unwrap();
    assert_eq!(text, serde_json::to_string_pretty(&json).unwrap(), "not the JSON it was read from");
    let again: elbo::bench::Report = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::from_str::<serde_json::Value>(&text).unwrap());
    assert_eq!(elbo::bench::format_bench(&again), elbo::bench::format_bench(&r));
}

#[test]
fn format_bench_reports_the_epoch_rounds() {
    let r = serde_json::json!({"adapter": {"name": "A"}, "kernels": [], "steps": [],
        "pytorch_epoch": {"model": "mlp-vae", "batch": 128, "loader": "torchvision DataLoader",
            "elbo_s": 2.0, "pytorch_s": 2.5, "elbo_over_pytorch": 0.8,
            "rounds": [{"elbo_over_pytorch": 0.75}, {"elbo_over_pytorch": 0.8}, {"elbo_over_pytorch": 0.9}]}});
    let text = elbo::bench::format_bench(&bench_report(&r));
    assert!(
        text.contains("2.50 s an epoch at batch 128, elbo 2.00 s in the same rounds; elbo / PyTorch = 0.80x")
            && text.contains("0.75, 0.80, 0.90"),
        "{text}"
    );
}

/// Repeats that spread past `bench::UNSTEADY_SPREAD` (a comparison's rounds, a step's p10
/// and p90) are flagged as unsteady in the report, and steady ones are not.
#[test]
fn format_bench_flags_unsteady_measurements() {
    let report = |epoch_rounds: &[f64], step_ms: (f64, f64)| {
        let rounds: Vec<serde_json::Value> =
            epoch_rounds.iter().map(|x| serde_json::json!({"elbo_over_pytorch": x})).collect();
        let r = serde_json::json!({"adapter": {"name": "A"}, "kernels": [],
            "steps": [{"model": "mlp-vae", "batch": 128, "median_ms": 6.0, "p10_ms": step_ms.0, "p90_ms": step_ms.1,
                "images_per_second": 21000.0, "dispatches": 13, "submits": 1}],
            "pytorch_epoch": {"model": "mlp-vae", "batch": 128, "loader": "torchvision DataLoader",
                "elbo_s": 3.0, "pytorch_s": 3.0, "elbo_over_pytorch": 1.0, "rounds": rounds}});
        elbo::bench::format_bench(&bench_report(&r))
    };
    let steady = report(&[0.95, 1.0, 1.1], (5.9, 6.3));
    assert!(!steady.contains("unsteady"), "{steady}");
    let busy_epoch = report(&[0.9, 1.0, 1.3], (5.9, 6.3));
    assert!(busy_epoch.contains("unsteady: the rounds range from 0.90x to 1.30x"), "{busy_epoch}");
    let busy_steps = report(&[0.95, 1.0, 1.1], (5.9, 9.0));
    let row = busy_steps.lines().find(|l| l.starts_with("mlp-vae")).unwrap();
    assert!(row.ends_with("unsteady") && busy_steps.contains("(unsteady: p90 more than"), "{busy_steps}");
    // a bench run with its step benchmarks skipped (`--batch-sizes none`) prints no empty step table
    assert!(steady.contains("training step"), "{steady}");
    let no_steps = serde_json::json!({"adapter": {"name": "A"}, "kernels": [], "steps": []});
    let text = elbo::bench::format_bench(&bench_report(&no_steps));
    assert!(!text.contains("training step"), "{text}");
}

/// The adapter line and the bench report give lavapipe's worker threads, counted: as
/// many as LP_NUM_THREADS asks for, else at least one.
#[test]
fn the_adapter_line_counts_lavapipe_threads() {
    let g = gpu();
    assert!(g.is_llvmpipe(), "this test is about lavapipe, which CI installs; the adapter is {}", g.adapter_line());
    let threads = elbo::gpu::llvmpipe_threads().expect("Linux lists a process's threads in /proc/self/task");
    match std::env::var(elbo::gpu::LP_THREADS) {
        Ok(v) => assert_eq!(v.trim().parse::<usize>().ok(), Some(threads), "LP_NUM_THREADS={v}"),
        Err(_) => assert!(threads >= 1, "no llvmpipe-N thread found"),
    }
    // followed by the spinning threads' note (elbo::gpu::awake) where they run
    let awake = g.spinners.map(|s| format!(", {}", elbo::gpu::awake::describe(s.threads()))).unwrap_or_default();
    assert!(g.adapter_line().ends_with(&format!(", {threads} threads{awake})")), "{}", g.adapter_line());
    let r = serde_json::json!({"adapter": {"name": "A", "llvmpipe_threads": threads}, "kernels": [], "steps": []});
    let text = elbo::bench::format_bench(&bench_report(&r));
    assert!(text.contains(&format!(", {threads} threads)")), "{text}");
    let r = serde_json::json!({"adapter": {"name": "A", "llvmpipe_threads": threads, "awake_threads": 3}, "kernels": [], "steps": []});
    let text = elbo::bench::format_bench(&bench_report(&r));
    assert!(text.contains(&format!(", {threads} threads, {})", elbo::gpu::awake::describe(3))), "{text}");
}

/// Each vector width compiles into its own shader cache directory (Mesa 22.3 keys its
/// cache without the width, and a kernel built at one width came back at the other).
#[test]
fn lavapipe_keeps_a_shader_cache_for_its_vector_width() {
    use std::path::PathBuf;
    let g = gpu();
    assert!(g.is_llvmpipe(), "this test is about lavapipe, which CI installs; the adapter is {}", g.adapter_line());
    if let Ok(bits) = std::env::var(elbo::gpu::LP_VECTOR_WIDTH) {
        assert!(
            g.info.name.contains(&format!("{} bits", bits.trim())),
            "{} at LP_NATIVE_VECTOR_WIDTH={bits}",
            g.info.name
        );
        let dir = PathBuf::from(std::env::var_os(elbo::gpu::SHADER_CACHE_DIR).expect("a cache directory is set"));
        assert_eq!(dir.file_name().unwrap().to_str(), Some(format!("elbo-lavapipe-{}", bits.trim()).as_str()));
    }
    let d = |bits: &str, base: &str| elbo::gpu::shader_cache_dir(bits, PathBuf::from(base)).unwrap();
    assert_eq!(d("512", "/c"), PathBuf::from("/c/elbo-lavapipe-512"));
    // a child at the other width starts from its parent's base
    assert_eq!(d("256", "/c/elbo-lavapipe-512"), PathBuf::from("/c/elbo-lavapipe-256"));
    assert_eq!(d("512", "/c/elbo-lavapipe-512"), PathBuf::from("/c/elbo-lavapipe-512"));
}

/// The vector width is chosen before the driver loads, from the Mesa version in the
/// lavapipe library the loader's manifests name; that must be the driver wgpu then
/// opens (its driver-info string), and the width follows `wide_vectors_pay` for it.
#[test]
fn the_vector_width_follows_the_lavapipe_version_found_before_loading() {
    use elbo::gpu::{lavapipe_mesa_version, manifest_library, mesa_version_in, wide_vectors_pay};
    assert_eq!(mesa_version_in(b"\0xMesa 22.3.6 (LLVM 15.0.6)\0"), Some((22, 3)));
    assert_eq!(mesa_version_in(b"Mesa driver\0Mesa 25.0.7-2~bpo12+1"), Some((25, 0)));
    assert_eq!(mesa_version_in(b"Mesa 25\0"), None);
    assert_eq!(
        manifest_library(r#"{"ICD": {"api_version": "1.1.230", "library_path": "/x/libvulkan_lvp.so"}}"#).as_deref(),
        Some("/x/libvulkan_lvp.so")
    );
    assert!(wide_vectors_pay((22, 3)) && !wide_vectors_pay((25, 0)));
    let g = gpu();
    assert!(g.is_llvmpipe(), "this test is about lavapipe, which CI installs; the adapter is {}", g.adapter_line());
    let loaded = mesa_version_in(g.info.driver_info.as_bytes());
    assert!(loaded.is_some(), "no Mesa version in the driver info {:?}", g.info.driver_info);
    assert_eq!(lavapipe_mesa_version(), loaded, "the version found before loading is not the loaded driver's");
    // tests/common chose the width as the program does, unless the environment gave it
    // (as the rerun at the other width does)
    if !elbo::gpu::vector_width_given() && std::arch::is_x86_feature_detected!("avx512f") {
        let wide = wide_vectors_pay(loaded.unwrap());
        assert_eq!(g.info.name.contains("512 bits"), wide, "{} with Mesa {loaded:?}", g.info.name);
    }
}

/// The library's bench refuses sizes of 0 before it does any work (the square GEMM of
/// size 0 used to divide by zero).
#[test]
fn bench_refuses_sizes_of_zero() {
    let opts = elbo::bench::BenchOptions { squares: vec![64, 0], ..Default::default() };
    let err = elbo::bench::bench(gpu(), &opts, &|_| {}).unwrap_err().to_string();
    assert!(err.contains("square of 0"), "{err}");
}
