//! `eval --candidates`: a file of lists in the stored lists' shape, in raw ids, is scored
//! exactly as the stored lists are; bad lines are dropped by reason or, when malformed, stop the
//! read with their line and field.

mod common;

use std::path::Path;

use common::{instructions_args, instructrec, prepared, run_err, run_ok};
use instructrec_data::{Fold, Prepared};

/// `eval --protocol sequential` of popularity and BM25 on `data`, writing `out`.
fn eval_command(data: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        "eval",
        "--protocol",
        "sequential",
        "--data",
        data.to_str().unwrap(),
        "--models",
        "popularity,bm25",
        "--no-full-ranking",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    instructrec(&args)
}

fn eval(data: &Path, out: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let output = run_ok(&mut eval_command(data, out, extra));
    let report = serde_json::from_slice(&std::fs::read(out.with_extension("json")).unwrap());
    (
        report.unwrap(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

fn metrics(report: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    report["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].to_string(), m["results"][0]["metrics"].clone()))
        .collect()
}

#[test]
fn a_file_of_the_stored_lists_in_raw_ids_scores_as_the_stored_lists() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let p = Prepared::load(&data).unwrap();
    let sets = p.candidates(Fold::Test, 3).unwrap();
    let user = |u: instructrec_data::UserId| p.dataset.users[u.index()].original_id.clone();
    let item = |i: &instructrec_data::ItemId| p.dataset.items[i.index()].original_id.clone();
    let mut lines: Vec<String> = sets
        .iter()
        .map(|s| {
            serde_json::json!({
                "user": user(s.user),
                "positive": item(&s.positive),
                "negatives": s.negatives.iter().map(item).collect::<Vec<_>>(),
            })
            .to_string()
        })
        .collect();
    let file = dir.path().join("lists.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let (stored, _) = eval(&data, &dir.path().join("stored"), &[]);
    let (read, _) = eval(
        &data,
        &dir.path().join("read"),
        &["--candidates", file.to_str().unwrap()],
    );
    assert_eq!(metrics(&stored), metrics(&read));
    let info = &read["candidates"][0];
    assert_eq!(info["cases"].as_u64().unwrap() as usize, sets.len());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        info["checksum"].as_str().unwrap(),
        sha256_hex(&bytes),
        "the report records the file's checksum"
    );

    // Lines that cannot be scored are dropped and counted; the rest are still scored.
    let first = &sets[0];
    lines.push(
        serde_json::json!({"user": "nobody", "positive": item(&first.positive), "negatives": []})
            .to_string(),
    );
    lines.push(
        serde_json::json!({
            "user": user(first.user),
            "positive": item(&first.positive),
            "negatives": [item(&first.positive), item(&first.negatives[0])],
        })
        .to_string(),
    );
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (_, log) = eval(
        &data,
        &dir.path().join("dropped"),
        &["--candidates", file.to_str().unwrap()],
    );
    assert!(
        log.contains(&format!("kept {}", sets.len()))
            && log.contains("unknown user or positive")
            && log.contains("positive repeated among the negatives"),
        "{log}"
    );

    // A malformed line stops the read, naming the line and the field.
    std::fs::write(&file, format!("{}\n{{\"user\": \"x\"}}\n", lines[0])).unwrap();
    let err = run_err(&mut eval_command(
        &data,
        &dir.path().join("bad"),
        &["--candidates", file.to_str().unwrap()],
    ));
    assert!(
        err.contains("lists.jsonl:2") && err.contains("positive"),
        "{err}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn an_eval_that_fails_part_way_leaves_a_report_marked_partial_and_one_report_has_one_writer() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let out = dir.path().join("report");
    // The baselines are evaluated and written before the instruction model fails to load.
    let not_a_model = dir.path().join("not-a-model");
    std::fs::create_dir_all(&not_a_model).unwrap();
    std::fs::write(not_a_model.join("config.json"), "{}").unwrap();
    let instructions = dir.path().join("instructions");
    let cache = dir.path().join("cache");
    run_ok(&mut instructrec(&instructions_args(
        data.to_str().unwrap(),
        instructions.to_str().unwrap(),
        cache.to_str().unwrap(),
    )));
    let stderr = run_err(&mut eval_command(
        &data,
        &out,
        &[
            "--instructrec",
            not_a_model.to_str().unwrap(),
            "--instructions",
            instructions.to_str().unwrap(),
        ],
    ));
    assert!(stderr.contains("not-a-model"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(report["partial"], true, "{report}");
    assert_eq!(metrics(&report).len(), 2);
    let md = std::fs::read_to_string(out.with_extension("md")).unwrap();
    assert!(md.contains("**Partial report:**"), "{md}");

    // Another evaluation writing the same report is refused at once.
    let held = instructrec_data::OutputLock::acquire(&out).unwrap();
    let stderr = run_err(&mut eval_command(&data, &out, &[]));
    assert!(
        stderr.contains("another instructrec run is writing it"),
        "{stderr}"
    );
    drop(held);

    // A run that finishes leaves a whole report, without the mark.
    let (report, _) = eval(&data, &out, &[]);
    assert!(report.get("partial").is_none(), "{report}");
    let md = std::fs::read_to_string(out.with_extension("md")).unwrap();
    assert!(!md.contains("Partial report"), "{md}");
}
