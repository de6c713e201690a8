//! End-to-end training on a tiny T5 with real Amazon Games text: the loss falls, checkpoints
//! reload to identical logits, and a run stopped half way and resumed from its checkpoint ends
//! with the same weights, bit for bit, as one that never stopped.

use candle_core::{Device, Tensor};
use instructrec_model::{Preset, Seq2Seq, T5Config};
use instructrec_train::data::{collate, encode_examples, Example, TokenizedExample};
use instructrec_train::init::{create_model, item_tokens_from_pieces};
use instructrec_train::pretrain::{span_corruption_examples, CorruptionOptions};
use instructrec_train::tokenizer::{train_tokenizer, TokenizerOptions};
use instructrec_train::trainer::{
    Control, Hooks, RunControl, StopReason, TrainConfig, Trainer, BEST_DIR, LAST_DIR,
};
use tokenizers::Tokenizer;

const ITEMS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/amazon-games/items.jsonl"
);

struct ItemText {
    title: String,
    categories: Vec<String>,
}

fn items(n: usize) -> Vec<ItemText> {
    std::fs::read_to_string(ITEMS)
        .expect("shared datasets present")
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let title = v["title"].as_str()?.to_string();
            let categories = v["categories_raw"]
                .as_array()?
                .iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect::<Vec<_>>();
            (!categories.is_empty()).then_some(ItemText { title, categories })
        })
        .take(n)
        .collect()
}

/// Product-search style instructions: the item's category path as the stated need, its title
/// as the target (the I2 intention of the method, built from the real catalogue).
fn examples(n: usize) -> Vec<Example> {
    items(n)
        .into_iter()
        .map(|it| Example {
            source: format!(
                "A user is looking for: {}. Which product should we recommend?",
                it.categories.join(", ")
            ),
            target: it.title,
        })
        .collect()
}

fn tokenizer() -> Tokenizer {
    let corpus: Vec<String> = items(400)
        .into_iter()
        .flat_map(|it| [it.title, it.categories.join(", ")])
        .chain(examples(50).into_iter().map(|e| e.source))
        .collect();
    train_tokenizer(
        corpus.iter(),
        TokenizerOptions {
            vocab_size: 500,
            extra_ids: 100,
        },
    )
    .unwrap()
}

/// A new tiny-preset model over `tok`, its weights drawn from `seed`.
fn tiny(tok: &Tokenizer, seed: u64) -> Seq2Seq {
    create_model(
        tok.clone(),
        &T5Config::preset(Preset::Tiny),
        seed,
        &Device::Cpu,
    )
    .unwrap()
}

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        seed,
        epochs: 3,
        batch_size: 4,
        grad_accum: 2,
        lr: 3e-3,
        warmup_steps: 2,
        max_source_len: 48,
        max_target_len: 24,
        dropout: Some(0.1),
        bucket_batches: 2,
        run: RunControl {
            time_budget: None,
            save_every: Some(3),
            eval_every: None,
            validate_start: false,
            valid_batch_size: 16,
            progress: false,
            device: Default::default(),
        },
        ..TrainConfig::default()
    }
}

fn weights(model: &Seq2Seq) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = model
        .varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn logits(model: &Seq2Seq, batch: &[TokenizedExample]) -> Vec<f32> {
    let refs: Vec<&TokenizedExample> = batch.iter().collect();
    let b = collate(&refs, 0, &Device::Cpu).unwrap();
    let l: Tensor = model
        .model
        .forward(&b.input_ids, &b.attention_mask, &b.decoder_input_ids, None)
        .unwrap();
    l.flatten_all().unwrap().to_vec1().unwrap()
}

