//! The LC-Rec style bundle (amazon-games): `<Name>.inter.json` maps LC-Rec user ids to
//! chronological lists of LC-Rec item ids; `<Name>.item2id` / `<Name>.user2id` map ASINs and
//! reviewerIDs to those ids; `items.jsonl` carries titles, category lists and brands by item id.
//! The files may sit in the directory itself or in its `raw/` subdirectory (`items.jsonl` may
//! sit beside `raw/`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    clean_text, clean_title, numbered_lines, parse_json, read_text, single_file_with_suffix,
    split_category_labels, Format, Imported, ImportedItem, JsonRecord,
};
use crate::types::{Interaction, ItemId};
use crate::DataError;

pub(super) struct Files {
    inter: PathBuf,
    item2id: PathBuf,
    user2id: PathBuf,
    items: PathBuf,
}

pub(super) fn locate(dir: &Path) -> Result<Files, DataError> {
    let raw = dir.join("raw");
    let raw_dir = if raw.is_dir() { raw.as_path() } else { dir };
    let inter = single_file_with_suffix(raw_dir, ".inter.json")?;
    let name = inter.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.trim_end_matches(".inter.json");
    let item2id = raw_dir.join(format!("{stem}.item2id"));
    let user2id = raw_dir.join(format!("{stem}.user2id"));
    let items = [dir.join("items.jsonl"), raw_dir.join("items.jsonl")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::file(dir, "no items.jsonl (item titles) beside the bundle"))?;
    for p in [&item2id, &user2id] {
        if !p.is_file() {
            return Err(DataError::file(
                p,
                "missing (part of the amazon-games bundle)",
            ));
        }
    }
    Ok(Files {
        inter,
        item2id,
        user2id,
        items,
    })
}

/// Reads `original id <TAB> integer id` lines into (original ids ordered by integer id, map).
fn read_id_map(path: &Path, what: &str) -> Result<(Vec<String>, HashMap<u32, usize>), DataError> {
    let text = read_text(path)?;
    let mut rows: Vec<(u32, String, usize)> = Vec::new();
    for (line, row) in numbered_lines(&text) {
        let mut fields = row.split('\t');
        let original = fields.next().unwrap_or_default().trim();
        if original.is_empty() {
            return Err(DataError::field(path, line, what, "empty"));
        }
        let id_field = format!("{what} id");
        let raw_id = fields.next().ok_or_else(|| {
            DataError::field(
                path,
                line,
                &id_field,
                "missing (expected a tab and an integer)",
            )
        })?;
        let id: u32 = raw_id.trim().parse().map_err(|_| {
            DataError::field(
                path,
                line,
                &id_field,
                format!("expected an integer, got {raw_id:?}"),
            )
        })?;
        rows.push((id, original.to_string(), line));
    }
    rows.sort_by_key(|r| r.0);
    let mut index = HashMap::with_capacity(rows.len());
    for (position, (id, _, line)) in rows.iter().enumerate() {
        if index.insert(*id, position).is_some() {
            return Err(DataError::field(
                path,
                *line,
                &format!("{what} id"),
                format!("{id} appears twice"),
            ));
        }
    }
    Ok((rows.into_iter().map(|r| r.1).collect(), index))
}

pub(super) fn import(dir: &Path) -> Result<Imported, DataError> {
    let files = locate(dir)?;
    let (asins, item_index) = read_id_map(&files.item2id, "item")?;
    let (reviewers, user_index) = read_id_map(&files.user2id, "user")?;

    let mut items: Vec<ImportedItem> = asins
        .iter()
        .map(|asin| ImportedItem {
            original_id: asin.clone(),
            ..Default::default()
        })
        .collect();
    let text = read_text(&files.items)?;
    for (line, row) in numbered_lines(&text) {
        let record = JsonRecord::parse(&files.items, line, row)?;
        let id = record.required_int("lcrec_item_id")?;
        let position = u32::try_from(id)
            .ok()
            .and_then(|id| item_index.get(&id))
            .copied()
            .ok_or_else(|| {
                record.error(
                    "lcrec_item_id",
                    format!("unknown item id {id} (not in {})", files.item2id.display()),
                )
            })?;
        let item = &mut items[position];
        let asin = record.required_str("asin")?;
        if asin != item.original_id {
            return Err(record.error(
                "asin",
                format!(
                    "{asin} disagrees with {} ({id} is {})",
                    files.item2id.display(),
                    item.original_id
                ),
            ));
        }
        // `title_raw` is the source's text; decoding it once is exact, decoding the already
        // decoded `title` again could turn a literal "&amp;" into "&".
        let title = match record.optional_str("title_raw")? {
            Some(raw) => Some(raw),
            None => record.optional_str("title")?,
        };
        item.title = title.and_then(clean_title);
        let (path, features) = split_category_labels(&record.string_list("categories_raw")?);
        item.categories = path;
        item.features = features;
        item.brand = record.optional_str("brand")?.and_then(clean_text);
    }

    let text = read_text(&files.inter)?;
    let by_user: HashMap<String, Vec<i64>> = parse_json(&files.inter, &text)?;
    let mut sequences = vec![Vec::new(); reviewers.len()];
    // Where a user's key sits in the file, for errors only (the file is usually one long line).
    let line_of = |key: &str| {
        let at = text.find(&format!("\"{key}\"")).unwrap_or(0);
        text[..at].matches('\n').count() + 1
    };
    for (key, seq) in by_user {
        let user = key
            .parse::<u32>()
            .ok()
            .and_then(|u| user_index.get(&u))
            .copied()
            .ok_or_else(|| {
                DataError::field(
                    &files.inter,
                    line_of(&key),
                    "user id",
                    format!(
                        "unknown user id {key:?} (not in {})",
                        files.user2id.display()
                    ),
                )
            })?;
        sequences[user] = seq
            .iter()
            .map(|&raw| {
                let item = u32::try_from(raw)
                    .ok()
                    .and_then(|i| item_index.get(&i))
                    .copied()
                    .ok_or_else(|| {
                        DataError::field(
                            &files.inter,
                            line_of(&key),
                            "item id",
                            format!(
                                "user {key}: unknown item id {raw} (not in {})",
                                files.item2id.display()
                            ),
                        )
                    })?;
                Ok(Interaction {
                    item: ItemId(item as u32),
                    timestamp: None,
                    rating: None,
                    review: None,
                })
            })
            .collect::<Result<_, DataError>>()?;
    }

    Ok(Imported {
        format: Format::AmazonGames,
        paths: vec![files.inter, files.item2id, files.user2id, files.items],
        items,
        users: reviewers,
        sequences,
    })
}
