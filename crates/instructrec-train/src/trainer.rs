//! The training loop: negative log-likelihood of the target given the source, fused AdamW,
//! warm-up + decay schedule, gradient accumulation, global-norm clipping, validation, and
//! atomic checkpoints that resume bit for bit.
//!
//! Everything random is a function of the run's seed and a position: the batch order of epoch
//! `e` comes from (seed, e), the dropout masks of micro-batch `k` from (seed, k). A checkpoint
//! therefore only has to record positions (epoch, step within the epoch, micro-batch count)
//! besides the weights and the optimizer moments.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use instructrec_instructions::LineFilter;
use instructrec_model::{seq2seq_nll, DeviceSpec, Dropout, Seq2Seq};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, OPTIMIZER_FILE, STATE_FILE};
use crate::compose::ItemComposition;
use crate::data::{self, derive_seed, TokenizedExample, Truncation, STREAM_DROPOUT};
use crate::error::{io_err, Result, TrainError};
use crate::lora::{Lora, LoraConfig};
use crate::optimizer::{model_params, AdamWConfig, FusedAdamW, Param};
use crate::schedule::{Decay, LrSchedule};

pub const LAST_DIR: &str = "last";
pub const BEST_DIR: &str = "best";
const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub epochs: usize,
    /// Optimizer steps at which to stop (and where the schedule ends) if before the last epoch.
    pub max_steps: Option<u64>,
    /// Micro-batch size.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub decay: Decay,
    /// The learning rate at the end of the schedule, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    pub adamw: AdamWConfig,
    pub max_grad_norm: Option<f64>,
    pub max_source_len: usize,
    pub max_target_len: usize,
    /// Dropout rate during training; `None` takes the model config's.
    pub dropout: Option<f32>,
    /// Batches per length-sorting window (1 = no length bucketing).
    pub bucket_batches: usize,
    /// Train low-rank adapters on these weights instead of every parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    /// Item tokens' rows are composed from free rows and their titles' pieces
    /// ([`ItemComposition`]); set by [`Trainer::compose_item_tokens`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compose_item_tokens: bool,
    /// The composed rows also hold the pieces of their items' category labels (those that at
    /// most half the catalogue carries), so that a query naming a category reaches every item
    /// filed under it, including items never asked for by that name in training.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compose_categories: bool,
    /// Which instruction lines the examples were read with; `None` when not from instruction
    /// lines (span corruption) or not recorded (checkpoints made before it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<LineFilter>,
    #[serde(flatten)]
    pub run: RunControl,
}

/// Settings that change when work happens but never the weights a run ends with; they may differ
/// between a run and its resumption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunControl {
    /// Wall-clock budget of this invocation; training stops with a checkpoint when it is spent.
    pub time_budget: Option<Duration>,
    /// Write `last/` every this many optimizer steps (and always at each epoch end).
    pub save_every: Option<u64>,
    /// Validate every this many optimizer steps (and always at each epoch end).
    pub eval_every: Option<u64>,
    /// Validate the starting weights before the first step, so that `best/` is never worse on
    /// validation than the checkpoint a tuning run starts from.
    #[serde(default)]
    pub validate_start: bool,
    pub valid_batch_size: usize,
    pub progress: bool,
    /// Where the steps run. A device changes only the float rounding, not the run, so a run
    /// started on the CPU may resume on a GPU.
    #[serde(default)]
    pub device: DeviceSpec,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            epochs: 3,
            max_steps: None,
            batch_size: 16,
            grad_accum: 1,
            lr: 1e-3,
            warmup_steps: 100,
            decay: Decay::Linear,
            min_lr_ratio: 0.0,
            adamw: AdamWConfig::default(),
            max_grad_norm: Some(1.0),
            max_source_len: 512,
            max_target_len: 64,
            dropout: None,
            bucket_batches: 50,
            lora: None,
            compose_item_tokens: false,
            compose_categories: false,
            lines: None,
            run: RunControl {
                time_budget: None,
                save_every: Some(500),
                eval_every: None,
                validate_start: false,
                valid_batch_size: 32,
                progress: true,
                device: DeviceSpec::Cpu,
            },
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.batch_size == 0 || self.grad_accum == 0 || self.run.valid_batch_size == 0 {
            return bad("batch sizes and gradient accumulation must be positive");
        }
        if self.epochs == 0 || self.max_steps == Some(0) {
            return bad("nothing to do: zero epochs or zero steps");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("learning rate must be positive");
        }
        if self.dropout.is_some_and(|p| !(0.0..1.0).contains(&p)) {
            return bad("dropout must be in [0, 1)");
        }
        Ok(())
    }

    /// Whether a run of `epochs` epochs and at most `max_steps` steps (`None`: no cap) goes at
    /// least as far as this configuration does, so that it can extend a run made with it.
    pub fn runs_no_shorter(&self, epochs: usize, max_steps: Option<u64>) -> bool {
        let steps_ok = match (self.max_steps, max_steps) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(before), Some(now)) => now >= before,
        };
        epochs >= self.epochs && steps_ok
    }
}

