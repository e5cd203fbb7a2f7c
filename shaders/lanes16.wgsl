// Put in front of subgroup_common.wgsl for 16-lane subgroups (lavapipe with
// LP_NATIVE_VECTOR_WIDTH=512, which elbo sets on AVX-512 CPUs: src/gpu.rs): the same
// functions as lanes8.wgsl. A lane fetches the texel of rows j LANES + lane, so the 32
// rows of a block come in two texels: x0 and x1 (g0 and g1); x2, x3 (g2, g3) are
// not read, and the kernels' fetches of them are dead code.

const LANES: u32 = 16u;

// Row 16 g + j of acc += (x . w0, x . w1, x . w2, x . w3), where x is the texel that
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
    x = subgroupBroadcast(x0, 8u);
    (*acc).r8 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 9u);
    (*acc).r9 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 10u);
    (*acc).r10 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 11u);
    (*acc).r11 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 12u);
    (*acc).r12 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 13u);
    (*acc).r13 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 14u);
    (*acc).r14 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x0, 15u);
    (*acc).r15 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 0u);
    (*acc).r16 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 1u);
    (*acc).r17 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 2u);
    (*acc).r18 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 3u);
    (*acc).r19 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 4u);
    (*acc).r20 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 5u);
    (*acc).r21 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 6u);
    (*acc).r22 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 7u);
    (*acc).r23 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 8u);
    (*acc).r24 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 9u);
    (*acc).r25 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 10u);
    (*acc).r26 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 11u);
    (*acc).r27 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 12u);
    (*acc).r28 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 13u);
    (*acc).r29 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 14u);
    (*acc).r30 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = subgroupBroadcast(x1, 15u);
    (*acc).r31 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
}

// Row 16 g + j of acc += g.x w0 + g.y w1 + g.z w2 + g.w w3, where g is the texel that
// lane j holds in gg: the backward-input passes, whose lanes own one output texel each.
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
    g = subgroupBroadcast(g0, 8u);
    (*acc).r8 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 9u);
    (*acc).r9 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 10u);
    (*acc).r10 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 11u);
    (*acc).r11 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 12u);
    (*acc).r12 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 13u);
    (*acc).r13 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 14u);
    (*acc).r14 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g0, 15u);
    (*acc).r15 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 0u);
    (*acc).r16 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 1u);
    (*acc).r17 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 2u);
    (*acc).r18 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 3u);
    (*acc).r19 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 4u);
    (*acc).r20 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 5u);
    (*acc).r21 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 6u);
    (*acc).r22 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 7u);
    (*acc).r23 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 8u);
    (*acc).r24 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 9u);
    (*acc).r25 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 10u);
    (*acc).r26 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 11u);
    (*acc).r27 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 12u);
    (*acc).r28 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 13u);
    (*acc).r29 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 14u);
    (*acc).r30 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = subgroupBroadcast(g1, 15u);
    (*acc).r31 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
}

// The two 8-lane halves of a 16-lane subgroup, each doing what an 8-lane subgroup does
// for kernels written for 8 lanes: row 8 g + j of acc += g.x w0 + g.y w1 + g.z w2 + g.w w3,
// where g is gg of lane j of this lane's half (`half`: lane / 8).
fn combine_rows32_halves(acc: ptr<function, Rows32>, half: u32, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    let hi = half == 1u;
    var g: vec4<f32>;
    g = select(subgroupBroadcast(g0, 0u), subgroupBroadcast(g0, 8u), hi);
    (*acc).r0 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g0, 1u), subgroupBroadcast(g0, 9u), hi);
    (*acc).r1 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g0, 2u), subgroupBroadcast(g0, 10u), hi);
    (*acc).r2 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g0, 3u), subgroupBroadcast(g0, 11u), hi);
    (*acc).r3 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g0, 4u), subgroupBroadcast(g0, 12u), hi);
    (*acc).r4 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g0, 5u), subgroupBroadcast(g0, 13u), hi);
    (*acc).r5 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g0, 6u), subgroupBroadcast(g0, 14u), hi);
    (*acc).r6 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g0, 7u), subgroupBroadcast(g0, 15u), hi);
    (*acc).r7 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g1, 0u), subgroupBroadcast(g1, 8u), hi);
    (*acc).r8 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g1, 1u), subgroupBroadcast(g1, 9u), hi);
    (*acc).r9 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g1, 2u), subgroupBroadcast(g1, 10u), hi);
    (*acc).r10 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g1, 3u), subgroupBroadcast(g1, 11u), hi);
    (*acc).r11 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g1, 4u), subgroupBroadcast(g1, 12u), hi);
    (*acc).r12 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g1, 5u), subgroupBroadcast(g1, 13u), hi);
    (*acc).r13 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g1, 6u), subgroupBroadcast(g1, 14u), hi);
    (*acc).r14 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g1, 7u), subgroupBroadcast(g1, 15u), hi);
    (*acc).r15 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g2, 0u), subgroupBroadcast(g2, 8u), hi);
    (*acc).r16 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g2, 1u), subgroupBroadcast(g2, 9u), hi);
    (*acc).r17 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g2, 2u), subgroupBroadcast(g2, 10u), hi);
    (*acc).r18 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g2, 3u), subgroupBroadcast(g2, 11u), hi);
    (*acc).r19 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g2, 4u), subgroupBroadcast(g2, 12u), hi);
    (*acc).r20 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g2, 5u), subgroupBroadcast(g2, 13u), hi);
    (*acc).r21 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g2, 6u), subgroupBroadcast(g2, 14u), hi);
    (*acc).r22 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g2, 7u), subgroupBroadcast(g2, 15u), hi);
    (*acc).r23 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g3, 0u), subgroupBroadcast(g3, 8u), hi);
    (*acc).r24 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g3, 1u), subgroupBroadcast(g3, 9u), hi);
    (*acc).r25 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g3, 2u), subgroupBroadcast(g3, 10u), hi);
    (*acc).r26 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g3, 3u), subgroupBroadcast(g3, 11u), hi);
    (*acc).r27 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g3, 4u), subgroupBroadcast(g3, 12u), hi);
    (*acc).r28 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g3, 5u), subgroupBroadcast(g3, 13u), hi);
    (*acc).r29 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g3, 6u), subgroupBroadcast(g3, 14u), hi);
    (*acc).r30 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
    g = select(subgroupBroadcast(g3, 7u), subgroupBroadcast(g3, 15u), hi);
    (*acc).r31 += g.x * w0 + g.y * w1 + g.z * w2 + g.w * w3;
}
