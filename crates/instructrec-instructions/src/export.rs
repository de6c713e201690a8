//! Exporting an instruction set for training elsewhere: the files Hugging Face transformers'
//! `Seq2SeqTrainer` reads (`datasets.load_dataset("json", ...)`), written into one folder.
//!
//! - `train.jsonl`, `validation.jsonl`, `test.jsonl`: one object per instruction, `input` (the
//!   instruction text) and `target` (its target text, titles as plain text), then the line's
//!   labels (`task`, `preference`, `intention`, `strategy`, `target_kind`, `template`,
//!   `candidate_size` on evaluation lines) and the source's raw ids (`user`, `target_item`).
//! - `candidates/<fold>-<size>.jsonl`: the prepared dataset's stored candidate lists in raw ids,
//!   `{"user", "positive", "negatives"}`, the shape `eval --candidates` reads.
//! - `added_tokens.json` (only when asked): the catalogue titles our tokenizer gives one token
//!   each ([`item_token_titles`]), a JSON list for `tokenizer.add_tokens`.
//! - `manifest.json`: the source dataset, the instruction build, and each file's line count and
//!   SHA-256.
//!
//! Nothing in the output depends on the time or the paths given, so the same inputs give
//! byte-identical folders. Every file is staged beside its place and committed only when all are
//! complete, the manifest last, under the output's lock; an existing folder is replaced only
//! when it is empty or an earlier export.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path};

use instructrec_data::atomic::{self, Staged};
use instructrec_data::{DataError, Fold, OutputLock, Prepared};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::aspects::{IntentionKind, PreferenceKind, Strategy, TargetKind, TaskForm};
use crate::build::{BuildConfig, BUILD_CONFIG_FILE};
use crate::record::{read_jsonl, Instruction, Split};
use crate::STATS_FILE;

/// What the export folder's `manifest.json` says it is; an existing folder without it is not
/// replaced.
pub const EXPORT_FORMAT: &str = "instructrec-export/1";
pub const EXPORT_MANIFEST: &str = "manifest.json";
pub const ADDED_TOKENS_FILE: &str = "added_tokens.json";

/// A title's normal form (the tokenizer's normalizer), or why it has none.
pub type TitleForm<'a> = &'a dyn Fn(&str) -> Result<String, String>;

#[derive(Clone, Copy, Default)]
pub struct ExportOptions<'a> {
    /// Write `added_tokens.json`, keeping one title per normal form (see [`item_token_titles`]).
    pub item_tokens: Option<TitleForm<'a>>,
}

/// One file the export wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedFile {
    /// JSON lines, or entries of `added_tokens.json`.
    pub lines: usize,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportManifest {
    pub format: &'static str,
    pub dataset: DatasetSource,
    pub instructions: InstructionSource,
    /// Every file written, by its path in the folder.
    pub files: BTreeMap<String, ExportedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetSource {
    pub source: instructrec_data::Source,
    /// The prepared dataset's own checksums, by file name.
    pub checksums: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstructionSource {
    /// The build's configuration (`config.json`), its seed among them.
    pub config: BuildConfig,
    /// SHA-256 of the instruction files and `config.json`, `stats.json`, by file name.
    pub checksums: BTreeMap<String, String>,
}

/// An exported line. Field order is the file's.
#[derive(Serialize)]
struct ExportLine<'a> {
    input: &'a str,
    target: &'a str,
    task: TaskForm,
    preference: PreferenceKind,
    intention: IntentionKind,
    strategy: Strategy,
    target_kind: TargetKind,
    template: &'a str,
    user: &'a str,
    target_item: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_size: Option<usize>,
}

/// The catalogue titles that get one token each: titles of two words or more, trimmed, sorted
/// and deduplicated, keeping the first of titles with one normal form (`form`, the tokenizer's
/// normalizer), since added tokens are matched on normalized text. The rule of the train
/// crate's `add_item_tokens`, which calls this.
pub fn item_token_titles<'a, E>(
    titles: impl IntoIterator<Item = &'a str>,
    mut form: impl FnMut(&str) -> Result<String, E>,
) -> Result<Vec<&'a str>, E> {
    let mut titles: Vec<&str> = titles
        .into_iter()
        .map(str::trim)
        .filter(|t| t.split_whitespace().nth(1).is_some())
        .collect();
    // Token ids follow this order, so it must not depend on the catalogue's file order.
    titles.sort_unstable();
    titles.dedup();
    let mut forms = HashSet::new();
    let mut kept = Vec::with_capacity(titles.len());
    for title in titles {
        if forms.insert(form(title)?) {
            kept.push(title);
        }
    }
    Ok(kept)
}

