//! Property tests of every importer on outside input: a small valid directory of each layout,
//! one of its files replaced by random bytes or corrupted (cut short, its last row cut short,
//! spliced with junk, a token swapped for a wrong type, a number that overflows its type or bytes
//! that are not UTF-8, a line dropped, a line repeated with another value, gzip cut short).
//! Importing must return the data or an error naming a file of the directory; it must never
//! panic, and whatever imports must also survive preparation. Targeted properties: a number
//! written where a rating, timestamp or id belongs imports as exactly that value or is an error
//! naming its file, line and field; a key repeated with another value never changes what the
//! file's other lines import; a RecBole row visibly cut short is an error.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use instructrec_data::{
    prepare_imported, Format, ImportSource, Imported, ImportedItem, Interaction, PrepareOptions,
};
use proptest::prelude::*;

#[path = "support/corrupt.rs"]
mod corrupt;
use corrupt::{corrupt, corruption, gzip, Corruption};

/// A layout: its format and its files (path relative to the directory, content).
struct Layout {
    format: Format,
    files: Vec<(&'static str, Vec<u8>)>,
}

fn text(path: &'static str, content: &str) -> (&'static str, Vec<u8>) {
    (path, content.as_bytes().to_vec())
}

const REVIEWS: &str = r#"{"reviewerID": "U1", "asin": "B1", "overall": 5.0, "unixReviewTime": 100, "summary": "Fun", "reviewText": "Great &amp; fast"}
{"reviewerID": "U1", "asin": "B2", "overall": 4.0, "unixReviewTime": 200}
{"reviewerID": "U1", "asin": "B3", "unixReviewTime": 300, "reviewText": "ok"}
{"reviewerID": "U2", "asin": "B2", "overall": 3, "unixReviewTime": 150}
{"reviewerID": "U2", "asin": "B3", "overall": 1.0, "unixReviewTime": 160}
{"reviewerID": "U2", "asin": "B1", "overall": 2.0, "unixReviewTime": 170}
{"reviewerID": "U3", "asin": "B3", "overall": 5.0, "unixReviewTime": 10}
{"reviewerID": "U3", "asin": "B1", "overall": 5.0, "unixReviewTime": 20}
{"reviewerID": "U3", "asin": "B2", "overall": 5.0, "unixReviewTime": 30}
"#;

const META: &str = r#"{"asin": "B1", "title": "Red Racer", "category": ["Toys", "Cars"], "brand": "Acme", "description": ["Fast", "Red"], "feature": ["Wheels"]}
{"asin": "B2", "title": "Blue Puzzle", "category": "Toys", "brand": "Zed"}
{"asin": "B3", "title": "Green Blocks", "category": ["Toys", "Blocks"], "feature": "Stack"}
"#;

fn layouts() -> Vec<Layout> {
    vec![
        Layout {
            format: Format::AmazonGames,
            files: vec![
                // One key a line, so that line corruptions repeat keys.
                text(
                    "raw/G.inter.json",
                    "{\n\"0\": [0, 1, 2],\n\"1\": [1, 2, 0],\n\"2\": [2, 0, 1]\n}\n",
                ),
                text("raw/G.item2id", "B1\t0\nB2\t1\nB3\t2\n"),
                text("raw/G.user2id", "U1\t0\nU2\t1\nU3\t2\n"),
                text(
                    "items.jsonl",
                    r#"{"lcrec_item_id": 0, "asin": "B1", "title": "Red Racer", "title_raw": "Red Racer", "categories_raw": ["Video Games", "PC", "Racing"], "brand": "Acme"}
{"lcrec_item_id": 1, "asin": "B2", "title": "Blue Puzzle", "categories_raw": ["Video Games"]}
{"lcrec_item_id": 2, "asin": "B3", "title": "Green Blocks", "categories_raw": [], "brand": null}
"#,
                ),
            ],
        },
        Layout {
            format: Format::P5,
            files: vec![
                text("sequential_data.txt", "1 1 2 3\n2 2 3 1\n3 3 1 2\n"),
                text(
                    "id2title.json",
                    "{\n\"1\": \"Red Racer\",\n\"2\": \"Blue &amp; Puzzle\",\n\"3\": \"Green Blocks\"\n}\n",
                ),
                text(
                    "id2category.json",
                    "{\n\"1\": [[\"Toys\", \"Cars\"]],\n\"2\": [[\"Toys\"], [\"Toys\", \"Puzzles\"]],\n\"3\": []\n}\n",
                ),
            ],
        },
        Layout {
            format: Format::RecBole,
            files: vec![
                text(
                    "m.inter",
                    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
                     1\t10\t3\t881250949\n1\t11\t4\t881250950\n1\t12\t5\t881250951\n\
                     2\t11\t3\t881250949\n2\t12\t4\t881250950\n2\t10\t5\t881250951\n\
                     3\t12\t3\t881250949\n3\t10\t4\t881250950\n3\t11\t5\t881250951\n",
                ),
                text(
                    "m.item",
                    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
                     10\tToy Story\t1995\tAnimation Comedy\n11\tHeat\t1995\tAction\n\
                     12\tCasino\t1995\tDrama\n",
                ),
                text(
                    "m.user",
                    "user_id:token\tage:token\tgender:token\n1\t24\tM\n2\t53\tF\n3\t23\tM\n",
                ),
            ],
        },
        Layout {
            format: Format::Amazon2018,
            files: vec![text("Toys.json", REVIEWS), text("meta_Toys.json", META)],
        },
        Layout {
            format: Format::Amazon2018,
            files: vec![
                ("Toys.json.gz", gzip(REVIEWS.as_bytes())),
                ("meta_Toys.json.gz", gzip(META.as_bytes())),
            ],
        },
    ]
}

fn write_layout(dir: &Path, layout: &Layout, target: usize, how: &Corruption) {
    for (i, (name, content)) in layout.files.iter().enumerate() {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let content = if i == target {
            corrupt(content, how)
        } else {
            Some(content.clone())
        };
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
    }
}

fn import(dir: &Path, format: Format) -> Result<Imported, String> {
    ImportSource::Dir {
        dir: dir.to_path_buf(),
        format: Some(format),
    }
    .import()
    .map_err(|e| e.to_string())
}

/// What any import must satisfy: no number that overflowed its type (an infinite rating, a
/// timestamp saturated at an end of i64) and no id twice.
fn sound(imported: &Imported) -> Result<(), TestCaseError> {
    for interaction in imported.sequences.iter().flatten() {
        prop_assert!(interaction.rating.is_none_or(f32::is_finite));
        prop_assert!(interaction
            .timestamp
            .is_none_or(|t| t != i64::MAX && t != i64::MIN));
    }
    let items: HashSet<&str> = imported
        .items
        .iter()
        .map(|i| i.original_id.as_str())
        .collect();
    prop_assert_eq!(items.len(), imported.items.len(), "an item id twice");
    let users: HashSet<&String> = imported.users.iter().collect();
    prop_assert_eq!(users.len(), imported.users.len(), "a user id twice");
    Ok(())
}

fn names_a_file_of(message: &str, dir: &Path) -> Result<(), TestCaseError> {
    prop_assert!(
        message.contains(&dir.display().to_string()),
        "the error does not name a file of {}: {message}",
        dir.display()
    );
    Ok(())
}

/// Imports and, when that works, prepares; an import error must name a file in `dir`.
fn check(dir: &Path, format: Format) -> Result<(), TestCaseError> {
    match import(dir, format) {
        Ok(imported) => {
            sound(&imported)?;
            let options = PrepareOptions {
                k_core: 1,
                candidate_sizes: vec![3],
                ..PrepareOptions::default()
            };
            // Preparation may refuse (too few users left, say) but must not panic.
            let _ = prepare_imported(imported, &options, Duration::ZERO);
        }
        Err(e) => names_a_file_of(&e, dir)?,
    }
    Ok(())
}

#[test]
fn the_uncorrupted_layouts_import_and_prepare() {
    for layout in layouts() {
        let dir = tempfile::tempdir().unwrap();
        write_layout(dir.path(), &layout, usize::MAX, &Corruption::Missing);
        let imported = ImportSource::Dir {
            dir: dir.path().to_path_buf(),
            format: None,
        }
        .import()
        .unwrap_or_else(|e| panic!("{}: {e}", layout.format));
        assert_eq!(imported.format, layout.format);
        assert_eq!((imported.users.len(), imported.items.len()), (3, 3));
        assert_eq!(imported.interactions(), 9);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_files_give_errors_naming_the_file(
        which in 0..5usize,
        target in any::<usize>(),
        how in corruption(),
    ) {
        let layout = &layouts()[which];
        let dir = tempfile::tempdir().unwrap();
        write_layout(dir.path(), layout, target % layout.files.len(), &how);
        check(dir.path(), layout.format)?;
    }
}

/// Finding: RecBole columns were parsed with Rust's float parser, which takes "NaN" and "inf",
/// so a rating of NaN or an infinite timestamp (saturated to i64::MAX) was imported silently.
#[test]
fn recbole_rejects_non_finite_numbers() {
    let layout = &layouts()[2];
    for (bad, field) in [("NaN", "rating"), ("inf", "timestamp")] {
        let dir = tempfile::tempdir().unwrap();
        write_layout(dir.path(), layout, usize::MAX, &Corruption::Missing);
        let inter = dir.path().join("m.inter");
        let text = std::fs::read_to_string(&inter).unwrap();
        let line = match field {
            "rating" => "1\t10\tNaN\t881250949",
            _ => "1\t10\t3\tinf",
        };
        std::fs::write(&inter, text.replacen("1\t10\t3\t881250949", line, 1)).unwrap();
        let e = ImportSource::Dir {
            dir: dir.path().to_path_buf(),
            format: None,
        }
        .import()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("m.inter:2: field `") && e.contains(field) && e.contains(bad),
            "{e}"
        );
    }
}

fn layout_with(layout: &Layout, target: usize, content: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), layout, usize::MAX, &Corruption::Missing);
    std::fs::write(dir.path().join(layout.files[target].0), content).unwrap();
    dir
}

