//! Transformer sequential recommenders over item ids: SASRec (Kang & McAuley 2018; causal
//! self-attention, next-item prediction with one sampled negative per position and binary
//! cross-entropy) and BERT4Rec (Sun et al. 2019; bidirectional, cloze masking, softmax over the
//! whole catalogue at masked positions, plus samples that mask only the last item so that
//! training matches inference, where a mask is appended after the history).
//!
//! Both share one pre-LN transformer encoder built from `instructrec_model::ops` (candle's fused
//! softmax and layer norm pass no gradient), with every weight, dropout mask, negative, cloze
//! mask and batch order drawn from one recorded seed.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::bail;
use candle_core::{Device, Tensor, D};
use candle_nn::{Linear, Optimizer, VarMap};
use instructrec_data::{ItemId, Prepared};
use instructrec_eval::{Case, Request, Scorer};
use instructrec_model::ops;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::nn::{linear3, Init};
use crate::trainer::{
    self, sequential_validation, BudgetCheck, Schedule, Stopping, Trainable, Trained,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    SasRec,
    Bert4Rec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Gelu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqRecConfig {
    pub variant: Variant,
    pub dim: usize,
    pub blocks: usize,
    pub heads: usize,
    /// Feed-forward width.
    pub ff_dim: usize,
    pub activation: Activation,
    /// Most recent items fed to the encoder (20, the same cap as instruction histories, so that
    /// baselines and the instruction model see the same evidence).
    pub max_len: usize,
    pub dropout: f32,
    /// BERT4Rec: probability that a position is masked.
    pub mask_prob: f32,
    /// BERT4Rec: share of training samples that mask only the last item.
    pub last_item_mask_share: f32,
    pub lr: f64,
    pub weight_decay: f64,
    /// Validate on every n-th validation case (1 = all).
    pub validation_stride: usize,
    /// The time budget is checked after every epoch.
    #[serde(flatten)]
    pub stopping: Stopping,
}

impl SeqRecConfig {
    pub fn sasrec(seed: u64) -> Self {
        Self {
            variant: Variant::SasRec,
            dim: 64,
            blocks: 2,
            heads: 1,
            ff_dim: 64,
            activation: Activation::Relu,
            max_len: 20,
            dropout: 0.3,
            mask_prob: 0.0,
            last_item_mask_share: 0.0,
            // Higher than the paper's 1e-3: with 1e-3 validation NDCG@5 was still rising after
            // 13 epochs (10 minutes here), see docs/results/sequential-games-notes.md.
            lr: 3e-3,
            weight_decay: 0.0,
            validation_stride: 2,
            stopping: Stopping {
                batch_size: 256,
                max_epochs: 200,
                patience: Some(4),
                time_budget_s: 1200.0,
                seed,
            },
        }
    }

    pub fn bert4rec(seed: u64) -> Self {
        let mut sasrec = Self::sasrec(seed);
        sasrec.stopping.time_budget_s = 1500.0;
        Self {
            variant: Variant::Bert4Rec,
            heads: 2,
            ff_dim: 256,
            activation: Activation::Gelu,
            dropout: 0.2,
            mask_prob: 0.3,
            last_item_mask_share: 0.25,
            ..sasrec
        }
    }

    pub fn name(&self) -> &'static str {
        match self.variant {
            Variant::SasRec => "sasrec",
            Variant::Bert4Rec => "bert4rec",
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.dim == 0 || self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            bail!(
                "dim {} must be a positive multiple of heads {}",
                self.dim,
                self.heads
            );
        }
        if self.max_len < 2 || self.stopping.batch_size == 0 || self.validation_stride == 0 {
            bail!("max_len must be >= 2, batch_size and validation_stride >= 1");
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..=1.0).contains(&self.mask_prob) {
            bail!("dropout must be in [0, 1) and mask_prob in [0, 1]");
        }
        Ok(())
    }
}

/// Token ids: 0 pads, item `i` is `i + 1`, and the last id is BERT4Rec's mask.
const PAD: u32 = 0;

