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
    assert_eq!(printed.len(), 16, "{printed:?}");
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
    assert_eq!(
        names,
        [
            "popularity",
            "bm25",
            "instructrec-chosen-mean",
            "instructrec-chosen-mean-permuted"
        ]
    );
    // The control row covers every list setting, each asked as its true-prompt row was.
    let results = |m: usize| report["models"][m]["results"].as_array().unwrap().clone();
    let (asked, control) = (results(2), results(3));
    assert!(asked.len() >= 2, "{asked:?}");
    assert_eq!(asked.len(), control.len());
    for (a, c) in asked.iter().zip(&control) {
        assert_eq!((&a["setting"], &a["asked"]), (&c["setting"], &c["asked"]));
    }
    // The run ends with the scenario table over its evaluations.
    let table = std::fs::read_to_string(work.join("scenarios.md")).unwrap();
    assert!(
        table.contains("| sequential | 1+9 sampled | instructrec-chosen-mean-permuted (asked "),
        "{table}"
    );
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

    every_protocol_scores_the_instruction_model(&work, dir.path());

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

/// The quick model through every protocol beside popularity, on the same lists: sequential 1+9,
/// 1+99 and full ranking (BM25 retrieves, the model reranks), the tournament over 100
/// candidates, and mined hard negatives. Each of its rows must exist and be a share.
fn every_protocol_scores_the_instruction_model(work: &Path, out: &Path) {
    let path = |p: &str| work.join(p).to_str().unwrap().to_string();
    let (data, model, instructions) = (path("prepared"), path("model/best"), path("instructions"));
    let expected: [(&str, &[&str]); 3] = [
        ("sequential", &["sampled 10", "sampled 100", "full-ranking"]),
        ("tournament", &["sampled 100", "tournament 100"]),
        ("hard-negatives", &["sampled 10"]),
    ];
    for (protocol, settings) in expected {
        let stem = out.join(format!("all-{protocol}"));
        let mut args = vec![
            "eval",
            "--protocol",
            protocol,
            "--data",
            &data,
            "--models",
            "popularity",
            "--instructrec",
            &model,
            "--instructions",
            &instructions,
            "--length-normalise",
            "--max-source-len",
            "320",
            "--max-target-len",
            "40",
            "--max-epochs",
            "2",
            "--out",
            stem.to_str().unwrap(),
        ];
        if protocol != "sequential" {
            args.push("--no-full-ranking");
        }
        if protocol == "tournament" {
            args.extend(["--max-users", "40"]);
        }
        if protocol == "hard-negatives" {
            args.push("--permuted-prompts");
        }
        run_ok(&mut instructrec(&args));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(stem.with_extension("json")).unwrap()).unwrap();
        for name in ["popularity", "instructrec-mean"] {
            let m = report["models"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .unwrap_or_else(|| panic!("{protocol}: no {name} row"));
            let got: Vec<String> = m["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let s = &r["setting"];
                    let size = s["size"].as_u64().map(|n| format!(" {n}"));
                    format!(
                        "{}{}",
                        s["kind"].as_str().unwrap(),
                        size.unwrap_or_default()
                    )
                })
                .collect();
            assert_eq!(got, settings, "{protocol} {name}");
            for r in m["results"].as_array().unwrap() {
                let metrics = &r["metrics"];
                let hr1 = metrics["hr1"].as_f64().unwrap();
                let hr10 = metrics["hr10"].as_f64().unwrap();
                assert!(
                    (0.0..=1.0).contains(&hr1) && hr1 <= hr10,
                    "{protocol} {name} {r}"
                );
                assert!(
                    metrics["cases"].as_u64().unwrap() > 0,
                    "{protocol} {name} {r}"
                );
                assert!(metrics["se"]["hr1"].as_f64().unwrap() >= 0.0);
            }
        }
        if protocol == "sequential" {
            let model = report["models"].as_array().unwrap().last().unwrap();
            assert_eq!(model["config"]["full_ranking"]["reranked"], 20, "{model}");
            // The method's own matching step: the model's T2 generation retrieves what it
            // reranks.
            let generated = out.join("generation-matcher");
            let mut with_generation = args.clone();
            let at = with_generation.iter().position(|a| *a == "--out").unwrap();
            with_generation[at + 1] = generated.to_str().unwrap();
            with_generation.extend(["--matcher", "generation", "--rerank-depth", "5"]);
            run_ok(&mut instructrec(&with_generation));
            let r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(generated.with_extension("json")).unwrap())
                    .unwrap();
            let model = r["models"].as_array().unwrap().last().unwrap();
            let full = &model["config"]["full_ranking"];
            assert_eq!(full["matcher"], "instructrec T2 generation", "{model}");
            assert_eq!(full["reranked"], 5, "{model}");
            let last = model["results"].as_array().unwrap().last().unwrap();
            assert_eq!(last["setting"]["kind"], "full-ranking", "{last}");
            // Five retrieved items: a positive ranks within them or is a miss.
            let ranks = last["ranks"].as_array().unwrap();
            let found = ranks.iter().filter(|r| r.as_u64().unwrap() <= 5).count();
            assert_eq!(
                last["metrics"]["hr10"].as_f64().unwrap(),
                found as f64 / ranks.len() as f64,
                "{last}"
            );
        }
        if protocol == "hard-negatives" {
            // The mined lists are data: read back as a candidate file, they score alike, and
            // another checkpoint (here the same one, under a variant label) is scored on them
            // without mining again.
            let lists = stem.with_extension("candidates.jsonl");
            let manifest: serde_json::Value = serde_json::from_slice(
                &std::fs::read(stem.with_extension("candidates.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(manifest["miner"]["name"], "two-tower", "{manifest}");
            let again = out.join("reused");
            // The protocol's own arguments, but for the label, the lists and the report.
            let mut reuse: Vec<&str> = args
                .iter()
                .copied()
                .filter(|a| *a != "--permuted-prompts")
                .collect();
            let at = reuse.iter().position(|a| *a == "--out").unwrap();
            reuse[at + 1] = again.to_str().unwrap();
            reuse.extend([
                "--variant",
                "again",
                "--candidates",
                lists.to_str().unwrap(),
            ]);
            run_ok(&mut instructrec(&reuse));
            let reused: serde_json::Value =
                serde_json::from_slice(&std::fs::read(again.with_extension("json")).unwrap())
                    .unwrap();
            assert_eq!(reused["candidates"], report["candidates"]);
            assert_eq!(
                reused["models"][0]["results"][0]["metrics"],
                report["models"][0]["results"][0]["metrics"]
            );
            assert_eq!(reused["models"][1]["name"], "instructrec-again-mean");
            // The checkpoint asked another way: the arguments after the common ones; the report.
            let ask = |name: &str, how: &[&str]| -> serde_json::Value {
                let asked = out.join(format!("asked-{name}"));
                let mut args = vec![
                    "eval",
                    "--protocol",
                    "sequential",
                    "--data",
                    &data,
                    "--models",
                    "popularity",
                    "--instructrec",
                    &model,
                    "--instructions",
                    &instructions,
                    "--length-normalise",
                    "--no-full-ranking",
                    "--out",
                    asked.to_str().unwrap(),
                ];
                args.extend(how);
                run_ok(&mut instructrec(&args));
                serde_json::from_slice(&std::fs::read(asked.with_extension("json")).unwrap())
                    .unwrap()
            };
            // The same checkpoint asked in the other task forms, on the same lists.
            for (task, name, forms) in [
                (&["T0"][..], "instructrec-t0", &["T0"][..]),
                (&["T2"], "instructrec-t2-mean", &["T2"]),
                (&["T3", "--with-t2"], "instructrec-t3t2-mean", &["T3", "T2"]),
            ] {
                let mut how = vec!["--candidates", lists.to_str().unwrap(), "--task"];
                how.extend(task);
                let r = ask(&forms.join(""), &how);
                let row = &r["models"][1];
                assert_eq!(row["name"], name, "{r}");
                assert_eq!(
                    row["results"][0]["metrics"]["cases"],
                    reused["models"][0]["results"][0]["metrics"]["cases"]
                );
                let score = row["config"]["score"].as_str().unwrap();
                assert!(forms.iter().all(|f| score.contains(f)), "{score}");
            }
            // The validation fold: its own stored lists, for choosing how to ask.
            let r = ask("validation", &["--fold", "validation"]);
            let lists = r["candidates"].as_array().unwrap();
            assert!(lists.iter().all(|c| c["fold"] == "validation"), "{r}");
            assert_eq!(r["models"][1]["name"], "instructrec-mean");
            assert!(
                r["models"][1]["results"][0]["metrics"]["cases"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
            // Chosen on validation: each setting asked the way that scored best there, which
            // gives what asking that way directly gives.
            let r = ask("chosen", &["--choose-form", "T3,T2"]);
            let row = &r["models"][1];
            assert_eq!(row["name"], "instructrec-chosen-mean", "{r}");
            let choices = row["config"]["chosen_on_validation"].as_array().unwrap();
            let results = row["results"].as_array().unwrap();
            assert_eq!(choices.len(), results.len(), "{r}");
            for (choice, result) in choices.iter().zip(results) {
                let tried = choice["tried"].as_array().unwrap();
                let key = |t: &serde_json::Value| (t["hr1"].as_f64(), t["ndcg5"].as_f64());
                let best = tried
                    .iter()
                    .fold(&tried[0], |b, t| if key(t) > key(b) { t } else { b });
                assert_eq!(tried.len(), 2, "{choice}");
                assert_eq!(choice["fold"], "validation");
                assert_eq!(choice["chosen"], best["asked"], "{choice}");
                assert_eq!(result["asked"], choice["chosen"]);
            }
            let chosen = results[0]["asked"].as_str().unwrap();
            let direct = ask("direct", &["--task", chosen]);
            assert_eq!(
                direct["models"][1]["results"][0]["metrics"],
                results[0]["metrics"]
            );
            // Mined lists chosen on: the miner also mines validation lists, and the test lists
            // are those mined without choosing.
            let chose = out.join("hard-chosen");
            let mut choosing = args.clone();
            let at = choosing.iter().position(|a| *a == "--out").unwrap();
            choosing[at + 1] = chose.to_str().unwrap();
            choosing.extend(["--choose-form", "T3,T3+T2"]);
            run_ok(&mut instructrec(&choosing));
            let r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(chose.with_extension("json")).unwrap())
                    .unwrap();
            assert_eq!(r["candidates"], report["candidates"]);
            let row = r["models"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == "instructrec-chosen-mean")
                .unwrap();
            let choice = &row["config"]["chosen_on_validation"][0];
            assert!(choice["cases"].as_u64().unwrap() > 0, "{choice}");
            assert_eq!(row["results"][0]["asked"], choice["chosen"]);
            // The control row: the same model, the same lists, other users' prompts.
            let models = report["models"].as_array().unwrap();
            let [.., true_prompts, permuted] = models.as_slice() else {
                panic!("{report}");
            };
            assert_eq!(permuted["name"], "instructrec-mean-permuted");
            assert_eq!(permuted["model_hash"], true_prompts["model_hash"]);
            let cases = |m: &serde_json::Value| m["results"][0]["metrics"]["cases"].clone();
            assert_eq!(cases(permuted), cases(true_prompts));
        }
    }
    // One table of the scenarios, from those reports.
    let table = out.join("scenarios");
    let scenario = |name: &str, protocol: &str| {
        let report = out.join(format!("all-{protocol}.json"));
        format!("{name}={}", report.display())
    };
    run_ok(&mut instructrec(&[
        "scenarios",
        "--scenario",
        &scenario("sequential", "sequential"),
        "--scenario",
        &scenario("hard negatives", "hard-negatives"),
        "--scenario",
        &format!("hard negatives={}", out.join("reused.json").display()),
        "--out",
        table.to_str().unwrap(),
    ]));
    let md = std::fs::read_to_string(table.with_extension("md")).unwrap();
    for row in [
        "| sequential | 1+9 sampled | instructrec-mean |",
        "| sequential | 1+99 sampled | popularity |",
        "| hard negatives | 1+9 sampled | instructrec-mean-permuted |",
        // The second report of the scenario: one popularity row, the checkpoint again, paired
        // with itself on the same lists.
        "| hard negatives | 1+9 sampled | instructrec-again-mean | instructrec-mean | +0.000 ± 0.000 |",
    ] {
        assert!(md.contains(row), "{row} not in {md}");
    }
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
