mod common;

use common::{tiny, train};
use instructrec_baselines::seqrec::{SeqRec, SeqRecConfig};
use instructrec_baselines::{Popularity, Trainable};
use instructrec_data::Fold;
use instructrec_eval::{evaluate, synthetic, Protocol, Setting};

fn test_metrics(
    model: &SeqRec,
    p: &instructrec_data::Prepared,
    setting: Setting,
) -> instructrec_eval::Metrics {
    evaluate(model, p, Protocol::Sequential, Fold::Test, setting, 64)
        .unwrap()
        .unwrap()
        .metrics
}

#[test]
fn every_parameter_receives_a_gradient() {
    let p = synthetic::prepared(64, 120, 21);
    for config in [SeqRecConfig::sasrec(1), SeqRecConfig::bert4rec(1)] {
        let config = tiny(config);
        let name = config.name();
        let model = SeqRec::new(config, 120).unwrap();
        let grads = model.gradient_norms(&p).unwrap();
        assert!(grads.len() > 20, "{name}: {} parameters", grads.len());
        for (param, norm) in grads {
            // The padding row never appears as an input with a gradient path to the loss in
            // BERT4Rec's output layer, but it does as an input embedding: all must move.
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{name}: {param} got gradient norm {norm}"
            );
        }
    }
}

#[test]
fn same_seed_reproduces_training_and_metrics_exactly() {
    let p = synthetic::prepared(150, 120, 22);
    let mut config = tiny(SeqRecConfig::sasrec(7));
    config.stopping.max_epochs = 3;
    let a = train(&p, config.clone());
    let b = train(&p, config.clone());
    assert_eq!(a.log.epochs.len(), b.log.epochs.len());
    for (x, y) in a.log.epochs.iter().zip(&b.log.epochs) {
        assert_eq!(
            (x.train_loss, x.val_hr1, x.val_ndcg5),
            (y.train_loss, y.val_hr1, y.val_ndcg5)
        );
    }
    assert_eq!(
        a.model.weights_hash().unwrap(),
        b.model.weights_hash().unwrap()
    );
    let ma = test_metrics(&a.model, &p, Setting::Sampled { size: 100 });
    let mb = test_metrics(&b.model, &p, Setting::Sampled { size: 100 });
    assert_eq!(ma, mb);
    config.stopping.seed = 8;
    let c = train(&p, config);
    assert_ne!(
        a.model.weights_hash().unwrap(),
        c.model.weights_hash().unwrap()
    );
}

#[test]
fn sequential_models_learn_the_synthetic_structure() {
    // Users mostly step to the next item id: a sequential model should rank it first far more
    // often than popularity can.
    let p = synthetic::prepared(400, 120, 23);
    let pop = evaluate(
        &Popularity::fit(&p),
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
        64,
    )
    .unwrap()
    .unwrap()
    .metrics;
    for config in [SeqRecConfig::sasrec(3), SeqRecConfig::bert4rec(3)] {
        let mut config = tiny(config);
        // BERT4Rec learns from few masked positions per sequence and needs more epochs.
        config.stopping.max_epochs = 40;
        let name = config.name();
        let trained = train(&p, config);
        let m = test_metrics(&trained.model, &p, Setting::Sampled { size: 10 });
        assert!(
            m.hr1 > 0.5 && m.hr1 > pop.hr1 + 0.2,
            "{name}: HR@1 {} vs popularity {} (log {:?})",
            m.hr1,
            pop.hr1,
            trained.log.epochs
        );
        let full = test_metrics(&trained.model, &p, Setting::FullRanking);
        assert!(full.hr10 > 0.3, "{name}: full-ranking HR@10 {}", full.hr10);
    }
}

#[test]
fn checkpoint_round_trip_gives_identical_scores() {
    let p = synthetic::prepared(80, 120, 24);
    let mut config = tiny(SeqRecConfig::bert4rec(5));
    config.stopping.max_epochs = 2;
    let trained = train(&p, config.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    trained.model.save(&path).unwrap();
    let mut fresh = SeqRec::new(config, 120).unwrap();
    assert_ne!(
        fresh.weights_hash().unwrap(),
        trained.model.weights_hash().unwrap()
    );
    fresh.load(&path).unwrap();
    assert_eq!(
        fresh.weights_hash().unwrap(),
        trained.model.weights_hash().unwrap()
    );
    let s = Setting::Sampled { size: 10 };
    assert_eq!(
        test_metrics(&fresh, &p, s),
        test_metrics(&trained.model, &p, s)
    );
}
