//! Importers: read the layouts users actually hold (the LC-Rec amazon-games bundle, P5
//! sequential files, RecBole atomic files, the raw Amazon 2018 release) into one [`Imported`]
//! form that preparation filters and splits. Importers keep everything the source has; they
//! drop nothing (preparation does, and says so).

mod amazon2018;
mod amazon_games;
pub mod feedback;
mod p5;
mod recbole;
mod text;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::types::Interaction;
use crate::DataError;

pub use feedback::{add_feedback, read_feedback, FeedbackCounts, FeedbackEvent, FeedbackRecord};
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
    /// Another source plus a serving feedback log whose `liked` and `bought` events become
    /// interactions (see [`add_feedback`]).
    WithFeedback {
        source: Box<ImportSource>,
        log: PathBuf,
    },
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

    /// This source with a feedback log's events added (`data prepare --feedback PATH`).
    pub fn with_feedback(self, log: PathBuf) -> Self {
        Self::WithFeedback {
            source: Box::new(self),
            log,
        }
    }

    pub fn import(&self) -> Result<Imported, DataError> {
        match self {
            Self::WithFeedback { source, log } => {
                let mut imported = source.import()?;
                add_feedback(&mut imported, log)?;
                Ok(imported)
            }
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

/// Which layout a directory holds, from the names of its files alone (their content is the
/// importer's business), the checks ordered from most to least specific. A directory that
/// cannot be listed is an error naming it, never an unknown layout.
pub fn detect(dir: &Path) -> Result<Format, DataError> {
    let entries = list_dir(dir)?;
    let raw = dir.join("raw");
    let bundle = if present(&raw)? {
        list_dir(&raw)?
    } else {
        entries.clone()
    };
    let named = |paths: &[PathBuf], test: &dyn Fn(&str) -> bool| {
        paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| test(&n.to_string_lossy())))
    };
    if named(&bundle, &|n| n.ends_with(".inter.json")) {
        Ok(Format::AmazonGames)
    } else if named(&entries, &|n| n == p5::SEQUENCES) {
        Ok(Format::P5)
    } else if named(&entries, &|n| n.ends_with(".inter")) {
        Ok(Format::RecBole)
    } else if named(&entries, &|n| {
        amazon2018::is_meta(n) && amazon2018::is_json_lines(n)
    }) {
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
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::line(path, line, "not valid UTF-8")
    })?;
    if text.starts_with(BOM) {
        text.drain(..BOM.len_utf8());
    }
    Ok(text)
}

/// Windows editors start UTF-8 files with a byte-order mark; left in place it would become part
/// of the first column name, id or JSON value.
const BOM: char = '\u{feff}';

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
        let text = if line == 1 {
            text.strip_prefix(BOM).unwrap_or(text)
        } else {
            text
        };
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

/// A JSON object's entries in file order, repeated keys included: deserialising into a map
/// would silently keep the last of them.
pub(crate) struct Entries<V>(Vec<(String, V)>);

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for Entries<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

impl<V: PartialEq + serde::Serialize> Entries<V> {
    /// The entries with identical repeats dropped; a key repeated with another value is an
    /// error naming the key and both lines (`text` is the document, to find them).
    pub(crate) fn unique(
        self,
        path: &Path,
        text: &str,
        what: &str,
        field: &str,
    ) -> Result<HashMap<String, V>, DataError> {
        let mut unique: HashMap<String, V> = HashMap::with_capacity(self.0.len());
        for (key, value) in self.0 {
            match unique.get(&key) {
                None => {
                    unique.insert(key, value);
                }
                Some(first) if *first == value => {}
                Some(first) => {
                    let (there, here) = (shown_json(first), shown_json(&value));
                    return Err(match key_lines(text, &key)[..] {
                        [first_line, line, ..] => DataError::field(
                            path,
                            line,
                            field,
                            repeats(what, &key, first_line, "value", &there, &here),
                        ),
                        // The key is escaped differently in the file; say what is known.
                        _ => DataError::file(
                            path,
                            format!("{what} {key} appears twice with different values ({there}, then {here})"),
                        ),
                    });
                }
            }
        }
        Ok(unique)
    }
}

pub(crate) fn shown_json<V: serde::Serialize>(value: &V) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The lines where `key` is an object key in the JSON document `text`, for errors only.
pub(crate) fn key_lines(text: &str, key: &str) -> Vec<usize> {
    let quoted = shown_json(&key);
    let mut lines = Vec::new();
    let (mut line, mut counted) = (1, 0);
    for (at, _) in text.match_indices(&quoted) {
        if text[at + quoted.len()..].trim_start().starts_with(':') {
            line += text[counted..at].matches('\n').count();
            counted = at;
            lines.push(line);
        }
    }
    lines
}

/// How every importer reports a record repeated with other content.
pub(crate) fn repeats(
    what: &str,
    id: &str,
    first_line: usize,
    field: &str,
    there: &str,
    here: &str,
) -> String {
    format!(
        "{what} {id} repeats line {first_line} with another {field} ({there} there, {here} here)"
    )
}

/// The integer types of imported fields, named in words for errors.
pub(crate) trait Integer: TryFrom<i128> {
    const KIND: &'static str;
}

impl Integer for u32 {
    const KIND: &'static str = "a 32-bit unsigned integer";
}

