//! The shared training loop's rules, through the models that use each: when it stops, which
//! weights it keeps, and when it reuses a checkpoint.

mod common;

use common::{tiny, train};
use instructrec_baselines::seqrec::{self, SeqRec, SeqRecConfig};
use instructrec_baselines::twotower::{self, TwoTowerConfig};
use instructrec_baselines::{
    fit, Baseline, FitOptions, TextInput, TextSource, Trainable, TwoTower, WordHash,
};
use instructrec_eval::{synthetic, TrainingStop};

#[test]
fn patience_stops_training_and_brings_back_the_best_epoch() {
    let p = synthetic::prepared(150, 120, 22);
    let mut config = tiny(SeqRecConfig::bert4rec(7));
    config.stopping.max_epochs = 8;
    config.stopping.patience = Some(2);
    let full = train(&p, config.clone());
    let log = &full.log;
    assert_eq!(log.stop, TrainingStop::Converged);
    assert_eq!(
        log.epochs.len(),
        log.best_epoch + config.stopping.patience.unwrap()
    );
    // The same seed stopped at the best epoch has exactly the weights that were restored.
    config.stopping.max_epochs = log.best_epoch;
    let at_best = train(&p, config);
    assert_eq!(
        full.model.weights_hash().unwrap(),
        at_best.model.weights_hash().unwrap()
    );
}

#[test]
fn an_epoch_budget_lets_the_epoch_finish_and_does_not_count_the_last() {
    let p = synthetic::prepared(60, 120, 9);
    let mut config = tiny(SeqRecConfig::sasrec(1));
    config.stopping.time_budget_s = 0.0;
    config.stopping.max_epochs = 3;
    let log = train(&p, config.clone()).log;
    assert_eq!((log.epochs.len(), log.stop), (1, TrainingStop::TimeBudget));
    config.stopping.max_epochs = 1;
    assert_eq!(train(&p, config).log.stop, TrainingStop::MaxEpochs);
}

#[test]
fn a_step_budget_stops_at_the_first_step_past_it_even_in_the_last_epoch() {
    let p = synthetic::prepared(60, 120, 9);
    let mut config = TwoTowerConfig::new(
        TextSource::Trained {
            buckets: 64,
            dim: 8,
            words: WordHash::Fnv1a64,
        },
        1,
    );
    config.sequence.dim = 8;
    config.sequence.ff_dim = 8;
    config.sequence.max_len = 4;
    config.stopping.batch_size = 8;
    config.stopping.max_epochs = 1;
    config.stopping.time_budget_s = 0.0;
    let model = TwoTower::new(config, &p, TextInput::default()).unwrap();
    let log = twotower::train(&p, model).unwrap().log;
    assert_eq!((log.epochs.len(), log.stop), (1, TrainingStop::TimeBudget));
}

#[test]
fn zero_epochs_is_refused() {
    let p = synthetic::prepared(20, 120, 9);
    let mut config = tiny(SeqRecConfig::sasrec(1));
    config.stopping.max_epochs = 0;
    let model = SeqRec::new(config, 120).unwrap();
    let e = seqrec::train(&p, model).err().unwrap();
    assert!(e.to_string().contains("max_epochs"), "{e}");
}

#[test]
fn a_checkpoint_is_reused_only_for_the_same_configuration_and_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = FitOptions {
        seed: 3,
        time_budget_s: None,
        max_epochs: Some(1),
        validation_stride: Some(3),
        checkpoint_dir: Some(dir.path().to_path_buf()),
        text_encoder: None,
        search: None,
        save_two_tower: None,
    };
    let p = synthetic::prepared(40, 120, 9);
    let trained = fit(Baseline::SasRec, &p, &options).unwrap();
    assert_eq!(trained.loaded_from, None);
    let loaded = fit(Baseline::SasRec, &p, &options).unwrap();
    assert_eq!(
        loaded.loaded_from,
        Some(dir.path().join("sasrec.safetensors"))
    );
    assert_eq!(loaded.model_hash, trained.model_hash);
    assert_eq!(loaded.training.unwrap().epochs.len(), 1);

    options.max_epochs = Some(2);
    let retrained = fit(Baseline::SasRec, &p, &options).unwrap();
    assert_eq!(retrained.loaded_from, None);
    assert_eq!(retrained.training.unwrap().epochs.len(), 2);
    let mut changed = p.clone();
    changed
        .manifest
        .checksums
        .insert("interactions.jsonl".into(), "another file".into());
    let fitted = fit(Baseline::SasRec, &changed, &options).unwrap();
    assert_eq!(fitted.loaded_from, None);
}