/// Runs `trainer` until it has taken `step` steps, as a kill after that step's checkpoint
/// would, checking that every parameter gets a gradient.
fn stop_after(trainer: &mut Trainer, step: u64) {
    let mut stop = |r: &instructrec_train::trainer::StepReport| {
        assert_eq!(r.without_grad, 0, "every parameter receives a gradient");
        if r.step == step {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let report = trainer
        .run(&mut Hooks {
            after_step: Some(&mut stop),
            ..Hooks::default()
        })
        .unwrap();
    assert_eq!(report.stop, StopReason::Requested);
}

/// A trainer resumed from `dir/last`, with the model loaded from that checkpoint.
fn resume_from_last(
    dir: &std::path::Path,
    data: &[TokenizedExample],
    valid: &[TokenizedExample],
    run: RunControl,
) -> Trainer {
    let model = Seq2Seq::load_hf_dir(&dir.join(LAST_DIR), &Device::Cpu).unwrap();
    Trainer::resume(model, data.to_vec(), valid.to_vec(), run, dir).unwrap()
}

fn encoded(tok: &Tokenizer, n: usize) -> Vec<TokenizedExample> {
    encode_examples(tok, &examples(n), 48, 24).unwrap().0
}

#[test]
fn stopped_and_resumed_run_matches_uninterrupted_run_bit_for_bit() {
    let tok = tokenizer();
    let data = encoded(&tok, 24);
    let valid = encoded(&tok, 30)[24..].to_vec();
    let fresh = || tiny(&tok, 7);
    assert_eq!(weights(&fresh()), weights(&fresh()), "creation is seeded");

    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = Trainer::new(
        fresh(),
        data.clone(),
        Default::default(),
        valid.clone(),
        config(11),
        straight_dir.path(),
    )
    .unwrap();
    let done = straight.run(&mut Hooks::default()).unwrap();
    assert_eq!(done.stop, StopReason::Completed);
    assert_eq!(done.state.step, 9, "3 epochs x ceil(6 batches / 2)");

    // Stop after step 4 (mid-epoch, between two saves), drop everything, resume from disk.
    let split_dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(
        fresh(),
        data.clone(),
        Default::default(),
        valid.clone(),
        config(11),
        split_dir.path(),
    )
    .unwrap();
    stop_after(&mut first, 4);
    assert_eq!(first.state().step, 4);
    drop(first);

    let last = split_dir.path().join(LAST_DIR);
    let mut resumed = resume_from_last(split_dir.path(), &data, &valid, config(11).run);
    let finished = resumed.run(&mut Hooks::default()).unwrap();
    assert_eq!(finished.stop, StopReason::Completed);
    assert_eq!(finished.state.step, 9);
    assert_eq!(finished.state.micro_step, done.state.micro_step);

    let a = weights(straight.model());
    let b = weights(resumed.model());
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{name} differs after resuming");
    }
    assert_ne!(a, weights(&fresh()), "training changed the weights");
    for file in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(last.join(file).is_file(), "last/ lacks {file}");
    }
    assert!(split_dir
        .path()
        .join(BEST_DIR)
        .join("model.safetensors")
        .is_file());

    // A different seed takes a different path (the comparison above can fail).
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = Trainer::new(
        fresh(),
        data,
        Default::default(),
        valid,
        config(12),
        other_dir.path(),
    )
    .unwrap();
    other.run(&mut Hooks::default()).unwrap();
    assert_ne!(weights(other.model()), a);
}

