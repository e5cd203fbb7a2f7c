//! The discretised likelihood of a Gaussian decoder's 8-bit values (elbo eval): erfc
//! and the bins' probabilities against numerical integration, and eval's figures.

mod common;
use common::Scratch;
use elbo::infer::{self as inf, OpenModel, UseOptions};

/// The integral of f over [a, b] by composite Simpson with `n` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    let inner: f64 = (1..n).map(|i| f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 }).sum();
    (f(a) + f(b) + inner) * h / 3.0
}

#[test]
fn erfc_matches_its_integral() {
    // erfc(x) = 2 / sqrt(pi) * integral from x to infinity of exp(-t^2), on both sides of
    // the switch from the series to the continued fraction at 3, and far into the tail
    for x in [-2.0, -0.5, 0.0, 0.3, 1.0, 2.5, 2.999, 3.001, 4.0, 6.0, 9.0] {
        let tail = simpson(|t: f64| (-t * t).exp(), x, x + 12.0, 40_000) * 2.0 / std::f64::consts::PI.sqrt();
        let got = inf::erfc(x);
        let rel = ((got - tail) / tail).abs();
        assert!(
            rel < 1e-9,
            "erfc({x}) = {got:e}, the integral gives {tail:e} (relative error {rel:e}, tolerance 1e-9)"
        );
    }
}

#[test]
fn the_bins_probabilities_are_the_density_over_them_and_add_up_to_one() {
    for (mean, raw) in [(0.0f32, 0.0f32), (-4.0, -1.0), (3.0, 0.5), (-9.0, -3.0), (1.2, 2.0)] {
        let mu = 1.0 / (1.0 + (-(mean as f64)).exp());
        let lv = elbo::model::LOGVAR_MID as f64 + elbo::model::LOGVAR_HALF as f64 * (raw as f64).tanh();
        let sd = (0.5 * lv).exp();
        let pdf = |x: f64| (-(x - mu).powi(2) / (2.0 * sd * sd)).exp() / (sd * (2.0 * std::f64::consts::PI).sqrt());
        let p: Vec<f64> = (0..=255u8).map(|b| (-inf::discretized_nll(b, mean, raw)).exp()).collect();
        let total: f64 = p.iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "mean {mean} raw {raw}: the 256 probabilities add up to {total}");
        // the end bins reach to the infinities: integrate 12 standard deviations out
        for b in [0u8, 1, 17, 128, 200, 254, 255] {
            let lo = if b == 0 { mu - 12.0 * sd } else { (b as f64 - 0.5) / 255.0 };
            let hi = if b == 255 { mu + 12.0 * sd } else { (b as f64 + 0.5) / 255.0 };
            let want = simpson(pdf, lo.min(hi), hi, 20_000);
            let rel = ((p[b as usize] - want) / want).abs();
            assert!(
                rel < 1e-7,
                "mean {mean} raw {raw} byte {b}: P = {:e}, the integral {want:e} (relative error {rel:e})",
                p[b as usize]
            );
        }
    }
}

#[test]
fn eval_of_a_gaussian_decoder_reports_the_8_bit_probability() {
    let dir = Scratch::new("density_gaussian");
    let out = dir.as_ref().join("run");
    let opts = elbo::train::TrainOptions {
        out: Some(out.clone()),
        epochs: 1,
        likelihood: elbo::model::Likelihood::Gaussian,
        hidden: Some(elbo::train::Widths(vec![32])),
        latent_dim: 2,
        train_limit: Some(500),
        test_limit: Some(20),
        quiet: true,
        ..Default::default()
    };
    elbo::train::train(&opts).unwrap();
    let s = OpenModel::open(&UseOptions {
        model: out.clone(),
        dataset: elbo::train::DatasetChoice::Mnist,
        data_dir: None,
        channels_in: 1,
        image_size: None,
        test_fraction: 0.1,
        images: None,
        seed: 1,
        out: Some(out.join("eval")),
        adapter: Default::default(),
        quiet: true,
    })
    .unwrap();
    let r = inf::eval(&s, 4, Some(20), false, &|_, _| {}).unwrap();
    let (log_p, se, bits) = r.discrete.expect("a Gaussian decoder's eval gives the discretised figure");
    // a probability of the 784 bytes is at most 1; the density can exceed it
    assert!(log_p < 0.0 && bits > 0.0 && bits < 8.0 && se > 0.0, "log P {log_p}, bits/dim {bits}, se {se}");
    assert!((bits - (-log_p / (784.0 * std::f64::consts::LN_2))).abs() < 1e-9);
    assert!(r.log_px.is_finite() && r.log_px > log_p, "the density's log p(x) {} vs log P(x) {log_p}", r.log_px);
}
