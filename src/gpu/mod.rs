//! The GPU context: the device with its error handling, shader and pipeline
//! creation inside error scopes, buffers, read-backs, and the matrix textures
//! every kernel reads and writes (layout in `shaders/gemm.wgsl`).
//!
//! [`adapter`] picks the adapter, [`lavapipe`] holds the software driver's rules,
//! [`awake`] keeps a CPU adapter's processors awake while its work is in flight.

pub mod adapter;
pub mod awake;
pub mod lavapipe;

use adapter::read_write_texels;
pub use adapter::{describe_adapter, list_adapters, AdapterChoice, Backend, NO_ADAPTER_HINT};
pub use lavapipe::*;

use anyhow::{anyhow, bail, Context, Result};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

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
    pub spinners: Option<&'static crate::gpu::awake::Spinners>,
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
        let spin = std::env::var(crate::gpu::awake::ENV).ok();
        let spinners = crate::gpu::awake::wanted(info.device_type, spin.as_deref()).then(crate::gpu::awake::spinners);
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