#[test]
fn loss_falls_on_real_examples_and_checkpoint_reloads_identically() {
    let tok = tokenizer();
    let data = encoded(&tok, 50);
    let model = tiny(&tok, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(5);
    cfg.epochs = 30;
    cfg.batch_size = 10;
    cfg.grad_accum = 1;
    cfg.lr = 1e-2;
    cfg.warmup_steps = 10;
    cfg.dropout = Some(0.0);
    cfg.run.save_every = None;
    // Validation on the training examples themselves: this measures fitting, not generalising.
    let mut trainer = Trainer::new(
        model,
        data.clone(),
        Default::default(),
        data.clone(),
        cfg,
        dir.path(),
    )
    .unwrap();
    let initial = trainer.validation_loss().unwrap().unwrap();
    let mut metric_calls = 0;
    let mut metric = |_: &Seq2Seq| -> Result<f64, instructrec_train::trainer::ValidationError> {
        metric_calls += 1;
        Ok(0.0)
    };
    let report = trainer
        .run(&mut Hooks {
            metric: Some(&mut metric),
            ..Hooks::default()
        })
        .unwrap();
    let last_record = report.state.history.last().unwrap().clone();
    let final_loss = last_record.valid_loss.unwrap();
    eprintln!("validation loss {initial:.3} -> {final_loss:.3}");
    assert!(final_loss < 0.7 * initial, "{initial} -> {final_loss}");
    assert_eq!(
        metric_calls, 30,
        "the caller's metric runs after each epoch"
    );

    let reloaded = Seq2Seq::load_hf_dir(&dir.path().join(LAST_DIR), &Device::Cpu).unwrap();
    let probe = &data[..5];
    let a = logits(trainer.model(), probe);
    let b = logits(&reloaded, probe);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

/// Tuning from a trained checkpoint validates the weights it starts from, so `best/` holds them
/// when no step does better on validation.
#[test]
fn starting_weights_are_validated_and_kept_as_best_when_no_step_beats_them() {
    let tok = tokenizer();
    let data = encoded(&tok, 20);
    let model = tiny(&tok, 3);
    let probe = data[..4].to_vec();
    let probe = &probe;
    let start = logits(&model, probe);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(5);
    cfg.epochs = 2;
    cfg.run.validate_start = true;
    let mut trainer = Trainer::new(
        model,
        data.clone(),
        Default::default(),
        data,
        cfg,
        dir.path(),
    )
    .unwrap();
    // A metric that only gets worse: the starting weights score best.
    let mut score = 1.0;
    let mut metric = |_: &Seq2Seq| -> Result<f64, instructrec_train::trainer::ValidationError> {
        score -= 0.1;
        Ok(score)
    };
    let report = trainer
        .run(&mut Hooks {
            metric: Some(&mut metric),
            ..Hooks::default()
        })
        .unwrap();
    let history = &report.state.history;
    assert_eq!(history.len(), 3, "the start and two epoch ends");
    assert_eq!((history[0].step, history[0].train_loss), (0, None));
    assert!(history[1..].iter().all(|r| r.train_loss.is_some()));
    assert_eq!(report.state.best_step, Some(0));
    let best = Seq2Seq::load_hf_dir(&report.best_dir.unwrap(), &Device::Cpu).unwrap();
    assert_eq!(logits(&best, probe), start);
    assert_ne!(
        logits(trainer.model(), probe),
        start,
        "training moved the weights"
    );
}

#[test]
fn time_budget_stops_with_a_checkpoint_and_pretraining_runs_on_items() {
    let tok = tokenizer();
    let texts: Vec<String> = items(40)
        .into_iter()
        .map(|it| format!("{}. {}", it.title, it.categories.join(", ")))
        .collect();
    let corrupted = span_corruption_examples(&tok, &texts, &CorruptionOptions::default()).unwrap();
    assert_eq!(corrupted.len(), 80, "two corrupted copies per item");
    let model = tiny(&tok, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(2);
    cfg.run.time_budget = Some(std::time::Duration::ZERO);
    let mut trainer = Trainer::new(
        model,
        corrupted,
        Default::default(),
        Vec::new(),
        cfg,
        dir.path(),
    )
    .unwrap();
    let report = trainer.run(&mut Hooks::default()).unwrap();
    assert_eq!(report.stop, StopReason::TimeBudget);
    assert_eq!(report.state.step, 1);
    let state = instructrec_train::trainer::read_state(&dir.path().join(LAST_DIR)).unwrap();
    assert_eq!(state.step, 1);
    assert!(
        report.best_dir.is_none(),
        "no validation data, no best checkpoint"
    );
}

/// LoRA: only the adapted matrices move, the loss falls, the merged checkpoint equals the base
/// plus the saved adapters, and a stopped run resumed on its base ends bit-identical.
#[test]
fn lora_trains_adapters_only_merges_exactly_and_resumes_bit_for_bit() {
    use instructrec_train::lora::{Lora, LoraConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
    let tok = tokenizer();
    let data = encoded(&tok, 24);
    let base = || tiny(&tok, 5);
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec!["q".into(), "v".into()],
        base: Some("../base".into()),
    };
    let cfg = TrainConfig {
        lr: 2e-2,
        epochs: 4,
        lora: Some(lora.clone()),
        ..config(3)
    };
    let loss = |m: &Seq2Seq| {
        let refs: Vec<&TokenizedExample> = data.iter().collect();
        let b = collate(&refs, 0, &Device::Cpu).unwrap();
        let l = m
            .model
            .forward(&b.input_ids, &b.attention_mask, &b.decoder_input_ids, None)
            .unwrap();
        let (nll, n) = instructrec_model::seq2seq_nll(&l, &b.labels).unwrap();
        nll.to_scalar::<f32>().unwrap() / n as f32
    };

    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = Trainer::new(
        base(),
        data.clone(),
        Default::default(),
        Vec::new(),
        cfg.clone(),
        straight_dir.path(),
    )
    .unwrap();
    straight.run(&mut Hooks::default()).unwrap();
    let before = weights(&base());
    let after = weights(straight.model());
    let mut adapted = 0;
    for ((name, x), (_, y)) in before.iter().zip(&after) {
        let module = name.trim_end_matches(".weight").rsplit('.').next().unwrap();
        if module == "q" || module == "v" {
            adapted += 1;
            assert_ne!(x, y, "{name} is adapted but did not move");
        } else {
            assert_eq!(x, y, "{name} is frozen but moved");
        }
    }
    assert_eq!(
        adapted,
        2 * (2 + 2 + 2),
        "q and v of 2 encoder + 2x2 decoder attentions"
    );
    let (l0, l1) = (loss(&base()), loss(straight.model()));
    assert!(
        l1 < l0 - 0.3,
        "LoRA training loss fell only from {l0} to {l1}"
    );

    // The checkpoint is the merged model; base + saved adapters rebuild it exactly.
    let last = straight_dir.path().join(LAST_DIR);
    assert!(last.join(ADAPTER_WEIGHTS).is_file() && last.join(ADAPTER_CONFIG).is_file());
    let merged = Seq2Seq::load_hf_dir(&last, &Device::Cpu).unwrap();
    assert_eq!(weights(&merged), after);
    let rebuilt = base();
    Lora::load(&rebuilt, &lora, &last).unwrap();
    assert_eq!(logits(&rebuilt, &data[..4]), logits(&merged, &data[..4]));

    // The adapters alone, as PEFT lays them out, load on their base as the merged model.
    let peft = tempfile::tempdir().unwrap();
    base().save_hf_dir(&peft.path().join("base")).unwrap();
    let adapter = peft.path().join("adapter");
    std::fs::create_dir(&adapter).unwrap();
    std::fs::copy(last.join(ADAPTER_WEIGHTS), adapter.join(ADAPTER_WEIGHTS)).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(last.join(ADAPTER_CONFIG)).unwrap()).unwrap();
    assert_eq!(config["base_model_name_or_path"], "../base", "{config}");
    let write_config = |config: &serde_json::Value| {
        std::fs::write(adapter.join(ADAPTER_CONFIG), config.to_string()).unwrap()
    };
    config["base_model_name_or_path"] = serde_json::Value::Null;
    write_config(&config);
    let e = Seq2Seq::load_hf_dir(&adapter, &Device::Cpu).err().unwrap();
    assert!(
        e.to_string().contains("base_model_name_or_path is missing"),
        "{e}"
    );
    config["base_model_name_or_path"] = "../base".into();
    write_config(&config);
    let applied = Seq2Seq::load_hf_dir(&adapter, &Device::Cpu).unwrap();
    let (a, m) = (logits(&applied, &data[..4]), logits(&merged, &data[..4]));
    let diff = a
        .iter()
        .zip(&m)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "adapter loaded on its base differs by {diff}");

    // Stop after step 5, resume on the base model: the same adapters and weights, bit for bit.
    let split_dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(
        base(),
        data.clone(),
        Default::default(),
        Vec::new(),
        cfg.clone(),
        split_dir.path(),
    )
    .unwrap();
    stop_after(&mut first, 5);
    drop(first);
    let mut resumed =
        Trainer::resume(base(), data.clone(), Vec::new(), cfg.run, split_dir.path()).unwrap();
    resumed.run(&mut Hooks::default()).unwrap();
    assert_eq!(weights(resumed.model()), after);
    let adapters = |d: &std::path::Path| std::fs::read(d.join(LAST_DIR).join(ADAPTER_WEIGHTS));
    assert_eq!(
        adapters(split_dir.path()).unwrap(),
        adapters(straight_dir.path()).unwrap()
    );
}

#[test]
fn item_tokens_start_at_their_pieces_mean_with_a_fresh_rows_norm() {
    let model = tiny(&tokenizer(), 4);
    let table = |m: &Seq2Seq| {
        m.varmap.data().lock().unwrap()["shared.weight"]
            .as_tensor()
            .to_vec2::<f32>()
            .unwrap()
    };
    let before = table(&model);
    let dim = before[0].len();
    // Row 300 becomes the mean of rows 10 and 11; row 301 (no pieces) stays as drawn.
    item_tokens_from_pieces(&model, &[(300, vec![10, 11]), (301, vec![])]).unwrap();
    let after = table(&model);
    let mean: Vec<f32> = (0..dim)
        .map(|i| (before[10][i] + before[11][i]) / 2.0)
        .collect();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cosine = after[300]
        .iter()
        .zip(&mean)
        .map(|(a, b)| a * b)
        .sum::<f32>()
        / (norm(&after[300]) * norm(&mean));
    assert!((cosine - 1.0).abs() < 1e-5, "cosine {cosine}");
    assert!((norm(&after[300]) - (dim as f32).sqrt()).abs() < 1e-3);
    assert_eq!(after[301], before[301]);
    let changed = (0..before.len()).filter(|&r| after[r] != before[r]).count();
    assert_eq!(changed, 1);
}

#[test]
fn composed_item_tokens_train_through_their_pieces_and_resume_bit_for_bit() {
    use instructrec_train::compose::{ItemComposition, COMPOSITION_FILE};
    let tok = tokenizer();
    let data = encoded(&tok, 24);
    // Stand-in "items": rows that no example uses, so their pieces' rows can only move
    // through the composition.
    let used: std::collections::HashSet<u32> = data
        .iter()
        .flat_map(|e| e.source.iter().chain(&e.target).copied())
        .collect();
    let unused: Vec<u32> = (3..600).filter(|t| !used.contains(t)).take(4).collect();
    let piece = *data[0].target.first().unwrap();
    let rows = vec![
        (unused[0], vec![piece, unused[1]]),
        (unused[2], vec![unused[3]]),
    ];
    let cfg = TrainConfig {
        lr: 2e-2,
        ..config(3)
    };
    let composed = |dir: &std::path::Path| {
        let model = tiny(&tok, 6);
        let items = ItemComposition::attach(&model, &rows).unwrap();
        Trainer::new(
            model,
            data.clone(),
            Default::default(),
            Vec::new(),
            cfg.clone(),
            dir,
        )
        .unwrap()
        .compose_item_tokens(items)
        .unwrap()
    };
    let table = |m: &Seq2Seq| {
        m.varmap.data().lock().unwrap()["shared.weight"]
            .as_tensor()
            .to_vec2::<f32>()
            .unwrap()
    };

    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = composed(straight_dir.path());
    straight.run(&mut Hooks::default()).unwrap();
    let start = table(&tiny(&tok, 6));
    let end = table(straight.model());
    // No example holds either item row. The one with a trained piece follows that piece; the
    // other moves by weight decay alone.
    let moved = |r: u32| {
        let (a, b) = (&start[r as usize], &end[r as usize]);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let (follows, decays) = (moved(unused[0]), moved(unused[2]));
    assert!(follows > 20.0 * decays, "moved {follows} vs {decays}");
    // The saved free rows rebuild the model's item row.
    let saved = candle_core::safetensors::load(
        straight_dir.path().join(LAST_DIR).join(COMPOSITION_FILE),
        &Device::Cpu,
    )
    .unwrap();
    let free = saved["free"].to_vec2::<f32>().unwrap();
    let s = 1.0 / 2f32.sqrt();
    for d in 0..end[0].len() {
        let want = free[unused[0] as usize][d]
            + s * (free[piece as usize][d] + free[unused[1] as usize][d]);
        assert!((end[unused[0] as usize][d] - want).abs() < 1e-5);
    }

    let split_dir = tempfile::tempdir().unwrap();
    let mut first = composed(split_dir.path());
    stop_after(&mut first, 4);
    drop(first);
    let mut resumed = resume_from_last(split_dir.path(), &data, &[], cfg.run.clone());
    resumed.run(&mut Hooks::default()).unwrap();
    assert_eq!(weights(resumed.model()), weights(straight.model()));

    // A configuration that claims composition without one is refused before any checkpoint.
    let claimed = tempfile::tempdir().unwrap();
    let mut unfed = Trainer::new(
        tiny(&tok, 6),
        data.clone(),
        Default::default(),
        Vec::new(),
        TrainConfig {
            compose_item_tokens: true,
            ..cfg.clone()
        },
        claimed.path(),
    )
    .unwrap();
    let err = unfed.run(&mut Hooks::default()).err().unwrap().to_string();
    assert!(err.contains("no composition was given"), "{err}");
    assert!(!claimed.path().join(LAST_DIR).exists());

    // A checkpoint trained without composition says so, naming the file it lacks.
    let plain = tempfile::tempdir().unwrap();
    let err = ItemComposition::load(&tiny(&tok, 6), plain.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(COMPOSITION_FILE) && err.contains("not trained with composed item tokens"),
        "{err}"
    );
}

/// A run of 4 steps extended on resume to 7 continues where it stopped. With constant decay (warm-up
/// done) the learning rates do not depend on where the schedule ends, so it ends with the weights
/// of a run of 7 steps straight through; with linear decay the rest of the schedule is stretched
/// to the new end, so it ends elsewhere, but the same way every time.
#[test]
fn a_finished_run_extended_on_resume_continues_deterministically() {
    use instructrec_train::schedule::Decay;
    let tok = tokenizer();
    let data = encoded(&tok, 24);
    let cfg = |decay: Decay, steps: u64| TrainConfig {
        decay,
        max_steps: Some(steps),
        ..config(11)
    };
    let straight = |decay: Decay| {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Trainer::new(
            tiny(&tok, 7),
            data.clone(),
            Default::default(),
            Vec::new(),
            cfg(decay, 7),
            dir.path(),
        )
        .unwrap();
        assert_eq!(t.run(&mut Hooks::default()).unwrap().state.step, 7);
        weights(t.model())
    };
    let extended = |decay: Decay| {
        let dir = tempfile::tempdir().unwrap();
        let mut short = Trainer::new(
            tiny(&tok, 7),
            data.clone(),
            Default::default(),
            Vec::new(),
            cfg(decay, 4),
            dir.path(),
        )
        .unwrap();
        let done = short.run(&mut Hooks::default()).unwrap();
        assert_eq!((done.stop, done.state.step), (StopReason::Completed, 4));
        drop(short);
        let resumed = resume_from_last(dir.path(), &data, &[], config(11).run);
        let err = resume_from_last(dir.path(), &data, &[], config(11).run)
            .extend(3, Some(3))
            .err()
            .unwrap();
        assert!(err.to_string().contains("cannot be cut"), "{err}");
        let mut resumed = resumed.extend(3, Some(7)).unwrap();
        let report = resumed.run(&mut Hooks::default()).unwrap();
        assert_eq!((report.state.step, report.state.total_steps), (7, 7));
        let saved = instructrec_train::trainer::read_state(&dir.path().join(LAST_DIR)).unwrap();
        assert_eq!(saved.config.max_steps, Some(7));
        weights(resumed.model())
    };
    assert_eq!(extended(Decay::Constant), straight(Decay::Constant));
    let once = extended(Decay::Linear);
    assert_eq!(once, extended(Decay::Linear));
    assert_ne!(once, straight(Decay::Linear));
}
