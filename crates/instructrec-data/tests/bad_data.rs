//! Bad data found in review (issue #21), one test per case: numbers that overflow their type,
//! a RecBole file cut mid-row, items repeated with other values, missing optional files, a
//! missing title column or a byte-order mark, and files that exist but cannot be read. Each
//! must be refused (or warned about) with a message that names the file and says the real
//! cause, instead of importing wrong values or failing later for another reason.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use instructrec_data::{prepare, ImportSource, Imported, PrepareOptions};

fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

fn import(dir: &Path) -> Result<Imported, String> {
    ImportSource::Dir {
        dir: dir.to_path_buf(),
        format: None,
    }
    .import()
    .map_err(|e| e.to_string())
}

fn import_error(dir: &Path) -> String {
    match import(dir) {
        Ok(imported) => panic!("{} imported: {imported:?}", dir.display()),
        Err(e) => e,
    }
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
}

const RECBOLE_INTER: &str = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
    1\t10\t3\t881250949\n1\t11\t4\t881250950\n1\t12\t5\t881250951\n";
const RECBOLE_ITEM: &str =
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
    10\tToy Story\t1995\tAnimation Comedy\n11\tHeat\t1995\tAction\n12\tCasino\t1995\tDrama\n";

fn recbole(dir: &Path, inter: &str, item: &str) {
    write_files(dir, &[("m.inter", inter), ("m.item", item)]);
}

const GAMES_ITEMS: &str = r#"{"lcrec_item_id": 0, "asin": "B1", "title": "Red Racer", "categories_raw": ["Video Games"], "brand": "Acme"}
{"lcrec_item_id": 1, "asin": "B2", "title": "Blue Puzzle"}
"#;

/// An amazon-games bundle with two items and one user who saw both.
fn games(dir: &Path, inter: &str, item2id: &str, items: &str) {
    write_files(
        dir,
        &[
            ("raw/G.inter.json", inter),
            ("raw/G.item2id", item2id),
            ("raw/G.user2id", "U1\t0\n"),
            ("items.jsonl", items),
        ],
    );
}

const REVIEWS: &str = r#"{"reviewerID": "U1", "asin": "B1", "overall": 5.0, "unixReviewTime": 100}
{"reviewerID": "U1", "asin": "B2", "overall": 4.0, "unixReviewTime": 200}
"#;
const META: &str = r#"{"asin": "B1", "title": "Red Racer", "category": ["Toys"]}
{"asin": "B2", "title": "Blue Puzzle"}
"#;

const P5_TITLES: &str = "{\n\"1\": \"Red Racer\",\n\"2\": \"Blue Puzzle\"\n}\n";

/// The messages of `tracing` warnings emitted on this thread.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            write!(self.0, "{value:?}").unwrap();
        } else {
            write!(self.0, " {}={value:?}", field.name()).unwrap();
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let warnings = Warnings::default();
    let value = tracing::subscriber::with_default(warnings.clone(), f);
    let messages = warnings.0.lock().unwrap().clone();
    (value, messages)
}

