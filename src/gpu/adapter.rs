//! Choosing an adapter: the backends asked for, the adapters they expose ranked
//! best first, and the one-paragraph description `elbo devices` prints.

use super::lavapipe::vector_width_note;
use std::sync::Mutex;

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
#[derive(Clone, Debug, clap::Args)]
pub struct AdapterChoice {
    /// Graphics API to run on.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Backend,
    /// Use the first adapter whose name contains this text (see `elbo devices`).
    #[arg(long = "adapter")]
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
pub(crate) fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    static INSTANCES: Mutex<Vec<(wgpu::Backends, wgpu::Instance)>> = Mutex::new(Vec::new());
    let mut made = INSTANCES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, i)) = made.iter().find(|(b, _)| *b == backends) {
        return i.clone();
    }
    let i = wgpu::Instance::new(instance_descriptor(backends));
    made.push((backends, i.clone()));
    i
}

/// How elbo makes its instances: the backends, and the Khronos validation layer where
/// asked for (`validation`), with DEBUG, without which wgpu opens no messenger for the
/// layer's messages (they went to stdout). The flags change the SPIR-V wgpu writes, so
/// an instance that compiles for another (`kernels::warm`) must have the same.
pub(crate) fn instance_descriptor(backends: wgpu::Backends) -> wgpu::InstanceDescriptor {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    desc.flags = match crate::gpu::validation::requested() {
        true => wgpu::InstanceFlags::VALIDATION | wgpu::InstanceFlags::DEBUG,
        false => wgpu::InstanceFlags::empty(),
    };
    desc
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
pub(crate) fn read_write_texels(adapter: &wgpu::Adapter) -> bool {
    adapter.features().contains(wgpu::Features::TEXTURE_ADAPTER_SPECIFIC_FORMAT_FEATURES)
        && adapter
            .get_texture_format_features(wgpu::TextureFormat::Rgba32Float)
            .flags
            .contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_WRITE)
}
