//! Training examples: reading, tokenizing, truncating, and forming batches in an order that
//! depends only on (seed, epoch), so that a resumed run sees exactly the batches an
//! uninterrupted one would.

use std::path::Path;

use candle_core::{Device, Tensor};
use instructrec_instructions::{read_lines, LineFilter};
use instructrec_model::{seq2seq_nll, Dropout, T5};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokenizers::Tokenizer;

pub use instructrec_data::seed::{derive_seed, seeded_sample, seeded_shuffle};
pub(crate) use instructrec_data::seed::{
    STREAM_CONTINUATION, STREAM_CORRUPTION, STREAM_DROPOUT, STREAM_LORA, STREAM_NEXT_ITEM,
    STREAM_ORDER, STREAM_WEIGHT,
};

use crate::error::{Result, TrainError};
use crate::tokenizer::{EOS_ID, PAD_ID};

/// One supervised pair: the model learns to produce `target` given `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub source: String,
    pub target: String,
}

/// Reads the instruction lines of `path` that `filter` keeps as examples (`instruction` →
/// `target`), each as many times as the filter's weights say: a weight of 2.5 is two copies
/// and a third for half of such lines, drawn from `seed` by line number. A filter that keeps
/// nothing is an error, naming what it asked for.
pub fn read_examples(path: &Path, filter: &LineFilter, seed: u64) -> Result<Vec<Example>> {
    let lines = read_lines(path, filter)?;
    if lines.is_empty() {
        return Err(TrainError::Input {
            path: path.to_path_buf(),
            message: if *filter == LineFilter::default() {
                "no examples".into()
            } else {
                format!("no examples with {}", filter.describe())
            },
        });
    }
    let mut examples = Vec::with_capacity(lines.len());
    for line in lines {
        let weight = filter.weight(&line.labels);
        let draw = derive_seed(seed, STREAM_WEIGHT, line.line as u64);
        let fraction = (draw >> 11) as f64 / (1u64 << 53) as f64;
        let copies = weight.trunc() as usize + usize::from(fraction < weight.fract());
        let example = Example {
            source: line.instruction,
            target: line.target,
        };
        examples.extend(std::iter::repeat_n(example, copies));
    }
    if examples.is_empty() {
        return Err(TrainError::Input {
            path: path.to_path_buf(),
            message: format!("the weights {} keep no example", filter.describe()),
        });
    }
    Ok(examples)
}

/// A tokenized example; both sides end with `</s>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    pub source: Vec<u32>,
    pub target: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Truncation {
    /// Sources longer than the limit, cut from the left (their oldest history).
    pub sources: usize,
    /// Targets longer than the limit, cut at the end.
    pub targets: usize,
}

/// Keeps the last `max - 1` tokens before `</s>`. Instructions are expected to fit (the
/// instruction builder truncates histories); this is the last resort, counted and reported.
pub fn truncate_source(mut ids: Vec<u32>, max: usize) -> (Vec<u32>, bool) {
    if ids.len() <= max {
        return (ids, false);
    }
    let body_end = ids.len() - usize::from(ids.last() == Some(&EOS_ID));
    let keep = max - 1;
    let mut out: Vec<u32> = ids.drain(body_end - keep..body_end).collect();
    out.push(EOS_ID);
    (out, true)
}

/// Keeps the first `max - 1` tokens and `</s>`.
pub fn truncate_target(mut ids: Vec<u32>, max: usize) -> (Vec<u32>, bool) {
    if ids.len() <= max {
        return (ids, false);
    }
    ids.truncate(max - 1);
    ids.push(EOS_ID);
    (ids, true)
}

pub fn encode_examples(
    tokenizer: &Tokenizer,
    examples: &[Example],
    max_source: usize,
    max_target: usize,
) -> Result<(Vec<TokenizedExample>, Truncation)> {
    if max_source < 2 || max_target < 2 {
        return Err(TrainError::Config(
            "max source and target lengths must be at least 2 tokens".into(),
        ));
    }
    let mut stats = Truncation::default();
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(1024) {
        // EOS is appended here rather than by the tokenizer's post-processor, as the model
        // crate does when scoring, so that training and scoring see the same ids whatever
        // post-processor a loaded tokenizer.json carries.
        let ids = |texts: Vec<&str>| -> Result<Vec<Vec<u32>>> {
            Ok(tokenizer
                .encode_batch(texts, false)?
                .iter()
                .map(|e| e.get_ids().iter().copied().chain([EOS_ID]).collect())
                .collect())
        };
        let sources = ids(chunk.iter().map(|e| e.source.as_str()).collect())?;
        let targets = ids(chunk.iter().map(|e| e.target.as_str()).collect())?;
        for (s, t) in sources.into_iter().zip(targets) {
            let (source, cut_s) = truncate_source(s, max_source);
            let (target, cut_t) = truncate_target(t, max_target);
            stats.sources += usize::from(cut_s);
            stats.targets += usize::from(cut_t);
            out.push(TokenizedExample { source, target });
        }
    }
    Ok((out, stats))
}

