//! The IDX reader on valid and damaged files, and MNIST loading errors.

mod common;
use common::Scratch;

use elbo::data::idx::{parse_idx, read_idx};
use std::io::Write;
use std::path::Path;

fn idx_bytes(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    b.extend((0..n).map(|i| (i as u8).wrapping_add(fill)));
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn tmp_dir(name: &str) -> Scratch {
    Scratch::created(&format!("test-{name}"))
}

fn err_of(r: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

#[test]
fn parses_a_valid_file() {
    let idx = parse_idx(&idx_bytes(&[3, 2, 2], 0)).unwrap();
    assert_eq!(idx.dims, vec![3, 2, 2]);
    assert_eq!(idx.data.len(), 12);
    assert_eq!(idx.data[5], 5);
}

#[test]
fn reads_the_shipped_mnist() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let (train, test) = elbo::data::load_mnist(&dir).unwrap();
    assert_eq!((train.len, test.len, train.width, train.height), (60000, 10000, 28, 28));
    assert_eq!(train.pixels.len(), 60000 * 784);
    let labels = train.labels.as_ref().unwrap();
    let mut counts = [0usize; 10];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert!(counts.iter().all(|&c| c > 5000), "label counts {counts:?}");
}

#[test]
fn rejects_damaged_bytes() {
    let good = idx_bytes(&[4, 3], 1);
    assert!(err_of(parse_idx(&good[..2])).contains("shorter than the 4-byte"));
    let mut magic = good.clone();
    magic[0] = 1;
    assert!(err_of(parse_idx(&magic)).contains("magic"));
    let mut ty = good.clone();
    ty[2] = 0x0d;
    assert!(err_of(parse_idx(&ty)).contains("element type"));
    let mut nd = good.clone();
    nd[3] = 9;
    assert!(err_of(parse_idx(&nd)).contains("dimensions"));
    assert!(err_of(parse_idx(&good[..good.len() - 1])).contains("truncated"));
    assert!(err_of(parse_idx(&good[..9])).contains("header"));
    let mut long = good.clone();
    long.push(0);
    assert!(err_of(parse_idx(&long)).contains("need 12 data bytes but the file has 13"));
}

#[test]
fn rejects_damaged_files_naming_them() {
    let dir = tmp_dir("idx");
    let path = dir.join("x.gz");
    let compressed = gz(&idx_bytes(&[10, 5], 0));
    std::fs::write(&path, &compressed[..compressed.len() - 6]).unwrap();
    let e = err_of(read_idx(&path));
    assert!(e.contains("x.gz") && e.contains("gzip"), "{e}");
    let mut corrupt = compressed.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    std::fs::write(&path, &corrupt).unwrap();
    assert!(err_of(read_idx(&path)).contains("x.gz"));
    std::fs::write(&path, gz(&idx_bytes(&[10, 5], 0))).unwrap();
    assert_eq!(read_idx(&path).unwrap().dims, vec![10, 5]);
    let e = err_of(read_idx(&dir.join("missing.gz")));
    assert!(e.contains("missing.gz"), "{e}");
}

fn write_mnist(dir: &Path, train_images: u32, train_labels: u32) {
    let files = [
        ("train-images-idx3-ubyte.gz", idx_bytes(&[train_images, 4, 4], 0)),
        (
            "train-labels-idx1-ubyte.gz",
            idx_bytes(&[train_labels], 0).iter().enumerate().map(|(i, b)| if i >= 8 { b % 10 } else { *b }).collect(),
        ),
        ("t10k-images-idx3-ubyte.gz", idx_bytes(&[3, 4, 4], 0)),
        ("t10k-labels-idx1-ubyte.gz", idx_bytes(&[3], 0)),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), gz(&bytes)).unwrap();
    }
}

#[test]
fn mnist_loading_checks_the_files_belong_together() {
    let dir = tmp_dir("mnist-ok");
    write_mnist(&dir, 6, 6);
    let (train, test) = elbo::data::load_mnist(&dir).unwrap();
    assert_eq!((train.len, test.len, train.width), (6, 3, 4));

    let dir = tmp_dir("mnist-mismatch");
    write_mnist(&dir, 6, 5);
    let e = err_of(elbo::data::load_mnist(&dir));
    assert!(e.contains("6 images") && e.contains("5 labels"), "{e}");

    let dir = tmp_dir("mnist-missing");
    let e = err_of(elbo::data::load_mnist(&dir));
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("--data-dir"), "{e}");
}

#[test]
fn mutated_files_never_panic() {
    // a small fuzzer: random bit flips, truncations and extensions of a valid file,
    // plain and gzipped; every outcome must be Ok or a clean Err
    let good = idx_bytes(&[7, 5, 3], 9);
    let dir = tmp_dir("fuzz");
    let path = dir.join("f.gz");
    let mut errors = 0;
    for i in 0..3000u32 {
        let h = |k: u32| elbo::rng::hash_u32(i.wrapping_mul(7919) ^ k);
        let mut b = if i % 2 == 0 { good.clone() } else { gz(&good) };
        for f in 0..(h(1) % 4) {
            let at = (h(2 + f) as usize) % b.len();
            b[at] ^= 1 << (h(10 + f) % 8);
        }
        match h(20) % 4 {
            0 => b.truncate((h(21) as usize) % (b.len() + 1)),
            1 => b.extend((0..h(22) % 9).map(|k| h(30 + k) as u8)),
            _ => {}
        }
        let outcome = std::panic::catch_unwind(|| parse_idx(&b).is_err());
        assert!(outcome.is_ok(), "parse_idx panicked on case {i}: {b:?}");
        std::fs::write(&path, &b).unwrap();
        let outcome = std::panic::catch_unwind(|| read_idx(&path).is_err());
        errors += outcome.unwrap_or_else(|_| panic!("read_idx panicked on case {i}: {b:?}")) as u32;
    }
    assert!(errors > 1000, "only {errors} of 3000 damaged files were rejected");
}