/// Exports the instruction set in `instructions` (as `instructions build` wrote it from the
/// prepared dataset `data`) into `out`. Returns the manifest written.
pub fn export(
    instructions: &Path,
    data: &Path,
    out: &Path,
    options: &ExportOptions,
) -> Result<ExportManifest, DataError> {
    let lock = OutputLock::acquire(out)?;
    let earlier = earlier_files(out)?;
    let ours = |name: &str| name.starts_with('.') && name.ends_with(".tmp");
    lock.remove_leftovers(&[], Some(&ours))?;
    lock.remove_leftovers_in(Path::new("candidates"), &ours)?;

    let prepared = Prepared::load(data)?;
    let config = BuildConfig::read(instructions)?;
    let mut source_files: Vec<String> = Split::ALL.iter().map(|s| s.file_name()).collect();
    source_files.extend([BUILD_CONFIG_FILE, STATS_FILE].map(String::from));
    let mut checksums = BTreeMap::new();
    for name in source_files {
        checksums.insert(name.clone(), file_sha256(&instructions.join(name))?);
    }

    let mut staged: Vec<(String, Staged)> = Vec::new();
    let mut files = BTreeMap::new();
    let mut stage =
        |name: String, lines: usize, fill: &dyn Fn(&mut dyn Write) -> io::Result<()>| {
            let (tmp, sha256) = stage_hashed(&out.join(&name), fill)?;
            staged.push((name.clone(), tmp));
            files.insert(name, ExportedFile { lines, sha256 });
            Ok::<_, DataError>(())
        };
    for split in Split::ALL {
        let path = instructions.join(split.file_name());
        let lines = read_jsonl(&path)?;
        check_ids(&path, &lines, &prepared, data)?;
        stage(split.file_name(), lines.len(), &|w| {
            for line in &lines {
                serde_json::to_writer(&mut *w, &export_line(line, &prepared))?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
    }
    for ((fold, size), sets) in &prepared.candidates {
        let fold = match fold {
            Fold::Validation => "validation",
            Fold::Test => "test",
        };
        stage(
            format!("candidates/{fold}-{size}.jsonl"),
            sets.len(),
            &|w| w.write_all(&prepared.raw_id_lines(sets)),
        )?;
    }
    if let Some(form) = options.item_tokens {
        let titles = prepared.titles();
        let tokens = item_token_titles(titles.iter().map(String::as_str), form)
            .map_err(|e| DataError::Options(format!("item tokens: {e}")))?;
        let bytes = pretty(&tokens);
        stage(ADDED_TOKENS_FILE.into(), tokens.len(), &|w| {
            w.write_all(&bytes)
        })?;
    }

    let manifest = ExportManifest {
        format: EXPORT_FORMAT,
        dataset: DatasetSource {
            source: prepared.manifest.source.clone(),
            checksums: prepared.manifest.checksums.clone(),
        },
        instructions: InstructionSource { config, checksums },
        files,
    };
    let manifest_path = out.join(EXPORT_MANIFEST);
    let bytes = pretty(&manifest);
    let manifest_tmp =
        atomic::stage(&manifest_path, |tmp| std::fs::write(tmp, &bytes)).map_err(|e| {
            DataError::Io {
                path: manifest_path.clone(),
                source: e,
            }
        })?;
    for (name, tmp) in staged {
        tmp.commit().map_err(|e| DataError::Io {
            path: out.join(name),
            source: e,
        })?;
    }
    // Last, so that a folder whose manifest is new holds every file it names.
    manifest_tmp.commit().map_err(|e| DataError::Io {
        path: manifest_path,
        source: e,
    })?;
    for name in earlier {
        if !manifest.files.contains_key(&name) {
            let path = out.join(&name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(DataError::Io { path, source: e })
                }
                _ => {}
            }
        }
    }
    Ok(manifest)
}

/// The files an earlier export in `out` wrote (none for a folder that is absent or empty);
/// refuses any other folder.
fn earlier_files(out: &Path) -> Result<Vec<String>, DataError> {
    let refuse = |why: &str| DataError::File {
        path: out.to_path_buf(),
        message: format!(
            "{why}, and is not an earlier export (no {EXPORT_MANIFEST} of format \
             {EXPORT_FORMAT}); choose another --out, or empty it"
        ),
    };
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(_) if out.exists() => return Err(refuse("exists and is not a folder")),
        Err(source) => {
            return Err(DataError::Io {
                path: out.into(),
                source,
            })
        }
    };
    if entries.count() == 0 {
        return Ok(Vec::new());
    }
    let manifest: serde_json::Value = std::fs::read(out.join(EXPORT_MANIFEST))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|m: &serde_json::Value| m["format"] == EXPORT_FORMAT)
        .ok_or_else(|| refuse("the folder is not empty"))?;
    let names = manifest["files"].as_object().map(|f| f.keys().cloned());
    // Only plain relative paths are ever removed, whatever the manifest says.
    let plain = |name: &String| {
        let parts: Vec<_> = Path::new(name).components().collect();
        (1..=2).contains(&parts.len()) && parts.iter().all(|c| matches!(c, Component::Normal(_)))
    };
    Ok(names.into_iter().flatten().filter(plain).collect())
}