/// Why a run returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// All epochs (or `max_steps`) done.
    Completed,
    TimeBudget,
    /// The `after_step` hook asked to stop.
    Requested,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: u64,
    pub epoch: usize,
    /// Mean training loss of the last steps; none for the starting weights (step 0).
    pub train_loss: Option<f64>,
    pub valid_loss: Option<f64>,
    /// The caller's ranking metric (e.g. HR@1 on a validation sample), when one was given.
    pub metric: Option<f64>,
}

/// Everything besides weights and optimizer moments that a resumed run needs (and what a
/// person wants to know about a checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: u32,
    /// Optimizer steps taken.
    pub step: u64,
    /// The epoch in progress (0-based); equals `config.epochs` when training is complete.
    pub epoch: usize,
    /// Optimizer steps already taken within `epoch`, i.e. position in that epoch's batch order.
    pub step_in_epoch: usize,
    /// Micro-batches consumed so far; micro-batch `k` draws its dropout masks from a generator
    /// seeded with (seed, k).
    pub micro_step: u64,
    pub seed: u64,
    pub total_steps: u64,
    pub best_metric: Option<f64>,
    pub best_step: Option<u64>,
    /// Training wall time summed over all invocations.
    pub elapsed_secs: f64,
    /// Fingerprint of the tokenized training set.
    pub data_fingerprint: u64,
    pub train_examples: usize,
    pub truncated: Truncation,
    pub history: Vec<EvalRecord>,
    pub config: TrainConfig,
}

impl TrainerState {
    /// Whether the run reached the end of its schedule (rather than stopping on its budget).
    pub fn finished(&self) -> bool {
        self.epoch >= self.config.epochs || self.step >= self.total_steps
    }
}

/// Fails unless the run in `out_dir` reached the end of its schedule: what comes after a stage
/// stopped by its time budget would start from a different model than the recipe's.
pub fn ensure_finished(out_dir: &Path) -> Result<()> {
    let state = read_state(&out_dir.join(LAST_DIR))?;
    if state.finished() {
        return Ok(());
    }
    Err(TrainError::Unfinished {
        path: out_dir.to_path_buf(),
        step: state.step,
        total: state.total_steps,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// What the `after_step` hook sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    pub step: u64,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Parameters that received no gradient in this step (a model bug unless frozen).
    pub without_grad: usize,
}

pub type ValidationError = Box<dyn std::error::Error + Send + Sync>;

/// Scores a model on the caller's held-out ranking examples (e.g. HR@1); higher is better.
pub type Metric<'a> = dyn FnMut(&Seq2Seq) -> std::result::Result<f64, ValidationError> + 'a;

/// Caller-supplied extras. `metric` scores the model on held-out ranking examples (higher is
/// better) and then decides which checkpoint is `best/`; without it, the lowest validation loss
/// does.
#[derive(Default)]
pub struct Hooks<'a> {
    pub metric: Option<&'a mut Metric<'a>>,
    pub after_step: Option<&'a mut dyn FnMut(&StepReport) -> Control>,
}

/// Bytes a training run holds, by what for ([`Trainer::memory_estimate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
    /// Of the batch with the longest source and target of the data.
    pub activations: f64,
    pub data: f64,
}

