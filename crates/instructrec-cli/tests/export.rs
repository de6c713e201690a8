//! `instructrec export`: the instruction files and stored candidate lists as JSON lines for
//! transformers' Seq2SeqTrainer, with a manifest of checksums; deterministic, and never over a
//! folder that is not an earlier export.

mod common;

use std::path::Path;

use common::{instructions_args, instructrec, prepared, run_err, run_ok, snapshot};
use sha2::{Digest, Sha256};

/// A prepared fixture and its instructions under `root`.
fn inputs(root: &Path) -> (String, String) {
    let data = prepared(root);
    let instructions = root.join("instructions");
    let cache = root.join("cache");
    run_ok(&mut instructrec(&instructions_args(
        data.to_str().unwrap(),
        instructions.to_str().unwrap(),
        cache.to_str().unwrap(),
    )));
    (
        data.to_str().unwrap().into(),
        instructions.to_str().unwrap().into(),
    )
}

fn export(data: &str, instructions: &str, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        "export",
        "--instructions",
        instructions,
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    instructrec(&args)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn an_export_holds_every_line_with_checksums_and_is_reproducible() {
    let root = tempfile::tempdir().unwrap();
    let (data, instructions) = inputs(root.path());
    let out = root.path().join("export");
    run_ok(&mut export(&data, &instructions, &out, &["--item-tokens"]));

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "instructrec-export/1");
    assert!(manifest["instructions"]["config"]["seed"].is_u64());
    assert!(manifest["dataset"]["source"]["format"].is_string());
    for split in ["train", "validation", "test"] {
        let name = format!("{split}.jsonl");
        let exported = lines(&out.join(&name));
        let source = lines(&Path::new(&instructions).join(&name));
        assert!(!exported.is_empty(), "{name}");
        assert_eq!(exported.len(), source.len(), "{name}");
        assert_eq!(manifest["files"][&name]["lines"], exported.len());
        for (e, s) in exported.iter().zip(&source) {
            assert!(!e["input"].as_str().unwrap().is_empty());
            assert!(!e["target"].as_str().unwrap().is_empty());
            assert_eq!(e["input"], s["instruction"]);
            assert_eq!(e["target"], s["target"]);
            for label in ["task", "preference", "intention", "strategy", "template"] {
                assert_eq!(e[label], s[label], "{label}");
            }
            assert!(e["user"].is_string() && e["target_item"].is_string());
        }
    }
    let candidates = lines(&out.join("candidates/test-3.jsonl"));
    assert!(!candidates.is_empty());
    assert!(candidates
        .iter()
        .all(|c| c["positive"].is_string() && c["negatives"].as_array().unwrap().len() == 2));
    let tokens: Vec<String> =
        serde_json::from_slice(&std::fs::read(out.join("added_tokens.json")).unwrap()).unwrap();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]));
    assert!(tokens.iter().all(|t| t.split_whitespace().count() >= 2));

    // The manifest names every file with its checksum, and nothing else is there.
    let files = snapshot(&out);
    let listed = manifest["files"].as_object().unwrap();
    assert_eq!(files.len(), listed.len() + 1);
    for (name, entry) in listed {
        let bytes = &files[Path::new(name)];
        assert_eq!(
            entry["sha256"],
            hex::encode(Sha256::digest(bytes)),
            "{name}"
        );
    }

    // Again into the same folder and into another one: the same bytes.
    run_ok(&mut export(&data, &instructions, &out, &["--item-tokens"]));
    assert_eq!(snapshot(&out), files);
    let again = root.path().join("again");
    run_ok(&mut export(
        &data,
        &instructions,
        &again,
        &["--item-tokens"],
    ));
    assert_eq!(snapshot(&again), files);
    // Without --item-tokens the earlier export's token list goes.
    run_ok(&mut export(&data, &instructions, &again, &[]));
    assert!(!again.join("added_tokens.json").exists());
    assert!(again.join("train.jsonl").exists());
}

#[test]
fn a_folder_that_is_not_an_export_is_refused_and_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let (data, instructions) = inputs(root.path());
    let out = root.path().join("mine");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let err = run_err(&mut export(&data, &instructions, &out, &[]));
    assert!(err.contains("is not an earlier export"), "{err}");
    assert_eq!(snapshot(&out).len(), 1);
    // Nor is a manifest of something else taken for one.
    std::fs::write(out.join("manifest.json"), r#"{"format": 1}"#).unwrap();
    run_err(&mut export(&data, &instructions, &out, &[]));
    assert_eq!(snapshot(&out).len(), 2);
}
