//! The LC-Rec style bundle (amazon-games): `<Name>.inter.json` maps LC-Rec user ids to
//! chronological lists of LC-Rec item ids; `<Name>.item2id` / `<Name>.user2id` map ASINs and
//! reviewerIDs to those ids; `items.jsonl` carries titles, category lists and brands by item id.
//! The files may sit in the directory itself or in its `raw/` subdirectory (`items.jsonl` may
//! sit beside `raw/`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    clean_text, clean_title, integer, json_integer, key_lines, numbered_lines, parse_json, present,
    read_text, repeats, single_file_with_suffix, split_category_labels, Entries, Format, Imported,
    ImportedItem, JsonRecord, TitleField,
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
    let raw_dir = if present(&raw)? { raw.as_path() } else { dir };
    let inter = single_file_with_suffix(raw_dir, ".inter.json")?;
    let name = inter.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.trim_end_matches(".inter.json");
    let item2id = raw_dir.join(format!("{stem}.item2id"));
    let user2id = raw_dir.join(format!("{stem}.user2id"));
    let mut items = None;
    for candidate in [dir.join("items.jsonl"), raw_dir.join("items.jsonl")] {
        if present(&candidate)? {
            items = Some(candidate);
            break;
        }
    }
    let items = items
        .ok_or_else(|| DataError::file(dir, "no items.jsonl (item titles) beside the bundle"))?;
    for p in [&item2id, &user2id] {
        if !present(p)? {
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
/// A line repeated as it is counts once; an id or an original id repeated with another partner
/// is an error naming both lines.
fn read_id_map(path: &Path, what: &str) -> Result<(Vec<String>, HashMap<u32, usize>), DataError> {
    let text = read_text(path)?;
    let id_field = format!("{what} id");
    let mut rows: Vec<(u32, &str)> = Vec::new();
    let mut by_original: HashMap<&str, (u32, usize)> = HashMap::new();
    let mut by_id: HashMap<u32, (&str, usize)> = HashMap::new();
    for (line, row) in numbered_lines(&text) {
        let mut fields = row.split('\t');
        let original = fields.next().unwrap_or_default().trim();
        if original.is_empty() {
            return Err(DataError::field(path, line, what, "empty"));
        }
        let raw_id = fields.next().ok_or_else(|| {
            DataError::field(
                path,
                line,
                &id_field,
                "missing (expected a tab and an integer)",
            )
        })?;
        let id: u32 = integer(raw_id.trim(), &format_args!("{raw_id:?}"))
            .map_err(|m| DataError::field(path, line, &id_field, m))?;
        match (by_original.get(original), by_id.get(&id)) {
            (Some(&(first_id, _)), _) if first_id == id => continue,
            (Some(&(first_id, first_line)), _) => {
                return Err(DataError::field(
                    path,
                    line,
                    what,
                    repeats(
                        what,
                        original,
                        first_line,
                        "id",
                        &first_id.to_string(),
                        &id.to_string(),
                    ),
                ))
            }
            (None, Some(&(first_original, first_line))) => {
                return Err(DataError::field(
                    path,
                    line,
                    &id_field,
                    repeats(
                        "id",
                        &id.to_string(),
                        first_line,
                        what,
                        &format!("{first_original:?}"),
                        &format!("{original:?}"),
                    ),
                ))
            }
            (None, None) => {}
        }
        by_original.insert(original, (id, line));
        by_id.insert(id, (original, line));
        rows.push((id, original));
    }
    rows.sort_by_key(|r| r.0);
    let index = rows
        .iter()
        .enumerate()
        .map(|(position, (id, _))| (*id, position))
        .collect();
    Ok((rows.into_iter().map(|r| r.1.to_string()).collect(), index))
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
    // Where each item was described first, to tell a harmless repeat from a conflicting one.
    let mut described: Vec<Option<(usize, &str)>> = vec![None; items.len()];
    let mut title_field = TitleField::new(&["title_raw", "title"]);
    for (line, row) in numbered_lines(&text) {
        let record = JsonRecord::parse(&files.items, line, row)?;
        title_field.see(&record);
        let id: u32 = record.required_integer("lcrec_item_id")?;
        let position = item_index.get(&id).copied().ok_or_else(|| {
            record.error(
                "lcrec_item_id",
                format!("unknown item id {id} (not in {})", files.item2id.display()),
            )
        })?;
        if let Some((first_line, first_row)) = described[position] {
            let first = JsonRecord::parse(&files.items, first_line, first_row)?;
            match first.difference(&record) {
                None => continue,
                Some((field, there, here)) => {
                    return Err(record.error(
                        "lcrec_item_id",
                        repeats("item", &id.to_string(), first_line, field, &there, &here),
                    ))
                }
            }
        }
        described[position] = Some((line, row));
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
    title_field.check(&files.items)?;

    let text = read_text(&files.inter)?;
    let by_user = parse_json::<Entries<Vec<Value>>>(&files.inter, &text)?.unique(
        &files.inter,
        &text,
        "user",
        "user id",
    )?;
    let mut sequences = vec![Vec::new(); reviewers.len()];
    // Where a user's key sits in the file, for errors only (the file is usually one long line).
    let line_of = |key: &str| key_lines(&text, key).first().copied().unwrap_or(1);
    for (key, seq) in by_user {
        let error = |field: &str, message: String| {
            DataError::field(&files.inter, line_of(&key), field, message)
        };
        let id: u32 = integer(&key, &format_args!("{key:?}")).map_err(|m| error("user id", m))?;
        let user = user_index.get(&id).copied().ok_or_else(|| {
            error(
                "user id",
                format!(
                    "unknown user id {key:?} (not in {})",
                    files.user2id.display()
                ),
            )
        })?;
        sequences[user] = seq
            .iter()
            .map(|raw| {
                let id: u32 =
                    json_integer(raw).map_err(|m| error("item id", format!("user {key}: {m}")))?;
                let item = item_index.get(&id).copied().ok_or_else(|| {
                    error(
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
