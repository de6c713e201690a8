//! The prepared directory on disk (layout in docs/data.md): JSON-lines files, one record a
//! line, plus `manifest.json` with the SHA-256 of every other file. Saving renders every file in
//! memory, writes them into a temporary sibling directory and renames it into place; loading
//! verifies every checksum before parsing anything.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::{replace_dir, replaceable, sha256_hex};
use crate::types::{
    CandidateSet, Dataset, Fold, Interaction, Item, ItemSplit, User, UserId, MIN_USER_INTERACTIONS,
};
use crate::{DataError, Manifest, Prepared};

const MANIFEST: &str = "manifest.json";
const ITEMS: &str = "items.jsonl";
const USERS: &str = "users.jsonl";
const INTERACTIONS: &str = "interactions.jsonl";
const ITEM_SPLIT: &str = "item_split.json";

/// One line of `interactions.jsonl`: a user's whole sequence, oldest first.
#[derive(Serialize, Deserialize)]
struct Sequence<T> {
    user: UserId,
    interactions: T,
}

fn candidates_file(fold: Fold, size: usize) -> String {
    let fold = match fold {
        Fold::Validation => "validation",
        Fold::Test => "test",
    };
    format!("candidates/{fold}-{size}.jsonl")
}

fn json_lines<T: Serialize + Sync>(records: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 64);
    for r in records {
        serde_json::to_writer(&mut out, r).expect("in-memory JSON serialisation cannot fail");
        out.push(b'\n');
    }
    out
}

/// Every file except the manifest, by relative path, in a fixed order.
fn render(p: &Prepared) -> Vec<(String, Vec<u8>)> {
    enum Part<'a> {
        Items,
        Users,
        Interactions,
        Split,
        Candidates(&'a [CandidateSet]),
    }
    let mut parts = vec![
        (ITEMS.to_string(), Part::Items),
        (USERS.to_string(), Part::Users),
        (INTERACTIONS.to_string(), Part::Interactions),
        (ITEM_SPLIT.to_string(), Part::Split),
    ];
    for ((fold, size), sets) in &p.candidates {
        parts.push((candidates_file(*fold, *size), Part::Candidates(sets)));
    }
    parts
        .into_par_iter()
        .map(|(name, part)| {
            let bytes = match part {
                Part::Items => json_lines(&p.dataset.items),
                Part::Users => json_lines(&p.dataset.users),
                Part::Interactions => {
                    let lines: Vec<Sequence<&[Interaction]>> = p
                        .dataset
                        .users
                        .iter()
                        .zip(&p.dataset.sequences)
                        .map(|(u, s)| Sequence {
                            user: u.id,
                            interactions: s.as_slice(),
                        })
                        .collect();
                    json_lines(&lines)
                }
                Part::Split => {
                    let mut v = serde_json::to_vec(&p.item_split)
                        .expect("in-memory JSON serialisation cannot fail");
                    v.push(b'\n');
                    v
                }
                Part::Candidates(sets) => json_lines(sets),
            };
            (name, bytes)
        })
        .collect()
}

/// The checksums `save` will record, computed without writing anything.
pub(crate) fn checksums(p: &Prepared) -> BTreeMap<String, String> {
    render(p)
        .into_iter()
        .map(|(name, bytes)| (name, sha256_hex(&bytes)))
        .collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

pub(crate) fn save(p: &Prepared, dir: &Path) -> Result<(), DataError> {
    // A user's folder can hold a file called manifest.json too (a web project's does): only a
    // dataset nobody changed is replaced.
    let check_existing = || {
        let manifest = |bytes: &[u8]| {
            serde_json::from_slice::<Manifest>(bytes)
                .map(|m| m.checksums)
                .map_err(|e| format!("{MANIFEST} is not a prepared dataset's manifest: {e}"))
        };
        replaceable(dir, MANIFEST, manifest, "preparation").map_err(|reason| {
            DataError::file(
                dir,
                format!(
                    "exists and is not a prepared dataset as preparation left it ({reason}); \
                     refusing to replace it: move it away or choose another --out"
                ),
            )
        })
    };
    replace_dir(dir, check_existing, |staging| {
        let files = render(p);
        let mut manifest = p.manifest.clone();
        manifest.checksums = files
            .iter()
            .map(|(n, b)| (n.clone(), sha256_hex(b)))
            .collect();
        for (file, bytes) in &files {
            write_file(&staging.join(file), bytes)?;
        }
        let mut manifest_bytes =
            serde_json::to_vec_pretty(&manifest).expect("in-memory JSON serialisation cannot fail");
        manifest_bytes.push(b'\n');
        write_file(&staging.join(MANIFEST), &manifest_bytes)
    })
}

fn parse_lines<T: for<'de> Deserialize<'de>>(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<T>, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DataError::file(path, "not valid UTF-8"))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| DataError::line(path, i + 1, format!("malformed record: {e}")))
        })
        .collect()
}

