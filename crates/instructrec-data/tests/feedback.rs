//! Reading a serving feedback log back as interactions: which events count, unknown ids counted,
//! malformed lines refused with file:line: field.

use std::path::{Path, PathBuf};

use instructrec_data::import::{add_feedback, FeedbackCounts};
use instructrec_data::{prepare, ImportSource, PrepareOptions};

fn amazon2018() -> ImportSource {
    ImportSource::Dir {
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amazon2018"),
        format: None,
    }
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("feedback.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn liked_and_bought_are_added_and_unknown_ids_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(
        dir.path(),
        concat!(
            r#"{"timestamp": 500, "user": "AUSER4", "item": "B0000000A1", "event": "bought"}"#,
            "\n\n",
            r#"{"timestamp": 501, "user": "AUSER4", "item": "B0000000B2", "event": "liked", "session": "s1"}"#,
            "\n",
            r#"{"timestamp": 502, "user": "AUSER4", "item": "B0000000E5", "event": "clicked"}"#,
            "\n",
            r#"{"timestamp": 503, "user": "NOBODY", "item": "B0000000E5", "event": "bought"}"#,
            "\n",
            r#"{"timestamp": 504, "user": "AUSER1", "item": "NO-SUCH", "event": "liked"}"#,
            "\n",
        ),
    );
    let mut imported = amazon2018().import().unwrap();
    let before = imported.interactions();
    let counts = add_feedback(&mut imported, &log).unwrap();
    assert_eq!(
        counts,
        FeedbackCounts {
            events: 5,
            added: 2,
            clicks: 1,
            unknown_users: 1,
            unknown_items: 1,
        }
    );
    assert_eq!(imported.interactions(), before + 2);
    assert_eq!(imported.paths.last(), Some(&log));

    // AUSER4 had 2 interactions and was dropped; with the feedback it has 4 and is kept.
    let options = PrepareOptions {
        k_core: 1,
        candidate_sizes: vec![2],
        ..PrepareOptions::default()
    };
    let (plain, _) = prepare(&amazon2018(), &options).unwrap();
    let (p, report) = prepare(&amazon2018().with_feedback(log.clone()), &options).unwrap();
    assert_eq!(report.imported.interactions, 14 + 2);
    assert_eq!(p.dataset.users.len(), plain.dataset.users.len() + 1);
    let u4 = p
        .dataset
        .users
        .iter()
        .find(|u| u.original_id == "AUSER4")
        .unwrap();
    let last = p.dataset.sequences[u4.id.index()].last().unwrap();
    assert_eq!(last.timestamp, Some(501));
    assert_eq!(
        p.manifest.source.paths.last(),
        Some(&log.display().to_string())
    );
}

#[test]
fn malformed_lines_are_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"{"timestamp": 1, "user": "AUSER1", "item": "B0000000A1", "event": "liked"}"#;
    let cases = [
        (
            r#"{"timestamp": 1, "user": "AUSER1", "item": "B0000000A1", "event": "loved"}"#,
            "feedback.jsonl:2: field `event`",
        ),
        (
            r#"{"timestamp": "x", "user": "AUSER1", "item": "B0000000A1", "event": "liked"}"#,
            "feedback.jsonl:2: field `timestamp`",
        ),
        (
            r#"{"timestamp": 1, "item": "B0000000A1", "event": "liked"}"#,
            "feedback.jsonl:2: field `user`: missing",
        ),
        (
            r#"{"timestamp": 1, "user": "AUSER1", "item": 7, "event": "liked"}"#,
            "feedback.jsonl:2: field `item`",
        ),
        (
            r#"{"timestamp": 1, "user": "AUSER1", "#,
            "feedback.jsonl:2: malformed JSON",
        ),
        ("[1, 2]", "feedback.jsonl:2: expected a JSON object"),
    ];
    for (line, expected) in cases {
        let log = write(dir.path(), &format!("{ok}\n{line}\n"));
        let e = prepare(
            &amazon2018().with_feedback(log),
            &PrepareOptions {
                k_core: 1,
                candidate_sizes: vec![2],
                ..PrepareOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(expected), "{line}: `{e}` lacks `{expected}`");
    }
}
