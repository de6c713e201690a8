//! A new model from a size preset when no checkpoint is given: the preset's shape with the
//! vocabulary of a tokenizer trained on the project's text, weights drawn from a recorded seed
//! with T5's initialisation (the model crate's seeded builder).

use candle_core::Device;
use instructrec_model::{Preset, Seq2Seq, T5Config};
use tokenizers::Tokenizer;

use crate::error::Result;

/// Deterministic: the same tokenizer, preset and seed give bit-identical weights.
pub fn create_model(
    tokenizer: Tokenizer,
    preset: Preset,
    seed: u64,
    device: &Device,
) -> Result<Seq2Seq> {
    let model = Seq2Seq::new_random(&T5Config::preset(preset), tokenizer, device, seed)?;
    tracing::info!(
        "created a {preset:?} T5 ({} parameters, vocabulary {}) from seed {seed}",
        model
            .varmap
            .all_vars()
            .iter()
            .map(|v| v.elem_count())
            .sum::<usize>(),
        model.config().vocab_size
    );
    Ok(model)
}
