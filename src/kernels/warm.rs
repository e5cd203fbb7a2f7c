//! A run's new kernels compiled in parallel, on lavapipe.
//!
//! lavapipe (Mesa's llvmpipe) compiles a compute pipeline with LLVM when it first runs,
//! on the one thread that executes the device's commands: a cold start spends seconds
//! there, one kernel after another (docs/PERFORMANCE.md, "Start-up"). What it compiles
//! goes into Mesa's shader cache on disk, keyed by the shader and the static state of
//! its bindings (a texture's format and whether its sides are powers of two), and any
//! device of any process finds it there. So before a run's first step, `warm` gives
//! each of its kernels that this process has not run to one of a few helper devices,
//! one thread each (one a core), which dispatch them once with no workgroups over
//! resources of the same kinds and sizes; the run's own first dispatches then read
//! the cache. Each helper opens its own instance, whose closing waits for the cache's
//! writes to land.
//!
//! Elsewhere (GPUs compile when a pipeline is created; a CPU adapter that is not
//! lavapipe; Mesa's cache turned off; one core) it does nothing.

use super::dispatch::BindShape;
use super::{source, Dispatch};
use crate::gpu::Gpu;
use anyhow::{anyhow, Context, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What `warm` did: kernels compiled, on how many helper threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Warmed {
    pub kernels: usize,
    pub threads: usize,
}

static WARMED: AtomicUsize = AtomicUsize::new(0);

/// Kernels (each at a binding state) `warm` compiled in this process so far.
pub fn warmed_so_far() -> usize {
    WARMED.load(Ordering::Relaxed)
}

/// Whether this device compiles at a pipeline's first dispatch into Mesa's shader cache
/// and more than one core can compile.
pub fn applies(gpu: &Gpu) -> bool {
    let off = |v: &str| std::env::var(v).is_ok_and(|s| matches!(s.trim(), "1" | "true" | "yes"));
    gpu.is_llvmpipe()
        && gpu.info.backend == wgpu::Backend::Vulkan
        && !off("MESA_SHADER_CACHE_DISABLE")
        && !off("ELBO_NO_WARM")
        && threads() > 1
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The kernels of `lists` this process has not run over bindings of their state
/// (`Dispatch::state`), each with its first dispatch of that state.
pub fn cold<'a>(dispatches: impl IntoIterator<Item = &'a Dispatch>) -> Vec<&'a Dispatch> {
    let mut firsts: Vec<&Dispatch> = Vec::new();
    for d in dispatches {
        if !d.kernel.warmed(d.state) && !firsts.iter().any(|f| f.kernel.same(&d.kernel) && f.state == d.state) {
            firsts.push(d);
        }
    }
    firsts
}

/// Compiles the kernels of `dispatches` that this process has not run, in parallel
/// where that pays (`applies`); afterwards they count as run.
pub fn warm<'a>(gpu: &Gpu, dispatches: impl IntoIterator<Item = &'a Dispatch>) -> Result<Warmed> {
    if !applies(gpu) {
        return Ok(Warmed::default());
    }
    // what an earlier process compiled into the same shader cache is read from it at
    // its first dispatch, as fast as a helper would
    let mut record = Record::load(gpu);
    let jobs: Vec<&Dispatch> = cold(dispatches).into_iter().filter(|d| !record.has(d)).collect();
    // one kernel compiles as fast at its first dispatch, without a helper to open
    if jobs.len() < 2 {
        return Ok(Warmed::default());
    }
    let threads = threads().min(jobs.len());
    let next = AtomicUsize::new(0);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| helper(gpu, &jobs, &next))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a compiling thread panicked")))).collect()
    });
    for r in results {
        r.context("compiling the kernels in parallel")?;
    }
    for d in &jobs {
        d.kernel.set_warmed(d.state);
    }
    WARMED.fetch_add(jobs.len(), Ordering::Relaxed);
    record.add(&jobs);
    Ok(Warmed { kernels: jobs.len(), threads })
}

/// The kernels (at their binding states) that `warm` compiled into a shader cache, in
/// earlier processes too: `lavapipe-compiled.txt` beside the GEMM choice cache, a key a
/// line. A key is a hash of the adapter, its driver, Mesa's cache folder, the kernel's
/// source and entry point, and the binding state; a folder emptied since only costs
/// the run its compilations on one thread, as before `warm`.
struct Record {
    path: Option<std::path::PathBuf>,
    base: u64,
    keys: std::collections::HashSet<u64>,
}