/// The batches of one epoch, as indices into the examples. Examples are shuffled with a seed
/// derived from (seed, epoch); within windows of `bucket_batches` batches they are sorted by
/// length so that a batch pads little, and the batches are shuffled again so that lengths do
/// not drift through the epoch. `bucket_batches = 1` gives plain shuffled batches.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    bucket_batches: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, STREAM_ORDER, epoch));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let window = batch_size * bucket_batches.max(1);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for chunk in order.chunks_mut(window) {
        if bucket_batches > 1 {
            chunk.sort_by_key(|&i| lengths[i]);
        }
        batches.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Model inputs for one batch, padded to the longest member.
pub struct Batch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub decoder_input_ids: Tensor,
    /// Target ids with -100 on padding (ignored by the loss).
    pub labels: Tensor,
    /// Non-padding target tokens.
    pub target_tokens: usize,
    /// Non-padding source tokens.
    pub source_tokens: usize,
}

impl Batch {
    /// The training objective on this batch: the mean token negative log-likelihood of the
    /// labels under `model`, with `dropout` when training.
    pub fn mean_loss(&self, model: &T5, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let logits = model.forward(
            &self.input_ids,
            &self.attention_mask,
            &self.decoder_input_ids,
            dropout,
        )?;
        let (nll, n) = seq2seq_nll(&logits, &self.labels)?;
        Ok((nll / n as f64)?)
    }
}

pub fn collate(
    examples: &[&TokenizedExample],
    decoder_start: u32,
    device: &Device,
) -> Result<Batch> {
    let b = examples.len();
    let s_len = examples.iter().map(|e| e.source.len()).max().unwrap_or(1);
    let t_len = examples.iter().map(|e| e.target.len()).max().unwrap_or(1);
    let mut ids = vec![PAD_ID; b * s_len];
    let mut mask = vec![0u32; b * s_len];
    let mut dec = vec![PAD_ID; b * t_len];
    let mut labels = vec![-100i64; b * t_len];
    for (r, e) in examples.iter().enumerate() {
        ids[r * s_len..r * s_len + e.source.len()].copy_from_slice(&e.source);
        mask[r * s_len..r * s_len + e.source.len()].fill(1);
        // Teacher forcing: the decoder sees the start token then the target shifted right.
        dec[r * t_len] = decoder_start;
        for (j, &tok) in e.target.iter().enumerate() {
            labels[r * t_len + j] = i64::from(tok);
            if j + 1 < t_len {
                dec[r * t_len + j + 1] = tok;
            }
        }
    }
    Ok(Batch {
        input_ids: Tensor::from_vec(ids, (b, s_len), device)?,
        attention_mask: Tensor::from_vec(mask, (b, s_len), device)?,
        decoder_input_ids: Tensor::from_vec(dec, (b, t_len), device)?,
        labels: Tensor::from_vec(labels, (b, t_len), device)?,
        target_tokens: examples.iter().map(|e| e.target.len()).sum(),
        source_tokens: examples.iter().map(|e| e.source.len()).sum(),
    })
}

