//! The GPU context: the device with its error handling, shader and pipeline
//! creation inside error scopes, buffers, read-backs, and the matrix textures
//! every kernel reads and writes (layout in `shaders/gemm.wgsl`).
//!
//! [`adapter`] picks the adapter, [`lavapipe`] holds the software driver's rules,
//! [`awake`] keeps a CPU adapter's processors awake while its work is in flight.

pub mod adapter;
pub mod awake;
pub mod lavapipe;
pub mod memory;
pub mod validation;

use adapter::read_write_texels;
pub use adapter::{describe_adapter, list_adapters, AdapterChoice, Backend, NO_ADAPTER_HINT};
pub use lavapipe::*;
pub use memory::{flat_rows, Matrix, Readback};

use anyhow::{anyhow, bail, Context, Result};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// The module of WGSL `source` on `device`, validated inside an error scope.
pub fn shader_module(device: &wgpu::Device, name: &str, source: &str) -> Result<wgpu::ShaderModule> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    // Under the validation layer, the module goes to wgpu parsed: given WGSL text with
    // InstanceFlags::DEBUG, wgpu puts it into the SPIR-V as an OpSource of language
    // WGSL, which the layer of Debian 12 (1.3.239) rejects ("Invalid source language
    // operand: 10") for every shader. Text that does not parse goes as text, for
    // wgpu's own error.
    let parsed = validation::requested().then(|| naga::front::wgsl::parse_str(source).ok()).flatten();
    let source = match parsed {
        Some(module) => wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(module)),
        None => wgpu::ShaderSource::Wgsl(source.into()),
    };
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(name), source });
    if let Some(e) = pollster::block_on(scope.pop()) {
        bail!("shader {name} does not compile: {e}");
    }
    Ok(module)
}

/// The compute pipeline of `entry` in `module`, its layout derived from the shader,
/// created inside an error scope (`kernels::Kernel` creates each when first needed).
pub fn create_pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
) -> Result<wgpu::ComputePipeline> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        bail!("pipeline {entry} cannot be created: {e}");
    }
    Ok(pipeline)
}

/// The device, its queue and the errors wgpu reported outside error scopes.
pub struct Gpu {
    /// The adapter the device was opened on, for `kernels::warm`'s helpers.
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// rgba32float storage textures can be bound read_write (adam_texel.wgsl).
    pub read_write_texels: bool,
    /// Threads that keep the processors awake while work is in flight (`awake`), on
    /// CPU adapters unless `ELBO_SPIN=0`.
    pub spinners: Option<&'static crate::gpu::awake::Spinners>,
    errors: Arc<Mutex<Vec<String>>>,
    /// The kernels of this device, made on first use (`kernels::Kernels::of`).
    pub(crate) kernels: std::sync::OnceLock<crate::kernels::Kernels>,
    /// The last uniforms made, with their contents (`uniform_contents`).
    uniforms: Mutex<Vec<(wgpu::Buffer, Vec<u8>)>>,
}

/// How many uniforms `Gpu::uniform_contents` remembers: more than a model's lists make.
const UNIFORMS_KEPT: usize = 4096;

/// The device elbo asks an adapter for: `features` and `limits`.
pub(crate) fn device_descriptor(features: wgpu::Features, limits: &wgpu::Limits) -> wgpu::DeviceDescriptor<'static> {
    wgpu::DeviceDescriptor {
        label: Some("elbo"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }
}