impl MemoryEstimate {
    pub fn total(&self) -> f64 {
        self.weights + self.gradients + self.optimizer + self.activations + self.data
    }
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: f64| b / (1 << 20) as f64;
        write!(
            f,
            "about {:.0} MiB: weights {:.0}, gradients {:.0}, optimizer {:.0}, activations of the \
             longest batch {:.0}, token ids {:.0}",
            mb(self.total()),
            mb(self.weights),
            mb(self.gradients),
            mb(self.optimizer),
            mb(self.activations),
            mb(self.data)
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub stop: StopReason,
    pub state: TrainerState,
    pub last_dir: PathBuf,
    pub best_dir: Option<PathBuf>,
}

/// What the optimizer updates: the adapters when LoRA is on, else every parameter, with the
/// free rows standing in for the embeddings when item tokens are composed.
fn trainable(model: &Seq2Seq, lora: Option<&Lora>, items: Option<&ItemComposition>) -> Vec<Param> {
    match (lora, items) {
        (Some(lora), _) => lora.params(),
        (None, None) => model_params(model),
        (None, Some(items)) => model_params(model)
            .into_iter()
            .map(|p| items.stand_in(p))
            .collect(),
    }
}

pub struct Trainer {
    model: Seq2Seq,
    lora: Option<Lora>,
    items: Option<ItemComposition>,
    opt: FusedAdamW,
    cfg: TrainConfig,
    state: TrainerState,
    train: Vec<TokenizedExample>,
    valid: Vec<TokenizedExample>,
    out_dir: PathBuf,
    schedule: LrSchedule,
}

/// What a run holds besides its model and data: created by [`Trainer::new`], read back from a
/// checkpoint by [`Trainer::resume`].
struct RunParts {
    lora: Option<Lora>,
    items: Option<ItemComposition>,
    opt: FusedAdamW,
    cfg: TrainConfig,
    state: TrainerState,
}

impl Trainer {
    fn assemble(
        model: Seq2Seq,
        run: RunParts,
        (train, valid): (Vec<TokenizedExample>, Vec<TokenizedExample>),
        out_dir: &Path,
    ) -> Self {
        Self {
            schedule: schedule(&run.cfg, run.state.total_steps),
            model,
            lora: run.lora,
            items: run.items,
            opt: run.opt,
            cfg: run.cfg,
            state: run.state,
            train,
            valid,
            out_dir: out_dir.to_path_buf(),
        }
    }

    /// A fresh run writing checkpoints under `out_dir` (`last/`, `best/`).
    pub fn new(
        model: Seq2Seq,
        train: Vec<TokenizedExample>,
        truncated: Truncation,
        valid: Vec<TokenizedExample>,
        cfg: TrainConfig,
        out_dir: &Path,
    ) -> Result<Self> {
        cfg.validate()?;
        if train.is_empty() {
            return Err(TrainError::Config("no training examples".into()));
        }
        let lora = cfg
            .lora
            .as_ref()
            .map(|l| Lora::attach(&model, l, cfg.seed))
            .transpose()?;
        let opt = FusedAdamW::new(trainable(&model, lora.as_ref(), None), cfg.adamw)?;
        let total_steps = total_steps(&cfg, train.len());
        let state = TrainerState {
            format: STATE_FORMAT,
            step: 0,
            epoch: 0,
            step_in_epoch: 0,
            micro_step: 0,
            seed: cfg.seed,
            total_steps,
            best_metric: None,
            best_step: None,
            elapsed_secs: 0.0,
            data_fingerprint: data::fingerprint(&train),
            train_examples: train.len(),
            truncated,
            history: Vec::new(),
            config: cfg.clone(),
        };
        let run = RunParts {
            lora,
            items: None,
            opt,
            cfg,
            state,
        };
        Ok(Self::assemble(model, run, (train, valid), out_dir))
    }

