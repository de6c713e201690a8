//! The Rust half of `scripts/bench_vs_torch.sh`: the same T5 checkpoint and the same inputs as
//! the PyTorch + transformers half (scripts/bench_vs_torch.py), timed on the same work.
//!
//!     bench_vs_torch prepare <small|base> <dir>   # random checkpoint + inputs.json into <dir>
//!     bench_vs_torch run <dir> [runs]             # times everything, prints one JSON object
//!
//! `prepare` writes `config.json`, `model.safetensors` (f32, untied LM head as the presets) and
//! `inputs.json` (seeded token ids: one instruction with 100 candidates, a training batch, a
//! catalogue of titles for generation). `run` loads them back, so both sides use identical
//! weights, and reports the median wall time of `runs` timed repetitions after one untimed
//! warm-up, with the candidates' scores so that the script can check both sides agree.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use instructrec_model::score::{score_candidates, Encoded};
use instructrec_model::{
    generate_titles, seeded_var_builder, seq2seq_loss, shift_right, Dropout, Preset, T5Config,
    TitleTrie, T5,
};
use instructrec_train::optimizer::{AdamWConfig, FusedAdamW, Param};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

const SOURCE_LEN: usize = 256;
const CANDIDATES: usize = 100;
const TRAIN_BATCH: usize = 16;
const TRAIN_SOURCE: usize = 128;
const TRAIN_TARGET: usize = 32;
const TITLES: usize = 2000;
const NUM_BEAMS: usize = 20;
const TOP_K: usize = 10;
const LEARNING_RATE: f64 = 1e-4;

/// Token ids shared with the Python side. Candidates and titles have no EOS: each side appends
/// it (scoring) or lets the trie append it (generation).
#[derive(Serialize, Deserialize)]
struct Inputs {
    instruction: Vec<u32>,
    candidates: Vec<Vec<u32>>,
    train_source: Vec<Vec<u32>>,
    train_target: Vec<Vec<u32>>,
    titles: Vec<Vec<u32>>,
    num_beams: usize,
    top_k: usize,
    learning_rate: f64,
}

fn ids(rng: &mut ChaCha8Rng, n: usize, vocab: usize) -> Vec<u32> {
    // 0..3 are pad, EOS and unk.
    (0..n).map(|_| rng.random_range(3..vocab as u32)).collect()
}

