//! The commands that use a trained model, on a small model trained here.

mod common;
use common::assert_close;
use common::Scratch;
use elbo::infer::{self as inf, OpenModel, UseOptions};
use std::path::PathBuf;
use std::sync::OnceLock;

/// A small MLP VAE (latent 2) trained for 2 epochs on 2,000 MNIST images, once per test binary.
fn trained() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // shared by the binary's tests, so never dropped: kept in Cargo's scratch folder
        // under target/, replaced by the next run
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("elbo-inference-model");
        let _ = std::fs::remove_dir_all(&out);
        let opts = elbo::train::TrainOptions {
            out: Some(out.clone()),
            epochs: 2,
            hidden: Some(elbo::train::Widths(vec![64])),
            latent_dim: 2,
            train_limit: Some(2000),
            test_limit: Some(300),
            quiet: true,
            ..Default::default()
        };
        elbo::train::train(&opts).unwrap();
        out
    })
}

/// A model good enough for its pictures to mean something (latent 10, 3 epochs on
/// 10,000 images), once per test binary, as `trained` keeps its.
fn well_trained() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("elbo-inference-model-10d");
        let _ = std::fs::remove_dir_all(&out);
        let opts = elbo::train::TrainOptions {
            out: Some(out.clone()),
            epochs: 3,
            hidden: Some(elbo::train::Widths(vec![200])),
            latent_dim: 10,
            train_limit: Some(10_000),
            test_limit: Some(500),
            quiet: true,
            ..Default::default()
        };
        elbo::train::train(&opts).unwrap();
        out
    })
}

/// The well-trained model opened, its outputs into its folder's `out`.
fn well_trained_session(out: &str) -> OpenModel {
    let model = well_trained().clone();
    OpenModel::open(&UseOptions { out: Some(model.join(out)), model, ..use_options() }).unwrap()
}

fn use_options() -> UseOptions {
    UseOptions {
        model: trained().clone(),
        dataset: elbo::train::DatasetChoice::Mnist,
        data_dir: None,
        channels_in: 1,
        image_size: None,
        test_fraction: 0.1,
        images: None,
        seed: 1,
        out: None,
        adapter: Default::default(),
        quiet: true,
    }
}

fn session(out: &str) -> OpenModel {
    OpenModel::open(&UseOptions { out: Some(trained().join(out)), ..use_options() }).unwrap()
}

fn png_size(p: &std::path::Path) -> (u32, u32) {
    let img = image::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (img.width(), img.height())
}

#[test]
fn inverse_normal_cdf_is_accurate() {
    for (p, want) in [(0.975, 1.959_963_985), (0.5, 0.0), (0.05, -1.644_853_627), (0.001, -3.090_232_306)] {
        assert_close(&format!("inverse cdf at {p}"), &[inf::inverse_normal_cdf(p) as f32], &[want as f32], 1e-6, 1e-6);
    }
}

#[test]
fn log_sum_exp_is_stable() {
    assert_close("large", &[inf::log_sum_exp(&[1000.0, 1000.0]) as f32], &[(1000.0 + 2f64.ln()) as f32], 1e-4, 0.0);
    assert_close(
        "small",
        &[inf::log_sum_exp(&[-1000.0, -1001.0]) as f32],
        &[(-1000.0 + (1.0 + (-1f64).exp()).ln()) as f32],
        1e-4,
        0.0,
    );
}

#[test]
fn pca_finds_the_long_axis() {
    // points spread along (1, 1, 0) with a little noise elsewhere
    let v: Vec<f32> = (0..200)
        .flat_map(|i| {
            let t = i as f32 / 20.0 - 5.0;
            let e = elbo::rng::rand_uniform(3, 1, 0, i) - 0.5;
            [t + 0.1 * e, t - 0.1 * e, 0.05 * e]
        })
        .collect();
    let p = elbo::plot::project_2d(&v, 3);
    let spread = |k: usize| p.iter().map(|q| q[k] * q[k]).sum::<f32>() / p.len() as f32;
    assert!(spread(0) > 100.0 * spread(1), "first component {} vs second {}", spread(0), spread(1));
    // the first component is the projection on (1, 1, 0) / sqrt 2, up to sign
    let want =
        (v[0] + v[1]) / 2f32.sqrt() - (0..200).map(|i| (v[3 * i] + v[3 * i + 1]) / 2f32.sqrt()).sum::<f32>() / 200.0;
    assert_close("projection", &[p[0][0].abs()], &[want.abs()], 0.05, 0.01);
}

