//! T5-family encoder-decoder written for training and exact scoring (candle; CPU by default,
//! CUDA with the `cuda` feature), with composed differentiable ops shared by the other models
//! of the workspace.

pub mod adapter;
pub mod config;
pub mod cpu;
pub mod device;
pub mod error;
pub mod generate;
pub mod ops;
pub mod score;
pub mod seq2seq;
pub mod t5;

// Callers pick the device a model loads on without depending on candle themselves.
pub use candle_core::Device;
pub use config::{FeedForwardProj, Preset, T5Config, Workload};
pub use device::{DeviceSpec, Placement, Precision};
pub use error::ModelError;
pub use generate::{generate_titles, Generated, TitleTrie};
pub use score::{CandidateScore, Encoded};
pub use seq2seq::{pad_batch, seeded_var_builder, Seq2Seq, TokenLimits};
pub use t5::{seq2seq_loss, seq2seq_nll, shift_right, DecoderCache, Dropout, IGNORE_INDEX, T5};
