//! A trained two-tower model as a directory, which `eval --save-two-tower` writes and
//! `serve --matcher two-tower` loads: `config.json`, what rebuilds the model (its
//! configuration with the text source, the catalogue it was trained on, its training log and
//! each weights file's SHA-256), and the weights as safetensors, `model.safetensors` with the
//! sequence encoder's beside it in `model.seq.safetensors`. Titles are not stored: they are
//! the catalogue's, which `catalogue` identifies.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use instructrec_data::atomic::{replace_dir, replaceable, sha256_hex};
use instructrec_data::Prepared;
use instructrec_eval::TrainingLog;
use instructrec_text::SentenceEncoder;
use serde::{Deserialize, Serialize};

use super::{TwoTower, TwoTowerConfig};
use crate::textrec::{TextInput, TextSource};
use crate::trainer::{part_path, Trainable, Trained};

pub const CONFIG_FILE: &str = "config.json";
const WEIGHTS_FILE: &str = "model.safetensors";
/// What `model` says in a saved two-tower's config.json: a T5 checkpoint's directory holds a
/// config.json and a model.safetensors too.
const KIND: &str = "two-tower";
const FORMAT: u32 = 1;

/// The catalogue a model was trained on. Item and user ids index the model's embeddings, so a
/// model serves only a dataset with the same items and users in the same order; interactions
/// may differ, since serving reads the histories from the data it serves. The SHA-256 are the
/// prepared manifest's (a dataset built in memory has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    pub items: usize,
    pub users: usize,
    /// SHA-256 of the prepared `items.jsonl` (ids and titles).
    pub items_sha256: Option<String>,
    /// SHA-256 of the prepared `users.jsonl`.
    pub users_sha256: Option<String>,
}

impl Catalogue {
    pub(crate) fn of(prepared: &Prepared) -> Self {
        let checksum = |file: &str| prepared.manifest.checksums.get(file).cloned();
        Self {
            items: prepared.dataset.items.len(),
            users: prepared.dataset.users.len(),
            items_sha256: checksum("items.jsonl"),
            users_sha256: checksum("users.jsonl"),
        }
    }
}

/// The contents of `config.json`.
#[derive(Serialize, Deserialize)]
struct Saved {
    model: String,
    format: u32,
    config: TwoTowerConfig,
    catalogue: Catalogue,
    training: TrainingLog,
    train_wall_s: f64,
    /// SHA-256 of each weights file, by file name: a changed file is refused on load, and a
    /// later save replaces only an unchanged directory.
    files: BTreeMap<String, String>,
}

impl Trained<TwoTower> {
    /// Writes the model to directory `dir` (layout in the module's description), whole or not
    /// at all: `dir` is replaced only when it is empty or an earlier save nobody changed.
    pub fn save_dir(&self, dir: &Path) -> anyhow::Result<()> {
        replace_dir(
            dir,
            || check_save_dir(dir),
            |staging| {
                let weights = staging.join(WEIGHTS_FILE);
                self.model.save(&weights)?;
                let mut files = BTreeMap::new();
                for (part, _) in self.model.parts() {
                    let path = part_path(&weights, part);
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    files.insert(file_name(&path), sha256_hex(&bytes));
                }
                let saved = Saved {
                    model: KIND.into(),
                    format: FORMAT,
                    config: self.model.config.clone(),
                    catalogue: self.model.catalogue.clone(),
                    training: self.log.clone(),
                    train_wall_s: self.train_wall_s,
                    files,
                };
                let path = staging.join(CONFIG_FILE);
                std::fs::write(&path, serde_json::to_string_pretty(&saved)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))
            },
        )
    }
}

/// Refuses `dir` as where a model is saved unless it is absent, empty or an earlier save
/// nobody changed; callers check before training too, so that a long training does not end in
/// this refusal.
pub fn check_save_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let listed = |bytes: &[u8]| {
        serde_json::from_slice::<Saved>(bytes)
            .map(|s| s.files)
            .map_err(|e| format!("{CONFIG_FILE} is not a saved two-tower model's: {e}"))
    };
    replaceable(dir, CONFIG_FILE, listed, "saving the two-tower model").map_err(|reason| {
        anyhow!(
            "{}: exists and is not a two-tower model as it was saved ({reason}); refusing to \
             replace it: move it away or choose another directory",
            dir.display()
        )
    })
}

