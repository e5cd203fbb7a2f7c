//! The training state on the device and back: Adam's moments (buffers or textures),
//! the weights' master copy, and `TrainState`, what a checkpoint holds of a run.

use super::Trainer;
use crate::gpu::{Gpu, Matrix};
use crate::kernels::{self, Bind, Kernels, ADAM_TEXEL_COLS};
use anyhow::{bail, Result};

/// Adam's moments on the device: storage buffers laid out like the parameters, or,
/// where rgba32float binds read_write and they pay (`Gpu::texel_moments_pay`), textures
/// of `ADAM_TEXEL_COLS` columns holding the same flat vector row by row (adam_texel.wgsl).
pub(crate) enum Moments {
    Buffers(wgpu::Buffer, wgpu::Buffer),
    Texels(Box<[Matrix; 2]>),
}

impl Moments {
    /// Texel moments where the adapter has adam_texel.wgsl, they pay on this adapter
    /// and the texture fits; storage buffers elsewhere.
    pub(crate) fn new(gpu: &Gpu, k: &Kernels, len: usize) -> Result<Moments> {
        let rows = len.div_ceil(ADAM_TEXEL_COLS);
        let fits = rows.next_multiple_of(4) <= gpu.limits.max_texture_dimension_2d as usize;
        if k.adam_update_texel.is_some() && gpu.texel_moments_pay() && fits {
            let [m1, m2] = ["adam moment1", "adam moment2"].map(|name| gpu.matrix(name, rows, ADAM_TEXEL_COLS));
            return Ok(Moments::Texels(Box::new([m1?, m2?])));
        }
        let floats = (len * 4) as u64;
        Ok(Moments::Buffers(
            gpu.buffer("adam moment1", floats, wgpu::BufferUsages::empty())?,
            gpu.buffer("adam moment2", floats, wgpu::BufferUsages::empty())?,
        ))
    }

    pub(crate) fn store(&self) -> kernels::MomentStore {
        match self {
            Moments::Buffers(..) => kernels::MomentStore::Buffers,
            Moments::Texels(_) => kernels::MomentStore::Texels,
        }
    }

    /// The first and second moment, bound as the kernels take them.
    pub(crate) fn binds(&self) -> [Bind<'_>; 2] {
        match self {
            Moments::Buffers(m1, m2) => [Bind::Buffer(m1), Bind::Buffer(m2)],
            Moments::Texels(m) => [Bind::Texture(&m[0].view), Bind::Texture(&m[1].view)],
        }
    }
}

/// The optimiser's state: parameters, Adam's moments, steps taken and the random-stream counter.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    pub params: Vec<f32>,
    pub moment1: Vec<f32>,
    pub moment2: Vec<f32>,
    pub steps_done: u32,
    pub counter: u32,
}

impl Trainer<'_> {
    /// Whether each training step ends by copying the flat weights into the textures.
    /// Not with Adam fused into the weight gradients: those update the textures, which
    /// are then the weights' master copy (`copy_weights_back` brings them to the flat
    /// parameters).
    pub fn copies_weights_each_step(&self) -> bool {
        !self.adam_fused
    }

    /// Copies the weight textures back into the flat parameters, where Adam updates
    /// the textures (`copies_weights_each_step` is false), and waits.
    fn copy_weights_back(&self) -> Result<()> {
        if self.copies_weights_each_step() {
            return Ok(());
        }
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        for (layer, tex) in self.model.layout.layers().into_iter().zip(&self.weights) {
            enc.copy_texture_to_buffer(
                tex.texture.as_image_copy(),
                crate::gpu::flat_rows(&self.params, layer.w, layer.stride),
                tex.texture.size(),
            );
        }
        self.gpu.submit(enc.finish());
        self.gpu.wait()
    }

    /// Copies the GPU's parameters back into `self.model`.
    pub(super) fn sync_model(&mut self) -> Result<()> {
        self.copy_weights_back()?;
        self.model.params = self.gpu.read_f32(&self.params, 0, self.model.layout.len)?;
        Ok(())
    }

    /// Everything a resumed run needs from this one (read back from the GPU).
    pub fn state(&self) -> Result<TrainState> {
        self.copy_weights_back()?;
        let len = self.model.layout.len;
        Ok(TrainState {
            params: self.gpu.read_f32(&self.params, 0, len)?,
            moment1: self.read_moment(0)?,
            moment2: self.read_moment(1)?,
            steps_done: self.steps_done,
            counter: self.counter,
        })
    }

    /// Adam's first (0) or second (1) moment, flat like the parameters.
    fn read_moment(&self, which: usize) -> Result<Vec<f32>> {
        let len = self.model.layout.len;
        match &self.moments {
            Moments::Buffers(m1, m2) => self.gpu.read_f32([m1, m2][which], 0, len),
            Moments::Texels(m) => {
                let mut v = self.gpu.read_matrix(&m[which])?;
                v.truncate(len);
                Ok(v)
            }
        }
    }

    /// Puts a saved state back: parameters, Adam's moments and the counters.
    pub fn restore_state(&mut self, st: &TrainState) -> Result<()> {
        let len = self.model.layout.len;
        if st.params.len() != len || st.moment1.len() != len || st.moment2.len() != len {
            bail!("the checkpoint holds {} parameters but this model has {len}", st.params.len());
        }
        self.gpu.queue.write_buffer(&self.params, 0, bytemuck::cast_slice(&st.params));
        match &self.moments {
            Moments::Buffers(m1, m2) => {
                self.gpu.queue.write_buffer(m1, 0, bytemuck::cast_slice(&st.moment1));
                self.gpu.queue.write_buffer(m2, 0, bytemuck::cast_slice(&st.moment2));
            }
            Moments::Texels(m) => {
                self.gpu.write_matrix_flat(&m[0], &st.moment1);
                self.gpu.write_matrix_flat(&m[1], &st.moment2);
            }
        }
        self.steps_done = st.steps_done;
        self.counter = st.counter;
        self.model.params = st.params.clone();
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.copy_weights(&mut enc);
        self.gpu.submit(enc.finish());
        self.gpu.wait()
    }

    /// Whether Adam runs inside the weight-gradient GEMMs (gemm_adam_subgroup.wgsl).
    pub fn adam_fused(&self) -> bool {
        self.adam_fused
    }

    /// Where Adam's moments live.
    pub fn moment_store(&self) -> kernels::MomentStore {
        self.moments.store()
    }

    /// The flat gradient of the last step (for tests).
    pub fn read_grads(&self) -> Result<Vec<f32>> {
        if self.adam_fused {
            bail!("the flat gradient is not kept when Adam runs inside the weight-gradient GEMMs; set Hyper::fuse_adam = false");
        }
        self.gpu.read_f32(&self.grads, 0, self.model.layout.len)
    }
}
