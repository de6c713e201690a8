//! Training-step speed of a preset (default `small`) at batch 16 x 128 source x 32 target
//! tokens, and the optimizer step alone: the fused AdamW against candle-nn's AdamW on the same
//! model and the same gradients.
//!
//! Wall time is what a user waits; process CPU time (from /proc) is printed beside it because
//! on a shared 2-core machine other jobs inflate wall time.
//!
//! cargo run --release -p instructrec-train --example bench_train [-- tiny|small|base [steps]]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use instructrec_model::cpu::process_cpu_seconds;
use instructrec_model::{seq2seq_loss, Dropout, Preset, T5Config};
use instructrec_train::init::create_model;
use instructrec_train::optimizer::model_params;
use instructrec_train::optimizer::{AdamWConfig, FusedAdamW};
use instructrec_train::tokenizer::{train_tokenizer, TokenizerOptions};
use rand::{Rng, SeedableRng};

const ITEMS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/amazon-games/items.jsonl"
);
const BATCH: usize = 16;
const SOURCE: usize = 128;
const TARGET: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let preset: Preset = args.next().unwrap_or_else(|| "small".into()).parse()?;
    let steps: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let titles: Vec<String> = std::fs::read_to_string(ITEMS)?
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["title"].as_str().map(str::to_string)
        })
        .collect();
    let t = Instant::now();
    let tokenizer = train_tokenizer(titles.iter(), TokenizerOptions::default())?;
    println!(
        "tokenizer: {} pieces from {} titles in {:.1} s",
        tokenizer.get_vocab_size(true),
        titles.len(),
        t.elapsed().as_secs_f64()
    );
    let model = create_model(tokenizer, &T5Config::preset(preset), 0, &Device::Cpu)?;
    let cfg = model.config().clone();
    let n_params: usize = model.varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    println!(
        "{preset:?}: d_model {}, {}+{} layers, vocab {}, {:.1}M parameters, {} rayon threads",
        cfg.d_model,
        cfg.num_layers,
        cfg.decoder_layers(),
        cfg.vocab_size,
        n_params as f64 / 1e6,
        rayon::current_num_threads()
    );

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut ids = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| rng.random_range(3..cfg.vocab_size as u32 - 100))
            .collect()
    };
    let input = Tensor::from_vec(ids(BATCH * SOURCE), (BATCH, SOURCE), &Device::Cpu)?;
    let mask = Tensor::ones((BATCH, SOURCE), DType::U32, &Device::Cpu)?;
    let labels = Tensor::from_vec(ids(BATCH * TARGET), (BATCH, TARGET), &Device::Cpu)?
        .to_dtype(DType::I64)?;
    let decoder_in = instructrec_model::shift_right(&labels, 0, 0)?;

    let mut fused = FusedAdamW::new(model_params(&model), AdamWConfig::default())?;
    let mut reference = candle_nn::AdamW::new(
        model.varmap.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 1e-4,
            ..Default::default()
        },
    )?;
    let (mut fwd_bwd, mut ours, mut theirs, mut cpu) = (0.0, 0.0, 0.0, 0.0);
    for step in 0..=steps {
        let cpu_start = process_cpu_seconds().unwrap_or(0.0);
        let t = Instant::now();
        let mut dropout = Dropout::new(0.1, step as u64);
        let logits = model
            .model
            .forward(&input, &mask, &decoder_in, Some(&mut dropout))?;
        let loss = seq2seq_loss(&logits, &labels)?;
        let grads = loss.backward()?;
        let a = t.elapsed().as_secs_f64();
        let t = Instant::now();
        fused.accumulate(&grads, 1.0)?;
        fused.step(1e-4, Some(1.0))?;
        let b = t.elapsed().as_secs_f64();
        let step_cpu = process_cpu_seconds().unwrap_or(0.0) - cpu_start;
        let t = Instant::now();
        reference.step(&grads)?;
        let c = t.elapsed().as_secs_f64();
        println!(
            "step {step}: loss {:.3}  forward+backward {a:.3} s  fused AdamW {b:.3} s  \
             ({step_cpu:.2} CPU-s)  candle AdamW {c:.3} s",
            loss.to_scalar::<f32>()?
        );
        // The first step warms caches and allocators; it is shown but not averaged.
        if step > 0 {
            fwd_bwd += a;
            ours += b;
            theirs += c;
            cpu += step_cpu;
        }
    }
    let n = steps as f64;
    let step_time = (fwd_bwd + ours) / n;
    println!(
        "mean over {steps} steps: train step {step_time:.3} s (forward+backward {:.3} s + fused \
         AdamW {:.3} s), {:.2} CPU-s, {:.0} tokens/s ({} source + {} target tokens per step); \
         candle AdamW {:.3} s = {:.1}x the fused step",
        fwd_bwd / n,
        ours / n,
        cpu / n,
        (BATCH * (SOURCE + TARGET)) as f64 / step_time,
        BATCH * SOURCE,
        BATCH * TARGET,
        theirs / n,
        theirs / ours
    );
    Ok(())
}
