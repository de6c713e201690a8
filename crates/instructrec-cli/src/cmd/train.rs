//! `instructrec train` (instruction tuning) and `instructrec pretrain` (span corruption, sequence
//! continuation, next-item choice): argument parsing and wiring; the work is in `instructrec-train`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use instructrec_data::{ItemId, Prepared, UserId};
use instructrec_instructions::{IntentionKind, PreferenceKind, Template, TemplateLibrary};
use instructrec_train::compose::ItemComposition;
use instructrec_train::data::{
    encode_examples, read_jsonl, seeded_shuffle, Encoded, Example, LineFilter, Truncation,
};
use instructrec_train::init::{create_model, item_tokens_from_pieces};
use instructrec_train::lora::LoraConfig;
use instructrec_train::pretrain::{
    continuation_examples, item_text, next_item_examples, pretraining_items,
    span_corruption_examples, ContinuationOptions, CorruptionOptions, NextItemOptions,
    NextItemWording,
};
use instructrec_train::schedule::Decay;
use instructrec_train::tokenizer::{
    add_item_tokens, read_corpus, train_tokenizer, TokenizerOptions,
};
use instructrec_train::trainer::{
    Hooks, MetricError, RunControl, TrainConfig, TrainReport, Trainer, LAST_DIR,
};
use instructrec_train::{Device, Preset, Seq2Seq, T5Config, TokenLimits};

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
    /// Create a new model of this size (tiny, small, base) with a tokenizer trained on the
    /// training text and the --tokenizer-corpus files.
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
    /// Give every catalogue title of --items (two words or more) a token of its own in the new
    /// model's tokenizer, so the model learns an embedding per item (see docs/training.md).
    #[arg(long, requires = "items", conflicts_with = "init")]
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
    /// Continue from OUT/last if it exists (weights, optimizer, data position, RNG streams).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long)]
    max_steps: Option<u64>,
    /// Wall-clock budget, e.g. 90s, 30m, 2h; training stops with a checkpoint when spent.
    #[arg(long, value_parser = parse_duration)]
    time_budget: Option<Duration>,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// linear, cosine or constant.
    #[arg(long, default_value = "linear")]
    decay: Decay,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Scale each weight tensor's step by its root mean square, as Adafactor does (use a
    /// learning rate about 10x larger, e.g. 2e-2). Meant for a randomly initialised T5, whose
    /// embeddings are 4,000x larger in variance than its query weights (docs/training.md).
    #[arg(long)]
    relative_steps: bool,
    /// Global gradient-norm clip; 0 disables.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    #[arg(long, default_value_t = 512)]
    max_source_len: usize,
    #[arg(long, default_value_t = 64)]
    max_target_len: usize,
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
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 500)]
    save_every: u64,
    /// Also validate every N steps (always at each epoch end).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// The instruction lines trained on, recorded in the checkpoints (`train` only).
    #[arg(skip)]
    lines: Option<LineFilter>,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Instruction JSONL (fields `instruction` and `target`).
    #[arg(long)]
    train: PathBuf,
    /// Train only on lines with these preferences (P0, P1, P2; comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    preference: Vec<String>,
    /// Train only on lines with these intentions (I0 none, I1 vague, I2 specific;
    /// comma-separated); default all.
    #[arg(long, value_delimiter = ',', value_parser = ["I0", "I1", "I2"])]
    intention: Vec<String>,
    /// Leave out lines with these intentions (e.g. I1, to hold out personalised search with
    /// vague intentions; comma-separated). Recorded in the checkpoints.
    #[arg(long, value_delimiter = ',', value_parser = ["I0", "I1", "I2"])]
    without_intention: Vec<String>,
    /// Train only on lines with these task forms (T0 pointwise, T1 pairwise, T2 matching,
    /// T3 reranking; comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    task: Vec<String>,
    /// Train only on lines made with these diversity strategies (plain, reversed, tied, chain;
    /// comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    strategy: Vec<String>,
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Prepared dataset of the instructions: enables HR@1 on reranking lines of --valid.
    #[arg(long)]
    items: Option<PathBuf>,
    /// Reranking validation lines sampled for HR@1.
    #[arg(long, default_value_t = 200)]
    rank_sample: usize,
    /// Validation lines sampled for the validation loss.
    #[arg(long, default_value_t = 2000)]
    valid_sample: usize,
    #[command(flatten)]
    common: Common,
}

