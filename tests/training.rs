//! The assembled training step against the CPU reference model, and short
//! training runs: the loss falls, and the same seed gives the same losses.

mod common;
use common::{assert_close, gpu, small_models, synthetic, Scratch};
use elbo::data::Dataset;
use elbo::kernels::MomentStore;
use elbo::model::{Arch, Likelihood, Model, VaeConfig};
use elbo::reference as r;
use elbo::train::{Hyper, Trainer};

fn data_for(c: &VaeConfig) -> (Dataset, Dataset) {
    let mk = |len, seed| {
        let mut d = synthetic(len, c.width, c.height, seed);
        d.channels = c.channels;
        d.pixels = (0..len * c.pixels()).map(|i| (elbo::rng::rand_bits(seed, 7, 0, i as u32) & 0xff) as u8).collect();
        d
    };
    (mk(25, 1), mk(17, 2))
}

#[test]
fn train_step_gradient_matches_reference_model() {
    let g = gpu();
    // on a CPU adapter the dense models fuse Adam into their weight gradients, so the
    // fused path is checked below wherever CI runs
    let fusing = elbo::kernels::Kernels::new(g).unwrap().gemm_adam.is_some();
    assert!(fusing || g.info.device_type != wgpu::DeviceType::Cpu, "no fused Adam kernel on a CPU adapter");
    for (name, config, hyper) in small_models() {
        let all_dense = config.arch == Arch::Mlp;
        // fuse_adam off: the flat gradient is kept and compared with the reference; on: the
        // parameters and moments after each step must be those of the unfused run
        let mut unfused_states = Vec::new();
        for fuse_adam in [false, true] {
            let (train, test) = data_for(&config);
            let model = Model::init(&config, 3);
            let batch = 10;
            let samples = hyper.samples;
            let free_bits = hyper.free_bits;
            let hyper = Hyper { fuse_adam, ..hyper.clone() };
            let mut t = Trainer::new(g, model.clone(), hyper.clone(), batch, &train, &test).unwrap();
            assert_eq!(t.adam_fused(), fuse_adam && fusing && all_dense, "{name}: fused Adam");
            // on lavapipe the one-channel Bernoulli decoder's loss reads its taps image
            // (elbo_forward_backward_taps), which this comparison then covers
            let labels: Vec<&str> = t.train_dispatches().iter().map(|d| d.label.as_ref()).collect();
            if name == "conv bernoulli" && g.is_llvmpipe() {
                assert!(labels.contains(&"elbo_forward_backward_taps"), "{name}: {labels:?}");
            }
            // and every model's head draws z itself there (gemm_forward_reparam_subgroup, or
            // gemm_forward_reparam_pairs_subgroup for latent 36),
            // and a Bernoulli MLP's last GEMM sums the loss (gemm_forward_elbo_subgroup,
            // then reparam_backward_reduce_partials), which the gradient check covers
            if g.is_llvmpipe() {
                assert!(
                    labels.contains(&"gemm_forward_reparam heads") && !labels.contains(&"reparam_forward"),
                    "{name}: {labels:?}"
                );
                let elbo_gemm = config.arch == Arch::Mlp && config.likelihood == Likelihood::Bernoulli;
                assert_eq!(labels.iter().any(|l| l.starts_with("gemm_forward_elbo")), elbo_gemm, "{name}: {labels:?}");
                assert_eq!(labels.contains(&"reparam_backward_reduce_partials"), elbo_gemm, "{name}: {labels:?}");
                if config.arch == Arch::Mlp {
                    assert_eq!(labels.contains(&"elbo_forward_backward"), !elbo_gemm, "{name}: {labels:?}");
                }
            }
            let order: Vec<u32> = (0..25).map(|i| (i * 7) % 25).collect();
            t.set_order(&order).unwrap();
            let lay = config.loss_layout();
            // the first batch, and the last of the epoch: 5 live images out of 10
            for (i, b) in [0usize, 2].into_iter().enumerate() {
                // the i-th step's random streams; its KL weight, row count and noise from
                // the settings, not from the trainer's step_values
                let images = if b == 2 { 5 } else { 10 };
                let st = step_for(&config, hyper.seed, i as u32, images, samples, b * batch, hyper.beta);
                let before = Model { params: t.model().unwrap().params.clone(), ..model.clone() };
                t.train_step(b).unwrap();
                t.wait().unwrap();
                let m = (batch * samples).next_multiple_of(4);
                let x = r::gather_batch(
                    &train.pixels,
                    &order,
                    m,
                    lay.pixels,
                    config.channels,
                    lay.x_cp,
                    false,
                    samples,
                    &st,
                );
                let (loss, want, _) = r::vae_loss_and_grads(&before, &x, m, free_bits, &st);
                let what = format!("{name} (fuse_adam {fuse_adam}), batch {b}");
                let state = t.state().unwrap();
                if fuse_adam {
                    // the fused and unfused weight gradients may sum the rows in another
                    // order (another build or variant), a few ulps apart
                    let want: &elbo::train::TrainState = &unfused_states[i];
                    assert_close(&format!("{what}: parameters"), &state.params, &want.params, 1e-7, 1e-5);
                    assert_close(&format!("{what}: first moment"), &state.moment1, &want.moment1, 1e-9, 1e-5);
                    assert_close(&format!("{what}: second moment"), &state.moment2, &want.moment2, 1e-12, 1e-5);
                } else {
                    assert_close(&format!("{what}: flat gradient"), &t.read_grads().unwrap(), &want, 1e-5, 2e-3);
                    unfused_states.push(state);
                }
                let slot = t.batch_losses(b + 1).unwrap()[b];
                assert_close(&format!("{what}: batch loss"), &[slot], &[loss], 1e-4, 1e-4);
            }
        }
    }
}

