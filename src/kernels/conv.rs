//! The convolution kernels (conv.wgsl, conv_subgroup.wgsl): their uniform, the
//! variant each pass runs for a shape, and the dispatches of one pass.

use super::{Bind, Dispatch, Kernels};
use crate::gpu::Gpu;
use crate::model::ConvShape;
use bytemuck::{Pod, Zeroable};

/// conv.wgsl epilogues.
pub const EPILOGUE_NONE: u32 = 0;

pub const EPILOGUE_BIAS: u32 = 1;

/// + bias, then the activation `Conv::act`.
pub const EPILOGUE_BIAS_ACT: u32 = 2;

/// Times the derivative of activation `Conv::act` at the mask (an activation's output).
pub const EPILOGUE_ACT_GRAD: u32 = 3;

/// `Conv` of conv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Conv {
    pub batch: u32,
    pub in_w: u32,
    pub in_h: u32,
    pub in_c: u32,
    pub out_w: u32,
    pub out_h: u32,
    pub out_c: u32,
    pub kernel: u32,
    pub stride: u32,
    pub pad: u32,
    pub epilogue: u32,
    pub bias: u32,
    pub grad_w: u32,
    pub w_stride: u32,
    pub grad_b: u32,
    pub bias_of: u32,
    /// The activation of the epilogue (`Activation::code`).
    pub act: u32,
    pub pad_end: [u32; 3],
}

impl Conv {
    /// The geometry of `s` for `batch` rows (a multiple of 4) with `epilogue`; the
    /// offsets into the flat buffers are left at 0 for the caller to set.
    pub fn new(s: &ConvShape, batch: usize, epilogue: u32) -> Conv {
        Conv {
            batch: batch as u32,
            in_w: s.in_w as u32,
            in_h: s.in_h as u32,
            in_c: s.in_c as u32,
            out_w: s.out_w as u32,
            out_h: s.out_h as u32,
            out_c: s.out_c as u32,
            kernel: s.kernel as u32,
            stride: s.stride as u32,
            pad: s.pad as u32,
            epilogue,
            ..Default::default()
        }
    }
}

/// Invocations of a conv.wgsl entry point for `batch` rows of images of geometry `s`.
pub fn conv_invocations(entry: &str, s: &ConvShape, batch: usize) -> usize {
    let (c4_in, c4_out) = (s.in_c.div_ceil(4), s.out_c.div_ceil(4));
    match entry {
        "conv2d_forward" => batch * s.out_h * s.out_w.div_ceil(4) * c4_out,
        "conv2d_backward_input" => batch * s.in_h * s.in_w.div_ceil(4 * s.stride) * s.stride * c4_in,
        "conv2d_backward_weight" => c4_out * s.kernel * s.kernel * c4_in,
        _ => panic!("{entry} is not a conv.wgsl entry point"),
    }
}

/// Which implementation runs a convolution pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVariant {
    /// conv.wgsl: one invocation per block of outputs.
    Plain,
    /// conv_subgroup.wgsl: implicit GEMM sharing operands by subgroupBroadcast.
    Subgroup,
    /// conv_subgroup.wgsl's `_c1_subgroup` kernels for a 1-channel input and a 4x4 kernel.
    SubgroupC1,
    /// backward_input of a 1-channel input and a 4x4 kernel in three dispatches: conv.wgsl's
    /// conv2d_taps_c1 and conv2d_col2im_c1 around a 1x1 conv2d_forward_subgroup (conv.wgsl
    /// says how); SubgroupC1's kernel where the taps image would not fit a texture.
    SplitC1,
    /// backward_input into 2-4 channels (one texel a pixel) in two dispatches: the
    /// backward-input pass of a 1x1 conv2d_backward_input_subgroup to the taps image, then
    /// conv.wgsl's conv2d_col2im_c4 (conv.wgsl says how); Plain where the taps image would
    /// not fit a texture.
    SplitC4,
    /// conv_subgroup.wgsl's conv2d_forward_c4_subgroup: the forward pass of an input of 2-4
    /// channels with a 4x4 kernel.
    SubgroupC4,
    /// conv.wgsl's `_wide` kernels: lanes of a workgroup share each block's sum.
    Wide,
}