#[test]
fn image_commands_write_their_grids() {
    let s = session("grids");
    let scale: u32 = 4; // 112 / 28
    let cell = (28 + 1) * scale;
    assert_eq!(png_size(&inf::sample(&s, 16, 1.0, 3).unwrap()), (8 * cell + scale, 2 * cell + scale));
    let (w, h) = png_size(&inf::reconstruct(&s, 10).unwrap());
    assert_eq!((w, h), (8 * cell + scale, 6 * cell + scale), "two rows of three (original, mean, sample)");
    assert_eq!(png_size(&inf::manifold(&s, 7, (0, 1)).unwrap()), (7 * cell + scale, 7 * cell + scale));
    let (path, dims) = inf::traverse(&s, 3, 5, 9).unwrap();
    assert_eq!(dims.len(), 2, "a 2-D latent has two dimensions to traverse");
    assert!(dims[0].1 >= dims[1].1, "rows are ordered by KL: {dims:?}");
    assert_eq!(png_size(&path), (9 * cell + scale, 2 * cell + scale));
    assert_eq!(png_size(&inf::interpolate(&s, 0, 5, 6).unwrap()), (8 * cell + scale, cell + scale));
    assert!(inf::manifold(&s, 5, (0, 2)).is_err(), "a dimension past the latent size is refused");
    assert!(inf::interpolate(&s, 0, 100_000, 3).is_err());
}

#[test]
fn embed_writes_every_mean_with_its_label() {
    let s = session("embed");
    let (csv, png) = inf::embed(&s, Some(120)).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "index,label,z0,z1");
    assert_eq!(lines.len(), 121);
    let labels = s.test.labels.as_ref().unwrap();
    for (i, line) in lines[1..].iter().enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[1], labels[i].to_string(), "line {i}: {line}");
        assert!(f[2].parse::<f32>().unwrap().is_finite());
    }
    assert_eq!(png_size(&png), (640, 640));
    // every mean is the encoder's, computed here on the CPU from the weights in
    // model.safetensors (not through the opened model's encode, which embed calls) for
    // the image its line names
    let model = elbo::model::Model::load(&trained().join("model.safetensors")).unwrap();
    let (n, lat) = (lines.len() - 1, model.config.latent);
    let m = n.next_multiple_of(4);
    let index: Vec<usize> = lines[1..].iter().map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(index, (0..n).collect::<Vec<_>>(), "the index column counts the test images");
    let x: Vec<f32> = (0..m)
        .flat_map(|i| (0..784).map(move |j| (i, j)))
        .map(|(i, j)| if i < n { s.test.image(i)[j] as f32 / 255.0 } else { 0.0 })
        .collect();
    let mut h = x;
    for l in &model.layout.encoder {
        h = elbo::reference::layer_forward(&model, l, &h, m);
    }
    let mulv = elbo::reference::layer_forward(&model, &model.layout.heads, &h, m);
    let want: Vec<f32> = (0..n).flat_map(|r| mulv[r * 2 * lat..r * 2 * lat + lat].to_vec()).collect();
    let got: Vec<f32> =
        lines[1..].iter().flat_map(|l| l.split(',').skip(2).map(|v| v.parse::<f32>().unwrap())).collect();
    assert_close("embedding.csv against the CPU encoder's means", &got, &want, 1e-4, 1e-4);
}

/// The tiles of a one-channel grid PNG of 28x28 images `cols` a row (`plot::save_grid`:
/// each pixel drawn scale x scale, a border of scale pixels), row by row, in [0, 1].
fn grid_tiles(path: &std::path::Path, cols: usize) -> Vec<Vec<f32>> {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let scale = w / (cols * 29 + 1);
    assert_eq!(w, cols * 29 * scale + scale, "{}: not a grid of {cols} columns of 28x28 images", path.display());
    let rows = (h - scale) / (29 * scale);
    let mut tiles = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            let (ox, oy) = (c * 29 * scale + scale, r * 29 * scale + scale);
            tiles.push(
                (0..784)
                    .map(|p| {
                        img.get_pixel((ox + (p % 28) * scale) as u32, (oy + (p / 28) * scale) as u32)[0] as f32 / 255.0
                    })
                    .collect(),
            );
        }
    }
    tiles
}

