//! The one training loop of the neural baselines, as RecBole's one trainer serves all its
//! models: AdamW over a seeded batch order, validation HR@1 / NDCG@5 on 1+9 lists after every
//! epoch, early stopping with the best epoch's weights restored (or the last weights kept), a
//! time budget, the epoch log that reports print, and the checkpoint a later run reuses when
//! configuration and dataset match. A model takes part by implementing [`Trainable`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use instructrec_data::atomic::write_atomic;
use instructrec_data::{Fold, Prepared};
use instructrec_eval::harness::{build_cases, evaluate_sampled, EvalCase};
use instructrec_eval::report::EpochLog;
use instructrec_eval::{Protocol, Scorer, Setting, TrainingLog, TrainingStop};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::nn::{self, Snapshot};

/// A model the loop trains, checkpoints and hashes.
pub trait Trainable: Scorer {
    /// One training example; the loop batches them in a seeded order.
    type Example;

    /// The loss of one batch, with dropout masks and negatives drawn from `rng`; `None` skips a
    /// batch too small to learn from.
    fn loss(
        &self,
        batch: &[&Self::Example],
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<Option<Tensor>>;

    /// Every weight, in named parts: the unnamed part is stored at the checkpoint path, a part
    /// named `n` beside it as `<stem>.n.safetensors`.
    fn parts(&self) -> Vec<(&'static str, &VarMap)>;

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        for (name, varmap) in self.parts() {
            nn::save(varmap, &part_path(path, name))?;
        }
        Ok(())
    }

    fn load(&mut self, path: &Path) -> anyhow::Result<()> {
        for (name, varmap) in self.parts() {
            nn::load(varmap, &part_path(path, name))?;
        }
        Ok(())
    }

    /// SHA-256 of every weight, the same whether trained or loaded; a model of several parts
    /// hashes its parts' hashes.
    fn weights_hash(&self) -> anyhow::Result<String> {
        let parts = self.parts();
        if let [(_, varmap)] = parts[..] {
            return nn::hash(varmap);
        }
        let mut h = Sha256::new();
        for (_, varmap) in parts {
            h.update(nn::hash(varmap)?.as_bytes());
        }
        Ok(hex::encode(h.finalize()))
    }
}

pub(crate) fn part_path(path: &Path, name: &str) -> PathBuf {
    if name.is_empty() {
        path.to_path_buf()
    } else {
        path.with_extension(format!("{name}.safetensors"))
    }
}

/// How a neural baseline's training runs and stops: the same settings for every model, held
/// in (and serialised flat with) each model's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopping {
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Epochs without a better validation NDCG@5 before training stops and the best epoch's
    /// weights come back; `None` runs every epoch and keeps the last weights.
    pub patience: Option<usize>,
    /// Seconds after which training stops (when it is checked is the model's [`BudgetCheck`]).
    pub time_budget_s: f64,
    /// Seeds the model's initialisation and batch order; recorded in the log.
    pub seed: u64,
}

/// What the loop reads from a model's configuration.
pub(crate) struct Schedule {
    pub(crate) optimizer: ParamsAdamW,
    pub(crate) budget_check: BudgetCheck,
    pub(crate) stopping: Stopping,
}

/// AdamW at `lr` without weight decay, candle's defaults otherwise.
pub(crate) fn adamw(lr: f64) -> ParamsAdamW {
    ParamsAdamW {
        lr,
        weight_decay: 0.0,
        ..Default::default()
    }
}

/// When training stops for time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetCheck {
    /// After the first epoch that ends past the budget (not counted when it was the last one).
    Epoch,
    /// After the first step that ends past the budget, cutting its epoch short.
    Step,
}

/// A trained model, with the epoch log and the seconds training took.
pub struct Trained<M> {
    pub model: M,
    pub log: TrainingLog,
    pub train_wall_s: f64,
}

