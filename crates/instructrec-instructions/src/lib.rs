//! Instructions for instructrec: the P/I/T instruction format, the template library, the fills
//! (history, category path, and a teacher's stated tastes and vague needs), and building the
//! train/validation/test instruction files from a prepared dataset.

mod aspects;
mod build;
mod record;
mod stats;
pub mod teacher;
mod template;
mod text;

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

pub use aspects::{
    Intention, IntentionKind, Preference, PreferenceKind, Strategy, TargetKind, TaskForm,
};
pub use build::{BuildConfig, BuildError, Builder, Ineligible, InstructionSet, ShownTemplate};
pub use record::{read_jsonl, write_jsonl, Instruction, RecordError, Split};
pub use stats::{FillKindStats, SplitStats, Stats, Timings};
pub use template::{
    Fills, Segment, Slot, Template, TemplateError, TemplateLibrary, BUILTIN_TEMPLATES,
};
pub use text::{fit_history, mentions_title, normalised_words, TokenCounter, WordCounter};

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
    /// Writes `train.jsonl`, `validation.jsonl`, `test.jsonl` and `stats.json` into `dir`, each
    /// atomically.
    pub fn write(&self, dir: &Path) -> Result<(), RecordError> {
        std::fs::create_dir_all(dir).map_err(|source| RecordError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        for split in Split::ALL {
            write_jsonl(&dir.join(split.file_name()), self.split(split))?;
        }
        let stats = serde_json::to_vec_pretty(&self.stats).expect("stats serialise");
        let path = dir.join("stats.json");
        write_atomically(&path, &stats).map_err(|source| RecordError::Io { path, source })
    }
}

/// Writes to a temporary file beside `path` and renames it into place, so a reader never sees
/// a partial file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    persist(tmp, path)
}

/// Renames a finished temporary file into place, readable like any other output file
/// (temporary files are created private).
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
