//! The WGSL kernels: their sources, the uniform structs they take (mirroring
//! the WGSL structs field by field), their pipelines, and the prebuilt
//! dispatch lists that a training step replays.

use crate::gpu::Gpu;
use anyhow::Result;
use bytemuck::{Pod, Zeroable};

pub const COMMON: &str = include_str!("../shaders/common.wgsl");

/// The files of shaders/ named, joined with newlines, in order.
macro_rules! shader_files {
    ($first:literal $(, $rest:literal)* $(,)?) => {
        concat!(include_str!(concat!("../shaders/", $first)) $(, "\n", include_str!(concat!("../shaders/", $rest)))*)
    };
}

/// Every kernel file, by name; each is compiled with `COMMON` in front, the convolution
/// files with conv_common.wgsl (their uniform, bindings and epilogue) too, the subgroup
/// files with the width's blocks (lanes8.wgsl, lanes16.wgsl) and subgroup_common.wgsl, the
/// Adam files with adam_common.wgsl, and the fused weight-gradient-and-Adam kernel after
/// gemm_subgroup.wgsl and its moments' storage (texels or buffers: `MomentStore`).
pub const SHADERS: &[(&str, &str)] = &[
    ("gemm.wgsl", shader_files!("gemm.wgsl")),
    (
        "gemm_subgroup.wgsl",
        shader_files!("lanes8.wgsl", "subgroup_common.wgsl", "gemm_subgroup.wgsl", "gemm_fused_subgroup.wgsl"),
    ),
    (
        "gemm_subgroup16.wgsl",
        shader_files!("lanes16.wgsl", "subgroup_common.wgsl", "gemm_subgroup.wgsl", "gemm_fused_subgroup.wgsl"),
    ),
    (
        "conv_subgroup.wgsl",
        shader_files!("conv_common.wgsl", "lanes8.wgsl", "subgroup_common.wgsl", "conv_subgroup.wgsl"),
    ),
    (
        "conv_subgroup16.wgsl",
        shader_files!("conv_common.wgsl", "lanes16.wgsl", "subgroup_common.wgsl", "conv_subgroup.wgsl"),
    ),
    ("conv.wgsl", shader_files!("conv_common.wgsl", "conv.wgsl")),
    ("classify.wgsl", shader_files!("classify.wgsl")),
    ("activation.wgsl", shader_files!("activation.wgsl")),
    ("reparam.wgsl", shader_files!("reparam.wgsl")),
    ("elbo.wgsl", shader_files!("elbo.wgsl")),
    ("adam.wgsl", shader_files!("adam_common.wgsl", "adam.wgsl")),
    ("adam_texel.wgsl", shader_files!("adam_common.wgsl", "adam_texel.wgsl")),
    (
        "gemm_adam_subgroup.wgsl",
        shader_files!(
            "lanes8.wgsl",
            "subgroup_common.wgsl",
            "gemm_subgroup.wgsl",
            "adam_common.wgsl",
            "gemm_adam_texels.wgsl",
            "gemm_adam_subgroup.wgsl"
        ),
    ),
    (
        "gemm_adam_subgroup16.wgsl",
        shader_files!(
            "lanes16.wgsl",
            "subgroup_common.wgsl",
            "gemm_subgroup.wgsl",
            "adam_common.wgsl",
            "gemm_adam_texels.wgsl",
            "gemm_adam_subgroup.wgsl"
        ),
    ),
    (
        "gemm_adam_buffers_subgroup.wgsl",
        shader_files!(
            "lanes8.wgsl",
            "subgroup_common.wgsl",
            "gemm_subgroup.wgsl",
            "adam_common.wgsl",
            "gemm_adam_buffers.wgsl",
            "gemm_adam_subgroup.wgsl"
        ),
    ),
    (
        "gemm_adam_buffers_subgroup16.wgsl",
        shader_files!(
            "lanes16.wgsl",
            "subgroup_common.wgsl",
            "gemm_subgroup.wgsl",
            "adam_common.wgsl",
            "gemm_adam_buffers.wgsl",
            "gemm_adam_subgroup.wgsl"
        ),
    ),
    ("gather.wgsl", shader_files!("gather.wgsl")),
    ("touch.wgsl", shader_files!("touch.wgsl")),
];

pub fn with_common(source: &str) -> String {
    format!("{COMMON}\n{source}")
}

