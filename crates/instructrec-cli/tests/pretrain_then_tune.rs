//! The default model's path on the fixture: next-item pre-training in short prompts of a new
//! model whose tokenizer gives each catalogue title a token, the same in the templates' words
//! from that checkpoint, then instruction tuning. Titles must come out of the saved tokenizer
//! as one token each, and every later checkpoint must keep that tokenizer and the item
//! tokens' composition from their titles' pieces; the tuning validates by HR@1.

mod common;

use common::{instructions, instructrec, prepared, run_ok, train_args};
use tokenizers::Tokenizer;

#[test]
fn next_item_pretraining_with_item_tokens_then_tuning() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = prepared(root);
    let pre = root.join("pre");
    run_ok(&mut instructrec(&[
        "pretrain",
        "--objective",
        "next-item",
        "--wording",
        "compact",
        "--candidates",
        "3",
        "--relative-steps",
        "--lr",
        "2e-2",
        "--data",
        data.to_str().unwrap(),
        "--item-tokens",
        "--item-tokens-from-pieces",
        "--compose-item-tokens",
        "--preset",
        "tiny",
        "--vocab-size",
        "300",
        "--copies",
        "3",
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--out",
        pre.to_str().unwrap(),
        "--quiet",
    ]));
    let tokenizer = Tokenizer::from_file(pre.join("last/tokenizer.json")).unwrap();
    // Fixture titles of two words or more (after `data prepare` unescapes them).
    for title in [
        "The Legend of Zelda",
        "Mario & Luigi: Superstar Saga",
        "Puzzle Quest",
    ] {
        let ids = tokenizer.encode(title, false).unwrap().get_ids().to_vec();
        assert_eq!(ids.len(), 1, "{title:?} -> {ids:?}");
        assert_eq!(tokenizer.id_to_token(ids[0]).as_deref(), Some(title));
    }
    let tetris = tokenizer.encode("Tetris", false).unwrap();
    assert_ne!(
        tetris.get_tokens(),
        ["Tetris"],
        "one-word titles keep their pieces"
    );

    let worded = root.join("worded");
    run_ok(&mut instructrec(&[
        "pretrain",
        "--objective",
        "next-item",
        "--wording",
        "templates",
        "--candidates",
        "3",
        "--data",
        data.to_str().unwrap(),
        "--init",
        pre.join("last").to_str().unwrap(),
        "--compose-item-tokens",
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--out",
        worded.to_str().unwrap(),
        "--quiet",
    ]));
    let saved = std::fs::read(pre.join("last/tokenizer.json")).unwrap();
    assert_eq!(
        std::fs::read(worded.join("last/tokenizer.json")).unwrap(),
        saved
    );

    let instructions = instructions(root, &data);
    let train = instructions.join("train.jsonl");
    let tuned = root.join("tuned");
    let mut args = train_args(train.to_str().unwrap(), tuned.to_str().unwrap(), "2");
    // --init instead of the preset the helper names.
    let preset = args.iter().position(|a| *a == "--preset").unwrap();
    args.drain(preset..preset + 4);
    let init = worded.join("last");
    args.extend(["--init", init.to_str().unwrap(), "--compose-item-tokens"]);
    // Validation HR@1 by the report's mean log-likelihood, within a budget in human words.
    let valid = instructions.join("validation.jsonl");
    args.extend([
        "--valid",
        valid.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--length-normalise",
        "--time-budget",
        "1h 30m",
    ]);
    run_ok(&mut instructrec(&args));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tuned.join("last/trainer_state.json")).unwrap())
            .unwrap();
    let history = state["history"].as_array().unwrap();
    assert!(
        history.iter().all(|r| r["metric"].as_f64().is_some()),
        "every validation scored HR@1: {history:?}"
    );
    assert_eq!(state["config"]["time_budget"]["secs"], 5400);
    assert_eq!(
        std::fs::read(tuned.join("last/tokenizer.json")).unwrap(),
        saved
    );
    // Each stage kept composing: the free rows travel with every checkpoint.
    for dir in [&pre, &worded, &tuned] {
        assert!(dir.join("last/item_composition.safetensors").is_file());
    }

    // Tuning that also composes the rows from the items' category labels extends the title-only
    // composition it starts from, and records it, so that its own resume keeps it.
    let categorised = root.join("categorised");
    let out = args.iter().position(|a| *a == "--out").unwrap();
    args[out + 1] = categorised.to_str().unwrap();
    args.push("--compose-categories");
    run_ok(&mut instructrec(&args));
    // (item, piece) pairs, read from the safetensors header: 8 bytes of length, then JSON.
    let pairs = |dir: &std::path::Path| {
        let bytes = std::fs::read(dir.join("last/item_composition.safetensors")).unwrap();
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
        header["items"]["shape"][0].as_u64().unwrap()
    };
    assert!(
        pairs(&categorised) > pairs(&tuned),
        "{} pairs with categories, {} without",
        pairs(&categorised),
        pairs(&tuned)
    );
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(categorised.join("last/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["config"]["compose_categories"], true);
}
