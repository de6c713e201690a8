//! What `train` and `pretrain` share: where the model comes from and how it is trained, as
//! flags, turned into `instructrec-train`'s [`Setup`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use instructrec_train::lora::LoraConfig;
use instructrec_train::schedule::Decay;
use instructrec_train::session::{Existing, ItemTokens, ModelSource, NewTokenizer, Setup};
use instructrec_train::trainer::{RunControl, TrainConfig};
use instructrec_train::Preset;

/// Where the model comes from and how it is trained; shared by `train` and `pretrain`.
#[derive(Args)]
pub struct Common {
    /// Output directory: checkpoints go to OUT/last and OUT/best.
    #[arg(long)]
    out: PathBuf,
    /// Start from this Hugging Face-style model directory (config.json, model.safetensors,
    /// tokenizer.json). Its weights are validated before the first step, so that `best/`
    /// holds them when no step does better.
    #[arg(long, conflicts_with = "preset")]
    init: Option<PathBuf>,
    /// Create a new model of this size (tiny, compact, small, base) with a tokenizer trained on
    /// the training text and the --tokenizer-corpus files.
    #[arg(long, default_value = "small")]
    preset: Preset,
    /// Create a new model of this shape instead of a preset: a Hugging Face-style T5
    /// config.json (its vocab_size is replaced by the new tokenizer's).
    #[arg(long, conflicts_with_all = ["init", "preset"])]
    model_config: Option<PathBuf>,
    /// Extra text for the new tokenizer: plain text (one sentence per line) or instruction
    /// JSONL (its instruction and target fields).
    #[arg(long, num_args = 1..)]
    tokenizer_corpus: Vec<PathBuf>,
    /// Vocabulary size of a new tokenizer (sentinels included).
    #[arg(long, default_value_t = 8000)]
    vocab_size: usize,
    /// Give every catalogue title of --data (two words or more) a token of its own in the new
    /// model's tokenizer, so the model learns an embedding per item (see docs/training.md).
    #[arg(long, requires = "data", conflicts_with = "init")]
    item_tokens: bool,
    /// Start each item token's embedding at the mean of its title's word-piece embeddings
    /// instead of a random row, so that items sharing title words start out alike.
    #[arg(long, requires = "item_tokens")]
    item_tokens_from_pieces: bool,
    /// Train each item token's row as a free row plus its title's word pieces, so that items
    /// sharing title words (a platform, a series) learn from each other (docs/training.md).
    /// A new model needs --item-tokens; with --init, the checkpoint must have been trained so.
    #[arg(long)]
    compose_item_tokens: bool,
    /// Also compose each item token's row from its item's category labels in --data (those at
    /// most half the catalogue carries), so that a query naming a category reaches the items
    /// filed under it. With --init, a checkpoint composed from titles alone gains them.
    #[arg(long, requires_all = ["compose_item_tokens", "data"])]
    compose_categories: bool,
    /// Train on cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`). A run may
    /// resume on another device.
    #[arg(long, default_value = "cpu")]
    device: instructrec_model::DeviceSpec,
    /// Continue from OUT/last if it exists (weights, optimizer, data position, RNG streams).
    /// Every setting must be the checkpoint's, except the run controls (--time-budget,
    /// --save-every, --eval-every, --quiet, --device) and a larger --max-steps or more --epochs, which
    /// extend the run.
    #[arg(long)]
    resume: bool,
    /// Replace the checkpoints already in OUT with a new run's (without it, a new run over
    /// them is refused).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Passes over the training examples. More on --resume extends a run (see --max-steps).
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Stop after this many optimizer steps if the epochs last longer; the learning-rate
    /// schedule ends here. A larger value on --resume extends a finished or stopped run; with
    /// linear or cosine decay the rest of the schedule is then stretched to the new end, so the
    /// weights differ from those of a run given the larger value from the start (with constant
    /// decay they are the same).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Wall-clock budget, e.g. 90s, 30m, 1h 30m; training stops with a checkpoint when spent.
    #[arg(long, value_parser = super::duration)]
    time_budget: Option<Duration>,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Micro-batches whose gradients add up to one optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Peak learning rate, reached after --warmup steps.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// Learning-rate decay after warm-up: linear, cosine or constant.
    #[arg(long, default_value = "linear")]
    decay: Decay,
    /// AdamW weight decay, applied as lr x weight-decay per step.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Scale each weight tensor's step by its root mean square, as Adafactor does (use a
    /// learning rate about 10x larger, e.g. 2e-2). Meant for a randomly initialised T5, whose
    /// embeddings are far larger in variance than its query weights (docs/training.md).
    #[arg(long)]
    relative_steps: bool,
    /// Global gradient-norm clip; 0 disables.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Longest source in tokens; longer ones lose their beginning (the oldest history).
    #[arg(long, default_value_t = 512)]
    pub max_source_len: usize,
    /// Longest target in tokens; longer ones lose their end.
    #[arg(long, default_value_t = 64)]
    pub max_target_len: usize,
    /// Train low-rank adapters of this rank instead of all weights (for large --init
    /// checkpoints); checkpoints hold the merged model plus the adapters in PEFT's layout.
    #[arg(long, requires = "init")]
    lora_rank: Option<usize>,
    /// LoRA scaling numerator: adapters are applied as (alpha / rank) B A.
    #[arg(long, default_value_t = 16.0, requires = "lora_rank")]
    lora_alpha: f64,
    /// Weights that get adapters, by module name (q, k, v, o, wi_0, wi_1, wo).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q,v",
        requires = "lora_rank"
    )]
    lora_targets: Vec<String>,
    /// Dropout rate (default: the model config's).
    #[arg(long)]
    dropout: Option<f32>,
    /// Seed of everything random: new weights, batch order, dropout, samples, hold-outs.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write OUT/last every N optimizer steps (always at each epoch end and at the end).
    #[arg(long, default_value_t = 500)]
    save_every: u64,
    /// Also validate every N steps (always at each epoch end).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

