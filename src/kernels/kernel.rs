//! One kernel: a WGSL entry point in a module, its pipeline created when a dispatch
//! first takes it, and the binding states lavapipe compiled it for.

use super::source;
use crate::gpu::Gpu;
use anyhow::Result;

/// A shader file compiled into a module (validated by wgpu) on one device, with the
/// name it has in `SHADERS`, from which its source is made again (`source`).
#[derive(Clone)]
pub struct Module {
    pub file: &'static str,
    module: wgpu::ShaderModule,
}

impl Module {
    pub fn new(gpu: &Gpu, file: &'static str) -> Result<Module> {
        Ok(Module { file, module: gpu.shader(file, &source(file))? })
    }
}

/// One kernel: an entry point of a module, whose pipeline is created the first time a
/// dispatch takes it, so that the kernels a run does not use cost nothing (on a GPU
/// each pipeline is a compilation). On lavapipe the compilation itself waits for the
/// pipeline's first dispatch; `warm` does those of a run's new kernels in parallel,
/// and `warmed` says whether this process compiled it (a dispatch ran it, or `warm`
/// did). Cloning shares the kernel.
#[derive(Clone)]
pub struct Kernel(std::sync::Arc<KernelInner>);

struct KernelInner {
    device: wgpu::Device,
    adapter: String,
    module: Module,
    entry: &'static str,
    pipeline: std::sync::OnceLock<wgpu::ComputePipeline>,
    /// The binding states (`Dispatch::state`) it was compiled for in this process.
    warmed: std::sync::Mutex<Vec<u64>>,
}

impl Kernel {
    pub fn new(gpu: &Gpu, module: &Module, entry: &'static str) -> Kernel {
        Kernel(std::sync::Arc::new(KernelInner {
            device: gpu.device.clone(),
            adapter: gpu.info.name.clone(),
            module: module.clone(),
            entry,
            pipeline: std::sync::OnceLock::new(),
            warmed: std::sync::Mutex::new(Vec::new()),
        }))
    }

    /// The pipeline, created now if it was not. Its module validated when it was made,
    /// so a failure here is the driver's: it panics naming the entry point.
    pub fn pipeline(&self) -> &wgpu::ComputePipeline {
        let k = &self.0;
        k.pipeline.get_or_init(|| {
            crate::gpu::create_pipeline(&k.device, &k.module.module, k.entry)
                .unwrap_or_else(|e| panic!("compiling {} ({}) on {}: {e:#}", k.entry, k.module.file, k.adapter))
        })
    }

    /// Whether its pipeline was created in this process.
    pub fn compiled(&self) -> bool {
        self.0.pipeline.get().is_some()
    }

    pub fn entry(&self) -> &'static str {
        self.0.entry
    }

    /// The shader file of its module.
    pub fn file(&self) -> &'static str {
        self.0.module.file
    }

    /// Whether this process has run it over bindings of `state` (`Dispatch::state`), or
    /// compiled it for them (`warm`): lavapipe compiles once for each.
    pub fn warmed(&self, state: u64) -> bool {
        self.0.warmed.lock().unwrap_or_else(|e| e.into_inner()).contains(&state)
    }

    pub(crate) fn set_warmed(&self, state: u64) {
        let mut w = self.0.warmed.lock().unwrap_or_else(|e| e.into_inner());
        if !w.contains(&state) {
            w.push(state);
        }
    }

    /// How many binding states it was compiled for in this process.
    pub fn states_warmed(&self) -> usize {
        self.0.warmed.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether `other` is this kernel (not only the same entry point).
    pub fn same(&self, other: &Kernel) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}