    /// Continues the run whose checkpoint is `out_dir/last`. `model` must have been loaded from
    /// that checkpoint (with LoRA: the model the run started from, since the checkpoint holds
    /// merged weights), and `train` must be the same examples; `run` may differ from the
    /// original run's (a new time budget, say), nothing else in the configuration may, except
    /// through [`Trainer::extend`].
    pub fn resume(
        model: Seq2Seq,
        train: Vec<TokenizedExample>,
        valid: Vec<TokenizedExample>,
        run: RunControl,
        out_dir: &Path,
    ) -> Result<Self> {
        let last = checkpoint::recover(&out_dir.join(LAST_DIR))?.ok_or_else(|| {
            TrainError::Checkpoint {
                path: out_dir.join(LAST_DIR),
                message: "no checkpoint to resume from".into(),
            }
        })?;
        let state = read_state(&last)?;
        let fingerprint = data::fingerprint(&train);
        if fingerprint != state.data_fingerprint || train.len() != state.train_examples {
            return Err(TrainError::Checkpoint {
                path: last,
                message: format!(
                    "the training data differ from the checkpoint's ({} examples, fingerprint \
                     {:016x}; now {} examples, {fingerprint:016x}): same file and tokenizer needed",
                    state.train_examples,
                    state.data_fingerprint,
                    train.len()
                ),
            });
        }
        let mut cfg = state.config.clone();
        cfg.run = run;
        let lora = cfg
            .lora
            .as_ref()
            .map(|l| Lora::load(&model, l, &last))
            .transpose()?;
        let items = cfg
            .compose_item_tokens
            .then(|| ItemComposition::load(&model, &last))
            .transpose()?;
        let mut opt = FusedAdamW::new(trainable(&model, lora.as_ref(), items.as_ref()), cfg.adamw)?;
        let moments =
            candle_core::safetensors::load(last.join(OPTIMIZER_FILE), &candle_core::Device::Cpu)
                .map_err(|e| TrainError::Checkpoint {
                    path: last.join(OPTIMIZER_FILE),
                    message: e.to_string(),
                })?;
        opt.load_state(&moments, state.step)?;
        tracing::info!(
            "resuming from {} at step {} (epoch {}, {} steps into it)",
            last.display(),
            state.step,
            state.epoch + 1,
            state.step_in_epoch
        );
        let run = RunParts {
            lora,
            items,
            opt,
            cfg,
            state,
        };
        Ok(Self::assemble(model, run, (train, valid), out_dir))
    }

    /// Continues a resumed run to `epochs` epochs and at most `max_steps` steps, more than it was
    /// started with; a finished run goes on. The schedule is recomputed for the new end, so with
    /// linear or cosine decay the remaining steps follow the longer schedule from where the
    /// shorter one left off, and the weights differ from those of a run given the longer schedule
    /// from the start; with constant decay (and warm-up done) they are the same. Shortening a run
    /// is refused.
    pub fn extend(mut self, epochs: usize, max_steps: Option<u64>) -> Result<Self> {
        if (epochs, max_steps) == (self.cfg.epochs, self.cfg.max_steps) {
            return Ok(self);
        }
        if !self.cfg.runs_no_shorter(epochs, max_steps) {
            return Err(TrainError::Config(format!(
                "a run of {} epochs and {:?} steps cannot be cut to {epochs} epochs and \
                 {max_steps:?} steps",
                self.cfg.epochs, self.cfg.max_steps
            )));
        }
        for cfg in [&mut self.cfg, &mut self.state.config] {
            cfg.epochs = epochs;
            cfg.max_steps = max_steps;
        }
        self.state.total_steps = total_steps(&self.cfg, self.train.len());
        self.schedule = schedule(&self.cfg, self.state.total_steps);
        tracing::info!(
            "extending the run to {} steps (step {} done)",
            self.state.total_steps,
            self.state.step
        );
        Ok(self)
    }

    /// Trains item tokens composed from free rows and their titles' pieces (see
    /// [`ItemComposition`]); only before the first step, and not with LoRA.
    pub fn compose_item_tokens(mut self, items: ItemComposition) -> Result<Self> {
        if self.lora.is_some() || self.state.step > 0 {
            return Err(TrainError::Config(
                "composed item tokens need a fresh run without LoRA".into(),
            ));
        }
        self.opt = FusedAdamW::new(trainable(&self.model, None, Some(&items)), self.cfg.adamw)?;
        self.cfg.compose_item_tokens = true;
        self.state.config.compose_item_tokens = true;
        self.items = Some(items);
        Ok(self)
    }

