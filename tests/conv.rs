//! conv.wgsl and conv_subgroup.wgsl against the CPU references: convolution
//! forward, backward-input (also as a transposed convolution's forward) and
//! backward-weight, on strided, padded, odd-sized and multi-channel shapes.

mod common;
use common::{assert_close, gpu, random, ACTIVATIONS};
use elbo::kernels::{
    self, Bind, ConvVariant, Kernels, EPILOGUE_ACT_GRAD, EPILOGUE_BIAS, EPILOGUE_BIAS_ACT, EPILOGUE_NONE,
};
use elbo::model::Activation;
use elbo::reference::{self as r, ConvShape};
use std::sync::OnceLock;
use Bind::{Buffer as B, Texture as T};

fn k() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| Kernels::new(gpu()).expect("kernels compile"))
}

/// (batch, h, w, c) -> one texture row per image, channels padded to 4.
fn pad_channels(v: &[f32], c: usize) -> Vec<f32> {
    let c4 = c.div_ceil(4) * 4;
    v.chunks(c).flat_map(|px| (0..c4).map(move |i| if i < c { px[i] } else { 0.0 })).collect()
}

fn unpad_channels(v: &[f32], c: usize) -> Vec<f32> {
    let c4 = c.div_ceil(4) * 4;
    v.chunks(c4).flat_map(|px| px[..c].to_vec()).collect()
}

/// w (out_c, in_c, k, k) -> (out_c, k * k * c4_in) rows as conv.wgsl stores them.
fn weight_rows(w: &[f32], s: &ConvShape) -> Vec<f32> {
    let (k, c4) = (s.kernel, s.in_c.div_ceil(4) * 4);
    let mut out = vec![0f32; s.out_c * k * k * c4];
    for o in 0..s.out_c {
        for i in 0..s.in_c {
            for ky in 0..k {
                for kx in 0..k {
                    out[o * k * k * c4 + (ky * k + kx) * c4 + i] = w[((o * s.in_c + i) * k + ky) * k + kx];
                }
            }
        }
    }
    out
}

fn params(s: &ConvShape, batch: usize, epilogue: u32) -> kernels::Conv {
    kernels::Conv::new(s, batch.next_multiple_of(4), epilogue)
}

/// `epilogues`, each with every activation where it takes one (none where it does not);
/// ReLU alone on the large batches, which test the loops' lengths, not the epilogue.
fn with_activations(epilogues: &[u32], batch: usize) -> Vec<(u32, Activation)> {
    let takes_one = |e: u32| e == EPILOGUE_BIAS_ACT || e == EPILOGUE_ACT_GRAD;
    epilogues
        .iter()
        .flat_map(|&e| {
            let acts = match (takes_one(e), batch < 100) {
                (false, _) => &ACTIVATIONS[..1],
                (true, true) => &ACTIVATIONS[1..],
                (true, false) => &ACTIVATIONS[1..2],
            };
            acts.iter().map(move |&a| (e, a))
        })
        .collect()
}

fn params_act(s: &ConvShape, batch: usize, epilogue: u32, act: Activation) -> kernels::Conv {
    kernels::Conv { act: act.code(), ..params(s, batch, epilogue) }
}

