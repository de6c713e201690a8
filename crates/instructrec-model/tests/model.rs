//! Training-path, loading/saving, scoring and generation behaviour on tiny models.

use candle_core::{DType, Device, Tensor};
use instructrec_model::generate::{generate_titles, TitleTrie};
use instructrec_model::score::{label_probabilities, score_candidates, Encoded};
use instructrec_model::{
    seq2seq_loss, seq2seq_nll, shift_right, Dropout, ModelError, Preset, Seq2Seq, T5Config,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

fn tokenizer() -> tokenizers::Tokenizer {
    tokenizers::Tokenizer::from_file(fixture("t5-relu-tied").join("tokenizer.json")).unwrap()
}

fn tiny(seed: u64) -> Seq2Seq {
    Seq2Seq::new_random(
        &T5Config::preset(Preset::Tiny),
        tokenizer(),
        &Device::Cpu,
        seed,
    )
    .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn random_ids(rng: &mut ChaCha8Rng, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|_| rng.random_range(3..vocab as u32))
        .collect()
}

/// A padded batch: (input ids, mask, labels with -100 padding), EOS-terminated rows.
fn batch(
    rng: &mut ChaCha8Rng,
    vocab: usize,
    src: &[usize],
    tgt: &[usize],
) -> (Tensor, Tensor, Tensor) {
    let s = *src.iter().max().unwrap();
    let t = *tgt.iter().max().unwrap();
    let (mut ids, mut mask, mut labels) = (vec![], vec![], vec![]);
    for (&n, &m) in src.iter().zip(tgt) {
        let mut row = random_ids(rng, n - 1, vocab);
        row.push(1);
        ids.extend(row.iter().copied().chain(std::iter::repeat(0)).take(s));
        mask.extend((0..s).map(|i| u32::from(i < n)));
        let mut lab: Vec<i64> = random_ids(rng, m - 1, vocab)
            .into_iter()
            .map(i64::from)
            .collect();
        lab.push(1);
        labels.extend(lab.into_iter().chain(std::iter::repeat(-100)).take(t));
    }
    let d = Device::Cpu;
    let b = src.len();
    (
        Tensor::from_vec(ids, (b, s), &d).unwrap(),
        Tensor::from_vec(mask, (b, s), &d).unwrap(),
        Tensor::from_vec(labels, (b, t), &d).unwrap(),
    )
}

fn loss_with(s2s: &Seq2Seq, dropout: Option<&mut Dropout>, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (ids, mask, labels) = batch(&mut rng, s2s.config().vocab_size, &[14, 6], &[12, 5]);
    let dec_in = shift_right(&labels, 0, 0).unwrap();
    let logits = s2s.model.forward(&ids, &mask, &dec_in, dropout).unwrap();
    seq2seq_loss(&logits, &labels).unwrap()
}

/// Catches ops without a backward pass (candle's fused softmax / norms): every weight must get
/// a non-zero gradient from one backward pass of the loss, with and without dropout.
#[test]
fn every_trainable_tensor_gets_a_nonzero_gradient() {
    let models = [
        ("tiny preset", tiny(3)),
        (
            "tied fixture",
            Seq2Seq::load_hf_dir(&fixture("t5-relu-tied"), &Device::Cpu).unwrap(),
        ),
        (
            "untied fixture",
            Seq2Seq::load_hf_dir(&fixture("flan-gated-untied"), &Device::Cpu).unwrap(),
        ),
    ];
    for (name, s2s) in &models {
        for dropout in [None, Some(Dropout::new(0.1, 5))] {
            let mut dropout = dropout;
            let grads = loss_with(s2s, dropout.as_mut(), 11).backward().unwrap();
            let vars = s2s.varmap.data().lock().unwrap();
            assert!(vars.len() > 20, "{name}: only {} vars", vars.len());
            for (pname, var) in vars.iter() {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no gradient for {pname}"));
                let m = g
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    m > 0.0 && m.is_finite(),
                    "{name}: gradient of {pname} is {m}"
                );
            }
        }
    }
}