#[test]
fn a_batch_too_large_for_one_reduce_workgroup_takes_the_separate_kernels() {
    // reparam_backward_reduce runs in one workgroup up to 256 texels an invocation
    // (kernels::reparam_reduce_fused); past that the step runs loss_reduce and
    // reparam_backward, with free bits on, and must still match the reference
    let g = gpu();
    let config = VaeConfig::mlp(5, 6, 13, 40);
    let (batch, latent) = (1040, config.latent);
    assert!(!elbo::kernels::reparam_reduce_fused(batch, latent) && elbo::kernels::reparam_reduce_fused(128, latent));
    let len = batch + 3;
    let train = synthetic(len, config.width, config.height, 4);
    let test = synthetic(20, config.width, config.height, 5);
    let model = Model::init(&config, 3);
    let hyper = Hyper { beta: 0.8, free_bits: 0.3, fuse_adam: false, ..Hyper::new(1e-3, 9) };
    let mut t = Trainer::new(g, model.clone(), hyper, batch, &train, &test).unwrap();
    let labels: Vec<&str> = t.train_dispatches().iter().map(|d| d.label.as_ref()).collect();
    assert!(
        labels.contains(&"loss_reduce")
            && labels.contains(&"reparam_backward")
            && !labels.contains(&"reparam_backward_reduce"),
        "{labels:?}"
    );
    let order: Vec<u32> = (0..len as u32).rev().collect();
    t.set_order(&order).unwrap();
    let st = step_for(&config, 9, 0, batch, 1, 0, 0.8);
    t.train_step(0).unwrap();
    t.wait().unwrap();
    let lay = config.loss_layout();
    let x = r::gather_batch(&train.pixels, &order, batch, lay.pixels, 1, lay.x_cp, false, 1, &st);
    let (loss, want, _) = r::vae_loss_and_grads(&model, &x, batch, 0.3, &st);
    assert_close("flat gradient, batch 1040", &t.read_grads().unwrap(), &want, 1e-5, 2e-3);
    assert_close("batch loss, batch 1040", &[t.batch_losses(1).unwrap()[0]], &[loss], 1e-4, 1e-4);
}

