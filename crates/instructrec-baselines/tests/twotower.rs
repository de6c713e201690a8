use std::collections::HashSet;

use instructrec_baselines::twotower::{train, TwoTowerConfig};
use instructrec_baselines::TextInput;
use instructrec_baselines::{TextSource, Trainable, TwoTower};
use instructrec_data::Fold;
use instructrec_eval::harness::{build_cases, mine_hard_negatives, with_candidates};
use instructrec_eval::{evaluate, synthetic, Protocol, Setting};

fn tiny(seed: u64) -> TwoTowerConfig {
    let mut c = TwoTowerConfig::new(
        TextSource::Trained {
            buckets: 512,
            dim: 16,
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
