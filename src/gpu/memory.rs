//! Device memory as the kernels see it: matrices in rgba32float textures (four floats
//! a texel, rows padded to 4), flat buffers, and read-backs that wait or do not.

use super::Gpu;
use anyhow::{anyhow, bail, Context, Result};

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

impl Gpu {
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