fn export_line<'a>(line: &'a Instruction, prepared: &'a Prepared) -> ExportLine<'a> {
    ExportLine {
        input: &line.text,
        target: &line.target,
        task: line.task,
        preference: line.preference.kind(),
        intention: line.intention.kind(),
        strategy: line.strategy,
        target_kind: line.target_kind,
        template: &line.template,
        user: &prepared.dataset.users[line.user.index()].original_id,
        target_item: &prepared.dataset.items[line.target_item.index()].original_id,
        candidate_size: line.candidate_size,
    }
}

/// Instructions built from another dataset name users or items this one lacks.
fn check_ids(
    path: &Path,
    lines: &[Instruction],
    prepared: &Prepared,
    data: &Path,
) -> Result<(), DataError> {
    let (users, items) = (prepared.dataset.users.len(), prepared.dataset.items.len());
    match lines
        .iter()
        .position(|l| l.user.index() >= users || l.target_item.index() >= items)
    {
        None => Ok(()),
        Some(n) => Err(DataError::File {
            path: path.to_path_buf(),
            message: format!(
                "instruction {} names a user or item that {} lacks; were the instructions built \
                 from it?",
                n + 1,
                data.display()
            ),
        }),
    }
}

fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("export records serialise");
    bytes.push(b'\n');
    bytes
}

/// Writes `path`'s new contents (staged, not committed) through `fill`, hashing them on the way.
fn stage_hashed(
    path: &Path,
    fill: &dyn Fn(&mut dyn Write) -> io::Result<()>,
) -> Result<(Staged, String), DataError> {
    let mut digest = None;
    let staged = atomic::stage(path, |tmp| {
        let mut w = Hashing {
            inner: BufWriter::new(File::create(tmp)?),
            hasher: Sha256::new(),
        };
        fill(&mut w)?;
        w.inner.flush()?;
        digest = Some(hex::encode(w.hasher.finalize()));
        Ok(())
    })
    .map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((staged, digest.expect("hashed while staging")))
}

struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn file_sha256(path: &Path) -> Result<String, DataError> {
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path).map_err(io_err)?, &mut hasher).map_err(io_err)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_token_titles_keep_titles_of_two_words_once_per_form() {
        let titles = [
            " Halo 3 ",
            "Doom",
            "Halo 3",
            "Star\u{a0}Wars",
            "Star Wars",
            "A  B",
        ];
        let collapse = |t: &str| Ok::<_, ()>(t.split_whitespace().collect::<Vec<_>>().join(" "));
        assert_eq!(
            item_token_titles(titles, collapse).unwrap(),
            ["A  B", "Halo 3", "Star Wars"]
        );
        let exact = |t: &str| Ok::<_, ()>(t.to_string());
        assert_eq!(item_token_titles(titles, exact).unwrap().len(), 4);
    }

    #[test]
    fn a_folder_that_is_not_an_export_is_refused_and_an_export_is_not() {
        let root = tempfile::tempdir().unwrap();
        assert!(earlier_files(&root.path().join("absent"))
            .unwrap()
            .is_empty());
        assert!(earlier_files(root.path()).unwrap().is_empty());
        std::fs::write(root.path().join("notes.txt"), "mine").unwrap();
        let e = earlier_files(root.path()).unwrap_err().to_string();
        assert!(e.contains("is not an earlier export"), "{e}");
        let manifest = serde_json::json!({
            "format": EXPORT_FORMAT,
            "files": {"train.jsonl": {}, "candidates/test-3.jsonl": {}, "../x": {}, "/etc/x": {}},
        });
        std::fs::write(root.path().join(EXPORT_MANIFEST), manifest.to_string()).unwrap();
        let mut names = earlier_files(root.path()).unwrap();
        names.sort();
        assert_eq!(names, ["candidates/test-3.jsonl", "train.jsonl"]);
        let file = root.path().join("notes.txt");
        assert!(earlier_files(&file).is_err());
    }
}
