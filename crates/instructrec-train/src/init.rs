//! A new model when no checkpoint is given: a shape (a size preset, or a Hugging Face-style
//! config.json) with the vocabulary of a tokenizer trained on the project's text, weights drawn
//! from a recorded seed with T5's initialisation (the model crate's seeded builder).

use candle_core::{Device, Tensor};
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

/// Starts each item token's embedding at the mean of the embeddings of its title's word pieces,
/// rescaled to the norm of a freshly drawn row. Items whose titles share words ("Mario Kart 8",
/// "Mario Party 10") then start out alike, the way BM25 sees them, instead of as unrelated
/// random ids; rows for `(token, pieces)` with no pieces are left as drawn.
pub fn item_tokens_from_pieces(model: &Seq2Seq, rows: &[(u32, Vec<u32>)]) -> Result<()> {
    let var = crate::compose::embeddings(model)?;
    let mut table = var.as_tensor().to_vec2::<f32>()?;
    let dim = table.first().map_or(0, Vec::len);
    for (token, pieces) in rows {
        if pieces.is_empty() {
            continue;
        }
        let mut mean = vec![0f32; dim];
        for &p in pieces {
            for (m, x) in mean.iter_mut().zip(&table[p as usize]) {
                *m += x;
            }
        }
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            // Unit-variance rows, as T5 initialises its embeddings.
            let scale = (dim as f32).sqrt() / norm;
            table[*token as usize] = mean.iter().map(|x| x * scale).collect();
        }
    }
    var.set(&Tensor::new(table, var.device())?)?;
    Ok(())
}
