//! Fitting a baseline by name: train it (or load its checkpoint) and describe it for a report.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::Context;
use instructrec_data::{ItemId, Prepared};
use instructrec_eval::experiment::Experiment;
use instructrec_eval::report::config_hash;
use instructrec_eval::{Scorer, TrainingLog};
use instructrec_text::SentenceEncoder;
use serde::{Deserialize, Serialize};

use crate::bm25::{Bm25, Bm25Config};
use crate::popularity::Popularity;
use crate::seqrec::{self, SeqRec, SeqRecConfig};
use crate::textrec::{
    self, read_pairs, TextInput, TextModelKind, TextRec, TextRecConfig, TextSource, WordHash,
};
use crate::trainer::{train_or_load, Checkpoint, Stopping, Trainable, Trained};
use crate::twotower::{self, TwoTower, TwoTowerConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    Popularity,
    Bm25,
    SasRec,
    Bert4Rec,
    Dssm,
    Tem,
    TwoTower,
}

impl Baseline {
    pub const ALL: [Baseline; 7] = [
        Baseline::Popularity,
        Baseline::Bm25,
        Baseline::SasRec,
        Baseline::Bert4Rec,
        Baseline::Dssm,
        Baseline::Tem,
        Baseline::TwoTower,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Baseline::Popularity => "popularity",
            Baseline::Bm25 => "bm25",
            Baseline::SasRec => "sasrec",
            Baseline::Bert4Rec => "bert4rec",
            Baseline::Dssm => "dssm",
            Baseline::Tem => "tem",
            Baseline::TwoTower => "two-tower",
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Baseline {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Baseline::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Baseline::ALL.iter().map(|b| b.as_str()).collect();
                format!("unknown model {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// What retrieves the items the instruction models rerank under full ranking (`eval --matcher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullRankingMatcher {
    /// A baseline scoring the whole catalogue, fitted if it is not among the evaluated models.
    Baseline(Baseline),
    /// Each instruction model's own T2 generation (`ExperimentSpec::generation_matcher`).
    Generation,
}

impl FromStr for FullRankingMatcher {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "generation" => Ok(Self::Generation),
            _ => s
                .parse()
                .map(Self::Baseline)
                .map_err(|e| format!("{e} (or generation)")),
        }
    }
}

/// Training options shared by the neural baselines.
#[derive(Debug, Clone)]
pub struct FitOptions {
    pub seed: u64,
    /// Overrides each model's default time budget.
    pub time_budget_s: Option<f64>,
    pub max_epochs: Option<usize>,
    pub validation_stride: Option<usize>,
    /// Where weights are saved after training and loaded from when they match.
    pub checkpoint_dir: Option<PathBuf>,
    /// A pretrained sentence encoder directory for the text models; without it they train a
    /// hashed bag of words.
    pub text_encoder: Option<PathBuf>,
    /// What the text models (DSSM, TEM) train on; they refuse to fit without it.
    pub search: Option<SearchTraining>,
    /// Where the fitted two-tower model is saved for serving (see [`twotower::saved`]).
    pub save_two_tower: Option<PathBuf>,
}

pub use instructrec_eval::experiment::SearchTraining;

/// A fitted baseline and what a report says about it.
pub struct Fitted {
    pub scorer: Box<dyn Scorer>,
    pub config: serde_json::Value,
    pub config_hash: String,
    pub model_hash: String,
    pub train_wall_s: f64,
    pub training: Option<TrainingLog>,
    pub loaded_from: Option<PathBuf>,
}

/// Fits each baseline and evaluates it in `experiment`, in order, then the instruction models.
/// When the experiment needs mined hard negatives, the two-tower miner is fitted first; under
/// full ranking, `matcher` retrieves the items the instruction models rerank. Either is reused
/// if it is also among `baselines`.
pub fn evaluate_all(
    experiment: &mut Experiment,
    baselines: &[Baseline],
    (matcher, depth): (FullRankingMatcher, usize),
    options: &FitOptions,
) -> anyhow::Result<()> {
    // Generation needs no baseline: the experiment asks the instruction model itself.
    let matcher = match matcher {
        FullRankingMatcher::Baseline(b) => Some(b),
        FullRankingMatcher::Generation => None,
    };
    if let Some(dir) = &options.save_two_tower {
        let trained_here = baselines.contains(&Baseline::TwoTower)
            || experiment.needs_miner()
            || (experiment.needs_matcher() && matcher == Some(Baseline::TwoTower));
        if !trained_here {
            anyhow::bail!(
                "--save-two-tower {}: this evaluation does not fit the two-tower model; add \
                 two-tower to --models",
                dir.display()
            );
        }
        // Before any training, so that a long run does not end in this refusal.
        twotower::saved::check_save_dir(dir)?;
    }
    let mut fitted: Vec<(Baseline, Fitted)> = Vec::new();
    if experiment.needs_miner() {
        let miner = fit(Baseline::TwoTower, experiment.prepared(), options)?;
        let identity = miner.report_entry(Baseline::TwoTower.to_string());
        experiment.mine(miner.scorer.as_ref(), &identity)?;
        fitted.push((Baseline::TwoTower, miner));
    }
    for &baseline in baselines {
        tracing::info!(model = %baseline, "fitting");
        if !fitted.iter().any(|(b, _)| *b == baseline) {
            fitted.push((baseline, fit(baseline, experiment.prepared(), options)?));
        }
        let f = &fitted
            .iter()
            .find(|(b, _)| *b == baseline)
            .expect("just fitted")
            .1;
        experiment.evaluate(f.scorer.as_ref(), f.report_entry(baseline.to_string()))?;
    }
    if let Some(m) = matcher.filter(|_| experiment.needs_matcher()) {
        if !fitted.iter().any(|(b, _)| *b == m) {
            fitted.push((m, fit(m, experiment.prepared(), options)?));
        }
    }
    let matcher = fitted
        .iter()
        .find(|(b, _)| Some(*b) == matcher)
        .map(|(_, f)| f.scorer.as_ref());
    experiment.evaluate_instruction_models(matcher, depth)
}

impl Fitted {
    /// The model's entry in a report, before its results.
    pub fn report_entry(&self, name: String) -> instructrec_eval::ModelReport {
        instructrec_eval::ModelReport {
            name,
            config: self.config.clone(),
            config_hash: self.config_hash.clone(),
            model_hash: self.model_hash.clone(),
            train_wall_s: self.train_wall_s,
            training: self.training.clone(),
            loaded_from: self.loaded_from.as_ref().map(|p| p.display().to_string()),
            results: Vec::new(),
        }
    }
}

fn simple(
    scorer: Box<dyn Scorer>,
    config: serde_json::Value,
    model_hash: String,
    wall: f64,
) -> Fitted {
    Fitted {
        scorer,
        config_hash: config_hash(&config),
        config,
        model_hash,
        train_wall_s: wall,
        training: None,
        loaded_from: None,
    }
}

pub fn fit(
    baseline: Baseline,
    prepared: &Prepared,
    options: &FitOptions,
) -> anyhow::Result<Fitted> {
    let start = Instant::now();
    let dir = options.checkpoint_dir.as_deref();
    match baseline {
        Baseline::Popularity => {
            let p = Popularity::fit(prepared);
            let hash = p.state_hash();
            let config =
                serde_json::json!({"counts": "training split (all but the last two items)"});
            Ok(simple(
                Box::new(p),
                config,
                hash,
                start.elapsed().as_secs_f64(),
            ))
        }
        Baseline::Bm25 => {
            let cfg = Bm25Config::default();
            let b = Bm25::fit(prepared, cfg);
            let hash = b.state_hash();
            Ok(simple(
                Box::new(b),
                serde_json::to_value(cfg)?,
                hash,
                start.elapsed().as_secs_f64(),
            ))
        }
        Baseline::SasRec | Baseline::Bert4Rec => {
            let mut config = match baseline {
                Baseline::SasRec => SeqRecConfig::sasrec(options.seed),
                _ => SeqRecConfig::bert4rec(options.seed),
            };
            options.apply(&mut config.stopping, Some(&mut config.validation_stride));
            let model = SeqRec::new(config.clone(), prepared.dataset.items.len())?;
            fit_neural(model, &config, Stem::Name, dir, prepared, |model| {
                seqrec::train(prepared, model)
            })
        }
        Baseline::Dssm | Baseline::Tem => fit_text(baseline, prepared, options),
        Baseline::TwoTower => {
            let (encoder, text) = text_source(options)?;
            let mut config = TwoTowerConfig::new(text, options.seed);
            options.apply(&mut config.stopping, Some(&mut config.validation_stride));
            let input = TextInput {
                encoder,
                title_cache: dir,
            };
            let model = TwoTower::new(config.clone(), prepared, input)?;
            let neural = train_neural(model, &config, Stem::NameAndHash, dir, prepared, |model| {
                twotower::train(prepared, model)
            })?;
            if let Some(out) = &options.save_two_tower {
                neural.trained.save_dir(out)?;
                tracing::info!("saved the two-tower model in {}", out.display());
            }
            neural.fitted()
        }
    }
}

impl FitOptions {
    /// Replaces a model's defaults with the options given.
    fn apply(&self, stopping: &mut Stopping, validation_stride: Option<&mut usize>) {
        if let Some(t) = self.time_budget_s {
            stopping.time_budget_s = t;
        }
        if let Some(e) = self.max_epochs {
            stopping.max_epochs = e;
        }
        if let (Some(s), Some(stride)) = (self.validation_stride, validation_stride) {
            *stride = s;
        }
    }
}

/// The pretrained encoder of `--text-encoder` and the text source a configuration records; the
/// hashed bag of words without one.
fn text_source(options: &FitOptions) -> anyhow::Result<(Option<SentenceEncoder>, TextSource)> {
    let encoder = options
        .text_encoder
        .as_deref()
        .map(SentenceEncoder::load)
        .transpose()?;
    let text = match &encoder {
        Some(e) => TextSource::Pretrained {
            dir: e.dir().to_path_buf(),
            weights: e.weights_hash().to_string(),
        },
        None => TextSource::Trained {
            buckets: 1 << 15,
            dim: 64,
            words: WordHash::Fnv1a64,
        },
    };
    Ok((encoder, text))
}

fn fit_text(
    baseline: Baseline,
    prepared: &Prepared,
    options: &FitOptions,
) -> anyhow::Result<Fitted> {
    let search = options.search.as_ref().with_context(|| {
        format!(
            "{baseline} trains on query lines: give the instruction directory (--instructions) \
             and use a search protocol"
        )
    })?;
    let (encoder, text) = text_source(options)?;
    let kind = match baseline {
        Baseline::Dssm => TextModelKind::Dssm,
        _ => TextModelKind::Tem,
    };
    let mut config = TextRecConfig::new(kind, text, search.query, options.seed);
    config.excluded_targets = search.excluded_targets.len();
    options.apply(&mut config.stopping, None);
    let dir = options.checkpoint_dir.as_deref();
    let input = TextInput {
        encoder,
        title_cache: dir,
    };
    let model = TextRec::new(config.clone(), prepared, input)?;
    fit_neural(model, &config, Stem::NameAndHash, dir, prepared, |model| {
        let excluded: HashSet<ItemId> = search.excluded_targets.iter().copied().collect();
        let pairs = read_pairs(&search.instructions, prepared, search.query, &excluded)?;
        tracing::info!(model = config.name(), pairs = pairs.len(), "training pairs");
        textrec::train(model, pairs)
    })
}

/// How a model's checkpoint files are named in the checkpoint directory.
enum Stem {
    /// The model's name: a new configuration replaces the old checkpoint (SASRec's and
    /// BERT4Rec's, which have always been named so).
    Name,
    /// The name and the first 12 digits of the configuration hash: checkpoints of several
    /// configurations stand side by side.
    NameAndHash,
}

/// Trains a neural baseline with `train`, or loads its checkpoint from `dir` when that was made
/// from the same configuration and dataset, and describes it for a report.
fn fit_neural<M: Trainable + 'static>(
    model: M,
    config: &impl Serialize,
    stem: Stem,
    dir: Option<&Path>,
    prepared: &Prepared,
    train: impl FnOnce(M) -> anyhow::Result<Trained<M>>,
) -> anyhow::Result<Fitted> {
    train_neural(model, config, stem, dir, prepared, train)?.fitted()
}

