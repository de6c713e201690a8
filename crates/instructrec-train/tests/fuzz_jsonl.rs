//! Property test of the trainer's instruction reader: a valid JSON-lines file corrupted (see
//! `support/corrupt.rs` in instructrec-data) or replaced by random bytes must read or fail with
//! an error naming the file and the line, never panic.

use instructrec_train::data::{read_jsonl, LineFilter};
use proptest::prelude::*;

#[path = "../../instructrec-data/tests/support/corrupt.rs"]
mod corrupt;
use corrupt::{corrupt, corruption};

const LINES: &str = r#"{"instruction": "After Red Racer, pick one: Blue Puzzle, Green Blocks", "target": "Blue Puzzle", "preference": "P1"}
{"instruction": "I like racing. Yes or no: Red Racer?", "target": "yes", "preference": "P2", "user": 3}
{"instruction": "Find Toys > Blocks", "target": "Green Blocks"}
"#;

#[test]
fn the_uncorrupted_file_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(&path, LINES).unwrap();
    assert_eq!(read_jsonl(&path, &LineFilter::default()).unwrap().len(), 3);
    assert_eq!(
        read_jsonl(
            &path,
            &LineFilter {
                preferences: vec!["P1".to_string()],
                ..LineFilter::default()
            }
        )
        .unwrap()
        .len(),
        1
    );
}

/// Finding: a line that was not UTF-8 was reported without its line number.
#[test]
fn invalid_utf8_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    let mut bytes = LINES.as_bytes().to_vec();
    bytes[LINES.find('\n').unwrap() + 10] = 0xff;
    std::fs::write(&path, bytes).unwrap();
    let e = read_jsonl(&path, &LineFilter::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}, line 2: ", path.display())) && e.contains("UTF-8"),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_lines_give_errors_naming_the_file(
        how in corruption(),
        only_p1 in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        if let Some(bytes) = corrupt(LINES.as_bytes(), &how) {
            std::fs::write(&path, bytes).unwrap();
        }
        let preferences = if only_p1 { vec!["P1".to_string()] } else { Vec::new() };
        if let Err(e) = read_jsonl(&path, &LineFilter { preferences: preferences.clone(), ..LineFilter::default() }) {
            let message = e.to_string();
            prop_assert!(message.starts_with(&path.display().to_string()), "{message}");
        }
    }
}
