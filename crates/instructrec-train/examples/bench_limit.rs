//! The hot paths measured against this machine's limit (issue 20): the attainable f32 matrix
//! product rate at 1 and 2 threads, then the default recipe's training step (compact T5, tied
//! head, 16,144 composed item tokens, 64 next-item prompts) split into its parts, and batched
//! scoring of 10 and 100 candidates, each as GFLOP/s and as a fraction of the measured peak.
//! FLOPs are the step's matrix products (`T5Config::forward_flops`, backward counted as twice
//! the forward): the floor no implementation goes under.
//!
//! cargo run --release -p instructrec-train --example bench_limit [-- SOURCE_LEN [STEPS]]

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use instructrec_model::cpu::process_cpu_seconds;
use instructrec_model::score::{score_candidates, Encoded};
use instructrec_model::{Dropout, Preset, Seq2Seq, T5Config, Workload};
use instructrec_train::compose::ItemComposition;
use instructrec_train::data::{collate, TokenizedExample};
use instructrec_train::optimizer::{model_params, AdamWConfig, FusedAdamW};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The default recipe's vocabulary: 8,000 pieces and one token per multi-word title.
const PIECES: usize = 8000;
const ITEMS: usize = 16144;
const BATCH: usize = 64;
/// Next-item targets: the item token and EOS.
const TARGET: usize = 2;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `runs` calls after one warm-up.
fn time<T>(runs: usize, mut f: impl FnMut() -> candle_core::Result<T>) -> candle_core::Result<f64> {
    std::hint::black_box(f()?);
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(f()?);
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

fn set_threads(n: usize) {
    // candle sizes each matrix product's parallelism from this variable at every call.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
}

/// GFLOP/s of a 1024³ f32 matrix product at `threads`.
fn peak(threads: usize) -> candle_core::Result<f64> {
    set_threads(threads);
    let n = 1024;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let data: Vec<f32> = (0..n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let a = Tensor::from_vec(data, (n, n), &Device::Cpu)?;
    let secs = time(5, || a.matmul(&a))?;
    Ok(2.0 * (n as f64).powi(3) / secs / 1e9)
}

/// A word-level tokenizer of `size` tokens with T5's special ids: the model's shape is what is
/// timed, not the text.
fn tokenizer(size: usize) -> tokenizers::Tokenizer {
    use tokenizers::models::wordlevel::WordLevel;
    let mut vocab: HashMap<String, u32> = ["<pad>", "</s>", "<unk>"]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    for id in 3..size as u32 {
        vocab.insert(format!("t{id}"), id);
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("<unk>".into())
        .build()
        .expect("word-level vocabulary");
    tokenizers::Tokenizer::new(model)
}

struct Row {
    what: String,
    secs: f64,
    flops: Option<f64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    instructrec_model::cpu::serial_elementwise_ops();
    instructrec_model::cpu::keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let source: usize = args.next().map_or(Ok(96), |s| s.parse())?;
    let steps: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    // `train` times the training step alone (for a profiler).
    let train_only = args.next().as_deref() == Some("train");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());

    let (peak1, peak2) = if train_only {
        (f64::NAN, f64::NAN)
    } else {
        (peak(1)?, peak(2)?)
    };
    println!(
        "f32 matrix product 1024³: {peak1:.1} GFLOP/s on 1 thread, {peak2:.1} GFLOP/s on 2 \
         ({:.2}x)",
        peak2 / peak1
    );
    set_threads(2);

    // The default recipe's model: compact preset over pieces and composed item tokens.
    let vocab = PIECES + ITEMS;
    let model = Seq2Seq::new_random(
        &T5Config::preset(Preset::Compact),
        tokenizer(vocab),
        &Device::Cpu,
        42,
    )?;
    let cfg = model.config().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let rows: Vec<(u32, Vec<u32>)> = (PIECES..vocab)
        .map(|item| {
            let n = rng.random_range(1..=6);
            let pieces = (0..n).map(|_| rng.random_range(3..PIECES as u32)).collect();
            (item as u32, pieces)
        })
        .collect();
    let items = ItemComposition::attach(&model, &rows)?;
    let params: Vec<_> = model_params(&model)
        .into_iter()
        .map(|p| items.stand_in(p))
        .collect();
    let mut opt = FusedAdamW::new(params, AdamWConfig::default())?;
    let examples: Vec<TokenizedExample> = (0..BATCH)
        .map(|_| TokenizedExample {
            source: (0..source - 1)
                .map(|_| rng.random_range(3..vocab as u32))
                .chain([1])
                .collect(),
            target: vec![rng.random_range(PIECES as u32..vocab as u32), 1],
        })
        .collect();
    let members: Vec<&TokenizedExample> = examples.iter().collect();
    let step_flops = 3.0 * cfg.forward_flops(&Workload::batch(BATCH, source, TARGET));

    let mut parts: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut whole = Vec::new();
    let mut cpu = Vec::new();
    for step in 0..=steps {
        let (cpu0, t0) = (process_cpu_seconds().unwrap_or(0.0), Instant::now());
        let mut lap = {
            let mut t = Instant::now();
            move || {
                let s = t.elapsed().as_secs_f64();
                t = Instant::now();
                s
            }
        };
        let batch = collate(&members, 0, &Device::Cpu)?;
        let data = lap();
        let mut dropout = Dropout::new(0.1, step as u64);
        let loss = batch.mean_loss(&model.model, Some(&mut dropout))?;
        loss.to_scalar::<f32>()?;
        let forward = lap();
        let mut grads = loss.backward()?;
        let backward = lap();
        items.add_grads(&mut grads)?;
        let compose_grads = lap();
        opt.accumulate(&grads, 1.0)?;
        opt.step(1e-3, Some(1.0))?;
        let optimizer = lap();
        items.merge()?;
        let merge = lap();
        if step > 0 {
            for (k, v) in [
                ("data (collate)", data),
                ("forward + loss", forward),
                ("backward", backward),
                ("composition gradients", compose_grads),
                ("optimizer (fused AdamW)", optimizer),
                ("composition merge", merge),
            ] {
                parts.entry(k).or_default().push(v);
            }
            whole.push(t0.elapsed().as_secs_f64());
            cpu.push(process_cpu_seconds().unwrap_or(0.0) - cpu0);
        }
    }
    let step_secs = median(whole);
    println!(
        "\ntraining step, compact preset (d_model {}, {}+{} layers, vocab {vocab}, tied head, \
         {ITEMS} composed item tokens), batch {BATCH} x {source} source + {TARGET} target \
         tokens, median of {steps} steps: {step_secs:.3} s wall, {:.2} CPU-s ({:.2} cores busy)",
        cfg.d_model,
        cfg.num_layers,
        cfg.decoder_layers(),
        median(cpu.clone()),
        median(cpu) / step_secs,
    );
    let mut table = vec![Row {
        what: "whole step".into(),
        secs: step_secs,
        flops: Some(step_flops),
    }];
    for k in [
        "data (collate)",
        "forward + loss",
        "backward",
        "composition gradients",
        "optimizer (fused AdamW)",
        "composition merge",
    ] {
        let flops = match k {
            "forward + loss" => Some(step_flops / 3.0),
            "backward" => Some(step_flops * 2.0 / 3.0),
            _ => None,
        };
        table.push(Row {
            what: k.into(),
            secs: median(parts[k].clone()),
            flops,
        });
    }

    let scoring = if train_only {
        &[][..]
    } else {
        &[
            (Preset::Compact, 10),
            (Preset::Compact, 100),
            (Preset::Base, 10),
            (Preset::Base, 100),
        ][..]
    };
    for &(preset, n) in scoring {
        let m = if preset == Preset::Compact {
            &model
        } else {
            &Seq2Seq::new_random(
                &T5Config {
                    vocab_size: 32128,
                    ..T5Config::preset(Preset::Base)
                },
                tokenizer(32128),
                &Device::Cpu,
                0,
            )?
        };
        let v = m.config().vocab_size as u32;
        let instruction: Vec<u32> = (0..255)
            .map(|_| rng.random_range(3..v))
            .chain([1])
            .collect();
        let len = 16;
        let candidates: Vec<Vec<u32>> = (0..n)
            .map(|_| {
                (0..len - 1)
                    .map(|_| rng.random_range(3..v))
                    .chain([1])
                    .collect()
            })
            .collect();
        let secs = time(5, || {
            let enc = Encoded::new(&m.model, &instruction)?;
            score_candidates(&m.model, &enc, &candidates)
        })?;
        table.push(Row {
            what: format!("score {n} candidates x {len} tokens, 256-token instruction, {preset:?}"),
            secs,
            flops: Some(m.config().forward_flops(&Workload::scoring(256, n, len))),
        });
    }

    println!("\n| path | median s | GFLOP | GFLOP/s | of 2-thread peak | floor / time |");
    println!("|---|---|---|---|---|---|");
    for r in &table {
        match r.flops {
            Some(f) => println!(
                "| {} | {:.4} | {:.2} | {:.1} | {:.0}% | {:.2} |",
                r.what,
                r.secs,
                f / 1e9,
                f / r.secs / 1e9,
                100.0 * f / r.secs / 1e9 / peak2,
                f / 1e9 / peak2 / r.secs
            ),
            None => println!("| {} | {:.4} | - | - | - | - |", r.what, r.secs),
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload average at end: {}", load.trim());
    Ok(())
}
