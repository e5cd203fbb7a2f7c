//! The GPU context: adapter selection, the device with its error handling,
//! shader and pipeline creation inside error scopes, and the matrix textures
//! every kernel reads and writes (layout in `shaders/gemm.wgsl`).

use anyhow::{anyhow, bail, Context, Result};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// The hint printed wherever no adapter can be found.
pub const NO_ADAPTER_HINT: &str = "no GPU adapter found. On Linux without a GPU, install Mesa's software Vulkan driver (lavapipe): `sudo apt-get install mesa-vulkan-drivers`; elsewhere, install your GPU's Vulkan, Metal or DirectX 12 driver";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl Backend {
    fn backends(self) -> wgpu::Backends {
        match self {
            // GL compute is slow and limited: it runs only when asked for.
            Backend::Auto => wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }
}

/// How to pick an adapter: `--backend` and `--adapter SUBSTRING`.
#[derive(Clone, Debug)]
pub struct AdapterChoice {
    pub backend: Backend,
    pub name: Option<String>,
}

impl Default for AdapterChoice {
    fn default() -> Self {
        AdapterChoice { backend: Backend::Auto, name: None }
    }
}

/// The process's instance for `backends`, made once and kept. Destroying a Vulkan
/// instance can unload the driver while threads it started for another device in
/// this process still run: on NVIDIA's driver 580, two test threads that each made
/// and dropped their own instance crashed in unmapped driver code.
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    static INSTANCES: Mutex<Vec<(wgpu::Backends, wgpu::Instance)>> = Mutex::new(Vec::new());
    let mut made = INSTANCES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, i)) = made.iter().find(|(b, _)| *b == backends) {
        return i.clone();
    }
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    desc.flags = wgpu::InstanceFlags::empty();
    let i = wgpu::Instance::new(desc);
    made.push((backends, i.clone()));
    i
}

/// Every adapter the backends expose, best first (discrete, integrated, virtual, CPU).
pub fn list_adapters(backend: Backend) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance(backend.backends()).enumerate_adapters(backend.backends()));
    if adapters.is_empty() && backend == Backend::Auto {
        adapters = pollster::block_on(instance(wgpu::Backends::GL).enumerate_adapters(wgpu::Backends::GL));
    }
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    adapters.sort_by_key(rank);
    adapters
}

/// One line per adapter property that matters for elbo, for `elbo devices`.
pub fn describe_adapter(adapter: &wgpu::Adapter) -> String {
    let info = adapter.get_info();
    let l = adapter.limits();
    let f = adapter.features();
    let has = |feature: wgpu::Features, name: &str| {
        if f.contains(feature) {
            name.to_string()
        } else {
            format!("no-{name}")
        }
    };
    let rw = if read_write_texels(adapter) { "rgba32float-read-write" } else { "no-rgba32float-read-write" };
    format!(
        "{name}\n  backend {backend:?}, type {ty:?}, vendor 0x{vendor:04x}, device 0x{device:04x}\n  driver {driver} {driver_info}\n  \
         limits: storage binding {sb} MiB, buffer {buf} MiB, texture 2D {tex}, workgroup storage {ws} B, invocations {inv}, storage buffers/stage {sbs}\n  \
         features: {f16} {sg}{lanes} {ts} {tsp} {rw}{width}",
        name = info.name,
        backend = info.backend,
        ty = info.device_type,
        vendor = info.vendor,
        device = info.device,
        driver = info.driver,
        driver_info = info.driver_info,
        sb = l.max_storage_buffer_binding_size / (1 << 20),
        buf = l.max_buffer_size / (1 << 20),
        tex = l.max_texture_dimension_2d,
        ws = l.max_compute_workgroup_storage_size,
        inv = l.max_compute_invocations_per_workgroup,
        sbs = l.max_storage_buffers_per_shader_stage,
        f16 = has(wgpu::Features::SHADER_F16, "shader-f16"),
        sg = has(wgpu::Features::SUBGROUP, "subgroup"),
        width = vector_width_note(&info).map_or(String::new(), |n| format!("\n  {n}")),
        lanes = if f.contains(wgpu::Features::SUBGROUP) {
            format!(" ({}..{} lanes)", info.subgroup_min_size, info.subgroup_max_size)
        } else {
            String::new()
        },
        ts = has(wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
        tsp = has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES, "timestamp-inside-passes"),
    )
}

