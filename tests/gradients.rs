//! Every backward reference against central finite differences of its forward
//! reference (in f64 around f32 functions, so step sizes are modest).

mod common;
use common::{assert_close, flat_layout, random, ACTIVATIONS};
use elbo::kernels::Step;
use elbo::model::{Activation, Arch, Likelihood, LossLayout, Model, ModelKind, VaeConfig};
use elbo::reference as r;

const H: f32 = 1e-2;

/// Central differences of `f` at `x`, one coordinate at a time.
fn numeric_grad(x: &[f32], f: impl Fn(&[f32]) -> f64) -> Vec<f32> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = x[i];
            x[i] = v + H;
            let up = f(&x);
            x[i] = v - H;
            let down = f(&x);
            x[i] = v;
            ((up - down) / (2.0 * H as f64)) as f32
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(a, b)| *a as f64 * *b as f64).sum()
}

/// Values in [-hi, -lo] or [lo, hi], away from ReLU's kink.
fn away_from_zero(n: usize, seed: u32, lo: f32, hi: f32) -> Vec<f32> {
    random(n, seed, lo, hi).iter().enumerate().map(|(i, v)| if i % 3 == 0 { -v } else { *v }).collect()
}

fn step(rows: u32) -> Step {
    Step {
        seed: 3,
        counter: 11,
        rows,
        batch_start: 0,
        slot: 0,
        inv_rows: 1.0 / rows as f32,
        noise: 1.0,
        beta: 0.6,
        lr_t: 0.0,
        bc2_sqrt: 1.0,
        pad0: 0,
        pad1: 0,
    }
}

#[test]
fn gemm_backward_matches_finite_differences() {
    let (m, n, k) = (5, 6, 7);
    for act in ACTIVATIONS {
        let pre = away_from_zero(m * k, 1, 0.2, 1.0); // the layer input before the previous activation
        let x = r::activation_forward(&pre, act);
        let w = random(n * k, 2, -1.0, 1.0);
        let b = random(n, 3, -1.0, 1.0);
        let g = random(m * n, 4, -1.0, 1.0); // dJ/dy for J = sum g * y
                                             // J = sum g * (x w^T + b): the layer's own activation is activation_backward's
                                             // test, whose kinks a step of the weights could cross here
        let dy = &g;
        let j_of = |x: &[f32], w: &[f32], b: &[f32]| dot(&g, &r::gemm_forward(x, w, b, m, n, k, Activation::Identity));
        let (dw, db) = r::gemm_backward_weight(dy, &x, m, n, k);
        let what = |t: &str| format!("{t} through {}", act.name());
        assert_close(&what("dW"), &dw, &numeric_grad(&w, |w| j_of(&x, w, &b)), 2e-3, 1e-2);
        assert_close(&what("db"), &db, &numeric_grad(&b, |b| j_of(&x, &w, b)), 2e-3, 1e-2);
        // through the previous layer's activation, whose output the kernel reads
        let dpre = r::gemm_backward_input(dy, &w, Some((&x, act)), m, n, k);
        let numeric = numeric_grad(&pre, |p| j_of(&r::activation_forward(p, act), &w, &b));
        assert_close(&what("dX before the activation"), &dpre, &numeric, 2e-3, 1e-2);
        let dx = r::gemm_backward_input(dy, &w, None, m, n, k);
        assert_close(&what("dX"), &dx, &numeric_grad(&x, |x| j_of(x, &w, &b)), 2e-3, 1e-2);
    }
}

#[test]
fn activation_backward_matches_finite_differences() {
    let x = away_from_zero(40, 5, 0.1, 3.0);
    let g = random(40, 6, -1.0, 1.0);
    for act in ACTIVATIONS {
        // the derivative from the output, as the backward passes take it
        let y = r::activation_forward(&x, act);
        let analytic: Vec<f32> = y.iter().zip(&g).map(|(&y, &g)| g * r::act_grad(y, act)).collect();
        let numeric = numeric_grad(&x, |x| dot(&g, &r::activation_forward(x, act)));
        assert_close(&format!("act_grad {}", act.name()), &analytic, &numeric, 1e-3, 1e-2);
    }
    let y = r::relu_forward(&x);
    assert_close(
        "relu_backward",
        &r::relu_backward(&y, &g),
        &numeric_grad(&x, |x| dot(&g, &r::relu_forward(x))),
        1e-3,
        1e-2,
    );
    let y = r::sigmoid_forward(&x);
    assert_close(
        "sigmoid_backward",
        &r::sigmoid_backward(&y, &g),
        &numeric_grad(&x, |x| dot(&g, &r::sigmoid_forward(x))),
        1e-3,
        1e-2,
    );
}

