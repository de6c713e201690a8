//! Property test of the instruction-line reader that training and validation use: a valid
//! JSON-lines file corrupted (see `support/corrupt.rs` in instructrec-data) or replaced by random
//! bytes must read or fail with an error naming the file and the line, never panic.

use instructrec_instructions::{read_lines, LineFilter, PreferenceKind, TaskForm};
use proptest::prelude::*;

#[path = "../../instructrec-data/tests/support/corrupt.rs"]
mod corrupt;
use corrupt::{corrupt, corruption};

const LINES: &str = r#"{"instruction": "After Red Racer, pick one: Blue Puzzle, Green Blocks", "target": "Blue Puzzle", "preference": "P1", "task": "T3", "candidates": [4, 2], "target_item": 4}
{"instruction": "I like racing. Yes or no: Red Racer?", "target": "yes", "preference": "P2", "user": 3}
{"instruction": "Find Toys > Blocks", "target": "Green Blocks"}
"#;

fn only_p1() -> LineFilter {
    LineFilter {
        preferences: vec![PreferenceKind::Implicit],
        ..LineFilter::default()
    }
}

#[test]
fn the_uncorrupted_file_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(&path, LINES).unwrap();
    let all = read_lines(&path, &LineFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].labels.preference, None);
    let p1 = read_lines(&path, &only_p1()).unwrap();
    assert_eq!(p1.len(), 1);
    assert_eq!(p1[0].labels.task, Some(TaskForm::Rerank));
    assert_eq!(p1[0].candidates.len(), 2);
    assert_eq!(p1[0].target_item.map(|i| i.0), Some(4));
}

/// Finding: a line that was not UTF-8 was reported without its line number.
#[test]
fn invalid_utf8_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    let mut bytes = LINES.as_bytes().to_vec();
    bytes[LINES.find('\n').unwrap() + 10] = 0xff;
    std::fs::write(&path, bytes).unwrap();
    let e = read_lines(&path, &LineFilter::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}:2: ", path.display())) && e.contains("UTF-8"),
        "{e}"
    );
}

#[test]
fn a_kept_line_without_target_or_with_an_unknown_label_names_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(
        &path,
        "{\"instruction\":\"a\",\"target\":\"b\",\"preference\":\"P1\"}\n{\"instruction\":\"a\",\"preference\":\"P2\"}\n",
    )
    .unwrap();
    let e = read_lines(&path, &LineFilter::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train.jsonl:2:") && e.contains("`target`"),
        "{e}"
    );
    // A line the filter drops is not checked.
    assert_eq!(read_lines(&path, &only_p1()).unwrap().len(), 1);
    std::fs::write(
        &path,
        "{\"instruction\":\"a\",\"target\":\"b\",\"task\":\"T9\"}\n",
    )
    .unwrap();
    let e = read_lines(&path, &LineFilter::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.jsonl:1:") && e.contains("T9"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_lines_give_errors_naming_the_file(
        how in corruption(),
        filtered in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        if let Some(bytes) = corrupt(LINES.as_bytes(), &how) {
            std::fs::write(&path, bytes).unwrap();
        }
        let filter = if filtered { only_p1() } else { LineFilter::default() };
        if let Err(e) = read_lines(&path, &filter) {
            let message = e.to_string();
            prop_assert!(message.starts_with(&path.display().to_string()), "{message}");
        }
    }
}
