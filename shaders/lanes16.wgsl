// Put in front of subgroup_common.wgsl for 16-lane subgroups (lavapipe with
// LP_NATIVE_VECTOR_WIDTH=512, which elbo sets on AVX-512 CPUs: src/gpu/lavapipe.rs): the same
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

// weight_chunk for a chunk of 16 rows, one per lane: each output takes the 16 products
// in one update.
fn weight_chunk16(acc: ptr<function, Outs16>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>, x8: vec4<f32>, x9: vec4<f32>, x10: vec4<f32>, x11: vec4<f32>, x12: vec4<f32>, x13: vec4<f32>, x14: vec4<f32>, x15: vec4<f32>) {
    let d0_0 = subgroupBroadcast(g0, 0u);
    let d0_1 = subgroupBroadcast(g0, 1u);
    let d0_2 = subgroupBroadcast(g0, 2u);
    let d0_3 = subgroupBroadcast(g0, 3u);
    let d0_4 = subgroupBroadcast(g0, 4u);
    let d0_5 = subgroupBroadcast(g0, 5u);
    let d0_6 = subgroupBroadcast(g0, 6u);
    let d0_7 = subgroupBroadcast(g0, 7u);
    let d0_8 = subgroupBroadcast(g0, 8u);
    let d0_9 = subgroupBroadcast(g0, 9u);
    let d0_10 = subgroupBroadcast(g0, 10u);
    let d0_11 = subgroupBroadcast(g0, 11u);
    let d0_12 = subgroupBroadcast(g0, 12u);
    let d0_13 = subgroupBroadcast(g0, 13u);
    let d0_14 = subgroupBroadcast(g0, 14u);
    let d0_15 = subgroupBroadcast(g0, 15u);
    let d1_0 = subgroupBroadcast(g1, 0u);
    let d1_1 = subgroupBroadcast(g1, 1u);
    let d1_2 = subgroupBroadcast(g1, 2u);
    let d1_3 = subgroupBroadcast(g1, 3u);
    let d1_4 = subgroupBroadcast(g1, 4u);
    let d1_5 = subgroupBroadcast(g1, 5u);
    let d1_6 = subgroupBroadcast(g1, 6u);
    let d1_7 = subgroupBroadcast(g1, 7u);
    let d1_8 = subgroupBroadcast(g1, 8u);
    let d1_9 = subgroupBroadcast(g1, 9u);
    let d1_10 = subgroupBroadcast(g1, 10u);
    let d1_11 = subgroupBroadcast(g1, 11u);
    let d1_12 = subgroupBroadcast(g1, 12u);
    let d1_13 = subgroupBroadcast(g1, 13u);
    let d1_14 = subgroupBroadcast(g1, 14u);
    let d1_15 = subgroupBroadcast(g1, 15u);
    let d2_0 = subgroupBroadcast(g2, 0u);
    let d2_1 = subgroupBroadcast(g2, 1u);
    let d2_2 = subgroupBroadcast(g2, 2u);
    let d2_3 = subgroupBroadcast(g2, 3u);
    let d2_4 = subgroupBroadcast(g2, 4u);
    let d2_5 = subgroupBroadcast(g2, 5u);
    let d2_6 = subgroupBroadcast(g2, 6u);
    let d2_7 = subgroupBroadcast(g2, 7u);
    let d2_8 = subgroupBroadcast(g2, 8u);
    let d2_9 = subgroupBroadcast(g2, 9u);
    let d2_10 = subgroupBroadcast(g2, 10u);
    let d2_11 = subgroupBroadcast(g2, 11u);
    let d2_12 = subgroupBroadcast(g2, 12u);
    let d2_13 = subgroupBroadcast(g2, 13u);
    let d2_14 = subgroupBroadcast(g2, 14u);
    let d2_15 = subgroupBroadcast(g2, 15u);
    let d3_0 = subgroupBroadcast(g3, 0u);
    let d3_1 = subgroupBroadcast(g3, 1u);
    let d3_2 = subgroupBroadcast(g3, 2u);
    let d3_3 = subgroupBroadcast(g3, 3u);
    let d3_4 = subgroupBroadcast(g3, 4u);
    let d3_5 = subgroupBroadcast(g3, 5u);
    let d3_6 = subgroupBroadcast(g3, 6u);
    let d3_7 = subgroupBroadcast(g3, 7u);
    let d3_8 = subgroupBroadcast(g3, 8u);
    let d3_9 = subgroupBroadcast(g3, 9u);
    let d3_10 = subgroupBroadcast(g3, 10u);
    let d3_11 = subgroupBroadcast(g3, 11u);
    let d3_12 = subgroupBroadcast(g3, 12u);
    let d3_13 = subgroupBroadcast(g3, 13u);
    let d3_14 = subgroupBroadcast(g3, 14u);
    let d3_15 = subgroupBroadcast(g3, 15u);
    (*acc).o0 += d0_0.x * x0 + d0_1.x * x1 + d0_2.x * x2 + d0_3.x * x3 + d0_4.x * x4 + d0_5.x * x5 + d0_6.x * x6 + d0_7.x * x7 + d0_8.x * x8 + d0_9.x * x9 + d0_10.x * x10 + d0_11.x * x11 + d0_12.x * x12 + d0_13.x * x13 + d0_14.x * x14 + d0_15.x * x15;
    (*acc).o1 += d0_0.y * x0 + d0_1.y * x1 + d0_2.y * x2 + d0_3.y * x3 + d0_4.y * x4 + d0_5.y * x5 + d0_6.y * x6 + d0_7.y * x7 + d0_8.y * x8 + d0_9.y * x9 + d0_10.y * x10 + d0_11.y * x11 + d0_12.y * x12 + d0_13.y * x13 + d0_14.y * x14 + d0_15.y * x15;
    (*acc).o2 += d0_0.z * x0 + d0_1.z * x1 + d0_2.z * x2 + d0_3.z * x3 + d0_4.z * x4 + d0_5.z * x5 + d0_6.z * x6 + d0_7.z * x7 + d0_8.z * x8 + d0_9.z * x9 + d0_10.z * x10 + d0_11.z * x11 + d0_12.z * x12 + d0_13.z * x13 + d0_14.z * x14 + d0_15.z * x15;
    (*acc).o3 += d0_0.w * x0 + d0_1.w * x1 + d0_2.w * x2 + d0_3.w * x3 + d0_4.w * x4 + d0_5.w * x5 + d0_6.w * x6 + d0_7.w * x7 + d0_8.w * x8 + d0_9.w * x9 + d0_10.w * x10 + d0_11.w * x11 + d0_12.w * x12 + d0_13.w * x13 + d0_14.w * x14 + d0_15.w * x15;
    (*acc).o4 += d1_0.x * x0 + d1_1.x * x1 + d1_2.x * x2 + d1_3.x * x3 + d1_4.x * x4 + d1_5.x * x5 + d1_6.x * x6 + d1_7.x * x7 + d1_8.x * x8 + d1_9.x * x9 + d1_10.x * x10 + d1_11.x * x11 + d1_12.x * x12 + d1_13.x * x13 + d1_14.x * x14 + d1_15.x * x15;
    (*acc).o5 += d1_0.y * x0 + d1_1.y * x1 + d1_2.y * x2 + d1_3.y * x3 + d1_4.y * x4 + d1_5.y * x5 + d1_6.y * x6 + d1_7.y * x7 + d1_8.y * x8 + d1_9.y * x9 + d1_10.y * x10 + d1_11.y * x11 + d1_12.y * x12 + d1_13.y * x13 + d1_14.y * x14 + d1_15.y * x15;
    (*acc).o6 += d1_0.z * x0 + d1_1.z * x1 + d1_2.z * x2 + d1_3.z * x3 + d1_4.z * x4 + d1_5.z * x5 + d1_6.z * x6 + d1_7.z * x7 + d1_8.z * x8 + d1_9.z * x9 + d1_10.z * x10 + d1_11.z * x11 + d1_12.z * x12 + d1_13.z * x13 + d1_14.z * x14 + d1_15.z * x15;
    (*acc).o7 += d1_0.w * x0 + d1_1.w * x1 + d1_2.w * x2 + d1_3.w * x3 + d1_4.w * x4 + d1_5.w * x5 + d1_6.w * x6 + d1_7.w * x7 + d1_8.w * x8 + d1_9.w * x9 + d1_10.w * x10 + d1_11.w * x11 + d1_12.w * x12 + d1_13.w * x13 + d1_14.w * x14 + d1_15.w * x15;
    (*acc).o8 += d2_0.x * x0 + d2_1.x * x1 + d2_2.x * x2 + d2_3.x * x3 + d2_4.x * x4 + d2_5.x * x5 + d2_6.x * x6 + d2_7.x * x7 + d2_8.x * x8 + d2_9.x * x9 + d2_10.x * x10 + d2_11.x * x11 + d2_12.x * x12 + d2_13.x * x13 + d2_14.x * x14 + d2_15.x * x15;
    (*acc).o9 += d2_0.y * x0 + d2_1.y * x1 + d2_2.y * x2 + d2_3.y * x3 + d2_4.y * x4 + d2_5.y * x5 + d2_6.y * x6 + d2_7.y * x7 + d2_8.y * x8 + d2_9.y * x9 + d2_10.y * x10 + d2_11.y * x11 + d2_12.y * x12 + d2_13.y * x13 + d2_14.y * x14 + d2_15.y * x15;
    (*acc).o10 += d2_0.z * x0 + d2_1.z * x1 + d2_2.z * x2 + d2_3.z * x3 + d2_4.z * x4 + d2_5.z * x5 + d2_6.z * x6 + d2_7.z * x7 + d2_8.z * x8 + d2_9.z * x9 + d2_10.z * x10 + d2_11.z * x11 + d2_12.z * x12 + d2_13.z * x13 + d2_14.z * x14 + d2_15.z * x15;
    (*acc).o11 += d2_0.w * x0 + d2_1.w * x1 + d2_2.w * x2 + d2_3.w * x3 + d2_4.w * x4 + d2_5.w * x5 + d2_6.w * x6 + d2_7.w * x7 + d2_8.w * x8 + d2_9.w * x9 + d2_10.w * x10 + d2_11.w * x11 + d2_12.w * x12 + d2_13.w * x13 + d2_14.w * x14 + d2_15.w * x15;
    (*acc).o12 += d3_0.x * x0 + d3_1.x * x1 + d3_2.x * x2 + d3_3.x * x3 + d3_4.x * x4 + d3_5.x * x5 + d3_6.x * x6 + d3_7.x * x7 + d3_8.x * x8 + d3_9.x * x9 + d3_10.x * x10 + d3_11.x * x11 + d3_12.x * x12 + d3_13.x * x13 + d3_14.x * x14 + d3_15.x * x15;
    (*acc).o13 += d3_0.y * x0 + d3_1.y * x1 + d3_2.y * x2 + d3_3.y * x3 + d3_4.y * x4 + d3_5.y * x5 + d3_6.y * x6 + d3_7.y * x7 + d3_8.y * x8 + d3_9.y * x9 + d3_10.y * x10 + d3_11.y * x11 + d3_12.y * x12 + d3_13.y * x13 + d3_14.y * x14 + d3_15.y * x15;
    (*acc).o14 += d3_0.z * x0 + d3_1.z * x1 + d3_2.z * x2 + d3_3.z * x3 + d3_4.z * x4 + d3_5.z * x5 + d3_6.z * x6 + d3_7.z * x7 + d3_8.z * x8 + d3_9.z * x9 + d3_10.z * x10 + d3_11.z * x11 + d3_12.z * x12 + d3_13.z * x13 + d3_14.z * x14 + d3_15.z * x15;
    (*acc).o15 += d3_0.w * x0 + d3_1.w * x1 + d3_2.w * x2 + d3_3.w * x3 + d3_4.w * x4 + d3_5.w * x5 + d3_6.w * x6 + d3_7.w * x7 + d3_8.w * x8 + d3_9.w * x9 + d3_10.w * x10 + d3_11.w * x11 + d3_12.w * x12 + d3_13.w * x13 + d3_14.w * x14 + d3_15.w * x15;
}

