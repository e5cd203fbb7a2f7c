//! CPU references, one per WGSL entry point, with the same names, in files that
//! mirror `kernels`. Matrices are row-major `&[f32]` without padding; shapes are
//! in the comments. The tests check each kernel against its reference and each
//! backward reference against central finite differences of its forward
//! reference. [`model`] composes them into a whole model's loss and gradients.

pub mod activation;
pub mod adam;
pub mod classify;
pub mod conv;
pub mod gather;
pub mod gemm;
pub mod iwae;
pub mod loss;
pub mod model;

pub use crate::model::ConvShape;
pub use activation::*;
pub use adam::*;
pub use classify::*;
pub use conv::*;
pub use gather::*;
pub use gemm::*;
pub use iwae::*;
pub use loss::*;
pub use model::*;

/// touch.wgsl: its counter after `dispatches` dispatches from `start`.
pub fn touch(start: u32, dispatches: u32) -> u32 {
    start.wrapping_add(dispatches)
}