/// Mean squared difference of two images.
fn mse(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64
}

/// The mean of `f` over the pairs (i, j) of 0..n with `keep(i, j)`.
fn mean_over(n: usize, keep: impl Fn(usize, usize) -> bool, f: impl Fn(usize, usize) -> f64) -> f64 {
    let pairs: Vec<(usize, usize)> =
        (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).filter(|&(i, j)| keep(i, j)).collect();
    pairs.iter().map(|&(i, j)| f(i, j)).sum::<f64>() / pairs.len() as f64
}

#[test]
fn reconstructions_are_close_to_their_own_inputs() {
    let s = well_trained_session("reconstruct-meaning");
    let n = 16;
    let tiles = grid_tiles(&inf::reconstruct(&s, n).unwrap(), 8);
    // rows of 8: originals, reconstructions from the mean, from a sample of z
    let cell = |kind: usize, i: usize| &tiles[(i / 8) * 24 + kind * 8 + i % 8];
    let originals: Vec<Vec<f32>> =
        (0..n).map(|i| s.test.image(i).iter().map(|&b| b as f32 / 255.0).collect()).collect();
    for (i, o) in originals.iter().enumerate() {
        assert_close(&format!("original {i} in the grid"), cell(0, i), o, 0.5 / 255.0 + 1e-6, 0.0);
    }
    let own = |kind| mean_over(n, |i, j| i == j, |i, _| mse(cell(kind, i), &originals[i]));
    let other = |kind| mean_over(n, |i, j| i != j, |i, j| mse(cell(kind, i), &originals[j]));
    // a black image's error: the bound that any reconstruction worth the name beats
    let black = mean_over(n, |i, j| i == j, |i, _| mse(&[0.0; 784], &originals[i]));
    let evidence = format!(
        "mean squared error to its own input: from the mean {:.4}, from a sample {:.4}; to the other inputs: {:.4}, {:.4}; a black image's {black:.4}",
        own(1),
        own(2),
        other(1),
        other(2)
    );
    eprintln!("reconstructions: {evidence}");
    for kind in [1, 2] {
        assert!(own(kind) < 0.6 * other(kind), "a reconstruction is no closer to its input than to others: {evidence}");
        assert!(own(kind) < 0.5 * black, "reconstructions no better than black images: {evidence}");
    }
}

#[test]
fn samples_look_more_like_digits_than_noise_does() {
    let s = well_trained_session("sample-meaning");
    let samples = grid_tiles(&inf::sample(&s, 16, 1.0, 3).unwrap(), 8);
    let digits: Vec<Vec<f32>> = (0..300).map(|i| s.test.image(i).iter().map(|&b| b as f32 / 255.0).collect()).collect();
    let nearest = |img: &[f32]| digits.iter().map(|d| mse(img, d)).fold(f64::INFINITY, f64::min);
    let mean_nearest = |imgs: &[Vec<f32>]| imgs.iter().map(|i| nearest(i)).sum::<f64>() / imgs.len() as f64;
    let noise: Vec<Vec<f32>> =
        (0..16u32).map(|k| (0..784u32).map(|p| elbo::rng::rand_uniform(11, k, 0, p)).collect()).collect();
    let grey = vec![vec![0.5f32; 784]];
    let (to_samples, to_noise, to_grey) = (mean_nearest(&samples), mean_nearest(&noise), mean_nearest(&grey));
    // and the samples are not one picture 16 times
    let spread = mean_over(16, |i, j| i != j, |i, j| mse(&samples[i], &samples[j]));
    let evidence = format!(
        "mean squared error to the nearest of 300 test digits: samples {to_samples:.4}, uniform noise {to_noise:.4}, grey {to_grey:.4}; between samples {spread:.4}"
    );
    eprintln!("samples: {evidence}");
    assert!(to_samples < 0.5 * to_noise && to_samples < to_grey, "{evidence}");
    assert!(spread > 0.1 * to_samples, "the samples barely differ: {evidence}");
}

