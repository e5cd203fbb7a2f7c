// Put in front of gemm_subgroup.wgsl and conv_subgroup.wgsl (src/kernels/mod.rs: SHADERS),
// after lanes8.wgsl or lanes16.wgsl: the multiply-add blocks that their GEMM-shaped
// kernels share whatever the subgroup width. They are written out
// because subgroupBroadcast takes a constant lane, and a loop over the lanes would
// also blend every accumulator with the execution mask once per lane. The
// accumulators are struct fields, not an array: llvmpipe keeps them as registers
// only when every access names its field.

// 32 rows of 4 columns.
struct Rows32 {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
    r4: vec4<f32>,
    r5: vec4<f32>,
    r6: vec4<f32>,
    r7: vec4<f32>,
    r8: vec4<f32>,
    r9: vec4<f32>,
    r10: vec4<f32>,
    r11: vec4<f32>,
    r12: vec4<f32>,
    r13: vec4<f32>,
    r14: vec4<f32>,
    r15: vec4<f32>,
    r16: vec4<f32>,
    r17: vec4<f32>,
    r18: vec4<f32>,
    r19: vec4<f32>,
    r20: vec4<f32>,
    r21: vec4<f32>,
    r22: vec4<f32>,
    r23: vec4<f32>,
    r24: vec4<f32>,
    r25: vec4<f32>,
    r26: vec4<f32>,
    r27: vec4<f32>,
    r28: vec4<f32>,
    r29: vec4<f32>,
    r30: vec4<f32>,
    r31: vec4<f32>,
}