impl Gpu {
    pub fn new(choice: &AdapterChoice) -> Result<Gpu> {
        let platform = std::env::consts::OS;
        match choice.backend {
            Backend::Dx12 if platform != "windows" => {
                bail!("--backend dx12: DirectX 12 exists only on Windows, and this is {platform}; use --backend vulkan (or leave --backend out)")
            }
            Backend::Metal if platform != "macos" && platform != "ios" => {
                bail!("--backend metal: Metal exists only on Apple's systems, and this is {platform}; use --backend vulkan (or leave --backend out)")
            }
            _ => {}
        }
        if validation::requested() {
            // the manifest's places are the Linux loader's (Windows lists layers in the registry)
            if cfg!(target_os = "linux") && validation::layer_manifest().is_none() {
                bail!(
                    "{} asks for the Vulkan validation layer ({}), which is not installed here: `sudo apt-get install vulkan-validationlayers` (or unset {})",
                    validation::ENV,
                    validation::LAYER,
                    validation::ENV
                );
            }
            validation::install_logger();
        }
        let adapters = list_adapters(choice.backend);
        if adapters.is_empty() {
            bail!("{NO_ADAPTER_HINT}");
        }
        // OpenGL (wgpu's fallback where no other backend has an adapter): its shading
        // language cannot take a storage texture as a function's argument, which the kernels'
        // helpers do, so no kernel compiles there
        let adapters: Vec<_> = match adapters.iter().any(|a| a.get_info().backend != wgpu::Backend::Gl) {
            true => adapters.into_iter().filter(|a| a.get_info().backend != wgpu::Backend::Gl).collect(),
            false => {
                let name = adapters[0].get_info().name;
                bail!(
                    "the only adapter here is OpenGL's ({name}), and elbo's kernels do not compile for OpenGL (its shading language cannot pass storage textures to functions, as they do); use Vulkan, Metal or DirectX 12 (on Linux without a GPU, Mesa's software Vulkan driver: `sudo apt-get install mesa-vulkan-drivers`)"
                )
            }
        };
        let adapter = match &choice.name {
            None => adapters.into_iter().next().unwrap(),
            Some(want) => {
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want.to_lowercase()))
                    .ok_or_else(|| {
                        anyhow!(
                            "no adapter's name contains {want:?}; found: {}. Run `elbo devices` to list them",
                            names.join(", ")
                        )
                    })?
            }
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Subgroup operations and read_write rgba32float textures serve kernel variants,
        // timestamps `elbo profile` and `elbo bench`; all are taken when offered.
        let read_write_texels = read_write_texels(&adapter);
        let wanted = wgpu::Features::SUBGROUP
            | wgpu::Features::TEXTURE_ADAPTER_SPECIFIC_FORMAT_FEATURES
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let needed = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&device_descriptor(needed, &limits)))
            .with_context(|| format!("could not open a device on adapter {} ({:?})", info.name, info.backend))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let what = match &e {
                wgpu::Error::OutOfMemory { .. } => "the GPU ran out of memory",
                wgpu::Error::Validation { .. } => "wgpu validation error",
                _ => "GPU error",
            };
            sink.lock().unwrap().push(format!("{what}: {e}"));
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                sink.lock().unwrap().push(format!("the GPU device was lost ({reason:?}): {message}"));
            }
        });
        let spin = std::env::var(crate::gpu::awake::ENV).ok();
        let spinners = crate::gpu::awake::wanted(info.device_type, spin.as_deref()).then(crate::gpu::awake::spinners);
        Ok(Gpu {
            features: device.features(),
            read_write_texels,
            spinners,
            adapter,
            device,
            queue,
            info,
            limits,
            errors,
            kernels: std::sync::OnceLock::new(),
            uniforms: Mutex::new(Vec::new()),
        })
    }

    /// Whether the adapter is Mesa's llvmpipe (lavapipe), whose measured rules and limits
    /// (kernels::LLVMPIPE_LOOP_TURNS) some kernel choices follow.
    pub fn is_llvmpipe(&self) -> bool {
        self.info.driver.contains("llvmpipe")
    }

    /// The driver's Mesa version (major, minor), where it is a Mesa driver.
    pub fn mesa_version(&self) -> Option<(u32, u32)> {
        mesa_version_in(self.info.driver_info.as_bytes())
    }

    /// Whether Adam's moments should live in textures (adam_texel.wgsl,
    /// gemm_adam_texels.wgsl) rather than storage buffers on this adapter, where those
    /// kernels exist (CPU adapters). Measured on lavapipe:
    /// - Mesa 22.3, where a texel store is cheaper than a buffer store: Adam fused into
    ///   the weight gradients made the MLP step 6.0-6.5 ms with texel moments against
    ///   7.2-8.7 ms with buffers; the conv model's adam_update_texel ran as fast as
    ///   adam_update (1.25-1.37 against 1.30-1.32 ms at 512 bits, 1.05-1.13 against
    ///   1.22-1.25 ms at 256);
    /// - Mesa 25.0 (256 bits), whose image loads and stores are out-of-line calls:
    ///   adam_update_texel took 1.5-1.9 ms against 1.0-1.1 ms for adam_update (conv
    ///   model 0.84-1.03 against 0.62-0.69 ms), and Adam fused with texel moments made
    ///   the MLP step slower than apart (7.4-7.8 against 7.2-7.4 ms; the fused weight
    ///   gradients of fc1 and fc4 took 2.6 ms each), while fused with buffer moments it
    ///   is faster (6.7-6.9 against 7.1-7.2 ms for adam_update apart).
    ///
    /// Mesa versions between were not measured and take buffers. Other CPU adapters
    /// with read_write rgba32float keep texels, as before these measurements (GPUs have
    /// no texel kernels: `kernels::Kernels::adam_update_texel`).
    pub fn texel_moments_pay(&self) -> bool {
        !self.is_llvmpipe() || self.mesa_version().is_some_and(|v| v.0 <= NEWEST_WIDE_MESA)
    }

    /// The worker threads lavapipe runs, where the adapter is lavapipe and they can be
    /// counted (`llvmpipe_threads`).
    pub fn lavapipe_threads(&self) -> Option<usize> {
        self.is_llvmpipe().then(llvmpipe_threads).flatten()
    }

    /// One line naming the adapter.
    pub fn adapter_line(&self) -> String {
        let threads = threads_note(self.lavapipe_threads(), self.spinners.map(|s| s.threads()));
        format!(
            "{} ({:?}, {:?}, {}{threads})",
            self.info.name, self.info.backend, self.info.device_type, self.info.driver
        )
    }

    /// Submits `commands`; on CPU adapters the spinning threads (`awake`) keep the
    /// processors awake until the GPU has done them.
    pub fn submit(&self, commands: wgpu::CommandBuffer) {
        match self.spinners {
            Some(s) => {
                s.begin();
                self.queue.submit([commands]);
                self.queue.on_submitted_work_done(move || s.end());
            }
            None => {
                self.queue.submit([commands]);
            }
        }
    }

    /// Turns errors wgpu reported since the last check, and the validation layer's
    /// messages where it runs (`validation`), into one error.
    pub fn check(&self) -> Result<()> {
        let mut errors = self.errors.lock().unwrap();
        let layer = validation::take_messages();
        if !layer.is_empty() {
            errors.push(format!("the Vulkan validation layer reported:\n{}", layer.join("\n")));
        }
        if errors.is_empty() {
            return Ok(());
        }
        let all = errors.join("\n");
        errors.clear();
        bail!("{all}")
    }

    /// Waits until the GPU has finished everything submitted, then reports its errors.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU failed: {e}"))?;
        self.check()
    }

    /// Compiles WGSL `source` (the kernels pass theirs with `shaders/common.wgsl` in
    /// front: `kernels::source`), reporting WGSL errors readably.
    pub fn shader(&self, name: &str, source: &str) -> Result<wgpu::ShaderModule> {
        shader_module(&self.device, name, source).with_context(|| format!("on {}", self.info.name))
    }

    /// A storage buffer of `bytes` bytes (zeroed), checked against the adapter's limits.
    pub fn buffer(&self, label: &str, bytes: u64, extra: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
        self.check_size(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST | extra,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data`, padded to 16 bytes.
    pub fn buffer_with(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        self.check_size(label, data.len() as u64)?;
        let mut padded = data.to_vec();
        padded.resize(data.len().max(16).next_multiple_of(16), 0);
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &padded,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        }))
    }

    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        let contents = bytemuck::bytes_of(value);
        let buffer = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let mut made = self.uniforms.lock().unwrap_or_else(|e| e.into_inner());
        if made.len() >= UNIFORMS_KEPT {
            made.remove(0);
        }
        made.push((buffer.clone(), contents.to_vec()));
        buffer
    }

    /// What `buffer` held when `uniform` made it, if it is one of the last
    /// `UNIFORMS_KEPT` uniforms made (`kernels::warm` compiles for these values:
    /// lavapipe builds loop bounds read from a uniform into the compiled kernel).
    pub fn uniform_contents(&self, buffer: &wgpu::Buffer) -> Option<Vec<u8>> {
        let made = self.uniforms.lock().unwrap_or_else(|e| e.into_inner());
        made.iter().rev().find(|(b, _)| b == buffer).map(|(_, c)| c.clone())
    }

    fn check_size(&self, label: &str, bytes: u64) -> Result<()> {
        let limit = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > limit {
            bail!(
                "{label} needs {:.1} MiB but adapter {} allows at most {:.1} MiB in one storage buffer (max_storage_buffer_binding_size); use a smaller batch, model or dataset",
                bytes as f64 / 1048576.0,
                self.info.name,
                limit as f64 / 1048576.0
            );
        }
        Ok(())
    }
}