#[test]
fn evaluation_matches_reference_model() {
    let g = gpu();
    for (name, config, hyper) in small_models() {
        let (train, test) = data_for(&config);
        let model = Model::init(&config, 4);
        let batch = 8;
        let samples = hyper.samples;
        let (seed, beta) = (hyper.seed, hyper.beta);
        let mut t = Trainer::new(g, model.clone(), hyper, batch, &train, &test).unwrap();
        let got = t.evaluate().unwrap();
        // the same batches through the reference, with the same random-stream counters
        let order: Vec<u32> = (0..test.len as u32).collect();
        let lay = config.loss_layout();
        let (mut recon, mut kl) = (0f64, 0f64);
        let m = (batch * samples).next_multiple_of(4);
        for b in 0..test.len.div_ceil(batch) {
            let images = batch.min(test.len - b * batch);
            let st = step_for(&config, seed, b as u32, images, samples, b * batch, beta);
            let x =
                r::gather_batch(&test.pixels, &order, m, lay.pixels, config.channels, lay.x_cp, false, samples, &st);
            let mut h = x.clone();
            for l in &model.layout.encoder {
                h = r::layer_forward(&model, l, &h, m);
            }
            let mulv = r::layer_forward(&model, &model.layout.heads, &h, m);
            let mut y = r::reparam_forward(&mulv, m, config.latent, &st);
            for l in &model.layout.decoder {
                y = r::layer_forward(&model, l, &y, m);
            }
            let (_, per_image) = r::elbo_forward_backward(&y, &x, &mulv, m, &lay, config.latent, &st);
            let (s, _) = r::loss_reduce(&per_image, &mulv, config.latent, 0.0, &st);
            recon += s[0] as f64;
            kl += s[1] as f64;
        }
        assert_eq!(got.images, (test.len * samples) as f64, "{name}");
        assert_close(&format!("{name}: test recon sum"), &[got.recon as f32], &[recon as f32], 1e-3, 1e-5);
        assert_close(&format!("{name}: test kl sum"), &[got.kl as f32], &[kl as f32], 1e-3, 1e-5);
    }
}

fn mnist_subset(n_train: usize, n_test: usize) -> (Dataset, Dataset) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let (mut train, mut test) = elbo::data::load_mnist(&dir).unwrap();
    train.truncate(n_train);
    test.truncate(n_test);
    (train, test)
}

/// Per-batch losses of `epochs` epochs on the MNIST subset.
fn run_losses(train: &Dataset, test: &Dataset, seed: u64, epochs: usize) -> Vec<f32> {
    let config = VaeConfig::mlp(28, 28, 64, 8);
    let hyper = Hyper { binarize: true, ..Hyper::new(3e-3, seed as u32) };
    let mut t = Trainer::new(gpu(), Model::init(&config, seed), hyper, 64, train, test).unwrap();
    let mut losses = Vec::new();
    let steps = t.batches(train.len);
    for e in 0..epochs {
        let order: Vec<u32> = (0..train.len as u32).map(|i| (i * 7 + e as u32 * 13) % train.len as u32).collect();
        t.set_order(&order).unwrap();
        for b in 0..steps {
            t.train_step(b).unwrap();
        }
        losses.extend(t.batch_losses(steps).unwrap());
    }
    losses
}