fn file_text(layout: &Layout, target: usize) -> String {
    String::from_utf8(layout.files[target].1.clone()).unwrap()
}

fn interaction<'a>(imported: &'a Imported, user: &str, item: &str) -> &'a Interaction {
    let u = imported.users.iter().position(|u| u == user).unwrap();
    imported.sequences[u]
        .iter()
        .find(|i| imported.items[i.item.index()].original_id == item)
        .unwrap()
}

/// Numbers at and past the ends of f32, i64 and u32, in forms only one of the formats accepts.
const EDGE_NUMBERS: &[&str] = &[
    "1e39",
    "-1e39",
    "3.4028235e38",
    "3.4028236e38",
    "1e-50",
    "1e30",
    "-1e30",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "9.3e18",
    "4294967295",
    "4294967296",
    "-1",
    "-0",
    "0",
    "00",
    "+5",
    "2",
    "2.5",
    "2.0",
    "1e400",
    "NaN",
    "inf",
];

fn numbers() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(EDGE_NUMBERS).prop_map(str::to_string),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        any::<f32>().prop_map(|f| f.to_string()),
        any::<i128>().prop_map(|i| i.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u32>().prop_map(|i| i.to_string()),
    ]
}

/// The value a number must import as where the field's type can hold it: text files take Rust's
/// number syntax, JSON files JSON's.
fn text_f32(text: &str) -> Option<f32> {
    let wide = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
    Some(wide as f32).filter(|f| f.is_finite())
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// RecBole timestamps are typed float: whole seconds, a fraction dropped.
fn text_i64(text: &str) -> Option<i64> {
    if is_integer(text) {
        return text.parse::<i128>().ok().and_then(|n| n.try_into().ok());
    }
    let seconds = text.parse::<f64>().ok()?;
    (-9223372036854775808.0..9223372036854775808.0)
        .contains(&seconds)
        .then(|| seconds.trunc() as i64)
}

fn text_u32(text: &str) -> Option<u32> {
    is_integer(text)
        .then(|| text.parse::<i128>().ok().and_then(|n| n.try_into().ok()))
        .flatten()
}

fn json_number(text: &str) -> Option<serde_json::Number> {
    serde_json::from_str(text).ok()
}

fn json_f32(text: &str) -> Option<f32> {
    json_number(text)?
        .as_f64()
        .and_then(|f| text_f32(&f.to_string()))
}

fn json_u32(text: &str) -> Option<u32> {
    json_number(text)?.as_u64()?.try_into().ok()
}

/// Where a number was written: the file and line an error must name, and the field when the
/// number itself (not the file around it) is what the importer rejects.
struct Site<'a> {
    at: &'a str,
    field: Option<&'a str>,
}

