//! The importance-weighted objective (iwae.wgsl): its kernels against their references,
//! its gradient against finite differences, the assembled step against the reference
//! model, and at K = 1 the ELBO's step.

mod common;
use common::{assert_close, flat_layout, gpu, random, rows, small_models, Scratch};
use elbo::data::Dataset;
use elbo::kernels::{self, elbo_slot as es, iwae_slot as is, Dispatch, Step};
use elbo::model::{Likelihood, Model, ModelKind, VaeConfig};
use elbo::reference as r;
use elbo::train::{Hyper, Trainer};
use kernels::Bind::{Buffer as B, Texture as T};

fn step(rows: u32, beta: f32) -> Step {
    Step { seed: 5, counter: 3, rows, slot: 1, inv_rows: 1.0 / rows as f32, noise: 1.0, beta, ..Step::default() }
}

#[test]
fn iwae_kernels_match_reference() {
    // K = 1, 3 and 4 draws an image, a batch whose last rows are padding (live images
    // fewer than the rows hold), outputs NaN beforehand
    let g = gpu();
    let ik = kernels::Kernels::new(g).unwrap();
    let ik = ik.iwae(g).unwrap();
    for (m, k, live_images, lat) in [(12usize, 3usize, 3usize, 5usize), (8, 1, 7, 2), (16, 4, 4, 3), (24, 4, 5, 9)] {
        let live = (live_images * k) as u32;
        let st = step(live, 0.7);
        let mulv = random(m * 2 * lat, 21, -1.5, 1.5);
        // recons of a few nats apart, so that the weights differ
        let recon = random(m, 22, 40.0, 46.0);
        let image_loss: Vec<[f32; 2]> = recon.iter().map(|&v| [v, -1.0]).collect();
        let mv = g.matrix("mulv", m, 2 * lat).unwrap();
        g.write_matrix(&mv, &mulv);
        let su = g.uniform("step", &st);
        let iu = g.uniform("iwae", &kernels::Iwae { m: m as u32, latent: lat as u32, k: k as u32, pad: 0 });
        let lossb = g.buffer_with("image_loss", bytemuck::cast_slice(&image_loss)).unwrap();
        let scale = g.buffer_with("row_scale", bytemuck::cast_slice(&vec![f32::NAN; m])).unwrap();
        let history = g.buffer_with("history", bytemuck::cast_slice(&[f32::NAN; 12])).unwrap();
        let binds = [
            (es::STEP, B(&su)),
            (es::MULV, T(&mv.view)),
            (es::IMAGE_LOSS, B(&lossb)),
            (is::IW, B(&iu)),
            (is::ROW_SCALE, B(&scale)),
            (is::HISTORY, B(&history)),
        ];
        let d = Dispatch::new(g, "iwae_weights", &ik.iwae_weights, &binds, 64, 64);
        kernels::run(g, &[d]).unwrap();
        let (want_loss, want_scale, want_slot) = r::iwae_weights(&image_loss, &mulv, m, lat, k, &st);
        let what = format!("m={m} K={k} images={live_images} L={lat}");
        let got_loss = g.read_f32(&lossb, 0, 2 * m).unwrap();
        let want_flat: Vec<f32> = want_loss.iter().flatten().copied().collect();
        assert_close(&format!("iwae_weights image_loss {what}"), &got_loss, &want_flat, 1e-4, 1e-4);
        let got_scale = g.read_f32(&scale, 0, m).unwrap();
        assert_close(&format!("iwae_weights row_scale {what}"), &got_scale, &want_scale, 1e-6, 1e-4);
        // each image's weights add up to 1 / images
        for i in 0..live_images {
            let sum: f32 = got_scale[i * k..(i + 1) * k].iter().sum();
            assert_close(&format!("{what}: image {i}'s weights"), &[sum], &[1.0 / live_images as f32], 1e-6, 1e-4);
        }
        assert_close(
            &format!("iwae_weights history {what}"),
            &g.read_f32(&history, 4, 4).unwrap(),
            &want_slot,
            1e-2,
            1e-5,
        );
        // the bound is no larger a loss than the draws' mean -ELBO (Jensen), and equal at K = 1
        let elbo_loss = (want_slot[0] + st.beta * want_slot[1]) / want_slot[2];
        let bound = want_slot[3] / want_slot[2];
        assert!(bound <= elbo_loss + 1e-3, "{what}: bound loss {bound} above the ELBO's {elbo_loss}");
        if k == 1 {
            assert_close(&format!("{what}: K = 1 bound"), &[bound], &[elbo_loss], 1e-3, 1e-5);
        }

        // d[mu | logvar] from dz, by the weights iwae_weights wrote
        let dz = random(m * lat, 23, -1.0, 1.0);
        let dzm = g.matrix("dz", m, lat).unwrap();
        g.write_matrix(&dzm, &dz);
        let dm = common::output("d mulv", m, 2 * lat);
        let binds = [
            (es::STEP, B(&su)),
            (es::MULV, T(&mv.view)),
            (is::IW, B(&iu)),
            (is::ROW_SCALE, B(&scale)),
            (is::DZ, T(&dzm.view)),
            (is::D_MULV, T(&dm.view)),
        ];
        let texels = m * (2 * lat).div_ceil(4);
        let d = Dispatch::new(g, "iwae_reparam_backward", &ik.iwae_reparam_backward, &binds, texels, 64);
        kernels::run(g, &[d]).unwrap();
        let want = r::iwae_reparam_backward(&mulv, &dz, &got_scale, m, lat, &st);
        let got = rows(g.read_matrix(&dm).unwrap(), m, 2 * lat);
        assert_close(&format!("iwae_reparam_backward {what}"), &got, &want, 1e-5, 1e-4);

        // d out weighted per row, Bernoulli and Gaussian, one invocation and one workgroup a row
        for gaussian in [false, true] {
            let lay = flat_layout(7, gaussian);
            let out = random(m * lay.o_cols, 24, -2.0, 2.0);
            let x = random(m * 7, 25, 0.0, 1.0);
            let (om, xm) = (g.matrix("out", m, lay.o_cols).unwrap(), g.matrix("x", m, 7).unwrap());
            g.write_matrix(&om, &out);
            g.write_matrix(&xm, &x);
            let eu = g.uniform("elbo", &kernels::Elbo::new(m, lat, &lay, false));
            for (entry, pipeline, per) in [
                ("elbo_backward_weighted", &ik.elbo_backward_weighted, 64),
                ("elbo_backward_weighted_wide", &ik.elbo_backward_weighted_wide, 1),
            ] {
                let dout = common::output("d out", m, lay.o_cols);
                let binds = [
                    (es::P, B(&eu)),
                    (es::DEC_OUT, T(&om.view)),
                    (es::TARGET_X, T(&xm.view)),
                    (es::D_OUT, T(&dout.view)),
                    (es::OBSERVED, T(&xm.view)),
                    (is::ROW_SCALE, B(&scale)),
                ];
                let d = Dispatch::new(g, entry, pipeline, &binds, m, per);
                kernels::run(g, &[d]).unwrap();
                let want = r::elbo_backward_weighted(&out, &x, &got_scale, m, &lay);
                let got = rows(g.read_matrix(&dout).unwrap(), m, lay.o_cols);
                assert_close(&format!("{entry} gaussian={gaussian} {what}"), &got, &want, 1e-7, 1e-4);
            }
        }
    }
}