/// Whether the adapter can bind rgba32float storage textures read_write (a native
/// extension, behind Features::TEXTURE_ADAPTER_SPECIFIC_FORMAT_FEATURES).
fn read_write_texels(adapter: &wgpu::Adapter) -> bool {
    adapter.features().contains(wgpu::Features::TEXTURE_ADAPTER_SPECIFIC_FORMAT_FEATURES)
        && adapter
            .get_texture_format_features(wgpu::TextureFormat::Rgba32Float)
            .flags
            .contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_WRITE)
}

/// On x86 CPUs with AVX-512, asks Mesa's llvmpipe (lavapipe) for 512-bit vectors unless
/// LP_NATIVE_VECTOR_WIDTH is already set, where the installed lavapipe is one whose wide
/// vectors were measured to pay (`wide_vectors_pay`): its subgroups then have 16 lanes
/// instead of 8, and the GEMM and convolution kernels are built for 16
/// (`kernels::subgroup_lanes`). On a 2-core Zen 5 (`elbo profile`, batch 128) that took
/// Mesa 22.3's MLP VAE step from 6.9 to 5.7 ms and the convolutional one's from 41 to
/// 36 ms; Mesa 25.0's MLP step went the other way, 8.9 -> 20 ms. Other drivers ignore the
/// variable. Wherever the width is set, also keeps lavapipe's shader cache apart for it
/// (`shader_cache_for_width`). Returns whether it set the width. Call it before the first
/// `Gpu::new` (Mesa reads the variables when the Vulkan loader opens it) and before other
/// threads start, as for any change to the environment.
pub fn prefer_wide_cpu_vectors() -> bool {
    let mut set = false;
    #[cfg(target_arch = "x86_64")]
    if std::env::var_os(LP_VECTOR_WIDTH).is_none()
        && std::arch::is_x86_feature_detected!("avx512f")
        && lavapipe_mesa_version().is_some_and(wide_vectors_pay)
    {
        std::env::set_var(LP_VECTOR_WIDTH, "512");
        set = true;
        WIDTH_SET.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(dir) = shader_cache_for_width() {
        // Mesa creates only the last directory of the path; without it Mesa caches nothing
        let _ = std::fs::create_dir_all(&dir);
        std::env::set_var(SHADER_CACHE_DIR, dir);
    }
    set
}

/// Whether `prefer_wide_cpu_vectors` set LP_NATIVE_VECTOR_WIDTH in this process.
static WIDTH_SET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether LP_NATIVE_VECTOR_WIDTH came from the environment rather than from
/// `prefer_wide_cpu_vectors`.
pub fn vector_width_given() -> bool {
    std::env::var_os(LP_VECTOR_WIDTH).is_some() && !WIDTH_SET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The newest Mesa major version whose lavapipe was measured to favour 512-bit vectors
/// (`wide_vectors_pay`) and Adam's moments in textures (`Gpu::texel_moments_pay`):
/// 22.3 does both; 25.0 does neither; versions between were not measured.
pub const NEWEST_WIDE_MESA: u32 = 22;

/// For lavapipe adapters: llvmpipe's vector width and who chose it, as `elbo devices`
/// prints it.
pub fn vector_width_note(info: &wgpu::AdapterInfo) -> Option<String> {
    if !info.driver.contains("llvmpipe") {
        return None;
    }
    let mesa = mesa_version_in(info.driver_info.as_bytes());
    let mesa = mesa.map_or("this Mesa".to_string(), |(a, b)| format!("Mesa {a}.{b}"));
    let why = if WIDTH_SET.load(std::sync::atomic::Ordering::Relaxed) {
        format!("chosen by elbo: 512 bits pay on {mesa}; set LP_NATIVE_VECTOR_WIDTH to choose")
    } else if vector_width_given() {
        "LP_NATIVE_VECTOR_WIDTH from the environment".to_string()
    } else {
        format!(
            "{mesa}'s own: elbo asks for 512 bits only from Mesa {NEWEST_WIDE_MESA} and older, on CPUs with \
             AVX-512; set LP_NATIVE_VECTOR_WIDTH to choose"
        )
    };
    let bits = ["512 bits", "256 bits", "128 bits"].into_iter().find(|b| info.name.contains(b)).unwrap_or("unknown");
    Some(format!("vectors: {bits} ({why})"))
}

/// Whether llvmpipe's 512-bit vectors pay in lavapipe of Mesa `version` (major, minor):
/// measured on Mesa 22.3 (faster) and 25.0 (2.3 times slower: its subgroup kernels at 16
/// lanes ran 5 times slower than at 8); versions between were not measured and keep
/// Mesa's own width.
pub fn wide_vectors_pay(version: (u32, u32)) -> bool {
    version.0 <= NEWEST_WIDE_MESA
}

/// The Mesa version (major, minor) of the lavapipe that the Vulkan loader will open,
/// found before it is opened (the vector width must be chosen before that): the driver
/// manifests the loader reads (`lavapipe_manifests`), the library a lavapipe one names,
/// and the "Mesa X.Y" its driver-info string starts with. None where any step fails.
pub fn lavapipe_mesa_version() -> Option<(u32, u32)> {
    lavapipe_manifests().iter().find_map(|m| {
        let text = std::fs::read_to_string(m).ok()?;
        let lib = manifest_library(&text)?;
        if !lib.contains("lvp") {
            return None;
        }
        mesa_version_in(&std::fs::read(resolve_library(m, &lib)?).ok()?)
    })
}

/// The Vulkan driver manifests (ICD JSON files) the loader reads: those VK_DRIVER_FILES or
/// VK_ICD_FILENAMES lists (files or folders), else the standard folders' `icd.d`.
fn lavapipe_manifests() -> Vec<std::path::PathBuf> {
    let listed = std::env::var("VK_DRIVER_FILES").or_else(|_| std::env::var("VK_ICD_FILENAMES")).ok();
    let places: Vec<std::path::PathBuf> = match listed {
        Some(list) => std::env::split_paths(&list).collect(),
        None => {
            let mut dirs = vec![];
            let data = std::env::var("XDG_DATA_DIRS").unwrap_or_else(|_| "/usr/local/share:/usr/share".into());
            dirs.extend(std::env::split_paths(&data).map(|d| d.join("vulkan/icd.d")));
            dirs.push("/etc/vulkan/icd.d".into());
            dirs
        }
    };
    let mut files = vec![];
    for p in places {
        match std::fs::read_dir(&p) {
            Ok(entries) => {
                let mut found: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
                found.sort();
                files.extend(found.into_iter().filter(|f| f.extension().is_some_and(|x| x == "json")));
            }
            Err(_) => files.push(p),
        }
    }
    files
}

/// The `library_path` of a driver manifest.
pub fn manifest_library(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(v["ICD"]["library_path"].as_str()?.to_string())
}

/// A manifest's library on disk: an absolute path as it is, a relative one from the
/// manifest's folder, a bare file name in the system's library folders.
fn resolve_library(manifest: &std::path::Path, lib: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(lib);
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    if lib.contains('/') {
        return Some(manifest.parent()?.join(path));
    }
    let dirs = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"];
    dirs.iter().map(|d| std::path::Path::new(d).join(lib)).find(|p| p.exists())
}

/// The first "Mesa X.Y" in `bytes` (a Mesa driver's library holds its version so).
pub fn mesa_version_in(bytes: &[u8]) -> Option<(u32, u32)> {
    let number = |b: &[u8]| -> Option<(u32, usize)> {
        let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        Some((std::str::from_utf8(&b[..n]).ok()?.parse().ok()?, n))
    };
    bytes.windows(5).enumerate().filter(|(_, w)| *w == b"Mesa ").find_map(|(i, _)| {
        let rest = &bytes[i + 5..];
        let (major, n) = number(rest)?;
        let (minor, _) = number(rest.get(n + 1..)?).filter(|_| rest.get(n) == Some(&b'.'))?;
        Some((major, minor))
    })
}

/// Mesa's shader cache directory.
pub const SHADER_CACHE_DIR: &str = "MESA_SHADER_CACHE_DIR";

/// Where LP_NATIVE_VECTOR_WIDTH is set, a shader cache directory of that width's own:
/// `elbo-lavapipe-<bits>` in MESA_SHADER_CACHE_DIR, else in Mesa's default place
/// ($XDG_CACHE_HOME, else ~/.cache). Mesa 22.3 keys its cache without the vector width,
/// so a kernel compiled at 256 bits came back from the cache at 512 (and the reverse)
/// with the other width's subgroups: a kernel written for 8 lanes passed its tests at 16
/// on a machine whose cache held its 8-lane build, and failed on a fresh one.
pub fn shader_cache_for_width() -> Option<std::path::PathBuf> {
    let var = |name: &str| std::env::var_os(name).map(std::path::PathBuf::from);
    let bits = std::env::var(LP_VECTOR_WIDTH).ok()?;
    let home = var("HOME").map(|h| h.join(".cache"));
    shader_cache_dir(bits.trim(), var(SHADER_CACHE_DIR).or(var("XDG_CACHE_HOME")).or(home)?)
}

/// `elbo-lavapipe-<bits>` in `base`, or beside it where `base` is already such a directory
/// (a child process inherits its parent's).
pub fn shader_cache_dir(bits: &str, base: std::path::PathBuf) -> Option<std::path::PathBuf> {
    let base = match base.file_name().and_then(|n| n.to_str()) {
        Some(n) if n.starts_with("elbo-lavapipe-") => base.parent()?.to_path_buf(),
        _ => base,
    };
    Some(base.join(format!("elbo-lavapipe-{bits}")))
}

/// Mesa llvmpipe's vector width in bits (128, 256 or 512).
pub const LP_VECTOR_WIDTH: &str = "LP_NATIVE_VECTOR_WIDTH";

/// Mesa llvmpipe's worker threads (its default: one a logical CPU). Two a CPU were tried
/// (README, session 8): no faster, in alternated processes on a noisy 2-vCPU machine.
pub const LP_THREADS: &str = "LP_NUM_THREADS";

/// llvmpipe's worker threads in this process, counted where the system lists a
/// process's threads by name; None elsewhere. What it counts are the threads named
/// llvmpipe-N, which are the rasterizer's (Mesa 22.3 leaves the compute pool's workers
/// unnamed: they show the process's name). Both pools get `LP_NUM_THREADS` threads
/// (`lp_cs_tpool_create(num_threads)`), so the count is the compute workers' too.
pub fn llvmpipe_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let names = tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok());
    Some(names.filter(|name| name.starts_with("llvmpipe-")).count())
}