/// `imports`: what the file's value must import as, `None` when it must not import; `fits`:
/// whether the number fits the field's type (if not, the error must name the site).
fn verdict<T: PartialEq + std::fmt::Debug>(
    dir: &Path,
    format: Format,
    imports: Option<T>,
    fits: bool,
    site: Site,
    actual: impl Fn(&Imported) -> T,
) -> Result<(), TestCaseError> {
    match (import(dir, format), imports) {
        (Ok(imported), Some(expected)) => prop_assert_eq!(actual(&imported), expected),
        (Ok(imported), None) => {
            prop_assert!(false, "imported {:?}", actual(&imported));
        }
        (Err(e), Some(expected)) => prop_assert!(false, "{expected:?} did not import: {e}"),
        (Err(e), None) => {
            names_a_file_of(&e, dir)?;
            if !fits {
                prop_assert!(e.contains(site.at), "{e}");
                if let Some(field) = site.field {
                    prop_assert!(e.contains(&format!("field `{field}`")), "{e}");
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Finding: numbers past their type's range became infinite ratings, saturated timestamps
    /// or "unknown" ids.
    #[test]
    fn numbers_import_exactly_or_name_file_line_and_field(site in 0..7usize, v in numbers()) {
        let layouts = layouts();
        let json_field = |name| json_number(&v).map(|_| name);
        match site {
            0 | 1 => {
                let layout = &layouts[2];
                let row = if site == 0 {
                    format!("1\t10\t{v}\t881250949")
                } else {
                    format!("1\t10\t3\t{v}")
                };
                let content = file_text(layout, 0).replacen("1\t10\t3\t881250949", &row, 1);
                let dir = layout_with(layout, 0, &content);
                if site == 0 {
                    let imports = text_f32(&v);
                    let site = Site { at: "m.inter:2:", field: Some("rating") };
                    verdict(dir.path(), layout.format, imports, imports.is_some(), site, |i| {
                        interaction(i, "1", "10").rating.unwrap()
                    })?;
                } else {
                    let imports = text_i64(&v);
                    let site = Site { at: "m.inter:2:", field: Some("timestamp") };
                    verdict(dir.path(), layout.format, imports, imports.is_some(), site, |i| {
                        interaction(i, "1", "10").timestamp.unwrap()
                    })?;
                }
            }
            2 | 3 => {
                let layout = &layouts[3];
                let dir = if site == 2 {
                    let content = REVIEWS.replacen(r#""overall": 5.0"#, &format!(r#""overall": {v}"#), 1);
                    layout_with(layout, 0, &content)
                } else {
                    let content = REVIEWS.replacen(
                        r#""unixReviewTime": 100"#,
                        &format!(r#""unixReviewTime": {v}"#),
                        1,
                    );
                    layout_with(layout, 0, &content)
                };
                if site == 2 {
                    let imports = json_f32(&v);
                    let site = Site { at: "Toys.json:1:", field: json_field("overall") };
                    verdict(dir.path(), layout.format, imports, imports.is_some(), site, |i| {
                        interaction(i, "U1", "B1").rating.unwrap()
                    })?;
                } else {
                    let imports = json_number(&v).and_then(|n| n.as_i64());
                    let site = Site { at: "Toys.json:1:", field: json_field("unixReviewTime") };
                    verdict(dir.path(), layout.format, imports, imports.is_some(), site, |i| {
                        interaction(i, "U1", "B1").timestamp.unwrap()
                    })?;
                }
            }
            4 => {
                // Only 0 keeps the bundle consistent; other ids that fit are other errors.
                let layout = &layouts[0];
                let content = file_text(layout, 1).replacen("B1\t0\n", &format!("B1\t{v}\n"), 1);
                let dir = layout_with(layout, 1, &content);
                let id = text_u32(&v);
                let site = Site { at: "G.item2id:1:", field: Some("item id") };
                verdict(dir.path(), layout.format, id.filter(|&i| i == 0), id.is_some(), site, |i| {
                    i.items.iter().position(|item| item.original_id == "B1").unwrap() as u32
                })?;
            }
            5 => {
                let layout = &layouts[0];
                let content = file_text(layout, 3).replacen(
                    r#""lcrec_item_id": 0,"#,
                    &format!(r#""lcrec_item_id": {v},"#),
                    1,
                );
                let dir = layout_with(layout, 3, &content);
                let id = json_u32(&v);
                let site = Site { at: "items.jsonl:1:", field: json_field("lcrec_item_id") };
                let imports = id.filter(|&i| i == 0).map(|_| Some("Red Racer".to_string()));
                verdict(dir.path(), layout.format, imports, id.is_some(), site, |i| {
                    i.items[0].title.clone()
                })?;
            }
            _ => {
                let layout = &layouts[0];
                let content = file_text(layout, 0).replacen("[0, 1, 2]", &format!("[{v}, 1, 2]"), 1);
                let dir = layout_with(layout, 0, &content);
                let id = json_u32(&v);
                let site = Site { at: "G.inter.json:2:", field: json_field("item id") };
                let asins = ["B1", "B2", "B3"];
                verdict(dir.path(), layout.format, id.filter(|&i| i <= 2), id.is_some(), site, |i| {
                    let first = i.sequences[0][0].item.index();
                    asins.iter().position(|&a| a == i.items[first].original_id).unwrap() as u32
                })?;
            }
        }
    }
}

/// Files whose lines are keyed by an item or a user, by layout: a line repeated with another
/// value gives a key twice. Interaction files, where a repeated line is another interaction, are
/// left out.
const KEYED: [(usize, &[usize]); 4] =
    [(0, &[0, 1, 2, 3]), (1, &[0, 1, 2]), (2, &[1, 2]), (3, &[1])];

/// Every item, user and sequence of `clean` is in `imported` unchanged; `imported` may hold more
/// (a repeat whose key itself was changed is a new record).
fn keeps(clean: &Imported, imported: &Imported) -> Result<(), TestCaseError> {
    let items: HashMap<&str, &ImportedItem> = imported
        .items
        .iter()
        .map(|i| (i.original_id.as_str(), i))
        .collect();
    for item in &clean.items {
        prop_assert_eq!(items.get(item.original_id.as_str()), Some(&item));
    }
    let sequence = |imported: &Imported, user: &str| {
        let u = imported.users.iter().position(|u| u == user)?;
        Some(
            imported.sequences[u]
                .iter()
                .map(|i| {
                    let id = imported.items[i.item.index()].original_id.clone();
                    (id, i.timestamp, i.rating, i.review.clone())
                })
                .collect::<Vec<_>>(),
        )
    };
    for user in &clean.users {
        prop_assert_eq!(sequence(imported, user), sequence(clean, user));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Finding: an item repeated with another title replaced the first silently.
    #[test]
    fn a_key_repeated_with_another_value_never_changes_what_imports(
        which in 0..KEYED.len(),
        target in any::<usize>(),
        line in any::<usize>(),
        token in any::<usize>(),
        value in any::<usize>(),
    ) {
        let (layout, files) = KEYED[which];
        let layout = &layouts()[layout];
        let clean = tempfile::tempdir().unwrap();
        write_layout(clean.path(), layout, usize::MAX, &Corruption::Missing);
        let clean = import(clean.path(), layout.format).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let how = Corruption::RepeatLineChanged(line, token, value);
        write_layout(dir.path(), layout, files[target % files.len()], &how);
        match import(dir.path(), layout.format) {
            Ok(imported) => {
                sound(&imported)?;
                keeps(&clean, &imported)?;
            }
            Err(e) => names_a_file_of(&e, dir.path())?,
        }
    }

    /// Finding: a RecBole file cut right after a tab imported its last row with an empty field.
    /// A cut inside the last field cannot be told from a shorter value and may import.
    #[test]
    fn recbole_rows_cut_short_are_errors(target in 0..3usize, cut in any::<usize>()) {
        let layout = &layouts()[2];
        let content = file_text(layout, target);
        let body = content.trim_end_matches('\n');
        let start = body.rfind('\n').unwrap() + 1;
        let row = &body[start..];
        let keep = 1 + cut % row.len();
        let dir = layout_with(layout, target, &body[..start + keep]);
        let clean = tempfile::tempdir().unwrap();
        write_layout(clean.path(), layout, usize::MAX, &Corruption::Missing);
        let clean = import(clean.path(), layout.format).unwrap();
        let result = import(dir.path(), layout.format);
        if keep == row.len() {
            let imported = result.map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                (&imported.items, &imported.users, &imported.sequences),
                (&clean.items, &clean.users, &clean.sequences)
            );
        } else if keep <= row.rfind('\t').unwrap() + 1 {
            let e = result.err().unwrap_or_default();
            let line = body.lines().count();
            let at = format!("{}:{line}: the last row has no line break", layout.files[target].0);
            prop_assert!(e.contains(&at), "{e}");
        } else if let Err(e) = result {
            names_a_file_of(&e, dir.path())?;
        }
    }
}