#[test]
fn neighbouring_manifold_tiles_are_closer_than_distant_ones() {
    // over the two latent dimensions that carry the most KL (the others hardly move the
    // decoder), along each axis of the grid: neighbours against the two ends of a row or column
    let s = well_trained_session("manifold-meaning");
    let mut t = s.net(128, 1).unwrap();
    let (kl, by_kl) = inf::kl_per_dimension(&s, &mut t, 200).unwrap();
    let g = 7;
    let tiles = grid_tiles(&inf::manifold(&s, g, (by_kl[0], by_kl[1])).unwrap(), g);
    assert_eq!(tiles.len(), g * g);
    // (row, column) of tile i
    let at = |i: usize| (i / g, i % g);
    let pair = |i: usize, j: usize| mse(&tiles[i], &tiles[j]);
    let mut evidence = format!("dimensions {} and {} (KL {kl:?}):", by_kl[0], by_kl[1]);
    let mut pass = true;
    for (axis, by_row) in [("row", true), ("column", false)] {
        // (position along the axis, position across it)
        let pos = |i: usize| if by_row { (at(i).1, at(i).0) } else { at(i) };
        let apart = |i: usize, j: usize, d: usize| pos(i).1 == pos(j).1 && pos(i).0.abs_diff(pos(j).0) == d;
        let near = mean_over(g * g, |i, j| apart(i, j, 1), pair);
        let far = mean_over(g * g, |i, j| apart(i, j, g - 1), pair);
        evidence += &format!(" along a {axis}, neighbours {near:.4} and the two ends {far:.4} apart;");
        pass &= near < 0.5 * far;
    }
    eprintln!("manifold: {evidence}");
    assert!(pass, "mean squared difference of tiles: {evidence}");
}

#[test]
fn importance_weighted_bound_is_above_the_elbo() {
    let s = session("eval");
    let one = inf::eval(&s, 1, Some(100), false, &|_, _| {}).unwrap();
    let many = inf::eval(&s, 64, Some(100), false, &|_, _| {}).unwrap();
    assert!(one.elbo.is_finite() && many.log_px.is_finite());
    // a Bernoulli decoder's values are probabilities already: no discretised figure
    assert!(one.discrete.is_none());
    assert_close("ELBO = -(recon + KL)", &[one.elbo as f32], &[-(one.recon + one.kl) as f32], 1e-3, 1e-6);
    assert!(many.log_px > many.elbo, "log p(x) estimate {} not above the ELBO {}", many.log_px, many.elbo);
    assert!(many.log_px > one.log_px, "K = 64 ({}) not above K = 1 ({})", many.log_px, one.log_px);
    let d = 784.0 * std::f64::consts::LN_2;
    assert_close("bits per dim", &[many.bits_per_dim as f32], &[(-many.log_px / d) as f32], 1e-6, 1e-6);
    // the average and its standard error, from the 100 images' own estimates
    assert_eq!(many.per_image.len(), 100);
    let mean = many.per_image.iter().sum::<f64>() / 100.0;
    let sd = (many.per_image.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 99.0).sqrt();
    assert_close("log p(x), the images' mean", &[many.log_px as f32], &[mean as f32], 1e-6, 1e-7);
    assert_close("standard error", &[many.log_px_se as f32], &[(sd / 10.0) as f32], 1e-6, 1e-6);
    assert!(many.log_px_se > 0.1 && many.log_px_se < 10.0, "standard error {}", many.log_px_se);
    // with z = mu the figure is deterministic: the CPU reference model on the same 100
    // images gives it (MLP, Bernoulli decoder, pixels / 255)
    let (n, m, lat) = (100, 100usize.next_multiple_of(4), s.model.config.latent);
    let x: Vec<f32> = (0..m)
        .flat_map(|i| (0..784).map(move |j| (i, j)))
        .map(|(i, j)| if i < n { s.test.image(i)[j] as f32 / 255.0 } else { 0.0 })
        .collect();
    let mut h = x.clone();
    for l in &s.model.layout.encoder {
        h = elbo::reference::layer_forward(&s.model, l, &h, m);
    }
    let mulv = elbo::reference::layer_forward(&s.model, &s.model.layout.heads, &h, m);
    let mut y: Vec<f32> = (0..m).flat_map(|r| mulv[r * 2 * lat..r * 2 * lat + lat].to_vec()).collect();
    for l in &s.model.layout.decoder {
        y = elbo::reference::layer_forward(&s.model, l, &y, m);
    }
    let bce = |l: f64, t: f64| l.max(0.0) - t * l + (-l.abs()).exp().ln_1p();
    let recon: f64 = (0..n * 784).map(|v| bce(y[v] as f64, x[v] as f64)).sum::<f64>() / n as f64;
    assert_close("recon with z = mu", &[one.recon_at_mean as f32], &[recon as f32], 1e-3, 1e-5);
    assert_close("loss with z = mu", &[one.loss_at_mean as f32], &[(recon + one.kl) as f32], 1e-3, 1e-5);
    // binarized images: drawn once per image from the seed, so a second evaluation gives
    // the same figures to the last bit, and other than the greyscale images'
    let b1 = inf::eval(&s, 8, Some(20), true, &|_, _| {}).unwrap();
    let b2 = inf::eval(&s, 8, Some(20), true, &|_, _| {}).unwrap();
    assert_eq!(b1.per_image, b2.per_image, "two binarized evaluations differ");
    let grey = inf::eval(&s, 8, Some(20), false, &|_, _| {}).unwrap();
    assert!(b1.recon_at_mean != grey.recon_at_mean && b1.log_px.is_finite(), "{b1:?}");
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let opts = UseOptions {
        model: PathBuf::from("/nonexistent/run"),
        dataset: elbo::train::DatasetChoice::Mnist,
        data_dir: None,
        channels_in: 1,
        image_size: None,
        test_fraction: 0.1,
        images: None,
        seed: 1,
        out: None,
        adapter: Default::default(),
        quiet: true,
    };
    let e = format!("{:#}", OpenModel::open(&opts).err().expect("opened a missing model"));
    assert!(e.contains("/nonexistent/run") && e.contains("elbo train"), "{e}");
}

