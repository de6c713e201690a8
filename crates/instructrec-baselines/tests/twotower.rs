use std::collections::HashSet;

use instructrec_baselines::twotower::{train, TwoTowerConfig};
use instructrec_baselines::TextInput;
use instructrec_baselines::{TextSource, Trainable, TwoTower, WordHash};
use instructrec_data::Fold;
use instructrec_eval::harness::{build_cases, mine_hard_negatives, with_candidates};
use instructrec_eval::{evaluate, synthetic, Protocol, Scorer, Setting};

fn tiny(seed: u64) -> TwoTowerConfig {
    let mut c = TwoTowerConfig::new(
        TextSource::Trained {
            buckets: 512,
            dim: 16,
            words: WordHash::Fnv1a64,
        },
        seed,
    );
    c.sequence.dim = 16;
    c.sequence.ff_dim = 32;
    c.sequence.max_len = 8;
    c.stopping.batch_size = 64;
    c.lr = 5e-3;
    c.stopping.max_epochs = 8;
    c.validation_stride = 1;
    c
}

#[test]
fn learns_the_pattern_and_mines_reproducible_lists() {
    let p = synthetic::prepared(200, 120, 31);
    let trained = train(
        &p,
        TwoTower::new(tiny(5), &p, TextInput::default()).unwrap(),
    )
    .unwrap();
    let m = evaluate(
        &trained.model,
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
        64,
    )
    .unwrap()
    .unwrap()
    .metrics;
    // Random ranking gives HR@1 0.1; the synthetic users mostly step to the next item id.
    assert!(m.hr1 > 0.4, "two-tower test HR@1 {}", m.hr1);

    let cases = build_cases(
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
    )
    .unwrap();
    let sets = mine_hard_negatives(&trained.model, &cases, 120, 9, 32).unwrap();
    assert_eq!(sets.len(), cases.len());
    for (s, c) in sets.iter().zip(&cases) {
        let history: HashSet<_> = p.dataset.sequences[c.case.user.index()]
            .iter()
            .map(|i| i.item)
            .filter(|&i| i != c.positive)
            .collect();
        assert_eq!(s.negatives.len(), 9);
        let distinct: HashSet<_> = s.negatives.iter().collect();
        assert_eq!(distinct.len(), 9, "user {}", c.case.user.0);
        for n in &s.negatives {
            assert_ne!(*n, c.positive, "user {}", c.case.user.0);
            assert!(
                !history.contains(n),
                "user {}: history item {}",
                c.case.user.0,
                n.0
            );
        }
        assert_eq!(s.positive, c.positive);
    }
    // The batch size does not change the lists.
    let again = mine_hard_negatives(&trained.model, &cases, 120, 9, 7).unwrap();
    assert_eq!(again, sets);
    // A retrained model from the same seed mines exactly the same lists.
    let retrained = train(
        &p,
        TwoTower::new(tiny(5), &p, TextInput::default()).unwrap(),
    )
    .unwrap();
    let re = mine_hard_negatives(&retrained.model, &cases, 120, 9, 32).unwrap();
    assert_eq!(re, sets);
    // Hard lists are harder than the stored random ones for the model that mined them.
    let hard = with_candidates(cases, &sets).unwrap();
    let on_hard = instructrec_eval::harness::evaluate_sampled(&trained.model, &hard, 64).unwrap();
    assert!(
        on_hard.hr1 < m.hr1,
        "hard {} vs random {}",
        on_hard.hr1,
        m.hr1
    );
}

#[test]
fn checkpoint_round_trip_scores_identically() {
    let p = synthetic::prepared(60, 120, 32);
    let mut config = tiny(9);
    config.stopping.max_epochs = 1;
    let trained = train(
        &p,
        TwoTower::new(config.clone(), &p, TextInput::default()).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tt.safetensors");
    trained.model.save(&path).unwrap();
    let mut loaded = TwoTower::new(config, &p, TextInput::default()).unwrap();
    loaded.load(&path).unwrap();
    assert_eq!(
        loaded.weights_hash().unwrap(),
        trained.model.weights_hash().unwrap()
    );
    let cases = build_cases(
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
    )
    .unwrap();
    let a = mine_hard_negatives(&trained.model, &cases, 120, 9, 16).unwrap();
    let b = mine_hard_negatives(&loaded, &cases, 120, 9, 16).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_saved_directory_loads_to_identical_scores_and_only_for_its_catalogue() {
    let mut p = synthetic::prepared(60, 120, 33);
    // As a prepared directory records them; a synthetic dataset has none.
    for file in ["items.jsonl", "users.jsonl"] {
        p.manifest
            .checksums
            .insert(file.into(), format!("sha of {file}"));
    }
    let mut config = tiny(4);
    config.stopping.max_epochs = 1;
    let trained = train(&p, TwoTower::new(config, &p, TextInput::default()).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("two-tower");
    trained.save_dir(&dir).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["config.json", "model.safetensors", "model.seq.safetensors"]
    );

    let loaded = TwoTower::load_dir(&dir, &p).unwrap();
    assert_eq!(loaded.config(), trained.model.config());
    let cases = build_cases(&p, Protocol::Sequential, Fold::Test, Setting::FullRanking).unwrap();
    let cases: Vec<&instructrec_eval::Case> = cases.iter().map(|c| &c.case).collect();
    let all = |m: &TwoTower| m.score_all(&cases).unwrap().unwrap();
    assert_eq!(all(&loaded), all(&trained.model));

    // Another catalogue: the error names the file and the field that differs.
    let refused =
        |p: &instructrec_data::Prepared| TwoTower::load_dir(&dir, p).err().unwrap().to_string();
    let config_json = dir.join("config.json").display().to_string();
    let e = refused(&synthetic::prepared(60, 130, 33));
    assert!(
        e.starts_with(&format!("{config_json}: catalogue.items: ")),
        "{e}"
    );
    assert!(
        e.contains("trained on 120, the prepared data has 130"),
        "{e}"
    );
    let mut other = p.clone();
    other
        .manifest
        .checksums
        .insert("items.jsonl".into(), "another catalogue".into());
    let e = refused(&other);
    assert!(e.contains("catalogue.items_sha256"), "{e}");

    // A weights file changed after saving is refused, naming it.
    let seq = dir.join("model.seq.safetensors");
    let bytes = std::fs::read(&seq).unwrap();
    std::fs::write(&seq, b"not weights").unwrap();
    let e = refused(&p);
    assert!(e.starts_with(&seq.display().to_string()), "{e}");
    assert!(e.contains("files.model.seq.safetensors"), "{e}");
    std::fs::write(&seq, bytes).unwrap();

    // Saving again replaces an unchanged save, but never a directory someone added to.
    trained.save_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.md"), "mine").unwrap();
    let e = trained.save_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("it holds notes.md, which saving the two-tower model did not write"),
        "{e}"
    );
    assert!(dir.join("notes.md").exists());

    // A directory that is not a saved two-tower model (a T5 checkpoint has a config.json too).
    let t5 = root.path().join("t5");
    std::fs::create_dir(&t5).unwrap();
    std::fs::write(t5.join("config.json"), r#"{"d_model": 64}"#).unwrap();
    let e = TwoTower::load_dir(&t5, &p).err().unwrap().to_string();
    assert!(
        e.contains("not a saved two-tower model's configuration"),
        "{e}"
    );
    assert!(e.contains("missing field"), "{e}");
}
