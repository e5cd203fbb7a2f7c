//! One recorded dispatch (pipeline, bind group, workgroup counts and its cost for
//! the profiler), and the helpers that encode and run lists of them.

use crate::gpu::Gpu;
use anyhow::Result;

/// What a binding slot holds.
#[derive(Clone, Copy)]
pub enum Bind<'a> {
    Buffer(&'a wgpu::Buffer),
    Texture(&'a wgpu::TextureView),
}

/// What a binding slot held, in the terms that make another device's resource of its
/// kind (`warm`): a buffer's size and usage, a texture's size, format and usage.
#[derive(Clone, Debug)]
pub enum BindShape {
    /// A uniform's `contents` where `Gpu::uniform` made it.
    Buffer {
        size: u64,
        usage: wgpu::BufferUsages,
        contents: Option<std::sync::Arc<[u8]>>,
    },
    Texture {
        size: wgpu::Extent3d,
        format: wgpu::TextureFormat,
        usage: wgpu::TextureUsages,
    },
}

impl BindShape {
    fn of(gpu: &Gpu, b: &Bind) -> BindShape {
        match b {
            Bind::Buffer(buf) => BindShape::Buffer {
                size: buf.size(),
                usage: buf.usage(),
                contents: if buf.usage().contains(wgpu::BufferUsages::UNIFORM) {
                    gpu.uniform_contents(buf).map(Into::into)
                } else {
                    None
                },
            },
            Bind::Texture(view) => {
                let t = view.texture();
                BindShape::Texture { size: t.size(), format: t.format(), usage: t.usage() }
            }
        }
    }
}

/// The state of `binds` that lavapipe compiles a kernel for, beside the shader: each
/// texture's format and whether its width and height are powers of two (llvmpipe's
/// variant key holds these for every image), and each uniform's contents (lavapipe
/// builds loop bounds read from a uniform into the kernel: a GEMM compiles once for
/// every shape). Two dispatches of one kernel with the same state run one compiled
/// program.
fn state_of(binds: &[(u32, BindShape)]) -> u64 {
    use std::hash::Hash;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (slot, b) in binds {
        match b {
            BindShape::Texture { size, format, .. } => {
                (slot, format, size.width.is_power_of_two(), size.height.is_power_of_two()).hash(&mut h)
            }
            BindShape::Buffer { contents: Some(c), .. } => (slot, c).hash(&mut h),
            BindShape::Buffer { contents: None, .. } => {}
        }
    }
    std::hash::Hasher::finish(&h)
}

/// One recorded dispatch: pipeline, bind group and workgroup counts (cloning shares the handles).
#[derive(Clone)]
pub struct Dispatch {
    pub label: std::borrow::Cow<'static, str>,
    pub kernel: super::Kernel,
    pub bind_group: wgpu::BindGroup,
    /// What each binding slot holds.
    pub binds: Vec<(u32, BindShape)>,
    /// The part of the bindings that lavapipe compiles for (`state_of`).
    pub state: u64,
    /// Whether this dispatch (or a clone) was encoded: the kernel then knows its state,
    /// and later encodes of the step's lists touch nothing but this flag.
    encoded: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub groups: [u32; 3],
    /// What the profiler reports: the problem's shape, and napkin-math floating-point
    /// operations and bytes moved (each input read once, each output written once).
    pub shape: String,
    pub flops: f64,
    pub bytes: f64,
}

impl Dispatch {
    /// A dispatch of `invocations` invocations in workgroups of `wg`
    /// (more than 65535 workgroups spill into y; see `linear_id`).
    pub fn new(
        gpu: &Gpu,
        label: impl Into<std::borrow::Cow<'static, str>>,
        kernel: &super::Kernel,
        binds: &[(u32, Bind)],
        invocations: usize,
        wg: usize,
    ) -> Dispatch {
        let entries: Vec<wgpu::BindGroupEntry> = binds
            .iter()
            .map(|(binding, b)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: match b {
                    Bind::Buffer(buf) => buf.as_entire_binding(),
                    Bind::Texture(view) => wgpu::BindingResource::TextureView(view),
                },
            })
            .collect();
        let label = label.into();
        let shapes: Vec<(u32, BindShape)> = binds.iter().map(|(slot, b)| (*slot, BindShape::of(gpu, b))).collect();
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&label),
            layout: &kernel.pipeline().get_bind_group_layout(0),
            entries: &entries,
        });
        let groups = invocations.div_ceil(wg).max(1);
        let (x, y) = if groups <= 65535 { (groups, 1) } else { (65535, groups.div_ceil(65535)) };
        Dispatch {
            label,
            kernel: kernel.clone(),
            bind_group,
            state: state_of(&shapes),
            encoded: Default::default(),
            binds: shapes,
            groups: [x as u32, y as u32, 1],
            shape: String::new(),
            flops: 0.0,
            bytes: 0.0,
        }
    }

    /// A dispatch of explicit workgroup counts.
    pub fn with_groups(
        gpu: &Gpu,
        label: impl Into<std::borrow::Cow<'static, str>>,
        kernel: &super::Kernel,
        binds: &[(u32, Bind)],
        groups: [u32; 3],
    ) -> Dispatch {
        let mut d = Dispatch::new(gpu, label, kernel, binds, 1, 1);
        d.groups = groups;
        d
    }

    pub fn with_cost(mut self, shape: String, flops: f64, bytes: f64) -> Dispatch {
        self.shape = shape;
        self.flops = flops;
        self.bytes = bytes;
        self
    }

    /// The cost of a GEMM of an (m, k) by (k, n) product.
    pub fn with_gemm_cost(self, m: usize, n: usize, k: usize) -> Dispatch {
        let (mf, nf, kf) = (m as f64, n as f64, k as f64);
        self.with_cost(format!("m={m} n={n} k={k}"), 2.0 * mf * nf * kf, 4.0 * (mf * kf + nf * kf + mf * nf))
    }

    /// The cost of an element-wise pass over `elements` values: `flops_each`
    /// operations and `bytes_each` bytes moved per value.
    pub fn with_elementwise_cost(self, shape: String, elements: usize, flops_each: f64, bytes_each: f64) -> Dispatch {
        let e = elements as f64;
        self.with_cost(shape, e * flops_each, e * bytes_each)
    }

    pub fn encode(&self, pass: &mut wgpu::ComputePass) {
        pass.set_pipeline(self.kernel.pipeline());
        if !self.encoded.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.kernel.set_warmed(self.state);
        }
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// Records `list` into one compute pass of `enc`.
pub fn encode_all(enc: &mut wgpu::CommandEncoder, label: &str, list: &[Dispatch]) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
    for d in list {
        d.encode(&mut pass);
    }
}

/// Runs `list` in one submit and waits for it (tests and one-off work).
pub fn run(gpu: &Gpu, list: &[Dispatch]) -> Result<()> {
    run_refs(gpu, &list.iter().collect::<Vec<_>>())
}

pub fn run_refs(gpu: &Gpu, list: &[&Dispatch]) -> Result<()> {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("run"), timestamp_writes: None });
        for d in list {
            d.encode(&mut pass);
        }
    }
    gpu.submit(enc.finish());
    gpu.wait()
}
