//! P5 / OpenP5 sequential data (amazon-toys): `sequential_data.txt` holds one user per line,
//! `user item item ...` in time order; `id2title.json` and `id2category.json` describe items by
//! the same ids. Category values are lists of paths; we keep the longest (the most specific),
//! the first of equally long ones. Without `id2category.json` items are imported without
//! categories, with a warning: titles are what items are represented by, categories only add
//! to them.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::{
    clean_text, clean_title, numbered_lines, parse_json, present, read_text, Entries, Format,
    Imported, ImportedItem, Interner,
};
use crate::types::{Interaction, ItemId};
use crate::DataError;

pub(super) const SEQUENCES: &str = "sequential_data.txt";
const TITLES: &str = "id2title.json";
const CATEGORIES: &str = "id2category.json";

/// Numeric ids sort numerically (shorter first), anything else lexicographically.
fn id_order(id: &str) -> (usize, &str) {
    (id.len(), id)
}

pub(super) fn import(dir: &Path) -> Result<Imported, DataError> {
    let seq_path = dir.join(SEQUENCES);
    let title_path = dir.join(TITLES);
    let category_path = dir.join(CATEGORIES);
    let text = read_text(&title_path)?;
    let titles: HashMap<String, Option<String>> = parse_json::<Entries<_>>(&title_path, &text)?
        .unique(&title_path, &text, "item", "item id")?;
    let has_categories = present(&category_path)?;
    let categories: HashMap<String, Vec<Vec<String>>> = if has_categories {
        let text = read_text(&category_path)?;
        parse_json::<Entries<_>>(&category_path, &text)?.unique(
            &category_path,
            &text,
            "item",
            "item id",
        )?
    } else {
        tracing::warn!(
            "{}: missing: items are imported without categories",
            category_path.display()
        );
        HashMap::new()
    };

    let mut ids: Vec<&String> = titles
        .keys()
        .chain(categories.keys())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    ids.sort_by(|a, b| id_order(a).cmp(&id_order(b)));
    let mut catalogue = Interner::default();
    let items: Vec<ImportedItem> = ids
        .into_iter()
        .map(|id| {
            catalogue.get_or_insert(id);
            let path = categories
                .get(id)
                .and_then(|paths| paths.iter().rev().max_by_key(|p| p.len()))
                .map(|p| p.iter().filter_map(|l| clean_text(l)).collect())
                .unwrap_or_default();
            ImportedItem {
                original_id: id.clone(),
                title: titles
                    .get(id)
                    .cloned()
                    .flatten()
                    .as_deref()
                    .and_then(clean_title),
                categories: path,
                ..Default::default()
            }
        })
        .collect();

    let text = read_text(&seq_path)?;
    let mut users = Interner::default();
    let mut sequences: Vec<Vec<Interaction>> = Vec::new();
    for (line, row) in numbered_lines(&text) {
        let mut fields = row.split_whitespace();
        let user_id = fields.next().unwrap_or_default();
        if users.get(user_id).is_some() {
            return Err(DataError::field(
                &seq_path,
                line,
                "user id",
                format!("user {user_id} has a second line"),
            ));
        }
        users.get_or_insert(user_id);
        let seq = fields
            .map(|item_id| {
                let item = catalogue.get(item_id).ok_or_else(|| {
                    DataError::field(
                        &seq_path,
                        line,
                        "item id",
                        format!("unknown item id {item_id:?} (not in {TITLES} or {CATEGORIES})"),
                    )
                })?;
                Ok(Interaction {
                    item: ItemId(item),
                    timestamp: None,
                    rating: None,
                    review: None,
                })
            })
            .collect::<Result<_, DataError>>()?;
        sequences.push(seq);
    }

    let mut paths = vec![seq_path, title_path];
    paths.extend(has_categories.then_some(category_path));
    Ok(Imported {
        format: Format::P5,
        paths,
        items,
        users: users.names,
        sequences,
    })
}