/// Whether conv_subgroup.wgsl computes `entry` for geometry `s`. Its backward_weight
/// gives each lane a column (tap, input-channel texel) of dW and loops over the output
/// pixels its subgroup's taps reach: it takes input channels in whole subgroups (c4_in a
/// multiple of 8, one or two taps a subgroup), or one texel a pixel (in_c <= 4: a tap a
/// lane, 8 taps a subgroup, whose pixels differ only at the borders). Lavapipe, 64x64 RGB
/// at batch 64, the 3-channel layers' weight gradients: 18-19 ms against 43-48 ms in
/// conv.wgsl (elbo profile --model rgb64).
pub fn conv_subgroup_supports(entry: &str, s: &ConvShape) -> bool {
    match entry {
        "conv2d_forward" | "conv2d_backward_input" => true,
        "conv2d_backward_weight" => s.in_c.div_ceil(4).is_multiple_of(8) || s.in_c <= 4,
        _ => false,
    }
}

/// Whether conv_subgroup.wgsl's `_c1_subgroup` kernels compute geometry `s`: a 1-channel
/// input and a 4x4 kernel.
pub fn conv_c1_supports(s: &ConvShape) -> bool {
    s.in_c == 1 && s.kernel == 4
}

/// Whether the kernels for an input side of 2-4 channels (one texel a pixel) compute
/// `entry` of geometry `s`: ConvVariant::SplitC4's backward_input for a kernel of at
/// least 2x2 (so that the 1x1 convolution's k * k channel texels fill half a subgroup),
/// ConvVariant::SubgroupC4's forward for a 4x4 kernel.
pub fn conv_c4_supports(entry: &str, s: &ConvShape) -> bool {
    let kernel = match entry {
        "conv2d_backward_input" => s.kernel >= 2,
        "conv2d_forward" => s.kernel == 4,
        _ => false,
    };
    (2..=4).contains(&s.in_c) && kernel
}

/// The variant to run `entry` of geometry `s` with. On adapters with 8- or 16-lane subgroups,
/// a 1-channel input with a 4x4 kernel takes the `_c1_subgroup` kernels (lavapipe,
/// batch 128: 1.2-5 ms a pass against 5.6-17 ms for the others); otherwise the
/// subgroup kernels where they support the shape and (for backward_input) the
/// input channels fill at least half of a subgroup's lanes. Measured on lavapipe at
/// batch 128 (GFLOP/s, subgroup against conv.wgsl): forward 14x14x32 -> 7x7x64 55
/// against 22, 28x28x1 -> 14x14x32 equal; backward_input 14x14x32 <- 7x7x64 45
/// against 11, but 28x28x1 <- 14x14x32 1.1 against 1.4 (one lane in eight busy);
/// backward_weight 14x14x32 -> 7x7x64 about 45 against 15.
/// Elsewhere GPUs (`Kernels::wide_reductions`) run the `_wide` variants where the split
/// sum fills their 8 lanes: on an H100 at batch 128 that took the 32- and 64-channel
/// forward passes from 170 to 96 us, backward_input from 236 to 120 us and the
/// 1-channel one (the decoder's output layer) from 193 to 71 us; backward_weight from
/// 1.4-18 ms to 64-143 us.
pub fn conv_variant(k: &Kernels, entry: &str, s: &ConvShape) -> ConvVariant {
    let worth = entry != "conv2d_backward_input" || s.in_c.div_ceil(4) >= 4;
    // the channel texels a _wide lane group splits
    let split = match entry {
        "conv2d_forward" => s.in_c.div_ceil(4),
        "conv2d_backward_input" => s.out_c.div_ceil(4),
        _ => usize::MAX,
    };
    if k.subgroup.is_some() && conv_c1_supports(s) {
        // lavapipe, the decoder's last layer at batch 128: backward_input 2.7 ms split,
        // 5.1 ms as one _c1 kernel, which fetches each dOut texel once per tap and pixel
        if entry == "conv2d_backward_input" {
            ConvVariant::SplitC1
        } else {
            ConvVariant::SubgroupC1
        }
    } else if k.subgroup.is_some() && entry == "conv2d_forward" && conv_c4_supports(entry, s) {
        // lavapipe, the 64x64 RGB encoder's first layer (3 -> 32 channels) at batch 64:
        // 14 ms against 36 ms in conv2d_forward_subgroup (elbo profile --model rgb64)
        ConvVariant::SubgroupC4
    } else if k.subgroup.is_some() && entry == "conv2d_backward_input" && conv_c4_supports(entry, s) {
        // lavapipe, the 64x64 RGB decoder's last layer (32 -> 3 channels) at batch 64:
        // 86 ms split (54 the 1x1 convolution, 32 the col2im) against 129 ms in conv.wgsl's
        // one kernel (elbo profile --model rgb64, a busy host)
        ConvVariant::SplitC4
    } else if k.subgroup.is_some() && conv_subgroup_supports(entry, s) && worth {
        ConvVariant::Subgroup
    } else if k.wide_reductions && split >= 8 {
        ConvVariant::Wide
    } else {
        ConvVariant::Plain
    }
}

