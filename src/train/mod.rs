//! Training: the options ([`options`]), the trainer that owns a model's buffers
//! and replays its step ([`trainer`]), checkpoints ([`checkpoint`]) and the
//! `train` command's epoch loop ([`run`]).

pub mod checkpoint;
mod epoch;
pub mod hyper;
pub mod options;
pub mod run;
mod shards;
pub mod state;
pub mod trainer;

pub use crate::step::{EvalRows, LossSums};
pub use hyper::*;
pub use options::*;
pub use run::*;
pub use state::TrainState;
pub use trainer::*;
