//! `elbo train`'s learning-rate schedules and presets, on the options alone.

use elbo::model::{Activation, Arch};
use elbo::train::{burda_stage, LrSchedule, Objective, Preset, TrainOptions, Widths};

fn close(what: &str, got: f32, want: f64) {
    assert!((got as f64 - want).abs() <= 1e-6 * want.abs().max(1e-12), "{what}: got {got}, want {want}");
}

#[test]
fn burdas_schedule_runs_3_to_the_i_epochs_at_each_rate() {
    // stage i covers 3^i epochs: 1 | 2-4 | 5-13 | 14-40 | 41-121 | 122-364 | 365-1093 | 1094-3280
    let ends = [1usize, 4, 13, 40, 121, 364, 1093, 3280];
    let o = TrainOptions { lr: 1e-3, lr_schedule: LrSchedule::Burda, ..Default::default() };
    for (i, &end) in ends.iter().enumerate() {
        let want = 1e-3 * 10f64.powf(-(i as f64) / 7.0);
        assert_eq!(burda_stage(end), i as u32, "epoch {end} ends stage {i}");
        close(&format!("lr at epoch {end}"), o.lr_at(end), want);
        if i < 7 {
            assert_eq!(burda_stage(end + 1), i as u32 + 1, "epoch {} starts stage {}", end + 1, i + 1);
        }
    }
    // after the 3,280 epochs the last rate stays
    close("lr at epoch 5000", o.lr_at(5000), 1e-4);
}

#[test]
fn the_cosine_schedule_falls_to_zero_over_the_epochs() {
    let o = TrainOptions { lr: 2e-3, lr_schedule: LrSchedule::Cosine, epochs: 10, ..Default::default() };
    close("epoch 1", o.lr_at(1), 2e-3);
    close("epoch 6 (half way)", o.lr_at(6), 1e-3);
    close("epoch 11 (past the end)", o.lr_at(11), 0.0);
    let rates: Vec<f32> = (1..=10).map(|e| o.lr_at(e)).collect();
    assert!(rates.windows(2).all(|w| w[1] < w[0]), "not falling: {rates:?}");
}

#[test]
fn a_preset_sets_what_is_not_given_and_says_so() {
    let given = TrainOptions {
        preset: Some(Preset::BurdaVae),
        latent_dim: 30,
        given: vec!["preset".into(), "latent_dim".into()],
        ..Default::default()
    };
    let (o, line) = given.with_preset().unwrap();
    assert_eq!((o.arch, o.hidden.clone(), o.activation), (Arch::Mlp, Some(Widths(vec![200, 200])), Activation::Tanh));
    assert_eq!((o.latent_dim, o.batch_size, o.epochs, o.mc_samples), (30, 20, 3280, 1), "latent 30 was given");
    assert_eq!((o.lr, o.lr_schedule, o.adam_eps, o.binarize), (1e-3, LrSchedule::Burda, 1e-4, true));
    let line = line.expect("a preset names what it set");
    for part in ["burda-vae", "--hidden 200,200", "--activation tanh", "--adam-eps 1e-4", "--lr-schedule burda"] {
        assert!(line.contains(part), "{part} missing from: {line}");
    }
    assert!(line.contains("given instead of the preset's --latent-dim 50"), "{line}");
    // the IWAE preset: the same model and schedule, the bound over 50 draws, and --k given
    // beside it wins
    let iwae = TrainOptions {
        preset: Some(Preset::BurdaIwae),
        k: Some(5),
        given: vec!["preset".into(), "k".into()],
        ..Default::default()
    };
    let (o, line) = iwae.with_preset().unwrap();
    assert_eq!((o.objective, o.samples(), o.latent_dim, o.lr_schedule), (Objective::Iwae, 5, 50, LrSchedule::Burda));
    let line = line.expect("a preset names what it set");
    assert!(
        line.contains("burda-iwae")
            && line.contains("--objective iwae")
            && line.contains("given instead of the preset's --k 50"),
        "{line}"
    );
    let o = TrainOptions { preset: Some(Preset::BurdaIwae), given: vec!["preset".into()], ..Default::default() };
    assert_eq!(o.with_preset().unwrap().0.samples(), 50);
    // without a preset nothing changes
    let plain = TrainOptions::default();
    let (same, none) = plain.with_preset().unwrap();
    assert!(none.is_none());
    assert_eq!(serde_json::to_value(&same).unwrap(), serde_json::to_value(&plain).unwrap());
}