/// A flat (MLP, Bernoulli) loss layout over `values` greyscale values.
#[test]
fn reparam_backward_matches_finite_differences() {
    let (m, lat) = (6, 3);
    for (live, kl_mask) in [(6u32, vec![1.0, 1.0, 1.0]), (4, vec![1.0, 0.0, 1.0])] {
        let st = step(live);
        let mulv = random(m * 2 * lat, 7, -1.5, 1.5);
        let g: Vec<f32> = random(m * lat, 8, -1.0, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| if i / lat < live as usize { *v } else { 0.0 })
            .collect();
        // J = sum g * z + beta / rows * sum of the live images' KL of the unmasked dimensions
        let j = |mv: &[f32]| {
            let z = r::reparam_forward(mv, m, lat, &st);
            let mut kl = 0f64;
            for row in 0..live as usize {
                for d in 0..lat {
                    let (mu, lv) = (mv[row * 2 * lat + d] as f64, mv[row * 2 * lat + lat + d] as f64);
                    kl += kl_mask[d] as f64 * -0.5 * (1.0 + lv - mu * mu - lv.exp());
                }
            }
            dot(&g, &z) + (st.beta * st.inv_rows) as f64 * kl
        };
        let got = r::reparam_backward(&mulv, &g, &kl_mask, m, lat, &st);
        assert_close(
            &format!("reparam_backward rows={live} mask={kl_mask:?}"),
            &got,
            &numeric_grad(&mulv, j),
            2e-3,
            1e-2,
        );
    }
}

#[test]
fn elbo_backward_matches_finite_differences() {
    let (m, lat) = (4, 2);
    let conv_rgb = LossLayout { pixels: 3, channels: 3, x_cp: 4, o_cp: 8, o_cols: 24, halves: false, gaussian: true };
    for lay in [flat_layout(9, false), flat_layout(9, true), conv_rgb] {
        for live in [4u32, 3] {
            let st = step(live);
            // moderate log-variances: the Gaussian NLL grows as exp(-logvar), and f32 finite
            // differences of a loss in the thousands are too coarse to check anything
            let out =
                random(m * lay.o_cols, 9, if lay.gaussian { -0.4 } else { -2.0 }, if lay.gaussian { 0.4 } else { 2.0 });
            let x = random(m * lay.pixels * lay.x_cp, 10, 0.2, 0.6);
            let mulv = random(m * 2 * lat, 11, -1.0, 1.0);
            let (d_out, _) = r::elbo_forward_backward(&out, &x, &mulv, m, &lay, lat, &st);
            let j = |o: &[f32]| {
                let (_, per_image) = r::elbo_forward_backward(o, &x, &mulv, m, &lay, lat, &st);
                st.inv_rows as f64 * per_image.iter().map(|v| v[0] as f64).sum::<f64>()
            };
            assert_close(&format!("d out {lay:?} rows={live}"), &d_out, &numeric_grad(&out, j), 1e-3, 1e-2);
        }
    }
}

#[test]
fn gemm_forward_elbo_backward_matches_finite_differences() {
    // the fused loss's d out is the gradient of its recon partial sums (over the live rows,
    // by inv_rows) with respect to the logits: through the bias, column sums of d out
    let (m, n, k, block) = (4, 10, 3, 4);
    let h = random(m * k, 61, -1.0, 1.0);
    let w = random(n * k, 62, -1.0, 1.0);
    let b = random(n, 63, -1.0, 1.0);
    let target: Vec<f32> =
        random(m * n, 64, 0.0, 1.0).iter().enumerate().map(|(i, &v)| if i % 2 == 0 { v.round() } else { v }).collect();
    for live in [4u32, 3] {
        let st = step(live);
        let (d, _) = r::gemm_forward_elbo(&h, &w, &b, &target, m, n, k, block, &st);
        let db: Vec<f32> = (0..n).map(|c| (0..m).map(|r| d[r * n + c]).sum()).collect();
        let j = |bb: &[f32]| {
            let (_, partials) = r::gemm_forward_elbo(&h, &w, bb, &target, m, n, k, block, &st);
            st.inv_rows as f64 * partials.iter().map(|&v| v as f64).sum::<f64>()
        };
        assert_close(&format!("gemm_forward_elbo d out rows={live}"), &db, &numeric_grad(&b, j), 1e-3, 1e-2);
    }
}

