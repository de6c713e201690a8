//! Running the `instructrec` binary as a child process, and inspecting what it left on disk.
#![allow(dead_code)] // each test binary uses part of this module

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_instructrec");

/// The amazon2018 fixture of instructrec-data: 4 users, 7 items, plain JSON lines.
pub fn fixture_input() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../instructrec-data/tests/fixtures/amazon2018")
}

pub fn instructrec(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_LOG", "warn");
    command
}

/// The command with RLIMIT_FSIZE set to `blocks` (the shell's `ulimit -f` unit) and SIGXFSZ
/// ignored, so that a write past the limit fails with EFBIG as on a full disk.
pub fn instructrec_with_file_limit(blocks: u64, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -f {blocks} && trap '' XFSZ && exec \"$0\" \"$@\""
        ))
        .arg(BIN)
        .args(args)
        .env("RUST_LOG", "warn");
    command
}

pub fn run_ok(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail; returns its stderr.
pub fn run_err(command: &mut Command) -> String {
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{command:?} succeeded; stderr: {stderr}"
    );
    stderr
}

/// Every file under `dir` (relative path -> bytes), for before/after comparisons.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

/// Paths under `dir` that look like temporary or partial output (hidden or named `*tmp*`).
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('.') || name.contains("tmp") || name.contains(".old") {
                found.push(path.clone());
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

/// `data prepare` arguments for the fixture: every user kept, candidate lists of 3.
pub fn prepare_args<'a>(input: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "data",
        "prepare",
        "--input",
        input,
        "--out",
        out,
        "--k-core",
        "1",
        "--candidates",
        "3",
    ]
}

/// A prepared dataset from the amazon2018 fixture, in `root/prepared`.
pub fn prepared(root: &Path) -> PathBuf {
    let out = root.join("prepared");
    let input = fixture_input();
    run_ok(&mut instructrec(&prepare_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    )));
    out
}

/// `instructions build` arguments for a prepared fixture (lists of 3, the offline teacher
/// cached in `cache`).
pub fn instructions_args<'a>(data: &'a str, out: &'a str, cache: &'a str) -> Vec<&'a str> {
    vec![
        "instructions",
        "build",
        "--data",
        data,
        "--out",
        out,
        "--teacher-cache",
        cache,
        "--train-candidates",
        "3",
        "--eval-sizes",
        "3",
    ]
}

/// Instructions built from the prepared fixture `data`, in `root/instructions`.
pub fn instructions(root: &Path, data: &Path) -> PathBuf {
    let out = root.join("instructions");
    let cache = root.join("cache");
    run_ok(&mut instructrec(&instructions_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        cache.to_str().unwrap(),
    )));
    out
}

/// A small instruction file: enough lines for a few dozen steps of a tiny model.
pub fn write_instructions(path: &Path, lines: usize) {
    let games = [
        "Red Racer",
        "Blue Puzzle",
        "Green Blocks",
        "Space Quest",
        "Farm Life",
        "Chess Master",
        "Night Rider",
        "Ocean Dive",
    ];
    let text: String = (0..lines)
        .map(|i| {
            let (a, b) = (games[i % games.len()], games[(i * 3 + 1) % games.len()]);
            format!(
                "{}\n",
                serde_json::json!({
                    "instruction": format!("The user played {a}. What should they play next?"),
                    "target": b,
                    "preference": "P1",
                })
            )
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

/// `train` arguments for a tiny model that takes a few seconds: a checkpoint every step.
pub fn train_args<'a>(train: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--train",
        train,
        "--out",
        out,
        "--preset",
        "tiny",
        "--vocab-size",
        "300",
        "--max-steps",
        steps,
        "--batch-size",
        "4",
        "--warmup",
        "2",
        "--save-every",
        "1",
        "--seed",
        "7",
        "--quiet",
        "--resume",
    ]
}