#[test]
fn map_gradient_matches_the_reference_decoder() {
    let s = session("map-gradient");
    let c = &s.model.config;
    let mut t = s.net(8, 1).unwrap();
    let n = 6;
    let (lat, shape) = (c.latent, c.input_shape());
    let z: Vec<f32> = (0..n * lat).map(|i| elbo::rng::rand_normal(2, 9, 0, i as u32)).collect();
    let x: Vec<f32> =
        (0..n).flat_map(|i| s.test.image(i).iter().map(|&b| b as f32 / 255.0).collect::<Vec<_>>()).collect();
    let observed: Vec<f32> = (0..x.len()).map(|i| ((i % 784) < 392) as u32 as f32).collect();
    let (x_st, obs_st) =
        (elbo::reference::pad_channels(&x, n, shape), elbo::reference::pad_channels(&observed, n, shape));
    // the observed values clean, and under the two noise models restoration scores noisy images with
    use elbo::kernels::Observation::{Clean, Flip, Gaussian};
    for obs in [Gaussian(0.3), Flip(0.2), Clean] {
        t.set_observation(obs);
        let (nll, dz) = t.observed_nll_and_grad(&z, &x_st, &obs_st).unwrap();
        // the reference: decoder forward, masked likelihood, decoder backward to z
        let r = elbo::kernels::Step { rows: n as u32, inv_rows: 1.0, ..Default::default() };
        let m = n;
        let mut acts = vec![z.clone()];
        for l in &s.model.layout.decoder {
            acts.push(elbo::reference::layer_forward(&s.model, l, acts.last().unwrap(), m));
        }
        let out = acts.pop().unwrap();
        let mulv = vec![0.0; m * 2 * lat];
        let (mut d, per_image) = elbo::reference::elbo_forward_backward_noisy(
            &out,
            &x_st,
            &mulv,
            Some(&obs_st),
            obs,
            m,
            &c.loss_layout(),
            lat,
            &r,
        );
        let mut scratch = vec![0f32; s.model.layout.len];
        for (i, l) in s.model.layout.decoder.iter().enumerate().rev() {
            let act = if i > 0 { s.model.layout.decoder[i - 1].act } else { elbo::model::Activation::Identity };
            d = elbo::reference::layer_backward(&s.model, l, &acts[i], &d, act, m, &mut scratch);
        }
        let want_nll: Vec<f32> = per_image.iter().map(|v| v[0]).collect();
        assert_close(&format!("observed nll, {obs:?}"), &nll, &want_nll, 1e-2, 1e-4);
        assert_close(&format!("d nll / dz, {obs:?}"), &dz, &d, 1e-3, 1e-3);
    }
}

