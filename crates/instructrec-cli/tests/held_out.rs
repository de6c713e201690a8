//! `instructrec eval --protocol held-out`: tiny instruction models tuned with and without the
//! vague-intention (I1) lines of the fixture's instructions. Stages whose recorded line filter
//! rules I1 out are scored on the personalised-search I1 cases, one report row each; a stage
//! that may have seen I1, or whose checkpoint does not say, is refused before anything runs.

mod common;

use std::path::Path;

use common::{instructions, instructrec, prepared, run_err, run_ok, train_args};

/// Trains a tiny model for 3 steps on the fixture's instruction lines with `filter` flags;
/// returns its last checkpoint.
fn stage(root: &Path, instructions: &Path, name: &str, filter: &[&str]) -> String {
    let train = instructions.join("train.jsonl");
    let out = root.join(name);
    let mut args = train_args(train.to_str().unwrap(), out.to_str().unwrap(), "3");
    args.extend(filter);
    run_ok(&mut instructrec(&args));
    out.join("last").display().to_string()
}

fn held_out_args<'a>(data: &'a str, instructions: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "eval",
        "--protocol",
        "held-out",
        "--data",
        data,
        "--instructions",
        instructions,
        "--models",
        "popularity,bm25",
        "--no-full-ranking",
        "--out",
        out,
    ]
}

#[test]
fn stages_tuned_without_i1_get_one_row_each_and_others_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = prepared(root);
    let instructions = instructions(root, &data);
    let first = stage(root, &instructions, "s1", &["--intention", "I0"]);
    let second = stage(root, &instructions, "s2", &["--without-intention", "I1"]);
    let (data, instructions) = (data.to_str().unwrap(), instructions.to_str().unwrap());

    let report = root.join("report");
    let mut args = held_out_args(data, instructions, report.to_str().unwrap());
    let (s1, s2) = (format!("S1={first}"), format!("S2={second}"));
    args.extend(["--stage", s1.as_str(), "--stage", s2.as_str()]);
    run_ok(&mut instructrec(&args));

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.with_extension("json")).unwrap()).unwrap();
    assert_eq!(json["protocol"], "held-out");
    let stages = json["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["S1", "S2"]);
    assert_eq!(stages[0]["trained_on"], "intention I0");
    assert_eq!(stages[1]["trained_on"], "intention not I1");
    assert_eq!(stages[1]["steps"], 3);
    // Every model, stages and references, is scored on the same I1 cases.
    let models = json["models"].as_array().unwrap();
    let rows: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        rows,
        ["popularity", "bm25", "instructrec S1", "instructrec S2"]
    );
    let cases: Vec<u64> = models
        .iter()
        .map(|m| m["results"][0]["metrics"]["cases"].as_u64().unwrap())
        .collect();
    assert!(
        cases[0] > 0 && cases.iter().all(|&c| c == cases[0]),
        "{cases:?}"
    );
    assert_eq!(json["candidates"][0]["cases"].as_u64(), Some(cases[0]));
    let md = std::fs::read_to_string(report.with_extension("md")).unwrap();
    let section = md
        .split("## Held-out scenario by tuning stage")
        .nth(1)
        .expect("the stage table");
    for row in [
        "| S1 | intention I0 | 7 | 3 |",
        "| S2 | intention not I1 | 7 | 3 |",
    ] {
        assert_eq!(section.matches(row).count(), 1, "{row} in {md}");
    }
    assert!(section.contains("| popularity | reference"), "{md}");
    let svg = std::fs::read_to_string(report.with_extension("svg")).unwrap();
    assert!(svg.contains("HR@1 by tuning stage"));

    // A model tuned on every line saw I1: refused, and nothing is written.
    let everything = stage(root, Path::new(instructions), "all", &[]);
    let refused = root.join("refused");
    let mut args = held_out_args(data, instructions, refused.to_str().unwrap());
    let bad = format!("S9={everything}");
    args.extend(["--stage", s1.as_str(), "--stage", bad.as_str()]);
    let stderr = run_err(&mut instructrec(&args));
    assert!(
        stderr.contains("stage S9") && stderr.contains("which includes I1"),
        "{stderr}"
    );
    assert!(!refused.with_extension("json").exists());

    // A checkpoint that does not record its lines cannot be shown to have left I1 out.
    let state = Path::new(&first).join("trainer_state.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    record["config"].as_object_mut().unwrap().remove("lines");
    std::fs::write(&state, record.to_string()).unwrap();
    let stderr = run_err(&mut instructrec(&args));
    assert!(
        stderr.contains("stage S1") && stderr.contains("does not record"),
        "{stderr}"
    );
    // --stage belongs to the held-out protocol only, and held-out needs one.
    let mut args = held_out_args(data, instructions, refused.to_str().unwrap());
    assert!(run_err(&mut instructrec(&args)).contains("--stage NAME=DIR"));
    args[2] = "personalised-search";
    args.extend(["--stage", s2.as_str()]);
    assert!(run_err(&mut instructrec(&args)).contains("only that protocol"));

    // The personalised-search protocol scores an --instructrec model on the same I1 cases: S2
    // gets exactly the metrics it got as a held-out stage.
    let search = root.join("search");
    let mut args = held_out_args(data, instructions, search.to_str().unwrap());
    args[2] = "personalised-search";
    args.extend(["--query", "vague", "--instructrec", second.as_str()]);
    run_ok(&mut instructrec(&args));
    let searched: serde_json::Value =
        serde_json::from_slice(&std::fs::read(search.with_extension("json")).unwrap()).unwrap();
    let row = |report: &serde_json::Value, name: &str| {
        report["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name} row"))["results"][0]["metrics"]
            .clone()
    };
    assert_eq!(row(&searched, "instructrec"), row(&json, "instructrec S2"));
}
