//! Property tests of every importer on outside input: a small valid directory of each layout,
//! one of its files replaced by random bytes or corrupted (cut short, spliced with junk, a token
//! swapped for a wrong type, a huge number or bytes that are not UTF-8, a line dropped, gzip cut
//! short). Importing must return the data or an error naming a file of the directory; it must
//! never panic, and whatever imports must also survive preparation.

use std::path::Path;
use std::time::Duration;

use instructrec_data::{prepare_imported, Format, ImportSource, PrepareOptions};
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
                text(
                    "raw/G.inter.json",
                    r#"{"0": [0, 1, 2], "1": [1, 2, 0], "2": [2, 0, 1]}"#,
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
                    r#"{"1": "Red Racer", "2": "Blue &amp; Puzzle", "3": "Green Blocks"}"#,
                ),
                text(
                    "id2category.json",
                    r#"{"1": [["Toys", "Cars"]], "2": [["Toys"], ["Toys", "Puzzles"]], "3": []}"#,
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

/// Imports and, when that works, prepares; an import error must name a file in `dir`.
fn check(dir: &Path, format: Format) -> Result<(), TestCaseError> {
    let source = ImportSource::Dir {
        dir: dir.to_path_buf(),
        format: Some(format),
    };
    match source.import() {
        Ok(imported) => {
            let options = PrepareOptions {
                k_core: 1,
                candidate_sizes: vec![3],
                ..PrepareOptions::default()
            };
            // Preparation may refuse (too few users left, say) but must not panic.
            let _ = prepare_imported(imported, &options, Duration::ZERO);
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                message.contains(&dir.display().to_string()),
                "the error does not name a file of {}: {message}",
                dir.display()
            );
        }
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