#[test]
fn map_restoration_beats_the_encoder_and_the_mean_image() {
    // a model good enough for the comparison to mean something
    let s = well_trained_session("restore");
    let r = inf::restore(&s, 16, &inf::Corruption::Half, 150, 0.05, 1).unwrap();
    assert_eq!(r.values, 16 * 392, "the bottom half of 16 images is unknown");
    assert!(r.mse_restored < r.mse_encoder, "MAP {} not below encoder-only {}", r.mse_restored, r.mse_encoder);
    assert!(r.mse_restored < r.mse_mean_image, "MAP {} not below the mean image {}", r.mse_restored, r.mse_mean_image);
    assert_eq!(png_size(&r.path), (8 * 116 + 4, 8 * 116 + 4));
    // the picture: per image, original, damaged (unknown grey), encoder only, restored;
    // the restored bottom halves are nearer the originals' than the damaged ones and
    // than the encoder's reconstructions of the damaged images
    let tiles = grid_tiles(&r.path, 8);
    let bottom = |v: &[f32]| v[392..].to_vec();
    let (mut restored, mut damaged, mut encoder) = (0f64, 0f64, 0f64);
    for i in 0..16 {
        let [orig, shown, enc, rest] = [0, 1, 2, 3].map(|k| &tiles[4 * i + k]);
        assert_close(
            &format!("image {i}: the damaged half shown grey"),
            &bottom(shown),
            &[128.0 / 255.0; 392],
            1e-6,
            0.0,
        );
        restored += mse(&bottom(rest), &bottom(orig)) / 16.0;
        damaged += mse(&bottom(shown), &bottom(orig)) / 16.0;
        encoder += mse(&bottom(enc), &bottom(orig)) / 16.0;
    }
    let evidence = format!(
        "unknown half's mean squared error in restore.png: restored {restored:.4}, damaged {damaged:.4}, encoder only {encoder:.4}"
    );
    eprintln!("restore: {evidence}");
    assert!(restored < 0.5 * damaged && restored < encoder, "{evidence}");
    assert!("random:0.3".parse::<inf::Corruption>().is_ok() && "random:2".parse::<inf::Corruption>().is_err());
    // noise: scored under the noise that made it, the restored images are nearer the clean
    // digits than the noisy input and the encoder's reconstruction of it
    for corruption in [inf::Corruption::Noise(0.1), inf::Corruption::Noise(0.5), inf::Corruption::Flip(0.1)] {
        let r = inf::restore(&s, 64, &corruption, 150, 0.05, 1).unwrap();
        let what = format!(
            "{corruption:?}: restored {}, input {}, encoder-only {}",
            r.mse_restored, r.mse_input, r.mse_encoder
        );
        assert_eq!(r.values, 64 * 784, "{what}: every value is scored");
        assert!(r.mse_restored < r.mse_input && r.mse_restored < r.mse_encoder, "{what}");
    }
    // images noisy already (the user's own) are restored as they are: σ given, or estimated
    // as the root mean square of the input about the encoder's reconstruction
    let given =
        inf::restore(&s, 32, &inf::Corruption::AsIs(inf::NoiseModel::Gaussian(Some(0.3))), 50, 0.05, 1).unwrap();
    assert_eq!((given.noise_sigma, given.mse_input), (Some(0.3), 0.0), "nothing added to the input");
    let est = inf::restore(&s, 32, &inf::Corruption::AsIs(inf::NoiseModel::Gaussian(None)), 50, 0.05, 1).unwrap();
    let sigma = est.noise_sigma.expect("an estimated σ");
    assert_close("estimated σ", &[sigma], &[(est.mse_encoder.sqrt()) as f32], 1e-4, 1e-4);
    assert_eq!("gaussian".parse::<inf::NoiseModel>(), Ok(inf::NoiseModel::Gaussian(None)));
    assert_eq!("gaussian:0.2".parse::<inf::NoiseModel>(), Ok(inf::NoiseModel::Gaussian(Some(0.2))));
    assert_eq!("flip:0.2".parse::<inf::NoiseModel>(), Ok(inf::NoiseModel::Flip(0.2)));
    assert!("half".parse::<inf::NoiseModel>().is_err());
    assert_eq!("flip:0.1".parse::<inf::Corruption>(), Ok(inf::Corruption::Flip(0.1)));
    assert_eq!("gaussian:0.3".parse::<inf::Corruption>(), Ok(inf::Corruption::Noise(0.3)));
    assert!("flip:0.6".parse::<inf::Corruption>().is_err() && "gaussian:-1".parse::<inf::Corruption>().is_err());
}

