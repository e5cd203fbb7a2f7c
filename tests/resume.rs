//! Interrupting a run and resuming it reproduces the uninterrupted run bit for bit.

use elbo::train::{train, Interrupted, TrainOptions};
use std::path::Path;

mod common;
use common::Scratch;

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        out: Some(out.to_path_buf()),
        epochs: 2,
        batch_size: 64,
        hidden: Some(elbo::train::Widths(vec![32])),
        latent_dim: 4,
        train_limit: Some(600),
        test_limit: Some(100),
        binarize: true,
        kl_warmup: 1.5,
        quiet: true,
        ..Default::default()
    }
}

fn dir(name: &str) -> Scratch {
    Scratch::new(&format!("resume-{name}"))
}

/// (epoch, train_loss, test_loss, test_recon, test_kl, kl_weight, steps) per line of
/// metrics.jsonl (none before a new run's first epoch ends, when the file is made).
fn metrics(d: &Path) -> Vec<(u64, f64, f64, f64, f64, f64, u64)> {
    std::fs::read_to_string(d.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let f = |k: &str| v[k].as_f64().unwrap();
            (
                v["epoch"].as_u64().unwrap(),
                f("train_loss"),
                f("test_loss"),
                f("test_recon"),
                f("test_kl"),
                f("kl_weight"),
                v["steps"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn resuming_reproduces_the_uninterrupted_run() {
    let whole = dir("whole");
    train(&opts(&whole)).unwrap();
    let want = metrics(&whole);
    assert_eq!(want.len(), 2);
    let want_params = elbo::Model::load(&whole.join("model.safetensors")).unwrap().params;

    // stopped mid-epoch 2 (10 steps an epoch), and at the boundary of epoch 1
    for stop in [13u32, 10] {
        let part = dir(&format!("part{stop}"));
        let err =
            train(&TrainOptions { stop_after_steps: Some(stop), ..opts(&part) }).expect_err("the run did not stop");
        assert!(err.downcast_ref::<Interrupted>().is_some(), "{err:#}");
        assert!(format!("{err}").contains("--resume"), "{err}");
        assert!(metrics(&part).len() < 2);
        // the resumed run takes its options from the checkpoint: pass nothing else
        train(&TrainOptions { resume: Some(part.to_path_buf()), quiet: true, ..Default::default() }).unwrap();
        assert_eq!(metrics(&part), want, "stopped after {stop} steps, then resumed");
        let got_params = elbo::Model::load(&part.join("model.safetensors")).unwrap().params;
        assert!(got_params == want_params, "stopped after {stop} steps: the final parameters differ");
    }
}

#[test]
fn resume_rejects_missing_and_damaged_checkpoints() {
    let d = dir("bad");
    std::fs::create_dir_all(&d).unwrap();
    let e = format!("{:#}", train(&TrainOptions { resume: Some(d.to_path_buf()), ..Default::default() }).unwrap_err());
    assert!(e.contains("checkpoint.safetensors") && e.contains("--resume"), "{e}");
    std::fs::write(d.join("checkpoint.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    let e = format!("{:#}", train(&TrainOptions { resume: Some(d.to_path_buf()), ..Default::default() }).unwrap_err());
    assert!(e.contains("not a usable elbo checkpoint"), "{e}");
}

#[test]
fn a_larger_epoch_count_extends_a_finished_run() {
    let d = dir("extend");
    train(&opts(&d)).unwrap();
    assert_eq!(metrics(&d).len(), 2);
    // --epochs above the saved count extends the run
    train(&TrainOptions {
        resume: Some(d.to_path_buf()),
        epochs: 3,
        given: given_ids(&["epochs"]),
        quiet: true,
        ..Default::default()
    })
    .unwrap();
    let m = metrics(&d);
    assert_eq!(m.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(m[2].6, 30, "epoch 3 continues the step count");
}

/// Options given on the command line, as `elbo train` records them.
fn given_ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// lr in each line of metrics.jsonl.
fn lrs(d: &Path) -> Vec<f64> {
    std::fs::read_to_string(d.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["lr"].as_f64().unwrap())
        .collect()
}

#[test]
fn the_learning_rate_decays_per_epoch_and_a_resume_can_change_it() {
    let close = |got: &[f64], want: &[f64]| {
        assert_eq!(got.len(), want.len(), "lr per epoch: got {got:?}, want {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 * w, "lr per epoch: got {got:?}, want {want:?}");
        }
    };
    let d = dir("lr-decay");
    train(&TrainOptions { lr: 2e-3, lr_decay: 0.5, ..opts(&d) }).unwrap();
    close(&lrs(&d), &[2e-3, 1e-3]);
    // extending keeps the saved schedule
    train(&TrainOptions {
        resume: Some(d.to_path_buf()),
        epochs: 3,
        given: given_ids(&["epochs"]),
        quiet: true,
        ..Default::default()
    })
    .unwrap();
    close(&lrs(&d), &[2e-3, 1e-3, 5e-4]);
    // a decay given with --resume starts from the rate the schedule had reached
    let given = TrainOptions {
        resume: Some(d.to_path_buf()),
        epochs: 5,
        lr_decay: 0.1,
        given: given_ids(&["epochs", "lr_decay"]),
        quiet: true,
        ..Default::default()
    };
    train(&given).unwrap();
    close(&lrs(&d), &[2e-3, 1e-3, 5e-4, 2.5e-4, 2.5e-5]);
    // and a rate given with --resume replaces it, keeping the saved decay
    let given = TrainOptions {
        resume: Some(d.to_path_buf()),
        epochs: 6,
        lr: 1e-3,
        given: given_ids(&["epochs", "lr"]),
        quiet: true,
        ..Default::default()
    };
    train(&given).unwrap();
    close(&lrs(&d), &[2e-3, 1e-3, 5e-4, 2.5e-4, 2.5e-5, 1e-3]);
    let e = format!("{:#}", train(&TrainOptions { lr_decay: 1.5, ..opts(&dir("lr-bad")) }).unwrap_err());
    assert!(e.contains("--lr-decay must be in (0, 1]"), "{e}");
}

#[test]
fn options_saved_by_earlier_checkpoints_still_resume() {
    // the keys and value forms checkpoints have always stored (no lr_decay: runs saved
    // before the schedule existed had a constant rate)
    let saved = serde_json::json!({
        "dataset": "faces", "data_dir": null, "channels_in": 1, "image_size": [20, 24],
        "test_fraction": 0.2, "arch": "conv", "kind": "ae", "likelihood": "gaussian", "epochs": 7,
        "batch_size": 32, "hidden": 16, "conv_channels": [8, 16], "latent_dim": 5, "lr": 0.002,
        "beta": 0.5, "kl_warmup": 1.5, "free_bits": 0.25, "mc_samples": 2, "seed": 9, "binarize": true,
        "train_limit": 300, "test_limit": null, "checkpoint_every": 4
    });
    let d = dir("saved-options");
    let here = TrainOptions { resume: Some(d.to_path_buf()), quiet: true, ..Default::default() };
    let o = TrainOptions::resumed(&saved, &here, 3).unwrap();
    assert_eq!(o.dataset, elbo::train::DatasetChoice::Faces);
    assert_eq!(o.image_size, Some((20, 24)));
    use elbo::model::{Arch, Likelihood, ModelKind};
    assert_eq!((o.arch, o.kind, o.likelihood), (Arch::Conv, ModelKind::Ae, Likelihood::Gaussian));
    assert_eq!(
        (o.epochs, o.batch_size, o.hidden.clone(), o.latent_dim),
        (7, 32, Some(elbo::train::Widths(vec![16])), 5)
    );
    assert_eq!(o.conv_channels, vec![8, 16]);
    assert_eq!((o.lr, o.lr_decay, o.lr_decay_start), (0.002, 1.0, 1));
    // and none of the schedules, Adam epsilons and presets that came after them
    assert_eq!((o.lr_schedule, o.adam_eps, o.preset), (elbo::train::LrSchedule::Exp, 1e-8, None));
    assert_eq!((o.beta, o.kl_warmup, o.free_bits, o.mc_samples), (0.5, 1.5, 0.25, 2));
    assert_eq!((o.seed, o.binarize, o.train_limit, o.test_limit, o.checkpoint_every), (9, true, Some(300), None, 4));
    assert_eq!(o.out.as_deref(), Some(d.to_path_buf().as_path()), "a resumed run writes into the folder it resumes");
    // and what is saved now reads back the same
    let again = TrainOptions::resumed(&serde_json::to_value(&o).unwrap(), &here, 3).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&o).unwrap());
    let e = format!("{:#}", TrainOptions::resumed(&serde_json::json!({"epochs": "many"}), &here, 3).unwrap_err());
    assert!(e.contains("options are damaged"), "{e}");
}

/// A new run refuses a folder that holds a run unless told to replace it, and with
/// --overwrite leaves the old run whole until its own first epoch ends: a run that fails
/// before then changes nothing.
#[test]
fn a_new_run_does_not_overwrite_a_run_unless_asked() {
    let d = dir("overwrite");
    train(&opts(&d)).unwrap();
    let (old_metrics, old_model) = (metrics(&d), std::fs::read(d.join("model.safetensors")).unwrap());
    let e = format!("{:#}", train(&TrainOptions { lr: 2e-3, ..opts(&d) }).unwrap_err());
    assert!(e.contains("holds a run") && e.contains("--resume") && e.contains("--overwrite"), "{e}");
    assert_eq!(metrics(&d), old_metrics, "a refused run changed the metrics");
    // replaced, but stopped before its first epoch ended: the old run is as it was
    let stopped = TrainOptions { overwrite: true, stop_after_steps: Some(3), ..opts(&d) };
    assert!(train(&stopped).unwrap_err().downcast_ref::<Interrupted>().is_some());
    assert_eq!(metrics(&d), old_metrics, "the stopped run changed the old metrics");
    assert!(std::fs::read(d.join("model.safetensors")).unwrap() == old_model, "the old model changed");
    // replaced and finished: the new run's history alone
    train(&TrainOptions { overwrite: true, lr: 2e-3, ..opts(&d) }).unwrap();
    let new = metrics(&d);
    assert_eq!(new.len(), 2);
    assert!(new != old_metrics, "the second run wrote the same metrics");
}

/// One process a run folder: while one holds it, another stops at once naming it.
#[test]
fn a_run_folder_in_use_is_refused() {
    let d = dir("locked");
    std::fs::create_dir_all(&d).unwrap();
    let held = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(d.join(".lock")).unwrap();
    held.try_lock().unwrap();
    std::fs::write(d.join(".lock"), "4242").unwrap();
    let e = format!("{:#}", train(&opts(&d)).unwrap_err());
    assert!(e.contains("in use by another elbo process (pid 4242)"), "{e}");
    drop(held);
    train(&opts(&d)).unwrap();
}

/// A temporary file that a killed process left half-written in a run folder is removed
/// when the next run takes the folder.
#[test]
fn a_dead_processs_temporary_files_are_removed() {
    let d = dir("stale");
    std::fs::create_dir_all(&d).unwrap();
    let stale = d.join(".checkpoint.safetensors.tmp-999999");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    train(&opts(&d)).unwrap();
    assert!(!stale.exists(), "the stale temporary file is still there");
}

/// A byte changed inside a checkpoint's or a model's tensors is found when the file is
/// read (their tensors' checksum is in the metadata), not trained on or evaluated.
#[test]
fn a_changed_byte_in_the_tensors_is_found() {
    let d = dir("flipped");
    train(&opts(&d)).unwrap();
    for (file, load) in [
        (
            "checkpoint.safetensors",
            (|p: &Path| elbo::train::checkpoint::Checkpoint::load(p).map(|_| ())) as fn(&Path) -> anyhow::Result<()>,
        ),
        ("model.safetensors", |p: &Path| elbo::Model::load(p).map(|_| ())),
    ] {
        let path = d.join(file);
        load(&path).unwrap_or_else(|e| panic!("{file} as written: {e:#}"));
        let mut bytes = std::fs::read(&path).unwrap();
        // the tensors follow the header: change a byte near the end
        let at = bytes.len() - 7;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let e = format!("{:#}", load(&path).expect_err("a changed byte went unnoticed"));
        assert!(e.contains("checksum") && e.contains("damaged"), "{file}: {e}");
    }
    let e = format!(
        "{:#}",
        train(&TrainOptions { resume: Some(d.to_path_buf()), quiet: true, ..Default::default() }).unwrap_err()
    );
    assert!(e.contains("checksum"), "--resume of the changed checkpoint: {e}");
}

/// Options that define a run are refused with --resume, naming them; those a resumed run
/// may change are taken.
#[test]
fn resume_refuses_what_cannot_change() {
    let d = dir("fixed-options");
    let saved = serde_json::to_value(TrainOptions { batch_size: 32, ..Default::default() }).unwrap();
    let given = |ids: &[&str]| TrainOptions {
        resume: Some(d.to_path_buf()),
        batch_size: 64,
        checkpoint_every: 7,
        given: given_ids(ids),
        ..Default::default()
    };
    let e =
        format!("{:#}", TrainOptions::resumed(&saved, &given(&["batch_size", "out", "conv_channels"]), 2).unwrap_err());
    assert!(e.contains("--batch-size, --out, --channels cannot change when a run is resumed"), "{e}");
    let o = TrainOptions::resumed(&saved, &given(&["epochs", "checkpoint_every"]), 2).unwrap();
    assert_eq!((o.batch_size, o.checkpoint_every), (32, 7), "the saved batch size, the given checkpoint interval");
}

/// A run that fails before it writes anything leaves no folder behind (not even its lock).
#[test]
fn a_run_that_fails_before_writing_leaves_no_folder() {
    let d = dir("failed-early");
    assert!(!d.exists());
    // one batch of 64 images is more than a 100-byte limit: refused when the trainer is built
    let e = format!("{:#}", train(&TrainOptions { data_limit_mib: Some(1e-4), ..opts(&d) }).unwrap_err());
    assert!(e.contains("use a batch of at most"), "{e}");
    assert!(!d.exists(), "the failed run left {} behind", d.display());
}