/// A tiny model's flat parameters perturbed one coordinate at a time: central
/// differences of the reference loss against its reference gradient.
#[test]
fn iwae_gradient_matches_finite_differences() {
    for (name, config) in [
        ("mlp bernoulli", VaeConfig::mlp(3, 3, 5, 2)),
        ("mlp gaussian", VaeConfig { likelihood: Likelihood::Gaussian, ..VaeConfig::mlp(3, 2, 4, 2) }),
    ] {
        let model = Model::init(&config, 4);
        let (k, images) = (3, 2);
        let m = k * images;
        let x1 = random(2 * config.pixels(), 26, 0.0, 1.0);
        // each image repeated over its K rows, as gather_batch lays them out
        let x: Vec<f32> =
            (0..m).flat_map(|r| x1[(r / k) * config.pixels()..(r / k + 1) * config.pixels()].to_vec()).collect();
        let st = step(m as u32, 0.9);
        let (_, grads) = r::iwae_loss_and_grads(&model, &x, m, k, &st);
        let h = 1e-2f32;
        let mut p = model.clone();
        let (mut got, mut want) = (Vec::new(), Vec::new());
        for (i, &gi) in grads.iter().enumerate() {
            let v = p.params[i];
            p.params[i] = v + h;
            let up = r::iwae_loss_and_grads(&p, &x, m, k, &st).0;
            p.params[i] = v - h;
            let down = r::iwae_loss_and_grads(&p, &x, m, k, &st).0;
            p.params[i] = v;
            got.push(gi);
            want.push(((up - down) / (2.0 * h as f64)) as f32);
        }
        assert!(want.iter().any(|v| v.abs() > 1e-2), "{name}: a flat loss checks nothing");
        assert_close(&format!("{name}: IWAE gradient against finite differences"), &got, &want, 3e-3, 2e-2);
    }
}

