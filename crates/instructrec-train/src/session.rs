//! A training run as `instructrec train` and `instructrec pretrain` describe it: where the model
//! comes from (a checkpoint, or a new one whose tokenizer learns the run's text and, optionally,
//! a token per catalogue title), resuming with the checks that keep a resumed run the run it
//! was, and the examples of instruction tuning and of each pre-training objective.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use instructrec_data::{ItemId, OutputLock, Prepared, UserId};
use instructrec_instructions::{
    line_texts, IntentionKind, LineFilter, PreferenceKind, Template, TemplateLibrary,
};
use instructrec_model::{Preset, Seq2Seq, T5Config};
use tokenizers::Tokenizer;

use crate::checkpoint;
use crate::compose::{add_new_pieces, ItemComposition};
use crate::data::{
    encode_examples, read_examples, seeded_sample, Example, TokenizedExample, Truncation,
};
use crate::error::{io_err, Result, TrainError};
use crate::init::{create_model, item_tokens_from_pieces};
use crate::pretrain::{
    continuation_examples, item_text, next_item_examples, pretraining_items,
    span_corruption_examples, ContinuationOptions, CorruptionOptions, NextItemOptions,
    NextItemWording,
};
use crate::tokenizer::{add_item_tokens, corpus_lines, train_tokenizer, TokenizerOptions};
use crate::trainer::{
    read_state, Hooks, Metric, TrainConfig, TrainReport, Trainer, BEST_DIR, LAST_DIR,
};

/// Where the model of a run that does not resume comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A Hugging Face-style checkpoint directory (config.json, model.safetensors,
    /// tokenizer.json).
    Init(PathBuf),
    /// A new model of a preset shape.
    Preset(Preset),
    /// A new model of the shape of a Hugging Face-style T5 config.json (its vocab_size is
    /// replaced by the new tokenizer's).
    ModelConfig(PathBuf),
}

/// The tokenizer of a new model: trained on the run's own text plus `corpus` files (plain text,
/// one sentence a line, or instruction JSON lines, whose instructions and targets count).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTokenizer {
    pub corpus: Vec<PathBuf>,
    /// Sentinels included.
    pub vocab_size: usize,
}

/// Item tokens of a new model (see docs/training.md). Whether item rows are composed with their
/// titles' pieces is [`TrainConfig::compose_item_tokens`], since it also applies to `--init`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemTokens {
    /// Every catalogue title of two words or more gets a token of its own.
    pub add: bool,
    /// Each item token's row starts at the mean of its title's word pieces' rows.
    pub from_pieces: bool,
}

/// Everything about a run but its examples.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Checkpoints go to `out/last` and `out/best`.
    pub out: PathBuf,
    pub model: ModelSource,
    pub tokenizer: NewTokenizer,
    pub item_tokens: ItemTokens,
    /// What to do with a checkpoint already in `out`.
    pub existing: Existing,
    /// The run's configuration; [`Setup::tune`] sets its `lines`.
    pub config: TrainConfig,
}

/// What a run does when its output folder already holds a checkpoint. A run never replaces one
/// it was not told to: a fresh run over a trained model would lose it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Existing {
    /// Stop with an error naming the checkpoint (a folder without one is fine).
    #[default]
    Refuse,
    /// Continue from `out/last` if it exists, else start afresh.
    Resume,
    /// Remove the checkpoints there and start afresh.
    Overwrite,
}

/// Instruction tuning's examples.
#[derive(Debug, Clone)]
pub struct Tuning<'a> {
    /// Instruction JSON lines to train on, those `lines` keeps.
    pub train: &'a Path,
    pub lines: LineFilter,
    /// Instruction JSON lines for the validation loss, at most `valid_sample` of them.
    pub valid: Option<&'a Path>,
    pub valid_sample: usize,
    /// The dataset the instructions were built from; needed for item tokens.
    pub prepared: Option<&'a Prepared>,
}

