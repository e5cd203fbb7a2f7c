// Put in front of subgroup_common.wgsl for 8-lane subgroups (lavapipe's default on
// x86: 256-bit vectors): the subgroup width and the blocks that depend on it.
// lanes16.wgsl holds the same functions for 16 lanes.

const LANES: u32 = 8u;

// Row 8 g + j of acc += (x . w0, x . w1, x . w2, x . w3), where x is the texel that
// lane j holds in xg (each lane fetched its own row's texel).
fn dot_rows32(acc: ptr<function, Rows32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    var x: vec4<f32>;
    x = subgroupBroadcast(x0, 0u);
    (*acc).r0 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 1u);
    (*acc).r1 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 2u);
    (*acc).r2 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 3u);
    (*acc).r3 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 4u);
    (*acc).r4 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 5u);
    (*acc).r5 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 6u);
    (*acc).r6 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 7u);
    (*acc).r7 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 0u);
    (*acc).r8 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 1u);
    (*acc).r9 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 2u);
    (*acc).r10 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 3u);
    (*acc).r11 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 4u);
    (*acc).r12 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 5u);
    (*acc).r13 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 6u);
    (*acc).r14 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 7u);
    (*acc).r15 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x2, 0u);
    (*acc).r16 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x2, 1u);
    (*acc).r17 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x2, 2u);
    (*acc).r18 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x2, 3u);
    (*acc).r19 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x2, 4u);
    (*acc).r20 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x2, 5u);
    (*acc).r21 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x2, 6u);
    (*acc).r22 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x2, 7u);
    (*acc).r23 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x3, 0u);
    (*acc).r24 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x3, 1u);
    (*acc).r25 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x3, 2u);
    (*acc).r26 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x3, 3u);
    (*acc).r27 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x3, 4u);
    (*acc).r28 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x3, 5u);
    (*acc).r29 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x3, 6u);
    (*acc).r30 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x3, 7u);
    (*acc).r31 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
}

// Row 8 g + j of acc += g.x w0 + g.y w1 + g.z w2 + g.w w3, where g is the texel that
// lane j holds in gg (each lane fetched its own row's texel): the backward-input
// passes, whose lanes own four output columns (one texel) each.
fn combine_rows32(acc: ptr<function, Rows32>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    var g: vec4<f32>;
    g = subgroupBroadcast(g0, 0u);
    (*acc).r0 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 1u);
    (*acc).r1 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 2u);
    (*acc).r2 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 3u);
    (*acc).r3 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 4u);
    (*acc).r4 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 5u);
    (*acc).r5 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 6u);
    (*acc).r6 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 7u);
    (*acc).r7 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 0u);
    (*acc).r8 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 1u);
    (*acc).r9 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 2u);
    (*acc).r10 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 3u);
    (*acc).r11 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 4u);
    (*acc).r12 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 5u);
    (*acc).r13 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 6u);
    (*acc).r14 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 7u);
    (*acc).r15 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g2, 0u);
    (*acc).r16 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g2, 1u);
    (*acc).r17 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g2, 2u);
    (*acc).r18 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g2, 3u);
    (*acc).r19 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g2, 4u);
    (*acc).r20 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g2, 5u);
    (*acc).r21 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g2, 6u);
    (*acc).r22 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g2, 7u);
    (*acc).r23 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g3, 0u);
    (*acc).r24 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g3, 1u);
    (*acc).r25 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g3, 2u);
    (*acc).r26 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g3, 3u);
    (*acc).r27 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g3, 4u);
    (*acc).r28 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g3, 5u);
    (*acc).r29 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g3, 6u);
    (*acc).r30 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g3, 7u);
    (*acc).r31 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
}
