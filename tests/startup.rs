//! Start-up compiles only what runs: a trainer creates pipelines only for the kernels
//! its lists dispatch or its GEMM timing ran, times only the GEMMs its lists run as
//! GEMMs, and a second trainer of the model on the
//! same device creates none, compiles none (`kernels::warm`) and times none. One test
//! alone in its binary, so that no other test's kernels are counted.

mod common;
use common::{gpu, synthetic};
use elbo::kernels::{gemm, warm, Kernels};
use elbo::model::{Model, VaeConfig};
use elbo::train::{Hyper, Trainer};

#[test]
fn a_second_trainer_compiles_and_times_nothing() {
    // an empty choice cache and compile record, whatever earlier runs on this machine
    // left (the test is alone in its binary, so no other thread reads the environment)
    let scratch = common::Scratch::created("startup_cache");
    std::env::set_var("ELBO_CACHE_DIR", scratch.as_ref());
    let g = gpu();
    let (train, test) = (synthetic(96, 28, 28, 1), synthetic(40, 28, 28, 2));
    let config = VaeConfig::mlp(28, 28, 24, 3);
    let k = Kernels::of(g).unwrap();
    assert!(k.all().iter().all(|p| !p.compiled()), "kernels compiled before any model was built");

    let first = Trainer::new(g, Model::init(&config, 1), Hyper::new(1e-3, 1), 32, &train, &test).unwrap();
    let timed_first = gemm::variants_timed();
    let gemm_timed = |entry: &str| {
        ["gemm_forward", "gemm_backward_input", "gemm_backward_weight"].iter().any(|p| entry.starts_with(p))
            && !entry.contains("reparam")
            && !entry.contains("elbo")
            && !entry.contains("adam")
    };
    let created: Vec<&str> = k.all().iter().filter(|p| p.compiled()).map(|p| p.entry()).collect();
    let unused: Vec<&&str> =
        created.iter().filter(|e| !first.all_dispatches().any(|d| d.kernel.entry() == **e) && !gemm_timed(e)).collect();
    assert!(unused.is_empty(), "pipelines created but neither dispatched nor timed: {unused:?}");
    // only the GEMMs the lists run as GEMMs were chosen (timed): none a fusion replaces
    let choice = first.gemm_choice();
    assert!(!choice.decisions.is_empty(), "no GEMM was chosen");
    for d in &choice.decisions {
        let run = first.all_dispatches().any(|x| x.label.starts_with(d.pass.entry()) && gemm_timed(x.kernel.entry()));
        assert!(run, "{:?} at {:?} was chosen but no list runs it as a GEMM", d.pass, d.shape);
    }
    let compiled: usize = k.all().iter().map(|p| p.states_warmed()).sum();
    eprintln!(
        "first trainer: {} pipelines created, {compiled} kernel states compiled, {timed_first} GEMM variants timed, {} compiled in parallel",
        created.len(),
        warm::warmed_so_far()
    );
    if warm::applies(g) {
        assert!(warm::warmed_so_far() > 0, "lavapipe with more than one core compiled nothing in parallel");
    }

    let (created_before, warmed_before) = (created.len(), warm::warmed_so_far());
    let second = Trainer::new(g, Model::init(&config, 2), Hyper::new(1e-3, 1), 32, &train, &test).unwrap();
    let created_after = k.all().iter().filter(|p| p.compiled()).count();
    assert_eq!(created_after, created_before, "the second trainer created pipelines");
    assert_eq!(warm::warmed_so_far(), warmed_before, "the second trainer compiled kernels");
    assert_eq!(gemm::variants_timed(), timed_first, "the second trainer timed GEMM variants");
    assert!(second.all_dispatches().count() > 0);
    // every kernel the second one dispatches is one the first compiled
    let states: usize = k.all().iter().map(|p| p.states_warmed()).sum();
    assert_eq!(states, compiled, "kernel states compiled after the second trainer");
}
