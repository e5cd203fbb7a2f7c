//! Sizes past what the machine holds are errors that name the value, before anything is
//! allocated for them; options that do not apply to a dataset are refused.

mod common;
use common::Scratch;
use std::process::Output;

fn elbo(args: &[&str]) -> Output {
    common::elbo_command().args(args).output().unwrap()
}

/// Fails unless `o` is an error exit (1, not an abort) whose message contains `says`.
fn refused(what: &str, o: &Output, says: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{what}: exit {:?}, stderr: {err}", o.status);
    assert!(err.contains(says), "{what}: {says:?} missing from: {err}");
}

#[test]
fn a_model_whose_metadata_claims_a_huge_image_is_refused() {
    let dir = Scratch::new("limits_metadata");
    let run = dir.as_ref().join("run");
    let o = elbo(&[
        "train",
        "--epochs",
        "1",
        "--train-limit",
        "100",
        "--test-limit",
        "20",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // the same tensors under metadata that says 100000x100000
    let bytes = std::fs::read(run.join("model.safetensors")).unwrap();
    let mut meta = elbo::model::Model::metadata(&bytes).unwrap();
    meta.insert("width".into(), "100000".into());
    meta.insert("height".into(), "100000".into());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let huge = dir.as_ref().join("huge");
    std::fs::create_dir_all(&huge).unwrap();
    safetensors::serialize_to_file(st.tensors(), Some(meta), &huge.join("model.safetensors")).unwrap();
    let out = dir.as_ref().join("out");
    let (m, o) = (huge.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        &["sample", "--model", m, "--n", "4", "--out", o][..],
        &["eval", "--model", m, "--limit", "4", "--out", o],
        &["restore", "--model", m, "--n", "2", "--out", o],
    ] {
        refused(&format!("{args:?}"), &elbo(args), "100000x100000x1 model");
    }
}

#[test]
fn an_image_size_past_the_adapter_is_refused_before_resizing() {
    let dir = Scratch::new("limits_image_size");
    let images = dir.as_ref().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..4 {
        image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y * i) as u8]))
            .save(images.join(format!("{i}.png")))
            .unwrap();
    }
    let out = dir.as_ref().join("run");
    for model in ["mlp", "conv"] {
        let o = elbo(&[
            "train",
            "--dataset",
            images.to_str().unwrap(),
            "--model",
            model,
            "--image-size",
            "100000",
            "--no-cache",
            "--out",
            out.to_str().unwrap(),
        ]);
        refused(&format!("{model} --image-size 100000"), &o, "--image-size 100000x100000");
        assert!(String::from_utf8_lossy(&o.stderr).contains("fits with --image-size"), "no size that fits is named");
        assert!(!out.exists(), "a refused run left {}", out.display());
    }
}

#[test]
fn folder_options_are_refused_for_the_shipped_datasets() {
    let dir = Scratch::new("limits_shipped");
    let out = dir.as_ref().join("run");
    for (dataset, flag, value) in
        [("faces", "--channels-in", "3"), ("faces", "--image-size", "32"), ("mnist", "--image-size", "14")]
    {
        let o = elbo(&["train", "--dataset", dataset, flag, value, "--epochs", "1", "--out", out.to_str().unwrap()]);
        refused(&format!("{dataset} {flag} {value}"), &o, &format!("{flag} applies to a folder of images"));
    }
}

#[test]
fn run_folders_are_named_by_their_utc_start() {
    // the civil dates of day counts around the leap days and the century rules, against
    // dates counted day by day from 1970
    let mut date = (1970i64, 1i64, 1i64);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = |y: i64, m: i64| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    for day in 0..150_000u64 {
        if day % 97 == 0 || (date.1 == 2 && date.2 >= 28) || (date.1 == 3 && date.2 == 1) {
            let secs = day * 86400 + 5 * 3600 + 30 * 60 + 12;
            let want = format!("{:04}-{:02}-{:02}T05-30-12", date.0, date.1, date.2);
            assert_eq!(elbo::train::utc_stamp(secs), want, "day {day}");
        }
        date.2 += 1;
        if date.2 > month_days(date.0, date.1) {
            date = if date.1 == 12 { (date.0 + 1, 1, 1) } else { (date.0, date.1 + 1, 1) };
        }
    }
}

#[test]
fn backends_that_cannot_run_the_kernels_say_why() {
    let dir = Scratch::new("limits_backends");
    let out = dir.as_ref().join("run");
    let (other, other_says) = if cfg!(target_os = "linux") {
        (vec![("dx12", "DirectX 12 exists only on Windows"), ("metal", "Metal exists only on Apple's systems")], true)
    } else {
        (Vec::new(), false)
    };
    assert!(other_says || !cfg!(target_os = "linux"));
    for (backend, says) in [("gl", "do not compile for OpenGL")].into_iter().chain(other) {
        let o = elbo(&[
            "train",
            "--backend",
            backend,
            "--epochs",
            "1",
            "--train-limit",
            "20",
            "--out",
            out.to_str().unwrap(),
        ]);
        refused(&format!("--backend {backend}"), &o, says);
        let lines = String::from_utf8_lossy(&o.stderr).lines().count();
        assert!(lines <= 3, "--backend {backend}: {lines} lines of errors");
        assert!(!out.exists());
    }
}
