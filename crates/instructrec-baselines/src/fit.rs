//! Fitting a baseline by name: train it (or load its checkpoint) and describe it for a report.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context};
use instructrec_data::Prepared;
use instructrec_eval::report::{config_hash, write_atomic};
use instructrec_eval::{Scorer, TrainingLog};
use serde::{Deserialize, Serialize};

use std::collections::HashSet;

use instructrec_data::ItemId;
use instructrec_eval::QueryKind;
use instructrec_text::SentenceEncoder;

use crate::seqrec::{self, SeqRec, SeqRecConfig};
use crate::textrec::{self, read_pairs, TextModelKind, TextRec, TextRecConfig, TextSource};
use crate::twotower::{self, TwoTower, TwoTowerConfig};
use crate::{Bm25, Bm25Config, Popularity};

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
}

/// The (query, target) pairs the text models train on.
#[derive(Debug, Clone)]
pub struct SearchTraining {
    /// An instruction training file (`train.jsonl` from `instructrec instructions build`).
    pub instructions: PathBuf,
    pub query: QueryKind,
    /// Items that must not be training targets (product search's unseen items).
    pub excluded_targets: Vec<ItemId>,
}

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

/// What is stored beside a checkpoint's weights, so it is reused only for the same data and
/// configuration.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointMeta<C> {
    config: C,
    config_hash: String,
    dataset_checksums: std::collections::BTreeMap<String, String>,
    train_wall_s: f64,
    training: TrainingLog,
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
            if let Some(t) = options.time_budget_s {
                config.time_budget_s = t;
            }
            if let Some(e) = options.max_epochs {
                config.max_epochs = e;
            }
            if let Some(s) = options.validation_stride {
                config.validation_stride = s;
            }
            fit_seqrec(prepared, config, options.checkpoint_dir.as_deref())
        }
        Baseline::Dssm | Baseline::Tem => fit_text(baseline, prepared, options),
        Baseline::TwoTower => fit_two_tower(prepared, options),
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
        },
    };
    Ok((encoder, text))
}

fn fit_two_tower(prepared: &Prepared, options: &FitOptions) -> anyhow::Result<Fitted> {
    let (encoder, text) = text_source(options)?;
    let mut config = TwoTowerConfig::new(text, options.seed);
    if let Some(t) = options.time_budget_s {
        config.time_budget_s = t;
    }
    if let Some(e) = options.max_epochs {
        config.max_epochs = e;
    }
    if let Some(s) = options.validation_stride {
        config.validation_stride = s;
    }
    let config_json = serde_json::to_value(&config)?;
    let hash = config_hash(&config_json);
    let dir = options.checkpoint_dir.as_deref();
    let paths = dir.map(|d| {
        let stem = format!("two-tower-{}", &hash[..12]);
        (
            d.join(format!("{stem}.safetensors")),
            d.join(format!("{stem}.json")),
        )
    });
    if let Some((weights, meta_path)) = &paths {
        if let Some(meta) = matching_meta::<TwoTowerConfig>(meta_path, &hash, prepared)? {
            let mut model = TwoTower::new(config, prepared, encoder, dir)?;
            model.load(weights)?;
            tracing::info!(model = "two-tower", path = %weights.display(), "loaded checkpoint");
            return Ok(Fitted {
                model_hash: model.weights_hash()?,
                scorer: Box::new(model),
                config: config_json,
                config_hash: hash,
                train_wall_s: meta.train_wall_s,
                training: Some(meta.training),
                loaded_from: Some(weights.clone()),
            });
        }
    }
    let trained = twotower::train(prepared, config.clone(), encoder, dir)?;
    if let Some((weights, meta_path)) = &paths {
        trained.model.save(weights)?;
        let meta = CheckpointMeta {
            config,
            config_hash: hash.clone(),
            dataset_checksums: prepared.manifest.checksums.clone(),
            train_wall_s: trained.train_wall_s,
            training: trained.log.clone(),
        };
        write_atomic(meta_path, serde_json::to_string_pretty(&meta)?.as_bytes())?;
    }
    Ok(Fitted {
        model_hash: trained.model.weights_hash()?,
        scorer: Box::new(trained.model),
        config: config_json,
        config_hash: hash,
        train_wall_s: trained.train_wall_s,
        training: Some(trained.log),
        loaded_from: None,
    })
}

