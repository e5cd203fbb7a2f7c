//! What the commands on a trained model write never replaces another run's or another
//! command's files, unless --overwrite says so.

mod common;
use common::Scratch;
use std::path::Path;
use std::process::{Command, Output};

fn elbo(args: &[&str]) -> Output {
    let o = common::elbo_command().args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn inference_outputs_take_free_names_unless_overwrite() {
    let dir = Scratch::new("outputs");
    let run = dir.as_ref().join("run");
    let r = run.to_str().unwrap();
    elbo(&[
        "train",
        "--epochs",
        "1",
        "--train-limit",
        "200",
        "--test-limit",
        "40",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--quiet",
        "--out",
        r,
    ]);
    let trained = bytes(&run.join("samples.png"));
    // sample writes beside the model: training's samples.png stays, each call a new file
    let first = elbo(&["sample", "--model", r, "--n", "16", "--seed", "2"]);
    elbo(&["sample", "--model", r, "--n", "16", "--seed", "3"]);
    assert_eq!(bytes(&run.join("samples.png")), trained, "sample replaced training's samples.png");
    assert!(String::from_utf8_lossy(&first.stdout).contains("samples-2.png"), "{first:?}");
    assert_ne!(bytes(&run.join("samples-2.png")), bytes(&run.join("samples-3.png")), "two seeds, one picture");
    // restore into one --out twice: both kept
    let out = dir.as_ref().join("restored");
    let o = out.to_str().unwrap();
    elbo(&["restore", "--model", r, "--n", "4", "--steps", "5", "--out", o]);
    elbo(&["restore", "--model", r, "--n", "4", "--steps", "5", "--mask-kind", "half", "--out", o]);
    assert!(out.join("restore.png").exists() && out.join("restore-2.png").exists());
    // one number frees both of embed's files
    elbo(&["embed", "--model", r, "--out", o]);
    elbo(&["embed", "--model", r, "--out", o]);
    for f in ["embedding.csv", "embedding.png", "embedding-2.csv", "embedding-2.png"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // --overwrite replaces the file of the name itself
    elbo(&["sample", "--model", r, "--n", "16", "--seed", "4", "--overwrite"]);
    assert_ne!(bytes(&run.join("samples.png")), trained, "--overwrite kept the old file");
    assert!(!run.join("samples-4.png").exists());
}

#[test]
fn a_small_batch_still_draws_64_samples_and_an_autoencoder_warns() {
    let dir = Scratch::new("outputs_small_batch");
    let run = dir.as_ref().join("run");
    let r = run.to_str().unwrap();
    let args = ["train", "--epochs", "1", "--train-limit", "64", "--test-limit", "8", "--batch-size", "8"];
    let o = elbo(&[&args[..], &["--hidden", "16", "--latent-dim", "2", "--model-kind", "ae", "--out", r]].concat());
    assert!(String::from_utf8_lossy(&o.stderr).contains("autoencoder's samples.png"), "{o:?}");
    // 8 rows of 8 tiles: as tall as it is wide
    let (w, h) = image::image_dimensions(run.join("samples.png")).unwrap();
    assert_eq!(w, h, "samples.png is {w}x{h}: not 64 tiles in 8 rows");
    let o = elbo(&["sample", "--model", r, "--n", "4"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("plain autoencoder"), "{o:?}");
}

#[test]
fn half_precision_weights_are_saved_loaded_and_their_cost_printed() {
    let dir = Scratch::new("outputs_save_dtype");
    let args = [
        "train",
        "--epochs",
        "1",
        "--train-limit",
        "300",
        "--test-limit",
        "100",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
    ];
    let full = dir.as_ref().join("f32");
    elbo(&[&args[..], &["--quiet", "--out", full.to_str().unwrap()]].concat());
    for (dtype, name) in [("bf16", safetensors::Dtype::BF16), ("f16", safetensors::Dtype::F16)] {
        let run = dir.as_ref().join(dtype);
        let r = run.to_str().unwrap();
        let o = elbo(&[&args[..], &["--save-dtype", dtype, "--out", r]].concat());
        let text = String::from_utf8_lossy(&o.stdout);
        let line =
            text.lines().find(|l| l.contains(&format!("holds {dtype} weights"))).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("test loss") && line.contains("with the f32 weights"), "{line}");
        let file = bytes(&run.join("model.safetensors"));
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        assert!(st.tensors().iter().all(|(_, t)| t.dtype() == name), "{dtype}: not every tensor is {name:?}");
        let f32_size = bytes(&full.join("model.safetensors")).len();
        assert!(file.len() * 10 < f32_size * 6, "{dtype}: {} bytes against f32's {f32_size}", file.len());
        // loaded, the weights are the trained ones (the checkpoint's f32) rounded
        let loaded = elbo::model::Model::load(&run.join("model.safetensors")).unwrap();
        let ck = safetensors::SafeTensors::deserialize(&std::fs::read(run.join("checkpoint.safetensors")).unwrap())
            .unwrap()
            .tensor("params")
            .unwrap()
            .data()
            .to_vec();
        let trained: Vec<f32> = bytemuck::pod_collect_to_vec(&ck);
        let d: elbo::model::SaveDtype = clap::ValueEnum::from_str(dtype, true).unwrap();
        let want: Vec<f32> = trained.iter().map(|&v| d.round(v)).collect();
        assert!(
            loaded.params.iter().zip(&want).all(|(a, b)| a == b),
            "{dtype}: loaded weights are not the trained ones rounded"
        );
        assert!(loaded.params.iter().zip(&trained).any(|(a, b)| a != b), "{dtype}: nothing was rounded");
        // and every command reads the file
        let o = elbo(&["eval", "--model", r, "--limit", "20", "--iw-samples", "4"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("log p(x)"), "{o:?}");
    }
}

#[test]
fn commands_on_a_model_show_the_spinner_while_kernels_compile() {
    // on a terminal (script(1) gives the command one): the line train shows
    let dir = Scratch::new("outputs_spinner");
    let run = dir.as_ref().join("run");
    let r = run.to_str().unwrap();
    elbo(&[
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
        r,
    ]);
    let cmd = format!("{} sample --model {r} --n 4", env!("CARGO_BIN_EXE_elbo"));
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("NODEVICE_SELECT", "1")
        .env(elbo::gpu::validation::ENV, "1")
        .output();
    let o = o.expect("script(1) (util-linux) runs the command on a terminal");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("building the kernels for this model"), "{text}");
}

#[test]
fn the_embedding_plot_has_a_title_and_labelled_axes() {
    let dir = Scratch::new("outputs_embed_plot");
    let run = dir.as_ref().join("run");
    let r = run.to_str().unwrap();
    elbo(&[
        "train",
        "--epochs",
        "1",
        "--train-limit",
        "200",
        "--test-limit",
        "100",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--quiet",
        "--out",
        r,
    ]);
    elbo(&["embed", "--model", r]);
    let img = image::open(run.join("embedding.png")).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    // dark pixels (text) in the strips where the title, the y axis' name and the x axis'
    // name go: blank margins before
    let dark = |xs: std::ops::Range<u32>, ys: std::ops::Range<u32>| {
        ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 128))
            .count()
    };
    let (title, y_name, x_name) = (dark(0..w, 0..30), dark(0..22, h / 3..2 * h / 3), dark(w / 3..2 * w / 3, h - 22..h));
    assert!(title > 100 && y_name > 20 && x_name > 20, "text pixels: title {title}, y axis {y_name}, x axis {x_name}");
}