/// Trains `model` on `examples` with AdamW, validating on `validation` after every epoch. The
/// clock starts here, after the model and its data exist (a pretrained encoder's title vectors
/// take minutes on one core and are cached for later runs).
pub(crate) fn train<M: Trainable>(
    model: M,
    examples: &[M::Example],
    validation: &[EvalCase],
    schedule: &Schedule,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Trained<M>> {
    let stopping = &schedule.stopping;
    let start = Instant::now();
    let name = model.name();
    if stopping.max_epochs == 0 {
        bail!("{name}: max_epochs must be at least 1");
    }
    let vars: Vec<Var> = model
        .parts()
        .into_iter()
        .flat_map(|(_, varmap)| varmap.all_vars())
        .collect();
    let mut opt = candle_nn::AdamW::new(vars, schedule.optimizer.clone())?;
    let steps = examples.len().div_ceil(stopping.batch_size);
    let pb = ProgressBar::new((steps * stopping.max_epochs) as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} steps {msg}",
        )
        .expect("valid template"),
    );
    pb.set_prefix(name.clone());
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut epochs = Vec::new();
    let mut best: Option<(f64, usize, Vec<Snapshot>)> = None;
    let mut stop = TrainingStop::MaxEpochs;
    for epoch in 1..=stopping.max_epochs {
        order.shuffle(rng);
        let (mut loss_sum, mut done) = (0.0, 0usize);
        let mut out_of_time = false;
        for chunk in order.chunks(stopping.batch_size) {
            let batch: Vec<&M::Example> = chunk.iter().map(|&i| &examples[i]).collect();
            let Some(loss) = model.loss(&batch, rng)? else {
                continue;
            };
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                bail!("{name} training loss became {value} in epoch {epoch}");
            }
            loss_sum += value;
            done += 1;
            opt.backward_step(&loss)?;
            pb.inc(1);
            if schedule.budget_check == BudgetCheck::Step
                && start.elapsed().as_secs_f64() > stopping.time_budget_s
            {
                out_of_time = true;
                break;
            }
        }
        let metrics = evaluate_sampled(&model, validation, 256)?;
        let elapsed_s = start.elapsed().as_secs_f64();
        let log = EpochLog {
            epoch,
            train_loss: loss_sum / done.max(1) as f64,
            val_hr1: metrics.hr1,
            val_ndcg5: metrics.ndcg5,
            elapsed_s,
        };
        pb.set_message(format!(
            "epoch {epoch} loss {:.4} val HR@1 {:.4} NDCG@5 {:.4}",
            log.train_loss, log.val_hr1, log.val_ndcg5
        ));
        tracing::info!(
            model = name,
            epoch,
            loss = log.train_loss,
            val_hr1 = log.val_hr1,
            val_ndcg5 = log.val_ndcg5,
            elapsed_s,
            "epoch done"
        );
        epochs.push(log);
        out_of_time |= schedule.budget_check == BudgetCheck::Epoch
            && elapsed_s > stopping.time_budget_s
            && epoch < stopping.max_epochs;
        if let Some(patience) = stopping.patience {
            if best.as_ref().is_none_or(|(b, _, _)| metrics.ndcg5 > *b) {
                best = Some((metrics.ndcg5, epoch, snapshot(&model)?));
            } else if epoch - best.as_ref().map_or(0, |b| b.1) >= patience {
                stop = TrainingStop::Converged;
                break;
            }
        }
        if out_of_time {
            stop = TrainingStop::TimeBudget;
            break;
        }
    }
    pb.finish_and_clear();
    let best_epoch = match best {
        Some((_, epoch, weights)) => {
            restore(&model, &weights)?;
            epoch
        }
        None => epochs.len(),
    };
    Ok(Trained {
        model,
        log: TrainingLog {
            seed: stopping.seed,
            epochs,
            best_epoch,
            stop,
        },
        train_wall_s: start.elapsed().as_secs_f64(),
    })
}

fn snapshot<M: Trainable>(model: &M) -> anyhow::Result<Vec<Snapshot>> {
    model
        .parts()
        .into_iter()
        .map(|(_, varmap)| nn::snapshot(varmap))
        .collect()
}

