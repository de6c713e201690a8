//! Search baselines over text, trained on (query, target) pairs from the instruction stage's
//! training lines:
//! - DSSM (Huang et al. 2013): a query tower and an item tower, each a two-layer tanh MLP over a
//!   text vector (the query; the item's title), cosine similarity, softmax over the other
//!   targets of the batch (sampled softmax with in-batch negatives).
//! - TEM (Bi et al. 2020, transformer-based embedding model for personalised search): one
//!   transformer block over [query vector ; the user's last items], the output at the query
//!   position dotted with item vectors (id embedding + projected title vector), softmax over
//!   the whole catalogue.
//!
//! Text vectors come from a pretrained sentence encoder (all-MiniLM-L6-v2, frozen, from a
//! directory the user gives) or, without one, from a bag of hashed words whose embeddings are
//! trained here with the model. Reports name which.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor, D};
use candle_nn::{Linear, Module, VarMap};
use instructrec_data::atomic::write_atomic_with;
use instructrec_data::{ItemId, Prepared};
use instructrec_eval::harness::EvalCase;
use instructrec_eval::{Case, QueryKind, Request, Scorer};
use instructrec_instructions::{read_jsonl, Strategy, TargetKind, TaskForm};
use instructrec_model::ops;
use instructrec_text::SentenceEncoder;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::nn::{linear3, Init};
use crate::trainer::{self, adamw, BudgetCheck, Schedule, Stopping, Trainable, Trained};

/// Where text vectors come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TextSource {
    /// A BERT sentence encoder read from `dir`, kept frozen; `weights` is its SHA-256.
    Pretrained { dir: PathBuf, weights: String },
    /// Hashed words (lower-cased alphanumeric runs) into `buckets` trainable embeddings of
    /// `dim`, mean-pooled.
    Trained {
        buckets: usize,
        dim: usize,
        words: WordHash,
    },
}

/// How a word picks its embedding row. Part of the configuration, so that a saved model or a
/// cached checkpoint is only read by the hash it was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WordHash {
    /// FNV-1a (64-bit) of the lower-cased word's UTF-8 bytes, modulo the buckets: fixed by its
    /// definition, unlike std's `DefaultHasher`, which may change between Rust releases.
    Fnv1a64,
}