#[test]
fn seeded_creation_and_dropout_are_reproducible() {
    let (a, b, c) = (tiny(1), tiny(1), tiny(2));
    let weights = |s: &Seq2Seq| {
        let mut v: Vec<(String, Vec<f32>)> = s
            .varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c));
    assert!(!a.model.is_tied(), "presets are untied like Flan-T5");

    let l1 = loss_with(&a, Some(&mut Dropout::new(0.2, 9)), 4);
    let l2 = loss_with(&a, Some(&mut Dropout::new(0.2, 9)), 4);
    let l3 = loss_with(&a, Some(&mut Dropout::new(0.2, 10)), 4);
    let l0 = loss_with(&a, None, 4);
    let v = |t: &Tensor| t.to_scalar::<f32>().unwrap();
    assert_eq!(v(&l1), v(&l2));
    assert_ne!(v(&l1), v(&l3));
    assert_ne!(v(&l1), v(&l0));
}

#[test]
fn nll_sum_and_mean_agree_and_ignore_padding() {
    let s2s = tiny(5);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (ids, mask, labels) = batch(&mut rng, s2s.config().vocab_size, &[9, 4], &[10, 3]);
    let logits = s2s
        .model
        .forward(&ids, &mask, &shift_right(&labels, 0, 0).unwrap(), None)
        .unwrap();
    let (sum, n) = seq2seq_nll(&logits, &labels).unwrap();
    assert_eq!(n, 13);
    let mean = seq2seq_loss(&logits, &labels).unwrap();
    let (s, m) = (
        sum.to_scalar::<f32>().unwrap(),
        mean.to_scalar::<f32>().unwrap(),
    );
    assert!((s / 13.0 - m).abs() < 1e-6);
    let all_ignored = labels.ones_like().unwrap().affine(0.0, -100.0).unwrap();
    assert!(seq2seq_loss(&logits, &all_ignored).is_err());
}

fn logits_of(s2s: &Seq2Seq, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (ids, mask, labels) = batch(&mut rng, s2s.config().vocab_size, &[8, 5], &[11, 4]);
    s2s.model
        .forward(&ids, &mask, &shift_right(&labels, 0, 0).unwrap(), None)
        .unwrap()
}

#[test]
fn save_and_load_round_trip_keeps_logits_and_head() {
    let dir = tempfile::tempdir().unwrap();
    for s2s in [
        tiny(8),
        Seq2Seq::load_hf_dir(&fixture("t5-relu-tied"), &Device::Cpu).unwrap(),
        Seq2Seq::load_hf_dir(&fixture("flan-gated-untied"), &Device::Cpu).unwrap(),
    ] {
        let out = dir.path().join("model");
        // Saving twice replaces the directory as a whole.
        s2s.save_hf_dir(&out).unwrap();
        s2s.save_hf_dir(&out).unwrap();
        let back = Seq2Seq::load_hf_dir(&out, &Device::Cpu).unwrap();
        assert_eq!(back.model.is_tied(), s2s.model.is_tied());
        assert_eq!(back.num_parameters(), s2s.num_parameters());
        assert_eq!(max_abs_diff(&logits_of(&back, 2), &logits_of(&s2s, 2)), 0.0);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("model")]);
    }
}