impl TwoTower {
    /// Loads a model that [`Trained::save_dir`] wrote, to serve `prepared`, which must hold the
    /// catalogue it was trained on. A pretrained text encoder is read from the directory its
    /// configuration names (`config.text.dir`) and must have the recorded weights; its title
    /// vectors are computed here, which takes minutes for a large catalogue on a CPU.
    pub fn load_dir(dir: &Path, prepared: &Prepared) -> anyhow::Result<TwoTower> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let saved: Saved = serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{}: not a saved two-tower model's configuration: {e}",
                path.display()
            )
        })?;
        let at = |field: &str| format!("{}: {field}", path.display());
        if saved.model != KIND {
            bail!("{}: {:?} is not {KIND:?}", at("model"), saved.model);
        }
        if saved.format != FORMAT {
            bail!(
                "{}: {} is not the format this version reads ({FORMAT})",
                at("format"),
                saved.format
            );
        }
        check_catalogue(&saved.catalogue, &Catalogue::of(prepared), &at)?;
        for (name, recorded) in &saved.files {
            let file = dir.join(name);
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let actual = sha256_hex(&bytes);
            if &actual != recorded {
                bail!(
                    "{}: SHA-256 {actual} differs from {recorded}, recorded in {}: the file \
                     changed after the model was saved",
                    file.display(),
                    at(&format!("files.{name}"))
                );
            }
        }
        let encoder = match &saved.config.text {
            TextSource::Pretrained {
                dir: encoder_dir,
                weights,
            } => {
                let encoder = SentenceEncoder::load(encoder_dir).with_context(|| {
                    format!(
                        "{}: cannot load the sentence encoder the model was trained with",
                        at("config.text.dir")
                    )
                })?;
                if encoder.weights_hash() != weights {
                    bail!(
                        "{}: the model was trained with a sentence encoder whose weights have \
                         SHA-256 {weights}; {} now holds {}",
                        at("config.text.weights"),
                        encoder_dir.display(),
                        encoder.weights_hash()
                    );
                }
                Some(encoder)
            }
            TextSource::Trained { .. } => None,
        };
        let input = TextInput {
            encoder,
            title_cache: None,
        };
        let mut model = TwoTower::new(saved.config, prepared, input)?;
        let weights = dir.join(WEIGHTS_FILE);
        for (part, _) in model.parts() {
            let name = file_name(&part_path(&weights, part));
            if !saved.files.contains_key(&name) {
                bail!("{}: no SHA-256 for {name}", at("files"));
            }
        }
        model.load(&weights)?;
        Ok(model)
    }
}

/// Refuses a catalogue other than the one the model was trained on, naming the first field of
/// `catalogue` that differs.
fn check_catalogue(
    trained: &Catalogue,
    serving: &Catalogue,
    at: &dyn Fn(&str) -> String,
) -> anyhow::Result<()> {
    let checksum = |s: &Option<String>| {
        s.clone()
            .unwrap_or_else(|| "none (a dataset built in memory)".into())
    };
    let fields = [
        (
            "items",
            trained.items.to_string(),
            serving.items.to_string(),
        ),
        (
            "users",
            trained.users.to_string(),
            serving.users.to_string(),
        ),
        (
            "items_sha256",
            checksum(&trained.items_sha256),
            checksum(&serving.items_sha256),
        ),
        (
            "users_sha256",
            checksum(&trained.users_sha256),
            checksum(&serving.users_sha256),
        ),
    ];
    for (field, was, is) in fields {
        if was != is {
            bail!(
                "{}: the model was trained on {was}, the prepared data has {is}: a two-tower \
                 model serves only the catalogue it was trained on (its ids index the model's \
                 embeddings)",
                at(&format!("catalogue.{field}"))
            );
        }
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