impl WordHash {
    fn bucket(self, word: &str, buckets: usize) -> u32 {
        match self {
            WordHash::Fnv1a64 => {
                let h = word
                    .to_lowercase()
                    .bytes()
                    .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
                    });
                (h % buckets as u64) as u32
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextModelKind {
    Dssm,
    Tem,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextRecConfig {
    pub kind: TextModelKind,
    pub text: TextSource,
    /// Which fill the training pairs take their query from.
    pub query: QueryKind,
    /// Items never used as training targets (product search: the item split's validation and
    /// test items).
    pub excluded_targets: usize,
    pub dim: usize,
    pub hidden: usize,
    pub heads: usize,
    /// History items TEM reads (the most recent).
    pub max_history: usize,
    /// Logit scale of DSSM's cosine.
    pub temperature: f64,
    pub lr: f64,
    /// Every epoch runs (no patience); the time budget is checked after every step.
    #[serde(flatten)]
    pub stopping: Stopping,
}

impl TextRecConfig {
    pub fn new(kind: TextModelKind, text: TextSource, query: QueryKind, seed: u64) -> Self {
        Self {
            kind,
            text,
            query,
            excluded_targets: 0,
            dim: 64,
            hidden: 256,
            heads: 2,
            max_history: 20,
            temperature: 20.0,
            lr: 1e-3,
            stopping: Stopping {
                batch_size: 256,
                max_epochs: 30,
                patience: None,
                time_budget_s: 300.0,
                seed,
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            TextModelKind::Dssm => "dssm",
            TextModelKind::Tem => "tem",
        }
    }
}

/// One training example: who searched, what they had done before, the query, the answer.
#[derive(Debug, Clone)]
pub struct QueryPair {
    pub history: Vec<ItemId>,
    pub query: String,
    pub target: ItemId,
}

/// Training pairs from an instruction file's plain lines that answer with an item title and
/// carry a `kind` query; the history is the user's items before the target. Lines whose target
/// is in `excluded` are skipped.
pub fn read_pairs(
    path: &Path,
    prepared: &Prepared,
    kind: QueryKind,
    excluded: &HashSet<ItemId>,
) -> anyhow::Result<Vec<QueryPair>> {
    let mut pairs = Vec::new();
    for line in read_jsonl(path)? {
        let usable = matches!(line.task, TaskForm::Matching | TaskForm::Rerank)
            && line.strategy == Strategy::Plain
            && line.target_kind == TargetKind::ItemTitle
            && !excluded.contains(&line.target_item);
        let Some(query) = kind.of(&line).filter(|_| usable) else {
            continue;
        };
        let seq = prepared
            .dataset
            .sequences
            .get(line.user.index())
            .with_context(|| format!("{}: unknown user {}", path.display(), line.user.0))?;
        let history = match seq.iter().rposition(|i| i.item == line.target_item) {
            Some(at) => seq[..at].iter().map(|i| i.item).collect(),
            None => Vec::new(),
        };
        pairs.push(QueryPair {
            history,
            query: query.to_string(),
            target: line.target_item,
        });
    }
    if pairs.is_empty() {
        bail!(
            "{}: no training line with a {kind} query and an item-title answer",
            path.display()
        );
    }
    Ok(pairs)
}

const MAX_WORDS: usize = 24;

fn hashed_words(text: &str, hash: WordHash, buckets: usize) -> Vec<u32> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(|w| hash.bucket(w, buckets))
        .collect()
}

pub(crate) enum TextFeatures {
    Frozen {
        encoder: Box<SentenceEncoder>,
        items: Tensor,
        /// Queries repeat a lot (fills are templated); each is encoded once.
        cache: Mutex<HashMap<String, Vec<f32>>>,
    },
    Bag {
        table: Tensor,
        buckets: usize,
        words: WordHash,
    },
}

/// What a text model reads besides its configuration: the pretrained sentence encoder its
/// configuration names (if any), and a directory where that encoder's title vectors are kept.
#[derive(Default)]
pub struct TextInput<'a> {
    pub encoder: Option<SentenceEncoder>,
    pub title_cache: Option<&'a Path>,
}

impl TextFeatures {
    /// The text vectors `source` names: a pretrained encoder's (every title encoded here, or
    /// read from the title cache when an earlier run stored them there), or hashed words whose
    /// table `init` creates.
    pub(crate) fn new(
        source: &TextSource,
        input: TextInput,
        titles: &[String],
        init: &mut Init,
    ) -> anyhow::Result<Self> {
        Ok(match (source, input.encoder) {
            (TextSource::Pretrained { .. }, Some(encoder)) => TextFeatures::Frozen {
                items: title_vectors(&encoder, titles, input.title_cache)?,
                encoder: Box::new(encoder),
                cache: Mutex::new(HashMap::new()),
            },
            (
                TextSource::Trained {
                    buckets,
                    dim,
                    words,
                },
                None,
            ) => TextFeatures::Bag {
                table: init.normal("words".into(), (*buckets, *dim), 0.1)?,
                buckets: *buckets,
                words: *words,
            },
            _ => bail!("the text source in the configuration does not match the encoder given"),
        })
    }

    pub(crate) fn dim(&self) -> usize {
        match self {
            TextFeatures::Frozen { encoder, .. } => encoder.dim(),
            TextFeatures::Bag { table, .. } => table.dims()[1],
        }
    }

    pub(crate) fn texts(&self, texts: &[&str], device: &Device) -> anyhow::Result<Tensor> {
        match self {
            TextFeatures::Frozen { encoder, cache, .. } => {
                let mut cache = cache.lock().expect("text cache lock");
                let missing: Vec<&str> = {
                    let mut m: Vec<&str> = texts
                        .iter()
                        .copied()
                        .filter(|t| !cache.contains_key(*t))
                        .collect();
                    m.sort_unstable();
                    m.dedup();
                    m
                };
                if !missing.is_empty() {
                    let v: Vec<Vec<f32>> = encoder.encode(&missing)?.to_vec2()?;
                    for (t, v) in missing.into_iter().zip(v) {
                        cache.insert(t.to_string(), v);
                    }
                }
                let flat: Vec<f32> = texts.iter().flat_map(|t| cache[*t].clone()).collect();
                Ok(Tensor::from_vec(
                    flat,
                    (texts.len(), encoder.dim()),
                    device,
                )?)
            }
            TextFeatures::Bag {
                table,
                buckets,
                words,
            } => {
                let n = texts.len();
                let mut ids = vec![0u32; n * MAX_WORDS];
                let mut mask = vec![0f32; n * MAX_WORDS];
                for (r, t) in texts.iter().enumerate() {
                    for (c, w) in hashed_words(t, *words, *buckets).into_iter().enumerate() {
                        ids[r * MAX_WORDS + c] = w;
                        mask[r * MAX_WORDS + c] = 1.0;
                    }
                }
                let d = table.dims()[1];
                let ids = Tensor::from_vec(ids, (n * MAX_WORDS,), device)?;
                let mask = Tensor::from_vec(mask, (n, MAX_WORDS, 1), device)?;
                let words = table.index_select(&ids, 0)?.reshape((n, MAX_WORDS, d))?;
                let counts = mask.sum(1)?.clamp(1.0, f64::MAX)?;
                Ok(words.broadcast_mul(&mask)?.sum(1)?.broadcast_div(&counts)?)
            }
        }
    }

    fn items(&self, titles: &[&str], device: &Device) -> anyhow::Result<Tensor> {
        match self {
            TextFeatures::Frozen { items, .. } => Ok(items.clone()),
            TextFeatures::Bag { .. } => self.texts(titles, device),
        }
    }
}

/// Title vectors from the encoder, cached in `dir` under a name derived from the encoder's
/// weights and every title, so a stale cache is never read.
fn title_vectors(
    encoder: &SentenceEncoder,
    titles: &[String],
    dir: Option<&Path>,
) -> anyhow::Result<Tensor> {
    let Some(dir) = dir else {
        return encoder.encode_all(titles, 64, "encoding titles");
    };
    let mut h = Sha256::new();
    h.update(encoder.weights_hash().as_bytes());
    for t in titles {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    let path = dir.join(format!(
        "titles-{}.safetensors",
        &hex::encode(h.finalize())[..16]
    ));
    if path.exists() {
        let mut loaded = candle_core::safetensors::load(&path, &Device::Cpu)
            .with_context(|| format!("reading {}", path.display()))?;
        return loaded
            .remove("titles")
            .with_context(|| format!("{}: no tensor named titles", path.display()));
    }
    let items = encoder.encode_all(titles, 64, "encoding titles")?;
    write_atomic_with(&path, |tmp| {
        items
            .save_safetensors("titles", tmp)
            .map_err(std::io::Error::other)
    })
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(items)
}

struct Block {
    ln1: (Tensor, Tensor),
    qkv: Linear,
    o: Linear,
    ln2: (Tensor, Tensor),
    ff1: Linear,
    ff2: Linear,
}

enum Towers {
    Dssm {
        query: (Linear, Linear),
        item: (Linear, Linear),
    },
    Tem {
        query_proj: Linear,
        title_proj: Linear,
        item_emb: Tensor,
        pos_emb: Tensor,
        block: Block,
        final_ln: (Tensor, Tensor),
    },
}

pub struct TextRec {
    config: TextRecConfig,
    varmap: VarMap,
    text: TextFeatures,
    towers: Towers,
    titles: Vec<String>,
    device: Device,
}

fn mlp(x: &Tensor, layers: &(Linear, Linear)) -> candle_core::Result<Tensor> {
    layers.1.forward(&layers.0.forward(x)?.tanh()?)
}

fn l2_normalise(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-6, f64::MAX)?;
    x.broadcast_div(&norm)
}

/// Mean cross-entropy of `logits` `[n, classes]` against `targets`.
fn cross_entropy(logits: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
    let n = targets.len();
    let t = Tensor::from_slice(targets, (n, 1), logits.device())?;
    let picked = ops::log_softmax_last_dim(logits)?.gather(&t, 1)?;
    picked.sum_all()?.affine(-1.0 / n as f64, 0.0)
}

impl TextRec {
    /// Creates the model; a pretrained encoder encodes every title once here, or reads the
    /// vectors from `title_cache` (a directory) when an earlier run stored them there.
    pub fn new(
        config: TextRecConfig,
        prepared: &Prepared,
        input: TextInput,
    ) -> anyhow::Result<Self> {
        let mut init = Init::new(config.stopping.seed);
        let titles = prepared.titles();
        let text = TextFeatures::new(&config.text, input, &titles, &mut init)?;
        let (t, d, h) = (text.dim(), config.dim, config.hidden);
        let towers = match config.kind {
            TextModelKind::Dssm => Towers::Dssm {
                query: (init.linear("query.0", t, h)?, init.linear("query.1", h, d)?),
                item: (init.linear("item.0", t, h)?, init.linear("item.1", h, d)?),
            },
            TextModelKind::Tem => {
                let std = 1.0 / (d as f32).sqrt();
                Towers::Tem {
                    query_proj: init.linear("query_proj", t, d)?,
                    title_proj: init.linear("title_proj", t, d)?,
                    item_emb: init.normal("item_emb".into(), (titles.len(), d), std)?,
                    pos_emb: init.normal("pos_emb".into(), (config.max_history + 1, d), std)?,
                    block: Block {
                        ln1: init.norm("block.ln1", d)?,
                        qkv: init.linear("block.qkv", d, 3 * d)?,
                        o: init.linear("block.o", d, d)?,
                        ln2: init.norm("block.ln2", d)?,
                        ff1: init.linear("block.ff1", d, h)?,
                        ff2: init.linear("block.ff2", h, d)?,
                    },
                    final_ln: init.norm("final_ln", d)?,
                }
            }
        };
        if !config.dim.is_multiple_of(config.heads) {
            bail!(
                "dim {} must be a multiple of heads {}",
                config.dim,
                config.heads
            );
        }
        Ok(Self {
            config,
            varmap: init.varmap,
            text,
            towers,
            titles,
            device: init.device,
        })
    }

    pub fn config(&self) -> &TextRecConfig {
        &self.config
    }

    /// Item vectors `[items, dim]` (DSSM: unit length).
    fn item_vectors(&self) -> anyhow::Result<Tensor> {
        let titles: Vec<&str> = self.titles.iter().map(String::as_str).collect();
        let text = self.text.items(&titles, &self.device)?;
        Ok(match &self.towers {
            Towers::Dssm { item, .. } => l2_normalise(&mlp(&text, item)?)?,
            Towers::Tem {
                title_proj,
                item_emb,
                ..
            } => (item_emb + title_proj.forward(&text)?)?,
        })
    }

    /// Query-side vectors `[n, dim]` for (query, history) inputs, given the item vectors.
    fn query_vectors(
        &self,
        queries: &[&str],
        histories: &[&[ItemId]],
        items: &Tensor,
    ) -> anyhow::Result<Tensor> {
        let text = self.text.texts(queries, &self.device)?;
        match &self.towers {
            Towers::Dssm { query, .. } => Ok(l2_normalise(&mlp(&text, query)?)?),
            Towers::Tem {
                query_proj,
                pos_emb,
                block,
                final_ln,
                ..
            } => {
                let n = queries.len();
                let (l, d) = (self.config.max_history + 1, self.config.dim);
                let heads = self.config.heads;
                let dh = d / heads;
                // Position 0 is the query; history items follow, most recent last; the rest pads
                // with item 0 and is masked out of attention.
                let mut ids = vec![0u32; n * (l - 1)];
                let mut bias = vec![0f32; n * l];
                for (r, h) in histories.iter().enumerate() {
                    let tail = &h[h.len().saturating_sub(l - 1)..];
                    for (c, item) in tail.iter().enumerate() {
                        ids[r * (l - 1) + c] = item.0;
                    }
                    for c in tail.len()..l - 1 {
                        bias[r * l + 1 + c] = -1e9;
                    }
                }
                let ids = Tensor::from_vec(ids, (n * (l - 1),), &self.device)?;
                let hist = items.index_select(&ids, 0)?.reshape((n, l - 1, d))?;
                let q = query_proj.forward(&text)?.unsqueeze(1)?;
                let x = Tensor::cat(&[q, hist], 1)?.broadcast_add(pos_emb)?;
                let bias = Tensor::from_vec(bias, (n, 1, 1, l), &self.device)?;
                let hdn = ops::layer_norm(&x, &block.ln1.0, &block.ln1.1, 1e-6)?;
                let qkv = linear3(&block.qkv, &hdn)?;
                let split = |i: usize| -> candle_core::Result<Tensor> {
                    qkv.narrow(2, i * d, d)?
                        .reshape((n, l, heads, dh))?
                        .transpose(1, 2)?
                        .contiguous()
                };
                let (qh, kh, vh) = (split(0)?, split(1)?, split(2)?);
                let scores = (qh.matmul(&kh.t()?.contiguous()?)? * (1.0 / (dh as f64).sqrt()))?
                    .broadcast_add(&bias)?;
                let ctx = ops::softmax_last_dim(&scores)?
                    .matmul(&vh)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((n, l, d))?;
                let x = (x + linear3(&block.o, &ctx)?)?;
                let hdn = ops::layer_norm(&x, &block.ln2.0, &block.ln2.1, 1e-6)?;
                let ff = linear3(&block.ff2, &ops::gelu_erf(&linear3(&block.ff1, &hdn)?)?)?;
                let x = (x + ff)?;
                let out = x.narrow(1, 0, 1)?.squeeze(1)?;
                Ok(ops::layer_norm(&out, &final_ln.0, &final_ln.1, 1e-6)?)
            }
        }
    }

    fn batch_loss(&self, pairs: &[&QueryPair]) -> anyhow::Result<Tensor> {
        let queries: Vec<&str> = pairs.iter().map(|p| p.query.as_str()).collect();
        let histories: Vec<&[ItemId]> = pairs.iter().map(|p| p.history.as_slice()).collect();
        let targets: Vec<u32> = pairs.iter().map(|p| p.target.0).collect();
        Ok(match &self.towers {
            Towers::Dssm { item, .. } => {
                // In-batch negatives: the other pairs' targets, so only their titles are encoded.
                let ids = Tensor::from_slice(&targets, (targets.len(),), &self.device)?;
                let text = match &self.text {
                    TextFeatures::Frozen { items, .. } => items.index_select(&ids, 0)?,
                    TextFeatures::Bag { .. } => {
                        let titles: Vec<&str> = pairs
                            .iter()
                            .map(|p| self.titles[p.target.index()].as_str())
                            .collect();
                        self.text.texts(&titles, &self.device)?
                    }
                };
                let batch_items = l2_normalise(&mlp(&text, item)?)?;
                let q = self.query_vectors(&queries, &histories, &batch_items)?;
                let logits = (q.matmul(&batch_items.t()?)? * self.config.temperature)?;
                let diagonal: Vec<u32> = (0..targets.len() as u32).collect();
                cross_entropy(&logits, &diagonal)?
            }
            Towers::Tem { .. } => {
                let items = self.item_vectors()?;
                let q = self.query_vectors(&queries, &histories, &items)?;
                cross_entropy(&q.matmul(&items.t()?)?, &targets)?
            }
        })
    }
}

impl Trainable for TextRec {
    type Example = QueryPair;

    /// Draws nothing from `rng`: neither model has dropout, and negatives come from the batch.
    fn loss(&self, batch: &[&QueryPair], _rng: &mut ChaCha8Rng) -> anyhow::Result<Option<Tensor>> {
        Ok(Some(self.batch_loss(batch)?))
    }

    fn parts(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("", &self.varmap)]
    }
}

impl Scorer for TextRec {
    fn name(&self) -> String {
        self.config.name().into()
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let r = [Request { case, candidates }];
        Ok(self.score_batch(&r)?.remove(0))
    }