#[test]
fn linear_probe_learns_a_separable_problem() {
    let g = common::gpu();
    // 3 classes in 5 dimensions, separated along the first two
    let n = 600;
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    let x: Vec<f32> = (0..n)
        .flat_map(|i| {
            let c = (i % 3) as f32;
            (0..5).map(move |j| {
                let noise = elbo::rng::rand_normal(4, 2, i as u32, j) * 0.3;
                noise
                    + if j == 0 {
                        c
                    } else if j == 1 {
                        -c
                    } else {
                        0.0
                    }
            })
        })
        .collect();
    let mut p = elbo::infer::probe::LinearProbe::new(g, 5, 3, 64, 0.05).unwrap();
    let order: Vec<usize> = (0..n).collect();
    let (loss0, _) = p.evaluate(&x, &labels).unwrap();
    assert_close("untrained loss is log 3", &[loss0 as f32], &[3f32.ln()], 1e-4, 0.0);
    for _ in 0..20 {
        p.train_epoch(&x, &labels, &order).unwrap();
    }
    let (loss, acc) = p.evaluate(&x, &labels).unwrap();
    assert!(acc > 0.95 && loss < 0.3, "accuracy {acc}, loss {loss}");
}

#[test]
fn fine_tuning_the_encoder_learns_the_classes() {
    let s = session("finetune");
    let (ytr, yte) = (s.train.labels.clone().unwrap(), s.test.labels.clone().unwrap());
    let mut cl = {
        let o = elbo::infer::finetune::FinetuneOptions { classes: 10, batch: 128, lr: 1e-3, seed: 1 };
        elbo::infer::finetune::Classifier::new(&s.gpu, &s.model, &o, &s.train, &s.test).unwrap()
    };
    let (loss0, acc0) = cl.evaluate(&yte).unwrap();
    let order: Vec<u32> = (0..s.train.len as u32).map(|i| (i * 7919) % s.train.len as u32).collect();
    cl.train_epoch(&order, &ytr).unwrap();
    let (loss, acc) = cl.evaluate(&yte).unwrap();
    assert!(acc0 < 0.3, "an untrained head scored {acc0}");
    assert!(acc > 0.9 && loss < loss0, "after one epoch: accuracy {acc} (from {acc0}), loss {loss} (from {loss0})");
}

#[test]
fn fine_tuning_a_convolutional_encoder_runs() {
    let dir = Scratch::new("finetune-conv");
    let config = elbo::VaeConfig {
        arch: elbo::model::Arch::Conv,
        conv_channels: vec![4, 8],
        hidden: vec![],
        ..elbo::VaeConfig::mlp(28, 28, 0, 4)
    };
    std::fs::create_dir_all(&dir).unwrap();
    elbo::Model::init(&config, 2).save(&dir.join("model.safetensors"), &Default::default()).unwrap();
    let s = OpenModel::open(&UseOptions { model: dir.to_path_buf(), ..use_options() }).unwrap();
    let mut train = s.train.clone();
    train.truncate(2000);
    let mut test = s.test.clone();
    test.truncate(500);
    let (ytr, yte) = (train.labels.clone().unwrap(), test.labels.clone().unwrap());
    let mut cl = {
        let o = elbo::infer::finetune::FinetuneOptions { classes: 10, batch: 100, lr: 3e-3, seed: 1 };
        elbo::infer::finetune::Classifier::new(&s.gpu, &s.model, &o, &train, &test).unwrap()
    };
    let order: Vec<u32> = (0..2000).collect();
    for _ in 0..3 {
        cl.train_epoch(&order, &ytr).unwrap();
    }
    let (_, acc) = cl.evaluate(&yte).unwrap();
    assert!(acc > 0.6, "a convolutional classifier reached only {acc} after 3 epochs on 2,000 digits");
}

