//! A tuning run put together by [`Setup`], as `instructrec train` does: a resumed run may be
//! extended to more steps but not otherwise changed, and the checkpoint records the lines it was
//! tuned on where the held-out evaluation reads them.

use instructrec_instructions::{LineFilter, PreferenceKind, TrainingRecord};
use instructrec_model::Preset;
use instructrec_train::session::{Existing, ItemTokens, ModelSource, NewTokenizer, Setup, Tuning};
use instructrec_train::trainer::{RunControl, TrainConfig, LAST_DIR};
use instructrec_train::TrainError;

fn write_lines(path: &std::path::Path) {
    let games = [
        "Red Racer",
        "Blue Puzzle",
        "Green Blocks",
        "Space Quest",
        "Farm Life",
    ];
    let text: String = (0..30)
        .map(|i| {
            let (a, b) = (games[i % 5], games[(i * 3 + 1) % 5]);
            format!(
                "{}\n",
                serde_json::json!({
                    "instruction": format!("The user played {a}. What next?"),
                    "target": b,
                    "preference": if i % 3 == 0 { "P0" } else { "P1" },
                })
            )
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

fn setup(out: &std::path::Path, max_steps: u64, lr: f64) -> Setup {
    Setup {
        out: out.to_path_buf(),
        model: ModelSource::Preset(Preset::Tiny),
        tokenizer: NewTokenizer {
            corpus: Vec::new(),
            vocab_size: 200,
        },
        item_tokens: ItemTokens::default(),
        existing: Existing::Resume,
        config: TrainConfig {
            seed: 3,
            epochs: 10,
            max_steps: Some(max_steps),
            batch_size: 4,
            lr,
            warmup_steps: 1,
            run: RunControl {
                progress: false,
                ..TrainConfig::default().run
            },
            ..TrainConfig::default()
        },
    }
}

#[test]
fn a_resumed_run_extends_to_more_steps_refuses_other_changes_and_records_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    write_lines(&train);
    let out = dir.path().join("run");
    let lines = LineFilter {
        preferences: vec![PreferenceKind::Implicit],
        ..LineFilter::default()
    };
    let tuning = Tuning {
        train: &train,
        lines: lines.clone(),
        valid: None,
        valid_sample: 10,
        prepared: None,
    };

    let first = setup(&out, 3, 1e-3).tune(&tuning, None).unwrap();
    assert_eq!(first.report.state.step, 3);
    let record = TrainingRecord::read(&out.join(LAST_DIR)).unwrap();
    assert_eq!(record.lines.as_ref(), Some(&lines));
    assert_eq!(
        (record.steps, record.seed, record.train_examples),
        (3, 3, 20)
    );

    // Asking the finished run again for its own length does nothing more.
    let again = setup(&out, 3, 1e-3).tune(&tuning, None).unwrap();
    assert_eq!(again.report.state.step, 3);

    let refused = |s: Setup, field: &str| {
        let e = s.tune(&tuning, None).unwrap_err();
        assert!(matches!(e, TrainError::Changed { .. }), "{e}");
        let message = e.to_string();
        assert!(
            message.contains(&format!("{field} (checkpoint")),
            "{message}"
        );
    };
    refused(setup(&out, 3, 2e-3), "lr");
    refused(setup(&out, 2, 1e-3), "max_steps");
    let mut fewer_epochs = setup(&out, 5, 1e-3);
    fewer_epochs.config.epochs = 9;
    refused(fewer_epochs, "epochs");

    let extended = setup(&out, 5, 1e-3).tune(&tuning, None).unwrap();
    assert_eq!(extended.report.state.step, 5);
    assert_eq!(extended.report.state.total_steps, 5);
    assert_eq!(extended.report.state.config.max_steps, Some(5));
    assert_eq!(TrainingRecord::read(&out.join(LAST_DIR)).unwrap().steps, 5);
}

#[test]
fn a_new_run_never_replaces_a_checkpoint_unless_told_to_and_two_runs_cannot_share_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    write_lines(&train);
    let out = dir.path().join("run");
    let tuning = Tuning {
        train: &train,
        lines: LineFilter::default(),
        valid: None,
        valid_sample: 10,
        prepared: None,
    };
    setup(&out, 3, 1e-3).tune(&tuning, None).unwrap();
    let trained = std::fs::read(out.join(LAST_DIR).join("model.safetensors")).unwrap();

    let fresh = |existing| Setup {
        existing,
        ..setup(&out, 2, 2e-3)
    };
    let e = fresh(Existing::Refuse)
        .tune(&tuning, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a checkpoint is already there; pass --resume"),
        "{e}"
    );
    assert!(e.contains(&out.join(LAST_DIR).display().to_string()), "{e}");
    let kept = std::fs::read(out.join(LAST_DIR).join("model.safetensors")).unwrap();
    assert_eq!(
        kept, trained,
        "the refused run left the checkpoint as it was"
    );

    // Another run holding the folder's lock: a second writer is refused at once.
    let held = instructrec_data::OutputLock::acquire(&out).unwrap();
    let e = setup(&out, 3, 1e-3)
        .tune(&tuning, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another instructrec run is writing it"), "{e}");
    drop(held);

    let replaced = fresh(Existing::Overwrite).tune(&tuning, None).unwrap();
    assert_eq!(replaced.report.state.step, 2);
    assert_eq!(TrainingRecord::read(&out.join(LAST_DIR)).unwrap().steps, 2);
}
