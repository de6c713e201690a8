//! Scoring candidates by their likelihood under an instruction: the instruction is encoded
//! once and all candidates go through one batched decoder pass that shares the encoder states
//! (no copies). Also pointwise yes/no and pairwise choices between labelled options.

use crate::ops;
use crate::t5::{shift_right, IGNORE_INDEX, T5};
use candle_core::{DType, Result, Tensor, D};

/// An encoded instruction: encoder states `[1, s, d]` and its mask `[1, s]`.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub states: Tensor,
    pub mask: Tensor,
}

impl Encoded {
    /// Encodes one instruction given as token ids (normally ending in EOS).
    pub fn new(model: &T5, ids: &[u32]) -> Result<Self> {
        if ids.is_empty() {
            candle_core::bail!("cannot encode an empty instruction");
        }
        let ids = Tensor::new(ids, model.device())?.unsqueeze(0)?;
        let mask = ids.ones_like()?;
        let states = model.encode(&ids, &mask, None)?;
        Ok(Self { states, mask })
    }
}

/// Log-likelihood of one candidate's tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidateScore {
    /// Sum of the token log-probabilities.
    pub sum: f32,
    /// Mean per token (length-normalised).
    pub mean: f32,
    pub tokens: usize,
}

/// Upper bound on `candidates * length * vocab` logits held at once; larger sets are scored in
/// several decoder passes so that memory stays bounded (about 256 MiB of f32).
const MAX_LOGITS: usize = 1 << 26;

/// Scores each candidate (token ids, normally the title followed by EOS) under `enc`.
/// Candidates are right-padded to a common length; padding is ignored and cannot change
/// the scores because the decoder is causal.
pub fn score_candidates(
    model: &T5,
    enc: &Encoded,
    candidates: &[Vec<u32>],
) -> Result<Vec<CandidateScore>> {
    if let Some(i) = candidates.iter().position(|c| c.is_empty()) {
        candle_core::bail!("candidate {i} has no tokens");
    }
    let longest = candidates.iter().map(Vec::len).max().unwrap_or(0);
    let per_pass = (MAX_LOGITS / (longest.max(1) * model.config().vocab_size)).max(1);
    let mut out = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(per_pass) {
        out.extend(score_chunk(model, enc, chunk)?);
    }
    Ok(out)
}

fn score_chunk(model: &T5, enc: &Encoded, candidates: &[Vec<u32>]) -> Result<Vec<CandidateScore>> {
    let (c, t) = (
        candidates.len(),
        candidates.iter().map(Vec::len).max().unwrap_or(0),
    );
    let labels: Vec<i64> = candidates
        .iter()
        .flat_map(|cand| {
            cand.iter()
                .map(|&id| i64::from(id))
                .chain(std::iter::repeat(IGNORE_INDEX))
                .take(t)
        })
        .collect();
    let labels = Tensor::from_vec(labels, (c, t), model.device())?;
    let cfg = model.config();
    let dec_in = shift_right(&labels, cfg.decoder_start_token_id, cfg.pad_token_id)?;
    // Log-likelihoods in f32 whatever the weights' precision: bf16 keeps 3 significant digits.
    let logits = model
        .decode(&dec_in, &enc.states, &enc.mask, None)?
        .to_dtype(DType::F32)?;
    let token_logp = target_log_probs(&logits, &labels)?;
    let rows: Vec<Vec<f32>> = token_logp.to_dtype(DType::F32)?.to_vec2()?;
    Ok(rows
        .iter()
        .zip(candidates)
        .map(|(row, cand)| {
            let sum: f32 = row[..cand.len()].iter().sum();
            CandidateScore {
                sum,
                mean: sum / cand.len() as f32,
                tokens: cand.len(),
            }
        })
        .collect())
}

/// `log p(label)` at each position of `[c, t, vocab]` logits, 0 where the label is ignored.
/// Works on the logits directly (log-sum-exp per row) instead of materialising log-softmax.
fn target_log_probs(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let keep = labels.ge(0i64)?;
    let safe = keep.where_cond(labels, &labels.zeros_like()?)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let lse = logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .add(&max)?;
    let picked = logits.gather(&safe.unsqueeze(2)?, 2)?;
    picked
        .sub(&lse)?
        .squeeze(2)?
        .mul(&keep.to_dtype(logits.dtype())?)
}

/// Probabilities of a set of answer labels (e.g. "yes"/"no", "A"/"B", or two item texts),
/// each label's sequence likelihood normalised over the set. For single-token labels this is
/// the softmax of the first decoder step's logits restricted to those tokens.
pub fn label_probabilities(model: &T5, enc: &Encoded, labels: &[Vec<u32>]) -> Result<Vec<f32>> {
    if labels.len() < 2 {
        candle_core::bail!("need at least two labels to choose between");
    }
    let scores = score_candidates(model, enc, labels)?;
    let sums: Vec<f32> = scores.iter().map(|s| s.sum).collect();
    let t = Tensor::new(sums.as_slice(), model.device())?;
    ops::softmax_last_dim(&t)?.to_vec1()
}