#[test]
fn inference_reuses_the_recorded_gemm_variants_and_times_nothing() {
    let s = session("untimed");
    // training recorded what it timed: the dense layers' passes its lists run as GEMMs
    let dense = s.model.layout.layers().iter().filter(|l| l.op == elbo::model::Op::Dense).count();
    let n = s.gemm.decisions.len();
    assert!(n > 0 && n <= 3 * dense, "recorded {n} for {dense} dense layers: {}", s.gemm.describe());
    let before = elbo::kernels::gemm::variants_timed();
    let mut t = s.net(32, 1).unwrap();
    let z = vec![0.0; 32 * s.model.config.latent];
    let images = t.decode(&z).unwrap();
    assert_eq!(images.len(), 32 * s.model.config.pixels());
    assert_eq!(t.dispatches_per_step(), 0, "a forward-only model has no training list");
    let timed = elbo::kernels::gemm::variants_timed() - before;
    assert_eq!(timed, 0, "opening the model for inference timed {timed} GEMM variants");
}

#[test]
fn the_users_own_images_replace_the_test_split() {
    // five MNIST test images as PNG files: a folder of them, and one alone
    let dir = Scratch::created("own-images");
    let mnist = elbo::data::load_mnist(&elbo::data::mnist_dir(None)).unwrap().1;
    for i in 0..5 {
        let img = image::GrayImage::from_raw(28, 28, mnist.image(i).to_vec()).unwrap();
        img.save(dir.join(format!("digit{i}.png"))).unwrap();
    }
    let s = OpenModel::open(&UseOptions { images: Some(dir.to_path_buf()), ..use_options() }).unwrap();
    assert_eq!(s.test.len, 5);
    assert!(s.test.pixels == mnist.pixels[..5 * 784], "the folder's images are not the test set, in path order");
    let one = dir.join("digit3.png");
    let s = OpenModel::open(&UseOptions { images: Some(one), ..use_options() }).unwrap();
    assert!(s.test.len == 1 && s.test.pixels == mnist.image(3), "one file: {} images", s.test.len);
}

/// Values no command can use are errors that name the flag, not silent clamps or NaN results.
#[test]
fn unusable_values_are_refused_naming_the_flag() {
    let s = session("bad-values");
    let err = |r: anyhow::Result<()>| format!("{:#}", r.expect_err("accepted"));
    for (what, e, want) in [
        ("sample --n 0", err(inf::sample(&s, 0, 1.0, 1).map(|_| ())), "--n 0"),
        ("sample --temperature nan", err(inf::sample(&s, 4, f32::NAN, 1).map(|_| ())), "--temperature NaN"),
        ("eval --iw-samples 0", err(inf::eval(&s, 0, Some(4), false, &|_, _| {}).map(|_| ())), "--iw-samples 0"),
        ("eval --limit 0", err(inf::eval(&s, 1, Some(0), false, &|_, _| {}).map(|_| ())), "--limit 0"),
        ("restore --n 0", err(inf::restore(&s, 0, &inf::Corruption::Half, 5, 0.05, 1).map(|_| ())), "--n 0"),
        ("restore --lr nan", err(inf::restore(&s, 4, &inf::Corruption::Half, 5, f32::NAN, 1).map(|_| ())), "--lr NaN"),
        (
            "restore --noise -1",
            err(inf::restore(&s, 4, &inf::Corruption::Noise(-1.0), 5, 0.05, 1).map(|_| ())),
            "--noise -1",
        ),
    ] {
        assert!(e.contains(want), "{what}: {e}");
    }
    let e = format!(
        "{:#}",
        elbo::train::train(&elbo::train::TrainOptions { beta: f32::NAN, quiet: true, ..Default::default() })
            .unwrap_err()
    );
    assert!(e.contains("--beta must be a number of at least 0, got NaN"), "{e}");
}

/// A mask that hides nothing leaves nothing to restore: an error, not a figure over 0 pixels.
#[test]
fn an_all_white_mask_is_refused() {
    let s = session("white-mask");
    let mask = trained().join("white-mask.png");
    image::GrayImage::from_pixel(28, 28, image::Luma([255])).save(&mask).unwrap();
    let e = format!("{:#}", inf::restore(&s, 4, &inf::Corruption::MaskFile(mask), 5, 0.05, 1).unwrap_err());
    assert!(e.contains("every pixel observed"), "{e}");
}

/// A run's checkpoint given as --model is named for what it is, with the paths to pass.
#[test]
fn a_checkpoint_given_as_the_model_says_what_to_pass() {
    let ck = trained().join("checkpoint.safetensors");
    let e = format!(
        "{:#}",
        OpenModel::open(&UseOptions { model: ck, ..use_options() }).err().expect("opened a checkpoint")
    );
    assert!(e.contains("is a training checkpoint") && e.contains("model.safetensors"), "{e}");
}
