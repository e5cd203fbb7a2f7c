//! The softmax cross-entropy of a classifier head (classify.wgsl).

use bytemuck::{Pod, Zeroable};

/// `Classify` of classify.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Classify {
    pub m: u32,
    pub classes: u32,
    pub pad: [u32; 2],
}

/// classify.wgsl's binding slots.
pub mod classify_slot {
    /// The `Classify` uniform.
    pub const P: u32 = 0;
    pub const STEP: u32 = 1;
    pub const LOGITS: u32 = 2;
    pub const LABELS: u32 = 3;
    pub const D_LOGITS: u32 = 4;
    pub const ROW_LOSS: u32 = 5;
    pub const ALL: &[(&str, u32)] = &[
        ("p", P),
        ("step", STEP),
        ("logits", LOGITS),
        ("labels", LABELS),
        ("d_logits", D_LOGITS),
        ("row_loss", ROW_LOSS),
    ];
}
