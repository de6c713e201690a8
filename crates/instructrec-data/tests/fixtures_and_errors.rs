//! Importers and the prepared store on tiny hand-written inputs: the Amazon 2018 fixture (plain
//! and gzip), broken inputs of every kind, and atomic saving.

use std::path::{Path, PathBuf};

use instructrec_data::{
    prepare, DataError, Fold, ImportSource, ItemId, PrepareOptions, Prepared, UserId,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// k = 1 keeps every item with an interaction; users still need 3. Lists of 3 = 1 + 2 negatives.
fn small_options() -> PrepareOptions {
    PrepareOptions {
        k_core: 1,
        candidate_sizes: vec![3],
        ..PrepareOptions::default()
    }
}

fn amazon2018_plain() -> ImportSource {
    ImportSource::Dir {
        dir: fixture("amazon2018"),
        format: None,
    }
}

fn error_of(source: &ImportSource) -> String {
    prepare(source, &small_options()).unwrap_err().to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn amazon2018_orders_dedupes_and_keeps_text() {
    let (p, report) = prepare(&amazon2018_plain(), &small_options()).unwrap();
    assert_eq!(p.manifest.source.format, "amazon2018");
    assert_eq!(
        (
            report.imported.users,
            report.imported.items,
            report.imported.interactions
        ),
        (4, 7, 14)
    );
    let dropped: Vec<(usize, usize, usize)> = report
        .dropped
        .iter()
        .map(|d| (d.users, d.items, d.interactions))
        .collect();
    // repeated AUSER1/A1; untitled G7 (no metadata); AUSER4 has only 2 interactions.
    assert_eq!(dropped, vec![(0, 0, 1), (0, 1, 1), (1, 0, 2)]);
    assert_eq!((p.dataset.users.len(), p.dataset.items.len()), (3, 6));

    let asin = |id: ItemId| p.dataset.items[id.index()].original_id.as_str();
    let u1: Vec<(&str, Option<i64>)> = p.dataset.sequences[0]
        .iter()
        .map(|i| (asin(i.item), i.timestamp))
        .collect();
    // Sorted by time; C3 and D4 tie at 200 and keep file order; the repeated A1 (t=400) is gone.
    assert_eq!(
        u1,
        vec![
            ("B0000000B2", Some(100)),
            ("B0000000C3", Some(200)),
            ("B0000000D4", Some(200)),
            ("B0000000A1", Some(300))
        ]
    );
    let last = &p.dataset.sequences[0][3];
    assert_eq!(last.rating, Some(5.0));
    let review = last.review.as_ref().unwrap();
    assert_eq!(
        review.text.as_deref(),
        Some("Great co-op game for the two of us.")
    );
    assert_eq!(review.summary.as_deref(), Some("Fun"));
    assert_eq!(
        p.dataset.sequences[0][1]
            .review
            .as_ref()
            .unwrap()
            .text
            .as_deref(),
        Some("The stick drifts & squeaks.")
    );

    let a1 = &p.dataset.items[0];
    assert_eq!(a1.title, "Mario & Luigi: Superstar Saga");
    assert_eq!(
        a1.categories,
        [
            "Video Games",
            "Retro Gaming & Microconsoles",
            "Game Boy Advance",
            "Games"
        ]
    );
    assert_eq!(
        a1.features,
        [
            "Turn-based battles",
            "Two heroes on one adventure.",
            "Officially Licensed"
        ]
    );
    assert_eq!(a1.description.as_deref(), Some("A role-playing game."));
    assert_eq!(a1.brand.as_deref(), Some("Nintendo"));
    let b2 = &p.dataset.items[1];
    assert_eq!(b2.description.as_deref(), Some("Adventure \"classic\"."));
    let c3 = &p.dataset.items[2];
    assert_eq!(c3.brand, None);
    let d4 = &p.dataset.items[3];
    assert_eq!(d4.features, ["14 Buttons"]);

    // Leave-one-out and the history accessors.
    assert_eq!(asin(p.held_out(UserId(0), Fold::Test)), "B0000000A1");
    assert_eq!(asin(p.held_out(UserId(0), Fold::Validation)), "B0000000D4");
    assert_eq!(p.train_sequence(UserId(0)).len(), 2);
    let capped = Prepared {
        manifest: instructrec_data::Manifest {
            options: PrepareOptions {
                history_cap: 1,
                ..p.manifest.options.clone()
            },
            ..p.manifest.clone()
        },
        ..p.clone()
    };
    let recent: Vec<&str> = capped
        .recent_history(UserId(0), Fold::Test)
        .iter()
        .map(|i| asin(i.item))
        .collect();
    assert_eq!(recent, ["B0000000D4"]);

    // User 1 saw 4 of 6 items: its two negatives are exactly the other two.
    let sets = p.candidates(Fold::Test, 3).unwrap();
    let mut negatives: Vec<&str> = sets[0].negatives.iter().map(|&i| asin(i)).collect();
    negatives.sort();
    assert_eq!(negatives, ["B0000000E5", "B0000000F6"]);
}

#[test]
fn gzip_and_explicit_files_read_the_same_as_plain() {
    let (plain, _) = prepare(&amazon2018_plain(), &small_options()).unwrap();
    let dir = fixture("amazon2018-gz");
    let (gz, _) = prepare(
        &ImportSource::Dir {
            dir: dir.clone(),
            format: None,
        },
        &small_options(),
    )
    .unwrap();
    assert_eq!(plain.dataset, gz.dataset);
    assert_eq!(plain.candidates, gz.candidates);
    let explicit = ImportSource::Amazon2018 {
        reviews: dir.join("Toy_Games.json.gz"),
        meta: dir.join("meta_Toy_Games.json.gz"),
    };
    assert_eq!(
        prepare(&explicit, &small_options()).unwrap().0.dataset,
        plain.dataset
    );
}

#[test]
fn keep_untitled_titles_items_by_their_id() {
    let options = PrepareOptions {
        keep_untitled: true,
        ..small_options()
    };
    let (p, _) = prepare(&amazon2018_plain(), &options).unwrap();
    assert_eq!(p.dataset.items.len(), 7);
    assert_eq!(p.dataset.items[6].title, "B0000000G7");
}

#[test]
fn truncated_gzip_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("amazon2018-gz");
    let bytes = std::fs::read(src.join("Toy_Games.json.gz")).unwrap();
    let reviews = tmp.path().join("Toy_Games.json.gz");
    std::fs::write(&reviews, &bytes[..bytes.len() / 2]).unwrap();
    let source = ImportSource::Amazon2018 {
        reviews,
        meta: src.join("meta_Toy_Games.json.gz"),
    };
    let e = error_of(&source);
    // Streamed JSON lines: the error names the line where the stream broke off.
    assert!(e.contains("Toy_Games.json.gz:"), "{e}");
    assert!(e.contains(": gzip stream is truncated or corrupt"), "{e}");

    // Whole JSON documents (P5 files) are gzip-detected by content, not by name.
    let p5 = tmp.path().join("p5");
    std::fs::create_dir_all(&p5).unwrap();
    write(&p5, "sequential_data.txt", "1 0 1 0\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gz,
        "{\"0\": \"A\", \"1\": \"B\"}".repeat(50).as_bytes(),
    )
    .unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(p5.join("id2title.json"), &gz[..gz.len() - 6]).unwrap();
    let e = error_of(&ImportSource::Dir {
        dir: p5,
        format: None,
    });
    assert!(
        e.contains("id2title.json: gzip stream is truncated or corrupt"),
        "{e}"
    );
}

#[test]
fn malformed_json_line_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("amazon2018/Toy_Games.json")).unwrap();
    let broken = text.replacen("\"AUSER2\", \"asin\"", "\"AUSER2\" \"asin\"", 1);
    let reviews = write(tmp.path(), "reviews.json", &broken);
    let meta = fixture("amazon2018/meta_Toy_Games.json");
    let e = error_of(&ImportSource::Amazon2018 { reviews, meta });
    assert!(e.contains("reviews.json:3: malformed JSON"), "{e}");
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = fixture("amazon2018/meta_Toy_Games.json");
    let reviews = write(tmp.path(), "r.json", "{\"reviewerID\": \"U\", \"asin\": \"B0000000A1\", \"unixReviewTime\": 1}\n{\"reviewerID\": \"U\", \"unixReviewTime\": 2}\n");
    let e = error_of(&ImportSource::Amazon2018 {
        reviews,
        meta: meta.clone(),
    });
    assert!(e.contains("r.json:2: field `asin`: missing"), "{e}");
    let reviews = write(
        tmp.path(),
        "r.json",
        "{\"reviewerID\": \"U\", \"asin\": \"B0000000A1\", \"unixReviewTime\": \"yesterday\"}\n",
    );
    let e = error_of(&ImportSource::Amazon2018 { reviews, meta });
    assert!(
        e.contains("r.json:1: field `unixReviewTime`: expected an integer, got \"yesterday\""),
        "{e}"
    );
}