fn shapes() -> Vec<(usize, ConvShape)> {
    vec![
        (3, ConvShape::new(28, 28, 1, 32, 4, 2, 1)),
        (2, ConvShape::new(14, 14, 32, 64, 4, 2, 1)),
        (5, ConvShape::new(7, 6, 3, 5, 3, 1, 1)),
        (4, ConvShape::new(9, 11, 6, 8, 4, 2, 1)),
        (1, ConvShape::new(5, 5, 2, 3, 2, 2, 0)),
        // channels past one subgroup's lanes and one workgroup's columns, partly filled
        (2, ConvShape::new(6, 5, 40, 70, 3, 1, 1)),
        (3, ConvShape::new(9, 19, 20, 36, 4, 2, 1)),
        // input channels in whole subgroups (conv_subgroup.wgsl's backward_weight), odd sizes
        (3, ConvShape::new(6, 7, 32, 20, 3, 1, 1)),
        (9, ConvShape::new(5, 9, 64, 12, 4, 2, 1)),
        // one input channel (conv_subgroup.wgsl's _c1 kernels): more than 8 output texels,
        // fewer, stride 1 and 3, padding 0 and 2, widths that leave blocks part-filled
        (5, ConvShape::new(13, 11, 1, 40, 4, 1, 2)),
        (2, ConvShape::new(10, 9, 1, 6, 4, 2, 0)),
        (3, ConvShape::new(17, 15, 1, 12, 4, 3, 1)),
        // 2-4 input channels (ConvVariant::SplitC4): an RGB image's first layer, 4 channels
        // with stride 3 and padding 2
        (3, ConvShape::new(12, 10, 3, 12, 4, 2, 1)),
        (2, ConvShape::new(11, 9, 4, 6, 4, 3, 2)),
        // and more than 8 output texels, 2 channels, more pixels than a workgroup's 512
        (3, ConvShape::new(24, 22, 2, 40, 4, 1, 1)),
        // more images than a workgroup's 8 subgroups, one output texel
        (10, ConvShape::new(4, 8, 1, 4, 4, 2, 1)),
        // the convolutional VAE's first layer at its training batch; and sums over more
        // than llvmpipe's 65535 loop turns an invocation (conv_common.wgsl's row_sum16)
        (128, ConvShape::new(28, 28, 1, 32, 4, 2, 1)),
        (1100, ConvShape::new(8, 8, 32, 8, 4, 2, 1)),
    ]
}

/// (variant, batch, shape) for every shape each variant computes `entry` for; the
/// subgroup variant must get some of them wherever it exists.
fn cases(entry: &str) -> Vec<(ConvVariant, usize, ConvShape)> {
    let all: Vec<_> = variants()
        .into_iter()
        .flat_map(|v| shapes().into_iter().map(move |(b, s)| (v, b, s)))
        .filter(|(v, _, s)| match v {
            ConvVariant::Plain => true,
            ConvVariant::Subgroup => kernels::conv_subgroup_supports(entry, s),
            ConvVariant::SubgroupC1 => kernels::conv_c1_supports(s),
            ConvVariant::SplitC1 => entry == "conv2d_backward_input" && kernels::conv_c1_supports(s),
            ConvVariant::SplitC4 => entry == "conv2d_backward_input" && kernels::conv_c4_supports(entry, s),
            ConvVariant::SubgroupC4 => entry == "conv2d_forward" && kernels::conv_c4_supports(entry, s),
            ConvVariant::Wide => true,
        })
        .collect();
    if k().subgroup.is_some() {
        for v in [ConvVariant::Subgroup, ConvVariant::SubgroupC1] {
            assert!(all.iter().filter(|c| c.0 == v).count() >= 2, "{entry}: too few {v:?} cases");
        }
        if entry == "conv2d_backward_input" {
            for v in [ConvVariant::SplitC1, ConvVariant::SplitC4] {
                assert!(all.iter().filter(|c| c.0 == v).count() >= 3, "too few {v:?} cases");
            }
        }
        if entry == "conv2d_forward" {
            assert!(all.iter().filter(|c| c.0 == ConvVariant::SubgroupC4).count() >= 2, "too few SubgroupC4 cases");
        }
    }
    all
}

/// The variants this adapter runs; on lavapipe (8- or 16-lane subgroups) that must include
/// conv_subgroup.wgsl, so CI cannot silently test only one.
fn variants() -> Vec<ConvVariant> {
    if gpu().is_llvmpipe() && matches!(gpu().info.subgroup_max_size, 8 | 16) {
        assert!(k().subgroup.is_some(), "lavapipe with 8- or 16-lane subgroups should run conv_subgroup.wgsl");
    }
    // every adapter runs the _wide kernels (GPUs by default, CPUs when asked)
    let mut v = vec![ConvVariant::Plain, ConvVariant::Wide];
    if k().subgroup.is_some() {
        v.push(ConvVariant::Subgroup);
        v.push(ConvVariant::SubgroupC1);
        v.push(ConvVariant::SplitC1);
        v.push(ConvVariant::SplitC4);
        v.push(ConvVariant::SubgroupC4);
    }
    v
}

fn texels(s_pixels: usize, c: usize) -> usize {
    s_pixels * c.div_ceil(4) * 4
}

