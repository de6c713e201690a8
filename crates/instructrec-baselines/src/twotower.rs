//! Two-tower matching model (issue 5), the miner of the `hard-negatives` protocol and a
//! matching stage of the server (saved and loaded as a directory by [`saved`]).
//!
//! User tower: user-id embedding + SASRec's causal transformer over the item-id history (the
//! same blocks as [`crate::seqrec`], not a copy) + a projection of the mean title vector of the
//! history. Item tower: item-id embedding + a projection of the title vector. Score: dot
//! product. Trained with a sampled softmax over in-batch negatives on (history prefix -> next
//! item) pairs of the training split.

pub mod saved;

use std::collections::HashMap;

use anyhow::bail;
use candle_core::{Device, Tensor};
use candle_nn::{Linear, Module, VarMap};
use instructrec_data::{ItemId, Prepared, UserId};
use instructrec_eval::{Case, Request, Scorer};
use instructrec_model::ops;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::nn::Init;
use crate::seqrec::{SeqRec, SeqRecConfig};
use crate::textrec::{TextFeatures, TextInput, TextSource};
use crate::trainer::{
    self, adamw, sequential_validation, BudgetCheck, Schedule, Stopping, Trainable, Trained,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoTowerConfig {
    /// The sequence encoder of the user tower (SASRec's shape; its own loss is not used).
    pub sequence: SeqRecConfig,
    pub text: TextSource,
    pub lr: f64,
    pub validation_stride: usize,
    /// The time budget is checked after every step.
    #[serde(flatten)]
    pub stopping: Stopping,
}

impl TwoTowerConfig {
    pub fn new(text: TextSource, seed: u64) -> Self {
        let mut sequence = SeqRecConfig::sasrec(seed);
        sequence.dropout = 0.1;
        Self {
            sequence,
            text,
            lr: 1e-3,
            validation_stride: 2,
            stopping: Stopping {
                batch_size: 256,
                max_epochs: 50,
                patience: Some(3),
                time_budget_s: 240.0,
                seed,
            },
        }
    }
}

pub struct TwoTower {
    config: TwoTowerConfig,
    /// The catalogue the model is built for, recorded when it is saved.
    catalogue: saved::Catalogue,
    seq: SeqRec,
    varmap: VarMap,
    text: TextFeatures,
    titles: Vec<String>,
    user_emb: Tensor,
    item_emb: Tensor,
    user_text: Linear,
    item_text: Linear,
    device: Device,
}

/// One training pair: a user's history prefix and the item that followed it.
pub struct NextItemPair {
    user: UserId,
    history: Vec<ItemId>,
    target: ItemId,
}

impl TwoTower {
    /// Creates the model; a pretrained encoder encodes every title once (or reads them from
    /// `title_cache`).
    pub fn new(
        config: TwoTowerConfig,
        prepared: &Prepared,
        input: TextInput,
    ) -> anyhow::Result<Self> {
        if config.stopping.batch_size < 2 || config.validation_stride == 0 {
            bail!("two-tower batch_size must be >= 2 and validation_stride >= 1");
        }
        let items = prepared.dataset.items.len();
        let seq = SeqRec::new(config.sequence.clone(), items)?;
        // A stream apart from the sequence encoder's, which is seeded by `config.sequence.stopping.seed`.
        let mut init = Init::new(config.stopping.seed ^ 0x2_70e5);
        let titles = prepared.titles();
        let text = TextFeatures::new(&config.text, input, &titles, &mut init)?;
        let d = config.sequence.dim;
        let std = 1.0 / (d as f32).sqrt();
        let user_emb = init.normal("user_emb".into(), (prepared.dataset.users.len(), d), std)?;
        let item_emb = init.normal("item_emb".into(), (items, d), std)?;
        let user_text = init.linear("user_text", text.dim(), d)?;
        let item_text = init.linear("item_text", text.dim(), d)?;
        Ok(Self {
            config,
            catalogue: saved::Catalogue::of(prepared),
            seq,
            varmap: init.varmap,
            text,
            titles,
            user_emb,
            item_emb,
            user_text,
            item_text,
            device: init.device,
        })
    }

    pub fn config(&self) -> &TwoTowerConfig {
        &self.config
    }

    /// Title vectors `[ids, text dim]` of the given items.
    fn title_features(&self, ids: &[u32]) -> anyhow::Result<Tensor> {
        Ok(match &self.text {
            TextFeatures::Frozen { items, .. } => {
                items.index_select(&Tensor::from_slice(ids, ids.len(), &self.device)?, 0)?
            }
            TextFeatures::Bag { .. } => {
                let titles: Vec<&str> = ids
                    .iter()
                    .map(|&i| self.titles[i as usize].as_str())
                    .collect();
                self.text.texts(&titles, &self.device)?
            }
        })
    }

    fn check_item(&self, item: ItemId) -> anyhow::Result<()> {
        if item.index() >= self.titles.len() {
            bail!(
                "item {} is outside the catalogue of {}",
                item.0,
                self.titles.len()
            );
        }
        Ok(())
    }

    /// `[users, dim]` user vectors, with gradients (dropout when `rng` is given). A `None` user
    /// (someone the model was not trained on, such as a visitor with a history) has no id
    /// embedding, a trained per-user offset, so the history alone represents them.
    fn user_vectors(
        &self,
        users: &[Option<UserId>],
        histories: &[&[ItemId]],
        rng: Option<&mut ChaCha8Rng>,
    ) -> anyhow::Result<Tensor> {
        let n = users.len();
        for &u in users.iter().flatten() {
            if u.index() >= self.user_emb.dims()[0] {
                bail!(
                    "user {} is not among the {} trained users",
                    u.0,
                    self.user_emb.dims()[0]
                );
            }
        }
        let ids: Vec<u32> = users.iter().map(|u| u.map_or(0, |u| u.0)).collect();
        let ids = Tensor::from_vec(ids, n, &self.device)?;
        let mut id_part = self.user_emb.index_select(&ids, 0)?;
        if users.iter().any(Option::is_none) {
            let known: Vec<f32> = users
                .iter()
                .map(|u| if u.is_some() { 1.0 } else { 0.0 })
                .collect();
            id_part = id_part.broadcast_mul(&Tensor::from_vec(known, (n, 1), &self.device)?)?;
        }
        let seq_part = self.seq.sequence_states(histories, rng)?;
        // Mean title vector of each history's last `max_len` items, as one matmul over the
        // distinct items of the batch.
        let l = self.config.sequence.max_len;
        let mut distinct: Vec<u32> = Vec::new();
        let mut column: HashMap<u32, usize> = HashMap::new();
        let mut cells: Vec<(usize, usize, f32)> = Vec::new();
        for (r, h) in histories.iter().enumerate() {
            let tail = &h[h.len().saturating_sub(l)..];
            for &i in tail {
                self.check_item(i)?;
                let c = *column.entry(i.0).or_insert_with(|| {
                    distinct.push(i.0);
                    distinct.len() - 1
                });
                cells.push((r, c, 1.0 / tail.len() as f32));
            }
        }
        let text_part = if distinct.is_empty() {
            Tensor::zeros((n, self.text.dim()), candle_core::DType::F32, &self.device)?
        } else {
            let mut weights = vec![0f32; n * distinct.len()];
            for (r, c, w) in cells {
                weights[r * distinct.len() + c] += w;
            }
            let weights = Tensor::from_vec(weights, (n, distinct.len()), &self.device)?;
            weights.matmul(&self.title_features(&distinct)?)?
        };
        Ok(((id_part + seq_part)? + self.user_text.forward(&text_part)?)?)
    }

    /// `[items, dim]` item vectors, with gradients.
    fn item_vectors(&self, items: &[u32]) -> anyhow::Result<Tensor> {
        let ids = Tensor::from_slice(items, items.len(), &self.device)?;
        let text = self.item_text.forward(&self.title_features(items)?)?;
        Ok((self.item_emb.index_select(&ids, 0)? + text)?)
    }

    /// `[items, dim]` vectors of the whole catalogue, by item index: fixed once trained, so a
    /// caller scoring many requests computes them once (every title's text goes through the
    /// item tower).
    pub fn catalogue_vectors(&self) -> anyhow::Result<Tensor> {
        let all: Vec<u32> = (0..self.titles.len() as u32).collect();
        Ok(self.item_vectors(&all)?.detach())
    }

    /// One score per catalogue item for each (user, history), against `catalogue` (from
    /// [`Self::catalogue_vectors`]); a `None` user is represented by the history alone.
    pub fn catalogue_scores(
        &self,
        users: &[Option<UserId>],
        histories: &[&[ItemId]],
        catalogue: &Tensor,
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        let u = self.user_vectors(users, histories, None)?.detach();
        Ok(u.matmul(&catalogue.t()?)?.to_vec2()?)
    }
}

impl Trainable for TwoTower {
    type Example = NextItemPair;

    /// In-batch sampled softmax: each pair's target against the other pairs' targets (the same
    /// item elsewhere in the batch is masked, not counted as a negative); a lone pair has
    /// nothing to be told apart from.
    fn loss(
        &self,
        pairs: &[&NextItemPair],
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<Option<Tensor>> {
        let n = pairs.len();
        if n < 2 {
            return Ok(None);
        }
        let users: Vec<Option<UserId>> = pairs.iter().map(|p| Some(p.user)).collect();
        let histories: Vec<&[ItemId]> = pairs.iter().map(|p| p.history.as_slice()).collect();
        let targets: Vec<u32> = pairs.iter().map(|p| p.target.0).collect();
        let u = self.user_vectors(&users, &histories, Some(rng))?;
        let v = self.item_vectors(&targets)?;
        let mut mask = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j && targets[i] == targets[j] {
                    mask[i * n + j] = -1e9;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (n, n), &self.device)?;
        let logits = (u.matmul(&v.t()?)? + mask)?;
        let logp = ops::log_softmax_last_dim(&logits)?;
        let diag: Vec<u32> = (0..n as u32).collect();
        let diag = Tensor::from_vec(diag, (n, 1), &self.device)?;
        Ok(Some(logp.gather(&diag, 1)?.mean_all()?.neg()?))
    }

    /// The sequence encoder's weights go beside this model's, to `<stem>.seq.safetensors`.
    fn parts(&self) -> Vec<(&'static str, &VarMap)> {
        let seq = self
            .seq
            .parts()
            .into_iter()
            .map(|(_, varmap)| ("seq", varmap));
        std::iter::once(("", &self.varmap)).chain(seq).collect()
    }
}

impl Scorer for TwoTower {
    fn name(&self) -> String {
        "two-tower".into()
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let mut out = self.score_batch(&[Request { case, candidates }])?;
        Ok(out.pop().unwrap_or_default())
    }

    fn score_batch(&self, requests: &[Request<'_>]) -> anyhow::Result<Vec<Vec<f32>>> {
        let users: Vec<Option<UserId>> = requests.iter().map(|r| Some(r.case.user)).collect();
        let histories: Vec<&[ItemId]> =
            requests.iter().map(|r| r.case.history.as_slice()).collect();
        let u = self.user_vectors(&users, &histories, None)?.detach();
        let mut out = Vec::with_capacity(requests.len());
        for (r, req) in requests.iter().enumerate() {
            if req.candidates.is_empty() {
                out.push(Vec::new());
                continue;
            }
            for &c in req.candidates {
                self.check_item(c)?;
            }
            let ids: Vec<u32> = req.candidates.iter().map(|c| c.0).collect();
            let v = self.item_vectors(&ids)?.detach();
            let s = v.matmul(&u.narrow(0, r, 1)?.t()?)?.squeeze(1)?;
            out.push(s.to_vec1()?);
        }
        Ok(out)
    }

    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        let run = || -> anyhow::Result<Vec<Vec<f32>>> {
            let users: Vec<Option<UserId>> = cases.iter().map(|c| Some(c.user)).collect();
            let histories: Vec<&[ItemId]> = cases.iter().map(|c| c.history.as_slice()).collect();
            self.catalogue_scores(&users, &histories, &self.catalogue_vectors()?)
        };
        Some(run())
    }
}

/// (prefix -> next item) pairs of every user's training sequence.
fn training_pairs(prepared: &Prepared) -> Vec<NextItemPair> {
    let mut pairs = Vec::new();
    for u in &prepared.dataset.users {
        let seq: Vec<ItemId> = prepared
            .train_sequence(u.id)
            .iter()
            .map(|i| i.item)
            .collect();
        for t in 1..seq.len() {
            pairs.push(NextItemPair {
                user: u.id,
                history: seq[..t].to_vec(),
                target: seq[t],
            });
        }
    }
    pairs
}

/// Trains with AdamW, validating after every epoch on the 1+9 validation lists and keeping the
/// weights of the best validation NDCG@5; the time budget is checked after every step.
pub fn train(prepared: &Prepared, model: TwoTower) -> anyhow::Result<Trained<TwoTower>> {
    let config = &model.config;
    let mut rng = ChaCha8Rng::seed_from_u64(config.stopping.seed ^ 0x5eed_da7a);
    let pairs = training_pairs(prepared);
    if pairs.is_empty() {
        bail!("no user has two training interactions: no two-tower training pair");
    }
    let validation = sequential_validation(prepared, config.validation_stride)?;
    let schedule = Schedule {
        optimizer: adamw(config.lr),
        budget_check: BudgetCheck::Step,
        stopping: config.stopping.clone(),
    };
    trainer::train(model, &pairs, &validation, &schedule, &mut rng)
}