#[test]
fn gaussian_nll_is_the_normal_log_density() {
    // -log N(x; sigmoid(a), sigma^2) with logvar = MID + HALF tanh(raw), directly
    for (x, mean, raw) in [(0.3f32, 0.5f32, 0.2f32), (0.9, 0.1, -0.7), (0.0, 0.0, 1.3)] {
        let lv = elbo::model::LOGVAR_MID as f64 + elbo::model::LOGVAR_HALF as f64 * (raw as f64).tanh();
        let var = lv.exp();
        let mu = 1.0 / (1.0 + (-(mean as f64)).exp());
        let direct = 0.5 * (2.0 * std::f64::consts::PI * var).ln() + (x as f64 - mu).powi(2) / (2.0 * var);
        let (nll, _, _) = r::value_nll(x, mean, raw, true);
        assert_close(&format!("nll x={x} mean={mean} raw={raw}"), &[nll], &[direct as f32], 1e-4, 1e-5);
    }
}

#[test]
fn bce_from_logits_is_the_bernoulli_log_likelihood() {
    // recon = -sum [x log s + (1 - x) log(1 - s)], s = sigmoid(logit), where it is safe to compute directly
    let st = step(1);
    let logits = random(16, 12, -5.0, 5.0);
    let x = random(16, 13, 0.0, 1.0);
    let (_, per_image) = r::elbo_forward_backward(&logits, &x, &[0.0, 0.0], 1, &flat_layout(16, false), 1, &st);
    let direct: f64 = logits
        .iter()
        .zip(&x)
        .map(|(&l, &t)| {
            let s = 1.0 / (1.0 + (-(l as f64)).exp());
            -(t as f64 * s.ln() + (1.0 - t as f64) * (1.0 - s).ln())
        })
        .sum();
    assert_close("recon", &[per_image[0][0]], &[direct as f32], 1e-4, 1e-5);
    // and the KL term of a posterior equal to the prior is zero
    assert_eq!(per_image[0][1], 0.0);
}