/// A tiny amazon-games bundle: 2 items, 1 user with 3 interactions.
fn games_bundle(dir: &Path, item2id: &str, inter: &str) {
    std::fs::create_dir_all(dir.join("raw")).unwrap();
    write(&dir.join("raw"), "Tiny.item2id", item2id);
    write(&dir.join("raw"), "Tiny.user2id", "AUSER\t0\n");
    write(&dir.join("raw"), "Tiny.inter.json", inter);
    write(
        dir,
        "items.jsonl",
        "{\"lcrec_item_id\": 0, \"asin\": \"B1\", \"title\": \"One\", \"categories_raw\": [\"Video Games\"], \"brand\": \"X\"}\n",
    );
}

#[test]
fn amazon_games_bad_ids_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let source = ImportSource::Dir {
        dir: dir.clone(),
        format: None,
    };

    games_bundle(&dir, "B1\t0\nB2\tx\n", "{\"0\": [0, 1, 0]}");
    let e = error_of(&source);
    assert!(
        e.contains("Tiny.item2id:2: field `item id`: expected an integer, got \"x\""),
        "{e}"
    );

    games_bundle(&dir, "B1\t0\nB2\t1\n", "{\"0\": [0, 1, 7]}");
    let e = error_of(&source);
    assert!(
        e.contains("Tiny.inter.json:1: field `item id`: user 0: unknown item id 7"),
        "{e}"
    );

    games_bundle(&dir, "B1\t0\nB2\t1\n", "{\"0\": [0, 1],\n \"5\": [1]}");
    let e = error_of(&source);
    assert!(
        e.contains("Tiny.inter.json:2: field `user id`: unknown user id \"5\""),
        "{e}"
    );

    games_bundle(&dir, "B1\t0\nB2\t1\n", "{\"0\": [0, 1,");
    let e = error_of(&source);
    assert!(e.contains("Tiny.inter.json:1: malformed JSON"), "{e}");
}

