// Put in front of subgroup_common.wgsl for 8-lane subgroups (lavapipe's default on
// x86: 256-bit vectors): the subgroup width and the blocks that depend on it (here
// subgroup_common.wgsl's 8-lane ones). lanes16.wgsl holds the same functions for 16 lanes.

const LANES: u32 = 8u;

fn dot_rows32(acc: ptr<function, Rows32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    dot_rows32_8(acc, x0, x1, x2, x3, w0, w1, w2, w3);
}

fn combine_rows32(acc: ptr<function, Rows32>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    combine_rows32_8(acc, g0, g1, g2, g3, w0, w1, w2, w3);
}

// lanes16.wgsl's two 8-lane halves: here the subgroup is one half.
fn combine_rows32_halves(acc: ptr<function, Rows32>, half: u32, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    combine_rows32_8(acc, g0, g1, g2, g3, w0, w1, w2, w3);
}

// lanes16.wgsl's 16-row chunk; 8-lane kernels take weight_chunk's 8 rows instead.
fn weight_chunk16(acc: ptr<function, Outs16>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>, x8: vec4<f32>, x9: vec4<f32>, x10: vec4<f32>, x11: vec4<f32>, x12: vec4<f32>, x13: vec4<f32>, x14: vec4<f32>, x15: vec4<f32>) {}

// Groups of 8 lanes (the _c1 kernels of conv_subgroup.wgsl, written for 8): at 8 lanes a
// group is the subgroup, so these are subgroupBroadcast and subgroupAdd; `hi` (lanes 8-15
// of a 16-lane subgroup) is false here.
fn group8_f0(v: f32, hi: bool) -> f32 { return subgroupBroadcast(v, 0u); }
fn group8_f1(v: f32, hi: bool) -> f32 { return subgroupBroadcast(v, 1u); }
fn group8_f2(v: f32, hi: bool) -> f32 { return subgroupBroadcast(v, 2u); }
fn group8_f3(v: f32, hi: bool) -> f32 { return subgroupBroadcast(v, 3u); }
fn group8_f4(v: f32, hi: bool) -> f32 { return subgroupBroadcast(v, 4u); }
fn group8_f5(v: f32, hi: bool) -> f32 { return subgroupBroadcast(v, 5u); }
fn group8_f6(v: f32, hi: bool) -> f32 { return subgroupBroadcast(v, 6u); }
fn group8_f7(v: f32, hi: bool) -> f32 { return subgroupBroadcast(v, 7u); }
fn group8_v0(v: vec4<f32>, hi: bool) -> vec4<f32> { return subgroupBroadcast(v, 0u); }
fn group8_v1(v: vec4<f32>, hi: bool) -> vec4<f32> { return subgroupBroadcast(v, 1u); }
fn group8_v2(v: vec4<f32>, hi: bool) -> vec4<f32> { return subgroupBroadcast(v, 2u); }
fn group8_v3(v: vec4<f32>, hi: bool) -> vec4<f32> { return subgroupBroadcast(v, 3u); }
fn group8_v4(v: vec4<f32>, hi: bool) -> vec4<f32> { return subgroupBroadcast(v, 4u); }
fn group8_v5(v: vec4<f32>, hi: bool) -> vec4<f32> { return subgroupBroadcast(v, 5u); }
fn group8_v6(v: vec4<f32>, hi: bool) -> vec4<f32> { return subgroupBroadcast(v, 6u); }
fn group8_v7(v: vec4<f32>, hi: bool) -> vec4<f32> { return subgroupBroadcast(v, 7u); }
fn group8_add(v: f32, hi: bool) -> f32 { return subgroupAdd(v); }

// dot_rows32_8 for kernels written for 8 lanes (`hi` unused at 8).
fn dot_rows32_group8(acc: ptr<function, Rows32>, hi: bool, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    dot_rows32_8(acc, x0, x1, x2, x3, w0, w1, w2, w3);
}