#[test]
fn whole_model_gradient_matches_finite_differences() {
    let mlp = VaeConfig::mlp(3, 4, 6, 2);
    let conv =
        VaeConfig { arch: Arch::Conv, width: 4, height: 4, conv_channels: vec![3, 2], hidden: vec![], ..mlp.clone() };
    let cases = [
        ("mlp bernoulli", mlp.clone(), 0.0),
        ("mlp gaussian", VaeConfig { likelihood: Likelihood::Gaussian, ..mlp.clone() }, 0.0),
        ("mlp autoencoder", VaeConfig { kind: ModelKind::Ae, ..mlp.clone() }, 0.0),
        ("mlp free bits", mlp.clone(), 0.4),
        ("mlp 2 hidden layers", VaeConfig { hidden: vec![5, 4], ..mlp.clone() }, 0.0),
        ("mlp no hidden layer", VaeConfig { hidden: vec![], ..mlp.clone() }, 0.0),
        ("conv bernoulli", conv.clone(), 0.0),
        (
            "conv gaussian rgb with hidden",
            VaeConfig { likelihood: Likelihood::Gaussian, channels: 3, hidden: vec![5], ..conv.clone() },
            0.0,
        ),
        ("conv 2 dense layers", VaeConfig { hidden: vec![4, 3], ..conv.clone() }, 0.0),
        (
            "mlp tanh, 2 hidden layers",
            VaeConfig { hidden: vec![5, 4], activation: Activation::Tanh, ..mlp.clone() },
            0.0,
        ),
        ("mlp elu", VaeConfig { activation: Activation::Elu, ..mlp.clone() }, 0.0),
        ("mlp leaky relu", VaeConfig { activation: Activation::LeakyRelu, ..mlp.clone() }, 0.0),
        ("conv tanh with hidden", VaeConfig { hidden: vec![5], activation: Activation::Tanh, ..conv.clone() }, 0.0),
        ("conv elu", VaeConfig { activation: Activation::Elu, ..conv.clone() }, 0.0),
        (
            "conv 3 layers rgb gaussian",
            VaeConfig {
                likelihood: Likelihood::Gaussian,
                channels: 3,
                width: 8,
                height: 8,
                conv_channels: vec![3, 5, 2],
                ..conv
            },
            0.0,
        ),
    ];
    for (name, config, free_bits) in cases {
        let model = Model::init(&config, 5);
        let m = 5;
        let x_shape = config.input_shape();
        let x = r::pad_channels(&random(m * x_shape.values(), 14, 0.2, 0.8), m, x_shape);
        let mut st = step(4); // one padding row
        if config.kind == ModelKind::Ae {
            st.noise = 0.0;
            st.beta = 0.0;
        }
        let (_, grads, _) = r::vae_loss_and_grads(&model, &x, m, free_bits, &st);
        // every real parameter (the padding has no gradient)
        let live: Vec<usize> = model.layout.tensors(&config).into_iter().flat_map(|t| t.offsets).collect();
        let loss_at = |i: usize, v: f32| {
            let mut p = model.clone();
            p.params[i] = v;
            r::vae_loss_and_grads(&p, &x, m, free_bits, &st).2
        };
        // central differences at two step sizes; where they disagree the step crossed a ReLU
        // kink and the coordinate says nothing, so it is left out (but at most 5% of them)
        let fd = |i: usize, h: f32| {
            let v = model.params[i];
            ((loss_at(i, v + h) - loss_at(i, v - h)) / (2.0 * h as f64)) as f32
        };
        let (mut analytic, mut numeric) = (Vec::new(), Vec::new());
        for &i in &live {
            let (coarse, fine) = (fd(i, H), fd(i, H / 4.0));
            if (coarse - fine).abs() <= 2e-3 + 2e-2 * fine.abs() {
                analytic.push(grads[i]);
                numeric.push(fine);
            }
        }
        assert!(
            numeric.len() * 20 >= live.len() * 19,
            "{name}: only {} of {} coordinates were smooth enough to check",
            numeric.len(),
            live.len()
        );
        assert_close(
            &format!("{name}: loss gradient, {} of {} parameters", numeric.len(), live.len()),
            &analytic,
            &numeric,
            5e-3,
            2e-2,
        );
        let padding: f32 = (0..grads.len()).filter(|i| !live.contains(i)).map(|i| grads[i].abs()).sum();
        assert_eq!(padding, 0.0, "{name}: the padding of the flat buffer got a gradient");
    }
}

#[test]
fn conv_backward_matches_finite_differences() {
    use elbo::reference::ConvShape;
    for s in
        [ConvShape::new(5, 6, 2, 3, 3, 2, 1), ConvShape::new(4, 4, 1, 2, 4, 2, 1), ConvShape::new(3, 5, 3, 2, 2, 1, 0)]
    {
        let batch = 2;
        let pre = away_from_zero(batch * s.in_h * s.in_w * s.in_c, 21, 0.2, 1.0);
        let w = random(s.out_c * s.in_c * s.kernel * s.kernel, 22, -0.5, 0.5);
        let b = random(s.out_c, 23, -0.5, 0.5);
        let g = random(batch * s.out_h * s.out_w * s.out_c, 24, -1.0, 1.0);
        for act in ACTIVATIONS {
            // J = sum g * conv(act(pre)) (the layer's own activation: activation_backward)
            let x = r::activation_forward(&pre, act);
            let dy = &g;
            let j_of =
                |x: &[f32], w: &[f32], b: &[f32]| dot(&g, &r::conv2d_forward(x, w, b, batch, &s, Activation::Identity));
            let what = |t: &str| format!("conv {t} through {} {s:?}", act.name());
            let (dw, db) = r::conv2d_backward_weight(dy, &x, batch, &s);
            assert_close(&what("dW"), &dw, &numeric_grad(&w, |w| j_of(&x, w, &b)), 2e-3, 1e-2);
            assert_close(&what("db"), &db, &numeric_grad(&b, |b| j_of(&x, &w, b)), 2e-3, 1e-2);
            let dpre = r::conv2d_backward_input(dy, &w, Some((&x, act)), batch, &s);
            let numeric = numeric_grad(&pre, |p| j_of(&r::activation_forward(p, act), &w, &b));
            assert_close(&what("dX before the activation"), &dpre, &numeric, 2e-3, 1e-2);
        }
        // the transposed convolution: y = conv2d_backward_input(x), so its gradients are the
        // forward convolution (input side) and backward_weight with the roles swapped
        let xt = random(batch * s.out_h * s.out_w * s.out_c, 25, -1.0, 1.0);
        let gt = random(batch * s.in_h * s.in_w * s.in_c, 26, -1.0, 1.0);
        let jt = |xt: &[f32], w: &[f32]| dot(&gt, &r::conv2d_backward_input(xt, w, None, batch, &s));
        let zero = vec![0.0; s.out_c];
        let dxt = r::conv2d_forward(&gt, &w, &zero, batch, &s, Activation::Identity);
        assert_close(&format!("transposed conv dX {s:?}"), &dxt, &numeric_grad(&xt, |v| jt(v, &w)), 2e-3, 1e-2);
        let (dwt, _) = r::conv2d_backward_weight(&xt, &gt, batch, &s);
        assert_close(&format!("transposed conv dW {s:?}"), &dwt, &numeric_grad(&w, |v| jt(&xt, v)), 2e-3, 1e-2);
    }
}

