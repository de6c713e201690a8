//! Instructions for instructrec: the P/I/T instruction format, the template library, the fills
//! (history, category path, and a teacher's stated tastes and vague needs), and building the
//! train/validation/test instruction files from a prepared dataset.

mod aspects;
mod build;
pub mod export;
mod filter;
mod record;
pub mod rerank;
mod stats;
pub mod teacher;
mod template;
mod text;

use std::path::Path;

use instructrec_data::{atomic, DataError, OutputLock};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

pub use aspects::{
    Intention, IntentionKind, Preference, PreferenceKind, Strategy, TargetKind, TaskForm,
};
pub use build::{
    BuildConfig, BuildError, BuildInputs, Builder, EvalUsers, Ineligible, InstructionSet,
    ShownTemplate, BUILD_CONFIG_FILE,
};
pub use export::{export, item_token_titles, ExportManifest, ExportOptions};
pub use filter::{Label, Labels, LineFilter, LineWeight, TrainingRecord, TRAINING_RECORD_FILE};
pub use record::{
    line_texts, read_jsonl, read_lines, write_jsonl, Instruction, InstructionLine, Split,
};
pub use stats::{BuildTimings, FillKindStats, InstructionStats, SplitStats};
pub use template::{
    Fills, Segment, Slot, Template, TemplateError, TemplateLibrary, BUILTIN_TEMPLATES,
    TEMPLATES_FILE,
};
pub use text::{
    fit_history, mentions_title, normalised_words, ListedNames, TokenCounter, WordCounter,
};

/// The build's statistics, beside the splits.
const STATS_FILE: &str = "stats.json";

/// An independent generator for each (seed, purpose, parts): every sampled thing can be
/// reproduced from the recorded seed alone, whatever order the work runs in.
pub(crate) fn seeded_rng(seed: u64, purpose: &str, parts: &[u64]) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(purpose.as_bytes());
    for p in parts {
        h.update(p.to_le_bytes());
    }
    ChaCha8Rng::from_seed(h.finalize().into())
}

impl InstructionSet {
    /// Writes `train.jsonl`, `validation.jsonl`, `test.jsonl`, `stats.json` and `config.json`
    /// into `dir`. All five are completed in temporary files before any is renamed into place,
    /// so that a failure (a full disk, say) leaves an earlier set whole instead of mixing old
    /// and new files.
    pub fn write(&self, dir: &Path) -> Result<(), DataError> {
        let lock = OutputLock::acquire(dir)?;
        std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let names: Vec<String> = Split::ALL
            .iter()
            .map(|s| s.file_name())
            .chain([STATS_FILE, BUILD_CONFIG_FILE, TEMPLATES_FILE].map(String::from))
            .collect();
        // The temporary files of a build killed while writing (`.<file>.<pid>-<n>.tmp`, large
        // for a big dataset); nobody else's, since we hold the lock.
        let leftover = |entry: &str| {
            names.iter().any(|n| {
                entry
                    .strip_prefix(&format!(".{n}."))
                    .is_some_and(|rest| rest.ends_with(".tmp"))
            })
        };
        lock.remove_leftovers(&[], Some(&leftover))?;
        let mut staged = Vec::new();
        for split in Split::ALL {
            let path = dir.join(split.file_name());
            staged.push((record::staged_jsonl(&path, self.split(split))?, path));
        }
        let records = [
            (STATS_FILE, serde_json::to_vec_pretty(&self.stats)),
            (BUILD_CONFIG_FILE, serde_json::to_vec_pretty(&self.config)),
            (TEMPLATES_FILE, Ok(self.templates.clone().into_bytes())),
        ];
        for (name, bytes) in records {
            let bytes = bytes.expect("records serialise");
            let path = dir.join(name);
            let tmp =
                atomic::stage(&path, |tmp| std::fs::write(tmp, &bytes)).map_err(|source| {
                    DataError::Io {
                        path: path.clone(),
                        source,
                    }
                })?;
            staged.push((tmp, path));
        }
        for (tmp, path) in staged {
            tmp.commit()
                .map_err(|source| DataError::Io { path, source })?;
        }
        Ok(())
    }
}