/// How `pretrain --objective next-item` phrases its examples.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Wording {
    /// "Bought so far: …. Next, one of: …."
    Compact,
    /// The implicit-preference reranking templates (P1, T3, plain) of the template library,
    /// one per example: the words of the tuning and test instructions.
    Templates,
}

/// What `pretrain` teaches before instruction tuning.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Objective {
    /// T5's span corruption on item text (title, categories, brand, features).
    SpanCorruption,
    /// Users' training sequences: the items up to a random cut, then the items after it.
    Continuation,
    /// Users' training sequences at every position: the last few items and a short list of
    /// candidates, the next item hidden among random others; the target is that item.
    NextItem,
}

#[derive(Args)]
pub struct PretrainArgs {
    /// Prepared dataset directory: its item texts or its users' training sequences.
    #[arg(long)]
    items: PathBuf,
    #[arg(long, value_enum, default_value = "span-corruption")]
    objective: Objective,
    /// Examples per item text (span corruption), per user (continuation) or per position
    /// (next-item), each cut or sampled differently.
    #[arg(long, default_value_t = 2)]
    copies: usize,
    #[arg(long, default_value_t = 0.15)]
    noise_density: f64,
    #[arg(long, default_value_t = 3.0)]
    mean_span_length: f64,
    /// Fraction of items (span corruption) or users (sequence objectives) kept apart for
    /// validation loss.
    #[arg(long, default_value_t = 0.02)]
    valid_fraction: f64,
    /// Continuation: most items after the cut in one target.
    #[arg(long, default_value_t = 10)]
    max_continuation: usize,
    /// Next-item: most items shown before the position.
    #[arg(long, default_value_t = 20)]
    history_items: usize,
    /// Next-item: word budget of the shown history, counted as `instructions build
    /// --history-budget` counts it (oldest titles dropped first, the newest always kept).
    #[arg(long, default_value_t = 40)]
    history_budget: usize,
    /// Next-item: the phrasing of the examples.
    #[arg(long, value_enum, default_value = "templates")]
    wording: Wording,
    /// Next-item with template wording: a template library (TOML) instead of the built-in one.
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Next-item: candidate list length, the next item included.
    #[arg(long, default_value_t = 10)]
    candidates: usize,
    #[command(flatten)]
    common: Common,
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 90s, 30m, 2h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl Common {
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
            run: self.run_control(),
            lora: self.lora_rank.map(|rank| LoraConfig {
                rank,
                alpha: self.lora_alpha,
                targets: self.lora_targets.clone(),
            }),
            compose_item_tokens: self.compose_item_tokens,
            lines: self.lines.clone(),
            ..TrainConfig::default()
        };
        cfg.adamw.weight_decay = self.weight_decay;
        cfg.adamw.relative_steps = self.relative_steps;
        cfg
    }

    fn run_control(&self) -> RunControl {
        RunControl {
            time_budget: self.time_budget,
            save_every: Some(self.save_every),
            eval_every: self.eval_every,
            // Tuning a trained checkpoint must not end worse on validation than it began.
            validate_start: self.init.is_some(),
            valid_batch_size: 2 * self.batch_size,
            progress: !self.quiet,
        }
    }

    fn resumable(&self) -> Result<Option<PathBuf>> {
        if !self.resume {
            return Ok(None);
        }
        let found = instructrec_train::checkpoint::recover(&self.out.join(LAST_DIR))?;
        if found.is_none() {
            tracing::warn!(
                "--resume: no checkpoint in {}, starting afresh",
                self.out.display()
            );
        }
        Ok(found)
    }

    /// A resumed run continues with its checkpoint's settings; refuse flags that would change
    /// them rather than ignore them silently. Only the run controls (time budget, save and
    /// validation intervals, progress) may differ.
    fn check_same_run(&self, last: &Path) -> Result<()> {
        let mut saved = instructrec_train::trainer::read_state(last)?.config;
        let asked = self.config();
        saved.run = asked.run.clone();
        // Checkpoints made before the line filter was recorded carry none; their own run
        // continues as it was.
        if saved.lines.is_none() {
            saved.lines.clone_from(&asked.lines);
        }
        if saved != asked {
            let (a, b) = (serde_json::to_value(&saved)?, serde_json::to_value(&asked)?);
            let changed: Vec<String> = a
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| b.get(k.as_str()) != Some(v))
                .map(|(k, v)| format!("{k} (checkpoint {v}, now {})", b[k.as_str()]))
                .collect();
            bail!(
                "--resume: {} was trained with different settings: {}; repeat the original \
                 flags or start a new --out",
                last.display(),
                changed.join(", ")
            );
        }
        Ok(())
    }

    /// Trains on text examples; a new model's tokenizer learns from their sources and targets.
    fn run_examples(
        &self,
        train: &[Example],
        valid: &[Example],
        item_titles: &[String],
        hooks: &mut Hooks<'_>,
    ) -> Result<()> {
        self.run(
            || {
                self.initial_model(
                    train
                        .iter()
                        .flat_map(|e| [e.source.clone(), e.target.clone()]),
                    item_titles,
                )
            },
            |model| {
                let (t, cut) = self.encode(model, train, "train")?;
                let (v, _) = self.encode(model, valid, "valid")?;
                Ok((t, cut, v))
            },
            hooks,
        )?;
        Ok(())
    }

    /// The catalogue titles that get tokens of their own (none without --item-tokens).
    fn item_titles(&self, prepared: &Prepared) -> Vec<String> {
        if !self.item_tokens {
            return Vec::new();
        }
        prepared
            .dataset
            .items
            .iter()
            .map(|i| i.title.clone())
            .collect()
    }

    /// The model to start from: `--init`, or a new one from `--preset` whose tokenizer is
    /// trained on `own_text` and the `--tokenizer-corpus` files, plus one token for each of
    /// `item_titles`.
    fn initial_model(
        &self,
        own_text: impl Iterator<Item = String>,
        item_titles: &[String],
    ) -> Result<(Seq2Seq, Option<ItemComposition>)> {
        if let Some(dir) = &self.init {
            let model = Seq2Seq::load_hf_dir(dir, &Device::Cpu)
                .with_context(|| format!("loading --init {}", dir.display()))?;
            let items = self
                .compose_item_tokens
                .then(|| ItemComposition::load(&model, dir))
                .transpose()?;
            return Ok((model, items));
        }
        let mut corpus: Vec<String> = own_text.collect();
        for path in &self.tokenizer_corpus {
            if path.extension().is_some_and(|e| e == "jsonl") {
                corpus.extend(
                    read_jsonl(path, &LineFilter::default())?
                        .into_iter()
                        .flat_map(|e| [e.source, e.target]),
                );
            } else {
                corpus.extend(read_corpus(path)?);
            }
        }
        tracing::info!("training a tokenizer on {} lines", corpus.len());
        let mut tokenizer = train_tokenizer(
            corpus.iter(),
            TokenizerOptions {
                vocab_size: self.vocab_size,
                extra_ids: 100,
            },
        )?;
        // Pieces are read before the titles become tokens of their own.
        let pieces: Vec<(&str, Vec<u32>)> =
            if self.item_tokens_from_pieces || self.compose_item_tokens {
                item_titles
                    .iter()
                    .map(|t| {
                        let ids = tokenizer
                            .encode(t.trim(), false)
                            .map_err(|e| anyhow::anyhow!("tokenizing {t:?}: {e}"))?;
                        Ok((t.trim(), ids.get_ids().to_vec()))
                    })
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            };
        let first_item_token = tokenizer.get_vocab_size(true) as u32;
        if !item_titles.is_empty() {
            let added = add_item_tokens(&mut tokenizer, item_titles.iter().map(String::as_str))?;
            tracing::info!("{added} item-title tokens added to the tokenizer");
        }
        let mut rows: Vec<(u32, Vec<u32>)> = pieces
            .into_iter()
            .filter_map(|(t, ids)| {
                // One-word titles get no token; their word may already be a piece.
                let token = tokenizer.token_to_id(t)?;
                (token >= first_item_token).then_some((token, ids))
            })
            .collect();
        // Items with the same title share one token.
        rows.sort_unstable();
        rows.dedup_by_key(|(token, _)| *token);
        let shape = match &self.model_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --model-config {}", path.display()))?;
                let shape: T5Config = serde_json::from_str(&text)
                    .with_context(|| format!("--model-config {}", path.display()))?;
                shape
                    .validate()
                    .map_err(|e| anyhow::anyhow!("--model-config {}: {e}", path.display()))?;
                shape
            }
            None => T5Config::preset(self.preset),
        };
        let model = create_model(tokenizer, &shape, self.seed, &Device::Cpu)?;
        if self.item_tokens_from_pieces && !rows.is_empty() {
            item_tokens_from_pieces(&model, &rows)?;
            tracing::info!("{} item tokens start from their titles' pieces", rows.len());
        }
        let items = if self.compose_item_tokens {
            if rows.is_empty() {
                bail!("--compose-item-tokens: no item token has title pieces (give --item-tokens)");
            }
            tracing::info!(
                "{} item tokens composed with their titles' pieces",
                rows.len()
            );
            Some(ItemComposition::attach(&model, &rows)?)
        } else {
            None
        };
        Ok((model, items))
    }

    fn encode(
        &self,
        model: &Seq2Seq,
        examples: &[Example],
        what: &str,
    ) -> Result<(Vec<Encoded>, Truncation)> {
        let (encoded, cut) = encode_examples(
            &model.tokenizer,
            examples,
            self.max_source_len,
            self.max_target_len,
        )?;
        if cut.sources > 0 || cut.targets > 0 {
            tracing::warn!(
                "{what}: {} of {} sources cut from the left to {} tokens, {} targets cut to {}",
                cut.sources,
                examples.len(),
                self.max_source_len,
                cut.targets,
                self.max_target_len
            );
        }
        Ok((encoded, cut))
    }

    fn run(
        &self,
        fresh: impl FnOnce() -> Result<(Seq2Seq, Option<ItemComposition>)>,
        encode: impl Fn(&Seq2Seq) -> Result<(Vec<Encoded>, Truncation, Vec<Encoded>)>,
        hooks: &mut Hooks<'_>,
    ) -> Result<TrainReport> {
        let has_metric = hooks.metric.is_some();
        let mut trainer = match self.resumable()? {
            Some(last) => {
                self.check_same_run(&last)?;
                // A LoRA checkpoint holds merged weights; the adapters are resumed on top of
                // the model the run started from.
                let from = match (&self.lora_rank, &self.init) {
                    (None, _) => last.clone(),
                    (Some(_), Some(init)) => init.clone(),
                    (Some(_), None) => bail!("--resume with --lora-rank needs the same --init"),
                };
                let model = Seq2Seq::load_hf_dir(&from, &Device::Cpu)
                    .with_context(|| format!("loading {}", from.display()))?;
                let (train, _, valid) = encode(&model)?;
                Trainer::resume(model, train, valid, self.run_control(), &self.out)?
            }
            None => {
                let (model, items) = fresh()?;
                let (train, cut, valid) = encode(&model)?;
                let trainer = Trainer::new(model, train, cut, valid, self.config(), &self.out)?;
                match items {
                    Some(items) => trainer.compose_item_tokens(items)?,
                    None => trainer,
                }
            }
        };
        let report = trainer.run(hooks)?;
        // Without a ranking metric the best checkpoint is chosen by validation loss, which the
        // trainer stores negated (higher is better).
        let best = match (report.state.best_metric, has_metric) {
            (Some(m), true) => format!("best HR@1 {m:.4}"),
            (Some(m), false) => format!("best validation loss {:.4}", -m),
            (None, _) => "no validation".to_string(),
        };
        println!(
            "{:?} after {} steps ({} epochs done, {:.0} s); {best}{}; checkpoints in {}",
            report.stop,
            report.state.step,
            report.state.epoch,
            report.state.elapsed_secs,
            report
                .state
                .best_step
                .map_or(String::new(), |s| format!(" at step {s}")),
            self.out.display()
        );
        Ok(report)
    }
}