#[test]
fn conv2d_forward_matches_reference() {
    let g = gpu();
    for (variant, batch, s) in cases("conv2d_forward") {
        {
            let epilogues = [EPILOGUE_NONE, EPILOGUE_BIAS, EPILOGUE_BIAS_ACT, EPILOGUE_ACT_GRAD];
            for (epilogue, act) in with_activations(&epilogues, batch) {
                let x = random(batch * s.in_h * s.in_w * s.in_c, 1, -1.0, 1.0);
                let w = random(s.out_c * s.in_c * s.kernel * s.kernel, 2, -0.5, 0.5);
                let b = random(s.out_c, 3, -0.5, 0.5);
                // EPILOGUE_ACT_GRAD's mask is laid out as the output: an activation's output
                let mask = r::activation_forward(&random(batch * s.out_h * s.out_w * s.out_c, 8, -2.0, 2.0), act);
                let xm = g.matrix("x", batch, texels(s.in_h * s.in_w, s.in_c)).unwrap();
                let wm = g.matrix("w", s.out_c, s.kernel * s.kernel * s.in_c.div_ceil(4) * 4).unwrap();
                let ym = common::output("y", batch, texels(s.out_h * s.out_w, s.out_c));
                let mm = g.matrix("mask", batch, texels(s.out_h * s.out_w, s.out_c)).unwrap();
                g.write_matrix(&xm, &pad_channels(&x, s.in_c));
                g.write_matrix(&wm, &weight_rows(&w, &s));
                g.write_matrix(&mm, &pad_channels(&mask, s.out_c));
                let flat = g.buffer_with("params", bytemuck::cast_slice(&b)).unwrap();
                let u = g.uniform("conv", &params_act(&s, batch, epilogue, act));
                let binds =
                    [(0, B(&u)), (1, T(&xm.view)), (2, T(&wm.view)), (3, T(&mm.view)), (4, T(&ym.view)), (5, B(&flat))];
                let m = batch.next_multiple_of(4);
                let d = kernels::conv_dispatch(g, k(), "conv2d_forward", variant, "test", &binds, &s, m);
                kernels::run(g, &d.dispatches).unwrap();
                let got =
                    unpad_channels(&g.read_matrix(&ym).unwrap()[..batch * texels(s.out_h * s.out_w, s.out_c)], s.out_c);
                let zero = vec![0.0; s.out_c];
                let bias = if epilogue == EPILOGUE_BIAS || epilogue == EPILOGUE_BIAS_ACT { &b } else { &zero };
                let forward_act = if epilogue == EPILOGUE_BIAS_ACT { act } else { Activation::Identity };
                let mut want = r::conv2d_forward(&x, &w, bias, batch, &s, forward_act);
                if epilogue == EPILOGUE_ACT_GRAD {
                    // a transposed convolution's backward-input pass through an activation
                    for (v, &m) in want.iter_mut().zip(&mask) {
                        *v *= r::act_grad(m, act);
                    }
                }
                let what =
                    format!("conv2d_forward {variant:?} {s:?} batch {batch} epilogue {epilogue} act {}", act.name());
                assert_close(&what, &got, &want, 1e-4, 1e-4);
            }
        }
    }
}

