//! Training for instructrec's seq2seq models: a T5-style tokenizer trained on the project's
//! text, instruction tuning (negative log-likelihood of the target given the instruction) with
//! a fused AdamW (or low-rank adapters on a large checkpoint), pre-training on item text and
//! interaction sequences, and checkpoints that resume bit for bit. [`session`] puts a whole run
//! together as the command line describes it.

pub mod checkpoint;
pub mod compose;
pub mod data;
mod error;
pub mod init;
pub mod lora;
pub mod optimizer;
pub mod pretrain;
pub mod schedule;
pub mod session;
pub mod tokenizer;
pub mod trainer;

pub use error::{Result, TrainError};
// What a front end needs to load and build models, so that it depends on this crate alone.
pub use candle_core::Device;
pub use instructrec_model::{Preset, Seq2Seq, T5Config, TokenLimits};