fn synthetic(len: usize, c: &VaeConfig, seed: u32) -> Dataset {
    let pixels = (0..len * c.pixels()).map(|i| (elbo::rng::rand_bits(seed, 7, 0, i as u32) & 0xff) as u8).collect();
    Dataset {
        name: "synthetic".into(),
        channels: c.channels,
        width: c.width,
        height: c.height,
        pixels,
        labels: None,
        len,
    }
}

#[test]
fn iwae_step_matches_reference_model() {
    // every kind of small model but the autoencoder (which has no q to weigh by), the
    // free-bits one and the 36x36 RGB one: the step's flat gradient and batch loss at
    // K = 3, a full batch and the epoch's last, partial one. (The weights are exp of recon
    // differences: over 3,888 values the GPU's and the CPU's f32 sums part by ~1e-3 nats,
    // which moves the weights, and so the gradient, by as much, past the tolerance.)
    let g = gpu();
    for (name, config, hyper) in small_models() {
        if config.kind == ModelKind::Ae || hyper.free_bits > 0.0 || config.pixels() > 1000 {
            continue;
        }
        let (train, test) = (synthetic(25, &config, 1), synthetic(17, &config, 2));
        let (batch, k) = (10, 3);
        let hyper = Hyper { samples: k, iwae: true, fuse_adam: false, free_bits: 0.0, ..hyper.clone() };
        let model = Model::init(&config, 3);
        let mut t = Trainer::new(g, model.clone(), hyper, batch, &train, &test).unwrap();
        let labels: Vec<&str> = t.train_dispatches().iter().map(|d| d.label.as_ref()).collect();
        assert!(labels.contains(&"iwae_weights") && labels.contains(&"iwae_reparam_backward"), "{name}: {labels:?}");
        let order: Vec<u32> = (0..25).map(|i| (i * 7) % 25).collect();
        t.set_order(&order).unwrap();
        let lay = config.loss_layout();
        for b in [0usize, 2] {
            let st = t.step_values(if b == 2 { 5 } else { 10 }, b * batch, b, 1.0);
            let before = Model { params: t.model().unwrap().params.clone(), ..model.clone() };
            t.train_step(b).unwrap();
            t.wait().unwrap();
            let m = (batch * k).next_multiple_of(4);
            let x = r::gather_batch(&train.pixels, &order, m, lay.pixels, config.channels, lay.x_cp, false, k, &st);
            let (loss, want) = r::iwae_loss_and_grads(&before, &x, m, k, &st);
            let what = format!("{name}, K = {k}, batch {b}");
            assert_close(&format!("{what}: flat gradient"), &t.read_grads().unwrap(), &want, 1e-5, 2e-3);
            let slot = t.batch_losses(b + 1).unwrap()[b];
            assert_close(&format!("{what}: batch loss"), &[slot], &[loss as f32], 1e-3, 1e-4);
        }
    }
}

