//! T5-family encoder-decoder written for training and exact scoring on CPU (candle), with
//! composed differentiable ops shared by the other models of the workspace.

pub mod config;
pub mod error;
pub mod ops;
pub mod seq2seq;
pub mod t5;

pub use config::{FeedForwardProj, Preset, T5Config};
pub use error::ModelError;
pub use seq2seq::{seeded_var_builder, Seq2Seq};
pub use t5::{seq2seq_loss, seq2seq_nll, shift_right, DecoderCache, Dropout, IGNORE_INDEX, T5};