/// Copies a fixture's config and tokenizer into a fresh directory.
fn fixture_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture(name).join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn loads_sharded_checkpoints_and_names_bad_tensors() {
    let name = "flan-gated-untied";
    let all = candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu)
        .unwrap();
    let reference = Seq2Seq::load_hf_dir(&fixture(name), &Device::Cpu).unwrap();

    // Two shards plus an index, as transformers writes large models.
    let dir = fixture_copy(name);
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let tensors: std::collections::HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), all[*n].clone()))
            .collect();
        candle_core::safetensors::save(&tensors, dir.path().join(file)).unwrap();
        for n in part {
            weight_map.insert((*n).clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let sharded = Seq2Seq::load_hf_dir(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(
        max_abs_diff(&logits_of(&sharded, 3), &logits_of(&reference, 3)),
        0.0
    );

    // A missing tensor is named.
    let dir = fixture_copy(name);
    let missing = "decoder.block.1.layer.1.EncDecAttention.v.weight";
    let mut tensors = all.clone();
    tensors.remove(missing);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    match Seq2Seq::load_hf_dir(dir.path(), &Device::Cpu) {
        Err(e @ ModelError::MissingTensor { .. }) => {
            assert!(e.to_string().contains(missing), "{e}")
        }
        other => panic!("expected a missing-tensor error, got {:?}", other.err()),
    }

    // A mis-shaped tensor is named with both shapes.
    let bad = "encoder.block.0.layer.1.DenseReluDense.wo.weight";
    let mut tensors = all.clone();
    tensors.insert(
        bad.into(),
        Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    match Seq2Seq::load_hf_dir(dir.path(), &Device::Cpu) {
        Err(e @ ModelError::Shape { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(bad) && msg.contains("[3, 5]"), "{msg}")
        }
        other => panic!("expected a shape error, got {:?}", other.err()),
    }

    // No weights at all.
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = Seq2Seq::load_hf_dir(dir.path(), &Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

fn random_candidates(rng: &mut ChaCha8Rng, n: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|_| {
            let len = rng.random_range(1..14);
            let mut c = random_ids(rng, len, vocab);
            c.push(1);
            c
        })
        .collect()
}

#[test]
fn batched_scores_equal_scoring_each_candidate_alone() {
    let s2s = Seq2Seq::load_hf_dir(&fixture("flan-gated-untied"), &Device::Cpu).unwrap();
    let vocab = s2s.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let enc = Encoded::new(&s2s.model, &random_ids(&mut rng, 17, vocab)).unwrap();
    let cands = random_candidates(&mut rng, 20, vocab);
    let batched = score_candidates(&s2s.model, &enc, &cands).unwrap();
    let mut worst = 0f32;
    for (c, b) in cands.iter().zip(&batched) {
        let alone = score_candidates(&s2s.model, &enc, std::slice::from_ref(c)).unwrap()[0];
        // Sums reach -240 here (random untied head), where one f32 ulp is 1.5e-5: compare the
        // sum relatively and the per-token mean absolutely.
        worst = worst.max((alone.sum - b.sum).abs() / alone.sum.abs().max(1.0));
        assert_eq!(alone.tokens, c.len());
        assert!((alone.mean - alone.sum / c.len() as f32).abs() < 1e-6);
        assert!((alone.mean - b.mean).abs() < 1e-5);
    }
    println!("batched vs alone: max relative diff of summed log-likelihood {worst:e}");
    assert!(
        worst < 1e-6,
        "batched scores differ from single ones by {worst} (relative)"
    );

    // The same numbers as the training loss computes (teacher forcing with a copied encoder).
    let c = &cands[3];
    let labels = Tensor::from_vec(
        c.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(),
        (1, c.len()),
        &Device::Cpu,
    )
    .unwrap();
    let logits = s2s
        .model
        .decode(
            &shift_right(&labels, 0, 0).unwrap(),
            &enc.states,
            &enc.mask,
            None,
        )
        .unwrap();
    let (nll, _) = seq2seq_nll(&logits, &labels).unwrap();
    assert!((nll.to_scalar::<f32>().unwrap() + batched[3].sum).abs() < 1e-4);
}

/// Padding the instruction batch (encoder mask) or the candidate batch changes no score.
#[test]
fn padding_does_not_change_scores() {
    let s2s = Seq2Seq::load_hf_dir(&fixture("t5-relu-tied"), &Device::Cpu).unwrap();
    let vocab = s2s.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let instr = random_ids(&mut rng, 9, vocab);
    let longer = random_ids(&mut rng, 25, vocab);
    let enc = Encoded::new(&s2s.model, &instr).unwrap();

    // Encode the instruction padded to 25 inside a batch with a longer one.
    let (ids, mask) =
        instructrec_model::pad_batch(&[instr.clone(), longer], 0, &Device::Cpu).unwrap();
    let states = s2s.model.encode(&ids, &mask, None).unwrap();
    let padded = Encoded {
        states: states.narrow(0, 0, 1).unwrap(),
        mask: mask.narrow(0, 0, 1).unwrap(),
    };
    let cands = random_candidates(&mut rng, 6, vocab);
    let short = vec![cands[0].clone()];
    let mut with_long = vec![cands[0].clone(), vec![7; 30]];
    with_long[1].push(1);
    let a = score_candidates(&s2s.model, &enc, &short).unwrap()[0];
    let b = score_candidates(&s2s.model, &padded, &short).unwrap()[0];
    let c = score_candidates(&s2s.model, &enc, &with_long).unwrap()[0];
    assert!(
        (a.sum - b.sum).abs() < 1e-5,
        "encoder padding changed the score: {a:?} {b:?}"
    );
    assert!(
        (a.sum - c.sum).abs() < 1e-5,
        "candidate padding changed the score: {a:?} {c:?}"
    );
}

#[test]
fn single_token_labels_use_first_step_probabilities() {
    let s2s = tiny(6);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let enc = Encoded::new(
        &s2s.model,
        &random_ids(&mut rng, 12, s2s.config().vocab_size),
    )
    .unwrap();
    let p = label_probabilities(&s2s.model, &enc, &[vec![40], vec![41]]).unwrap();
    let first = Tensor::new(&[[0u32]], &Device::Cpu).unwrap();
    let logits: Vec<f32> = s2s
        .model
        .decode(&first, &enc.states, &enc.mask, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let want = 1.0 / (1.0 + (logits[41] - logits[40]).exp());
    assert!(
        (p[0] - want).abs() < 1e-6 && (p[0] + p[1] - 1.0).abs() < 1e-6,
        "{p:?} vs {want}"
    );

    let limits = instructrec_model::TokenLimits::default();
    let yes = s2s
        .yes_probability("is this a racing game?", limits)
        .unwrap();
    let both = s2s
        .choose("is this a racing game?", &["yes", "no"], limits)
        .unwrap();
    assert_eq!(yes, both[0]);
    assert!((0.0..=1.0).contains(&yes));
}

#[test]
fn incremental_decoding_matches_the_full_decoder_pass() {
    let s2s = Seq2Seq::load_hf_dir(&fixture("flan-gated-untied"), &Device::Cpu).unwrap();
    let vocab = s2s.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let enc = Encoded::new(&s2s.model, &random_ids(&mut rng, 11, vocab)).unwrap();
    let dec: Vec<u32> = (0..3)
        .flat_map(|_| random_ids(&mut rng, 13, vocab))
        .collect();
    let dec = Tensor::from_vec(dec, (3, 13), &Device::Cpu).unwrap();
    let full = s2s
        .model
        .decode(&dec, &enc.states, &enc.mask, None)
        .unwrap();

    // One position at a time, then a chunk of several positions at once.
    let mut cache = s2s.model.start_decoding(&enc.states).unwrap();
    let mut steps = Vec::new();
    for i in 0..10 {
        steps.push(
            s2s.model
                .decode_step(&dec.narrow(1, i, 1).unwrap(), &enc.mask, &mut cache)
                .unwrap(),
        );
    }
    steps.push(
        s2s.model
            .decode_step(&dec.narrow(1, 10, 3).unwrap(), &enc.mask, &mut cache)
            .unwrap(),
    );
    assert_eq!(cache.len(), 13);
    let inc = Tensor::cat(&steps, 1).unwrap();
    let d = max_abs_diff(&inc, &full);
    let scale = full
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    println!("cached vs full decoder logits: max abs diff {d:e} (max |logit| {scale})");
    // Logits reach ~24 here (random untied head), where one f32 ulp is 2e-6.
    assert!(d < 1e-6 * scale, "cached decoding differs by {d}");

    // Reordering rows (as beam search does) keeps each row's cache consistent.
    let mut cache = s2s.model.start_decoding(&enc.states).unwrap();
    s2s.model
        .decode_step(&dec.narrow(1, 0, 5).unwrap(), &enc.mask, &mut cache)
        .unwrap();
    let rows = Tensor::new(&[2u32, 2, 0], &Device::Cpu).unwrap();
    cache.select_rows(&rows).unwrap();
    let next = dec
        .narrow(1, 5, 1)
        .unwrap()
        .contiguous()
        .unwrap()
        .index_select(&rows, 0)
        .unwrap();
    let got = s2s.model.decode_step(&next, &enc.mask, &mut cache).unwrap();
    let want = full
        .narrow(1, 5, 1)
        .unwrap()
        .contiguous()
        .unwrap()
        .index_select(&rows, 0)
        .unwrap();
    assert!(max_abs_diff(&got, &want) < 1e-6 * scale);
}

fn catalogue(rng: &mut ChaCha8Rng, vocab: usize) -> Vec<Vec<u32>> {
    let mut titles: Vec<Vec<u32>> = (0..30)
        .map(|_| {
            let len = rng.random_range(1..7);
            random_ids(rng, len, vocab)
        })
        .collect();
    // Shared prefixes, a title that is a prefix of another, and a duplicate title.
    let base = titles[0].clone();
    titles.push([base.clone(), vec![5, 6]].concat());
    titles.push([base.clone(), vec![5, 7]].concat());
    titles.push(base[..1].to_vec());
    titles.push(titles[4].clone());
    titles
}

#[test]
fn generation_returns_only_catalogue_titles() {
    let s2s = tiny(12);
    let vocab = s2s.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    let titles = catalogue(&mut rng, vocab);
    let trie = TitleTrie::new(&titles, 1).unwrap();
    for _ in 0..25 {
        let enc = Encoded::new(&s2s.model, &random_ids(&mut rng, 10, vocab)).unwrap();
        let out = generate_titles(&s2s.model, &enc, &trie, 5, 6).unwrap();
        assert_eq!(out.len(), 5);
        for g in &out {
            assert_eq!(g.tokens.last(), Some(&1));
            let body = &g.tokens[..g.tokens.len() - 1];
            let matching: Vec<usize> = (0..titles.len()).filter(|&i| titles[i] == body).collect();
            assert!(
                !matching.is_empty(),
                "generated a non-catalogue sequence {body:?}"
            );
            assert_eq!(g.items, matching);
            let scored =
                score_candidates(&s2s.model, &enc, std::slice::from_ref(&g.tokens)).unwrap()[0];
            assert!(
                (scored.sum - g.sum).abs() < 1e-4,
                "{} vs {}",
                scored.sum,
                g.sum
            );
        }
        assert!(out.windows(2).all(|w| w[0].sum >= w[1].sum));
        let mut seen: Vec<&Vec<u32>> = out.iter().map(|g| &g.tokens).collect();
        seen.dedup();
        assert_eq!(seen.len(), out.len());
    }
}

/// With at least as many beams as titles nothing is pruned: the search returns exactly the
/// best titles by score.
#[test]
fn exhaustive_beam_search_equals_ranking_by_score() {
    let s2s = tiny(13);
    let vocab = s2s.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let titles = catalogue(&mut rng, vocab);
    let trie = TitleTrie::new(&titles, 1).unwrap();
    let mut distinct = titles.clone();
    distinct.sort();
    distinct.dedup();
    let with_eos: Vec<Vec<u32>> = distinct
        .iter()
        .map(|t| [t.clone(), vec![1]].concat())
        .collect();
    for _ in 0..5 {
        let enc = Encoded::new(&s2s.model, &random_ids(&mut rng, 8, vocab)).unwrap();
        let scores = score_candidates(&s2s.model, &enc, &with_eos).unwrap();
        let mut order: Vec<usize> = (0..with_eos.len()).collect();
        order.sort_by(|&a, &b| scores[b].sum.total_cmp(&scores[a].sum));
        let out = generate_titles(&s2s.model, &enc, &trie, 8, distinct.len()).unwrap();
        let got: Vec<&Vec<u32>> = out.iter().map(|g| &g.tokens).collect();
        let want: Vec<&Vec<u32>> = order[..8].iter().map(|&i| &with_eos[i]).collect();
        assert_eq!(got, want);
    }
}

/// A tokenizer.json from another model (one without the last rows' tokens, such as a base
/// model's beside a checkpoint with item tokens) leaves rows no text reaches: refused.
#[test]
fn a_tokenizer_smaller_than_the_vocabulary_is_refused() {
    let name = "t5-relu-tied";
    let dir = fixture_copy(name);
    std::fs::copy(
        fixture(name).join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    Seq2Seq::load_hf_dir(dir.path(), &Device::Cpu).unwrap();
    let path = dir.path().join("tokenizer.json");
    let mut tokenizer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_array_mut().unwrap();
    let rows = vocab.len();
    vocab.truncate(rows - 2);
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let e = Seq2Seq::load_hf_dir(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&format!(
            "{} tokens, fewer than the model's vocab_size {rows}",
            rows - 2
        )),
        "{e}"
    );
    assert!(e.contains("tokenizer.json"), "{e}");
}

/// bf16 weights (for serving) score close to f32 and rank the same way: softmaxes, norms and
/// the log-likelihoods stay in f32, so only the weights' and activations' rounding differs.
#[test]
fn bf16_placement_scores_like_f32_and_generates() {
    let f32_model = Seq2Seq::load_hf_dir(&fixture("flan-gated-untied"), &Device::Cpu).unwrap();
    let bf16 = Seq2Seq::load_hf_dir(&fixture("flan-gated-untied"), &Device::Cpu)
        .unwrap()
        .placed(&Device::Cpu, instructrec_model::Precision::Bf16)
        .unwrap();
    assert_eq!(bf16.model.dtype(), DType::BF16);
    let vocab = f32_model.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(44);
    let (mut worst, mut pairs, mut agree) = (0f32, 0, 0);
    for _ in 0..4 {
        let prompt = random_ids(&mut rng, 17, vocab);
        let cands = random_candidates(&mut rng, 12, vocab);
        let score = |m: &Seq2Seq| {
            let enc = Encoded::new(&m.model, &prompt).unwrap();
            score_candidates(&m.model, &enc, &cands).unwrap()
        };
        let (a, b) = (score(&f32_model), score(&bf16));
        for i in 0..a.len() {
            // Relative: this random untied head gives per-token means near -17.
            worst = worst.max((a[i].mean - b[i].mean).abs() / a[i].mean.abs().max(1.0));
            for j in i + 1..a.len() {
                if (a[i].mean - a[j].mean).abs() > 0.05 {
                    pairs += 1;
                    agree += usize::from((a[i].mean > a[j].mean) == (b[i].mean > b[j].mean));
                }
            }
        }
    }
    println!("bf16 vs f32: max relative per-token diff {worst}, {agree}/{pairs} pairs alike");
    assert!(
        worst < 0.02,
        "bf16 per-token log-likelihood off by {worst} (relative)"
    );
    assert!(
        pairs > 100 && agree == pairs,
        "{agree} of {pairs} pairs agree"
    );

    let titles = catalogue(&mut rng, vocab);
    let trie = TitleTrie::new(&titles, 1).unwrap();
    let enc = Encoded::new(&bf16.model, &random_ids(&mut rng, 10, vocab)).unwrap();
    let out = generate_titles(&bf16.model, &enc, &trie, 3, 6).unwrap();
    assert_eq!(out.len(), 3);
}