/// The dispatches of one convolution pass, in order; `main` is the one that does the
/// multiply-adds (the profiler's cost goes there).
pub struct ConvPass {
    pub dispatches: Vec<Dispatch>,
    pub main: usize,
    /// ConvVariant::SplitC1: the taps image that its last dispatch (conv2d_col2im_c1) sums.
    pub taps: Option<crate::gpu::Matrix>,
}

/// The dispatches of conv.wgsl's `entry` in `variant` for `batch` rows of images of
/// geometry `s`; `binds` as conv.wgsl's. The labels get the variant's names.
#[allow(clippy::too_many_arguments)]
pub fn conv_dispatch(
    gpu: &Gpu,
    k: &Kernels,
    entry: &'static str,
    variant: ConvVariant,
    label: &str,
    binds: &[(u32, Bind)],
    s: &ConvShape,
    batch: usize,
) -> ConvPass {
    if variant == ConvVariant::SplitC1 {
        assert!(entry == "conv2d_backward_input" && conv_c1_supports(s), "no split {entry} for {s:?}");
        if let Some((dispatches, taps)) = split_c1(gpu, k, label, binds, s, batch) {
            return ConvPass { dispatches, main: 1, taps: Some(taps) };
        }
        return conv_dispatch(gpu, k, entry, ConvVariant::SubgroupC1, label, binds, s, batch);
    }
    if variant == ConvVariant::SplitC4 {
        assert!(entry == "conv2d_backward_input" && conv_c4_supports(entry, s), "no split {entry} for {s:?}");
        if let Some(dispatches) = split_c4(gpu, k, label, binds, s, batch) {
            return ConvPass { dispatches, main: 0, taps: None };
        }
        return conv_dispatch(gpu, k, entry, ConvVariant::Plain, label, binds, s, batch);
    }
    ConvPass { dispatches: vec![conv_single(gpu, k, entry, variant, label, binds, s, batch)], main: 0, taps: None }
}

/// llvmpipe (Mesa 22.3) ends every loop of a shader invocation once their turns add up to
/// this, and loops after that run once: the results come out wrong.
pub const LLVMPIPE_LOOP_TURNS: usize = 65535;

/// At most the loop turns of one invocation of the weight gradient of geometry `s` over
/// `rows` images in `variant` (of a transposed convolution where `transposed`), on the
/// kernels llvmpipe runs (its limit: LLVMPIPE_LOOP_TURNS); zero for the variants GPUs run.
pub fn weight_loop_turns(variant: ConvVariant, s: &ConvShape, rows: usize, transposed: bool) -> usize {
    // a transposed convolution's bias in conv_subgroup.wgsl: the input side's sum over the
    // whole image, 16 texels a turn
    let image_sum = if transposed { rows * (1 + (s.in_h * s.in_w).div_ceil(16)) } else { 0 };
    match variant {
        // a subgroup's images (every 8th) by the output pixels; the 1-channel side's sum
        // (counted for every layer: without it, the skipped branch still cost 100-330
        // turns); the sum of the 8 subgroups' 9 texels and the writes of 8 taps by 4
        // channels. llvmpipe counts each pass through a loop's end, the one that leaves it
        // too. tests/conv.rs runs the largest batch this lets through.
        ConvVariant::SubgroupC1 | ConvVariant::SplitC1 => {
            let images = rows.div_ceil(8);
            let main = 1 + images * (2 + s.out_h * (s.out_w + 2));
            let bias = 1 + images * (2 + (s.in_h * s.in_w).div_ceil(8));
            main + bias + (8 + 7 * 10) + (5 + 4 * 9)
        }
        // the images (8 a turn) under each output pixel; the bias sums (each image's pass
        // through the outer loop too: without it a 3-channel layer, where they are most of
        // the turns, came out wrong at the batch allowed); the input sum; the writes (4
        // subgroup sums, 16 biases, 16 output channels by 4: 128 in all)
        ConvVariant::Subgroup => {
            s.out_h * (1 + (s.out_w + 1) * (1 + rows.div_ceil(8)))
                + 1
                + rows * (2 + (s.out_h * s.out_w).div_ceil(8))
                + image_sum
                + 128
        }
        // weight_sums: every image and output row, 4 columns a turn; input_sum (counted for
        // every layer, as the 1-channel one); the writes. Each loop's leaving pass counts,
        // and llvmpipe ran about two turns an image more than that with the bias sum
        // (12x12x3 -> 6x6x4: wrong from 980-1000 images on, where it counted 64 an image):
        // four an image are added.
        ConvVariant::Plain => {
            let sums = (rows + 1) + rows * (s.out_h + 1) + rows * s.out_h * (s.out_w.div_ceil(4) + 1);
            let input = (rows + 1) + rows * (s.in_h + 1) + rows * s.in_h * (s.in_w.div_ceil(16) + 1);
            sums + input + 4 * rows + 64
        }
        ConvVariant::Wide => 0,
        ConvVariant::SplitC4 | ConvVariant::SubgroupC4 => panic!("{variant:?} computes no weight gradient"),
    }
}