impl Record {
    fn load(gpu: &Gpu) -> Record {
        use std::hash::{Hash, Hasher};
        let path = super::choice::choice_cache_file().map(|f| f.with_file_name("lavapipe-compiled.txt"));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&gpu.info.name, &gpu.info.driver_info, std::env::var_os(crate::gpu::SHADER_CACHE_DIR)).hash(&mut h);
        let text = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        let keys = text.lines().filter_map(|l| u64::from_str_radix(l.trim(), 16).ok()).collect();
        Record { path, base: h.finish(), keys }
    }

    fn key(&self, d: &Dispatch) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.base, source(d.kernel.file()), d.kernel.entry(), d.state).hash(&mut h);
        h.finish()
    }

    fn has(&self, d: &Dispatch) -> bool {
        self.keys.contains(&self.key(d))
    }

    /// Appends `jobs`' keys (a failure to write only costs a later run its warming).
    fn add(&mut self, jobs: &[&Dispatch]) {
        use std::io::Write;
        let Some(path) = &self.path else { return };
        let keys: Vec<u64> = jobs.iter().map(|d| self.key(d)).collect();
        let new: Vec<u64> = keys.into_iter().filter(|k| self.keys.insert(*k)).collect();
        let text: String = new.iter().map(|k| format!("{k:016x}\n")).collect();
        let _ = std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
        let _ = file.and_then(|mut f| f.write_all(text.as_bytes()));
    }
}

/// One helper: its own instance and device on the same adapter, taking `jobs` in turn.
fn helper(gpu: &Gpu, jobs: &[&Dispatch], next: &AtomicUsize) -> Result<()> {
    let instance = wgpu::Instance::new(crate::gpu::adapter::instance_descriptor(wgpu::Backends::VULKAN));
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN));
    let adapter = adapters
        .into_iter()
        .find(|a| {
            let i = a.get_info();
            i.name == gpu.info.name && i.driver_info == gpu.info.driver_info
        })
        .ok_or_else(|| anyhow!("{} is not listed again", gpu.info.name))?;
    let desc = crate::gpu::device_descriptor(gpu.device.features(), &gpu.limits);
    let (device, queue) = pollster::block_on(adapter.request_device(&desc))?;
    let mut modules: Vec<(&str, wgpu::ShaderModule)> = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(d) = jobs.get(i) else { break };
        let file = d.kernel.file();
        let module = match modules.iter().find(|(f, _)| *f == file) {
            Some((_, m)) => m.clone(),
            None => {
                let m = crate::gpu::shader_module(&device, file, &source(file))?;
                modules.push((file, m.clone()));
                m
            }
        };
        let pipeline = crate::gpu::create_pipeline(&device, &module, d.kernel.entry())?;
        let resources: Vec<(u32, Resource)> =
            d.binds.iter().map(|(slot, b)| (*slot, Resource::new(&device, b))).collect();
        let entries: Vec<wgpu::BindGroupEntry> =
            resources.iter().map(|(slot, r)| wgpu::BindGroupEntry { binding: *slot, resource: r.binding() }).collect();
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(d.kernel.entry()),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        queue.submit([enc.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

/// A helper's stand-in for a binding: a uniform with the same contents (lavapipe builds
/// the loop bounds it holds into the compiled kernel), a storage buffer as large up to
/// 64 KiB and zeroed (sizes are not compiled in; the one workgroup run reads and
/// writes within bounds or is held there by the robust access wgpu asks for), a
/// texture alike.
enum Resource {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView),
}

impl Resource {
    fn new(device: &wgpu::Device, b: &BindShape) -> Resource {
        match *b {
            BindShape::Buffer { contents: Some(ref bytes), usage, .. } => {
                use wgpu::util::DeviceExt;
                let init = wgpu::util::BufferInitDescriptor { label: None, contents: bytes, usage };
                Resource::Buffer(device.create_buffer_init(&init))
            }
            BindShape::Buffer { size, usage, contents: None } => {
                Resource::Buffer(device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: size.min(1 << 16),
                    usage,
                    mapped_at_creation: false,
                }))
            }
            BindShape::Texture { size, format, usage } => {
                let t = device.create_texture(&wgpu::TextureDescriptor {
                    label: None,
                    size,
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format,
                    usage,
                    view_formats: &[],
                });
                Resource::Texture(t.create_view(&Default::default()))
            }
        }
    }

    fn binding(&self) -> wgpu::BindingResource<'_> {
        match self {
            Resource::Buffer(b) => b.as_entire_binding(),
            Resource::Texture(v) => wgpu::BindingResource::TextureView(v),
        }
    }
}