#[test]
fn loss_falls_on_an_mnist_subset() {
    let (train, test) = mnist_subset(1024, 128);
    let losses = run_losses(&train, &test, 1, 4);
    let first: f32 = losses[..4].iter().sum::<f32>() / 4.0;
    let last: f32 = losses[losses.len() - 4..].iter().sum::<f32>() / 4.0;
    assert!(losses.iter().all(|l| l.is_finite()), "non-finite loss: {losses:?}");
    assert!(
        last < 0.75 * first,
        "the loss did not fall by a quarter: first steps {first:.2}, last steps {last:.2}; all: {losses:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_losses() {
    let (train, test) = mnist_subset(512, 64);
    let a = run_losses(&train, &test, 7, 1);
    let b = run_losses(&train, &test, 7, 1);
    let c = run_losses(&train, &test, 8, 1);
    assert_eq!(a, b, "two runs with seed 7 differ");
    assert_ne!(a, c, "seeds 7 and 8 gave identical losses");
}

#[test]
fn the_loss_history_reads_without_waiting_as_it_reads_waiting() {
    // request_history copies the slots after the steps submitted so far and poll_history
    // gives their sums once the GPU is there, without waiting: the same sums as the
    // blocking read; one read in flight at a time, and a new epoch's order drops it
    let g = gpu();
    let (train, test) = mnist_subset(512, 64);
    let config = VaeConfig::mlp(28, 28, 32, 4);
    let mut t = Trainer::new(g, Model::init(&config, 2), Hyper::new(1e-3, 2), 64, &train, &test).unwrap();
    let order: Vec<u32> = (0..512).collect();
    t.set_order(&order).unwrap();
    for b in 0..6 {
        t.train_step(b).unwrap();
    }
    let base = elbo::train::LossSums { recon: 1.0, kl: 2.0, images: 3.0, ..Default::default() };
    assert!(t.request_history(1, 5, base), "no read was in flight");
    assert!(!t.request_history(0, 6, base), "a second read started while one was in flight");
    t.train_step(6).unwrap();
    let mut got = None;
    for _ in 0..10_000 {
        got = t.poll_history().unwrap();
        if got.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let (n, sums) = got.expect("the read never completed");
    assert_eq!(n, 5);
    let want = t.read_history_from(1, 5, base).unwrap();
    assert_eq!(sums, want, "the read without waiting differs from the blocking one");
    assert!(sums.images > base.images + 100.0 && sums.recon > base.recon, "{sums:?}");
    assert!(t.poll_history().unwrap().is_none(), "a finished read came back twice");
    // a new epoch drops a read in flight, and the next request starts
    assert!(t.request_history(0, 7, base));
    t.set_order(&order).unwrap();
    t.wait().unwrap();
    assert!(t.poll_history().unwrap().is_none(), "a read survived the new epoch's order");
    assert!(t.request_history(0, 7, base));
}

#[test]
fn train_command_writes_its_outputs() {
    let out = Scratch::new("train");
    let opts = elbo::train::TrainOptions {
        out: Some(out.to_path_buf()),
        epochs: 2,
        hidden: Some(elbo::train::Widths(vec![32])),
        latent_dim: 4,
        train_limit: Some(600),
        test_limit: Some(100),
        quiet: true,
        ..Default::default()
    };
    let reports = elbo::train::train(&opts).unwrap();
    assert_eq!(reports.len(), 2);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for key in ["epoch", "train_loss", "test_loss", "test_recon", "test_kl", "epoch_seconds", "images_per_second"] {
        assert!(lines[1].get(key).is_some(), "metrics.jsonl lacks {key}: {}", lines[1]);
    }
    let tl = lines[1]["test_loss"].as_f64().unwrap();
    let parts = lines[1]["test_recon"].as_f64().unwrap() + lines[1]["test_kl"].as_f64().unwrap();
    assert!((tl - parts).abs() < 1e-6 * tl.abs(), "test_loss {tl} is not recon + kl {parts}");
    let curves = image::open(out.join("loss.png")).unwrap();
    assert_eq!((curves.width(), curves.height()), (1260, 360), "three loss panels");
    for png in ["samples.png", "reconstructions.png"] {
        let img = image::open(out.join(png)).unwrap();
        assert!(img.width() > 100 && img.height() > 50, "{png} is {}x{}", img.width(), img.height());
    }
    // the checkpoint loads back with its configuration, and PyTorch's names and shapes
    let model = Model::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(model.config, VaeConfig::mlp(28, 28, 32, 4));
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("fc1.weight").unwrap().shape(), &[32, 784]);
    assert_eq!(st.tensor("fc_mu.weight").unwrap().shape(), &[4, 32]);
    assert_eq!(st.tensor("fc_logvar.bias").unwrap().shape(), &[4]);
    assert_eq!(st.tensor("fc4.weight").unwrap().shape(), &[784, 32]);
    assert!(
        !out.read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp")),
        "a temporary file was left behind"
    );
}

#[test]
fn kl_warmup_raises_the_weight_linearly() {
    let out = Scratch::new("warmup");
    let opts = elbo::train::TrainOptions {
        out: Some(out.to_path_buf()),
        epochs: 2,
        hidden: Some(elbo::train::Widths(vec![16])),
        latent_dim: 2,
        kl_warmup: 4.0,
        beta: 0.5,
        train_limit: Some(256),
        test_limit: Some(64),
        quiet: true,
        ..Default::default()
    };
    elbo::train::train(&opts).unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let weights: Vec<f64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kl_weight"].as_f64().unwrap())
        .collect();
    // after epoch e of a 4-epoch warm-up the weight is beta * e / 4
    assert_close(
        "kl_weight by epoch",
        &weights.iter().map(|&w| w as f32).collect::<Vec<_>>(),
        &[0.125, 0.25],
        1e-6,
        0.0,
    );
}

#[test]
fn a_folder_of_rgb_images_trains_with_the_convolutional_gaussian_model() {
    let dir = Scratch::new("rgb-folder");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    for i in 0..40u32 {
        // 21x14 images: neither side divisible by 4, so the model crops to 20x12
        let img = image::RgbImage::from_fn(21, 14, |x, y| image::Rgb([(x * 12) as u8, (y * 18) as u8, (i * 6) as u8]));
        img.save(dir.join(if i % 2 == 0 { "nested" } else { "" }).join(format!("{i}.png"))).unwrap();
    }
    let out = dir.join("run");
    let opts = elbo::train::TrainOptions {
        dataset: elbo::train::DatasetChoice::Folder(dir.to_path_buf()),
        channels_in: 3,
        arch: Arch::Conv,
        likelihood: Likelihood::Gaussian,
        conv_channels: vec![4, 8],
        latent_dim: 3,
        batch_size: 8,
        // long enough, and fast enough, for the reconstructions to leave the grey they start at
        epochs: 40,
        lr: 1e-2,
        test_fraction: 0.2,
        out: Some(out.clone()),
        quiet: true,
        // nothing written to the user's cache folder
        no_cache: true,
        ..Default::default()
    };
    let reports = elbo::train::train(&opts).unwrap();
    assert!(reports.iter().all(|r| r.test.loss(1.0).is_finite()));
    let model = Model::load(&out.join("model.safetensors")).unwrap();
    assert_eq!((model.config.width, model.config.height, model.config.channels), (20, 12, 3));
    let samples = image::open(out.join("samples.png")).unwrap();
    assert_eq!(samples.color(), image::ColorType::Rgb8, "RGB data gives colour grids");
    // reconstructions.png: 8 test pictures above their reconstructions (20x12 tiles, each
    // pixel drawn 5x5, a border of 5). The pictures share their red and green gradients
    // and differ in their blue level: each reconstruction must be near its own picture,
    // nearer than to the other pictures and than a mid-grey picture
    let grid = image::open(out.join("reconstructions.png")).unwrap().into_rgb8();
    let tile = |row: u32, col: u32| -> Vec<f32> {
        let (ox, oy) = (col * 21 * 5 + 5, row * 13 * 5 + 5);
        (0..12 * 20)
            .flat_map(|p| grid.get_pixel(ox + (p % 20) * 5, oy + (p / 20) * 5).0)
            .map(|v| v as f32 / 255.0)
            .collect()
    };
    let mse =
        |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64;
    let (originals, recons): (Vec<_>, Vec<_>) = (0..8).map(|c| (tile(0, c), tile(1, c))).unzip();
    let own = (0..8).map(|i| mse(&recons[i], &originals[i])).sum::<f64>() / 8.0;
    let other = (0..8)
        .flat_map(|i| (0..8).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| mse(&recons[i], &originals[j]))
        .sum::<f64>()
        / 56.0;
    let grey = (0..8).map(|i| mse(&[0.5; 240 * 3], &originals[i])).sum::<f64>() / 8.0;
    let evidence = format!("reconstructions' mean squared error to their own pictures {own:.4}, to the others {other:.4}; a grey picture's {grey:.4}");
    eprintln!("rgb folder: {evidence}");
    assert!(own < 0.25 * grey && own < 0.5 * other, "{evidence}");
}

#[test]
fn a_batch_past_llvmpipes_loop_limit_is_refused_with_the_largest_that_fits() {
    let g = gpu();
    let config = VaeConfig { arch: Arch::Conv, ..VaeConfig::mlp(28, 28, 0, 16) };
    let (train, test) = (synthetic(8, 28, 28, 1), synthetic(8, 28, 28, 2));
    let fits = |batch: usize| Trainer::new(g, Model::init(&config, 1), Hyper::new(1e-3, 1), batch, &train, &test);
    let on_lavapipe = g.is_llvmpipe() && elbo::kernels::Kernels::new(g).unwrap().subgroup.is_some();
    if !on_lavapipe {
        // no loop limit to respect: a batch past lavapipe's is taken
        assert!(fits(4096).is_ok());
        return;
    }
    let text = format!("{:#}", fits(8192).err().expect("lavapipe took a batch past its loop limit"));
    assert!(text.contains("65535") && text.contains("--batch-size"), "{text}");
    // the batch it offers is the largest whose loops stay within the limit
    let most: usize = text.rsplit("--batch-size ").next().unwrap().split(' ').next().unwrap().parse().unwrap();
    let conv1 = elbo::model::Layout::new(&config).layers()[0].conv_shape();
    let variant =
        elbo::kernels::conv_variant(&elbo::kernels::Kernels::new(g).unwrap(), "conv2d_backward_weight", &conv1);
    let turns = |b: usize| elbo::kernels::weight_loop_turns(variant, &conv1, b, false);
    assert!(
        turns(most) <= elbo::kernels::LLVMPIPE_LOOP_TURNS && turns(most + 1) > elbo::kernels::LLVMPIPE_LOOP_TURNS,
        "{text}"
    );
}

/// By default Adam runs inside the weight gradients exactly where the adapter has the
/// kernel and the model is dense, and its moments live in textures exactly where the
/// adapter has the texel kernels and `Gpu::texel_moments_pay` (on lavapipe: Mesa 22 and
/// older): then the fused kernel or adam_update_texel runs, else the fused kernel's
/// buffer build or adam_update. Checked for dense and convolutional models.
#[test]
fn adam_is_fused_and_keeps_its_moments_where_they_pay() {
    let g = gpu();
    let k = elbo::kernels::Kernels::new(g).unwrap();
    let texels = k.adam_update_texel.is_some() && g.texel_moments_pay();
    let store = if texels { MomentStore::Texels } else { MomentStore::Buffers };
    if let Some(ga) = &k.gemm_adam {
        assert_eq!(ga.moments, store, "the fused kernel's moments on {}", g.adapter_line());
    }
    for (name, config, _) in small_models() {
        let (train, test) = data_for(&config);
        let t = Trainer::new(g, Model::init(&config, 3), Hyper::new(1e-3, 9), 10, &train, &test).unwrap();
        let fused = k.gemm_adam.is_some() && config.arch != Arch::Conv;
        let at = format!("{name} on {}", g.adapter_line());
        assert_eq!(t.adam_fused(), fused, "{at}");
        assert_eq!(t.moment_store(), store, "{at}");
        let adam: Vec<&str> =
            t.train_dispatches().iter().map(|d| d.label.as_ref()).filter(|l| l.starts_with("adam")).collect();
        let expected = match (fused, texels) {
            (true, _) => vec![],
            (false, true) => vec!["adam_update_texel"],
            (false, false) => vec!["adam_update"],
        };
        assert_eq!(adam, expected, "{at}");
    }
    if g.is_llvmpipe() {
        let mesa = g.mesa_version().expect("lavapipe's driver info names its Mesa version");
        assert_eq!(g.texel_moments_pay(), mesa.0 <= elbo::gpu::NEWEST_WIDE_MESA, "Mesa {mesa:?}");
    }
}

/// The Adam ε a run asks for (`--adam-eps`, Hyper::adam_eps) is the one its update uses,
/// fused into the weight gradients or not: one step's parameters against the textbook
/// update with that ε, and far from the update with PyTorch's 1e-8 (which the small
/// gradients of a first step tell apart).
#[test]
fn adams_epsilon_is_the_one_asked_for() {
    let g = gpu();
    let (_, config, hyper) = small_models().into_iter().find(|(_, c, _)| c.arch == Arch::Mlp).unwrap();
    let eps = 1e-4;
    let (train, test) = data_for(&config);
    let model = Model::init(&config, 3);
    let mut unfused = None;
    let lr = hyper.lr as f64;
    for fuse_adam in [false, true] {
        let hyper = Hyper { fuse_adam, adam_eps: eps, ..hyper.clone() };
        let mut t = Trainer::new(g, model.clone(), hyper, 10, &train, &test).unwrap();
        t.set_order(&(0..25).collect::<Vec<u32>>()).unwrap();
        t.train_step(0).unwrap();
        t.wait().unwrap();
        let got = t.model().unwrap().params.clone();
        match &unfused {
            None => {
                let grads = t.read_grads().unwrap();
                let update = |eps: f32| {
                    let mut p = model.params.clone();
                    let (mut m1, mut m2) = (vec![0.0; p.len()], vec![0.0; p.len()]);
                    textbook_adam(&mut p, &grads, &mut m1, &mut m2, 1, lr, eps as f64);
                    p
                };
                assert_close("parameters after one step, adam eps 1e-4", &got, &update(eps), 1e-7, 1e-5);
                let far = got.iter().zip(&update(1e-8)).filter(|(a, b)| (*a - *b).abs() > 1e-5).count();
                assert!(far > got.len() / 100, "only {far} of {} parameters tell eps 1e-4 from 1e-8", got.len());
                unfused = Some(got);
            }
            Some(want) => assert_close("parameters after one step, fused Adam, eps 1e-4", &got, want, 1e-7, 1e-5),
        }
    }
}

/// Adam as Kingma and Ba write it (Algorithm 1), in f64, with the β1 = 0.9 and
/// β2 = 0.999 the README promises (PyTorch's defaults): step `t` (from 1) at learning
/// rate `lr`, both bias corrections applied to the moments themselves.
fn textbook_adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], t: i32, lr: f64, eps: f64) {
    let (beta1, beta2) = (0.9f64, 0.999f64);
    for i in 0..p.len() {
        let gi = g[i] as f64;
        let mi = beta1 * m[i] as f64 + (1.0 - beta1) * gi;
        let vi = beta2 * v[i] as f64 + (1.0 - beta2) * gi * gi;
        let m_hat = mi / (1.0 - beta1.powi(t));
        let v_hat = vi / (1.0 - beta2.powi(t));
        p[i] = (p[i] as f64 - lr * m_hat / (v_hat.sqrt() + eps)) as f32;
        (m[i], v[i]) = (mi as f32, vi as f32);
    }
}