/// A reranking validation line: the instruction, its candidates' titles, and which is right.
struct RankCase {
    instruction: String,
    candidates: Vec<String>,
    positive: usize,
}

fn rank_cases(
    valid: &Path,
    prepared: &Prepared,
    sample: usize,
    seed: u64,
) -> Result<Vec<RankCase>> {
    let text =
        std::fs::read_to_string(valid).with_context(|| format!("reading {}", valid.display()))?;
    let title = |id: &serde_json::Value| -> Option<String> {
        let id = ItemId(u32::try_from(id.as_u64()?).ok()?);
        prepared
            .dataset
            .items
            .get(id.index())
            .map(|i| i.title.clone())
    };
    let mut cases = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}, line {}: not JSON", valid.display(), n + 1))?;
        let Some(ids) = v["candidates"]
            .as_array()
            .filter(|c| c.len() > 1 && v["task"] == "T3")
        else {
            continue;
        };
        let candidates: Option<Vec<String>> = ids.iter().map(title).collect();
        let target = title(&v["target_item"]);
        let (Some(candidates), Some(target)) = (candidates, target) else {
            bail!(
                "{}, line {}: candidate or target item not in the prepared dataset",
                valid.display(),
                n + 1
            );
        };
        if let Some(positive) = candidates.iter().position(|c| *c == target) {
            let instruction = v["instruction"].as_str().unwrap_or_default().to_string();
            cases.push(RankCase {
                instruction,
                candidates,
                positive,
            });
        }
    }
    seeded_shuffle(&mut cases, seed);
    cases.truncate(sample);
    Ok(cases)
}

