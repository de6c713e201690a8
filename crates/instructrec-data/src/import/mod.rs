//! Importers: read the layouts users actually hold (the LC-Rec amazon-games bundle, P5
//! sequential files, RecBole atomic files, the raw Amazon 2018 release) into one [`Imported`]
//! form that preparation filters and splits. Importers keep everything the source has; they
//! drop nothing (preparation does, and says so).

mod amazon2018;
mod amazon_games;
mod p5;
mod recbole;
mod text;

use std::fmt;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::types::Interaction;
use crate::DataError;

pub use text::{clean_text, clean_title, split_category_labels};

/// The input layouts we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `raw/<Name>.inter.json` + `<Name>.item2id` + `<Name>.user2id` + `items.jsonl`.
    AmazonGames,
    /// `sequential_data.txt` + `id2title.json` + `id2category.json`.
    P5,
    /// `<name>.inter` (+ `.item`, `.user`) with typed headers.
    RecBole,
    /// Raw Amazon 2018 reviews + metadata JSON lines, plain or gzip.
    Amazon2018,
}

impl Format {
    pub const ALL: [Format; 4] = [Self::AmazonGames, Self::P5, Self::RecBole, Self::Amazon2018];

    pub fn name(self) -> &'static str {
        match self {
            Self::AmazonGames => "amazon-games",
            Self::P5 => "p5",
            Self::RecBole => "recbole",
            Self::Amazon2018 => "amazon2018",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// Where to import from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportSource {
    /// A directory; `format: None` detects the layout from the files present.
    Dir {
        dir: PathBuf,
        format: Option<Format>,
    },
    /// Raw Amazon 2018 files named explicitly.
    Amazon2018 { reviews: PathBuf, meta: PathBuf },
}

impl ImportSource {
    /// The source named by a directory (with its layout, or `None` to detect it), or by the two
    /// raw Amazon 2018 files, which need no directory and admit no other layout.
    pub fn new(
        dir: Option<PathBuf>,
        format: Option<Format>,
        amazon2018: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self, DataError> {
        match (dir, amazon2018) {
            (_, Some(_)) if format.is_some_and(|f| f != Format::Amazon2018) => {
                Err(DataError::Options(format!(
                    "reviews and meta files are Amazon 2018's; the layout {} contradicts them",
                    format.map_or("", |f| f.name())
                )))
            }
            (_, Some((reviews, meta))) => Ok(Self::Amazon2018 { reviews, meta }),
            (Some(dir), None) => Ok(Self::Dir { dir, format }),
            (None, None) => Err(DataError::Options(
                "no input: give a dataset directory, or Amazon 2018 reviews and meta files".into(),
            )),
        }
    }

    pub fn import(&self) -> Result<Imported, DataError> {
        match self {
            Self::Amazon2018 { reviews, meta } => amazon2018::import(reviews, meta),
            Self::Dir { dir, format } => {
                if !dir.is_dir() {
                    return Err(DataError::file(dir, "not a directory"));
                }
                let format = match format {
                    Some(f) => *f,
                    None => detect(dir)?,
                };
                match format {
                    Format::AmazonGames => amazon_games::import(dir),
                    Format::P5 => p5::import(dir),
                    Format::RecBole => recbole::import(dir),
                    Format::Amazon2018 => {
                        let (reviews, meta) = amazon2018::locate(dir)?;
                        amazon2018::import(&reviews, &meta)
                    }
                }
            }
        }
    }
}

/// Which layout a directory holds; the checks are ordered from most to least specific.
pub fn detect(dir: &Path) -> Result<Format, DataError> {
    if amazon_games::locate(dir).is_ok() {
        Ok(Format::AmazonGames)
    } else if dir.join(p5::SEQUENCES).is_file() {
        Ok(Format::P5)
    } else if recbole::locate(dir).is_ok() {
        Ok(Format::RecBole)
    } else if amazon2018::locate(dir).is_ok() {
        Ok(Format::Amazon2018)
    } else {
        Err(DataError::file(
            dir,
            "cannot tell the layout: expected an amazon-games bundle (*.inter.json, *.item2id, \
             *.user2id, items.jsonl), P5 files (sequential_data.txt, id2title.json, \
             id2category.json), RecBole atomic files (*.inter) or Amazon 2018 reviews + \
             meta_*.json(.gz); pass --format to say which",
        ))
    }
}

/// An item as the source describes it; `title` is `None` when the source has no title.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportedItem {
    pub original_id: String,
    pub title: Option<String>,
    pub categories: Vec<String>,
    pub brand: Option<String>,
    pub description: Option<String>,
    pub features: Vec<String>,
}

/// Everything an importer read. `sequences[u]` refers to items by index into `items`, in time
/// order (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub format: Format,
    pub paths: Vec<PathBuf>,
    pub items: Vec<ImportedItem>,
    pub users: Vec<String>,
    pub sequences: Vec<Vec<Interaction>>,
}