// 8 lanes (lanes8.wgsl's dot_rows32, and kernels written for 8-lane subgroups whatever
// the width): row 8 g + j of acc += (x . w0, x . w1, x . w2, x . w3), where x is the texel that
// lane j holds in xg (each lane fetched its own row's texel).
fn dot_rows32_8(acc: ptr<function, Rows32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
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
fn combine_rows32_8(acc: ptr<function, Rows32>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
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

fn rows32_array(a: Rows32) -> array<vec4<f32>, 32> {
    return array<vec4<f32>, 32>(a.r0, a.r1, a.r2, a.r3, a.r4, a.r5, a.r6, a.r7, a.r8, a.r9, a.r10, a.r11, a.r12, a.r13, a.r14, a.r15, a.r16, a.r17, a.r18, a.r19, a.r20, a.r21, a.r22, a.r23, a.r24, a.r25, a.r26, a.r27, a.r28, a.r29, a.r30, a.r31);
}

// 16 outputs (4 texels of them) by one texel: dW's block in the weight gradients.
struct Outs16 {
    o0: vec4<f32>,
    o1: vec4<f32>,
    o2: vec4<f32>,
    o3: vec4<f32>,
    o4: vec4<f32>,
    o5: vec4<f32>,
    o6: vec4<f32>,
    o7: vec4<f32>,
    o8: vec4<f32>,
    o9: vec4<f32>,
    o10: vec4<f32>,
    o11: vec4<f32>,
    o12: vec4<f32>,
    o13: vec4<f32>,
    o14: vec4<f32>,
    o15: vec4<f32>,
}

// One chunk of 8 rows of a weight gradient (lanes 0..7 hold them at either width): output 4 t + c of acc += sum over j of
// row j's gradient texel t (held by lane j in gt), component c, times x_j (this lane's
// own texel of row j). Each output takes the chunk's 8 products in one update.
fn weight_chunk(acc: ptr<function, Outs16>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) {
    let d0_0 = subgroupBroadcast(g0, 0u);
    let d0_1 = subgroupBroadcast(g0, 1u);
    let d0_2 = subgroupBroadcast(g0, 2u);
    let d0_3 = subgroupBroadcast(g0, 3u);
    let d0_4 = subgroupBroadcast(g0, 4u);
    let d0_5 = subgroupBroadcast(g0, 5u);
    let d0_6 = subgroupBroadcast(g0, 6u);
    let d0_7 = subgroupBroadcast(g0, 7u);
    (*acc).o0 += d0_0.x * x0 + d0_1.x * x1 + d0_2.x * x2 + d0_3.x * x3 + d0_4.x * x4 + d0_5.x * x5 + d0_6.x * x6 + d0_7.x * x7;
    (*acc).o1 += d0_0.y * x0 + d0_1.y * x1 + d0_2.y * x2 + d0_3.y * x3 + d0_4.y * x4 + d0_5.y * x5 + d0_6.y * x6 + d0_7.y * x7;
    (*acc).o2 += d0_0.z * x0 + d0_1.z * x1 + d0_2.z * x2 + d0_3.z * x3 + d0_4.z * x4 + d0_5.z * x5 + d0_6.z * x6 + d0_7.z * x7;
    (*acc).o3 += d0_0.w * x0 + d0_1.w * x1 + d0_2.w * x2 + d0_3.w * x3 + d0_4.w * x4 + d0_5.w * x5 + d0_6.w * x6 + d0_7.w * x7;
    let d1_0 = subgroupBroadcast(g1, 0u);
    let d1_1 = subgroupBroadcast(g1, 1u);
    let d1_2 = subgroupBroadcast(g1, 2u);
    let d1_3 = subgroupBroadcast(g1, 3u);
    let d1_4 = subgroupBroadcast(g1, 4u);
    let d1_5 = subgroupBroadcast(g1, 5u);
    let d1_6 = subgroupBroadcast(g1, 6u);
    let d1_7 = subgroupBroadcast(g1, 7u);
    (*acc).o4 += d1_0.x * x0 + d1_1.x * x1 + d1_2.x * x2 + d1_3.x * x3 + d1_4.x * x4 + d1_5.x * x5 + d1_6.x * x6 + d1_7.x * x7;
    (*acc).o5 += d1_0.y * x0 + d1_1.y * x1 + d1_2.y * x2 + d1_3.y * x3 + d1_4.y * x4 + d1_5.y * x5 + d1_6.y * x6 + d1_7.y * x7;
    (*acc).o6 += d1_0.z * x0 + d1_1.z * x1 + d1_2.z * x2 + d1_3.z * x3 + d1_4.z * x4 + d1_5.z * x5 + d1_6.z * x6 + d1_7.z * x7;
    (*acc).o7 += d1_0.w * x0 + d1_1.w * x1 + d1_2.w * x2 + d1_3.w * x3 + d1_4.w * x4 + d1_5.w * x5 + d1_6.w * x6 + d1_7.w * x7;
    let d2_0 = subgroupBroadcast(g2, 0u);
    let d2_1 = subgroupBroadcast(g2, 1u);
    let d2_2 = subgroupBroadcast(g2, 2u);
    let d2_3 = subgroupBroadcast(g2, 3u);
    let d2_4 = subgroupBroadcast(g2, 4u);
    let d2_5 = subgroupBroadcast(g2, 5u);
    let d2_6 = subgroupBroadcast(g2, 6u);
    let d2_7 = subgroupBroadcast(g2, 7u);
    (*acc).o8 += d2_0.x * x0 + d2_1.x * x1 + d2_2.x * x2 + d2_3.x * x3 + d2_4.x * x4 + d2_5.x * x5 + d2_6.x * x6 + d2_7.x * x7;
    (*acc).o9 += d2_0.y * x0 + d2_1.y * x1 + d2_2.y * x2 + d2_3.y * x3 + d2_4.y * x4 + d2_5.y * x5 + d2_6.y * x6 + d2_7.y * x7;
    (*acc).o10 += d2_0.z * x0 + d2_1.z * x1 + d2_2.z * x2 + d2_3.z * x3 + d2_4.z * x4 + d2_5.z * x5 + d2_6.z * x6 + d2_7.z * x7;
    (*acc).o11 += d2_0.w * x0 + d2_1.w * x1 + d2_2.w * x2 + d2_3.w * x3 + d2_4.w * x4 + d2_5.w * x5 + d2_6.w * x6 + d2_7.w * x7;
    let d3_0 = subgroupBroadcast(g3, 0u);
    let d3_1 = subgroupBroadcast(g3, 1u);
    let d3_2 = subgroupBroadcast(g3, 2u);
    let d3_3 = subgroupBroadcast(g3, 3u);
    let d3_4 = subgroupBroadcast(g3, 4u);
    let d3_5 = subgroupBroadcast(g3, 5u);
    let d3_6 = subgroupBroadcast(g3, 6u);
    let d3_7 = subgroupBroadcast(g3, 7u);
    (*acc).o12 += d3_0.x * x0 + d3_1.x * x1 + d3_2.x * x2 + d3_3.x * x3 + d3_4.x * x4 + d3_5.x * x5 + d3_6.x * x6 + d3_7.x * x7;
    (*acc).o13 += d3_0.y * x0 + d3_1.y * x1 + d3_2.y * x2 + d3_3.y * x3 + d3_4.y * x4 + d3_5.y * x5 + d3_6.y * x6 + d3_7.y * x7;
    (*acc).o14 += d3_0.z * x0 + d3_1.z * x1 + d3_2.z * x2 + d3_3.z * x3 + d3_4.z * x4 + d3_5.z * x5 + d3_6.z * x6 + d3_7.z * x7;
    (*acc).o15 += d3_0.w * x0 + d3_1.w * x1 + d3_2.w * x2 + d3_3.w * x3 + d3_4.w * x4 + d3_5.w * x5 + d3_6.w * x6 + d3_7.w * x7;
}

fn outs16_array(a: Outs16) -> array<vec4<f32>, 16> {
    return array<vec4<f32>, 16>(a.o0, a.o1, a.o2, a.o3, a.o4, a.o5, a.o6, a.o7, a.o8, a.o9, a.o10, a.o11, a.o12, a.o13, a.o14, a.o15);
}