    pub fn model(&self) -> &Seq2Seq {
        &self.model
    }

    pub fn into_model(self) -> Seq2Seq {
        self.model
    }

    /// What a run will hold in memory, estimated from its shapes before it starts.
    pub fn memory_estimate(&self) -> MemoryEstimate {
        let bytes = |n: usize| 4.0 * n as f64;
        let weights: usize = self
            .model
            .varmap
            .all_vars()
            .iter()
            .map(|v| v.elem_count())
            .sum();
        let trained: usize = self.opt.params().map(|p| p.var.elem_count()).sum();
        let longest =
            |f: fn(&TokenizedExample) -> usize| self.train.iter().map(f).max().unwrap_or(0);
        let batch = instructrec_model::Workload::batch(
            self.cfg.batch_size,
            longest(|e| e.source.len()),
            longest(|e| e.target.len()),
        );
        // Token ids as u32, and each example's two vectors (pointer, capacity, length).
        let data = self
            .train
            .iter()
            .chain(&self.valid)
            .map(|e| bytes(e.source.len() + e.target.len()) + 48.0)
            .sum();
        MemoryEstimate {
            weights: bytes(weights),
            // candle computes every weight's gradient, frozen ones included.
            gradients: bytes(weights.max(trained)),
            // AdamW's two moments and the accumulated gradient of each trained tensor.
            optimizer: 3.0 * bytes(trained),
            activations: self.model.config().activation_bytes(&batch),
            data,
        }
    }

    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    pub fn run(&mut self, hooks: &mut Hooks<'_>) -> Result<TrainReport> {
        let started = Instant::now();
        let elapsed_before = self.state.elapsed_secs;
        let steps_per_epoch = steps_per_epoch(&self.cfg, self.train.len());
        let lengths: Vec<usize> = self.train.iter().map(|e| e.source.len()).collect();
        let dropout_rate = self
            .cfg
            .dropout
            .unwrap_or(self.model.model.config().dropout_rate as f32);
        let device = self.model.model.device().clone();
        let start_id = self.model.model.config().decoder_start_token_id;
        let bar = progress_bar(&self.cfg, self.state.total_steps, self.state.step);
        let mut window = LossWindow::default();
        let mut stop = StopReason::Completed;
        // A checkpoint that records composition must carry its free rows, or it cannot resume.
        if self.cfg.compose_item_tokens && self.items.is_none() {
            return Err(TrainError::Config(
                "compose_item_tokens is set but no composition was given \
                 (Trainer::compose_item_tokens)"
                    .into(),
            ));
        }
        if self.cfg.run.validate_start && self.state.step == 0 && self.state.history.is_empty() {
            self.validate(None, hooks)?;
        }

        'epochs: while self.state.epoch < self.cfg.epochs
            && self.state.step < self.state.total_steps
        {
            let batches = data::epoch_batches(
                &lengths,
                self.cfg.batch_size,
                self.cfg.bucket_batches,
                self.cfg.seed,
                self.state.epoch as u64,
            );
            let groups: Vec<&[Vec<usize>]> = batches.chunks(self.cfg.grad_accum).collect();
            debug_assert_eq!(groups.len() as u64, steps_per_epoch);
            while self.state.step_in_epoch < groups.len() {
                let group = groups[self.state.step_in_epoch];
                let step_started = Instant::now();
                let mut tokens = 0usize;
                let mut step_loss = 0.0;
                for batch_idx in group {
                    let members: Vec<&TokenizedExample> =
                        batch_idx.iter().map(|&i| &self.train[i]).collect();
                    let batch = data::collate(&members, start_id, &device)?;
                    let mut dropout = Dropout::new(
                        dropout_rate,
                        derive_seed(self.cfg.seed, STREAM_DROPOUT, self.state.micro_step),
                    );
                    let loss = batch.mean_loss(&self.model.model, Some(&mut dropout))?;
                    let mut grads = loss.backward()?;
                    if let Some(lora) = &self.lora {
                        lora.add_grads(&mut grads)?;
                    }
                    if let Some(items) = &self.items {
                        items.add_grads(&mut grads)?;
                    }
                    self.opt.accumulate(&grads, 1.0 / group.len() as f32)?;
                    step_loss += loss.to_scalar::<f32>()? as f64 / group.len() as f64;
                    tokens += batch.source_tokens + batch.target_tokens;
                    self.state.micro_step += 1;
                }
                let lr = self.schedule.lr(self.state.step + 1);
                let stats = self.opt.step(lr, self.cfg.max_grad_norm)?;
                if let Some(lora) = &self.lora {
                    lora.merge()?;
                }
                if let Some(items) = &self.items {
                    items.merge()?;
                }
                if stats.without_grad > 0 && self.state.step == 0 {
                    tracing::warn!("{} parameters received no gradient", stats.without_grad);
                }
                self.state.step += 1;
                self.state.step_in_epoch += 1;
                window.push(step_loss, tokens, step_started.elapsed());
                bar.set_position(self.state.step);
                bar.set_message(format!(
                    "epoch {} loss {:.4} lr {lr:.2e} {:.0} tok/s",
                    self.state.epoch + 1,
                    window.loss(),
                    window.tokens_per_sec()
                ));
                self.state.elapsed_secs = elapsed_before + started.elapsed().as_secs_f64();

                let report = StepReport {
                    step: self.state.step,
                    epoch: self.state.epoch,
                    loss: step_loss,
                    lr,
                    grad_norm: stats.grad_norm,
                    without_grad: stats.without_grad,
                };
                let requested = hooks
                    .after_step
                    .as_mut()
                    .is_some_and(|f| f(&report) == Control::Stop);
                let over_budget = self
                    .cfg
                    .run
                    .time_budget
                    .is_some_and(|b| started.elapsed() >= b);
                let done = self.state.step >= self.state.total_steps;
                let epoch_done = self.state.step_in_epoch == groups.len();
                if epoch_done {
                    self.state.epoch += 1;
                    self.state.step_in_epoch = 0;
                }
                // A run stopped by its budget is validated too, so that `best/` can be the
                // weights it ends with rather than those of up to --eval-every steps before.
                if epoch_done
                    || done
                    || over_budget
                    || self
                        .cfg
                        .run
                        .eval_every
                        .is_some_and(|n| self.state.step.is_multiple_of(n))
                {
                    self.validate(Some(window.loss()), hooks)?;
                }
                if epoch_done
                    || done
                    || requested
                    || over_budget
                    || self
                        .cfg
                        .run
                        .save_every
                        .is_some_and(|n| self.state.step.is_multiple_of(n))
                {
                    self.save_last()?;
                }
                if requested || over_budget {
                    stop = if requested {
                        StopReason::Requested
                    } else {
                        StopReason::TimeBudget
                    };
                    break 'epochs;
                }
                if done {
                    break 'epochs;
                }
                if epoch_done {
                    break;
                }
            }
        }
        bar.finish_and_clear();
        let best = self.out_dir.join(BEST_DIR);
        Ok(TrainReport {
            stop,
            state: self.state.clone(),
            last_dir: self.out_dir.join(LAST_DIR),
            best_dir: best.is_dir().then_some(best),
        })
    }