#[test]
fn conv2d_backward_input_matches_reference() {
    let g = gpu();
    for (variant, batch, s) in cases("conv2d_backward_input") {
        for (epilogue, act) in with_activations(&[EPILOGUE_NONE, EPILOGUE_ACT_GRAD, EPILOGUE_BIAS_ACT], batch) {
            let dy = random(batch * s.out_h * s.out_w * s.out_c, 4, -1.0, 1.0);
            let w = random(s.out_c * s.in_c * s.kernel * s.kernel, 5, -0.5, 0.5);
            let x = r::activation_forward(&random(batch * s.in_h * s.in_w * s.in_c, 6, -2.0, 2.0), act);
            let b = random(s.in_c, 7, -0.5, 0.5);
            let dym = g.matrix("dy", batch, texels(s.out_h * s.out_w, s.out_c)).unwrap();
            let wm = g.matrix("w", s.out_c, s.kernel * s.kernel * s.in_c.div_ceil(4) * 4).unwrap();
            let xm = g.matrix("x", batch, texels(s.in_h * s.in_w, s.in_c)).unwrap();
            let dxm = common::output("dx", batch, texels(s.in_h * s.in_w, s.in_c));
            g.write_matrix(&dym, &pad_channels(&dy, s.out_c));
            g.write_matrix(&wm, &weight_rows(&w, &s));
            g.write_matrix(&xm, &pad_channels(&x, s.in_c));
            let flat = g.buffer_with("params", bytemuck::cast_slice(&b)).unwrap();
            let u = g.uniform("conv", &params_act(&s, batch, epilogue, act));
            let binds =
                [(0, B(&u)), (1, T(&dym.view)), (2, T(&wm.view)), (3, T(&xm.view)), (4, T(&dxm.view)), (5, B(&flat))];
            let m = batch.next_multiple_of(4);
            let d = kernels::conv_dispatch(g, k(), "conv2d_backward_input", variant, "test", &binds, &s, m);
            // SplitC1 and SplitC4 must really split here (they fall back to one kernel only
            // for images whose taps do not fit a texture)
            let split = match variant {
                ConvVariant::SplitC1 => 3,
                ConvVariant::SplitC4 => 2,
                _ => 1,
            };
            assert_eq!(d.dispatches.len(), split, "dispatches of {variant:?} for {s:?}");
            kernels::run(g, &d.dispatches).unwrap();
            let got = unpad_channels(&g.read_matrix(&dxm).unwrap()[..batch * texels(s.in_h * s.in_w, s.in_c)], s.in_c);
            let through = (epilogue == EPILOGUE_ACT_GRAD).then_some((&x[..], act));
            let mut want = r::conv2d_backward_input(&dy, &w, through, batch, &s);
            if epilogue == EPILOGUE_BIAS_ACT {
                // a transposed convolution's forward pass: + bias per input channel, then the activation
                for (j, v) in want.iter_mut().enumerate() {
                    *v = r::activate(*v + b[j % s.in_c], act);
                }
            }
            assert_close(
                &format!(
                    "conv2d_backward_input {variant:?} {s:?} batch {batch} epilogue {epilogue} act {}",
                    act.name()
                ),
                &got,
                &want,
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn taps_and_col2im_references_make_the_backward_input() {
    // conv2d_col2im_c1 of the 1x1 convolution of dOut by conv2d_taps_c1's weights is
    // conv2d_backward_input of a 1-channel input (the references of the split path)
    for (batch, s) in shapes().into_iter().filter(|(_, s)| s.in_c == 1) {
        let dy = random(batch * s.out_h * s.out_w * s.out_c, 4, -1.0, 1.0);
        let w = random(s.out_c * s.kernel * s.kernel, 5, -0.5, 0.5);
        let taps = s.kernel * s.kernel;
        let wt = r::conv2d_taps_c1(&w, &s);
        let t: Vec<f32> = dy
            .chunks(s.out_c)
            .flat_map(|px| {
                (0..taps)
                    .map(|j| (0..s.out_c).map(|o| px[o] as f64 * wt[j * s.out_c + o] as f64).sum::<f64>() as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_close(
            &format!("col2im of the taps {s:?}"),
            &r::conv2d_col2im_c1(&t, batch, &s),
            &r::conv2d_backward_input(&dy, &w, None, batch, &s),
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn col2im_c4_reference_makes_the_backward_input() {
    // conv2d_col2im_c4 of the taps t[.., tap, c] = sum over o of dOut[.., o] W[o, c, tap] is
    // conv2d_backward_input of a 2-4-channel input (the reference of ConvVariant::SplitC4)
    for (batch, s) in shapes().into_iter().filter(|(_, s)| (2..=4).contains(&s.in_c)) {
        let dy = random(batch * s.out_h * s.out_w * s.out_c, 4, -1.0, 1.0);
        let w = random(s.out_c * s.in_c * s.kernel * s.kernel, 5, -0.5, 0.5);
        let taps = s.kernel * s.kernel;
        let t: Vec<f32> = dy
            .chunks(s.out_c)
            .flat_map(|px| {
                (0..taps * s.in_c)
                    .map(|j| {
                        let (tap, c) = (j / s.in_c, j % s.in_c);
                        (0..s.out_c).map(|o| px[o] as f64 * w[(o * s.in_c + c) * taps + tap] as f64).sum::<f64>() as f32
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_close(
            &format!("col2im_c4 of the taps {s:?}"),
            &r::conv2d_col2im_c4(&t, batch, &s),
            &r::conv2d_backward_input(&dy, &w, None, batch, &s),
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn taps_and_col2im_kernels_match_reference() {
    // the split path's two conv.wgsl kernels on their own
    let g = gpu();
    for (batch, s) in shapes().into_iter().filter(|(_, s)| kernels::conv_c1_supports(s)) {
        let taps = s.kernel * s.kernel;
        let w = random(s.out_c * taps, 5, -0.5, 0.5);
        let wm = g.matrix("w", s.out_c, taps * 4).unwrap();
        g.write_matrix(&wm, &weight_rows(&w, &s));
        let wtm = common::output("taps weights", taps, s.out_c);
        let u = g.uniform("conv", &params(&s, batch, EPILOGUE_NONE));
        let relayout = kernels::Dispatch::new(
            g,
            "conv2d_taps_c1",
            &k().conv2d_taps_c1,
            &[(0, B(&u)), (2, T(&wm.view)), (4, T(&wtm.view))],
            taps * s.out_c.div_ceil(4),
            64,
        );
        kernels::run(g, &[relayout]).unwrap();
        let got: Vec<f32> = g.read_matrix(&wtm).unwrap()[..taps * s.out_c].to_vec();
        assert_close(&format!("conv2d_taps_c1 {s:?}"), &got, &r::conv2d_taps_c1(&w, &s), 0.0, 0.0);

        for (epilogue, act) in with_activations(&[EPILOGUE_NONE, EPILOGUE_BIAS_ACT], batch) {
            let t = random(batch * s.out_h * s.out_w * taps, 6, -1.0, 1.0);
            let b = random(1, 7, -0.5, 0.5);
            let tm = g.matrix("taps image", batch, s.out_h * s.out_w * taps).unwrap();
            g.write_matrix(&tm, &t);
            let dxm = common::output("dx", batch, texels(s.in_h * s.in_w, 1));
            let flat = g.buffer_with("params", bytemuck::cast_slice(&b)).unwrap();
            let u = g.uniform("conv", &params_act(&s, batch, epilogue, act));
            let col2im = kernels::Dispatch::new(
                g,
                "conv2d_col2im_c1",
                &k().conv2d_col2im_c1,
                &[(0, B(&u)), (1, T(&tm.view)), (3, T(&tm.view)), (4, T(&dxm.view)), (5, B(&flat))],
                batch.next_multiple_of(4) * s.in_h * s.in_w,
                64,
            );
            kernels::run(g, &[col2im]).unwrap();
            let got = unpad_channels(&g.read_matrix(&dxm).unwrap()[..batch * texels(s.in_h * s.in_w, 1)], 1);
            let mut want = r::conv2d_col2im_c1(&t, batch, &s);
            if epilogue == EPILOGUE_BIAS_ACT {
                for v in want.iter_mut() {
                    *v = r::activate(*v + b[0], act);
                }
            }
            let what = format!("conv2d_col2im_c1 {s:?} epilogue {epilogue} act {}", act.name());
            assert_close(&what, &got, &want, 1e-5, 1e-5);
        }
    }
}

/// conv2d_backward_weight of `variant` on random dOut and x (seeds 8 and 9) into a
/// NaN-filled gradient buffer (what the kernel leaves out fails the comparison), beside
/// the reference: (dW got, dW wanted) in the reference's layout, and (db got, db wanted):
/// the output channels' bias, or the input side's sums where `bias_of` is 1 (a
/// transposed convolution's bias).
fn weight_gradient_case(
    variant: ConvVariant,
    batch: usize,
    s: &ConvShape,
    bias_of: u32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = gpu();
    let dy = random(batch * s.out_h * s.out_w * s.out_c, 8, -1.0, 1.0);
    let x = random(batch * s.in_h * s.in_w * s.in_c, 9, -1.0, 1.0);
    let dym = g.matrix("dy", batch, texels(s.out_h * s.out_w, s.out_c)).unwrap();
    let xm = g.matrix("x", batch, texels(s.in_h * s.in_w, s.in_c)).unwrap();
    g.write_matrix(&dym, &pad_channels(&dy, s.out_c));
    g.write_matrix(&xm, &pad_channels(&x, s.in_c));
    let c4 = s.in_c.div_ceil(4) * 4;
    let stride = (s.kernel * s.kernel * c4).next_multiple_of(64);
    let bias_at = s.out_c.next_multiple_of(4) * stride;
    let n = bias_at + s.out_c.max(s.in_c);
    let grads = g.buffer_with("grads", bytemuck::cast_slice(&vec![f32::NAN; n])).unwrap();
    let mut pr = params(s, batch, 0);
    pr.w_stride = stride as u32;
    pr.grad_b = bias_at as u32;
    pr.bias_of = bias_of;
    let u = g.uniform("conv", &pr);
    let binds = [(0, B(&u)), (1, T(&dym.view)), (2, T(&xm.view)), (6, B(&grads))];
    let m = batch.next_multiple_of(4);
    let d = kernels::conv_dispatch(g, k(), "conv2d_backward_weight", variant, "test", &binds, s, m);
    kernels::run(g, &d.dispatches).unwrap();
    let flat = g.read_f32(&grads, 0, n).unwrap();
    let (want_w, want_b) = r::conv2d_backward_weight(&dy, &x, batch, s);
    let k2 = s.kernel * s.kernel;
    let mut got_w = vec![0f32; want_w.len()];
    for o in 0..s.out_c {
        for i in 0..s.in_c {
            for t in 0..k2 {
                got_w[(o * s.in_c + i) * k2 + t] = flat[o * stride + t * c4 + i];
            }
        }
    }
    let want_b = match bias_of {
        0 => want_b,
        _ => (0..s.in_c).map(|i| x.iter().skip(i).step_by(s.in_c).sum()).collect(),
    };
    (got_w, want_w, flat[bias_at..bias_at + want_b.len()].to_vec(), want_b)
}

#[test]
fn conv2d_backward_weight_matches_reference() {
    for (variant, batch, s) in cases("conv2d_backward_weight") {
        for bias_of in [0u32, 1] {
            let (got_w, want_w, got_b, want_b) = weight_gradient_case(variant, batch, &s, bias_of);
            let what = format!("conv2d_backward_weight {variant:?} {s:?} batch {batch} bias_of {bias_of}");
            assert_close(&format!("{what} dW"), &got_w, &want_w, 1e-3, 1e-4);
            let db = if bias_of == 0 { "db" } else { "db (input side)" };
            assert_close(&format!("{what} {db}"), &got_b, &want_b, 1e-3, 1e-4);
        }
    }
}

/// The subgroup weight gradients at the largest batch `kernels::weight_loop_turns` lets
/// through on lavapipe: right to the last image, so the count covers every loop turn of an
/// invocation (llvmpipe cuts them short past 65535, and the last turns are the writes).
/// The MNIST model's 1-channel layer, a 32-channel one whose loops are the 32/64-channel
/// layers' (the channel counts do not change the turns), and the plain kernel's.
#[test]
fn weight_gradients_are_right_at_the_largest_batch_allowed() {
    if !gpu().is_llvmpipe() {
        // the limit is llvmpipe's
        return;
    }
    let cases = [
        (ConvVariant::SubgroupC1, ConvShape::new(28, 28, 1, 32, 4, 2, 1)),
        (ConvVariant::Subgroup, ConvShape::new(14, 14, 32, 4, 4, 2, 1)),
        (ConvVariant::Plain, ConvShape::new(12, 12, 3, 4, 4, 2, 1)),
        // one texel a pixel: a tap a lane
        (ConvVariant::Subgroup, ConvShape::new(12, 12, 3, 4, 4, 2, 1)),
    ];
    for (variant, s) in cases {
        for bias_of in [0u32, 1] {
            let fits = |rows: usize| {
                kernels::weight_loop_turns(variant, &s, rows, bias_of == 1) <= kernels::LLVMPIPE_LOOP_TURNS
            };
            let batch = (4..100_000).step_by(4).take_while(|&b| fits(b)).last().unwrap();
            assert!(!fits(batch + 4) && batch > 500, "{variant:?}: largest batch {batch}");
            let (got_w, want_w, got_b, want_b) = weight_gradient_case(variant, batch, &s, bias_of);
            let what = format!("conv2d_backward_weight {variant:?} {s:?} at batch {batch}, bias_of {bias_of}");
            assert_close(&format!("{what} dW"), &got_w, &want_w, 1e-2, 1e-3);
            assert_close(&format!("{what} db"), &got_b, &want_b, 1e-1, 1e-3);
        }
    }
}

#[test]
fn conv_kernels_pass_at_the_other_vector_width() {
    common::rerun_at_other_vector_width("conv_kernels_pass_at_the_other_vector_width");
}

#[test]
fn elbo_taps_matches_reference() {
    // the training step's loss reading a one-channel transposed convolution's taps image
    // (in place of conv2d_col2im_c1 and elbo_forward_backward): even, odd and non-square
    // images, a padding row, and the masked likelihood of restoration
    let g = gpu();
    let lat = 3;
    for (batch, live, h, w) in [(3usize, 3u32, 28usize, 28usize), (5, 4, 6, 10), (4, 2, 7, 9)] {
        let s = ConvShape::new(h, w, 1, 5, 4, 2, 1);
        let m = batch.next_multiple_of(4);
        let lay = elbo::model::LossLayout {
            pixels: h * w,
            channels: 1,
            x_cp: 4,
            o_cp: 4,
            o_cols: h * w * 4,
            halves: false,
            gaussian: false,
        };
        let taps = random(m * s.out_h * s.out_w * 16, 21, -3.0, 3.0);
        let x: Vec<f32> = pad_channels(&random(m * h * w, 22, 0.0, 1.0), 1);
        let observed: Vec<f32> = (0..m * h * w * 4).map(|i| ((i / 4) % 3 != 0) as u32 as f32).collect();
        let mulv = random(m * 2 * lat, 23, -2.0, 2.0);
        let mut flat = random(8, 24, -0.5, 0.5);
        flat[5] = 0.37;
        let (tm, xm, om, mv) = (
            g.matrix("taps image", m, s.out_h * s.out_w * 16).unwrap(),
            g.matrix("x", m, h * w * 4).unwrap(),
            g.matrix("observed", m, h * w * 4).unwrap(),
            g.matrix("mulv", m, 2 * lat).unwrap(),
        );
        g.write_matrix(&tm, &taps);
        g.write_matrix(&xm, &x);
        g.write_matrix(&om, &observed);
        g.write_matrix(&mv, &mulv);
        let params = g.buffer_with("params", bytemuck::cast_slice(&flat)).unwrap();
        let st = elbo::kernels::Step { rows: live, inv_rows: 1.0 / live as f32, beta: 0.7, ..Default::default() };
        let su = g.uniform("step", &st);
        let tu = g.uniform("taps", &kernels::Taps::new(&s, 5));
        for masked in [false, true] {
            let eu = g.uniform("elbo", &kernels::Elbo::new(m, lat, &lay, masked));
            let dm = common::output("d_out", m, lay.o_cols);
            let nan = vec![f32::NAN; 2 * m];
            let image_loss = g.buffer_with("image_loss", bytemuck::cast_slice(&nan)).unwrap();
            let binds = [
                (0, B(&eu)),
                (1, B(&su)),
                (3, T(&xm.view)),
                (4, T(&mv.view)),
                (5, T(&dm.view)),
                (6, B(&image_loss)),
                (7, T(&om.view)),
                (8, B(&tu)),
                (9, T(&tm.view)),
                (10, B(&params)),
            ];
            let d =
                kernels::Dispatch::new(g, "elbo_forward_backward_taps", &k().elbo_forward_backward_taps, &binds, m, 64);
            kernels::run(g, &[d]).unwrap();
            let (want_d, want_l) = r::elbo_forward_backward_taps(
                &taps,
                0.37,
                &s,
                &x,
                &mulv,
                masked.then_some(&observed[..]),
                m,
                &lay,
                lat,
                &st,
            );
            let what = format!("elbo_forward_backward_taps {h}x{w} batch {batch} live {live} masked {masked}");
            assert_close(&format!("{what} d_out"), &g.read_matrix(&dm).unwrap(), &want_d, 1e-6, 1e-4);
            let want_flat: Vec<f32> = want_l.iter().flatten().copied().collect();
            assert_close(
                &format!("{what} image_loss"),
                &g.read_f32(&image_loss, 0, 2 * m).unwrap(),
                &want_flat,
                1e-3,
                1e-5,
            );
        }
    }
}
