//! The raw Amazon 2018 release (Ni et al.): reviews as JSON lines (`reviewerID`, `asin`,
//! `overall`, `unixReviewTime`, `reviewText`, `summary`) and metadata as JSON lines (`asin`,
//! `title`, `category`, `brand`, `description`, `feature`), each plain or gzip.
//!
//! Each user's reviews are ordered by `unixReviewTime`, ties in file order. The catalogue is the
//! set of reviewed items in first-review order; metadata of items nobody reviewed is skipped,
//! and the first metadata line of an ASIN wins (the release repeats some). A reviewed ASIN
//! without metadata is not an error: the release itself lacks metadata for some items, so the
//! item is imported without a title and preparation drops it as untitled, saying so.

use std::path::{Path, PathBuf};

use super::{
    clean_text, clean_title, for_each_line, split_category_labels, Format, Imported, ImportedItem,
    Interner, JsonRecord,
};
use crate::types::{Interaction, ItemId, Review};
use crate::DataError;

const EXTENSIONS: [&str; 4] = [".json", ".json.gz", ".jsonl", ".jsonl.gz"];

/// In a directory: the metadata file is the one whose name starts with `meta`, the reviews file
/// the other JSON-lines file.
pub(super) fn locate(dir: &Path) -> Result<(PathBuf, PathBuf), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            p.is_file() && EXTENSIONS.iter().any(|e| name.ends_with(e))
        })
        .collect();
    candidates.sort();
    let is_meta = |p: &PathBuf| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .starts_with("meta")
    };
    let (meta, reviews): (Vec<PathBuf>, Vec<PathBuf>) = candidates.into_iter().partition(is_meta);
    match (reviews.as_slice(), meta.as_slice()) {
        ([r], [m]) => Ok((r.clone(), m.clone())),
        _ => Err(DataError::file(
            dir,
            format!(
                "expected one reviews file and one meta_* file (.json/.jsonl, optionally .gz); found reviews {reviews:?}, meta {meta:?}; pass --reviews and --meta"
            ),
        )),
    }
}

pub(super) fn import(reviews_path: &Path, meta_path: &Path) -> Result<Imported, DataError> {
    let mut users = Interner::default();
    let mut catalogue = Interner::default();
    let mut sequences: Vec<Vec<Interaction>> = Vec::new();
    for_each_line(reviews_path, |line, row| {
        let record = JsonRecord::parse(reviews_path, line, row)?;
        let reviewer = record.required_str("reviewerID")?;
        let asin = record.required_str("asin")?;
        let timestamp = record.required_int("unixReviewTime")?;
        let rating = record.optional_number("overall")?;
        let summary = record.optional_str("summary")?.and_then(clean_text);
        let review_text = record.optional_str("reviewText")?.and_then(clean_text);
        let user = users.get_or_insert(reviewer) as usize;
        if user == sequences.len() {
            sequences.push(Vec::new());
        }
        let item = catalogue.get_or_insert(asin);
        sequences[user].push(Interaction {
            item: ItemId(item),
            timestamp: Some(timestamp),
            rating: rating.map(|r| r as f32),
            review: (summary.is_some() || review_text.is_some()).then_some(Review {
                summary,
                text: review_text,
            }),
        });
        Ok(())
    })?;
    for seq in &mut sequences {
        seq.sort_by_key(|i| i.timestamp);
    }

    let mut items: Vec<ImportedItem> = catalogue
        .names
        .iter()
        .map(|asin| ImportedItem {
            original_id: asin.clone(),
            ..Default::default()
        })
        .collect();
    let mut described = vec![false; items.len()];
    for_each_line(meta_path, |line, row| {
        let record = JsonRecord::parse(meta_path, line, row)?;
        let asin = record.required_str("asin")?;
        let Some(index) = catalogue.get(asin).map(|i| i as usize) else {
            return Ok(());
        };
        if std::mem::replace(&mut described[index], true) {
            return Ok(());
        }
        let (path, category_features) = split_category_labels(&record.string_list("category")?);
        let description: Vec<String> = record
            .string_list("description")?
            .iter()
            .filter_map(|d| clean_text(d))
            .collect();
        let item = &mut items[index];
        item.title = record.optional_str("title")?.and_then(clean_title);
        item.brand = record.optional_str("brand")?.and_then(clean_text);
        item.categories = path;
        item.description = (!description.is_empty()).then(|| description.join("\n"));
        item.features = record
            .string_list("feature")?
            .iter()
            .filter_map(|f| clean_text(f))
            .chain(category_features)
            .collect();
        Ok(())
    })?;

    Ok(Imported {
        format: Format::Amazon2018,
        paths: vec![reviews_path.to_path_buf(), meta_path.to_path_buf()],
        items,
        users: users.names,
        sequences,
    })
}