fn token(item: ItemId) -> u32 {
    item.0 + 1
}

struct Block {
    ln1: (Tensor, Tensor),
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln2: (Tensor, Tensor),
    ff1: Linear,
    ff2: Linear,
}

pub struct SeqRec {
    config: SeqRecConfig,
    num_items: usize,
    varmap: VarMap,
    /// `[num_items + 2, dim]`: padding, the items, the mask token.
    item_emb: Tensor,
    pos_emb: Tensor,
    blocks: Vec<Block>,
    final_ln: (Tensor, Tensor),
    /// BERT4Rec's output bias over items.
    out_bias: Option<Tensor>,
    device: Device,
}

/// Dropout with the generator when training; identity at inference.
fn maybe_dropout(
    x: &Tensor,
    p: f32,
    rng: &mut Option<&mut ChaCha8Rng>,
) -> candle_core::Result<Tensor> {
    match rng {
        Some(r) => ops::dropout(x, p, &mut **r),
        None => Ok(x.clone()),
    }
}

impl SeqRec {
    pub fn new(config: SeqRecConfig, num_items: usize) -> anyhow::Result<Self> {
        config.validate()?;
        let d = config.dim;
        let mut init = Init::new(config.stopping.seed);
        let emb_std = 1.0 / (d as f32).sqrt();
        let item_emb = init.normal("item_emb".into(), (num_items + 2, d), emb_std)?;
        let pos_emb = init.normal("pos_emb".into(), (config.max_len, d), emb_std)?;
        let mut blocks = Vec::with_capacity(config.blocks);
        for b in 0..config.blocks {
            let p = format!("block{b}");
            blocks.push(Block {
                ln1: init.norm(&format!("{p}.ln1"), d)?,
                q: init.linear(&format!("{p}.q"), d, d)?,
                k: init.linear(&format!("{p}.k"), d, d)?,
                v: init.linear(&format!("{p}.v"), d, d)?,
                o: init.linear(&format!("{p}.o"), d, d)?,
                ln2: init.norm(&format!("{p}.ln2"), d)?,
                ff1: init.linear(&format!("{p}.ff1"), d, config.ff_dim)?,
                ff2: init.linear(&format!("{p}.ff2"), config.ff_dim, d)?,
            });
        }
        let final_ln = init.norm("final_ln", d)?;
        let out_bias = match config.variant {
            Variant::Bert4Rec => Some(init.constant("out_bias".into(), num_items, 0.0)?),
            Variant::SasRec => None,
        };
        Ok(Self {
            config,
            num_items,
            varmap: init.varmap,
            item_emb,
            pos_emb,
            blocks,
            final_ln,
            out_bias,
            device: init.device,
        })
    }

    pub fn config(&self) -> &SeqRecConfig {
        &self.config
    }

    fn mask_token(&self) -> u32 {
        self.num_items as u32 + 1
    }