/// One dispatch of `entry` in `variant` (every variant but SplitC1).
#[allow(clippy::too_many_arguments)]
fn conv_single(
    gpu: &Gpu,
    k: &Kernels,
    entry: &'static str,
    variant: ConvVariant,
    label: &str,
    binds: &[(u32, Bind)],
    s: &ConvShape,
    batch: usize,
) -> Dispatch {
    let g = |x: usize| x.max(1) as u32;
    assert!(
        variant != ConvVariant::Subgroup || conv_subgroup_supports(entry, s),
        "conv_subgroup.wgsl does not compute {entry} for {s:?}"
    );
    assert!(variant != ConvVariant::SubgroupC1 || conv_c1_supports(s), "no _c1_subgroup kernel for {s:?}");
    match (variant, &k.subgroup, entry) {
        (ConvVariant::Subgroup, Some(sg), "conv2d_forward") => {
            // 4 LANES output channels a workgroup: the 16-lane build where they fill 3/4 of its 64
            // (32 rows a workgroup; the 32-column kernel takes 32 a half-subgroup)
            let (pipeline, cols, rows) = match &sg.conv2d_forward_subgroup16 {
                Some(p16) if s.out_c > 40 => (p16, 64, 32),
                _ => (&sg.conv2d_forward_subgroup, 32, 32 * sg.lanes as usize / 8),
            };
            let groups = [g(s.out_c.div_ceil(cols)), g((batch * s.out_h * s.out_w).div_ceil(rows)), 1];
            Dispatch::with_groups(gpu, format!("conv2d_forward_subgroup {label}"), pipeline, binds, groups)
        }
        (ConvVariant::Subgroup, Some(sg), "conv2d_backward_input") => {
            // a subgroup per block of 8 pixels of one row, in 4 images per 8 lanes
            let images = 4 * sg.lanes as usize / 8;
            let blocks = batch.div_ceil(images) * s.in_h * s.stride * s.in_w.div_ceil(8 * s.stride);
            let groups = [g(s.in_c.div_ceil(4).div_ceil(8)), g(blocks), 1];
            let pipeline = &sg.conv2d_backward_input_subgroup;
            Dispatch::with_groups(gpu, format!("conv2d_backward_input_subgroup {label}"), pipeline, binds, groups)
        }
        (ConvVariant::Subgroup, Some(sg), "conv2d_backward_weight") => {
            // LANES columns (tap, input-channel texel) of dW by 16 output channels a workgroup
            let lanes = sg.lanes as usize;
            let groups = [g((s.kernel * s.kernel * s.in_c.div_ceil(4)).div_ceil(lanes)), g(s.out_c.div_ceil(16)), 1];
            let pipeline = &sg.conv2d_backward_weight_subgroup;
            Dispatch::with_groups(gpu, format!("conv2d_backward_weight_subgroup {label}"), pipeline, binds, groups)
        }
        (ConvVariant::SubgroupC1, Some(sg), _) => {
            let c8 = g(s.out_c.div_ceil(4).div_ceil(8));
            let (pipeline, groups) = match entry {
                // 64 output pixels per subgroup, 8 subgroups per workgroup
                "conv2d_forward" => {
                    (&sg.conv2d_forward_c1_subgroup, [c8, g((batch * s.out_h * s.out_w).div_ceil(8 * 64)), 1])
                }
                // 8 blocks of 8 input pixels per workgroup
                "conv2d_backward_input" => {
                    let blocks = batch * s.in_h * s.stride * s.in_w.div_ceil(8 * s.stride);
                    (&sg.conv2d_backward_input_c1_subgroup, [1, g(blocks.div_ceil(8)), 1])
                }
                // one workgroup per two kernel rows
                "conv2d_backward_weight" => (&sg.conv2d_backward_weight_c1_subgroup, [c8, 2, 1]),
                _ => panic!("{entry} is not a conv.wgsl entry point"),
            };
            let name = format!("{}_c1_subgroup {label}", entry);
            Dispatch::with_groups(gpu, name, pipeline, binds, groups)
        }
        (ConvVariant::SubgroupC4, Some(sg), "conv2d_forward") => {
            assert!(conv_c4_supports(entry, s), "no conv2d_forward_c4_subgroup for {s:?}");
            // as conv2d_forward_c1_subgroup: 64 output pixels per subgroup, 8 subgroups per workgroup
            let groups = [g(s.out_c.div_ceil(4).div_ceil(8)), g((batch * s.out_h * s.out_w).div_ceil(8 * 64)), 1];
            let pipeline = &sg.conv2d_forward_c4_subgroup;
            Dispatch::with_groups(gpu, format!("conv2d_forward_c4_subgroup {label}"), pipeline, binds, groups)
        }
        (ConvVariant::Wide, _, _) => {
            // backward_weight: one workgroup per block of outputs; the others 8 blocks per workgroup
            let (pipeline, per_group) = match entry {
                "conv2d_forward" => (&k.conv2d_forward_wide, 8),
                "conv2d_backward_input" => (&k.conv2d_backward_input_wide, 8),
                "conv2d_backward_weight" => (&k.conv2d_backward_weight_wide, 1),
                _ => panic!("{entry} is not a conv.wgsl entry point"),
            };
            let blocks = conv_invocations(entry, s, batch);
            Dispatch::new(gpu, format!("{entry}_wide {label}"), pipeline, binds, blocks, per_group)
        }
        _ => {
            let pipeline = match entry {
                "conv2d_forward" => &k.conv2d_forward,
                "conv2d_backward_input" => &k.conv2d_backward_input,
                "conv2d_backward_weight" => &k.conv2d_backward_weight,
                _ => panic!("{entry} is not a conv.wgsl entry point"),
            };
            Dispatch::new(gpu, format!("{entry} {label}"), pipeline, binds, conv_invocations(entry, s, batch), 64)
        }
    }
}

