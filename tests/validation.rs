//! `--validation` holds training images out, keeps the best epoch's model by their loss
//! and stops early on it, and never lets the test set choose: a run whose test images
//! are replaced by their negatives chooses and stops exactly as the real one does.

mod common;
use common::Scratch;

use elbo::model::Model;
use elbo::train::{train, TrainOptions, Widths};
use std::io::Read;
use std::path::Path;

fn opts(out: &Path, data_dir: Option<&Path>) -> TrainOptions {
    TrainOptions {
        out: Some(out.to_path_buf()),
        data_dir: data_dir.map(Path::to_path_buf),
        epochs: 40,
        batch_size: 25,
        hidden: Some(Widths(vec![64])),
        latent_dim: 4,
        lr: 0.01,
        train_limit: Some(250),
        test_limit: Some(100),
        validation: Some(50.0),
        early_stop: Some(1),
        quiet: true,
        ..Default::default()
    }
}

/// MNIST with every test image replaced by its negative (255 - p): the training files
/// as they are, the test images written uncompressed (the loader takes either).
fn negated_mnist(to: &Path) {
    let from = elbo::data::mnist_dir(None);
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let gz = std::fs::read(from.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
    // the IDX header (16 bytes) stays
    for p in &mut raw[16..] {
        *p = 255 - *p;
    }
    std::fs::write(to.join("t10k-images-idx3-ubyte"), raw).unwrap();
}

/// Each metrics line's (epoch, val_loss, test_loss).
fn metrics(d: &Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(d.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["epoch"].as_u64().unwrap(), v["val_loss"].as_f64().unwrap(), v["test_loss"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn validation_chooses_and_stops_without_the_test_set() {
    let (real, negated, data) = (Scratch::new("val-real"), Scratch::new("val-negated"), Scratch::created("val-data"));
    negated_mnist(&data);
    train(&opts(&real, None)).unwrap();
    train(&opts(&negated, Some(&data))).unwrap();
    let (a, b) = (metrics(&real), metrics(&negated));

    // the test set differs, and nothing chosen does
    let test_differs = a.iter().zip(&b).all(|(x, y)| (x.2 - y.2).abs() > 1.0);
    assert!(test_differs, "the negated test set should score differently: {a:?} against {b:?}");
    let vals = |m: &[(u64, f64, f64)]| m.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>();
    assert_eq!(vals(&a), vals(&b), "(epoch, val_loss) with the real test set and with the negated one");
    // (the files' metadata holds the GEMM variants' timings, which differ run to run)
    let best_real = std::fs::read(real.join("best.safetensors")).unwrap();
    let params = |d: &Path| Model::load(&d.join("best.safetensors")).unwrap().params;
    let differ = params(&real).iter().zip(&params(&negated)).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "parameters of best.safetensors that differ between the two runs");

    // best.safetensors is the epoch of the lowest validation loss, and the run stopped
    // one epoch (the patience) after it, before its 40 epochs
    let (best_epoch, _) = vals(&a).into_iter().min_by(|x, y| x.1.total_cmp(&y.1)).unwrap();
    let meta = Model::metadata(&best_real).unwrap();
    assert_eq!(meta["epoch"], best_epoch.to_string(), "best.safetensors' epoch; validation losses {:?}", vals(&a));
    let last = a.last().unwrap().0;
    assert_eq!(last, best_epoch + 1, "stopped at epoch {last}; best {best_epoch}; {:?}", vals(&a));
    assert!(last < 40, "no early stop in 40 epochs");
    // and the validation images came out of the 250 training images
    assert_eq!(a.len(), last as usize);
}

#[test]
fn validation_and_early_stop_are_checked() {
    let out = Scratch::new("val-bad");
    for (validation, early_stop, want) in [
        (Some(250.0), None, "--validation 250 leaves no validation image or no training image"),
        (Some(0.0), None, "--validation 0 leaves"),
        (None, Some(3), "--early-stop watches the validation loss"),
    ] {
        let e = format!("{:#}", train(&TrainOptions { validation, early_stop, ..opts(&out, None) }).unwrap_err());
        assert!(e.contains(want), "{e}");
    }
    assert!(!out.join("metrics.jsonl").exists(), "a refused run wrote its metrics");
}