    /// Encodes `ids` (`[batch, max_len]`, right-aligned, 0 = padding) to `[batch, max_len, dim]`.
    /// Dropout is applied when `rng` is given.
    fn encode(
        &self,
        ids: &[u32],
        batch: usize,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> anyhow::Result<Tensor> {
        let (l, d, h) = (self.config.max_len, self.config.dim, self.config.heads);
        let dh = d / h;
        let p = self.config.dropout;
        let causal = self.config.variant == Variant::SasRec;
        // Additive attention bias: padding keys (and future keys for SASRec) are excluded. A
        // finite large negative keeps rows of pure padding finite (they are never read).
        let mut bias = vec![0f32; batch * l * l];
        for b in 0..batch {
            for i in 0..l {
                for j in 0..l {
                    if ids[b * l + j] == PAD || (causal && j > i) {
                        bias[(b * l + i) * l + j] = -1e9;
                    }
                }
            }
        }
        let bias = Tensor::from_vec(bias, (batch, 1, l, l), &self.device)?;
        let ids_t = Tensor::from_slice(ids, (batch * l,), &self.device)?;
        let x = self
            .item_emb
            .index_select(&ids_t, 0)?
            .reshape((batch, l, d))?
            .broadcast_add(&self.pos_emb)?;
        let mut x = maybe_dropout(&x, p, &mut rng)?;
        let scale = 1.0 / (dh as f64).sqrt();
        for blk in &self.blocks {
            let hdn = ops::layer_norm(&x, &blk.ln1.0, &blk.ln1.1, 1e-6)?;
            let split = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((batch, l, h, dh))?.transpose(1, 2)?.contiguous()
            };
            let q = split(linear3(&blk.q, &hdn)?)?;
            let k = split(linear3(&blk.k, &hdn)?)?;
            let v = split(linear3(&blk.v, &hdn)?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&bias)?;
            let attn = maybe_dropout(&ops::softmax_last_dim(&scores)?, p, &mut rng)?;
            let ctx = attn
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((batch, l, d))?;
            x = (x + maybe_dropout(&linear3(&blk.o, &ctx)?, p, &mut rng)?)?;
            let hdn = ops::layer_norm(&x, &blk.ln2.0, &blk.ln2.1, 1e-6)?;
            let ff = linear3(&blk.ff1, &hdn)?;
            let ff = match self.config.activation {
                Activation::Relu => ff.relu()?,
                Activation::Gelu => ops::gelu_erf(&ff)?,
            };
            let ff = linear3(&blk.ff2, &maybe_dropout(&ff, p, &mut rng)?)?;
            x = (x + maybe_dropout(&ff, p, &mut rng)?)?;
        }
        Ok(ops::layer_norm(
            &x,
            &self.final_ln.0,
            &self.final_ln.1,
            1e-6,
        )?)
    }

    /// The encoder input for scoring after `history`: SASRec reads the last `max_len` items,
    /// BERT4Rec the last `max_len - 1` followed by the mask it predicts.
    fn inference_input(&self, history: &[ItemId]) -> anyhow::Result<Vec<u32>> {
        let l = self.config.max_len;
        let mut tokens: Vec<u32> = Vec::with_capacity(l);
        for &i in history {
            if i.index() >= self.num_items {
                bail!(
                    "history item {} is outside the catalogue of {}",
                    i.0,
                    self.num_items
                );
            }
            tokens.push(token(i));
        }
        if self.config.variant == Variant::Bert4Rec {
            tokens.push(self.mask_token());
        }
        let tail = &tokens[tokens.len().saturating_sub(l)..];
        let mut out = vec![PAD; l - tail.len()];
        out.extend_from_slice(tail);
        Ok(out)
    }

    /// `[batch, dim]` representation at the last position for each case.
    fn user_states(&self, cases: &[&Case]) -> anyhow::Result<Tensor> {
        let histories: Vec<&[ItemId]> = cases.iter().map(|c| c.history.as_slice()).collect();
        Ok(self.sequence_states(&histories, None)?.detach())
    }

    /// `[batch, dim]` encoder output after each history, with gradients (the two-tower model's
    /// user tower trains through it); dropout when `rng` is given.
    pub(crate) fn sequence_states(
        &self,
        histories: &[&[ItemId]],
        rng: Option<&mut ChaCha8Rng>,
    ) -> anyhow::Result<Tensor> {
        let l = self.config.max_len;
        let mut ids = Vec::with_capacity(histories.len() * l);
        for h in histories {
            ids.extend(self.inference_input(h)?);
        }
        let h = self.encode(&ids, histories.len(), rng)?;
        Ok(h.narrow(1, l - 1, 1)?.squeeze(1)?.contiguous()?)
    }

    /// Embeddings of the real items (without padding and mask rows), detached.
    fn item_table(&self) -> anyhow::Result<Tensor> {
        Ok(self.item_emb.narrow(0, 1, self.num_items)?.detach())
    }
}

impl Scorer for SeqRec {
    fn name(&self) -> String {
        self.config.name().into()
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let mut out = self.score_batch(&[Request { case, candidates }])?;
        Ok(out.pop().unwrap_or_default())
    }

