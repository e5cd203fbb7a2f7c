// Adam over the flat parameter buffer, the moments in storage buffers of the same layout.

@group(0) @binding(0) var<uniform> p: Adam;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> moment1: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> moment2: array<vec4<f32>>;

@compute @workgroup_size(64)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if i >= p.count {
        return;
    }
    let o = adam_math(p, step, params[i], grads[i], moment1[i], moment2[i]);
    moment1[i] = o.m;
    moment2[i] = o.v;
    params[i] = o.param;
}