impl Imported {
    pub fn interactions(&self) -> usize {
        self.sequences.iter().map(Vec::len).sum()
    }
}

/// Reads a whole text file, decompressing gzip (detected by its magic bytes, not its name).
/// A truncated or corrupt gzip stream is an error, never a silently shorter file.
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::file(path, format!("gzip stream is truncated or corrupt: {e}"))
            })?;
        out
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::line(path, line, "not valid UTF-8")
    })
}

/// Calls `f` on each non-empty line (1-based number, text without the line break), streaming,
/// so that multi-gigabyte review dumps need not fit in memory; gzip is detected by magic bytes.
/// A truncated gzip stream is an error naming the line where it broke off.
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut plain = std::io::BufReader::with_capacity(1 << 20, file);
    let gzip = plain
        .fill_buf()
        .map_err(|e| DataError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn BufRead> = if gzip {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(plain),
        ))
    } else {
        Box::new(plain)
    };
    let mut buffer = Vec::new();
    let mut line = 0;
    loop {
        buffer.clear();
        let read = reader.read_until(b'\n', &mut buffer).map_err(|e| {
            if gzip {
                DataError::line(
                    path,
                    line + 1,
                    format!("gzip stream is truncated or corrupt: {e}"),
                )
            } else {
                DataError::io(path, e)
            }
        })?;
        if read == 0 {
            return Ok(());
        }
        line += 1;
        let text = std::str::from_utf8(&buffer)
            .map_err(|_| DataError::line(path, line, "not valid UTF-8"))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.trim().is_empty() {
            f(line, text)?;
        }
    }
}

/// Non-empty lines with their 1-based line numbers.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// Parses a whole JSON document, turning serde's position into our file:line error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, DataError> {
    serde_json::from_str(text)
        .map_err(|e| DataError::line(path, e.line(), format!("malformed JSON: {e}")))
}

/// One JSON object from a JSON-lines file, with accessors that name the field in errors.
pub(crate) struct JsonRecord<'a> {
    path: &'a Path,
    line: usize,
    object: Map<String, Value>,
}

impl<'a> JsonRecord<'a> {
    pub(crate) fn parse(path: &'a Path, line: usize, text: &str) -> Result<Self, DataError> {
        match serde_json::from_str(text) {
            Ok(Value::Object(object)) => Ok(Self { path, line, object }),
            Ok(_) => Err(DataError::line(path, line, "expected a JSON object")),
            Err(e) => Err(DataError::line(path, line, format!("malformed JSON: {e}"))),
        }
    }

    pub(crate) fn error(&self, field: &str, message: impl Into<String>) -> DataError {
        DataError::field(self.path, self.line, field, message)
    }

    fn present(&self, field: &str) -> Option<&Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    pub(crate) fn required_str(&self, field: &str) -> Result<&str, DataError> {
        match self.present(field) {
            None => Err(self.error(field, "missing")),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => Err(self.error(field, "empty")),
            Some(v) => Err(self.error(field, format!("expected a string, got {v}"))),
        }
    }

    pub(crate) fn optional_str(&self, field: &str) -> Result<Option<&str>, DataError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.error(field, format!("expected a string, got {v}"))),
        }
    }

    pub(crate) fn required_int(&self, field: &str) -> Result<i64, DataError> {
        match self.present(field) {
            None => Err(self.error(field, "missing")),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| self.error(field, format!("expected an integer, got {v}"))),
        }
    }

    pub(crate) fn optional_number(&self, field: &str) -> Result<Option<f64>, DataError> {
        match self.present(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.error(field, format!("expected a number, got {v}"))),
        }
    }

    /// A list of strings; a lone string counts as a one-element list (Amazon metadata uses both).
    pub(crate) fn string_list(&self, field: &str) -> Result<Vec<String>, DataError> {
        match self.present(field) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(values)) => values
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error(field, format!("expected strings, got {other}"))),
                })
                .collect(),
            Some(v) => Err(self.error(field, format!("expected a list of strings, got {v}"))),
        }
    }
}

/// The single file in `dir` whose name ends with `suffix`, if there is exactly one.
pub(crate) fn single_file_with_suffix(dir: &Path, suffix: &str) -> Result<PathBuf, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DataError::file(dir, format!("no *{suffix} file"))),
        _ => Err(DataError::file(
            dir,
            format!("more than one *{suffix} file: {found:?}"),
        )),
    }
}

/// Dense indices for names in first-appearance order, so that importers' output never depends on
/// hash-map iteration order.
#[derive(Default)]
pub(crate) struct Interner {
    pub(crate) names: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl Interner {
    pub(crate) fn get_or_insert(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }

    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}
