//! The raw Amazon 2018 release (Ni et al.): reviews as JSON lines (`reviewerID`, `asin`,
//! `overall`, `unixReviewTime`, `reviewText`, `summary`) and metadata as JSON lines (`asin`,
//! `title`, `category`, `brand`, `description`, `feature`), each plain or gzip.
//!
//! Each user's reviews are ordered by `unixReviewTime`, ties in file order. The catalogue is the
//! set of reviewed items in first-review order; metadata of items nobody reviewed is skipped,
//! and the first metadata line of an ASIN wins (the release repeats some; repeats that would
//! import differently are counted in a warning). A reviewed ASIN
//! without metadata is not an error: the release itself lacks metadata for some items, so the
//! item is imported without a title and preparation drops it as untitled, saying so.

use std::path::{Path, PathBuf};

use super::{
    clean_text, clean_title, for_each_line, list_dir, shown_json, split_category_labels, Format,
    Imported, ImportedItem, Interner, JsonRecord, TitleField,
};
use crate::types::{Interaction, ItemId, Review};
use crate::DataError;

const EXTENSIONS: [&str; 4] = [".json", ".json.gz", ".jsonl", ".jsonl.gz"];

pub(super) fn is_json_lines(name: &str) -> bool {
    EXTENSIONS.iter().any(|e| name.ends_with(e))
}

pub(super) fn is_meta(name: &str) -> bool {
    name.starts_with("meta")
}

/// In a directory: the metadata file is the one whose name starts with `meta`, the reviews file
/// the other JSON-lines file.
pub(super) fn locate(dir: &Path) -> Result<(PathBuf, PathBuf), DataError> {
    let name = |p: &PathBuf| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string()
    };
    let candidates = list_dir(dir)?
        .into_iter()
        .filter(|p| is_json_lines(&name(p)));
    let (meta, reviews): (Vec<PathBuf>, Vec<PathBuf>) = candidates.partition(|p| is_meta(&name(p)));
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

/// The first attribute in which two imports of an item differ, with both values.
fn difference(a: &ImportedItem, b: &ImportedItem) -> Option<(&'static str, String, String)> {
    [
        ("title", shown_json(&a.title), shown_json(&b.title)),
        (
            "categories",
            shown_json(&a.categories),
            shown_json(&b.categories),
        ),
        ("brand", shown_json(&a.brand), shown_json(&b.brand)),
        (
            "description",
            shown_json(&a.description),
            shown_json(&b.description),
        ),
        ("features", shown_json(&a.features), shown_json(&b.features)),
    ]
    .into_iter()
    .find(|(_, a, b)| a != b)
}

/// An item as one metadata line describes it.
fn describe(record: &JsonRecord, asin: &str) -> Result<ImportedItem, DataError> {
    let (path, category_features) = split_category_labels(&record.string_list("category")?);
    let description: Vec<String> = record
        .string_list("description")?
        .iter()
        .filter_map(|d| clean_text(d))
        .collect();
    Ok(ImportedItem {
        original_id: asin.to_string(),
        title: record.optional_str("title")?.and_then(clean_title),
        brand: record.optional_str("brand")?.and_then(clean_text),
        categories: path,
        description: (!description.is_empty()).then(|| description.join("\n")),
        features: record
            .string_list("feature")?
            .iter()
            .filter_map(|f| clean_text(f))
            .chain(category_features)
            .collect(),
    })
}

pub(super) fn import(reviews_path: &Path, meta_path: &Path) -> Result<Imported, DataError> {
    let mut users = Interner::default();
    let mut catalogue = Interner::default();
    let mut sequences: Vec<Vec<Interaction>> = Vec::new();
    for_each_line(reviews_path, |line, row| {
        let record = JsonRecord::parse(reviews_path, line, row)?;
        let reviewer = record.required_str("reviewerID")?;
        let asin = record.required_str("asin")?;
        let timestamp = record.required_integer("unixReviewTime")?;
        let rating = record.optional_f32("overall")?;
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
            rating,
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
    // The line that described each item, and the repeats that would have described it otherwise.
    let mut described: Vec<Option<usize>> = vec![None; items.len()];
    let mut conflicts = 0;
    let mut first_conflict = None;
    let mut title_field = TitleField::new(&["title"]);
    for_each_line(meta_path, |line, row| {
        let record = JsonRecord::parse(meta_path, line, row)?;
        title_field.see(&record);
        let asin = record.required_str("asin")?;
        let Some(index) = catalogue.get(asin).map(|i| i as usize) else {
            return Ok(());
        };
        let item = describe(&record, asin)?;
        match described[index] {
            None => {
                described[index] = Some(line);
                items[index] = item;
            }
            Some(first_line) => {
                if let Some(difference) = difference(&items[index], &item) {
                    conflicts += 1;
                    first_conflict.get_or_insert((asin.to_string(), first_line, line, difference));
                }
            }
        }
        Ok(())
    })?;
    title_field.check(meta_path)?;
    if let Some((asin, first_line, line, (field, there, here))) = first_conflict {
        let (lines, verb) = if conflicts == 1 {
            ("line", "repeats")
        } else {
            ("lines", "repeat")
        };
        tracing::warn!(
            "{}: {conflicts} metadata {lines} {verb} an ASIN with other content; the first line \
             of each ASIN is kept (e.g. {asin} on lines {first_line} and {line}, {field}: {there} \
             there, {here} here)",
            meta_path.display()
        );
    }

    Ok(Imported {
        format: Format::Amazon2018,
        paths: vec![reviews_path.to_path_buf(), meta_path.to_path_buf()],
        items,
        users: users.names,
        sequences,
    })
}