impl Common {
    pub fn setup(&self) -> Setup {
        let model = match (&self.init, &self.model_config) {
            (Some(dir), _) => ModelSource::Init(dir.clone()),
            (None, Some(path)) => ModelSource::ModelConfig(path.clone()),
            (None, None) => ModelSource::Preset(self.preset),
        };
        Setup {
            out: self.out.clone(),
            model,
            tokenizer: NewTokenizer {
                corpus: self.tokenizer_corpus.clone(),
                vocab_size: self.vocab_size,
            },
            item_tokens: ItemTokens {
                add: self.item_tokens,
                from_pieces: self.item_tokens_from_pieces,
            },
            existing: match (self.resume, self.overwrite) {
                (true, _) => Existing::Resume,
                (_, true) => Existing::Overwrite,
                _ => Existing::Refuse,
            },
            config: self.config(),
        }
    }

    fn config(&self) -> TrainConfig {
        let mut cfg = TrainConfig {
            seed: self.seed,
            epochs: self.epochs,
            max_steps: self.max_steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            lr: self.lr,
            warmup_steps: self.warmup,
            decay: self.decay,
            max_grad_norm: (self.max_grad_norm > 0.0).then_some(self.max_grad_norm),
            max_source_len: self.max_source_len,
            max_target_len: self.max_target_len,
            dropout: self.dropout,
            run: RunControl {
                time_budget: self.time_budget,
                save_every: Some(self.save_every),
                eval_every: self.eval_every,
                // Tuning a trained checkpoint must not end worse on validation than it began.
                validate_start: self.init.is_some(),
                valid_batch_size: 2 * self.batch_size,
                progress: !self.quiet,
                device: self.device,
            },
            lora: self.lora_rank.map(|rank| LoraConfig {
                rank,
                alpha: self.lora_alpha,
                targets: self.lora_targets.clone(),
                base: self.init.clone(),
            }),
            compose_item_tokens: self.compose_item_tokens,
            compose_categories: self.compose_categories,
            ..TrainConfig::default()
        };
        cfg.adamw.weight_decay = self.weight_decay;
        cfg.adamw.relative_steps = self.relative_steps;
        cfg
    }
}