/// Case 1: a rating of 1e39 became an infinite f32 (null in JSON), a timestamp of 1e30
/// saturated to i64::MAX, and ids past u32 were called "unknown" or "not an integer".
#[test]
fn numbers_that_overflow_their_type_are_rejected() {
    let cases = [
        (
            "1\t10\t1e39\t881250949",
            "m.inter:2: field `rating`: out of range for a 32-bit float, got \"1e39\"",
        ),
        (
            "1\t10\t3\t1e30",
            "m.inter:2: field `timestamp`: out of range for a 64-bit integer, got \"1e30\"",
        ),
        (
            "1\t10\t3\t9223372036854775808",
            "m.inter:2: field `timestamp`: out of range for a 64-bit integer, got \"9223372036854775808\"",
        ),
        (
            "1\t10\t3\t-9223372036854775809",
            "m.inter:2: field `timestamp`: out of range",
        ),
    ];
    for (row, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        recbole(
            tmp.path(),
            &RECBOLE_INTER.replacen("1\t10\t3\t881250949", row, 1),
            RECBOLE_ITEM,
        );
        assert_contains(&import_error(tmp.path()), &[expected]);
    }
    // Values that fit, written as the header's `float` type, still import.
    let tmp = tempfile::tempdir().unwrap();
    recbole(
        tmp.path(),
        &RECBOLE_INTER.replacen("1\t10\t3\t881250949", "1\t10\t3.5\t881250949.0", 1),
        RECBOLE_ITEM,
    );
    let imported = import(tmp.path()).unwrap();
    assert_eq!(imported.sequences[0][0].rating, Some(3.5));
    assert_eq!(imported.sequences[0][0].timestamp, Some(881250949));

    let amazon2018 = [
        (
            r#""overall": 5.0"#,
            r#""overall": 1e39"#,
            "r.json:1: field `overall`: out of range for a 32-bit float, got 1e+39",
        ),
        (
            r#""unixReviewTime": 100"#,
            r#""unixReviewTime": 9223372036854775808"#,
            "r.json:1: field `unixReviewTime`: out of range for a 64-bit integer, got 9223372036854775808",
        ),
        (
            r#""unixReviewTime": 100"#,
            r#""unixReviewTime": 1e30"#,
            "r.json:1: field `unixReviewTime`: out of range for a 64-bit integer, got 1e+30",
        ),
    ];
    for (from, to, expected) in amazon2018 {
        let tmp = tempfile::tempdir().unwrap();
        write_files(
            tmp.path(),
            &[
                ("r.json", &REVIEWS.replacen(from, to, 1)),
                ("meta_r.json", META),
            ],
        );
        assert_contains(&import_error(tmp.path()), &[expected]);
    }

    let inter = r#"{"0": [0, 1]}"#;
    let item2id = "B1\t0\nB2\t1\n";
    let games_cases = [
        (
            inter,
            "B1\t0\nB2\t4294967296\n",
            GAMES_ITEMS,
            "G.item2id:2: field `item id`: out of range for a 32-bit unsigned integer, got \"4294967296\"",
        ),
        (
            inter,
            "B1\t0\nB2\t-1\n",
            GAMES_ITEMS,
            "G.item2id:2: field `item id`: out of range for a 32-bit unsigned integer, got \"-1\"",
        ),
        (
            r#"{"0": [0, 4294967296]}"#,
            item2id,
            GAMES_ITEMS,
            "G.inter.json:1: field `item id`: user 0: out of range for a 32-bit unsigned integer, got 4294967296",
        ),
        (
            inter,
            item2id,
            &GAMES_ITEMS.replacen(r#""lcrec_item_id": 1,"#, r#""lcrec_item_id": 4294967297,"#, 1),
            "items.jsonl:2: field `lcrec_item_id`: out of range for a 32-bit unsigned integer, got 4294967297",
        ),
    ];
    for (inter, item2id, items, expected) in games_cases {
        let tmp = tempfile::tempdir().unwrap();
        games(tmp.path(), inter, item2id, items);
        assert_contains(&import_error(tmp.path()), &[expected]);
    }
}

/// Case 2: a RecBole file cut right after a tab imported its last row with an empty field, and a
/// row cut shorter was reported as a field count without saying the file was cut.
#[test]
fn recbole_truncated_last_row_is_an_error() {
    let cut_item = RECBOLE_ITEM.trim_end().trim_end_matches("Drama");
    let cut_inter = RECBOLE_INTER.trim_end().trim_end_matches("\t881250951");
    for (inter, item, expected) in [
        (
            RECBOLE_INTER,
            cut_item,
            "m.item:4: the last row has no line break and its last field is empty: the file looks cut short",
        ),
        (
            cut_inter,
            RECBOLE_ITEM,
            "m.inter:4: the last row has no line break and 3 fields, the header has 4: the file looks cut short",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        recbole(tmp.path(), inter, item);
        assert_contains(&import_error(tmp.path()), &[expected]);
    }
    // A complete last row without a line break is fine.
    let tmp = tempfile::tempdir().unwrap();
    recbole(
        tmp.path(),
        RECBOLE_INTER.trim_end(),
        RECBOLE_ITEM.trim_end(),
    );
    let imported = import(tmp.path()).unwrap();
    assert_eq!(imported.interactions(), 3);
    assert_eq!(imported.items[2].categories, ["Movies", "Drama"]);
}

/// Case 3: an item repeated with another title silently replaced the first. Identical repeats
/// are harmless; repeats that would import differently name the id and both lines.
#[test]
fn conflicting_duplicate_items_are_errors() {
    let inter = r#"{"0": [0, 1]}"#;
    let item2id = "B1\t0\nB2\t1\n";
    let repeated = format!(
        "{GAMES_ITEMS}{}\n",
        r#"{"lcrec_item_id": 0, "asin": "B1", "title": "Other Racer", "categories_raw": ["Video Games"], "brand": "Acme"}"#
    );
    let games_cases = [
        (
            inter,
            item2id,
            repeated.as_str(),
            "items.jsonl:3: field `lcrec_item_id`: item 0 repeats line 1 with another title (\"Red Racer\" there, \"Other Racer\" here)",
        ),
        (
            inter,
            "B1\t0\nB2\t1\nB3\t1\n",
            GAMES_ITEMS,
            "G.item2id:3: field `item id`: id 1 repeats line 2 with another item (\"B2\" there, \"B3\" here)",
        ),
        (
            inter,
            "B1\t0\nB2\t1\nB1\t2\n",
            GAMES_ITEMS,
            "G.item2id:3: field `item`: item B1 repeats line 1 with another id (0 there, 2 here)",
        ),
        (
            "{\"0\": [0, 1],\n\"0\": [1]}",
            item2id,
            GAMES_ITEMS,
            "G.inter.json:2: field `user id`: user 0 repeats line 1 with another value ([0,1] there, [1] here)",
        ),
    ];
    for (inter, item2id, items, expected) in games_cases {
        let tmp = tempfile::tempdir().unwrap();
        games(tmp.path(), inter, item2id, items);
        assert_contains(&import_error(tmp.path()), &[expected]);
    }
    // Identical repeats import as one.
    let tmp = tempfile::tempdir().unwrap();
    let first = GAMES_ITEMS.lines().next().unwrap();
    games(
        tmp.path(),
        inter,
        "B1\t0\nB2\t1\nB1\t0\n",
        &format!("{GAMES_ITEMS}{first}\n"),
    );
    let imported = import(tmp.path()).unwrap();
    assert_eq!(imported.items.len(), 2);
    assert_eq!(imported.items[0].title.as_deref(), Some("Red Racer"));

    let tmp = tempfile::tempdir().unwrap();
    recbole(
        tmp.path(),
        RECBOLE_INTER,
        &format!("{RECBOLE_ITEM}11\tHeat\t1996\tAction\n"),
    );
    assert_contains(
        &import_error(tmp.path()),
        &["m.item:5: field `item_id`: item 11 repeats line 3 with another release_year (\"1995\" there, \"1996\" here)"],
    );
    let tmp = tempfile::tempdir().unwrap();
    recbole(
        tmp.path(),
        RECBOLE_INTER,
        &format!("{RECBOLE_ITEM}11\tHeat\t1995\tAction\n"),
    );
    assert_eq!(import(tmp.path()).unwrap().items.len(), 3);

    let tmp = tempfile::tempdir().unwrap();
    write_files(
        tmp.path(),
        &[
            ("sequential_data.txt", "1 1 2 1\n"),
            (
                "id2title.json",
                "{\n\"1\": \"Red Racer\",\n\"2\": \"Blue Puzzle\",\n\"1\": \"Other Racer\"\n}\n",
            ),
            ("id2category.json", "{}"),
        ],
    );
    assert_contains(
        &import_error(tmp.path()),
        &["id2title.json:4: field `item id`: item 1 repeats line 2 with another value (\"Red Racer\" there, \"Other Racer\" here)"],
    );

    // Amazon 2018 metadata repeats ASINs in the release itself; the first line is kept and the
    // conflicting repeats are counted in a warning.
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!("{META}{}\n", r#"{"asin": "B1", "title": "Other Racer"}"#);
    write_files(tmp.path(), &[("r.json", REVIEWS), ("meta_r.json", &meta)]);
    let (imported, warnings) = with_warnings(|| import(tmp.path()));
    assert_eq!(
        imported.unwrap().items[0].title.as_deref(),
        Some("Red Racer")
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_contains(
        &warnings[0],
        &[
            "meta_r.json: 1 metadata line repeats an ASIN with other content; the first line of \
             each ASIN is kept (e.g. B1 on lines 1 and 3, title: \"Red Racer\" there, \"Other \
             Racer\" here)",
        ],
    );
}

/// Case 4: a P5 folder without id2category.json imported with no categories and no word (and
/// the manifest listed the missing file as a source).
#[test]
fn missing_optional_files_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(
        tmp.path(),
        &[
            ("sequential_data.txt", "1 1 2 1\n"),
            ("id2title.json", P5_TITLES),
        ],
    );
    let (imported, warnings) = with_warnings(|| import(tmp.path()));
    let imported = imported.unwrap();
    assert!(
        imported.paths.iter().all(|p| p.exists()),
        "{:?}",
        imported.paths
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_contains(
        &warnings[0],
        &["id2category.json: missing: items are imported without categories"],
    );

    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &[("m.inter", RECBOLE_INTER)]);
    let (imported, warnings) = with_warnings(|| import(tmp.path()));
    assert_eq!(imported.unwrap().items.len(), 3);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_contains(
        &warnings[0],
        &["m.item: missing: items are imported without titles"],
    );
}

/// Case 5: a missing title column was reported as "lower --k-core" (nothing survived the
/// untitled filter); the error must name the file, the column and the columns found.
#[test]
fn a_missing_title_column_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    recbole(
        tmp.path(),
        RECBOLE_INTER,
        "item_id:token\tclass:token_seq\n10\tComedy\n11\tAction\n12\tDrama\n",
    );
    assert_contains(
        &import_error(tmp.path()),
        &["m.item:1: no title column (one of movie_title, title, item_name, name); the header has item_id, class"],
    );
    let tmp = tempfile::tempdir().unwrap();
    recbole(
        tmp.path(),
        "user:token\titem_id:token\n1\t10\n",
        RECBOLE_ITEM,
    );
    assert_contains(
        &import_error(tmp.path()),
        &["m.inter:1: field `user_id`: no such column; the header has user, item_id"],
    );

    let tmp = tempfile::tempdir().unwrap();
    games(
        tmp.path(),
        r#"{"0": [0, 1]}"#,
        "B1\t0\nB2\t1\n",
        &GAMES_ITEMS.replace("\"title\"", "\"name\""),
    );
    assert_contains(
        &import_error(tmp.path()),
        &["items.jsonl: no line has a `title_raw` or `title` field (fields found: asin, brand, categories_raw, lcrec_item_id, name)"],
    );

    let tmp = tempfile::tempdir().unwrap();
    write_files(
        tmp.path(),
        &[
            ("r.json", REVIEWS),
            ("meta_r.json", &META.replace("\"title\"", "\"name\"")),
        ],
    );
    assert_contains(
        &import_error(tmp.path()),
        &["meta_r.json: no line has a `title` field (fields found: asin, category, name)"],
    );

    // When every item is untitled for another reason, preparation says so rather than
    // suggesting a lower k-core.
    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &[("m.inter", RECBOLE_INTER)]);
    let e = prepare(
        &ImportSource::Dir {
            dir: tmp.path().to_path_buf(),
            format: None,
        },
        &PrepareOptions {
            k_core: 1,
            candidate_sizes: vec![2],
            ..PrepareOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert_contains(&e, &["no imported item has a title", "--keep-untitled"]);
    assert!(!e.contains("--k-core"), "{e}");
    write_files(
        tmp.path(),
        &[("m.inter", RECBOLE_INTER.lines().next().unwrap())],
    );
    let e = prepare(
        &ImportSource::Dir {
            dir: tmp.path().to_path_buf(),
            format: None,
        },
        &PrepareOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert_contains(&e, &["the input has no interactions"]);
    assert!(!e.contains("--k-core"), "{e}");
}

/// Case 5: a UTF-8 byte-order mark at the start of a file became part of the first column name,
/// JSON value or id.
#[test]
fn a_utf8_bom_is_stripped() {
    let bom = |text: &str| format!("\u{feff}{text}");
    let tmp = tempfile::tempdir().unwrap();
    recbole(tmp.path(), RECBOLE_INTER, RECBOLE_ITEM);
    let clean = import(tmp.path()).unwrap();
    recbole(tmp.path(), &bom(RECBOLE_INTER), &bom(RECBOLE_ITEM));
    assert_eq!(import(tmp.path()).unwrap().items, clean.items);

    let tmp = tempfile::tempdir().unwrap();
    write_files(
        tmp.path(),
        &[
            ("sequential_data.txt", "1 1 2 1\n"),
            ("id2title.json", P5_TITLES),
            ("id2category.json", "{}"),
        ],
    );
    let clean = import(tmp.path()).unwrap();
    write_files(
        tmp.path(),
        &[
            ("sequential_data.txt", &bom("1 1 2 1\n")),
            ("id2title.json", &bom(P5_TITLES)),
            ("id2category.json", &bom("{}")),
        ],
    );
    let with_bom = import(tmp.path()).unwrap();
    assert_eq!((with_bom.users, with_bom.items), (clean.users, clean.items));

    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &[("r.json", REVIEWS), ("meta_r.json", META)]);
    let clean = import(tmp.path()).unwrap();
    write_files(
        tmp.path(),
        &[("r.json", &bom(REVIEWS)), ("meta_r.json", &bom(META))],
    );
    assert_eq!(import(tmp.path()).unwrap().items, clean.items);

    let tmp = tempfile::tempdir().unwrap();
    games(
        tmp.path(),
        &bom(r#"{"0": [0, 1]}"#),
        &bom("B1\t0\nB2\t1\n"),
        &bom(GAMES_ITEMS),
    );
    assert_eq!(import(tmp.path()).unwrap().items[0].original_id, "B1");
}

/// Case 6: a bundle file that exists but cannot be read made the layout "unknown".
#[test]
fn unreadable_files_are_not_an_unknown_layout() {
    let tmp = tempfile::tempdir().unwrap();
    games(
        tmp.path(),
        r#"{"0": [0, 1]}"#,
        "B1\t0\nB2\t1\n",
        GAMES_ITEMS,
    );
    std::fs::remove_file(tmp.path().join("items.jsonl")).unwrap();
    std::fs::create_dir(tmp.path().join("items.jsonl")).unwrap();
    let e = import_error(tmp.path());
    assert_contains(&e, &["items.jsonl: Is a directory (os error 21)"]);
    assert!(!e.contains("cannot tell the layout"), "{e}");

    // Tests run as root, where permissions do not stop reads; a socket cannot be opened by
    // anyone.
    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &[("id2title.json", P5_TITLES)]);
    let _socket =
        std::os::unix::net::UnixListener::bind(tmp.path().join("sequential_data.txt")).unwrap();
    let e = import_error(tmp.path());
    assert_contains(
        &e,
        &["sequential_data.txt: No such device or address (os error 6)"],
    );

    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &[("m.inter", RECBOLE_INTER)]);
    std::os::unix::fs::symlink(tmp.path().join("gone"), tmp.path().join("m.item")).unwrap();
    assert_contains(
        &import_error(tmp.path()),
        &["m.item: No such file or directory (os error 2)"],
    );

    // With nothing recognisable, the layout is still unknown.
    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &[("notes.txt", "hello")]);
    assert_contains(&import_error(tmp.path()), &["cannot tell the layout"]);
}
