//! A new model when no checkpoint is given: a shape (a size preset, or a Hugging Face-style
//! config.json) with the vocabulary of a tokenizer trained on the project's text, weights drawn
//! from a recorded seed with T5's initialisation (the model crate's seeded builder).

use candle_core::Device;
use instructrec_model::{Seq2Seq, T5Config};
use tokenizers::Tokenizer;

use crate::error::Result;

/// Deterministic: the same tokenizer, shape and seed give bit-identical weights.
/// `shape.vocab_size` is replaced by the tokenizer's size.
pub fn create_model(
    tokenizer: Tokenizer,
    shape: &T5Config,
    seed: u64,
    device: &Device,
) -> Result<Seq2Seq> {
    let model = Seq2Seq::new_random(shape, tokenizer, device, seed)?;
    tracing::info!(
        "created a T5 (d_model {}, {}+{} layers, {} parameters, vocabulary {}) from seed {seed}",
        shape.d_model,
        shape.num_layers,
        shape.decoder_layers(),
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