fn source(name: &str) -> &'static str {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).expect("known shader")
}

/// `Step` of common.wgsl: written once per step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct Step {
    pub seed: u32,
    pub step: u32,
    pub rows: u32,
    pub batch_start: u32,
    pub slot: u32,
    pub inv_rows: f32,
    pub noise: f32,
    pub beta: f32,
    pub lr_t: f32,
    pub bc2_sqrt: f32,
    pub pad0: u32,
    pub pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Gemm {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub act: u32,
    pub bias: u32,
    /// `grad_w`, `stride` and `grad_b` are multiples of 4 floats and the bias region is
    /// padded to 4: backward_weight stores whole texels (the model's layout aligns to 64).
    pub grad_w: u32,
    pub stride: u32,
    pub grad_b: u32,
}

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
}

impl Conv {
    /// The geometry of `s` for `batch` rows (a multiple of 4) with `epilogue`; the
    /// offsets into the flat buffers are left at 0 for the caller to set.
    pub fn new(s: &crate::reference::ConvShape, batch: usize, epilogue: u32) -> Conv {
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
pub fn conv_invocations(entry: &str, s: &crate::reference::ConvShape, batch: usize) -> usize {
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
    /// conv.wgsl's `_wide` kernels: lanes of a workgroup share each block's sum.
    Wide,
}

/// Whether conv_subgroup.wgsl computes `entry` for geometry `s` (its backward_weight
/// needs the input channels in whole subgroups: c4_in a multiple of 8).
pub fn conv_subgroup_supports(entry: &str, s: &crate::reference::ConvShape) -> bool {
    match entry {
        "conv2d_forward" | "conv2d_backward_input" => true,
        "conv2d_backward_weight" => s.in_c.div_ceil(4).is_multiple_of(8),
        _ => false,
    }
}

/// Whether conv_subgroup.wgsl's `_c1_subgroup` kernels compute geometry `s`: a 1-channel
/// input and a 4x4 kernel.
pub fn conv_c1_supports(s: &crate::reference::ConvShape) -> bool {
    s.in_c == 1 && s.kernel == 4
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
pub fn conv_variant(k: &Kernels, entry: &str, s: &crate::reference::ConvShape) -> ConvVariant {
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
    s: &crate::reference::ConvShape,
    batch: usize,
) -> ConvPass {
    if variant == ConvVariant::SplitC1 {
        assert!(entry == "conv2d_backward_input" && conv_c1_supports(s), "no split {entry} for {s:?}");
        if let Some((dispatches, taps)) = split_c1(gpu, k, label, binds, s, batch) {
            return ConvPass { dispatches, main: 1, taps: Some(taps) };
        }
        return conv_dispatch(gpu, k, entry, ConvVariant::SubgroupC1, label, binds, s, batch);
    }
    ConvPass { dispatches: vec![conv_single(gpu, k, entry, variant, label, binds, s, batch)], main: 0, taps: None }
}

/// llvmpipe (Mesa 22.3) ends every loop of a shader invocation once their turns add up to
/// this, and loops after that run once: the results come out wrong.
pub const LLVMPIPE_LOOP_TURNS: usize = 65535;

/// At most the loop turns of one invocation of the weight gradient of geometry `s` over
/// `rows` images in `variant` (of a transposed convolution where `transposed`), on the
/// kernels llvmpipe runs (its limit: LLVMPIPE_LOOP_TURNS); zero for the variants GPUs run.
pub fn weight_loop_turns(
    variant: ConvVariant,
    s: &crate::reference::ConvShape,
    rows: usize,
    transposed: bool,
) -> usize {
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
        // the images (8 a turn) under each output pixel, the bias sums, the input sum
        ConvVariant::Subgroup => {
            s.out_h * (1 + (s.out_w + 1) * (1 + rows.div_ceil(8)))
                + rows * (1 + (s.out_h * s.out_w).div_ceil(8))
                + image_sum
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
    s: &crate::reference::ConvShape,
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
    s: &crate::reference::ConvShape,
    batch: usize,
) -> Option<(Vec<Dispatch>, crate::gpu::Matrix)> {
    use Bind::{Buffer as B, Texture as T};
    k.subgroup.as_ref()?;
    let taps = s.kernel * s.kernel;
    let t_shape = crate::reference::ConvShape {
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
    let slot = |i: u32| binds.iter().find(|(b, _)| *b == i).map(|(_, v)| *v).expect("conv.wgsl's binding");
    let u = gpu.uniform("taps convolution", &Conv::new(&t_shape, batch, EPILOGUE_NONE));
    let relayout = Dispatch::new(
        gpu,
        format!("conv2d_taps_c1 {label}"),
        &k.conv2d_taps_c1,
        &[(0, slot(0)), (2, slot(2)), (4, T(&weights.view))],
        taps * s.out_c.div_ceil(4),
        64,
    );
    let conv_binds = [(0, B(&u)), (1, slot(1)), (2, T(&weights.view)), (3, slot(1)), (4, T(&image.view)), (5, slot(5))];
    let taps_label = format!("{label} taps");
    let taps_conv =
        conv_single(gpu, k, "conv2d_forward", ConvVariant::Subgroup, &taps_label, &conv_binds, &t_shape, batch);
    let col2im = Dispatch::new(
        gpu,
        format!("conv2d_col2im_c1 {label}"),
        &k.conv2d_col2im_c1,
        &[(0, slot(0)), (1, T(&image.view)), (3, slot(3)), (4, slot(4)), (5, slot(5))],
        batch * s.in_h * s.in_w,
        64,
    );
    Some((vec![relayout, taps_conv, col2im], image))
}

/// Whether the fused loss takes its `_wide` variant for `o_cols` output columns a row:
/// on GPUs (`Kernels::wide_reductions`), and on llvmpipe where one invocation's loop over
/// a row (at most 5 turns a texel) would pass LLVMPIPE_LOOP_TURNS, which a row of up to
/// 16384 texels (the texture limit) can. (The GEMMs' loops run over at most one texture
/// side, 16384 texels, and stay within it.)
pub fn elbo_wide(gpu: &Gpu, k: &Kernels, o_cols: usize) -> bool {
    k.wide_reductions || (gpu.is_llvmpipe() && 5 * o_cols.div_ceil(4) + 64 > LLVMPIPE_LOOP_TURNS)
}

/// `Taps` of elbo.wgsl: elbo_forward_backward_taps's geometry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Taps {
    pub width: u32,
    pub out_w: u32,
    pub out_h: u32,
    pub pad: u32,
    pub bias: u32,
    pub pad1: [u32; 3],
}

impl Taps {
    /// The geometry of a one-channel transposed convolution `s` (in its convolution's
    /// direction: the image is its input) whose bias sits at flat float `bias`.
    pub fn new(s: &crate::reference::ConvShape, bias: usize) -> Taps {
        Taps {
            width: s.in_w as u32,
            out_w: s.out_w as u32,
            out_h: s.out_h as u32,
            pad: s.pad as u32,
            bias: bias as u32,
            pad1: [0; 3],
        }
    }
}

/// Whether the loss may sum the decoder's logits from the taps image of its last layer
/// `l` (elbo_forward_backward_taps, in place of conv2d_col2im_c1 and the loss): a
/// Bernoulli decoder whose last layer is a transposed convolution into one channel with
/// a 4x4 kernel and stride 2 that runs as ConvVariant::SplitC1, with one value a texel
/// (`lay`), and (on llvmpipe) a loop over the image's pixels and the latent dimensions
/// within LLVMPIPE_LOOP_TURNS.
pub fn elbo_taps_fits(
    gpu: &Gpu,
    k: &Kernels,
    l: &crate::model::Layer,
    lay: &crate::model::LossLayout,
    latent: usize,
) -> bool {
    let s = match l.op {
        crate::model::Op::Deconv { kernel: 4, stride: 2, .. } => l.conv_shape(),
        _ => return false,
    };
    conv_variant(k, "conv2d_backward_input", &s) == ConvVariant::SplitC1
        && !lay.gaussian
        && lay.channels == 1
        && lay.x_cp == 4
        && lay.o_cp == 4
        && !(gpu.is_llvmpipe() && lay.pixels + latent + 64 > LLVMPIPE_LOOP_TURNS)
}

/// Whether the training step may run the decoder's last layer `l` and the loss as one
/// dispatch (gemm_forward_elbo_subgroup, where the adapter has the subgroup GEMMs): a
/// dense layer without ReLU into a Bernoulli decoder's output whose values line up with
/// the target's (value e at column e of both: `lay`).
pub fn elbo_gemm_fits(l: &crate::model::Layer, lay: &crate::model::LossLayout) -> bool {
    l.op == crate::model::Op::Dense && !l.relu && !lay.gaussian && lay.halves && lay.x_cp == lay.channels
}

/// gemm_forward_elbo_subgroup's column blocks (workgroups across) for `n` output columns
/// at `lanes` lanes: the recon partial sums it writes a row.
pub fn elbo_gemm_blocks(n: usize, lanes: u32) -> usize {
    n.div_ceil(4 * lanes as usize)
}

/// The fused loss of elbo.wgsl for `m` rows: its `_wide` variant (one workgroup per
/// row) when `wide`, else one invocation per row. `binds` as elbo.wgsl's.
pub fn elbo_dispatch(gpu: &Gpu, k: &Kernels, wide: bool, binds: &[(u32, Bind)], m: usize) -> Dispatch {
    if wide {
        Dispatch::new(gpu, "elbo_forward_backward_wide", &k.elbo_forward_backward_wide, binds, m, 1)
    } else {
        Dispatch::new(gpu, "elbo_forward_backward", &k.elbo_forward_backward, binds, m, 64)
    }
}

/// `Classify` of classify.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Classify {
    pub m: u32,
    pub classes: u32,
    pub pad: [u32; 2],
}

/// conv.wgsl epilogues.
pub const EPILOGUE_NONE: u32 = 0;
pub const EPILOGUE_BIAS: u32 = 1;
pub const EPILOGUE_BIAS_RELU: u32 = 2;
pub const EPILOGUE_RELU_MASK: u32 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Elementwise {
    pub m: u32,
    pub cols: u32,
    pub pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Reparam {
    pub m: u32,
    pub latent: u32,
    /// Free bits: nats per latent dimension (loss_reduce; 0: off).
    pub free_bits: f32,
    /// reparam_backward_reduce_partials: the recon partial sums, `elbo_gemm_blocks` times
    /// m (block-major); else 0.
    pub partials: u32,
}

impl Reparam {
    pub fn new(m: usize, latent: usize, free_bits: f32) -> Reparam {
        Reparam { m: m as u32, latent: latent as u32, free_bits, partials: 0 }
    }

    /// For reparam_backward_reduce_partials: each row's recon comes in `blocks` sums,
    /// block-major (`partials[b * m + row]`).
    pub fn with_partials(self, blocks: usize) -> Reparam {
        Reparam { partials: blocks as u32 * self.m, ..self }
    }
}

/// Whether the training step takes loss_reduce and reparam_backward as one dispatch
/// (reparam_backward_reduce, one workgroup) at `m` rows and `latent` dimensions: where each
/// of its 64 invocations has at most 256 texels of d[mu | logvar] to write. That bounds
/// its serial work on a GPU, and keeps it far below llvmpipe's LLVMPIPE_LOOP_TURNS (a
/// texel takes 5 turns, and the loss sums 16 rows a turn).
pub fn reparam_reduce_fused(m: usize, latent: usize) -> bool {
    (2 * latent).div_ceil(4) * m <= 64 * 256
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Elbo {
    pub m: u32,
    pub latent: u32,
    pub pixels: u32,
    pub channels: u32,
    pub x_cp: u32,
    pub o_cp: u32,
    pub o_cols: u32,
    pub halves: u32,
    pub gaussian: u32,
    pub masked: u32,
    pub pad: [u32; 2],
}

impl Elbo {
    /// The loss kernel's parameters for `m` rows, latent `latent`, the model's loss layout,
    /// and whether only observed values count.
    pub fn new(m: usize, latent: usize, lay: &crate::model::LossLayout, masked: bool) -> Elbo {
        Elbo {
            m: m as u32,
            latent: latent as u32,
            pixels: lay.pixels as u32,
            channels: lay.channels as u32,
            x_cp: lay.x_cp as u32,
            o_cp: lay.o_cp as u32,
            o_cols: lay.o_cols as u32,
            halves: lay.halves as u32,
            gaussian: lay.gaussian as u32,
            masked: masked as u32,
            pad: [0; 2],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Adam {
    pub count: u32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Gather {
    pub m: u32,
    pub pixels: u32,
    pub channels: u32,
    pub x_cp: u32,
    pub binarize: u32,
    pub samples: u32,
    pub pad: [u32; 2],
}

/// The dispatch of gather.wgsl for `g` (its uniform at binding 0 of `binds`): the
/// one-channel variants where they apply (lavapipe at 512 bits, batch 128: MLP 257 ->
/// 209 us, conv 808 -> 616 us), else gather_batch. Each writes the texels of (g.m, pixels * x_cp).
pub fn gather_dispatch(gpu: &Gpu, k: &Kernels, g: &Gather, binds: &[(u32, Bind)]) -> Dispatch {
    let (m, pixels) = (g.m as usize, g.pixels as usize);
    let (name, pipeline, texels) = match (g.channels, g.x_cp) {
        (1, 1) if pixels.is_multiple_of(4) => ("gather_batch_words", &k.gather_batch_words, m * pixels / 4),
        (1, 4) if pixels.is_multiple_of(4) => ("gather_batch_pixels4", &k.gather_batch_pixels4, m * pixels / 4),
        (1, 4) => ("gather_batch_pixels", &k.gather_batch_pixels, m * pixels),
        _ => ("gather_batch", &k.gather_batch, m * (pixels * g.x_cp as usize).div_ceil(4)),
    };
    Dispatch::new(gpu, name, pipeline, binds, texels, 64)
}

/// Every pipeline, named after its WGSL entry point.
pub struct Kernels {
    pub gemm_forward: wgpu::ComputePipeline,
    pub gemm_backward_input: wgpu::ComputePipeline,
    pub gemm_backward_weight: wgpu::ComputePipeline,
    pub relu_forward: wgpu::ComputePipeline,
    pub relu_backward: wgpu::ComputePipeline,
    pub sigmoid_forward: wgpu::ComputePipeline,
    pub sigmoid_backward: wgpu::ComputePipeline,
    pub reparam_forward: wgpu::ComputePipeline,
    pub reparam_backward: wgpu::ComputePipeline,
    pub reparam_backward_reduce: wgpu::ComputePipeline,
    /// reparam_backward_reduce after gemm_forward_elbo_subgroup's loss (recon partial sums)
    pub reparam_backward_reduce_partials: wgpu::ComputePipeline,
    pub elbo_forward_backward: wgpu::ComputePipeline,
    pub loss_reduce: wgpu::ComputePipeline,
    pub adam_update: wgpu::ComputePipeline,
    pub gather_batch: wgpu::ComputePipeline,
    /// gather_batch for one-channel images, four pixels a texel (`gather_dispatch`).
    pub gather_batch_words: wgpu::ComputePipeline,
    /// gather_batch for one-channel images, one pixel a texel (`gather_dispatch`).
    pub gather_batch_pixels: wgpu::ComputePipeline,
    pub gather_batch_pixels4: wgpu::ComputePipeline,
    /// touch.wgsl: a dispatch with almost no work (`bench::fixed_costs`)
    pub touch: wgpu::ComputePipeline,
    pub conv2d_forward: wgpu::ComputePipeline,
    pub conv2d_backward_input: wgpu::ComputePipeline,
    pub conv2d_backward_weight: wgpu::ComputePipeline,
    /// conv.wgsl's two steps around a 1x1 convolution for a 1-channel backward_input
    pub conv2d_taps_c1: wgpu::ComputePipeline,
    pub conv2d_col2im_c1: wgpu::ComputePipeline,
    pub softmax_cross_entropy: wgpu::ComputePipeline,
    /// The `_wide` variants: a workgroup's lanes share one block's reduction.
    pub gemm_forward_wide: wgpu::ComputePipeline,
    pub gemm_backward_input_wide: wgpu::ComputePipeline,
    pub gemm_backward_weight_wide: wgpu::ComputePipeline,
    pub elbo_forward_backward_wide: wgpu::ComputePipeline,
    pub elbo_forward_backward_taps: wgpu::ComputePipeline,
    pub conv2d_forward_wide: wgpu::ComputePipeline,
    pub conv2d_backward_input_wide: wgpu::ComputePipeline,
    pub conv2d_backward_weight_wide: wgpu::ComputePipeline,
    /// Whether the loss and the convolutions run their `_wide` variants: on every
    /// adapter but a CPU (see elbo.wgsl and conv.wgsl for the figures).
    pub wide_reductions: bool,
    /// gemm_subgroup.wgsl and conv_subgroup.wgsl, on adapters whose subgroups are 8 or 16
    /// lanes wide (`subgroup_lanes`).
    pub subgroup: Option<SubgroupKernels>,
    /// adam_texel.wgsl (the moments in textures), on CPU adapters with read_write rgba32float.
    pub adam_update_texel: Option<wgpu::ComputePipeline>,
    /// gemm_adam_subgroup.wgsl: where both `subgroup` and `adam_update_texel` exist, its
    /// moments where this adapter keeps them (`Gpu::texel_moments_pay`).
    pub gemm_adam: Option<GemmAdam>,
}

/// Where Adam's moments live: rgba32float textures bound read_write, 1024 texels a row
/// (adam_texel.wgsl, gemm_adam_texels.wgsl), or storage buffers laid out as the flat
/// parameters (adam.wgsl, gemm_adam_buffers.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MomentStore {
    Texels,
    Buffers,
}

/// The weight gradient with Adam in its epilogue (gemm_adam_subgroup.wgsl), for one
/// storage of the moments.
pub struct GemmAdam {
    pub moments: MomentStore,
    /// Built for the adapter's subgroup width.
    pub pipeline: wgpu::ComputePipeline,
    pub lanes: u32,
    /// The 8-lane build, beside the 16-lane one on 16-lane adapters: for layers of at
    /// most 8 input texels, which leave most of 16 lanes idle (fc3, k = 20: 200 -> 126 us).
    pub pipeline8: Option<wgpu::ComputePipeline>,
}

impl GemmAdam {
    /// The kernel for subgroups of `lanes` (8 or 16) lanes with its moments in `moments`.
    pub fn new(gpu: &Gpu, lanes: u32, moments: MomentStore) -> Result<GemmAdam> {
        let build = |lanes: u32| {
            let file = match (moments, lanes) {
                (MomentStore::Texels, 16) => "gemm_adam_subgroup16.wgsl",
                (MomentStore::Texels, _) => "gemm_adam_subgroup.wgsl",
                (MomentStore::Buffers, 16) => "gemm_adam_buffers_subgroup16.wgsl",
                (MomentStore::Buffers, _) => "gemm_adam_buffers_subgroup.wgsl",
            };
            gpu.pipeline(&gpu.shader(file, source(file))?, "gemm_backward_weight_adam_subgroup")
        };
        let pipeline8 = if lanes == 16 { Some(build(8)?) } else { None };
        Ok(GemmAdam { moments, pipeline: build(lanes)?, lanes, pipeline8 })
    }
}

pub struct SubgroupKernels {
    pub gemm_forward_subgroup: wgpu::ComputePipeline,
    pub gemm_backward_input_subgroup: wgpu::ComputePipeline,
    pub gemm_backward_weight_subgroup: wgpu::ComputePipeline,
    /// gemm_fused_subgroup.wgsl: the heads' forward pass and reparam_forward in one
    /// dispatch, for 2L up to one workgroup's 4 LANES columns
    pub gemm_forward_reparam_subgroup: wgpu::ComputePipeline,
    /// The same for heads wider than one workgroup, where L is a multiple of 4.
    pub gemm_forward_reparam_pairs_subgroup: wgpu::ComputePipeline,
    /// gemm_fused_subgroup.wgsl: a Bernoulli decoder's last dense layer and its loss in one
    /// dispatch
    pub gemm_forward_elbo_subgroup: wgpu::ComputePipeline,
    /// conv_subgroup.wgsl, built for `lanes`: the forward pass over 32 columns
    /// (conv2d_forward_group8_subgroup: at 16 lanes, each 8-lane half on its own 32 rows),
    /// and the backward passes
    pub conv2d_forward_subgroup: wgpu::ComputePipeline,
    pub conv2d_backward_input_subgroup: wgpu::ComputePipeline,
    pub conv2d_backward_weight_subgroup: wgpu::ComputePipeline,
    /// conv_subgroup.wgsl's kernels for 1-channel inputs
    pub conv2d_forward_c1_subgroup: wgpu::ComputePipeline,
    pub conv2d_backward_input_c1_subgroup: wgpu::ComputePipeline,
    pub conv2d_backward_weight_c1_subgroup: wgpu::ComputePipeline,
    /// conv2d_forward_subgroup built for 16 lanes, on 16-lane adapters: used where the
    /// output channels fill its 64 columns (conv2d_forward_group8_subgroup elsewhere).
    pub conv2d_forward_subgroup16: Option<wgpu::ComputePipeline>,
    /// The subgroup width gemm_subgroup.wgsl and the conv backward passes were built for:
    /// 8 or 16 (`subgroup_lanes`).
    pub lanes: u32,
}

/// Kernel variants are named `<op>_<pass>_<variant>`; they share the reference `<op>_<pass>`.
pub const VARIANT_SUFFIXES: &[&str] = &[
    "_c1_subgroup",
    "_group8_subgroup",
    "_pairs_subgroup",
    "_subgroup",
    "_wide",
    "_texel",
    "_words",
    "_pixels",
    "_pixels4",
];

/// The CPU reference an entry point is checked against.
pub fn reference_name(entry: &str) -> &str {
    VARIANT_SUFFIXES.iter().find_map(|s| entry.strip_suffix(s)).unwrap_or(entry)
}

/// The subgroup width the `_subgroup` kernels run at on this device, where it has
/// Features::SUBGROUP and subgroups of exactly 8 or 16 lanes (lavapipe on x86: 16 with
/// LP_NATIVE_VECTOR_WIDTH=512, `gpu::prefer_wide_cpu_vectors`). gemm_subgroup.wgsl is
/// built for that width (lanes8.wgsl or lanes16.wgsl in front), and so are
/// conv_subgroup.wgsl's kernels (its `_c1` ones are written for 8 lanes: at 16, each half
/// of a subgroup does their work, through lanes16.wgsl's group8_ blocks; tests/conv.rs
/// checks every kernel at both widths).
pub fn subgroup_lanes(gpu: &Gpu) -> Option<u32> {
    let (lo, hi) = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
    (gpu.features.contains(wgpu::Features::SUBGROUP) && lo == hi && (lo == 8 || lo == 16)).then_some(lo)
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        let gemm = gpu.shader("gemm.wgsl", source("gemm.wgsl"))?;
        let act = gpu.shader("activation.wgsl", source("activation.wgsl"))?;
        let reparam = gpu.shader("reparam.wgsl", source("reparam.wgsl"))?;
        let elbo = gpu.shader("elbo.wgsl", source("elbo.wgsl"))?;
        let adam = gpu.shader("adam.wgsl", source("adam.wgsl"))?;
        let gather = gpu.shader("gather.wgsl", source("gather.wgsl"))?;
        let touch = gpu.shader("touch.wgsl", source("touch.wgsl"))?;
        let conv = gpu.shader("conv.wgsl", source("conv.wgsl"))?;
        let classify = gpu.shader("classify.wgsl", source("classify.wgsl"))?;
        let lanes = subgroup_lanes(gpu);
        let subgroup = if let Some(lanes) = lanes {
            let gemm_file = if lanes == 16 { "gemm_subgroup16.wgsl" } else { "gemm_subgroup.wgsl" };
            let m = gpu.shader(gemm_file, source(gemm_file))?;
            // conv_subgroup.wgsl built for the adapter's width
            let conv_file = if lanes == 16 { "conv_subgroup16.wgsl" } else { "conv_subgroup.wgsl" };
            let cl = &gpu.shader(conv_file, source(conv_file))?;
            Some(SubgroupKernels {
                conv2d_forward_subgroup: gpu.pipeline(cl, "conv2d_forward_group8_subgroup")?,
                conv2d_backward_input_subgroup: gpu.pipeline(cl, "conv2d_backward_input_subgroup")?,
                conv2d_backward_weight_subgroup: gpu.pipeline(cl, "conv2d_backward_weight_subgroup")?,
                conv2d_forward_c1_subgroup: gpu.pipeline(cl, "conv2d_forward_c1_subgroup")?,
                conv2d_backward_input_c1_subgroup: gpu.pipeline(cl, "conv2d_backward_input_c1_subgroup")?,
                conv2d_backward_weight_c1_subgroup: gpu.pipeline(cl, "conv2d_backward_weight_c1_subgroup")?,
                gemm_forward_subgroup: gpu.pipeline(&m, "gemm_forward_subgroup")?,
                gemm_backward_input_subgroup: gpu.pipeline(&m, "gemm_backward_input_subgroup")?,
                gemm_backward_weight_subgroup: gpu.pipeline(&m, "gemm_backward_weight_subgroup")?,
                gemm_forward_reparam_subgroup: gpu.pipeline(&m, "gemm_forward_reparam_subgroup")?,
                gemm_forward_reparam_pairs_subgroup: gpu.pipeline(&m, "gemm_forward_reparam_pairs_subgroup")?,
                gemm_forward_elbo_subgroup: gpu.pipeline(&m, "gemm_forward_elbo_subgroup")?,
                conv2d_forward_subgroup16: (lanes == 16)
                    .then(|| gpu.pipeline(cl, "conv2d_forward_subgroup"))
                    .transpose()?,
                lanes,
            })
        } else {
            None
        };
        // only on CPU adapters, where it was measured (adam_texel.wgsl)
        let adam_update_texel = if gpu.read_write_texels && gpu.info.device_type == wgpu::DeviceType::Cpu {
            let a = gpu.shader("adam_texel.wgsl", source("adam_texel.wgsl"))?;
            Some(gpu.pipeline(&a, "adam_update_texel")?)
        } else {
            None
        };
        let gemm_adam = match lanes {
            Some(lanes) if adam_update_texel.is_some() => {
                let moments = if gpu.texel_moments_pay() { MomentStore::Texels } else { MomentStore::Buffers };
                Some(GemmAdam::new(gpu, lanes, moments)?)
            }
            _ => None,
        };
        Ok(Kernels {
            subgroup,
            adam_update_texel,
            gemm_adam,
            gemm_forward: gpu.pipeline(&gemm, "gemm_forward")?,
            gemm_backward_input: gpu.pipeline(&gemm, "gemm_backward_input")?,
            gemm_backward_weight: gpu.pipeline(&gemm, "gemm_backward_weight")?,
            relu_forward: gpu.pipeline(&act, "relu_forward")?,
            relu_backward: gpu.pipeline(&act, "relu_backward")?,
            sigmoid_forward: gpu.pipeline(&act, "sigmoid_forward")?,
            sigmoid_backward: gpu.pipeline(&act, "sigmoid_backward")?,
            reparam_forward: gpu.pipeline(&reparam, "reparam_forward")?,
            reparam_backward: gpu.pipeline(&reparam, "reparam_backward")?,
            reparam_backward_reduce: gpu.pipeline(&reparam, "reparam_backward_reduce")?,
            reparam_backward_reduce_partials: gpu.pipeline(&reparam, "reparam_backward_reduce_partials")?,
            elbo_forward_backward: gpu.pipeline(&elbo, "elbo_forward_backward")?,
            loss_reduce: gpu.pipeline(&reparam, "loss_reduce")?,
            adam_update: gpu.pipeline(&adam, "adam_update")?,
            gather_batch: gpu.pipeline(&gather, "gather_batch")?,
            gather_batch_words: gpu.pipeline(&gather, "gather_batch_words")?,
            gather_batch_pixels: gpu.pipeline(&gather, "gather_batch_pixels")?,
            gather_batch_pixels4: gpu.pipeline(&gather, "gather_batch_pixels4")?,
            touch: gpu.pipeline(&touch, "touch")?,
            conv2d_forward: gpu.pipeline(&conv, "conv2d_forward")?,
            conv2d_backward_input: gpu.pipeline(&conv, "conv2d_backward_input")?,
            conv2d_backward_weight: gpu.pipeline(&conv, "conv2d_backward_weight")?,
            conv2d_taps_c1: gpu.pipeline(&conv, "conv2d_taps_c1")?,
            conv2d_col2im_c1: gpu.pipeline(&conv, "conv2d_col2im_c1")?,
            softmax_cross_entropy: gpu.pipeline(&classify, "softmax_cross_entropy")?,
            gemm_forward_wide: gpu.pipeline(&gemm, "gemm_forward_wide")?,
            gemm_backward_input_wide: gpu.pipeline(&gemm, "gemm_backward_input_wide")?,
            gemm_backward_weight_wide: gpu.pipeline(&gemm, "gemm_backward_weight_wide")?,
            elbo_forward_backward_wide: gpu.pipeline(&elbo, "elbo_forward_backward_wide")?,
            elbo_forward_backward_taps: gpu.pipeline(&elbo, "elbo_forward_backward_taps")?,
            conv2d_forward_wide: gpu.pipeline(&conv, "conv2d_forward_wide")?,
            conv2d_backward_input_wide: gpu.pipeline(&conv, "conv2d_backward_input_wide")?,
            conv2d_backward_weight_wide: gpu.pipeline(&conv, "conv2d_backward_weight_wide")?,
            wide_reductions: gpu.info.device_type != wgpu::DeviceType::Cpu,
        })
    }
}

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