    fn score_batch(&self, requests: &[Request<'_>]) -> anyhow::Result<Vec<Vec<f32>>> {
        let cases: Vec<&Case> = requests.iter().map(|r| r.case).collect();
        let states = self.user_states(&cases)?;
        let mut rows = Vec::new();
        let mut items = Vec::new();
        for (r, req) in requests.iter().enumerate() {
            for &c in req.candidates {
                if c.index() >= self.num_items {
                    bail!(
                        "candidate {} is outside the catalogue of {}",
                        c.0,
                        self.num_items
                    );
                }
                rows.push(r as u32);
                items.push(c.0);
            }
        }
        if items.is_empty() {
            return Ok(requests.iter().map(|_| Vec::new()).collect());
        }
        let rows = Tensor::from_vec(rows, items.len(), &self.device)?;
        let items_t = Tensor::from_slice(&items, items.len(), &self.device)?;
        let tokens: Vec<u32> = items.iter().map(|&i| i + 1).collect();
        let tokens = Tensor::from_vec(tokens, items.len(), &self.device)?;
        let e = self.item_emb.detach().index_select(&tokens, 0)?;
        let mut s = (states.index_select(&rows, 0)? * e)?.sum(D::Minus1)?;
        if let Some(bias) = &self.out_bias {
            s = (s + bias.detach().index_select(&items_t, 0)?)?;
        }
        let flat: Vec<f32> = s.to_vec1()?;
        let mut out = Vec::with_capacity(requests.len());
        let mut at = 0;
        for req in requests {
            out.push(flat[at..at + req.candidates.len()].to_vec());
            at += req.candidates.len();
        }
        Ok(out)
    }

    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        let run = || -> anyhow::Result<Vec<Vec<f32>>> {
            let states = self.user_states(cases)?;
            let mut s = states.matmul(&self.item_table()?.t()?)?;
            if let Some(bias) = &self.out_bias {
                s = s.broadcast_add(&bias.detach())?;
            }
            Ok(s.to_vec2()?)
        };
        Some(run())
    }
}

/// `log(1 + exp(x))`, composed from primitives with gradients and stable for large |x|.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?)
}

/// One user's training sequence (all but the last two items), as tokens.
pub struct Sequence {
    tokens: Vec<u32>,
    /// SASRec: what its negatives avoid, the user's training items only (excluding validation or
    /// test items as well would tell the model something about them); empty for BERT4Rec.
    seen: HashSet<u32>,
}

/// What one training step needs, built on the host from a batch of users.
struct Batch {
    input: Vec<u32>,
    /// SASRec: next item per position (0 where none); BERT4Rec: the masked item.
    targets: Vec<u32>,
    /// SASRec: one sampled negative per position.
    negatives: Vec<u32>,
    size: usize,
}

impl SeqRec {
    fn batch(&self, seqs: &[&Sequence], rng: &mut ChaCha8Rng) -> Batch {
        match self.config.variant {
            Variant::SasRec => self.sasrec_batch(seqs, rng),
            Variant::Bert4Rec => self.bert4rec_batch(seqs, rng),
        }
    }

    fn sasrec_batch(&self, seqs: &[&Sequence], rng: &mut ChaCha8Rng) -> Batch {
        let l = self.config.max_len;
        let n = seqs.len();
        let (mut input, mut targets, mut negatives) =
            (vec![PAD; n * l], vec![PAD; n * l], vec![PAD; n * l]);
        for (b, Sequence { tokens: seq, seen }) in seqs.iter().copied().enumerate() {
            // Pairs (seq[t], seq[t+1]) for the last `l` transitions, right-aligned.
            let pairs = seq.len() - 1;
            let take = pairs.min(l);
            for k in 0..take {
                let t = pairs - take + k;
                let pos = b * l + (l - take + k);
                input[pos] = seq[t];
                targets[pos] = seq[t + 1];
                negatives[pos] = loop {
                    let cand = rng.random_range(1..=self.num_items as u32);
                    if !seen.contains(&cand) {
                        break cand;
                    }
                };
            }
        }
        Batch {
            input,
            targets,
            negatives,
            size: n,
        }
    }

