//! Per-dispatch GPU timing: a timestamp around every dispatch (inside the
//! compute pass where the adapter allows it, one pass per dispatch where it
//! only has pass-boundary timestamps, host wall-clock with a submit per
//! dispatch where it has none).

use super::Dispatch;
use crate::gpu::Gpu;
use anyhow::{anyhow, Context, Result};
use std::time::Instant;

/// How the profiler times dispatches on this adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Timestamps written between dispatches inside one compute pass: the step runs as in training.
    InsidePass,
    /// Timestamps at the boundaries of one compute pass per dispatch.
    PassBoundaries,
    /// No timestamp queries: one submit and wait per dispatch, timed on the host (includes submit overhead).
    HostClock,
}

impl Timer {
    pub fn for_gpu(gpu: &Gpu) -> Timer {
        if gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
            Timer::InsidePass
        } else if gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            Timer::PassBoundaries
        } else {
            Timer::HostClock
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Timer::InsidePass => "GPU timestamps between dispatches inside one compute pass",
            Timer::PassBoundaries => {
                "GPU timestamps at pass boundaries, one compute pass per dispatch (this adapter has no timestamps inside passes)"
            }
            Timer::HostClock => {
                "this adapter has no timestamp queries: host wall-clock time with one submit and wait per dispatch (includes submit overhead)"
            }
        }
    }
}

/// One timed dispatch (or copy) of one run.
#[derive(Clone, Debug)]
pub struct Event {
    pub label: String,
    pub shape: String,
    pub flops: f64,
    pub bytes: f64,
    /// Start, relative to the start of the run, and duration, in nanoseconds.
    pub start_ns: f64,
    pub dur_ns: f64,
}

/// Extra work timed after the dispatches, outside the compute pass (the weight copies).
pub struct Tail<'a> {
    pub label: &'static str,
    pub bytes: f64,
    pub encode: &'a dyn Fn(&mut wgpu::CommandEncoder),
}

pub struct Profiler {
    pub timer: Timer,
    queries: Option<wgpu::QuerySet>,
    resolve: wgpu::Buffer,
    capacity: u32,
    period_ns: f64,
}

impl Profiler {
    /// A profiler for runs of up to `max_dispatches` dispatches.
    pub fn new(gpu: &Gpu, max_dispatches: usize) -> Profiler {
        let timer = Timer::for_gpu(gpu);
        let capacity = 2 * (max_dispatches as u32 + 2);
        let queries = (timer != Timer::HostClock).then(|| {
            gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profiler"),
                ty: wgpu::QueryType::Timestamp,
                count: capacity,
            })
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profiler resolve"),
            size: capacity as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Profiler { timer, queries, resolve, capacity, period_ns: gpu.queue.get_timestamp_period() as f64 }
    }

    /// Runs `list` (then `tail`) once, in one submit, and times every dispatch.
    pub fn run(&self, gpu: &Gpu, list: &[&Dispatch], tail: Option<&Tail>) -> Result<Vec<Event>> {
        let n = list.len() as u32;
        if 2 * (n + 2) > self.capacity {
            return Err(anyhow!("the profiler was built for {} dispatches, got {n}", self.capacity / 2 - 2));
        }
        match (self.timer, &self.queries) {
            (Timer::HostClock, _) | (_, None) => Self::host_clock(gpu, list, tail),
            (timer, Some(qs)) => self.timestamps(gpu, timer, qs, list, tail),
        }
    }

    /// Each dispatch in a submit of its own, timed by the host's clock.
    fn host_clock(gpu: &Gpu, list: &[&Dispatch], tail: Option<&Tail>) -> Result<Vec<Event>> {
        let origin = Instant::now();
        let mut events = Vec::new();
        for d in list {
            let t0 = origin.elapsed().as_nanos() as f64;
            crate::kernels::run_refs(gpu, &[d])?;
            events.push(event(d, t0, origin.elapsed().as_nanos() as f64 - t0));
        }
        if let Some(t) = tail {
            let t0 = origin.elapsed().as_nanos() as f64;
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            (t.encode)(&mut enc);
            gpu.submit(enc.finish());
            gpu.wait()?;
            events.push(tail_event(t, t0, origin.elapsed().as_nanos() as f64 - t0));
        }
        Ok(events)
    }

    /// The dispatches in one submit, timed by the GPU's timestamps: inside one pass, or
    /// one pass a dispatch where the adapter has timestamps only at pass boundaries.
    fn timestamps(
        &self,
        gpu: &Gpu,
        timer: Timer,
        qs: &wgpu::QuerySet,
        list: &[&Dispatch],
        tail: Option<&Tail>,
    ) -> Result<Vec<Event>> {
        let n = list.len() as u32;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        // query layout: InsidePass: 0 = start, i + 1 = end of dispatch i;
        //               PassBoundaries: 2i = start, 2i + 1 = end of dispatch i.
        let used = if timer == Timer::InsidePass {
            let mut pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("profiled"), timestamp_writes: None });
            pass.write_timestamp(qs, 0);
            for (i, d) in list.iter().enumerate() {
                d.encode(&mut pass);
                pass.write_timestamp(qs, i as u32 + 1);
            }
            n + 1
        } else {
            for (i, d) in list.iter().enumerate() {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&d.label),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(2 * i as u32),
                        end_of_pass_write_index: Some(2 * i as u32 + 1),
                    }),
                });
                d.encode(&mut pass);
            }
            2 * n
        };
        let can_time_tail = gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
        let mut total = used;
        if let Some(t) = tail {
            if can_time_tail {
                enc.write_timestamp(qs, used);
                (t.encode)(&mut enc);
                enc.write_timestamp(qs, used + 1);
                total += 2;
            } else {
                (t.encode)(&mut enc);
            }
        }
        enc.resolve_query_set(qs, 0..total, &self.resolve, 0);
        gpu.submit(enc.finish());
        let raw = gpu.read_buffer(&self.resolve, 0, total as u64 * 8).context("reading the timestamps")?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        let ns = |i: u32| (ticks[i as usize].wrapping_sub(ticks[0])) as f64 * self.period_ns;
        let mut events = Vec::new();
        for (i, d) in list.iter().enumerate() {
            let i = i as u32;
            let (a, b) = if timer == Timer::InsidePass { (i, i + 1) } else { (2 * i, 2 * i + 1) };
            events.push(event(d, ns(a), (ns(b) - ns(a)).max(0.0)));
        }
        if let (Some(t), true) = (tail, can_time_tail) {
            events.push(tail_event(t, ns(used), (ns(used + 1) - ns(used)).max(0.0)));
        }
        Ok(events)
    }
}

/// The event of dispatch `d`.
fn event(d: &Dispatch, start: f64, dur: f64) -> Event {
    Event {
        label: d.label.to_string(),
        shape: d.shape.clone(),
        flops: d.flops,
        bytes: d.bytes,
        start_ns: start,
        dur_ns: dur,
    }
}

/// The event of the work after the dispatches.
fn tail_event(t: &Tail, start: f64, dur: f64) -> Event {
    Event { label: t.label.to_string(), shape: String::new(), flops: 0.0, bytes: t.bytes, start_ns: start, dur_ns: dur }
}