impl Integer for i64 {
    const KIND: &'static str = "a 64-bit integer";
}

pub(crate) fn out_of_range(kind: &str, shown: &dyn fmt::Display) -> String {
    format!("out of range for {kind}, got {shown}")
}

/// Decimal digits with an optional sign: an integer, whether or not it fits.
pub(crate) fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An integer field of a text file; `shown` is how errors quote it. Parsing straight into the
/// target type tells "too large" apart from "not a number".
pub(crate) fn integer<T: Integer>(text: &str, shown: &dyn fmt::Display) -> Result<T, String> {
    if !is_integer(text) {
        return Err(format!("expected an integer, got {shown}"));
    }
    text.parse::<i128>()
        .ok()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| out_of_range(T::KIND, shown))
}

/// An integer field of a JSON document. A float is not an integer, but one beyond the type's
/// range is reported as such, since that is what needs fixing.
pub(crate) fn json_integer<T: Integer>(value: &Value) -> Result<T, String> {
    let Value::Number(n) = value else {
        return Err(format!("expected an integer, got {value}"));
    };
    match n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)) {
        Some(i) => T::try_from(i).map_err(|_| out_of_range(T::KIND, value)),
        None => match n.as_f64() {
            // `as` saturates, which is past any of our types' ranges too.
            Some(f) if f.fract() == 0.0 && T::try_from(f as i128).is_err() => {
                Err(out_of_range(T::KIND, value))
            }
            _ => Err(format!("expected an integer, got {value}")),
        },
    }
}

/// Ratings are stored as f32; `as` would turn a finite f64 beyond its range into infinity,
/// which JSON cannot hold.
pub(crate) fn to_f32(value: f64, shown: &dyn fmt::Display) -> Result<f32, String> {
    Some(value as f32)
        .filter(|v| v.is_finite())
        .ok_or_else(|| out_of_range("a 32-bit float", shown))
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

    pub(crate) fn required_integer<T: Integer>(&self, field: &str) -> Result<T, DataError> {
        match self.present(field) {
            None => Err(self.error(field, "missing")),
            Some(v) => json_integer(v).map_err(|m| self.error(field, m)),
        }
    }

    pub(crate) fn optional_f32(&self, field: &str) -> Result<Option<f32>, DataError> {
        match self.present(field) {
            None => Ok(None),
            Some(v) => {
                let n = v
                    .as_f64()
                    .ok_or_else(|| self.error(field, format!("expected a number, got {v}")))?;
                to_f32(n, v).map(Some).map_err(|m| self.error(field, m))
            }
        }
    }

    /// Field names, null-valued ones included.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.object.keys().map(String::as_str)
    }

    pub(crate) fn has_field(&self, field: &str) -> bool {
        self.object.contains_key(field)
    }

    /// The first field whose value differs from `other`'s, with both values; null and absent
    /// are the same, as everywhere else.
    pub(crate) fn difference<'r>(&'r self, other: &'r Self) -> Option<(&'r str, String, String)> {
        self.fields()
            .chain(other.fields())
            .find(|f| self.present(f) != other.present(f))
            .map(|f| {
                let value = |r: &Self| shown_json(&r.present(f).unwrap_or(&Value::Null));
                (f, value(self), value(other))
            })
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

/// The entries of `dir`, sorted. Errors name `dir`, so that a directory that cannot be listed is
/// not taken for one without the expected files.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        paths.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    paths.sort();
    Ok(paths)
}

/// Whether anything is at `path`, a directory or a dangling link included: such a path is then
/// read and fails with its own OS error, instead of looking absent.
pub(crate) fn present(path: &Path) -> Result<bool, DataError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DataError::io(path, e)),
    }
}

/// Watches the records of a JSON-lines item file for a title field. A file without any is
/// refused: every item would be dropped as untitled, and preparation could only say that
/// nothing was left.
pub(crate) struct TitleField {
    names: &'static [&'static str],
    /// The fields seen so far, to say what the file has instead; `None` once a title was seen.
    seen: Option<BTreeSet<String>>,
}

impl TitleField {
    pub(crate) fn new(names: &'static [&'static str]) -> Self {
        Self {
            names,
            seen: Some(BTreeSet::new()),
        }
    }

    pub(crate) fn see(&mut self, record: &JsonRecord) {
        if let Some(seen) = &mut self.seen {
            if self.names.iter().any(|n| record.has_field(n)) {
                self.seen = None;
            } else {
                seen.extend(record.fields().map(str::to_string));
            }
        }
    }

    pub(crate) fn check(self, path: &Path) -> Result<(), DataError> {
        let Some(seen) = self.seen else {
            return Ok(());
        };
        let found = if seen.is_empty() {
            "none".to_string()
        } else {
            seen.into_iter().collect::<Vec<_>>().join(", ")
        };
        Err(DataError::file(
            path,
            format!(
                "no line has a `{}` field (fields found: {found})",
                self.names.join("` or `")
            ),
        ))
    }
}

/// The single entry in `dir` whose name ends with `suffix`, if there is exactly one.
pub(crate) fn single_file_with_suffix(dir: &Path, suffix: &str) -> Result<PathBuf, DataError> {
    let mut found: Vec<PathBuf> = list_dir(dir)?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
        })
        .collect();
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
    index: HashMap<String, u32>,
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