#[test]
fn p5_and_recbole_unknown_ids_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let p5 = tmp.path().join("p5");
    std::fs::create_dir_all(&p5).unwrap();
    write(&p5, "sequential_data.txt", "1 0 1 0\n2 1 0 9\n");
    write(&p5, "id2title.json", "{\"0\": \"A\", \"1\": \"B\"}");
    write(&p5, "id2category.json", "{\"0\": [[\"Toys & Games\"]]}");
    let e = error_of(&ImportSource::Dir {
        dir: p5,
        format: None,
    });
    assert!(
        e.contains("sequential_data.txt:2: field `item id`: unknown item id \"9\""),
        "{e}"
    );

    let rb = tmp.path().join("rb");
    std::fs::create_dir_all(&rb).unwrap();
    write(
        &rb,
        "x.item",
        "item_id:token\tmovie_title:token_seq\n1\tA\n",
    );
    write(
        &rb,
        "x.inter",
        "user_id:token\titem_id:token\trating:float\n1\t1\t5\n1\t2\t4\n",
    );
    let e = error_of(&ImportSource::Dir {
        dir: rb.clone(),
        format: Some(instructrec_data::Format::RecBole),
    });
    assert!(
        e.contains("x.inter:3: field `item_id`: unknown item id \"2\""),
        "{e}"
    );
    write(
        &rb,
        "x.inter",
        "user_id:token\titem_id:token\trating:float\n1\t1\tfive\n",
    );
    let e = error_of(&ImportSource::Dir {
        dir: rb,
        format: None,
    });
    assert!(
        e.contains("x.inter:2: field `rating`: expected a number, got \"five\""),
        "{e}"
    );
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn failed_prepare_leaves_output_untouched_and_no_temp_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prepared");
    let (p, _) = prepare(&amazon2018_plain(), &small_options()).unwrap();
    p.save(&out).unwrap();
    let before = snapshot(&out);

    // A broken input fails before anything is written.
    let broken = ImportSource::Amazon2018 {
        reviews: fixture("amazon2018/nope.json"),
        meta: fixture("amazon2018/meta_Toy_Games.json"),
    };
    assert!(matches!(
        prepare(&broken, &small_options()),
        Err(DataError::Io { .. })
    ));
    assert_eq!(snapshot(&out), before);

    // Refusing to replace a directory that is not a prepared dataset leaves it and its parent as
    // they were.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    write(&foreign, "notes.txt", "mine");
    let e = p.save(&foreign).unwrap_err().to_string();
    assert!(e.contains("refusing to replace"), "{e}");
    assert_eq!(dir_entries(&foreign), ["notes.txt"]);

    // Replacing an old dataset leaves exactly the new one and no temporary siblings.
    let options = PrepareOptions {
        seed: 7,
        ..small_options()
    };
    let (q, _) = prepare(&amazon2018_plain(), &options).unwrap();
    q.save(&out).unwrap();
    assert_eq!(dir_entries(tmp.path()), ["foreign", "prepared"]);
    assert_eq!(Prepared::load(&out).unwrap(), q);
}

#[test]
fn load_round_trips_and_names_a_tampered_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    let (p, _) = prepare(&amazon2018_plain(), &small_options()).unwrap();
    p.save(&out).unwrap();
    assert_eq!(Prepared::load(&out).unwrap(), p);

    let file = out.join("candidates/test-3.jsonl");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] = b' ';
    std::fs::write(&file, bytes).unwrap();
    let e = Prepared::load(&out).unwrap_err().to_string();
    assert!(e.contains("candidates/test-3.jsonl: SHA-256"), "{e}");
}

#[test]
fn impossible_options_are_refused() {
    let options = PrepareOptions {
        k_core: 2,
        ..small_options()
    };
    let e = prepare(&amazon2018_plain(), &options)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no user is left after filtering"), "{e}");

    let options = PrepareOptions {
        candidate_sizes: vec![10],
        ..small_options()
    };
    let e = prepare(&amazon2018_plain(), &options)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot draw 9 negatives"), "{e}");
    // The counts before and after each filter say whether the data or a filter is short.
    for part in ["imported ", "k-core (k=1)", "left ", "--k-core"] {
        assert!(e.contains(part), "{part}: {e}");
    }
}