#[test]
fn a_one_draw_iwae_step_is_the_elbo_step() {
    // K = 1: every weight is 1 and the bound is the ELBO of the one draw. With the KL
    // weight 0 both steps are the reconstruction's alone and their gradients agree; with
    // it 1 the recon sums agree and the IWAE loss is the recon plus the draw's KL estimate
    let g = gpu();
    for (name, config, hyper) in small_models()
        .into_iter()
        .filter(|(n, _, _)| ["mlp bernoulli", "mlp gaussian rgb", "conv bernoulli", "conv tanh gaussian"].contains(n))
    {
        let (train, test) = (synthetic(25, &config, 1), synthetic(17, &config, 2));
        let batch = 10;
        for beta in [0.0f32, 1.0] {
            let mut got = Vec::new();
            for iwae in [false, true] {
                let hyper = Hyper { samples: 1, iwae, fuse_adam: false, beta, ..hyper.clone() };
                let mut t = Trainer::new(g, Model::init(&config, 3), hyper, batch, &train, &test).unwrap();
                let order: Vec<u32> = (0..25).collect();
                t.set_order(&order).unwrap();
                t.train_step(0).unwrap();
                t.wait().unwrap();
                let sums = t.read_history(1).unwrap();
                got.push((t.read_grads().unwrap(), sums));
            }
            let ((g_elbo, s_elbo), (g_iwae, s_iwae)) = (&got[0], &got[1]);
            let what = format!("{name}, beta {beta}");
            assert_close(&format!("{what}: recon sums"), &[s_iwae.recon as f32], &[s_elbo.recon as f32], 1e-3, 1e-5);
            assert_close(
                &format!("{what}: the bound's loss is the draw's recon + KL"),
                &[s_iwae.loss(beta as f64) as f32],
                &[((s_iwae.recon + beta as f64 * s_iwae.kl) / s_iwae.images) as f32],
                1e-3,
                1e-5,
            );
            if beta == 0.0 {
                assert_close(&format!("{what}: flat gradient"), g_iwae, g_elbo, 1e-6, 1e-4);
            } else {
                // the draw's KL estimate is not the analytic KL: the steps differ
                let diff = g_iwae.iter().zip(g_elbo).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(diff > 1e-4, "{what}: the sampled KL's gradient is the analytic one's ({diff})");
            }
        }
    }
}

#[test]
fn train_iwae_writes_the_bound_and_refuses_what_does_not_go_with_it() {
    let dir = Scratch::new("train_iwae");
    let run = |args: &[&str]| common::elbo_command().args(args).output().unwrap();
    let out = dir.as_ref().join("run");
    let o = run(&[
        "train",
        "--objective",
        "iwae",
        "--k",
        "5",
        "--epochs",
        "1",
        "--train-limit",
        "200",
        "--test-limit",
        "100",
        "--batch-size",
        "20",
        "--latent-dim",
        "4",
        "--hidden",
        "32",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!(line["objective"], "iwae", "{line}");
    assert_eq!(line["k"], 5, "{line}");
    let (bound, elbo) = (line["test_loss"].as_f64().unwrap(), line["test_elbo_loss"].as_f64().unwrap());
    assert!(bound.is_finite() && bound > 0.0 && bound < elbo, "test bound loss {bound}, ELBO's {elbo}: {line}");
    for (args, says) in [
        (&["--k", "5"][..], "--objective iwae"),
        (&["--objective", "iwae", "--mc-samples", "3"][..], "drop --mc-samples"),
        (&["--objective", "iwae", "--free-bits", "0.5"][..], "--free-bits"),
        (&["--objective", "iwae", "--model-kind", "ae"][..], "autoencoder"),
        (&["--objective", "iwae", "--k", "0"][..], "at least 1"),
    ] {
        let bad = dir.as_ref().join("refused");
        let mut a =
            vec!["train", "--epochs", "1", "--train-limit", "40", "--test-limit", "20", "--out", bad.to_str().unwrap()];
        a.extend_from_slice(args);
        let o = run(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
        assert!(!bad.exists(), "{args:?}: the refused run left {}", bad.display());
    }
}
