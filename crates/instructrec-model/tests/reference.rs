//! Exactness against Hugging Face transformers (fixtures written by scripts/make_t5_fixture.py):
//! logits, loss and gradients of a tied relu T5 and an untied gated-gelu Flan-style T5, the
//! relative-position buckets, and the tokenizer's ids.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use instructrec_model::t5::relative_position_bucket;
use instructrec_model::{seq2seq_loss, shift_right, Seq2Seq, T5};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
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

fn max_abs(a: &Tensor) -> f32 {
    a.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn check_fixture(name: &str, expect_tied: bool) {
    let s2s = Seq2Seq::load_hf_dir(&fixture(name), &Device::Cpu).unwrap();
    assert_eq!(s2s.model.is_tied(), expect_tied, "{name}: head tying");
    let r = reference(name);
    let cfg = s2s.config();
    let dec_in = shift_right(&r["labels"], cfg.decoder_start_token_id, cfg.pad_token_id).unwrap();
    assert_eq!(
        dec_in
            .to_dtype(DType::I64)
            .unwrap()
            .to_vec2::<i64>()
            .unwrap(),
        r["decoder_input_ids"].to_vec2::<i64>().unwrap(),
        "{name}: shift_right"
    );
    assert!(
        dec_in.dim(1).unwrap() > 9,
        "fixture must exercise decoder positions > 9"
    );
    let logits = s2s
        .model
        .forward(&r["input_ids"], &r["attention_mask"], &dec_in, None)
        .unwrap();
    let diff = max_abs_diff(&logits, &r["logits"]);
    println!(
        "{name}: logits max abs diff {diff:e} (max |logit| {})",
        max_abs(&r["logits"])
    );
    assert!(
        diff < 1e-4,
        "{name}: logits differ from transformers by {diff}"
    );

    let loss = seq2seq_loss(&logits, &r["labels"]).unwrap();
    let loss_diff = max_abs_diff(&loss.reshape(1).unwrap(), &r["loss"]);
    println!("{name}: loss diff {loss_diff:e}");
    assert!(loss_diff < 1e-5, "{name}: loss differs by {loss_diff}");

    let grads = loss.backward().unwrap();
    let vars = s2s.varmap.data().lock().unwrap();
    for (key, want) in r.iter().filter(|(k, _)| k.starts_with("grad.")) {
        let pname = key.trim_start_matches("grad.");
        let got = grads.get(vars[pname].as_tensor()).unwrap();
        let d = max_abs_diff(got, want);
        let scale = max_abs(want);
        println!("{name}: grad {pname} max abs diff {d:e} (max |grad| {scale:e})");
        assert!(
            d <= 1e-4 * scale.max(1e-3),
            "{name}: gradient of {pname} differs by {d}"
        );
    }
}

#[test]
fn tied_relu_t5_matches_transformers() {
    check_fixture("t5-relu-tied", true);
}

#[test]
fn untied_gated_gelu_flan_matches_transformers() {
    check_fixture("flan-gated-untied", false);
}

#[test]
fn relative_position_buckets_match_transformers() {
    let text = std::fs::read_to_string(fixture("buckets.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rel: Vec<i64> = serde_json::from_value(v["relative_positions"].clone()).unwrap();
    for case in v["cases"].as_array().unwrap() {
        let nb = case["num_buckets"].as_u64().unwrap() as usize;
        let md = case["max_distance"].as_u64().unwrap() as usize;
        let bi = case["bidirectional"].as_bool().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["buckets"].clone()).unwrap();
        for (r, w) in rel.iter().zip(want) {
            assert_eq!(
                relative_position_bucket(*r, bi, nb, md),
                w,
                "relative position {r}, buckets {nb}, max distance {md}, bidirectional {bi}"
            );
        }
    }
}

#[test]
fn tokenizer_ids_match_python_tokenizers() {
    let s2s = Seq2Seq::load_hf_dir(&fixture("t5-relu-tied"), &Device::Cpu).unwrap();
    let text = std::fs::read_to_string(fixture("tokenizer_sample.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
    let got = s2s
        .tokenizer
        .encode(v["text"].as_str().unwrap(), true)
        .unwrap();
    assert_eq!(got.get_ids(), want.as_slice());
}

/// Rebuilds a loaded model in f64 (for finite differences with negligible rounding error).
fn to_f64(s2s: &Seq2Seq) -> (T5, VarMap) {
    let vm = VarMap::new();
    {
        let src = s2s.varmap.data().lock().unwrap();
        let mut dst = vm.data().lock().unwrap();
        for (k, v) in src.iter() {
            let t = v.as_tensor().to_dtype(DType::F64).unwrap();
            dst.insert(k.clone(), candle_core::Var::from_tensor(&t).unwrap());
        }
    }
    let model = T5::new(
        s2s.config(),
        VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu),
    )
    .unwrap();
    (model, vm)
}

/// Central finite differences of the loss against the backward pass for single entries of
/// several kinds of parameter (position-bias tables, norms, projections, embeddings, head).
#[test]
fn gradients_match_finite_differences() {
    for (name, probes) in [
        (
            "t5-relu-tied",
            vec![
                (
                    "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    5,
                ),
                (
                    "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    17,
                ),
                ("decoder.block.1.layer.2.layer_norm.weight", 3),
                ("shared.weight", 17 * 32 + 4),
            ],
        ),
        (
            "flan-gated-untied",
            vec![
                ("encoder.block.1.layer.0.SelfAttention.k.weight", 40),
                ("decoder.block.0.layer.1.EncDecAttention.q.weight", 7),
                ("decoder.block.1.layer.2.DenseReluDense.wi_0.weight", 100),
                ("lm_head.weight", 9 * 32 + 1),
            ],
        ),
    ] {
        let s2s = Seq2Seq::load_hf_dir(&fixture(name), &Device::Cpu).unwrap();
        let (model, vm) = to_f64(&s2s);
        let r = reference(name);
        let cfg = s2s.config();
        let dec_in =
            shift_right(&r["labels"], cfg.decoder_start_token_id, cfg.pad_token_id).unwrap();
        let loss_of = |m: &T5| {
            let logits = m
                .forward(&r["input_ids"], &r["attention_mask"], &dec_in, None)
                .unwrap();
            seq2seq_loss(&logits, &r["labels"]).unwrap()
        };
        let grads = loss_of(&model).backward().unwrap();
        for (pname, idx) in probes {
            let var = vm.data().lock().unwrap()[pname].clone();
            let analytic: Vec<f64> = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let h = 1e-5;
            let at = |delta: f64| {
                let mut v = base.clone();
                v[idx] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss_of(&model).to_scalar::<f64>().unwrap()
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            at(0.0);
            println!(
                "{name}: d loss / d {pname}[{idx}]: backward {} finite difference {fd}",
                analytic[idx]
            );
            assert!(
                (fd - analytic[idx]).abs() <= 1e-6 + 1e-4 * fd.abs(),
                "{name}: {pname}[{idx}] backward {} vs finite difference {fd}",
                analytic[idx]
            );
            assert!(
                fd.abs() > 1e-9,
                "{name}: probe {pname}[{idx}] has no effect on the loss"
            );
        }
    }
}

/// PEFT LoRA adapters made by PEFT itself (scripts/make_peft_fixture.py), applied to their base
/// fixture at load time: logits equal those of transformers + PEFT. One adapter is plain LoRA on
/// attention and feed-forward weights of the untied Flan fixture (stored bf16); the other uses
/// rsLoRA, a regex `target_modules`, and rank and alpha patterns on the tied fixture.
#[test]
fn peft_adapters_match_transformers_and_peft() {
    for (name, base) in [
        ("flan-gated-untied-lora", "flan-gated-untied"),
        ("t5-relu-tied-rslora", "t5-relu-tied"),
    ] {
        let r = reference(name);
        let logits_of = |dir: &str| {
            let s2s = Seq2Seq::load_hf_dir(&fixture(dir), &Device::Cpu).unwrap();
            s2s.model
                .forward(
                    &r["input_ids"],
                    &r["attention_mask"],
                    &r["decoder_input_ids"],
                    None,
                )
                .unwrap()
        };
        let diff = max_abs_diff(&logits_of(name), &r["logits"]);
        let moved = max_abs_diff(&logits_of(base), &r["logits"]);
        println!("{name}: logits max abs diff {diff:e}; the adapter moves them by {moved}");
        assert!(
            moved > 0.05,
            "{name}: the adapter hardly changes the base ({moved})"
        );
        assert!(diff < 1e-4, "{name}: logits differ from PEFT's by {diff}");
    }
}
