//! Times the model's hot paths on random weights and inputs (no data needed):
//! a training step's forward + backward for a preset, and scoring 20 / 100 candidates.
//!
//!     cargo run --release -p instructrec-model --example bench_model -- [tiny|small|base] [d_ff] [layers]
//!
//! The optional `d_ff` and `layers` (encoder = decoder) override the preset, for sizing presets.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use instructrec_model::score::{score_candidates, Encoded};
use instructrec_model::{
    seeded_var_builder, seq2seq_loss, shift_right, Dropout, Preset, T5Config, T5,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn ids(rng: &mut ChaCha8Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.random_range(3..vocab as u32)).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> candle_core::Result<()> {
    instructrec_model::cpu::serial_elementwise_ops();
    instructrec_model::cpu::keep_freed_memory();
    let preset: Preset = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "small".into())
        .parse()
        .map_err(candle_core::Error::Msg)?;
    let mut cfg = T5Config::preset(preset);
    let arg = |i: usize| std::env::args().nth(i).map(|a| a.parse::<usize>());
    if let Some(d_ff) = arg(2) {
        cfg.d_ff = d_ff.map_err(|e| candle_core::Error::Msg(format!("d_ff: {e}")))?;
    }
    if let Some(layers) = arg(3) {
        let layers = layers.map_err(|e| candle_core::Error::Msg(format!("layers: {e}")))?;
        cfg.num_layers = layers;
        cfg.num_decoder_layers = Some(layers);
    }
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = T5::new(&cfg, seeded_var_builder(&varmap, 0, &dev))?;
    let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    let v = cfg.vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    println!(
        "preset {preset:?}: d_model {} layers {}+{} heads {} d_ff {} vocab {v}, {params} parameters, {} threads",
        cfg.d_model,
        cfg.num_layers,
        cfg.decoder_layers(),
        cfg.num_heads,
        cfg.d_ff,
        candle_core::utils::get_num_threads()
    );

    let (b, s, t) = (16, 128, 32);
    let src = Tensor::from_vec(ids(&mut rng, b * s, v), (b, s), &dev)?;
    let mask = src.ones_like()?;
    let labels = Tensor::from_vec(ids(&mut rng, b * t, v), (b, t), &dev)?
        .to_dtype(candle_core::DType::I64)?;
    let dec_in = shift_right(&labels, 0, 0)?;
    let mut dropout = Dropout::new(cfg.dropout_rate as f32, 2);
    let (mut times, mut fwd) = (Vec::new(), Vec::new());
    let mut cpu_start = None;
    for i in 0..6 {
        if i == 1 {
            cpu_start = instructrec_model::cpu::process_cpu_seconds();
        }
        let start = Instant::now();
        let logits = model.forward(&src, &mask, &dec_in, Some(&mut dropout))?;
        let loss = seq2seq_loss(&logits, &labels)?;
        let forward_done = start.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        std::hint::black_box(grads);
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
            fwd.push(forward_done);
        }
    }
    let cpu = cpu_start
        .zip(instructrec_model::cpu::process_cpu_seconds())
        .map(|(a, z)| (z - a) / times.len() as f64);
    println!(
        "train step (forward + loss + backward, no optimizer), batch {b} x {s} source x {t} target tokens: median {:.3} s wall (forward {:.3} s), {} CPU s per step, over {} steps",
        median(times.clone()),
        median(fwd),
        cpu.map_or("?".into(), |c| format!("{c:.3}")),
        times.len()
    );

    let instr = ids(&mut rng, 256, v);
    for n in [20usize, 100] {
        let cands: Vec<Vec<u32>> = (0..n)
            .map(|_| {
                let mut c = ids(&mut rng, 15, v);
                c.push(1);
                c
            })
            .collect();
        let mut times = Vec::new();
        for i in 0..6 {
            let start = Instant::now();
            let enc = Encoded::new(&model, &instr)?;
            std::hint::black_box(score_candidates(&model, &enc, &cands)?);
            if i > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        println!(
            "score {n} candidates x 16 tokens after one 256-token encode: median {:.3} s",
            median(times)
        );
    }
    Ok(())
}