/// HR@1 by title likelihood; ties count as misses.
fn hit_rate_at_1(
    model: &Seq2Seq,
    cases: &[RankCase],
    limits: TokenLimits,
) -> std::result::Result<f64, MetricError> {
    let mut hits = 0usize;
    for case in cases {
        let cands: Vec<&str> = case.candidates.iter().map(String::as_str).collect();
        let scores = model.score(&case.instruction, &cands, limits)?;
        let pos = scores[case.positive].sum;
        hits += usize::from(
            scores
                .iter()
                .enumerate()
                .all(|(i, s)| i == case.positive || s.sum < pos),
        );
    }
    Ok(hits as f64 / cases.len().max(1) as f64)
}

pub fn run_train(mut args: TrainArgs) -> Result<()> {
    let lines = LineFilter {
        preferences: args.preference.clone(),
        intentions: args.intention.clone(),
        without_intentions: args.without_intention.clone(),
        tasks: args.task.clone(),
        strategies: args.strategy.clone(),
    };
    let train = read_jsonl(&args.train, &lines)?;
    args.common.lines = Some(lines);
    let c = &args.common;
    let mut valid = args
        .valid
        .as_deref()
        .map(|p| read_jsonl(p, &LineFilter::default()))
        .transpose()?
        .unwrap_or_default();
    if valid.len() > args.valid_sample {
        // Validation loss runs after every epoch: a seeded sample keeps it affordable.
        seeded_shuffle(&mut valid, c.seed);
        valid.truncate(args.valid_sample);
    }
    let prepared = args
        .items
        .as_deref()
        .map(|dir| Prepared::load(dir).with_context(|| format!("loading {}", dir.display())))
        .transpose()?;
    let cases = match (&prepared, &args.valid) {
        (Some(prepared), Some(valid)) => {
            let cases = rank_cases(valid, prepared, args.rank_sample, c.seed)?;
            tracing::info!("HR@1 on {} reranking validation lines", cases.len());
            cases
        }
        _ => Vec::new(),
    };
    let item_titles = prepared
        .as_ref()
        .map_or_else(Vec::new, |p| c.item_titles(p));
    let limits = TokenLimits {
        source: c.max_source_len,
        target: c.max_target_len,
    };
    let mut metric = |m: &Seq2Seq| hit_rate_at_1(m, &cases, limits);
    let mut hooks = Hooks {
        metric: (!cases.is_empty()).then_some(&mut metric as _),
        ..Hooks::default()
    };
    c.run_examples(&train, &valid, &item_titles, &mut hooks)
}