    /// Mean token NLL over the validation examples, without dropout.
    pub fn validation_loss(&self) -> Result<Option<f64>> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        let device = self.model.model.device();
        let start_id = self.model.model.config().decoder_start_token_id;
        let (mut sum, mut count) = (0.0f64, 0usize);
        for chunk in self.valid.chunks(self.cfg.run.valid_batch_size) {
            let members: Vec<&TokenizedExample> = chunk.iter().collect();
            let batch = data::collate(&members, start_id, device)?;
            let logits = self.model.model.forward(
                &batch.input_ids,
                &batch.attention_mask,
                &batch.decoder_input_ids,
                None,
            )?;
            let (nll, n) = seq2seq_nll(&logits.detach(), &batch.labels)?;
            sum += f64::from(nll.to_scalar::<f32>()?);
            count += n;
        }
        Ok(Some(sum / count.max(1) as f64))
    }

    fn validate(&mut self, train_loss: Option<f64>, hooks: &mut Hooks<'_>) -> Result<()> {
        let valid_loss = self.validation_loss()?;
        let metric = match hooks.metric.as_mut() {
            Some(f) => Some(f(&self.model).map_err(TrainError::Metric)?),
            None => None,
        };
        let record = EvalRecord {
            step: self.state.step,
            epoch: self.state.epoch,
            train_loss,
            valid_loss,
            metric,
        };
        tracing::info!(
            step = record.step,
            epoch = record.epoch,
            train_loss = train_loss.map(|l| format!("{l:.4}")),
            valid_loss = valid_loss.map(|l| format!("{l:.4}")),
            metric = metric.map(|m| format!("{m:.4}")),
            "validation"
        );
        self.state.history.push(record);
        let score = metric.or(valid_loss.map(|l| -l));
        if let Some(score) = score {
            if self.state.best_metric.is_none_or(|b| score > b) {
                self.state.best_metric = Some(score);
                self.state.best_step = Some(self.state.step);
                self.save(BEST_DIR, false)?;
            }
        }
        Ok(())
    }