fn restore<M: Trainable>(model: &M, weights: &[Snapshot]) -> anyhow::Result<()> {
    for ((_, varmap), part) in model.parts().into_iter().zip(weights) {
        nn::restore(varmap, part)?;
    }
    Ok(())
}

/// Every `stride`-th user's 1+9 validation list of the sequential protocol.
pub(crate) fn sequential_validation(
    prepared: &Prepared,
    stride: usize,
) -> anyhow::Result<Vec<EvalCase>> {
    let all = build_cases(
        prepared,
        Protocol::Sequential,
        Fold::Validation,
        Setting::Sampled { size: 10 },
    )?;
    Ok(all.into_iter().step_by(stride).collect())
}

/// What is stored beside a checkpoint's weights, so it is reused only for the same data and
/// configuration.
#[derive(Serialize, Deserialize)]
struct CheckpointMeta<C> {
    config: C,
    config_hash: String,
    dataset_checksums: std::collections::BTreeMap<String, String>,
    train_wall_s: f64,
    training: TrainingLog,
}

/// A checkpoint in a directory: `<stem>.safetensors` (with any further parts beside it) and
/// `<stem>.json`, what it was trained from.
pub(crate) struct Checkpoint {
    weights: PathBuf,
    meta: PathBuf,
}

impl Checkpoint {
    pub(crate) fn new(dir: &Path, stem: &str) -> Self {
        Self {
            weights: dir.join(format!("{stem}.safetensors")),
            meta: dir.join(format!("{stem}.json")),
        }
    }
}

/// Loads `model`'s weights from `checkpoint` when it was trained from the configuration whose
/// hash is `config_hash` on this dataset; otherwise trains the model with `train` and saves it
/// there. Says which through the second value (the weights loaded).
pub(crate) fn train_or_load<M: Trainable, C: Serialize>(
    mut model: M,
    train: impl FnOnce(M) -> anyhow::Result<Trained<M>>,
    checkpoint: Option<&Checkpoint>,
    config: &C,
    config_hash: &str,
    prepared: &Prepared,
) -> anyhow::Result<(Trained<M>, Option<PathBuf>)> {
    let Some(checkpoint) = checkpoint else {
        return Ok((train(model)?, None));
    };
    let name = model.name();
    if let Some(meta) = matching_meta(checkpoint, config_hash, prepared)? {
        model.load(&checkpoint.weights)?;
        tracing::info!(model = name, path = %checkpoint.weights.display(), "loaded checkpoint");
        let trained = Trained {
            model,
            log: meta.training,
            train_wall_s: meta.train_wall_s,
        };
        return Ok((trained, Some(checkpoint.weights.clone())));
    }
    let trained = train(model)?;
    trained.model.save(&checkpoint.weights)?;
    let meta = CheckpointMeta {
        config,
        config_hash: config_hash.to_string(),
        dataset_checksums: prepared.manifest.checksums.clone(),
        train_wall_s: trained.train_wall_s,
        training: trained.log.clone(),
    };
    let path = &checkpoint.meta;
    write_atomic(path, serde_json::to_string_pretty(&meta)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((trained, None))
}

/// The stored metadata when the checkpoint exists and was made with this configuration and
/// dataset.
fn matching_meta(
    checkpoint: &Checkpoint,
    config_hash: &str,
    prepared: &Prepared,
) -> anyhow::Result<Option<CheckpointMeta<IgnoredAny>>> {
    let path = &checkpoint.meta;
    if !(checkpoint.weights.exists() && path.exists()) {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let meta: CheckpointMeta<IgnoredAny> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if meta.config_hash == config_hash && meta.dataset_checksums == prepared.manifest.checksums {
        return Ok(Some(meta));
    }
    tracing::warn!(
        path = %path.display(),
        "checkpoint was made with another configuration or dataset; training anew"
    );
    Ok(None)
}
