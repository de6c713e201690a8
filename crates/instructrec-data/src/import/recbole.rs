//! RecBole atomic files (ml-100k): tab-separated `<name>.inter`, `<name>.item` and optional
//! `<name>.user`, each with a typed header such as `user_id:token  item_id:token  rating:float
//! timestamp:float`. Columns are found by name, so extra columns are ignored. Interactions are
//! ordered by timestamp (stable: ties keep file order). Movie titles get their release year
//! ("Toy Story (1995)") because MovieLens titles alone are ambiguous, and the genres get a
//! "Movies" root so they read like a category path. Without a `.item` file items have no titles
//! (a warning says so); a `.item` file without a title column is an error.

use std::path::{Path, PathBuf};

use super::{
    clean_text, clean_title, integer, is_integer, numbered_lines, out_of_range, present, read_text,
    repeats, single_file_with_suffix, to_f32, Format, Imported, ImportedItem, Interner,
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
    let optional = |extension: &str| {
        let path = inter.with_extension(extension);
        Ok::<_, DataError>(present(&path)?.then_some(path))
    };
    Ok(Files {
        item: optional("item")?,
        user: optional("user")?,
        inter,
    })
}

/// Title columns by the names RecBole datasets use.
const TITLE_COLUMNS: [&str; 4] = ["movie_title", "title", "item_name", "name"];

/// A parsed atomic file: column names (without types) and the data rows with line numbers.
struct Table<'a> {
    path: &'a Path,
    header_line: usize,
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
        // A last row without a line break may be a file cut short (a download or copy that
        // stopped): a complete one imports, one that is visibly incomplete is not guessed at.
        let unterminated = (!text.ends_with('\n')).then(|| text.lines().count());
        let rows = lines
            .map(|(line, row)| {
                let fields: Vec<&str> = row.split('\t').collect();
                if Some(line) == unterminated {
                    let problem = if fields.len() != columns.len() {
                        Some(format!(
                            "{} fields, the header has {}",
                            fields.len(),
                            columns.len()
                        ))
                    } else if fields.last().is_some_and(|f| f.trim().is_empty()) {
                        Some("its last field is empty".to_string())
                    } else {
                        None
                    };
                    if let Some(problem) = problem {
                        return Err(DataError::line(
                            path,
                            line,
                            format!(
                                "the last row has no line break and {problem}: the file looks cut \
                                 short (if the row is complete, end it with a line break)"
                            ),
                        ));
                    }
                }
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
            header_line: line,
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
        self.column(&[name]).ok_or_else(|| {
            DataError::field(
                self.path,
                self.header_line,
                name,
                format!("no such column; the header has {}", self.columns.join(", ")),
            )
        })
    }

    /// Whether `row` repeats `first`, the earlier row with the same `key` column, exactly (a
    /// harmless repeat, to skip); a repeat that differs is an error naming the first column that
    /// differs and both lines.
    fn check_repeat(
        &self,
        what: &str,
        key: usize,
        first: Option<&(usize, Vec<&str>)>,
        (line, row): &(usize, Vec<&str>),
    ) -> Result<bool, DataError> {
        let Some((first_line, first)) = first else {
            return Ok(false);
        };
        match (0..row.len()).find(|&c| first[c].trim() != row[c].trim()) {
            None => Ok(true),
            Some(c) => Err(DataError::field(
                self.path,
                *line,
                self.columns[key],
                repeats(
                    what,
                    row[key].trim(),
                    *first_line,
                    self.columns[c],
                    &format!("{:?}", first[c].trim()),
                    &format!("{:?}", row[c].trim()),
                ),
            )),
        }
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

    fn rating(&self, line: usize, raw: &str) -> Result<f32, DataError> {
        to_f32(self.number(line, "rating", raw)?, &format_args!("{raw:?}"))
            .map_err(|m| DataError::field(self.path, line, "rating", m))
    }

    /// Timestamps are typed `float` in RecBole headers and hold whole seconds; fractions of a
    /// second are dropped.
    fn timestamp(&self, line: usize, raw: &str) -> Result<i64, DataError> {
        let error = |m| DataError::field(self.path, line, "timestamp", m);
        let shown = format_args!("{raw:?}");
        if is_integer(raw.trim()) {
            return integer(raw.trim(), &shown).map_err(error);
        }
        let seconds = self.number(line, "timestamp", raw)?;
        // `as` would saturate; 2^63 itself is already out of range.
        let limit = 2f64.powi(63);
        if (-limit..limit).contains(&seconds) {
            Ok(seconds as i64)
        } else {
            Err(error(out_of_range("a 64-bit integer", &shown)))
        }
    }
}

pub(super) fn import(dir: &Path) -> Result<Imported, DataError> {
    let files = locate(dir)?;
    let mut catalogue = Interner::default();
    let mut items = Vec::new();
    match &files.item {
        Some(path) => {
            let text = read_text(path)?;
            let table = Table::parse(path, &text)?;
            let id = table.required_column("item_id")?;
            let title = table.column(&TITLE_COLUMNS).ok_or_else(|| {
                DataError::line(
                    path,
                    table.header_line,
                    format!(
                        "no title column (one of {}); the header has {}",
                        TITLE_COLUMNS.join(", "),
                        table.columns.join(", ")
                    ),
                )
            })?;
            let year = table.column(&["release_year", "year"]);
            let genres = table.column(&["class", "genre", "genres", "categories"]);
            let brand = table.column(&["brand"]);
            let root = (table.columns[title] == "movie_title").then_some("Movies");
            // Each item's row in `table.rows`, to compare a repeat with.
            let mut first_rows = Vec::new();
            for (index, entry) in table.rows.iter().enumerate() {
                let row = &entry.1;
                let original_id = row[id].trim();
                let first = catalogue
                    .get(original_id)
                    .map(|i| &table.rows[first_rows[i as usize]]);
                if table.check_repeat("item", id, first, entry)? {
                    continue;
                }
                catalogue.get_or_insert(original_id);
                first_rows.push(index);
                let year = year.and_then(|y| clean_text(row[y]));
                let title = clean_title(row[title]).map(|t| match &year {
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
        None => tracing::warn!(
            "{}: missing: items are imported without titles, which preparation drops unless \
             --keep-untitled titles them by their id",
            files.inter.with_extension("item").display()
        ),
    }

    let mut users = Interner::default();
    if let Some(path) = &files.user {
        let text = read_text(path)?;
        let table = Table::parse(path, &text)?;
        let id = table.required_column("user_id")?;
        let mut first_rows = Vec::new();
        for (index, entry) in table.rows.iter().enumerate() {
            let user_id = entry.1[id].trim();
            let first = users
                .get(user_id)
                .map(|u| &table.rows[first_rows[u as usize]]);
            if table.check_repeat("user", id, first, entry)? {
                continue;
            }
            users.get_or_insert(user_id);
            first_rows.push(index);
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
            .map(|c| table.rating(*line, row[c]))
            .transpose()?;
        let timestamp = time_col
            .map(|c| table.timestamp(*line, row[c]))
            .transpose()?;
        sequences[user as usize].push(Interaction {
            item: ItemId(item),
            timestamp,
            rating,
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
