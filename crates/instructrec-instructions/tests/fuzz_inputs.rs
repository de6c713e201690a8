//! Property tests of the two parsers of outside input here: the template file (TOML) and the
//! instruction JSON-lines reader. Valid files are corrupted (see `support/corrupt.rs` in
//! instructrec-data) or replaced by random bytes; the result must be the parsed value or an
//! error naming the file (and, for JSON lines, the line), never a panic.

use std::path::Path;

use instructrec_instructions::{read_jsonl, TemplateLibrary};
use proptest::prelude::*;

#[path = "../../instructrec-data/tests/support/corrupt.rs"]
mod corrupt;
use corrupt::{corrupt, corruption};

const TEMPLATES: &str = include_str!("../templates/templates.toml");

/// One line of each preference and intention kind, so every optional field is exercised.
const INSTRUCTIONS: &str = r#"{"split": "train", "instruction": "After Red Racer, pick one of: Blue Puzzle, Green Blocks", "target": "Blue Puzzle", "template": "p1-rerank-a", "preference": "P1", "intention": "I0", "task": "T3", "strategy": "plain", "target_kind": "item_title", "user": 0, "target_item": 1, "candidates": [1, 2], "history": [0]}
{"split": "validation", "instruction": "I like racing; I want something quick. Yes or no: Red Racer?", "target": "yes", "template": "p2-i1-point", "preference": "P2", "intention": "I1", "task": "T0", "strategy": "plain", "target_kind": "yes_no", "user": 1, "target_item": 0, "candidates": [0], "candidate_size": 1, "explicit_preference": "racing", "vague_intention": "something quick", "context": "on a train"}
{"split": "test", "instruction": "Find Toys > Blocks", "target": "Green Blocks", "template": "i2-match", "preference": "P0", "intention": "I2", "task": "T2", "strategy": "plain", "target_kind": "item_title", "user": 2, "target_item": 2, "specific_intention": "Toys > Blocks"}
"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn the_uncorrupted_inputs_parse() {
    let dir = tempfile::tempdir().unwrap();
    let templates = write(dir.path(), "templates.toml", TEMPLATES.as_bytes());
    assert!(!TemplateLibrary::from_path(&templates)
        .unwrap()
        .templates()
        .is_empty());
    let lines = write(dir.path(), "train.jsonl", INSTRUCTIONS.as_bytes());
    assert_eq!(read_jsonl(&lines).unwrap().len(), 3);
}

/// Finding: lines that were not UTF-8 were reported as "stream did not contain valid UTF-8"
/// with the file but without the line.
#[test]
fn invalid_utf8_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = INSTRUCTIONS.as_bytes().to_vec();
    let second_line = INSTRUCTIONS.find('\n').unwrap() + 10;
    bytes[second_line] = 0xff;
    let path = write(dir.path(), "train.jsonl", &bytes);
    let e = read_jsonl(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2: ", path.display())) && e.contains("UTF-8"),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_template_files_give_errors_naming_the_file(how in corruption()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("templates.toml");
        if let Some(bytes) = corrupt(TEMPLATES.as_bytes(), &how) {
            std::fs::write(&path, bytes).unwrap();
        }
        if let Err(e) = TemplateLibrary::from_path(&path) {
            let message = e.to_string();
            prop_assert!(message.starts_with(&path.display().to_string()), "{message}");
        }
    }

    #[test]
    fn corrupted_instruction_lines_give_errors_naming_file_and_line(how in corruption()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        if let Some(bytes) = corrupt(INSTRUCTIONS.as_bytes(), &how) {
            std::fs::write(&path, bytes).unwrap();
        }
        if let Err(e) = read_jsonl(&path) {
            let message = e.to_string();
            let file = path.display().to_string();
            // A missing file has no line; every other error points at one.
            let names_line = message
                .strip_prefix(&format!("{file}:"))
                .and_then(|rest| rest.split(':').next())
                .is_some_and(|n| n.parse::<usize>().is_ok());
            prop_assert!(
                names_line || (!path.exists() && message.starts_with(&file)),
                "{message}"
            );
        }
    }

    /// One template whose every field is drawn from valid values and junk, and whose text is
    /// random words, braces and slot names: this reaches the slot and aspect checks.
    #[test]
    fn generated_templates_never_panic(
        aspects in proptest::collection::vec(
            prop::sample::select(vec![
                "T0", "T3", "rerank", "matching", "P1", "implicit", "none", "I1", "vague",
                "plain", "reversed", "chain", "item_title", "yes_no", "previous_item", "", "x",
            ]),
            5,
        ),
        slots in proptest::collection::vec(
            prop::sample::select(vec!["history", "candidates", "item", "context", "bogus", ""]),
            0..4,
        ),
        text in "([{}]|\\{history\\}|\\{candidates\\}|\\{item|[a-z ]{1,8}|\\PC){0,30}",
        eval in any::<bool>(),
    ) {
        let mut template = toml::Table::new();
        template.insert("id".into(), "fuzz".into());
        for (key, value) in ["task", "preference", "intention", "strategy", "target"]
            .into_iter()
            .zip(aspects)
        {
            template.insert(key.into(), value.into());
        }
        template.insert("eval".into(), eval.into());
        template.insert("slots".into(), slots.into());
        template.insert("text".into(), text.into());
        let mut file = toml::Table::new();
        file.insert("template".into(), vec![toml::Value::Table(template)].into());
        let text = toml::to_string(&file).unwrap();
        if let Err(e) = TemplateLibrary::parse(&text, "fuzz.toml") {
            prop_assert!(e.to_string().starts_with("fuzz.toml: "), "{e}");
        }
    }
}