/// ConvVariant::SplitC1's three dispatches and the taps image; the re-laid weights and
/// the taps image are made here and live in the dispatches' bind groups. None where the
/// adapter has no subgroup kernels or the taps image does not fit a texture.
fn split_c1(
    gpu: &Gpu,
    k: &Kernels,
    label: &str,
    binds: &[(u32, Bind)],
    s: &ConvShape,
    batch: usize,
) -> Option<(Vec<Dispatch>, crate::gpu::Matrix)> {
    use Bind::{Buffer as B, Texture as T};
    k.subgroup.as_ref()?;
    let taps = s.kernel * s.kernel;
    let t_shape = ConvShape {
        in_h: s.out_h,
        in_w: s.out_w,
        in_c: s.out_c,
        out_h: s.out_h,
        out_w: s.out_w,
        out_c: taps,
        kernel: 1,
        stride: 1,
        pad: 0,
    };
    let weights = gpu.matrix("taps weights", taps, s.out_c).ok()?;
    let image = gpu.matrix("taps image", batch, s.out_h * s.out_w * taps.next_multiple_of(4)).ok()?;
    use conv_slot::*;
    let slot = |i: u32| slot(binds, i);
    let u = gpu.uniform("taps convolution", &Conv::new(&t_shape, batch, EPILOGUE_NONE));
    let relayout = Dispatch::new(
        gpu,
        format!("conv2d_taps_c1 {label}"),
        &k.conv2d_taps_c1,
        &[(P, slot(P)), (RHS, slot(RHS)), (OUT, T(&weights.view))],
        taps * s.out_c.div_ceil(4),
        64,
    );
    let conv_binds = [
        (P, B(&u)),
        (LHS, slot(LHS)),
        (RHS, T(&weights.view)),
        (MASK, slot(LHS)),
        (OUT, T(&image.view)),
        (PARAMS, slot(PARAMS)),
    ];
    let taps_label = format!("{label} taps");
    let taps_conv =
        conv_single(gpu, k, "conv2d_forward", ConvVariant::Subgroup, &taps_label, &conv_binds, &t_shape, batch);
    let col2im = col2im_dispatch(gpu, ("conv2d_col2im_c1", &k.conv2d_col2im_c1), label, binds, &image, s, batch);
    Some((vec![relayout, taps_conv, col2im], image))
}

