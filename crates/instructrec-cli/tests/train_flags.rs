//! `train` and `pretrain` flags that are refused before anything runs: labels outside the
//! instruction files' vocabulary and durations humantime cannot read, each error naming the flag
//! and what it accepts.

mod common;

use common::{instructrec, run_err, train_args, write_instructions};

fn train_with(flag: &str, value: &str) -> String {
    run_err(&mut instructrec(&[
        "train", "--train", "t.jsonl", "--out", "o", flag, value,
    ]))
}

#[test]
fn unknown_labels_are_refused_with_the_allowed_ones() {
    for (flag, value, allowed) in [
        ("--preference", "P7", "P0, P1, P2"),
        ("--intention", "I1,vague", "I0, I1, I2"),
        ("--without-intention", "I3", "I0, I1, I2"),
        ("--task", "T3,rerank", "T0, T1, T2, T3"),
        ("--strategy", "Plain", "plain, reversed, tied, chain"),
    ] {
        let stderr = train_with(flag, value);
        assert!(
            stderr.contains(flag) && stderr.contains(allowed),
            "{flag} {value}: {stderr}"
        );
    }
}

#[test]
fn a_time_budget_humantime_cannot_read_names_the_flag() {
    for bad in ["5x", "soon", "90"] {
        let stderr = train_with("--time-budget", bad);
        assert!(
            stderr.contains("--time-budget") && stderr.contains("1h 30m"),
            "{bad}: {stderr}"
        );
    }
    let stderr = run_err(&mut instructrec(&[
        "pretrain",
        "--data",
        "d",
        "--out",
        "o",
        "--time-budget",
        "90",
    ]));
    assert!(stderr.contains("--time-budget"), "{stderr}");
}

#[test]
fn the_prepared_dataset_is_data_for_train_and_pretrain() {
    for command in ["train", "pretrain"] {
        let stderr = run_err(&mut instructrec(&[command, "--items", "d", "--out", "o"]));
        assert!(stderr.contains("--items"), "{command}: {stderr}");
    }
}

#[test]
fn a_device_is_named_or_refused_with_what_to_do() {
    let stderr = train_with("--device", "tpu");
    assert!(
        stderr.contains("--device") && stderr.contains("cuda:N"),
        "{stderr}"
    );
    if cfg!(feature = "cuda") {
        return;
    }
    // A CPU build asked for a GPU says how to get one, before any checkpoint is written.
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    write_instructions(&train, 16);
    let out = dir.path().join("out");
    let (train, out_arg) = (train.to_str().unwrap(), out.to_str().unwrap());
    let mut args = train_args(train, out_arg, "2");
    args.extend(["--device", "cuda:0"]);
    let stderr = run_err(&mut instructrec(&args));
    assert!(
        stderr.contains("cuda:0") && stderr.contains("--features cuda"),
        "{stderr}"
    );
    assert!(!out.join("last").exists());
}

/// The tokenizer corpus is read line by line while the tokenizer trains: a bad line still
/// stops the run with the file and the line, and leaves no model behind.
#[test]
fn a_bad_tokenizer_corpus_line_names_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    write_instructions(&train, 40);
    let corpus = dir.path().join("corpus.jsonl");
    let mut text = std::fs::read_to_string(&train).unwrap();
    text.push_str("{\"instruction\": \"no answer here\"}\n");
    std::fs::write(&corpus, text).unwrap();
    let out = dir.path().join("model");
    let (train_s, out_s) = (train.to_str().unwrap(), out.to_str().unwrap());
    let mut args = train_args(train_s, out_s, "2");
    args.extend(["--tokenizer-corpus", corpus.to_str().unwrap()]);
    let stderr = run_err(&mut instructrec(&args));
    assert!(
        stderr.contains("corpus.jsonl") && stderr.contains("41") && stderr.contains("`target`"),
        "{stderr}"
    );
    assert!(!out.join("best").exists() && !out.join("last").exists());
}