/// What pre-training teaches, and its own settings.
#[derive(Debug, Clone, Copy)]
pub enum Objective<'a> {
    /// T5's span corruption on item text (title, categories, brand, features).
    SpanCorruption {
        noise_density: f64,
        mean_span_length: f64,
    },
    /// Users' training sequences: the items up to a random cut, then at most `max_continuation`
    /// items after it.
    Continuation { max_continuation: usize },
    /// Users' training sequences at every position: the last few items and a list of
    /// `candidates`, the next item hidden among random others; the target is that item.
    NextItem {
        history_items: usize,
        history_budget: usize,
        candidates: usize,
        wording: Wording<'a>,
    },
}

/// How next-item examples are phrased.
#[derive(Debug, Clone, Copy)]
pub enum Wording<'a> {
    /// "Bought so far: …. Next, one of: …."
    Compact,
    /// The library's plain implicit-preference reranking templates, one per example: the words
    /// of the tuning and test instructions.
    Templates(&'a TemplateLibrary),
}

#[derive(Debug, Clone, Copy)]
pub struct Pretraining<'a> {
    pub objective: Objective<'a>,
    /// Examples per item text (span corruption), per user (continuation) or per position
    /// (next-item), each cut or sampled differently.
    pub copies: usize,
    /// Fraction of items (span corruption) or users (sequence objectives) kept apart for the
    /// validation loss.
    pub valid_fraction: f64,
}

/// How a run ended, in one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub report: TrainReport,
    /// Whether `best/` was chosen by the caller's ranking metric rather than validation loss.
    pub ranked: bool,
    pub out: PathBuf,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = &self.report.state;
        // Without a ranking metric the best checkpoint is chosen by validation loss, which the
        // trainer stores negated (higher is better).
        let best = match (state.best_metric, self.ranked) {
            (Some(m), true) => format!("best HR@1 {m:.4}"),
            (Some(m), false) => format!("best validation loss {:.4}", -m),
            (None, _) => "no validation".to_string(),
        };
        write!(
            f,
            "{:?} after {} steps ({} epochs done, {:.0} s); {best}{}; checkpoints in {}",
            self.report.stop,
            state.step,
            state.epoch,
            state.elapsed_secs,
            state
                .best_step
                .map_or(String::new(), |s| format!(" at step {s}")),
            self.out.display()
        )
    }
}

