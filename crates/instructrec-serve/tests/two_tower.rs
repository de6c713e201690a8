//! `serve --matcher two-tower --two-tower DIR`: a two-tower model saved as `eval
//! --save-two-tower` saves it, loaded by `Recommender::load` beside a checkpoint and a prepared
//! directory on disk, retrieves the candidates, and the answers say which matcher did.

mod common;

use std::path::Path;
use std::sync::Arc;

use instructrec_baselines::twotower::{self, TwoTowerConfig};
use instructrec_baselines::{TextInput, TextSource, TwoTower, WordHash};
use instructrec_data::Prepared;
use instructrec_serve::{HttpConfig, Matching, Options, Recommender};
use serde_json::json;

/// A prepared directory, a tiny checkpoint and a tiny two-tower model trained for one epoch on
/// that directory's data (so the catalogue it records is the directory's).
fn saved(root: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (data, model, two_tower) = (
        root.join("prepared"),
        root.join("model"),
        root.join("two-tower"),
    );
    instructrec_eval::synthetic::prepared(60, 150, 5)
        .save(&data)
        .unwrap();
    common::tiny_model().save_hf_dir(&model).unwrap();
    let prepared = Prepared::load(&data).unwrap();
    let text = TextSource::Trained {
        buckets: 64,
        dim: 8,
        words: WordHash::Fnv1a64,
    };
    let mut config = TwoTowerConfig::new(text, 3);
    config.sequence.dim = 8;
    config.sequence.ff_dim = 8;
    config.sequence.max_len = 6;
    config.stopping.max_epochs = 1;
    let untrained = TwoTower::new(config, &prepared, TextInput::default()).unwrap();
    twotower::train(&prepared, untrained)
        .unwrap()
        .save_dir(&two_tower)
        .unwrap();
    (data, model, two_tower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_name_the_two_tower_matcher_and_its_bm25_fallback() {
    let root = tempfile::tempdir().unwrap();
    let (data, model, two_tower) = saved(root.path());
    let options = Options {
        matching: Matching::TwoTower,
        two_tower: Some(two_tower.clone()),
        ..Options::default()
    };
    let rec = Recommender::load(&model, &data, options).unwrap();
    assert_eq!(rec.matcher_name(), "two-tower");
    let base = common::start_shared_server(Arc::new(rec), HttpConfig::new(2)).await;

    let health: serde_json::Value = reqwest::get(format!("{base}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["matcher"], "two-tower", "{health}");

    // A known user: their history is the user side.
    let (status, answer) = common::recommend(&base, &json!({"user": "U4", "k": 5})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matcher"], "two-tower", "{answer}");
    assert_eq!(answer["candidate_source"], "matched", "{answer}");
    assert_eq!(answer["matched"], 20, "{answer}");
    // A history without a user, with words the model cannot read: still the two-tower's.
    let body = json!({"history": ["S00003", "S00004"], "intention": "a puzzle", "k": 5});
    let (status, answer) = common::recommend(&base, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matcher"], "two-tower", "{answer}");
    // Words alone: BM25 retrieves, and the answer says so.
    let (status, answer) = common::recommend(&base, &json!({"intention": "a puzzle"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matcher"], "bm25", "{answer}");
    // Listed candidates: no matcher ran.
    let body = json!({"user": "U4", "candidates": ["S00001", "S00002"]});
    let (status, answer) = common::recommend(&base, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("matcher").is_none(), "{answer}");
}

#[test]
fn the_two_tower_matcher_needs_its_directory_and_only_it_reads_one() {
    let root = tempfile::tempdir().unwrap();
    let (data, model, two_tower) = saved(root.path());
    let load = |matching, two_tower| {
        let options = Options {
            matching,
            two_tower,
            ..Options::default()
        };
        let e = Recommender::load(&model, &data, options)
            .err()
            .expect("refused");
        format!("{e:#}")
    };
    let e = load(Matching::TwoTower, None);
    assert!(e.contains("--two-tower DIR"), "{e}");
    let e = load(Matching::Bm25, Some(two_tower));
    assert!(e.contains("read only by --matcher two-tower"), "{e}");
    // A directory that is not a saved two-tower model: the checkpoint's, with its config.json.
    let e = load(Matching::TwoTower, Some(model.clone()));
    assert!(
        e.contains("not a saved two-tower model's configuration"),
        "{e}"
    );
}
