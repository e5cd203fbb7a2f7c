//! The threads that keep a CPU adapter's processors awake (`elbo::gpu::awake`): they spin
//! while work is in flight and stop after it. Alone in its binary, so that no other
//! test's work keeps them spinning.

mod common;
use common::gpu;
use elbo::gpu::awake::{self, LINGER};
use elbo::kernels::{Bind, Dispatch, Kernels};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn who_gets_spinning_threads() {
    let cpu = wgpu::DeviceType::Cpu;
    assert_eq!(awake::wanted(cpu, None), cfg!(target_os = "linux"));
    assert_eq!(awake::wanted(cpu, Some("1")), cfg!(target_os = "linux"));
    assert!(!awake::wanted(cpu, Some("0")));
    assert!(!awake::wanted(cpu, Some(" 0\n")));
    assert!(!awake::wanted(wgpu::DeviceType::DiscreteGpu, None));
    assert!(!awake::wanted(wgpu::DeviceType::IntegratedGpu, None));
}

#[test]
fn spinners_run_while_work_is_in_flight_and_stop_after_it() {
    let g = gpu();
    let spin = std::env::var(awake::ENV).ok();
    if !awake::wanted(g.info.device_type, spin.as_deref()) {
        assert!(g.spinners.is_none(), "{} should have no spinning threads", g.adapter_line());
        return;
    }
    let s = g.spinners.expect("a CPU adapter keeps spinning threads");
    assert!(s.threads() >= 1);
    assert!(g.adapter_line().contains("kept awake"), "{}", g.adapter_line());

    // a few thousand one-invocation dispatches: tens of milliseconds of work that
    // leaves the processors mostly idle
    let k = Kernels::new(g).unwrap();
    let counter = g.buffer("touch counter", 16, wgpu::BufferUsages::empty()).unwrap();
    let touch = Dispatch::with_groups(g, "touch", &k.touch, &[(0, Bind::Buffer(&counter))], [1, 1, 1]);
    // the threads turn while it runs (polling without waiting, so that `done` can be
    // seen); on a machine busy with other work they get little time, so the work is
    // submitted again, up to 20 times, until they have turned while it was in flight
    let t0 = Instant::now();
    let mut turned_in_flight = false;
    let (mut before, mut attempts) = (s.turns(), 0);
    while !turned_in_flight && attempts < 20 {
        attempts += 1;
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for _ in 0..3000 {
                touch.encode(&mut pass);
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        before = s.turns();
        g.submit(enc.finish());
        let flag = done.clone();
        g.queue.on_submitted_work_done(move || flag.store(true, Ordering::SeqCst));
        assert!(s.in_flight() >= 1 && s.busy(), "a submission in flight: in_flight {}", s.in_flight());
        while !done.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(2));
            turned_in_flight |= s.turns() > before && !done.load(Ordering::SeqCst);
            g.device.poll(wgpu::PollType::Poll).unwrap();
        }
        g.wait().unwrap();
    }
    assert!(
        turned_in_flight,
        "no turn of the spinning threads in {attempts} submissions of work ({:?}; turns {} -> {})",
        t0.elapsed(),
        before,
        s.turns()
    );
    // done, and LINGER later they stop
    assert_eq!(s.in_flight(), 0, "the submission's completion was not counted");
    std::thread::sleep(LINGER * 10);
    assert!(!s.busy(), "still busy {:?} after the work", LINGER * 10);
    // every thread leaves the loop (on a busy machine it may wait for its turn to see that)
    let t1 = Instant::now();
    while s.spinning() > 0 && t1.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.spinning(), 0, "threads still spinning {:?} after the work", t1.elapsed() + LINGER * 10);
    let idle = s.turns();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(s.turns(), idle, "the threads kept turning with no work in flight");
}
