//! RecBole atomic files (ml-100k): tab-separated `<name>.inter`, `<name>.item` and optional
//! `<name>.user`, each with a typed header such as `user_id:token  item_id:token  rating:float
//! timestamp:float`. Columns are found by name, so extra columns are ignored. Interactions are
//! ordered by timestamp (stable: ties keep file order). Movie titles get their release year
//! ("Toy Story (1995)") because MovieLens titles alone are ambiguous, and the genres get a
//! "Movies" root so they read like a category path.

use std::path::{Path, PathBuf};

use super::{
    clean_text, clean_title, numbered_lines, read_text, single_file_with_suffix, Format, Imported,
    ImportedItem, Interner,
};
use crate::types::{Interaction, ItemId};
use crate::DataError;

pub(super) struct Files {
    inter: PathBuf,
    item: Option<PathBuf>,
    user: Option<PathBuf>,
}

pub(super) fn locate(dir: &Path) -> Result<Files, DataError> {
    let inter = single_file_with_suffix(dir, ".inter")?;
    Ok(Files {
        item: Some(inter.with_extension("item")).filter(|p| p.is_file()),
        user: Some(inter.with_extension("user")).filter(|p| p.is_file()),
        inter,
    })
}

/// A parsed atomic file: column names (without types) and the data rows with line numbers.
struct Table<'a> {
    path: &'a Path,
    columns: Vec<&'a str>,
    rows: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Table<'a> {
    fn parse(path: &'a Path, text: &'a str) -> Result<Self, DataError> {
        let mut lines = numbered_lines(text);
        let (line, header) = lines
            .next()
            .ok_or_else(|| DataError::file(path, "empty file"))?;
        let columns = header
            .split('\t')
            .map(|c| {
                c.split_once(':')
                    .map(|(name, _type)| name.trim())
                    .ok_or_else(|| {
                        DataError::line(
                            path,
                            line,
                            format!("header column {c:?} is not `name:type`"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = lines
            .map(|(line, row)| {
                let fields: Vec<&str> = row.split('\t').collect();
                if fields.len() != columns.len() {
                    return Err(DataError::line(
                        path,
                        line,
                        format!("{} fields, the header has {}", fields.len(), columns.len()),
                    ));
                }
                Ok((line, fields))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path,
            columns,
            rows,
        })
    }

    fn column(&self, names: &[&str]) -> Option<usize> {
        names
            .iter()
            .find_map(|n| self.columns.iter().position(|c| c == n))
    }

    fn required_column(&self, name: &str) -> Result<usize, DataError> {
        self.column(&[name])
            .ok_or_else(|| DataError::field(self.path, 1, name, "no such column in the header"))
    }

    /// Rust's float parser also takes "NaN" and "inf"; no rating or timestamp is either.
    fn number(&self, line: usize, field: &str, raw: &str) -> Result<f64, DataError> {
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| {
                DataError::field(
                    self.path,
                    line,
                    field,
                    format!("expected a number, got {raw:?}"),
                )
            })
    }
}

pub(super) fn import(dir: &Path) -> Result<Imported, DataError> {
    let files = locate(dir)?;
    let mut catalogue = Interner::default();
    let mut items = Vec::new();
    if let Some(path) = &files.item {
        let text = read_text(path)?;
        let table = Table::parse(path, &text)?;
        let id = table.required_column("item_id")?;
        let title = table.column(&["movie_title", "title", "item_name", "name"]);
        let year = table.column(&["release_year", "year"]);
        let genres = table.column(&["class", "genre", "genres", "categories"]);
        let brand = table.column(&["brand"]);
        let root = (title.map(|t| table.columns[t]) == Some("movie_title")).then_some("Movies");
        for (line, row) in &table.rows {
            let original_id = row[id].trim();
            if catalogue.get(original_id).is_some() {
                return Err(DataError::field(
                    path,
                    *line,
                    "item_id",
                    format!("{original_id} appears twice"),
                ));
            }
            catalogue.get_or_insert(original_id);
            let year = year.and_then(|y| clean_text(row[y]));
            let title = title
                .and_then(|t| clean_title(row[t]))
                .map(|t| match &year {
                    Some(y) => format!("{t} ({y})"),
                    None => t,
                });
            let categories = root
                .map(str::to_string)
                .into_iter()
                .chain(
                    genres
                        .into_iter()
                        .flat_map(|g| row[g].split_whitespace().filter_map(clean_text)),
                )
                .collect();
            items.push(ImportedItem {
                original_id: original_id.to_string(),
                title,
                categories,
                brand: brand.and_then(|b| clean_text(row[b])),
                ..Default::default()
            });
        }
    }

    let mut users = Interner::default();
    if let Some(path) = &files.user {
        let text = read_text(path)?;
        let table = Table::parse(path, &text)?;
        let id = table.required_column("user_id")?;
        for (line, row) in &table.rows {
            if users.get(row[id].trim()).is_some() {
                return Err(DataError::field(
                    path,
                    *line,
                    "user_id",
                    format!("{} appears twice", row[id]),
                ));
            }
            users.get_or_insert(row[id].trim());
        }
    }

    let text = read_text(&files.inter)?;
    let table = Table::parse(&files.inter, &text)?;
    let user_col = table.required_column("user_id")?;
    let item_col = table.required_column("item_id")?;
    let rating_col = table.column(&["rating"]);
    let time_col = table.column(&["timestamp"]);
    let mut sequences: Vec<Vec<Interaction>> = vec![Vec::new(); users.len()];
    for (line, row) in &table.rows {
        let (user_id, item_id) = (row[user_col].trim(), row[item_col].trim());
        let user = match (&files.user, users.get(user_id)) {
            (_, Some(u)) => u,
            (Some(p), None) => {
                return Err(DataError::field(
                    &files.inter,
                    *line,
                    "user_id",
                    format!("unknown user id {user_id:?} (not in {})", p.display()),
                ))
            }
            (None, None) => {
                sequences.push(Vec::new());
                users.get_or_insert(user_id)
            }
        };
        let item = match (&files.item, catalogue.get(item_id)) {
            (_, Some(i)) => i,
            (Some(p), None) => {
                return Err(DataError::field(
                    &files.inter,
                    *line,
                    "item_id",
                    format!("unknown item id {item_id:?} (not in {})", p.display()),
                ))
            }
            (None, None) => {
                items.push(ImportedItem {
                    original_id: item_id.to_string(),
                    ..Default::default()
                });
                catalogue.get_or_insert(item_id)
            }
        };
        let rating = rating_col
            .map(|c| table.number(*line, "rating", row[c]))
            .transpose()?;
        let timestamp = time_col
            .map(|c| table.number(*line, "timestamp", row[c]))
            .transpose()?;
        sequences[user as usize].push(Interaction {
            item: ItemId(item),
            timestamp: timestamp.map(|t| t as i64),
            rating: rating.map(|r| r as f32),
            review: None,
        });
    }
    for seq in &mut sequences {
        seq.sort_by_key(|i| i.timestamp);
    }

    let mut paths = vec![files.inter];
    paths.extend(files.item);
    paths.extend(files.user);
    Ok(Imported {
        format: Format::RecBole,
        paths,
        items,
        users: users.names,
        sequences,
    })
}