pub fn run_pretrain(args: PretrainArgs) -> Result<()> {
    let prepared =
        Prepared::load(&args.items).with_context(|| format!("loading {}", args.items.display()))?;
    match args.objective {
        Objective::SpanCorruption => span_corruption(&args, &prepared),
        Objective::Continuation => continuation(&args, &prepared),
        Objective::NextItem => next_item(&args, &prepared),
    }
}

/// Splits `all` (the `what` of `args.items`) into (train, valid) after a seeded shuffle,
/// keeping at least one for training.
fn hold_out<T>(mut all: Vec<T>, what: &str, args: &PretrainArgs) -> Result<(Vec<T>, Vec<T>)> {
    if all.len() < 2 {
        bail!(
            "{}: fewer than two {what} to pre-train on",
            args.items.display()
        );
    }
    seeded_shuffle(&mut all, args.common.seed);
    let n_valid = ((all.len() as f64 * args.valid_fraction).round() as usize).min(all.len() - 1);
    let valid = all.split_off(all.len() - n_valid);
    Ok((all, valid))
}

fn span_corruption(args: &PretrainArgs, prepared: &Prepared) -> Result<()> {
    let c = &args.common;
    let texts: Vec<String> = pretraining_items(prepared)
        .into_iter()
        .map(item_text)
        .collect();
    let (texts, valid_texts) = hold_out(texts, "items with a title", args)?;
    let opts = CorruptionOptions {
        noise_density: args.noise_density,
        mean_span_length: args.mean_span_length,
        max_tokens: c.max_source_len,
        copies: args.copies,
        seed: c.seed,
    };
    tracing::info!(
        "span corruption on {} item texts ({} for validation)",
        texts.len(),
        valid_texts.len()
    );
    c.run(
        || {
            c.initial_model(
                texts.iter().chain(&valid_texts).cloned(),
                &c.item_titles(prepared),
            )
        },
        |model| {
            let train = span_corruption_examples(&model.tokenizer, &texts, &opts)?;
            let valid = span_corruption_examples(
                &model.tokenizer,
                &valid_texts,
                &CorruptionOptions { copies: 1, ..opts },
            )?;
            Ok((train, Truncation::default(), valid))
        },
        &mut Hooks::default(),
    )?;
    Ok(())
}