    fn bert4rec_batch(&self, seqs: &[&Sequence], rng: &mut ChaCha8Rng) -> Batch {
        let l = self.config.max_len;
        let n = seqs.len();
        let (mut input, mut targets) = (vec![PAD; n * l], vec![PAD; n * l]);
        for (b, Sequence { tokens: seq, .. }) in seqs.iter().copied().enumerate() {
            let tail = &seq[seq.len().saturating_sub(l)..];
            let start = b * l + l - tail.len();
            input[start..start + tail.len()].copy_from_slice(tail);
            let only_last = rng.random::<f32>() < self.config.last_item_mask_share;
            let mut masked = 0;
            for (k, &item) in tail.iter().enumerate() {
                let last = k + 1 == tail.len();
                let mask = if only_last {
                    last
                } else {
                    rng.random::<f32>() < self.config.mask_prob
                };
                if mask {
                    input[start + k] = self.mask_token();
                    targets[start + k] = item;
                    masked += 1;
                }
            }
            if masked == 0 {
                // Every sample must teach something: mask the last item.
                let last = start + tail.len() - 1;
                targets[last] = input[last];
                input[last] = self.mask_token();
            }
        }
        Batch {
            input,
            targets,
            negatives: Vec::new(),
            size: n,
        }
    }

    fn batch_loss(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> anyhow::Result<Tensor> {
        let d = self.config.dim;
        let h = self
            .encode(&batch.input, batch.size, Some(rng))?
            .reshape(((), d))?;
        let positions: Vec<u32> = batch
            .targets
            .iter()
            .enumerate()
            .filter(|(_, &t)| t != PAD)
            .map(|(i, _)| i as u32)
            .collect();
        if positions.is_empty() {
            bail!("a training batch has no target positions");
        }
        let pick = |v: &[u32]| -> Vec<u32> { positions.iter().map(|&i| v[i as usize]).collect() };
        let m = positions.len();
        let positions = Tensor::from_vec(positions.clone(), m, &self.device)?;
        let h = h.index_select(&positions, 0)?;
        match self.config.variant {
            Variant::SasRec => {
                let pos = Tensor::from_vec(pick(&batch.targets), m, &self.device)?;
                let neg = Tensor::from_vec(pick(&batch.negatives), m, &self.device)?;
                let pos_logit = (&h * self.item_emb.index_select(&pos, 0)?)?.sum(D::Minus1)?;
                let neg_logit = (&h * self.item_emb.index_select(&neg, 0)?)?.sum(D::Minus1)?;
                Ok(((softplus(&pos_logit.neg()?)? + softplus(&neg_logit)?)?.mean_all())?)
            }
            Variant::Bert4Rec => {
                // Labels are item indices (token - 1) over the real items only.
                let labels: Vec<u32> = pick(&batch.targets).iter().map(|t| t - 1).collect();
                let labels = Tensor::from_vec(labels, (m, 1), &self.device)?;
                let table = self.item_emb.narrow(0, 1, self.num_items)?;
                let bias = self.out_bias.as_ref().expect("BERT4Rec has an output bias");
                let logits = h.matmul(&table.t()?)?.broadcast_add(bias)?;
                let logp = ops::log_softmax_last_dim(&logits)?;
                Ok(logp.gather(&labels, 1)?.mean_all()?.neg()?)
            }
        }
    }
}

impl Trainable for SeqRec {
    type Example = Sequence;

    fn loss(&self, batch: &[&Sequence], rng: &mut ChaCha8Rng) -> anyhow::Result<Option<Tensor>> {
        let batch = self.batch(batch, rng);
        Ok(Some(self.batch_loss(&batch, rng)?))
    }

    fn parts(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("", &self.varmap)]
    }
}

