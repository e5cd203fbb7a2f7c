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

/// One recorded dispatch: pipeline, bind group and workgroup counts (cloning shares the handles).
#[derive(Clone)]
pub struct Dispatch {
    pub label: std::borrow::Cow<'static, str>,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
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
        pipeline: &wgpu::ComputePipeline,
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
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let groups = invocations.div_ceil(wg).max(1);
        let (x, y) = if groups <= 65535 { (groups, 1) } else { (65535, groups.div_ceil(65535)) };
        Dispatch {
            label,
            pipeline: pipeline.clone(),
            bind_group,
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
        pipeline: &wgpu::ComputePipeline,
        binds: &[(u32, Bind)],
        groups: [u32; 3],
    ) -> Dispatch {
        let mut d = Dispatch::new(gpu, label, pipeline, binds, 1, 1);
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
        pass.set_pipeline(&self.pipeline);
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