fn make_inputs(vocab: usize) -> Inputs {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let instruction = ids(&mut rng, SOURCE_LEN - 1, vocab);
    let varied = |rng: &mut ChaCha8Rng, lo: usize, hi: usize| {
        let n = rng.random_range(lo..=hi);
        ids(rng, n, vocab)
    };
    let candidates = (0..CANDIDATES).map(|_| varied(&mut rng, 5, 19)).collect();
    let train_source = (0..TRAIN_BATCH)
        .map(|_| ids(&mut rng, TRAIN_SOURCE, vocab))
        .collect();
    let train_target = (0..TRAIN_BATCH)
        .map(|_| ids(&mut rng, TRAIN_TARGET, vocab))
        .collect();
    // Titles drawn from a small word list so that they share prefixes, as real titles do.
    let words = ids(&mut rng, 200, vocab);
    let titles = (0..TITLES)
        .map(|_| {
            let n = rng.random_range(2..=10);
            (0..n)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect()
        })
        .collect();
    Inputs {
        instruction,
        candidates,
        train_source,
        train_target,
        titles,
        num_beams: NUM_BEAMS,
        top_k: TOP_K,
        learning_rate: LEARNING_RATE,
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> AnyResult<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn prepare(preset: Preset, dir: &Path) -> AnyResult<()> {
    std::fs::create_dir_all(dir)?;
    let cfg = T5Config::preset(preset);
    let varmap = VarMap::new();
    let model = T5::new(&cfg, seeded_var_builder(&varmap, 0, &Device::Cpu))?;
    let weights = dir.join("model.safetensors");
    let tmp = dir.join("model.safetensors.tmp");
    varmap.save(&tmp)?;
    std::fs::rename(&tmp, &weights)?;
    write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(model.config())?.as_bytes(),
    )?;
    write_atomic(
        &dir.join("inputs.json"),
        serde_json::to_string(&make_inputs(cfg.vocab_size))?.as_bytes(),
    )?;
    Ok(())
}

fn load(dir: &Path) -> AnyResult<(T5, VarMap, Inputs)> {
    let cfg: T5Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let mut varmap = VarMap::new();
    let model = T5::new(&cfg, seeded_var_builder(&varmap, 0, &Device::Cpu))?;
    varmap.load(dir.join("model.safetensors"))?;
    let inputs = serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json"))?)?;
    Ok((model, varmap, inputs))
}

/// Median wall seconds of `runs` calls of `f`, after one untimed warm-up call.
fn time<T>(runs: usize, mut f: impl FnMut() -> AnyResult<T>) -> AnyResult<f64> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        std::hint::black_box(f()?);
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn with_eos(rows: &[Vec<u32>], eos: u32) -> Vec<Vec<u32>> {
    rows.iter()
        .map(|r| r.iter().copied().chain([eos]).collect())
        .collect()
}

fn run(dir: &Path, runs: usize) -> AnyResult<serde_json::Value> {
    let (model, varmap, inputs) = load(dir)?;
    let cfg = model.config().clone();
    let dev = Device::Cpu;
    let eos = cfg.eos_token_id;
    let instruction: Vec<u32> = inputs.instruction.iter().copied().chain([eos]).collect();

    let mut scoring = serde_json::Map::new();
    for n in [20, CANDIDATES] {
        let cands = with_eos(&inputs.candidates[..n], eos);
        let score = || -> AnyResult<_> {
            let enc = Encoded::new(&model, &instruction)?;
            Ok(score_candidates(&model, &enc, &cands)?)
        };
        let sums: Vec<f32> = score()?.iter().map(|s| s.sum).collect();
        let seconds = time(runs, score)?;
        scoring.insert(n.to_string(), json!({ "seconds": seconds, "scores": sums }));
    }

    let (b, s, t) = (
        inputs.train_source.len(),
        inputs.train_source[0].len(),
        inputs.train_target[0].len(),
    );
    let src = Tensor::from_vec(inputs.train_source.concat(), (b, s), &dev)?;
    let mask = src.ones_like()?;
    let labels =
        Tensor::from_vec(inputs.train_target.concat(), (b, t), &dev)?.to_dtype(DType::I64)?;
    let dec_in = shift_right(&labels, cfg.decoder_start_token_id, cfg.pad_token_id)?;
    let mut vars: Vec<_> = varmap.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let params = vars
        .into_iter()
        .map(|(name, var)| Param::with_default_decay(name, var))
        .collect();
    let mut adamw = FusedAdamW::new(params, AdamWConfig::default())?;
    let mut dropout = Dropout::new(cfg.dropout_rate as f32, 1);
    let (mut forward_backward, mut optimizer, mut faults) = (Vec::new(), Vec::new(), Vec::new());
    let train_seconds = time(runs, || {
        let faulted = instructrec_model::cpu::minor_page_faults();
        let start = Instant::now();
        let logits = model.forward(&src, &mask, &dec_in, Some(&mut dropout))?;
        let grads = seq2seq_loss(&logits, &labels)?.backward()?;
        let mid = Instant::now();
        adamw.accumulate(&grads, 1.0)?;
        adamw.step(inputs.learning_rate, Some(1.0))?;
        forward_backward.push((mid - start).as_secs_f64());
        optimizer.push(mid.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (faulted, instructrec_model::cpu::minor_page_faults()) {
            faults.push((b - a) as f64);
        }
        Ok(())
    })?;
    let median = |mut v: Vec<f64>| {
        v.remove(0); // the warm-up
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };

    // The training steps above changed the weights: reload them for generation.
    let (model, _, _) = load(dir)?;
    let trie = TitleTrie::new(&inputs.titles, eos)?;
    let enc = Encoded::new(&model, &instruction)?;
    let generated = generate_titles(&model, &enc, &trie, inputs.top_k, inputs.num_beams)?;
    let gen_seconds = time(runs, || {
        let enc = Encoded::new(&model, &instruction)?;
        Ok(generate_titles(
            &model,
            &enc,
            &trie,
            inputs.top_k,
            inputs.num_beams,
        )?)
    })?;

    Ok(json!({
        "threads": candle_core::utils::get_num_threads(),
        "rayon_threads": rayon::current_num_threads(),
        "runs": runs,
        "scoring": scoring,
        "train": {
            "batch": b, "source_len": s, "target_len": t,
            "seconds": train_seconds,
            "forward_backward_seconds": median(forward_backward),
            "optimizer_seconds": median(optimizer),
            // Pages mapped afresh in a step: none when freed memory is reused.
            "minor_faults": if faults.is_empty() { serde_json::Value::Null } else { json!(median(faults)) },
        },
        "generate": {
            "seconds": gen_seconds,
            "titles": generated.iter().map(|g| json!({"tokens": g.tokens, "sum": g.sum})).collect::<Vec<_>>(),
        },
    }))
}

fn main() -> AnyResult<()> {
    // The setting docs/performance.md recommends for the instructrec binary.
    instructrec_model::cpu::serial_elementwise_ops();
    instructrec_model::cpu::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["prepare", preset, dir] => prepare(preset.parse()?, &PathBuf::from(dir)),
        ["run", dir, rest @ ..] => {
            let runs = rest.first().map_or(Ok(3), |r| r.parse())?;
            if runs == 0 {
                return Err("runs must be at least 1".into());
            }
            println!("{}", run(&PathBuf::from(dir), runs)?);
            Ok(())
        }
        _ => Err("usage: bench_vs_torch prepare <tiny|small|base> <dir> | run <dir> [runs]".into()),
    }
}