impl Setup {
    /// Instruction tuning on the lines of `tuning.train`; `metric` (e.g. HR@1 on validation
    /// lines), when given, picks `best/`.
    pub fn tune<'m>(
        &self,
        tuning: &Tuning<'_>,
        metric: Option<&'m mut Metric<'m>>,
    ) -> Result<Summary> {
        let train = read_examples(tuning.train, &tuning.lines, self.config.seed)?;
        // The validation loss runs after every epoch: a seeded sample keeps it affordable.
        let valid = match tuning.valid {
            Some(path) => seeded_sample(
                read_examples(path, &LineFilter::default(), self.config.seed)?,
                tuning.valid_sample,
                self.config.seed,
            ),
            None => Vec::new(),
        };
        let texts = match tuning.prepared {
            Some(prepared) => self.item_texts(prepared),
            None if self.item_tokens.add || self.config.compose_categories => {
                return Err(TrainError::Config(
                    "item tokens and their categories need the prepared dataset of the \
                     instructions"
                        .into(),
                ))
            }
            None => ItemTexts::default(),
        };
        let config = TrainConfig {
            lines: Some(tuning.lines.clone()),
            ..self.config.clone()
        };
        let ranked = metric.is_some();
        let mut hooks = Hooks {
            metric,
            ..Hooks::default()
        };
        let report = self.run_examples(&config, &train, &valid, &texts, &mut hooks)?;
        Ok(self.summary(report, ranked))
    }

    /// Pre-training on `prepared`'s item texts or its users' training sequences.
    pub fn pretrain(&self, prepared: &Prepared, pretraining: &Pretraining<'_>) -> Result<Summary> {
        let report = match pretraining.objective {
            Objective::SpanCorruption {
                noise_density,
                mean_span_length,
            } => self.span_corruption(prepared, pretraining, noise_density, mean_span_length)?,
            Objective::Continuation { max_continuation } => {
                let opts = ContinuationOptions {
                    copies: pretraining.copies,
                    history_cap: prepared.manifest.options.history_cap,
                    max_continuation,
                    seed: self.config.seed,
                };
                self.on_user_sequences(
                    prepared,
                    pretraining,
                    "sequence continuation",
                    |users, copies| {
                        continuation_examples(
                            prepared,
                            users,
                            &ContinuationOptions { copies, ..opts },
                        )
                    },
                )?
            }
            Objective::NextItem {
                history_items,
                history_budget,
                candidates,
                wording,
            } => {
                let opts = NextItemOptions {
                    copies: pretraining.copies,
                    history_items,
                    history_budget,
                    candidates,
                    seed: self.config.seed,
                };
                self.next_item(prepared, pretraining, opts, wording)?
            }
        };
        Ok(self.summary(report, false))
    }

    fn summary(&self, report: TrainReport, ranked: bool) -> Summary {
        Summary {
            report,
            ranked,
            out: self.out.clone(),
        }
    }

    fn span_corruption(
        &self,
        prepared: &Prepared,
        pretraining: &Pretraining<'_>,
        noise_density: f64,
        mean_span_length: f64,
    ) -> Result<TrainReport> {
        let texts: Vec<String> = pretraining_items(prepared)
            .into_iter()
            .map(item_text)
            .collect();
        let (texts, valid_texts) = self.hold_out(texts, "items with a title", pretraining)?;
        let opts = CorruptionOptions {
            noise_density,
            mean_span_length,
            max_tokens: self.config.max_source_len,
            copies: pretraining.copies,
            seed: self.config.seed,
        };
        tracing::info!(
            "span corruption on {} item texts ({} for validation)",
            texts.len(),
            valid_texts.len()
        );
        self.run(
            &self.config,
            || {
                self.initial_model(
                    texts.iter().chain(&valid_texts).cloned(),
                    &self.item_texts(prepared),
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
        )
    }

    fn next_item(
        &self,
        prepared: &Prepared,
        pretraining: &Pretraining<'_>,
        opts: NextItemOptions,
        wording: Wording<'_>,
    ) -> Result<TrainReport> {
        // Every titled item, not only `pretraining_items`: negatives must come from all the items
        // a target can be (see `next_item_examples`).
        let pool: Vec<ItemId> = prepared
            .dataset
            .items
            .iter()
            .filter(|i| !i.title.trim().is_empty())
            .map(|i| i.id)
            .collect();
        let templates: Vec<Template> = match wording {
            Wording::Compact => Vec::new(),
            Wording::Templates(library) => library
                .plain_rerank(PreferenceKind::Implicit, IntentionKind::None)
                .cloned()
                .collect(),
        };
        let wording = match wording {
            Wording::Compact => NextItemWording::Compact,
            Wording::Templates(library) if templates.is_empty() => {
                return Err(TrainError::Config(format!(
                    "{}: no plain reranking template on the history alone (task = \"rerank\", \
                     strategy = \"plain\", preference = \"implicit\", intention = \"none\") to \
                     word next-item examples with",
                    library.source_name()
                )))
            }
            Wording::Templates(_) => NextItemWording::Templates(&templates),
        };
        self.on_user_sequences(
            prepared,
            pretraining,
            "next-item choice",
            |users, copies| {
                next_item_examples(
                    prepared,
                    users,
                    &pool,
                    &NextItemOptions { copies, ..opts },
                    wording,
                )
            },
        )
    }

    /// The objectives on interaction sequences: `examples(users, copies)` for most users, and
    /// one copy for the users held out for the validation loss.
    fn on_user_sequences(
        &self,
        prepared: &Prepared,
        pretraining: &Pretraining<'_>,
        what: &str,
        examples: impl Fn(&[UserId], usize) -> Vec<Example>,
    ) -> Result<TrainReport> {
        let users: Vec<UserId> = prepared.dataset.users.iter().map(|u| u.id).collect();
        let (users, valid_users) = self.hold_out(users, "users", pretraining)?;
        let train = examples(&users, pretraining.copies);
        let valid = examples(&valid_users, 1);
        tracing::info!(
            "{what}: {} examples from {} users ({} for validation)",
            train.len(),
            users.len(),
            valid.len()
        );
        self.run_examples(
            &self.config,
            &train,
            &valid,
            &self.item_texts(prepared),
            &mut Hooks::default(),
        )
    }

    /// Splits `all` into (train, valid) after a seeded shuffle, keeping at least one for
    /// training.
    fn hold_out<T>(
        &self,
        mut all: Vec<T>,
        what: &str,
        pretraining: &Pretraining<'_>,
    ) -> Result<(Vec<T>, Vec<T>)> {
        if all.len() < 2 {
            return Err(TrainError::Config(format!(
                "fewer than two {what} to pre-train on"
            )));
        }
        crate::data::seeded_shuffle(&mut all, self.config.seed);
        let n_valid =
            ((all.len() as f64 * pretraining.valid_fraction).round() as usize).min(all.len() - 1);
        let valid = all.split_off(all.len() - n_valid);
        Ok((all, valid))
    }

    /// What a new model's item tokens and their composition are made of.
    fn item_texts(&self, prepared: &Prepared) -> ItemTexts {
        ItemTexts {
            titles: if self.item_tokens.add {
                prepared.titles()
            } else {
                Vec::new()
            },
            labels: if self.config.compose_categories {
                distinctive_labels(prepared)
            } else {
                Vec::new()
            },
        }
    }

    /// Trains on text examples; a new model's tokenizer learns from their sources and targets.
    fn run_examples(
        &self,
        config: &TrainConfig,
        train: &[Example],
        valid: &[Example],
        texts: &ItemTexts,
        hooks: &mut Hooks<'_>,
    ) -> Result<TrainReport> {
        self.run(
            config,
            || {
                self.initial_model(
                    train
                        .iter()
                        .flat_map(|e| [e.source.clone(), e.target.clone()]),
                    texts,
                )
            },
            |model| {
                let (t, cut) = self.encode(model, train, "train")?;
                let (v, _) = self.encode(model, valid, "valid")?;
                Ok((t, cut, v))
            },
            hooks,
        )
    }

    fn encode(
        &self,
        model: &Seq2Seq,
        examples: &[Example],
        what: &str,
    ) -> Result<(Vec<TokenizedExample>, Truncation)> {
        let (max_source, max_target) = (self.config.max_source_len, self.config.max_target_len);
        let (encoded, cut) = encode_examples(&model.tokenizer, examples, max_source, max_target)?;
        if cut.sources > 0 || cut.targets > 0 {
            tracing::warn!(
                "{what}: {} of {} sources cut from the left to {max_source} tokens, {} targets \
                 cut to {max_target}",
                cut.sources,
                examples.len(),
                cut.targets,
            );
        }
        Ok((encoded, cut))
    }

    /// Resumes `out/last` when asked to and there is one, else starts from `fresh()`; `encode`
    /// gives the (train, truncation, valid) examples in the model's tokens.
    fn run(
        &self,
        config: &TrainConfig,
        fresh: impl FnOnce() -> Result<(Seq2Seq, Option<ItemComposition>)>,
        encode: impl Fn(&Seq2Seq) -> Result<(Vec<TokenizedExample>, Truncation, Vec<TokenizedExample>)>,
        hooks: &mut Hooks<'_>,
    ) -> Result<TrainReport> {
        // Held until the run ends: two runs on one folder would share `.last.tmp`.
        let lock = OutputLock::acquire(&self.out)?;
        // What `save_hf_dir` stages a model in; a run killed while saving leaves it.
        let saving = |name: &str| name.starts_with(".instructrec-save-");
        lock.remove_leftovers(&[], Some(&saving))?;
        self.clear_unless_resuming()?;
        let mut trainer = match self.resumable()? {
            Some(last) => {
                check_same_run(&last, config)?;
                // A LoRA checkpoint holds merged weights; the adapters are resumed on top of
                // the model the run started from.
                let from = match (&config.lora, &self.model) {
                    (None, _) => last.clone(),
                    (Some(_), ModelSource::Init(init)) => init.clone(),
                    (Some(_), _) => {
                        return Err(TrainError::Config(
                            "--resume with --lora-rank needs the same --init".into(),
                        ))
                    }
                };
                let model = Seq2Seq::load_hf_dir(&from, &config.run.device.open()?)?;
                let (train, _, valid) = encode(&model)?;
                Trainer::resume(model, train, valid, config.run.clone(), &self.out)?
                    .extend(config.epochs, config.max_steps)?
            }
            None => {
                let (model, items) = fresh()?;
                let (train, cut, valid) = encode(&model)?;
                let trainer = Trainer::new(model, train, cut, valid, config.clone(), &self.out)?;
                match items {
                    Some(items) => trainer.compose_item_tokens(items)?,
                    None => trainer,
                }
            }
        };
        tracing::info!("memory estimate: {}", trainer.memory_estimate());
        trainer.run(hooks)
    }

    /// Refuses to start afresh over an existing checkpoint, or removes it when told to.
    fn clear_unless_resuming(&self) -> Result<()> {
        if self.existing == Existing::Resume {
            return Ok(());
        }
        let found: Vec<PathBuf> = [LAST_DIR, BEST_DIR]
            .iter()
            .flat_map(|name| {
                let dir = self.out.join(name);
                [
                    checkpoint::sibling(&dir, "old"),
                    checkpoint::sibling(&dir, "tmp"),
                ]
                .into_iter()
                .flatten()
                .chain([dir])
            })
            .filter(|p| p.exists())
            .collect();
        match (found.first(), self.existing) {
            (None, _) => Ok(()),
            (Some(first), Existing::Refuse) => Err(TrainError::Checkpoint {
                path: first.clone(),
                message: "a checkpoint is already there; pass --resume to continue its run, \
                          or --overwrite to replace it with a new one (or choose another --out)"
                    .into(),
            }),
            (Some(_), _) => {
                for path in &found {
                    tracing::info!("--overwrite: removing {}", path.display());
                    std::fs::remove_dir_all(path).map_err(io_err(path))?;
                }
                Ok(())
            }
        }
    }

    fn resumable(&self) -> Result<Option<PathBuf>> {
        if self.existing != Existing::Resume {
            return Ok(None);
        }
        let found = checkpoint::recover(&self.out.join(LAST_DIR))?;
        if found.is_none() {
            tracing::info!(
                "--resume: no checkpoint in {}, starting afresh",
                self.out.display()
            );
        }
        Ok(found)
    }

    /// A tokenizer trained on `own_text` and the corpus files. The files are read as the
    /// trainer asks for their lines, so the corpus (the default recipe's is 1.3 million
    /// instruction lines) is never held whole; the first bad line stops the training.
    fn new_tokenizer(&self, own_text: impl Iterator<Item = String> + Send) -> Result<Tokenizer> {
        let failure: Mutex<Option<TrainError>> = Mutex::new(None);
        let mut files: Vec<Box<dyn Iterator<Item = String> + Send + '_>> = Vec::new();
        for path in &self.tokenizer.corpus {
            if path.extension().is_some_and(|e| e == "jsonl") {
                let texts = line_texts(path)?.map(|t| t.map_err(TrainError::from));
                files.push(Box::new(texts.map_while(until_error(&failure)).flatten()));
            } else {
                files.push(Box::new(
                    corpus_lines(path)?.map_while(until_error(&failure)),
                ));
            }
        }
        let lines = AtomicUsize::new(0);
        let texts = own_text.chain(files.into_iter().flatten()).inspect(|_| {
            lines.fetch_add(1, Ordering::Relaxed);
        });
        let options = TokenizerOptions {
            vocab_size: self.tokenizer.vocab_size,
            extra_ids: 100,
        };
        let trained = train_tokenizer(texts, options);
        if let Some(e) = failure.into_inner().expect("no panic while held") {
            return Err(e);
        }
        tracing::info!("trained a tokenizer on {} lines", lines.into_inner());
        trained
    }

    /// The model to start from: the checkpoint of `--init`, or a new one whose tokenizer is
    /// trained on `own_text` and the corpus files, plus one token for each of `texts.titles`.
    fn initial_model(
        &self,
        own_text: impl Iterator<Item = String> + Send,
        texts: &ItemTexts,
    ) -> Result<(Seq2Seq, Option<ItemComposition>)> {
        let compose = self.config.compose_item_tokens;
        if self.config.compose_categories && !compose {
            return Err(TrainError::Config(
                "composing item rows with their categories needs --compose-item-tokens".into(),
            ));
        }
        let shape = match &self.model {
            ModelSource::Init(dir) => {
                let model = Seq2Seq::load_hf_dir(dir, &self.config.run.device.open()?)?;
                let mut items = compose
                    .then(|| ItemComposition::load(&model, dir))
                    .transpose()?;
                if !texts.labels.is_empty() {
                    if let Some(composition) = items.take() {
                        let extra = category_pieces(&model.tokenizer, texts, &composition.rows()?)?;
                        items = Some(composition.extended(&extra)?);
                    }
                }
                return Ok((model, items));
            }
            ModelSource::Preset(preset) => T5Config::preset(*preset),
            ModelSource::ModelConfig(path) => read_shape(path)?,
        };
        let mut tokenizer = self.new_tokenizer(own_text)?;
        // Pieces are read before the titles become tokens of their own.
        let pieces: Vec<(&str, Vec<u32>)> = if self.item_tokens.from_pieces || compose {
            texts
                .titles
                .iter()
                .map(|t| {
                    let ids = tokenizer.encode(t.trim(), false)?;
                    Ok((t.trim(), ids.get_ids().to_vec()))
                })
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let first_item_token = tokenizer.get_vocab_size(true) as u32;
        if !texts.titles.is_empty() {
            let added = add_item_tokens(&mut tokenizer, texts.titles.iter().map(String::as_str))?;
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
        if !texts.labels.is_empty() {
            let extra = category_pieces(&tokenizer, texts, &rows.iter().cloned().collect())?;
            add_new_pieces(rows.iter_mut().map(|(t, p)| (*t, p)), &extra);
        }
        let model = create_model(
            tokenizer,
            &shape,
            self.config.seed,
            &self.config.run.device.open()?,
        )?;
        if self.item_tokens.from_pieces && !rows.is_empty() {
            item_tokens_from_pieces(&model, &rows)?;
            tracing::info!("{} item tokens start from their titles' pieces", rows.len());
        }
        if !compose {
            return Ok((model, None));
        }
        if rows.is_empty() {
            return Err(TrainError::Config(
                "--compose-item-tokens: no item token has title pieces (give --item-tokens)".into(),
            ));
        }
        tracing::info!(
            "{} item tokens composed with their titles' pieces",
            rows.len()
        );
        let items = ItemComposition::attach(&model, &rows)?;
        Ok((model, Some(items)))
    }
}

/// The catalogue as a new model's item tokens and their composition see it.
#[derive(Debug, Default)]
struct ItemTexts {
    /// Titles that get tokens of their own (none without item tokens).
    titles: Vec<String>,
    /// Each item's title with the category labels its row is also composed from (none unless
    /// [`TrainConfig::compose_categories`]).
    labels: Vec<(String, Vec<String>)>,
}

/// Each item's category labels but those more than half the catalogue carries: a label on
/// nearly every item ("Video Games") tells none apart, and would only dilute each row.
fn distinctive_labels(prepared: &Prepared) -> Vec<(String, Vec<String>)> {
    let items = &prepared.dataset.items;
    let mut carriers: HashMap<&str, usize> = HashMap::new();
    for item in items {
        let mut own: Vec<&str> = item.categories.iter().map(String::as_str).collect();
        own.sort_unstable();
        own.dedup();
        for label in own {
            *carriers.entry(label).or_default() += 1;
        }
    }
    items
        .iter()
        .map(|item| {
            let mut kept: Vec<String> = Vec::new();
            for label in &item.categories {
                if 2 * carriers[label.as_str()] <= items.len() && !kept.contains(label) {
                    kept.push(label.clone());
                }
            }
            (item.title.trim().to_string(), kept)
        })
        .collect()
}

/// The word pieces of each composed item token's category labels. A label that reads as a
/// catalogue title ("PlayStation 4") comes out of the tokenizer as that item's token, which
/// stands for its title pieces here (`rows`), since an item row may not feed on another. Items
/// sharing a title (and so a token) take the first one's labels.
fn category_pieces(
    tokenizer: &Tokenizer,
    texts: &ItemTexts,
    rows: &BTreeMap<u32, Vec<u32>>,
) -> Result<HashMap<u32, Vec<u32>>> {
    let mut encoded: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
    for (title, labels) in &texts.labels {
        let Some(token) = tokenizer
            .token_to_id(title)
            .filter(|t| rows.contains_key(t))
        else {
            continue;
        };
        if out.contains_key(&token) {
            continue;
        }
        let mut pieces = Vec::new();
        for label in labels {
            if !encoded.contains_key(label.as_str()) {
                let ids = tokenizer.encode(label.as_str(), false)?.get_ids().to_vec();
                encoded.insert(label, ids);
            }
            for id in &encoded[label.as_str()] {
                for p in rows.get(id).map_or(std::slice::from_ref(id), Vec::as_slice) {
                    if !pieces.contains(p) {
                        pieces.push(*p);
                    }
                }
            }
        }
        out.insert(token, pieces);
    }
    Ok(out)
}

/// A model shape from a Hugging Face-style T5 config.json.
fn read_shape(path: &Path) -> Result<T5Config> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let bad = |e: String| TrainError::Config(format!("--model-config {}: {e}", path.display()));
    let shape: T5Config = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    shape.validate().map_err(|e| bad(e.to_string()))?;
    Ok(shape)
}

/// A resumed run continues with its checkpoint's settings; refuse settings that would change
/// them rather than ignore them silently. The run controls (time budget, save and validation
/// intervals, progress) may differ, and a run may be extended to more epochs or steps
/// ([`Trainer::extend`]).
fn check_same_run(last: &Path, asked: &TrainConfig) -> Result<()> {
    let mut saved = read_state(last)?.config;
    saved.run = asked.run.clone();
    // Checkpoints made before the line filter was recorded carry none; their own run continues
    // as it was.
    if saved.lines.is_none() {
        saved.lines.clone_from(&asked.lines);
    }
    if saved.runs_no_shorter(asked.epochs, asked.max_steps) {
        saved.epochs = asked.epochs;
        saved.max_steps = asked.max_steps;
    }
    if saved == *asked {
        return Ok(());
    }
    let (a, b) = (serde_json::to_value(&saved), serde_json::to_value(asked));
    let (a, b) = (a.expect("configs serialise"), b.expect("configs serialise"));
    let changed: Vec<String> = a
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| b.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("{k} (checkpoint {v}, now {})", b[k.as_str()]))
        .collect();
    Err(TrainError::Changed {
        path: last.to_path_buf(),
        changed: changed.join(", "),
    })
}

/// For `map_while` over read results: passes values on, and at the first error records it in
/// `failure` and ends the iteration, so that a reader inside an iterator can still fail.
fn until_error<T>(failure: &Mutex<Option<TrainError>>) -> impl Fn(Result<T>) -> Option<T> + '_ {
    move |read| match read {
        Ok(value) => Some(value),
        Err(e) => {
            failure
                .lock()
                .expect("no panic while held")
                .get_or_insert(e);
            None
        }
    }
}