pub(crate) fn load(dir: &Path) -> Result<Prepared, DataError> {
    let manifest_path = dir.join(MANIFEST);
    let manifest_bytes =
        std::fs::read(&manifest_path).map_err(|e| DataError::io(&manifest_path, e))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        DataError::line(&manifest_path, e.line(), format!("malformed manifest: {e}"))
    })?;

    let mut expected: Vec<String> = [ITEMS, USERS, INTERACTIONS, ITEM_SPLIT]
        .map(String::from)
        .to_vec();
    for fold in [Fold::Validation, Fold::Test] {
        for &size in &manifest.options.candidate_sizes {
            expected.push(candidates_file(fold, size));
        }
    }
    let mut files = BTreeMap::new();
    for name in &expected {
        let path = dir.join(name);
        let recorded = manifest
            .checksums
            .get(name)
            .ok_or_else(|| DataError::file(&manifest_path, format!("no checksum for {name}")))?;
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        let actual = sha256_hex(&bytes);
        if &actual != recorded {
            return Err(DataError::file(
                &path,
                format!("SHA-256 {actual} differs from {recorded} recorded in manifest.json: the file changed after preparation"),
            ));
        }
        files.insert(name.clone(), (path, bytes));
    }
    let file = |name: &str| &files[name];

    let (path, bytes) = file(ITEMS);
    let items: Vec<Item> = parse_lines(path, bytes)?;
    check_dense(path, items.iter().map(|i| i.id.index()))?;
    let (path, bytes) = file(USERS);
    let users: Vec<User> = parse_lines(path, bytes)?;
    check_dense(path, users.iter().map(|u| u.id.index()))?;
    let (path, bytes) = file(INTERACTIONS);
    let lines: Vec<Sequence<Vec<Interaction>>> = parse_lines(path, bytes)?;
    check_dense(path, lines.iter().map(|s| s.user.index()))?;
    if lines.len() != users.len() {
        return Err(DataError::file(
            path,
            format!("{} sequences for {} users", lines.len(), users.len()),
        ));
    }
    let mut sequences = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        if line.interactions.len() < MIN_USER_INTERACTIONS {
            return Err(DataError::line(
                path,
                i + 1,
                format!("fewer than {MIN_USER_INTERACTIONS} interactions"),
            ));
        }
        if let Some(bad) = line
            .interactions
            .iter()
            .find(|x| x.item.index() >= items.len())
        {
            return Err(DataError::field(
                path,
                i + 1,
                "item",
                format!("{} is not an item id", bad.item.0),
            ));
        }
        sequences.push(line.interactions);
    }
    let (path, bytes) = file(ITEM_SPLIT);
    let item_split: ItemSplit = serde_json::from_slice(bytes)
        .map_err(|e| DataError::line(path, e.line(), format!("malformed item split: {e}")))?;

    let mut candidates = BTreeMap::new();
    for fold in [Fold::Validation, Fold::Test] {
        for &size in &manifest.options.candidate_sizes {
            let (path, bytes) = file(&candidates_file(fold, size));
            let sets: Vec<CandidateSet> = parse_lines(path, bytes)?;
            candidates.insert((fold, size), sets);
        }
    }
    Ok(Prepared {
        manifest,
        dataset: Dataset {
            items,
            users,
            sequences,
        },
        item_split,
        candidates,
    })
}

/// Ids must be 0, 1, 2, ... in file order, because they index vectors.
fn check_dense(path: &Path, ids: impl Iterator<Item = usize>) -> Result<(), DataError> {
    for (line, id) in ids.enumerate() {
        if id != line {
            return Err(DataError::field(
                path,
                line + 1,
                "id",
                format!("expected {line}, got {id}"),
            ));
        }
    }
    Ok(())
}