// Groups of 8 lanes (the _c1 kernels of conv_subgroup.wgsl, written for 8): lane j of the
// caller's group of 8, lanes 0-7 or (hi) 8-15 of the subgroup; the sum over the group.
fn group8_f0(v: f32, hi: bool) -> f32 { return select(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 8u), hi); }
fn group8_f1(v: f32, hi: bool) -> f32 { return select(subgroupBroadcast(v, 1u), subgroupBroadcast(v, 9u), hi); }
fn group8_f2(v: f32, hi: bool) -> f32 { return select(subgroupBroadcast(v, 2u), subgroupBroadcast(v, 10u), hi); }
fn group8_f3(v: f32, hi: bool) -> f32 { return select(subgroupBroadcast(v, 3u), subgroupBroadcast(v, 11u), hi); }
fn group8_f4(v: f32, hi: bool) -> f32 { return select(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 12u), hi); }
fn group8_f5(v: f32, hi: bool) -> f32 { return select(subgroupBroadcast(v, 5u), subgroupBroadcast(v, 13u), hi); }
fn group8_f6(v: f32, hi: bool) -> f32 { return select(subgroupBroadcast(v, 6u), subgroupBroadcast(v, 14u), hi); }
fn group8_f7(v: f32, hi: bool) -> f32 { return select(subgroupBroadcast(v, 7u), subgroupBroadcast(v, 15u), hi); }
fn group8_v0(v: vec4<f32>, hi: bool) -> vec4<f32> { return select(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 8u), hi); }
fn group8_v1(v: vec4<f32>, hi: bool) -> vec4<f32> { return select(subgroupBroadcast(v, 1u), subgroupBroadcast(v, 9u), hi); }
fn group8_v2(v: vec4<f32>, hi: bool) -> vec4<f32> { return select(subgroupBroadcast(v, 2u), subgroupBroadcast(v, 10u), hi); }
fn group8_v3(v: vec4<f32>, hi: bool) -> vec4<f32> { return select(subgroupBroadcast(v, 3u), subgroupBroadcast(v, 11u), hi); }
fn group8_v4(v: vec4<f32>, hi: bool) -> vec4<f32> { return select(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 12u), hi); }
fn group8_v5(v: vec4<f32>, hi: bool) -> vec4<f32> { return select(subgroupBroadcast(v, 5u), subgroupBroadcast(v, 13u), hi); }
fn group8_v6(v: vec4<f32>, hi: bool) -> vec4<f32> { return select(subgroupBroadcast(v, 6u), subgroupBroadcast(v, 14u), hi); }
fn group8_v7(v: vec4<f32>, hi: bool) -> vec4<f32> { return select(subgroupBroadcast(v, 7u), subgroupBroadcast(v, 15u), hi); }
fn group8_add(v: f32, hi: bool) -> f32 { return select(subgroupAdd(select(v, 0.0, hi)), subgroupAdd(select(0.0, v, hi)), hi); }

