//! A training run's TensorBoard event files, read back: the record framing and its
//! checksums, the scalars at every logging interval and epoch (the epoch's equal to
//! metrics.jsonl's), the sample and reconstruction grids (equal to the PNG files), a
//! resumed run's second file beside the first, and an overwritten run's files gone.

mod common;
use common::Scratch;

use elbo::plot::tensorboard::{masked_crc, read_events, record, Event, Kind, What};
use elbo::train::{train, TrainOptions, Widths};
use std::path::{Path, PathBuf};

fn opts(out: &Path, epochs: usize) -> TrainOptions {
    TrainOptions {
        out: Some(out.to_path_buf()),
        epochs,
        batch_size: 20,
        hidden: Some(Widths(vec![32])),
        latent_dim: 3,
        train_limit: Some(200),
        test_limit: Some(40),
        log_every: 3,
        quiet: true,
        ..Default::default()
    }
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."))
        .collect();
    files.sort();
    files
}

/// (step, tag, value) of every scalar, in file order.
fn scalars(events: &[Event]) -> Vec<(i64, String, f32)> {
    let mut out = Vec::new();
    for e in events {
        if let Some(What::Summary(s)) = &e.what {
            for v in &s.value {
                if let Some(Kind::SimpleValue(x)) = v.kind {
                    out.push((e.step, v.tag.clone(), x));
                }
            }
        }
    }
    out
}

/// (step, tag, PNG bytes, width, height) of every image.
fn images(events: &[Event]) -> Vec<(i64, String, Vec<u8>, i32, i32)> {
    let mut out = Vec::new();
    for e in events {
        if let Some(What::Summary(s)) = &e.what {
            for v in &s.value {
                if let Some(Kind::Image(im)) = &v.kind {
                    out.push((e.step, v.tag.clone(), im.encoded_image_string.clone(), im.width, im.height));
                }
            }
        }
    }
    out
}

#[test]
fn masked_crc_is_tensorflows() {
    // CRC-32C's published check value: "123456789" gives 0xE3069283; the mask rotates it
    // right by 15 bits and adds 0xa282ead8
    let crc: u32 = 0xE306_9283;
    assert_eq!(masked_crc(b"123456789"), crc.rotate_right(15).wrapping_add(0xa282_ead8));
}

#[test]
fn a_damaged_record_is_an_error() {
    let dir = Scratch::created("tb_damaged");
    let e = Event { wall_time: 1.5, step: 7, what: Some(What::FileVersion("brain.Event:2".into())) };
    let bytes = record(&e);
    let path = dir.as_ref().join("events.out.tfevents.1");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_events(&path).unwrap(), vec![e]);
    for at in [3, 13, bytes.len() - 2] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        assert!(read_events(&path).is_err(), "a flipped bit at byte {at} of {} was read", bad.len());
    }
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(read_events(&path).is_err(), "a cut record was read");
}

#[test]
fn a_run_writes_its_scalars_and_grids_for_tensorboard() {
    let dir = Scratch::new("tb_run");
    let out = dir.as_ref().join("run");
    train(&opts(&out, 2)).unwrap();
    let files = event_files(&out);
    assert_eq!(files.len(), 1, "event files: {files:?}");
    let events = read_events(&files[0]).unwrap();
    assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())), "first event: {:?}", events[0]);

    // 200 images at 20 a step: 10 steps an epoch, the epoch's running loss asked for at
    // steps 3, 6 and 9 (each written once the GPU has got there, unless the epoch ended
    // first) and the epoch's at 10 and 20
    let s = scalars(&events);
    let steps_of = |tag: &str| s.iter().filter(|(_, t, _)| t == tag).map(|(st, _, _)| *st).collect::<Vec<_>>();
    let train_steps = steps_of("train/loss");
    let (ends, within): (Vec<i64>, Vec<i64>) = train_steps.iter().partition(|&&st| st % 10 == 0);
    assert_eq!(ends, vec![10, 20], "train/loss at the epochs' ends: {train_steps:?}");
    assert!(!within.is_empty(), "no train/loss between the epochs' ends: {train_steps:?}");
    assert!(within.iter().all(|st| st % 10 % 3 == 0), "train/loss off the logging interval: {train_steps:?}");
    assert!(train_steps.windows(2).all(|w| w[0] < w[1]), "train/loss steps out of order: {train_steps:?}");
    assert_eq!(steps_of("test/loss"), vec![10, 20], "test/loss steps");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    for (i, line) in metrics.lines().enumerate() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = 10 * (i as i64 + 1);
        for (tag, key) in [("test/loss", "test_loss"), ("train/loss", "train_loss"), ("lr", "lr")] {
            let got = s.iter().find(|(st, t, _)| *st == step && t == tag).unwrap().2;
            let want = m[key].as_f64().unwrap() as f32;
            assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{tag} at step {step}: {got} against {want}");
        }
    }
    for (_, tag, v) in &s {
        assert!(v.is_finite(), "{tag} is {v}");
    }

    let im = images(&events);
    let tags: Vec<(i64, &str)> = im.iter().map(|(st, t, ..)| (*st, t.as_str())).collect();
    assert_eq!(tags, vec![(10, "samples"), (10, "reconstructions"), (20, "samples"), (20, "reconstructions")]);
    for (step, tag, png, w, h) in &im {
        let decoded = image::load_from_memory(png).unwrap_or_else(|e| panic!("{tag} at {step} is no PNG: {e}"));
        assert_eq!((decoded.width() as i32, decoded.height() as i32), (*w, *h), "{tag} at {step}: size");
    }
    // the last epoch's grids are the files' bytes
    assert_eq!(im[2].2, std::fs::read(out.join("samples.png")).unwrap(), "samples differ from samples.png");
    assert_eq!(im[3].2, std::fs::read(out.join("reconstructions.png")).unwrap(), "reconstructions differ");

    // a resumed run adds its own file and keeps the first
    let first = std::fs::read(&files[0]).unwrap();
    let o = common::elbo_command().args(["train", "--quiet", "--epochs", "3", "--resume"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "the resume failed: {}", String::from_utf8_lossy(&o.stderr));
    let files = event_files(&out);
    assert_eq!(files.len(), 2, "after the resume: {files:?}");
    assert!(files.iter().any(|f| std::fs::read(f).unwrap() == first), "the first run's file changed");
    let second = files.iter().find(|f| std::fs::read(f).unwrap() != first).unwrap();
    assert_eq!(scalars(&read_events(second).unwrap()).iter().filter(|(_, t, _)| t == "test/loss").count(), 1);

    // a new run over it (--overwrite) starts with its own file alone
    let mut over = opts(&out, 1);
    over.overwrite = true;
    train(&over).unwrap();
    let files = event_files(&out);
    assert_eq!(files.len(), 1, "after --overwrite: {files:?}");
    let s = scalars(&read_events(&files[0]).unwrap());
    assert_eq!(s.iter().filter(|(_, t, _)| t == "test/loss").map(|(st, ..)| *st).collect::<Vec<_>>(), vec![10]);
}