    fn score_batch(&self, requests: &[Request<'_>]) -> anyhow::Result<Vec<Vec<f32>>> {
        let items = self.item_vectors()?.detach();
        let queries = requests
            .iter()
            .map(|r| {
                r.case.query.as_deref().with_context(|| {
                    format!(
                        "{} needs a query; user {} has none (use a search protocol)",
                        self.config.name(),
                        r.case.user.0
                    )
                })
            })
            .collect::<anyhow::Result<Vec<&str>>>()?;
        let histories: Vec<&[ItemId]> =
            requests.iter().map(|r| r.case.history.as_slice()).collect();
        let q: Vec<Vec<f32>> = self
            .query_vectors(&queries, &histories, &items)?
            .to_vec2()?;
        let items: Vec<Vec<f32>> = items.to_vec2()?;
        Ok(requests
            .iter()
            .zip(&q)
            .map(|(r, q)| {
                r.candidates
                    .iter()
                    .map(|c| items[c.index()].iter().zip(q).map(|(a, b)| a * b).sum())
                    .collect()
            })
            .collect())
    }

    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        let all: Vec<ItemId> = (0..self.titles.len() as u32).map(ItemId).collect();
        let requests: Vec<Request<'_>> = cases
            .iter()
            .map(|case| Request {
                case,
                candidates: &all,
            })
            .collect();
        Some(self.score_batch(&requests))
    }
}

/// Validation cases from held-out pairs: the target among 9 items drawn with the seed.
fn validation_cases(pairs: &[QueryPair], items: usize, rng: &mut ChaCha8Rng) -> Vec<EvalCase> {
    pairs
        .iter()
        .enumerate()
        .map(|(u, p)| {
            let mut candidates = vec![p.target];
            while candidates.len() < 10.min(items) {
                let c = ItemId(rand::Rng::random_range(rng, 0..items as u32));
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
            EvalCase {
                case: Case {
                    user: instructrec_data::UserId(u as u32),
                    history: p.history.clone(),
                    query: Some(p.query.clone()),
                    context: None,
                },
                positive: p.target,
                candidates,
                excluded: Vec::new(),
            }
        })
        .collect()
}

/// Trains with AdamW on shuffled pairs, 5% of them (at most 1,000) held out to report a
/// validation HR@1/NDCG@5 (1+9 random items) after every epoch; the last weights are kept.
pub fn train(model: TextRec, mut pairs: Vec<QueryPair>) -> anyhow::Result<Trained<TextRec>> {
    let config = &model.config;
    let mut rng = ChaCha8Rng::seed_from_u64(config.stopping.seed ^ 0x7e47_da7a);
    pairs.shuffle(&mut rng);
    let held = (pairs.len() / 20)
        .clamp(1, 1000)
        .min(pairs.len().saturating_sub(1));
    let val_pairs = pairs.split_off(pairs.len() - held);
    let validation = validation_cases(&val_pairs, model.titles.len(), &mut rng);
    let schedule = Schedule {
        optimizer: adamw(config.lr),
        budget_check: BudgetCheck::Step,
        stopping: config.stopping.clone(),
    };
    trainer::train(model, &pairs, &validation, &schedule, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_hash_to_fixed_buckets() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (its published test vector); case is folded.
        assert_eq!(
            WordHash::Fnv1a64.bucket("a", 1 << 15),
            (0xaf63dc4c8601ec8cu64 % (1 << 15)) as u32
        );
        assert_eq!(
            hashed_words("Zelda: zelda, MARIO", WordHash::Fnv1a64, 1000),
            [
                WordHash::Fnv1a64.bucket("zelda", 1000),
                WordHash::Fnv1a64.bucket("zelda", 1000),
                WordHash::Fnv1a64.bucket("mario", 1000)
            ]
        );
    }
}