/// A checkpoint's metadata when it exists and was made with this configuration and dataset.
fn matching_meta<C: serde::de::DeserializeOwned>(
    meta_path: &Path,
    hash: &str,
    prepared: &Prepared,
) -> anyhow::Result<Option<CheckpointMeta<C>>> {
    if !meta_path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(meta_path)
        .with_context(|| format!("reading {}", meta_path.display()))?;
    let meta: CheckpointMeta<C> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", meta_path.display()))?;
    Ok(
        (meta.config_hash == hash && meta.dataset_checksums == prepared.manifest.checksums)
            .then_some(meta),
    )
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
    if let Some(t) = options.time_budget_s {
        config.time_budget_s = t;
    }
    if let Some(e) = options.max_epochs {
        config.max_epochs = e;
    }
    let config_json = serde_json::to_value(&config)?;
    let hash = config_hash(&config_json);
    let name = config.name();
    let paths = options.checkpoint_dir.as_ref().map(|d| {
        let stem = format!("{name}-{}", &hash[..12]);
        (
            d.join(format!("{stem}.safetensors")),
            d.join(format!("{stem}.json")),
        )
    });
    if let Some((weights, meta_path)) = &paths {
        if weights.exists() && meta_path.exists() {
            let text = std::fs::read_to_string(meta_path)
                .with_context(|| format!("reading {}", meta_path.display()))?;
            let meta: CheckpointMeta<TextRecConfig> = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", meta_path.display()))?;
            if meta.config_hash == hash && meta.dataset_checksums == prepared.manifest.checksums {
                let mut model =
                    TextRec::new(config, prepared, encoder, options.checkpoint_dir.as_deref())?;
                model.load(weights)?;
                tracing::info!(model = name, path = %weights.display(), "loaded checkpoint");
                return Ok(Fitted {
                    model_hash: model.weights_hash()?,
                    scorer: Box::new(model),
                    config: config_json,
                    config_hash: hash,
                    train_wall_s: meta.train_wall_s,
                    training: Some(meta.training),
                    loaded_from: Some(weights.clone()),
                });
            }
        }
    }
    let excluded: HashSet<ItemId> = search.excluded_targets.iter().copied().collect();
    let pairs = read_pairs(&search.instructions, prepared, search.query, &excluded)?;
    tracing::info!(model = name, pairs = pairs.len(), "training pairs");
    let trained = textrec::train(
        prepared,
        config.clone(),
        encoder,
        options.checkpoint_dir.as_deref(),
        pairs,
    )?;
    if let Some((weights, meta_path)) = &paths {
        trained.model.save(weights)?;
        let meta = CheckpointMeta {
            config,
            config_hash: hash.clone(),
            dataset_checksums: prepared.manifest.checksums.clone(),
            train_wall_s: trained.train_wall_s,
            training: trained.log.clone(),
        };
        write_atomic(meta_path, serde_json::to_string_pretty(&meta)?.as_bytes())?;
    }
    Ok(Fitted {
        model_hash: trained.model.weights_hash()?,
        scorer: Box::new(trained.model),
        config: config_json,
        config_hash: hash,
        train_wall_s: trained.train_wall_s,
        training: Some(trained.log),
        loaded_from: None,
    })
}

fn fit_seqrec(
    prepared: &Prepared,
    config: SeqRecConfig,
    dir: Option<&Path>,
) -> anyhow::Result<Fitted> {
    let config_json = serde_json::to_value(&config)?;
    let hash = config_hash(&config_json);
    let name = config.name();
    let paths = dir.map(|d| {
        (
            d.join(format!("{name}.safetensors")),
            d.join(format!("{name}.json")),
        )
    });
    if let Some((weights, meta_path)) = &paths {
        if weights.exists() && meta_path.exists() {
            let text = std::fs::read_to_string(meta_path)
                .with_context(|| format!("reading {}", meta_path.display()))?;
            let meta: CheckpointMeta<SeqRecConfig> = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", meta_path.display()))?;
            if meta.config_hash == hash && meta.dataset_checksums == prepared.manifest.checksums {
                let mut model = SeqRec::new(config, prepared.dataset.items.len())?;
                model.load(weights)?;
                tracing::info!(model = name, path = %weights.display(), "loaded checkpoint");
                return Ok(Fitted {
                    model_hash: model.weights_hash()?,
                    scorer: Box::new(model),
                    config: config_json,
                    config_hash: hash,
                    train_wall_s: meta.train_wall_s,
                    training: Some(meta.training),
                    loaded_from: Some(weights.clone()),
                });
            }
            tracing::warn!(
                model = name,
                path = %meta_path.display(),
                "checkpoint was made with another configuration or dataset; training anew"
            );
        }
    }
    let trained = seqrec::train(prepared, config.clone())?;
    if let Some((weights, meta_path)) = &paths {
        trained.model.save(weights)?;
        let meta = CheckpointMeta {
            config,
            config_hash: hash.clone(),
            dataset_checksums: prepared.manifest.checksums.clone(),
            train_wall_s: trained.train_wall_s,
            training: trained.log.clone(),
        };
        write_atomic(meta_path, serde_json::to_string_pretty(&meta)?.as_bytes())?;
    }
    if trained.log.epochs.is_empty() {
        bail!("{name} trained no epoch");
    }
    Ok(Fitted {
        model_hash: trained.model.weights_hash()?,
        scorer: Box::new(trained.model),
        config: config_json,
        config_hash: hash,
        train_wall_s: trained.train_wall_s,
        training: Some(trained.log),
        loaded_from: None,
    })
}
