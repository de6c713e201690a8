//! The two-tower matcher's flags: `eval --save-two-tower DIR` writes the directory that
//! `serve --matcher two-tower --two-tower DIR` reads, and either flag without the other half of
//! its pair is refused, naming the flag, before anything slow.

mod common;

use common::{instructrec, run_err, run_ok};

#[test]
fn eval_saves_the_two_tower_model_only_when_it_fits_one() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("prepared");
    instructrec_eval::synthetic::prepared(40, 120, 1)
        .save(&data)
        .unwrap();
    let saved = root.path().join("two-tower");
    let eval = |models: &str, out: &str| {
        instructrec(&[
            "eval",
            "--protocol",
            "sequential",
            "--data",
            data.to_str().unwrap(),
            "--models",
            models,
            "--max-epochs",
            "1",
            "--no-full-ranking",
            "--save-two-tower",
            saved.to_str().unwrap(),
            "--out",
            root.path().join(out).to_str().unwrap(),
        ])
    };
    let e = run_err(&mut eval("popularity", "report-popularity"));
    assert!(
        e.contains("--save-two-tower") && e.contains("add two-tower to --models"),
        "{e}"
    );
    assert!(!saved.exists());

    run_ok(&mut eval("two-tower", "report-two-tower"));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"], "two-tower");
    assert_eq!(config["catalogue"]["items"], 120);
    for file in ["model.safetensors", "model.seq.safetensors"] {
        assert!(saved.join(file).is_file(), "{file}");
        assert!(config["files"][file].is_string(), "{config}");
    }
}

#[test]
fn serve_needs_the_directory_for_the_two_tower_matcher_and_reads_it_only_for_that() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing");
    let missing = missing.to_str().unwrap();
    let serve = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--model",
            missing,
            "--data",
            missing,
            "--addr",
            "127.0.0.1:0",
        ];
        args.extend(extra);
        run_err(&mut instructrec(&args))
    };
    let e = serve(&["--matcher", "two-tower"]);
    assert!(e.contains("give --two-tower DIR"), "{e}");
    let e = serve(&["--two-tower", missing]);
    assert!(e.contains("is read only by --matcher two-tower"), "{e}");
    let e = serve(&["--matched", "0"]);
    assert!(e.contains("--matched 0"), "{e}");
}