/// A neural baseline trained or loaded by [`train_neural`], its type still known (the
/// two-tower model is saved for serving from here).
struct Neural<M> {
    trained: Trained<M>,
    loaded_from: Option<PathBuf>,
    config: serde_json::Value,
    config_hash: String,
}

/// [`fit_neural`] without the description, which boxes the model.
fn train_neural<M: Trainable>(
    model: M,
    config: &impl Serialize,
    stem: Stem,
    dir: Option<&Path>,
    prepared: &Prepared,
    train: impl FnOnce(M) -> anyhow::Result<Trained<M>>,
) -> anyhow::Result<Neural<M>> {
    let config_json = serde_json::to_value(config)?;
    let hash = config_hash(&config_json);
    let checkpoint = dir.map(|d| {
        let name = model.name();
        match stem {
            Stem::Name => Checkpoint::new(d, &name),
            Stem::NameAndHash => Checkpoint::new(d, &format!("{name}-{}", &hash[..12])),
        }
    });
    let (trained, loaded_from) =
        train_or_load(model, train, checkpoint.as_ref(), config, &hash, prepared)?;
    Ok(Neural {
        trained,
        loaded_from,
        config: config_json,
        config_hash: hash,
    })
}

impl<M: Trainable + 'static> Neural<M> {
    /// The model and what a report says about it.
    fn fitted(self) -> anyhow::Result<Fitted> {
        let trained = self.trained;
        Ok(Fitted {
            model_hash: trained.model.weights_hash()?,
            scorer: Box::new(trained.model),
            config: self.config,
            config_hash: self.config_hash,
            train_wall_s: trained.train_wall_s,
            training: Some(trained.log),
            loaded_from: self.loaded_from,
        })
    }
}