/// Order-sensitive fingerprint of the encoded training set, stored in checkpoints so that a
/// resume on different data or a different tokenizer is refused instead of silently diverging.
pub fn fingerprint(examples: &[TokenizedExample]) -> u64 {
    // FNV-1a over the ids with separators.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u32| {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for e in examples {
        e.source.iter().for_each(|&x| eat(x));
        eat(u32::MAX);
        e.target.iter().for_each(|&x| eat(x));
        eat(u32::MAX - 1);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_that_keeps_nothing_says_what_it_asked_for() {
        use instructrec_instructions::IntentionKind;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        std::fs::write(
            &path,
            "{\"instruction\":\"pick one\",\"target\":\"a\",\"intention\":\"I1\"}\n\
             {\"instruction\":\"pick one\",\"target\":\"b\"}\n",
        )
        .unwrap();
        let targets = |filter: &LineFilter| -> Vec<String> {
            read_examples(&path, filter, 42)
                .unwrap()
                .into_iter()
                .map(|e| e.target)
                .collect()
        };
        assert_eq!(targets(&LineFilter::default()), ["a", "b"]);
        let without_i1 = LineFilter {
            without_intentions: vec![IntentionKind::Vague],
            ..LineFilter::default()
        };
        assert_eq!(targets(&without_i1), ["b"]);
        let contradiction = LineFilter {
            intentions: vec![IntentionKind::Vague],
            ..without_i1
        };
        let e = read_examples(&path, &contradiction, 42)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no examples with intention I1 and intention not I1"),
            "{e}"
        );
    }

    #[test]
    fn weights_repeat_lines_and_draw_their_fractions_by_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        let lines: String = (0..400)
            .map(|i| {
                let task = if i % 2 == 0 { "T3" } else { "T0" };
                format!("{{\"instruction\":\"q{i}\",\"target\":\"{task}\",\"task\":\"{task}\"}}\n")
            })
            .collect();
        std::fs::write(&path, lines).unwrap();
        let filter = LineFilter {
            weights: vec!["T3=2".parse().unwrap(), "T0=0.25".parse().unwrap()],
            ..LineFilter::default()
        };
        let read = |seed| read_examples(&path, &filter, seed).unwrap();
        let count =
            |examples: &[Example], task: &str| examples.iter().filter(|e| e.target == task).count();
        let a = read(42);
        assert_eq!(count(&a, "T3"), 400);
        // 200 lines kept with probability 1/4: within 4 standard deviations (6.1) of 50.
        let t0 = count(&a, "T0");
        assert!(
            (26..=74).contains(&t0),
            "{t0} of 200 quarter-weight lines kept"
        );
        assert_eq!(read(42), a, "the same seed keeps the same lines");
        assert_ne!(read(43), a, "another seed draws other lines");
        let none = LineFilter {
            weights: vec!["T3=0".parse().unwrap(), "T0=0".parse().unwrap()],
            ..LineFilter::default()
        };
        let e = read_examples(&path, &none, 42).unwrap_err().to_string();
        assert!(e.contains("keep no example"), "{e}");
    }

    #[test]
    fn a_sample_keeps_a_short_list_as_it_is() {
        assert_eq!(seeded_sample(vec![3, 1, 2], 5, 7), [3, 1, 2]);
        let drawn = seeded_sample((0..10).collect(), 4, 7);
        assert_eq!(drawn.len(), 4);
        assert_eq!(drawn, seeded_sample((0..10).collect(), 4, 7));
    }

    #[test]
    fn source_loses_its_beginning_target_its_end() {
        assert_eq!(
            truncate_source(vec![5, 6, 7, 8, EOS_ID], 3),
            (vec![7, 8, EOS_ID], true)
        );
        assert_eq!(
            truncate_source(vec![5, 6, EOS_ID], 3),
            (vec![5, 6, EOS_ID], false)
        );
        assert_eq!(
            truncate_target(vec![5, 6, 7, 8, EOS_ID], 3),
            (vec![5, 6, EOS_ID], true)
        );
    }

    #[test]
    fn batches_depend_on_seed_and_epoch_only_and_cover_everything() {
        let lengths: Vec<usize> = (0..103).map(|i| (i * 37) % 50).collect();
        let a = epoch_batches(&lengths, 8, 4, 7, 0);
        assert_eq!(a, epoch_batches(&lengths, 8, 4, 7, 0));
        assert_ne!(a, epoch_batches(&lengths, 8, 4, 7, 1));
        assert_ne!(a, epoch_batches(&lengths, 8, 4, 8, 0));
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        // Bucketing: the spread of lengths inside a batch is smaller than without it.
        let spread = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|b| {
                    let l: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
                    l.iter().max().unwrap() - l.iter().min().unwrap()
                })
                .sum()
        };
        assert!(spread(&a) < spread(&epoch_batches(&lengths, 8, 1, 7, 0)));
    }

    #[test]
    fn collate_pads_and_shifts() {
        let a = TokenizedExample {
            source: vec![10, 11, EOS_ID],
            target: vec![20, EOS_ID],
        };
        let b = TokenizedExample {
            source: vec![12, EOS_ID],
            target: vec![21, 22, EOS_ID],
        };
        let batch = collate(&[&a, &b], PAD_ID, &Device::Cpu).unwrap();
        assert_eq!(
            batch.input_ids.to_vec2::<u32>().unwrap(),
            [[10, 11, 1], [12, 1, 0]]
        );
        assert_eq!(
            batch.attention_mask.to_vec2::<u32>().unwrap(),
            [[1, 1, 1], [1, 1, 0]]
        );
        assert_eq!(
            batch.decoder_input_ids.to_vec2::<u32>().unwrap(),
            [[0, 20, 1], [0, 21, 22]]
        );
        assert_eq!(
            batch.labels.to_vec2::<i64>().unwrap(),
            [[20, 1, -100], [21, 22, 1]]
        );
        assert_eq!(batch.target_tokens, 5);
    }
}
