//! Faults met by the commands that write output or read input: a full disk (simulated with
//! RLIMIT_FSIZE, since tests run as root and permissions do not stop root), unreadable input
//! (a directory, a missing file, bytes that are not UTF-8) and a port already in use. Each must
//! fail with a message naming the file or address, leave no temporary or partial file, and
//! leave an earlier complete output as it was.

mod common;

use std::path::Path;

use common::{
    fixture_input, instructions_args, instructrec, instructrec_with_file_limit, leftovers,
    prepare_args, prepared, run_err, run_ok, snapshot, train_args, write_instructions,
};

/// The shell's `ulimit -f` unit is 512 or 1024 bytes; either way every output below is larger.
const TINY_LIMIT: u64 = 1;

fn assert_names_full_disk(stderr: &str, dir: &Path) {
    assert!(
        stderr.contains(&dir.display().to_string()) && stderr.contains("File too large"),
        "the error should name the file being written under {}: {stderr}",
        dir.display()
    );
}

#[test]
fn data_prepare_on_a_full_disk() {
    let root = tempfile::tempdir().unwrap();
    let out = prepared(root.path());
    let before = snapshot(root.path());
    let input = fixture_input();
    let stderr = run_err(&mut instructrec_with_file_limit(
        TINY_LIMIT,
        &prepare_args(input.to_str().unwrap(), out.to_str().unwrap()),
    ));
    assert_names_full_disk(&stderr, root.path());
    assert_eq!(leftovers(root.path()), Vec::<std::path::PathBuf>::new());
    assert!(
        snapshot(root.path()) == before,
        "the earlier dataset changed"
    );
}

#[test]
fn instructions_build_on_a_full_disk() {
    let root = tempfile::tempdir().unwrap();
    let data = prepared(root.path());
    let out = root.path().join("instructions");
    let cache = root.path().join("cache");
    let args = instructions_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        cache.to_str().unwrap(),
    );
    run_ok(&mut instructrec(&args));
    let before = snapshot(&out);
    let stderr = run_err(&mut instructrec_with_file_limit(TINY_LIMIT, &args));
    assert_names_full_disk(&stderr, &out);
    assert_eq!(leftovers(&out), Vec::<std::path::PathBuf>::new());
    assert!(snapshot(&out) == before, "the earlier instructions changed");
}

#[test]
fn train_checkpoint_on_a_full_disk() {
    let root = tempfile::tempdir().unwrap();
    let train = root.path().join("train.jsonl");
    write_instructions(&train, 40);
    let out = root.path().join("model");
    let (train, out_str) = (train.to_str().unwrap(), out.to_str().unwrap());
    // A time budget of nothing stops after the first checkpoint; the resumed run has steps left.
    let mut first = train_args(train, out_str, "20");
    first.extend(["--time-budget", "0s"]);
    run_ok(&mut instructrec(&first));
    let before = snapshot(&out);
    let stderr = run_err(&mut instructrec_with_file_limit(
        TINY_LIMIT,
        &train_args(train, out_str, "20"),
    ));
    assert_names_full_disk(&stderr, &out);
    assert_eq!(leftovers(&out), Vec::<std::path::PathBuf>::new());
    assert!(snapshot(&out) == before, "the earlier checkpoint changed");
}

#[test]
fn unreadable_inputs_are_named() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing.jsonl");
    let not_utf8 = root.path().join("latin1.jsonl");
    std::fs::write(
        &not_utf8,
        b"{\"instruction\": \"caf\xe9\", \"target\": \"x\"}\n",
    )
    .unwrap();
    let directory = root.path().join("a-directory.jsonl");
    std::fs::create_dir(&directory).unwrap();
    let out = root.path().join("out");
    for input in [&missing, &not_utf8, &directory] {
        let stderr = run_err(&mut instructrec(&train_args(
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "1",
        )));
        assert!(
            stderr.contains(&input.display().to_string()),
            "train --train {}: {stderr}",
            input.display()
        );
        // The OS's reason once: the I/O error types print their source, which the error
        // chain also holds (it was printed twice).
        assert!(
            stderr.matches("(os error").count() <= 1,
            "train --train {}: {stderr}",
            input.display()
        );
    }
    for input in [&missing, &not_utf8] {
        let stderr = run_err(&mut instructrec(&prepare_args(
            input.to_str().unwrap(),
            out.to_str().unwrap(),
        )));
        assert!(
            stderr.contains(&input.display().to_string()),
            "data prepare --input {}: {stderr}",
            input.display()
        );
    }
    assert!(!out.exists(), "a failed command left {}", out.display());
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = run_err(&mut instructrec(&[
        "serve",
        "--model",
        "/nonexistent-model",
        "--data",
        "/nonexistent-data",
        "--addr",
        &addr,
    ]));
    assert!(
        stderr.contains(&addr) && stderr.contains("in use"),
        "serve --addr {addr}: {stderr}"
    );
}