impl SeqRec {
    /// Diagnostic: the gradient norm of every parameter, by name, on one training batch of the
    /// first users. A zero norm means a parameter is cut off from the loss (e.g. by an op
    /// without a backward pass).
    pub fn gradient_norms(&self, prepared: &Prepared) -> anyhow::Result<Vec<(String, f32)>> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.stopping.seed);
        let seqs = training_sequences(prepared, self.config.variant);
        let first: Vec<&Sequence> = seqs.iter().take(self.config.stopping.batch_size).collect();
        let batch = self.batch(&first, &mut rng);
        let grads = self.batch_loss(&batch, &mut rng)?.backward()?;
        let data = self.varmap.data().lock().expect("varmap lock");
        let mut out = Vec::with_capacity(data.len());
        for (name, var) in data.iter() {
            let norm = match grads.get(var.as_tensor()) {
                Some(g) => g.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?,
                None => 0.0,
            };
            out.push((name.clone(), norm));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Seconds spent in each part of one training step, for the speed benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTimes {
    pub batch_s: f64,
    pub forward_s: f64,
    pub backward_s: f64,
    pub update_s: f64,
}

/// Runs `steps` training steps on the first users and times their parts.
pub fn time_steps(
    prepared: &Prepared,
    config: &SeqRecConfig,
    steps: usize,
) -> anyhow::Result<StepTimes> {
    let model = SeqRec::new(config.clone(), prepared.dataset.items.len())?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.stopping.seed);
    let seqs = training_sequences(prepared, config.variant);
    let mut opt =
        candle_nn::AdamW::new(model.varmap.all_vars(), candle_nn::ParamsAdamW::default())?;
    let mut t = StepTimes::default();
    let all: Vec<&Sequence> = seqs.iter().collect();
    for chunk in all.chunks(config.stopping.batch_size).take(steps) {
        let clock = Instant::now();
        let batch = model.batch(chunk, &mut rng);
        t.batch_s += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let loss = model.batch_loss(&batch, &mut rng)?;
        let _ = loss.to_scalar::<f32>()?;
        t.forward_s += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let grads = loss.backward()?;
        t.backward_s += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        opt.step(&grads)?;
        t.update_s += clock.elapsed().as_secs_f64();
    }
    Ok(t)
}

/// Each user's training sequence long enough to learn from.
fn training_sequences(prepared: &Prepared, variant: Variant) -> Vec<Sequence> {
    let min_len = match variant {
        Variant::SasRec => 2,
        Variant::Bert4Rec => 1,
    };
    prepared
        .dataset
        .users
        .iter()
        .map(|u| {
            prepared
                .train_sequence(u.id)
                .iter()
                .map(|i| token(i.item))
                .collect::<Vec<u32>>()
        })
        .filter(|s| s.len() >= min_len)
        .map(|tokens| Sequence {
            seen: match variant {
                Variant::SasRec => tokens.iter().copied().collect(),
                Variant::Bert4Rec => HashSet::new(),
            },
            tokens,
        })
        .collect()
}

/// Trains on the training split with Adam, validating after every epoch on the 1+9 validation
/// lists and keeping the weights of the best validation NDCG@5.
pub fn train(prepared: &Prepared, model: SeqRec) -> anyhow::Result<Trained<SeqRec>> {
    let config = &model.config;
    // A separate stream from initialisation, so changing the model shape does not reshuffle data.
    let mut rng = ChaCha8Rng::seed_from_u64(config.stopping.seed ^ 0x5eed_da7a);
    let seqs = training_sequences(prepared, config.variant);
    if seqs.is_empty() {
        bail!(
            "no user has a training sequence long enough for {}",
            config.name()
        );
    }
    let validation = sequential_validation(prepared, config.validation_stride)?;
    let schedule = Schedule {
        optimizer: candle_nn::ParamsAdamW {
            lr: config.lr,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: config.weight_decay,
        },
        budget_check: BudgetCheck::Epoch,
        stopping: config.stopping.clone(),
    };
    trainer::train(model, &seqs, &validation, &schedule, &mut rng)
}