/// The per-step uniform a training or evaluation batch of `images` images must have,
/// built from the run's settings alone (not from the trainer's `step_values`): the
/// gradient is the batch average over images x samples rows, an autoencoder decodes
/// the posterior mean and has no KL term. The Adam terms are left at zero: the
/// references that take a `Step` do not read them.
fn step_for(
    config: &VaeConfig,
    seed: u32,
    counter: u32,
    images: usize,
    samples: usize,
    start: usize,
    beta: f32,
) -> elbo::kernels::Step {
    let ae = config.kind == elbo::model::ModelKind::Ae;
    let rows = images * samples;
    elbo::kernels::Step {
        seed,
        counter,
        rows: rows as u32,
        batch_start: start as u32,
        slot: 0,
        inv_rows: 1.0 / rows as f32,
        noise: if ae { 0.0 } else { 1.0 },
        beta: if ae { 0.0 } else { beta },
        lr_t: 0.0,
        bc2_sqrt: 0.0,
        pad0: 0,
        pad1: 0,
    }
}

/// Two epochs of `elbo train` (a KL warm-up over 1.5 epochs, the learning rate halved
/// after the first) against a CPU run of the same steps: the reference model's
/// gradients, the KL weight of the warm-up's linear ramp, the learning rate of each
/// epoch and Adam from its paper, all computed here from the options. The parameters
/// and both moments must match the checkpoints after the first epoch and after the
/// second (three steps each, the last of 4 images).
#[test]
fn training_follows_textbook_adam_across_an_epoch_boundary_and_a_learning_rate_change() {
    let dir = Scratch::new("textbook-adam");
    let (lr, decay, eps, beta, warmup, seed, batch) = (3e-3f32, 0.5f64, 1e-4f32, 0.8f32, 1.5f64, 5u64, 10usize);
    let opts = |epochs: usize, out: &str| elbo::train::TrainOptions {
        out: Some(dir.join(out)),
        epochs,
        hidden: Some(elbo::train::Widths(vec![16])),
        latent_dim: 3,
        batch_size: batch,
        train_limit: Some(24),
        test_limit: Some(8),
        lr,
        lr_decay: decay,
        adam_eps: eps,
        beta,
        kl_warmup: warmup,
        seed,
        quiet: true,
        ..Default::default()
    };
    elbo::train::train(&opts(1, "one")).unwrap();
    elbo::train::train(&opts(2, "two")).unwrap();
    let ckpt =
        |out: &str| elbo::train::checkpoint::Checkpoint::load(&dir.join(out).join("checkpoint.safetensors")).unwrap();
    let (after1, after2) = (ckpt("one"), ckpt("two"));

    let config = VaeConfig::mlp(28, 28, 16, 3);
    let (train, _) = mnist_subset(24, 8);
    let lay = config.loss_layout();
    let mut model = Model::init(&config, seed);
    let n = model.params.len();
    let (mut m1, mut m2) = (vec![0f32; n], vec![0f32; n]);
    let steps = train.len.div_ceil(batch);
    let mut t = 0;
    for (epoch, got) in [(1usize, &after1), (2, &after2)] {
        // the random streams go on from where the run left them (evaluation draws too)
        let counter0 = if epoch == 1 { 0 } else { after1.state.counter };
        let order = elbo::train::epoch_order(seed, epoch, train.len);
        // ExponentialLR: lr decayed once after every epoch
        let lr_e = lr as f64 * decay.powi(epoch as i32 - 1);
        for b in 0..steps {
            t += 1;
            // the KL weight rises linearly over `warmup` epochs of steps, then stays at beta
            let kl_weight = beta as f64 * (t as f64 / (warmup * steps as f64)).min(1.0);
            let images = batch.min(train.len - b * batch);
            let st = step_for(&config, seed as u32, counter0 + b as u32, images, 1, b * batch, kl_weight as f32);
            let m = batch.next_multiple_of(4);
            let x = r::gather_batch(&train.pixels, &order, m, lay.pixels, 1, lay.x_cp, false, 1, &st);
            let (_, grads, _) = r::vae_loss_and_grads(&model, &x, m, 0.0, &st);
            textbook_adam(&mut model.params, &grads, &mut m1, &mut m2, t, lr_e, eps as f64);
        }
        let what = format!("after epoch {epoch} ({t} steps, lr {lr_e:.2e})");
        let s = &got.state;
        assert_eq!(s.steps_done, t as u32, "{what}: Adam steps in the checkpoint");
        assert_close(&format!("{what}: parameters"), &s.params, &model.params, 2e-3 * lr, 1e-4);
        let scale = |v: &[f32]| v.iter().fold(0f32, |a, x| a.max(x.abs()));
        assert_close(&format!("{what}: first moment"), &s.moment1, &m1, 1e-4 * scale(&m1), 1e-3);
        assert_close(&format!("{what}: second moment"), &s.moment2, &m2, 1e-4 * scale(&m2), 1e-3);
    }
}