/// The adapter line's note on threads: lavapipe's workers, and the spinning threads that
/// keep the processors awake (`awake`), where there are any ("" for neither).
pub fn threads_note(lavapipe: Option<usize>, awake: Option<usize>) -> String {
    let mut note = lavapipe.map(|n| format!(", {n} threads")).unwrap_or_default();
    if let Some(n) = awake.filter(|&n| n > 0) {
        note += &format!(", {}", crate::awake::describe(n));
    }
    note
}

/// Rows of `row_floats` floats in `buffer` from float `first_float` on: a flat layer's
/// weights as the source or destination of a copy to or from its texture.
pub fn flat_rows(buffer: &wgpu::Buffer, first_float: usize, row_floats: usize) -> wgpu::TexelCopyBufferInfo<'_> {
    wgpu::TexelCopyBufferInfo {
        buffer,
        layout: wgpu::TexelCopyBufferLayout {
            offset: (first_float * 4) as u64,
            bytes_per_row: Some((row_floats * 4) as u32),
            rows_per_image: None,
        },
    }
}

/// The device, its queue and the errors wgpu reported outside error scopes.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// rgba32float storage textures can be bound read_write (adam_texel.wgsl).
    pub read_write_texels: bool,
    /// Threads that keep the processors awake while work is in flight (`awake`), on
    /// CPU adapters unless `ELBO_SPIN=0`.
    pub spinners: Option<&'static crate::awake::Spinners>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Gpu {
    pub fn new(choice: &AdapterChoice) -> Result<Gpu> {
        let adapters = list_adapters(choice.backend);
        if adapters.is_empty() {
            bail!("{NO_ADAPTER_HINT}");
        }
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
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("elbo"),
            required_features: needed,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
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
        let spin = std::env::var(crate::awake::ENV).ok();
        let spinners = crate::awake::wanted(info.device_type, spin.as_deref()).then(crate::awake::spinners);
        Ok(Gpu { features: device.features(), read_write_texels, spinners, device, queue, info, limits, errors })
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

    /// Turns errors wgpu reported since the last check into one error.
    pub fn check(&self) -> Result<()> {
        let mut errors = self.errors.lock().unwrap();
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

    /// Compiles a kernel file with `shaders/common.wgsl` in front, reporting WGSL errors readably.
    pub fn shader(&self, name: &str, source: &str) -> Result<wgpu::ShaderModule> {
        let full = crate::kernels::with_common(source);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(full.into()),
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("shader {name} does not compile on {}: {e}", self.info.name);
        }
        Ok(module)
    }

    pub fn pipeline(&self, module: &wgpu::ShaderModule, entry: &str) -> Result<wgpu::ComputePipeline> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("pipeline {entry} cannot be created on {}: {e}", self.info.name);
        }
        Ok(pipeline)
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
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
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

    /// A (rows, cols) f32 matrix texture; rows are padded to a multiple of 4.
    pub fn matrix(&self, label: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let padded = rows.next_multiple_of(4);
        let width = cols.div_ceil(4);
        let max = self.limits.max_texture_dimension_2d as usize;
        if padded > max || width > max {
            bail!("{label} is a ({rows}, {cols}) matrix, stored as a {width}x{padded} texture, but adapter {} allows at most {max} texels a side; use a smaller batch or layer", self.info.name);
        }
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d { width: width as u32, height: padded as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::COPY_DST
                | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        Ok(Matrix { texture, view, rows: padded, cols })
    }

    /// Writes row-major `data` (r rows of `cols`, r <= rows) into the matrix; the rest is zero.
    pub fn write_matrix(&self, m: &Matrix, data: &[f32]) {
        assert_eq!(data.len() % m.cols, 0, "data is not whole rows of {}", m.cols);
        let width = m.cols.div_ceil(4) * 4;
        let mut texels = vec![0f32; m.rows * width];
        for (r, row) in data.chunks(m.cols).enumerate() {
            texels[r * width..r * width + m.cols].copy_from_slice(row);
        }
        self.queue.write_texture(
            m.texture.as_image_copy(),
            bytemuck::cast_slice(&texels),
            wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some((width * 4) as u32), rows_per_image: None },
            m.texture.size(),
        );
    }

    /// Writes a flat vector into the matrix row by row, the last row filled with zeros.
    pub fn write_matrix_flat(&self, m: &Matrix, data: &[f32]) {
        let mut rows = data.to_vec();
        rows.resize(data.len().next_multiple_of(m.cols), 0.0);
        self.write_matrix(m, &rows);
    }

    /// Reads the whole matrix back, (rows, cols) row-major with padding rows included.
    pub fn read_matrix(&self, m: &Matrix) -> Result<Vec<f32>> {
        let row_bytes = m.cols.div_ceil(4) * 16;
        let stride = row_bytes.next_multiple_of(256);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read_matrix"),
            size: (stride * m.rows) as u64,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_texture_to_buffer(
            m.texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &staging,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(stride as u32),
                    rows_per_image: None,
                },
            },
            m.texture.size(),
        );
        self.submit(enc.finish());
        let bytes = self.finish_read(map_later(staging, stride * m.rows))?;
        let mut out = Vec::with_capacity(m.rows * m.cols);
        for r in 0..m.rows {
            let row: &[f32] = bytemuck::cast_slice(&bytes[r * stride..r * stride + row_bytes]);
            out.extend_from_slice(&row[..m.cols]);
        }
        Ok(out)
    }

    /// Copies `bytes` bytes of a buffer from `offset` to the host.
    pub fn read_buffer(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        self.finish_read(self.read_buffer_later(buffer, offset, bytes))
    }

    /// Starts copying `bytes` bytes of a buffer from `offset` to the host without waiting:
    /// the copy runs after the work submitted so far; `poll_read` gives the bytes once the
    /// GPU has done it.
    pub fn read_buffer_later(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Readback {
        let size = bytes.next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read_buffer"),
            size,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.submit(enc.finish());
        map_later(staging, bytes as usize)
    }

    /// The bytes of `r` once the GPU has copied them (None before); never waits. After
    /// Some, `r` is spent.
    pub fn poll_read(&self, r: &Readback) -> Result<Option<Vec<u8>>> {
        self.device.poll(wgpu::PollType::Poll).map_err(|e| anyhow!("polling the GPU failed: {e}"))?;
        r.take()
    }

    pub fn read_f32(&self, buffer: &wgpu::Buffer, offset_floats: usize, count: usize) -> Result<Vec<f32>> {
        let bytes = self.read_buffer(buffer, (offset_floats * 4) as u64, (count * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The bytes of `r`, waiting for the GPU (and for its map callback, which another
    /// thread's poll may be running).
    fn finish_read(&self, r: Readback) -> Result<Vec<u8>> {
        self.wait()?;
        let mapped = r.mapped.recv().context("the GPU dropped a read-back")?;
        r.data(mapped)
    }
}

/// A (rows, cols) f32 matrix in an rgba32float texture, four columns to a texel.
pub struct Matrix {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
    /// Rows including padding (a multiple of 4).
    pub rows: usize,
    pub cols: usize,
}

/// A copy on its way from the GPU to the host (`Gpu::read_buffer_later`).
pub struct Readback {
    staging: wgpu::Buffer,
    len: usize,
    /// The map callback's result.
    mapped: std::sync::mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

/// Maps `staging` for reading once the GPU is done with it; its first `len` bytes matter.
fn map_later(staging: wgpu::Buffer, len: usize) -> Readback {
    let (tx, mapped) = std::sync::mpsc::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    Readback { staging, len, mapped }
}

impl Readback {
    /// The bytes, where the mapping has finished (None before).
    fn take(&self) -> Result<Option<Vec<u8>>> {
        match self.mapped.try_recv() {
            Ok(mapped) => self.data(mapped).map(Some),
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => bail!("the GPU dropped a read-back"),
        }
    }

    /// The mapped bytes, once the map callback gave `mapped`.
    fn data(&self, mapped: Result<(), wgpu::BufferAsyncError>) -> Result<Vec<u8>> {
        mapped.map_err(|e| anyhow!("mapping a read-back buffer failed: {e}"))?;
        let mut data = self.staging.slice(..).get_mapped_range().map_err(|e| anyhow!("{e}"))?.to_vec();
        self.staging.unmap();
        data.truncate(self.len);
        Ok(data)
    }
}
