//! The training set on the device: resident in one storage buffer, or, where it is
//! larger than one buffer may be (or than `Hyper::data_limit`), streamed in shards.
//!
//! Streamed, the buffer holds one shard: the images of `shard` consecutive positions of
//! the epoch's order, uploaded in that order, so the order buffer the gather reads is
//! fixed (position p reads image p mod shard). A shard is uploaded when the first step
//! that needs it is submitted; the queue runs the copy after the steps already
//! submitted (which read the previous shard) and before the next, so the host gathers
//! the next shard's images while the device still works through the current one's
//! steps. Random streams are keyed by batch row, not image, so a streamed epoch computes
//! what a resident one does. The images come from an `ImageSource`: a copy of a set in
//! memory, or a reader of a folder's cache file, which keeps only the shard being
//! gathered on the host.

use crate::data::ImageSource;
use crate::gpu::Gpu;
use anyhow::{bail, Result};

/// The training images as the device sees them.
pub(super) struct TrainData {
    /// The whole set, or the shard in use.
    pub buffer: wgpu::Buffer,
    /// The epoch's order of the images (what the order buffer holds when resident).
    pub order: wgpu::Buffer,
    pub len: usize,
    stream: Option<Stream>,
}

/// What streaming needs on the host.
struct Stream {
    /// Images per shard: whole batches.
    shard: usize,
    image_len: usize,
    /// The training set's images (a reader of its own: the caller's set may go away).
    images: Box<dyn ImageSource + Send>,
    /// The shard being uploaded, gathered.
    gathered: Vec<u8>,
    /// This epoch's order of the images.
    order: Vec<u32>,
    /// The shard the buffer holds (None before the epoch's first upload).
    loaded: Option<usize>,
}

impl TrainData {
    /// `train` on the device: resident when its pixels fit `limit` bytes (default: the
    /// adapter's largest storage buffer), else in shards of whole batches of `batch`.
    pub fn new(gpu: &Gpu, train: &dyn ImageSource, batch: usize, limit: Option<u64>) -> Result<TrainData> {
        let dims = train.dims();
        let order = gpu.buffer("train order", (dims.len * 4) as u64, wgpu::BufferUsages::empty())?;
        let adapter_limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
        let limit = limit.unwrap_or(adapter_limit).min(adapter_limit);
        let image_len = dims.image_len();
        if dims.bytes() <= limit {
            let buffer = gpu.buffer_with("training set", &train.all_pixels()?)?;
            return Ok(TrainData { buffer, order, len: dims.len, stream: None });
        }
        let batch_bytes = (batch * image_len) as u64;
        if batch_bytes > limit {
            bail!(
                "one batch of {batch} images takes {batch_bytes} bytes, more than the {limit} bytes a data buffer may hold here; use a batch of at most {}",
                (limit / image_len as u64).max(1)
            );
        }
        let shard = (limit / batch_bytes) as usize * batch;
        // a multiple of 4 bytes: storage buffers are read as words
        let bytes = ((shard * image_len).next_multiple_of(4)) as u64;
        let buffer = gpu.buffer("training shard", bytes, wgpu::BufferUsages::empty())?;
        let stream =
            Stream { shard, image_len, images: train.reader(), gathered: Vec::new(), order: Vec::new(), loaded: None };
        Ok(TrainData { buffer, order, len: dims.len, stream: Some(stream) })
    }

    /// Images per shard, or None when the set is resident.
    pub fn shard(&self) -> Option<usize> {
        self.stream.as_ref().map(|s| s.shard)
    }

    /// Takes the epoch's order: uploaded as it is when resident; streamed, kept for the
    /// shards' uploads, and the fixed order of the shard buffer uploaded.
    pub fn set_order(&mut self, gpu: &Gpu, order: &[u32]) {
        match &mut self.stream {
            None => gpu.queue.write_buffer(&self.order, 0, bytemuck::cast_slice(order)),
            Some(s) => {
                s.order = order.to_vec();
                s.loaded = None;
                let within: Vec<u32> = (0..order.len()).map(|p| (p % s.shard) as u32).collect();
                gpu.queue.write_buffer(&self.order, 0, bytemuck::cast_slice(&within));
            }
        }
    }

    /// Before a step that reads positions from `start` on: uploads their shard where the
    /// buffer holds another (an error when its images cannot be read).
    pub fn prepare(&mut self, gpu: &Gpu, start: usize) -> Result<()> {
        let Some(s) = &mut self.stream else { return Ok(()) };
        let index = start / s.shard;
        if s.loaded == Some(index) {
            return Ok(());
        }
        let first = index * s.shard;
        let images = &s.order[first..(first + s.shard).min(s.order.len())];
        let bytes = (images.len() * s.image_len).next_multiple_of(4) as u64;
        let size = wgpu::BufferSize::new(bytes).expect("a shard holds at least one image");
        // gathered into the host's one shard (the queue's staging memory may only be written)
        let n = s.image_len;
        s.gathered.resize(bytes as usize, 0);
        for (j, &i) in images.iter().enumerate() {
            s.images.read_image(i as usize, &mut s.gathered[j * n..(j + 1) * n])?;
        }
        let mut view = gpu.queue.write_buffer_with(&self.buffer, 0, size).expect("the shard fits its buffer");
        view.copy_from_slice(&s.gathered);
        s.loaded = Some(index);
        Ok(())
    }
}