/// ConvVariant::SplitC4's two dispatches; the taps image is made here and lives in their
/// bind groups. None where the adapter has no subgroup kernels or the taps image does
/// not fit a texture.
fn split_c4(
    gpu: &Gpu,
    k: &Kernels,
    label: &str,
    binds: &[(u32, Bind)],
    s: &ConvShape,
    batch: usize,
) -> Option<Vec<Dispatch>> {
    use Bind::{Buffer as B, Texture as T};
    k.subgroup.as_ref()?;
    let taps = s.kernel * s.kernel;
    // the 1x1 convolution from the taps' k * k * 4 channels (the weights' texels as they
    // are) to the output's channels, at the output's pixels
    let t_shape = ConvShape {
        in_h: s.out_h,
        in_w: s.out_w,
        in_c: taps * 4,
        out_h: s.out_h,
        out_w: s.out_w,
        out_c: s.out_c,
        kernel: 1,
        stride: 1,
        pad: 0,
    };
    // a texel (4 columns) a tap
    let image = gpu.matrix("taps image", batch, s.out_h * s.out_w * taps * 4).ok()?;
    use conv_slot::*;
    let slot = |i: u32| slot(binds, i);
    let u = gpu.uniform("taps convolution", &Conv::new(&t_shape, batch, EPILOGUE_NONE));
    let conv_binds = [
        (P, B(&u)),
        (LHS, slot(LHS)),
        (RHS, slot(RHS)),
        (MASK, slot(LHS)),
        (OUT, T(&image.view)),
        (PARAMS, slot(PARAMS)),
    ];
    let taps_label = format!("{label} taps");
    let taps_conv =
        conv_single(gpu, k, "conv2d_backward_input", ConvVariant::Subgroup, &taps_label, &conv_binds, &t_shape, batch);
    let col2im = col2im_dispatch(gpu, ("conv2d_col2im_c4", &k.conv2d_col2im_c4), label, binds, &image, s, batch);
    Some(vec![taps_conv, col2im])
}

/// The binding of slot `i` in `binds` (conv.wgsl's).
fn slot<'a>(binds: &[(u32, Bind<'a>)], i: u32) -> Bind<'a> {
    binds.iter().find(|(b, _)| *b == i).map(|(_, v)| *v).expect("conv.wgsl's binding")
}

/// A split backward-input's last dispatch: `entry` (conv2d_col2im_c1 or _c4) sums the taps
/// `image` into the pass's output, with the uniform, mask and bias of `binds`.
fn col2im_dispatch(
    gpu: &Gpu,
    (entry, pipeline): (&str, &super::Kernel),
    label: &str,
    binds: &[(u32, Bind)],
    image: &crate::gpu::Matrix,
    s: &ConvShape,
    batch: usize,
) -> Dispatch {
    use conv_slot::*;
    let b = |i| slot(binds, i);
    let col2im_binds =
        [(P, b(P)), (LHS, Bind::Texture(&image.view)), (MASK, b(MASK)), (OUT, b(OUT)), (PARAMS, b(PARAMS))];
    Dispatch::new(gpu, format!("{entry} {label}"), pipeline, &col2im_binds, batch * s.in_h * s.in_w, 64)
}

/// conv_common.wgsl's binding slots: those of gemm.wgsl (`super::gemm::gemm_slot`), for the
/// same roles.
pub use super::gemm::gemm_slot as conv_slot;
