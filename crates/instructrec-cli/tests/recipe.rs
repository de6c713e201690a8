//! `instructrec run` as its recipes say: the README's stage-by-stage commands are the default
//! recipe's, and the quick recipe goes from raw data to a report on real data.

mod common;

use std::path::Path;

use common::{instructrec, run_err, run_ok};

/// The README's fenced block after the marker, continuation lines joined.
fn readme_commands() -> Vec<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let marker = "<!-- the default recipe's commands; tests/recipe.rs checks them -->";
    let block = text
        .split_once(marker)
        .expect("README marker")
        .1
        .split_once("```sh\n")
        .unwrap()
        .1
        .split_once("```")
        .unwrap()
        .0;
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        current.push_str(line.trim_end_matches('\\').trim_end());
        if line.ends_with('\\') {
            current.push(' ');
        } else {
            commands.push(std::mem::take(&mut current));
        }
    }
    commands
}

#[test]
fn the_readme_shows_the_default_recipes_commands() {
    let out = run_ok(&mut instructrec(&["run", "--print-commands"]));
    let printed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(printed.len(), 6, "{printed:?}");
    assert_eq!(readme_commands(), printed);
}

#[test]
fn print_recipe_gives_the_commented_default_and_it_runs_as_a_file() {
    let out = run_ok(&mut instructrec(&["run", "--print-recipe"]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# The default recipe"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(&file, &text).unwrap();
    let from_file = run_ok(&mut instructrec(&[
        "run",
        "--recipe",
        file.to_str().unwrap(),
        "--print-commands",
    ]));
    let builtin = run_ok(&mut instructrec(&["run", "--print-commands"]));
    assert_eq!(from_file.stdout, builtin.stdout);
    std::fs::write(&file, "[tune]\nstepz = 3\n").unwrap();
    let err = run_err(&mut instructrec(&[
        "run",
        "--recipe",
        file.to_str().unwrap(),
    ]));
    assert!(err.contains("mine.toml") && err.contains("stepz"), "{err}");
}

/// The quick recipe end to end on MovieLens 100K (what the README's five-minute first run
/// does, without serving), then a rerun that finds every stage done, then a different recipe
/// in the same folder, which is refused.
#[test]
fn the_quick_recipe_runs_and_resumes() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/ml-100k");
    assert!(input.is_dir(), "{} is missing", input.display());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("quick");
    let (work_s, input_s) = (work.to_str().unwrap(), input.to_str().unwrap());
    let quick = ["run", "--recipe", "quick", "--no-serve"];
    let args = |extra: &[&'static str]| {
        let mut a: Vec<&str> = quick.to_vec();
        a.extend(["--work", work_s, "--input", input_s]);
        a.extend(extra);
        a
    };
    let start = std::time::Instant::now();
    run_ok(&mut instructrec(&args(&[])));
    eprintln!("quick recipe: {:.0} s", start.elapsed().as_secs_f64());

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("report-sequential.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["popularity", "bm25", "instructrec-mean"]);
    for m in report["models"].as_array().unwrap() {
        let r = &m["results"][0];
        let hr1 = r["metrics"]["hr1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&hr1), "{m}");
        assert_eq!(r["metrics"]["cases"].as_u64(), Some(200), "{m}");
    }
    let kept = std::fs::read_to_string(work.join("recipe.toml")).unwrap();
    assert_eq!(report["recipe"].as_str(), Some(kept.as_str()));
    assert!(kept.contains("preset = \"tiny\""));

    // Everything is done: the rerun only resumes finished trainings and evaluates again.
    let model = std::fs::read(work.join("model/best/model.safetensors")).unwrap();
    run_ok(&mut instructrec(&args(&[])));
    assert_eq!(
        std::fs::read(work.join("model/best/model.safetensors")).unwrap(),
        model
    );

    let other = dir.path().join("other.toml");
    std::fs::write(&other, "seed = 7\n").unwrap();
    let err = run_err(&mut instructrec(&[
        "run",
        "--recipe",
        other.to_str().unwrap(),
        "--work",
        work_s,
        "--no-serve",
    ]));
    assert!(err.contains("recipe.toml") && err.contains("seed"), "{err}");
}

/// A training stage cut short by its time budget stops the run: the next stage would otherwise
/// start from a different model than the recipe's.
#[test]
fn a_stage_stopped_by_its_budget_stops_the_run() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/ml-100k");
    let dir = tempfile::tempdir().unwrap();
    let quick = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes/quick.toml"),
    )
    .unwrap();
    let short = quick.replacen("budget = \"20m\"", "budget = \"1s\"", 1);
    assert_ne!(short, quick);
    let recipe = dir.path().join("short.toml");
    std::fs::write(&recipe, short).unwrap();
    let work = dir.path().join("w");
    let err = run_err(&mut instructrec(&[
        "run",
        "--recipe",
        recipe.to_str().unwrap(),
        "--work",
        work.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--no-serve",
    ]));
    assert!(
        err.contains("pretrain short stage") && err.contains("stopped on its time budget"),
        "{err}"
    );
    assert!(!work.join("pretrained/templates").exists());
    assert!(!work.join("model").exists());
}