#[test]
fn softmax_cross_entropy_matches_finite_differences() {
    let (m, classes) = (5, 4);
    let st = step(4);
    let logits = random(m * classes, 30, -3.0, 3.0);
    let labels = [0u32, 3, 1, 2, 2];
    let (d, _) = r::softmax_cross_entropy(&logits, &labels, m, classes, &st);
    let j = |l: &[f32]| {
        let (_, rows) = r::softmax_cross_entropy(l, &labels, m, classes, &st);
        st.inv_rows as f64 * rows.iter().map(|v| v[0] as f64).sum::<f64>()
    };
    assert_close("d logits", &d, &numeric_grad(&logits, j), 1e-3, 1e-2);
}

/// Restoration's noisy likelihoods (reference::noisy_value_nll, which elbo.wgsl's kernel
/// matches in kernels.rs): each is the density it claims, computed directly, and its
/// gradients with respect to the decoder's two outputs are the finite differences.
#[test]
fn noisy_likelihoods_are_their_densities_and_gradients() {
    use elbo::kernels::Observation::{self, Flip, Gaussian};
    let direct = |x: f64, mean: f64, raw: f64, gaussian: bool, obs: Observation| -> f64 {
        let mu = 1.0 / (1.0 + (-mean).exp());
        let own = (elbo::model::LOGVAR_MID as f64 + elbo::model::LOGVAR_HALF as f64 * raw.tanh()).exp();
        match obs {
            Gaussian(s) => {
                let var = (s as f64).powi(2) + if gaussian { own } else { 0.0 };
                0.5 * (2.0 * std::f64::consts::PI * var).ln() + (x - mu).powi(2) / (2.0 * var)
            }
            Flip(p) => {
                let q = p as f64 + (1.0 - 2.0 * p as f64) * mu;
                -(x * q.ln() + (1.0 - x) * (1.0 - q).ln())
            }
            Observation::Clean => unreachable!(),
        }
    };
    for (obs, gaussian) in [(Gaussian(0.3), false), (Gaussian(0.1), true), (Flip(0.1), false), (Flip(0.3), false)] {
        for (x, mean, raw) in [(0.3f32, 0.5f32, 0.2f32), (1.0, -1.2, -0.7), (0.0, 2.0, 1.1)] {
            let what = format!("{obs:?} gaussian decoder {gaussian} x={x} mean={mean} raw={raw}");
            let (nll, d_mean, d_raw) = r::noisy_value_nll(x, mean, raw, gaussian, obs);
            let want = direct(x as f64, mean as f64, raw as f64, gaussian, obs);
            assert_close(&format!("{what}: nll"), &[nll], &[want as f32], 1e-4, 1e-5);
            let h = 1e-3;
            let fd_mean = (direct(x as f64, mean as f64 + h, raw as f64, gaussian, obs)
                - direct(x as f64, mean as f64 - h, raw as f64, gaussian, obs))
                / (2.0 * h);
            let fd_raw = (direct(x as f64, mean as f64, raw as f64 + h, gaussian, obs)
                - direct(x as f64, mean as f64, raw as f64 - h, gaussian, obs))
                / (2.0 * h);
            assert_close(&format!("{what}: d/d mean"), &[d_mean], &[fd_mean as f32], 1e-4, 1e-3);
            assert_close(&format!("{what}: d/d raw log-variance"), &[d_raw], &[fd_raw as f32], 1e-4, 1e-3);
        }
    }
}