fn continuation(args: &PretrainArgs, prepared: &Prepared) -> Result<()> {
    let opts = ContinuationOptions {
        copies: args.copies,
        history_cap: prepared.manifest.options.history_cap,
        max_continuation: args.max_continuation,
        seed: args.common.seed,
    };
    on_user_sequences(args, prepared, "sequence continuation", |users, copies| {
        continuation_examples(prepared, users, &ContinuationOptions { copies, ..opts })
    })
}

fn next_item(args: &PretrainArgs, prepared: &Prepared) -> Result<()> {
    // Every titled item, not only `pretraining_items`: negatives must come from all the items
    // a target can be (see `next_item_examples`).
    let pool: Vec<ItemId> = prepared
        .dataset
        .items
        .iter()
        .filter(|i| !i.title.trim().is_empty())
        .map(|i| i.id)
        .collect();
    let opts = NextItemOptions {
        copies: args.copies,
        history_items: args.history_items,
        history_budget: args.history_budget,
        candidates: args.candidates,
        seed: args.common.seed,
    };
    let library = match &args.templates {
        Some(path) => TemplateLibrary::from_path(path)?,
        None => TemplateLibrary::builtin(),
    };
    let templates: Vec<Template> = library
        .plain_rerank(PreferenceKind::Implicit, IntentionKind::None)
        .cloned()
        .collect();
    let wording = match args.wording {
        Wording::Compact => NextItemWording::Compact,
        Wording::Templates if templates.is_empty() => bail!(
            "{}: no plain reranking template on the history alone (task = \"rerank\", \
             strategy = \"plain\", preference = \"implicit\", intention = \"none\") to word \
             next-item examples with",
            library.source_name()
        ),
        Wording::Templates => NextItemWording::Templates(&templates),
    };
    on_user_sequences(args, prepared, "next-item choice", |users, copies| {
        next_item_examples(
            prepared,
            users,
            &pool,
            &NextItemOptions { copies, ..opts },
            wording,
        )
    })
}

/// The objectives on interaction sequences: `examples(users, copies)` for most users, and one
/// copy for the users held out for validation loss.
fn on_user_sequences(
    args: &PretrainArgs,
    prepared: &Prepared,
    what: &str,
    examples: impl Fn(&[UserId], usize) -> Vec<Example>,
) -> Result<()> {
    let c = &args.common;
    let users: Vec<UserId> = prepared.dataset.users.iter().map(|u| u.id).collect();
    let (users, valid_users) = hold_out(users, "users", args)?;
    let train = examples(&users, args.copies);
    let valid = examples(&valid_users, 1);
    tracing::info!(
        "{what}: {} examples from {} users ({} for validation)",
        train.len(),
        users.len(),
        valid.len()
    );
    c.run_examples(
        &train,
        &valid,
        &c.item_titles(prepared),
        &mut Hooks::default(),
    )
}