// dot_rows32_8 in each 8-lane half of the subgroup (`hi`: lanes 8-15), each half on the
// texels its own lanes hold: kernels written for 8 lanes, at 16.
fn dot_rows32_group8(acc: ptr<function, Rows32>, hi: bool, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    var x: vec4<f32>;
    x = select(subgroupBroadcast(x0, 0u), subgroupBroadcast(x0, 8u), hi);
    (*acc).r0 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x0, 1u), subgroupBroadcast(x0, 9u), hi);
    (*acc).r1 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x0, 2u), subgroupBroadcast(x0, 10u), hi);
    (*acc).r2 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x0, 3u), subgroupBroadcast(x0, 11u), hi);
    (*acc).r3 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x0, 4u), subgroupBroadcast(x0, 12u), hi);
    (*acc).r4 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x0, 5u), subgroupBroadcast(x0, 13u), hi);
    (*acc).r5 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x0, 6u), subgroupBroadcast(x0, 14u), hi);
    (*acc).r6 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x0, 7u), subgroupBroadcast(x0, 15u), hi);
    (*acc).r7 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x1, 0u), subgroupBroadcast(x1, 8u), hi);
    (*acc).r8 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x1, 1u), subgroupBroadcast(x1, 9u), hi);
    (*acc).r9 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x1, 2u), subgroupBroadcast(x1, 10u), hi);
    (*acc).r10 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x1, 3u), subgroupBroadcast(x1, 11u), hi);
    (*acc).r11 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x1, 4u), subgroupBroadcast(x1, 12u), hi);
    (*acc).r12 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x1, 5u), subgroupBroadcast(x1, 13u), hi);
    (*acc).r13 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x1, 6u), subgroupBroadcast(x1, 14u), hi);
    (*acc).r14 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x1, 7u), subgroupBroadcast(x1, 15u), hi);
    (*acc).r15 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x2, 0u), subgroupBroadcast(x2, 8u), hi);
    (*acc).r16 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x2, 1u), subgroupBroadcast(x2, 9u), hi);
    (*acc).r17 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x2, 2u), subgroupBroadcast(x2, 10u), hi);
    (*acc).r18 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x2, 3u), subgroupBroadcast(x2, 11u), hi);
    (*acc).r19 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x2, 4u), subgroupBroadcast(x2, 12u), hi);
    (*acc).r20 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x2, 5u), subgroupBroadcast(x2, 13u), hi);
    (*acc).r21 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x2, 6u), subgroupBroadcast(x2, 14u), hi);
    (*acc).r22 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x2, 7u), subgroupBroadcast(x2, 15u), hi);
    (*acc).r23 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x3, 0u), subgroupBroadcast(x3, 8u), hi);
    (*acc).r24 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x3, 1u), subgroupBroadcast(x3, 9u), hi);
    (*acc).r25 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x3, 2u), subgroupBroadcast(x3, 10u), hi);
    (*acc).r26 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x3, 3u), subgroupBroadcast(x3, 11u), hi);
    (*acc).r27 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x3, 4u), subgroupBroadcast(x3, 12u), hi);
    (*acc).r28 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x3, 5u), subgroupBroadcast(x3, 13u), hi);
    (*acc).r29 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x3, 6u), subgroupBroadcast(x3, 14u), hi);
    (*acc).r30 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
    x = select(subgroupBroadcast(x3, 7u), subgroupBroadcast(x3, 15u), hi);
    (*acc).r31 += vec4<f32>(dot(x, w0), dot(x, w1), dot(x, w2), dot(x, w3));
}
