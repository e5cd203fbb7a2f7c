//! Keeps a CPU adapter's processors awake while it has work in flight.
//!
//! lavapipe runs each dispatch on worker threads that sleep between dispatches, and
//! every dispatch starts by waking them. In a virtual machine whose idle processors halt
//! at once (`haltpoll.guest_halt_poll_ns=0`, as on many cloud VMs), that wake goes
//! through the host, which may have given the halted processor away: each of a step's
//! dispatches then waits for the host's scheduler. PyTorch's OpenMP threads spin
//! between operations and never let their processors halt.
//!
//! Here one thread per processor, at the idle scheduling class (it runs only where
//! nothing else wants the processor), loops on `sched_yield` while work submitted
//! through `Gpu::submit` is in flight and for `LINGER` after it. A processor running it
//! never halts, and a lavapipe worker woken there takes it over at once: steadier and
//! faster epochs on a 2-core VM, while threads that spin on `pause` without yielding
//! made them slower (docs/PERFORMANCE.md, "Keeping the processors awake").
//!
//! Linux only (elsewhere nothing spins); `ELBO_SPIN=0` turns it off.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the threads keep spinning after the last work in flight completes: long
/// enough to cover the host's turn between one wait and the next submit.
pub const LINGER: Duration = Duration::from_millis(2);

/// Work in flight this long without a submit or completion no longer keeps them
/// spinning (a lost device's work never completes).
const STALE: Duration = Duration::from_secs(2);

/// The environment variable that turns spinning off when it is `0`.
pub const ENV: &str = "ELBO_SPIN";

/// Whether an adapter of `device_type` gets spinning threads, given `ELBO_SPIN`'s value.
pub fn wanted(device_type: wgpu::DeviceType, env: Option<&str>) -> bool {
    cfg!(target_os = "linux") && device_type == wgpu::DeviceType::Cpu && env.map(str::trim) != Some("0")
}

/// The adapter line's note on `n` spinning threads.
pub fn describe(n: usize) -> String {
    format!("processors kept awake by {n} idle-priority threads ({ENV}=0: off)")
}

pub struct Spinners {
    start: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds from `start` to the last submit or completion.
    last: AtomicU64,
    lock: Mutex<()>,
    wake: Condvar,
    threads: usize,
    /// Turns of the spin loop, all threads together.
    turns: AtomicU64,
    /// Threads inside the spin loop now.
    spinning: AtomicUsize,
}

static SPINNERS: OnceLock<&'static Spinners> = OnceLock::new();

/// The process's spinning threads (one per processor), started on first use.
pub fn spinners() -> &'static Spinners {
    SPINNERS.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let s: &'static Spinners = Box::leak(Box::new(Spinners {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            threads,
            turns: AtomicU64::new(0),
            spinning: AtomicUsize::new(0),
        }));
        for i in 0..threads {
            // a thread that cannot start only loses its processor's share of the gain
            let _ = std::thread::Builder::new().name(format!("elbo-awake-{i}")).spawn(move || s.run());
        }
        s
    })
}

impl Spinners {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Marks one submission in flight; `end` marks it done.
    pub fn begin(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }

    pub fn end(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether the threads should be spinning now.
    pub fn busy(&self) -> bool {
        let since = self.now().saturating_sub(self.last.load(Ordering::Relaxed));
        (self.in_flight.load(Ordering::SeqCst) > 0 && since < STALE.as_nanos() as u64)
            || since < LINGER.as_nanos() as u64
    }

    /// Submissions marked in flight and not yet done.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The number of spinning threads (one per processor).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Threads inside the spin loop now (each adds its turns before it leaves).
    pub fn spinning(&self) -> usize {
        self.spinning.load(Ordering::SeqCst)
    }

    /// Turns of the spin loop so far, all threads together.
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }

    fn run(&self) {
        idle_class();
        loop {
            {
                let mut held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                while !self.busy() {
                    held = self.wake.wait_timeout(held, STALE).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
            // turns counted here and added now and then, so that the threads do not
            // share a cache line on every turn
            let mut turns = 0u64;
            self.spinning.fetch_add(1, Ordering::SeqCst);
            while self.busy() {
                std::thread::yield_now(); // sched_yield on Linux
                turns += 1;
                if turns == 256 {
                    self.turns.fetch_add(turns, Ordering::Relaxed);
                    turns = 0;
                }
            }
            self.turns.fetch_add(turns, Ordering::Relaxed);
            self.spinning.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Puts the calling thread in the idle scheduling class: it runs only where no other
/// thread of any process wants the processor, and gives way to one at once.
#[cfg(target_os = "linux")]
fn idle_class() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` and changes only this thread's policy.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

#[cfg(not(target_os = "linux"))]
fn idle_class() {}