    fn save_last(&self) -> Result<()> {
        self.save(LAST_DIR, true)
    }

    fn save(&self, name: &str, with_optimizer: bool) -> Result<()> {
        let target = self.out_dir.join(name);
        checkpoint::write_dir_atomic(&target, |dir| {
            self.model
                .save_hf_dir(dir)
                .map_err(|e| TrainError::Checkpoint {
                    path: dir.to_path_buf(),
                    message: format!("cannot save model: {e}"),
                })?;
            if let Some(lora) = &self.lora {
                lora.save(dir)?;
            }
            if let Some(items) = &self.items {
                items.save(dir)?;
            }
            if with_optimizer {
                let tensors: HashMap<String, Tensor> =
                    self.opt.state_tensors()?.into_iter().collect();
                checkpoint::save_tensors(&tensors, &dir.join(OPTIMIZER_FILE))?;
            }
            let json = serde_json::to_vec_pretty(&self.state).expect("state serialises");
            std::fs::write(dir.join(STATE_FILE), json).map_err(io_err(dir.join(STATE_FILE)))
        })?;
        tracing::debug!("saved {} at step {}", target.display(), self.state.step);
        Ok(())
    }
}

pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: format!("unreadable trainer state: {e}"),
    })?;
    if state.format != STATE_FORMAT {
        return Err(TrainError::Checkpoint {
            path,
            message: format!(
                "trainer state format {} (expected {STATE_FORMAT})",
                state.format
            ),
        });
    }
    Ok(state)
}

fn steps_per_epoch(cfg: &TrainConfig, examples: usize) -> u64 {
    examples.div_ceil(cfg.batch_size).div_ceil(cfg.grad_accum) as u64
}

fn total_steps(cfg: &TrainConfig, examples: usize) -> u64 {
    let all = steps_per_epoch(cfg, examples) * cfg.epochs as u64;
    cfg.max_steps.map_or(all, |m| m.min(all))
}

fn schedule(cfg: &TrainConfig, total_steps: u64) -> LrSchedule {
    LrSchedule {
        peak_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps.min(total_steps),
        total_steps,
        decay: cfg.decay,
        min_ratio: cfg.min_lr_ratio,
    }
}

fn progress_bar(cfg: &TrainConfig, total: u64, done: u64) -> ProgressBar {
    if !cfg.run.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_position(done);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} steps, {eta} left  {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// Loss and throughput over the last few steps, for the progress bar.
#[derive(Default)]
struct LossWindow {
    recent: std::collections::VecDeque<(f64, usize, Duration)>,
}

impl LossWindow {
    const LEN: usize = 20;

    fn push(&mut self, loss: f64, tokens: usize, took: Duration) {
        if self.recent.len() == Self::LEN {
            self.recent.pop_front();
        }
        self.recent.push_back((loss, tokens, took));
    }

    fn loss(&self) -> f64 {
        self.recent.iter().map(|r| r.0).sum::<f64>() / self.recent.len().max(1) as f64
    }

    fn tokens_per_sec(&self) -> f64 {
        let tokens: usize = self.recent.iter().map(|r| r.1).sum();
        let secs: f64 = self.recent.iter().map(|r| r.2.as_secs_f64()).sum();
        tokens as f64 / secs.max(1e-9)
    }
}
