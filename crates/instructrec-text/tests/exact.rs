//! The encoder against transformers: a tiny random BERT and the pooled embeddings PyTorch
//! computed for it (scripts/make_bert_fixture.py).

use std::path::Path;

use instructrec_text::SentenceEncoder;

#[test]
fn pooled_embeddings_match_transformers() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-bert"
    ));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let sentences: Vec<&str> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let expected: Vec<Vec<f32>> = serde_json::from_value(reference["embeddings"].clone()).unwrap();
    let encoder = SentenceEncoder::load(dir).unwrap();
    assert_eq!(encoder.dim(), expected[0].len());
    // One padded batch, then each sentence alone: padding must not change any embedding.
    let batch: Vec<Vec<f32>> = encoder.encode(&sentences).unwrap().to_vec2().unwrap();
    let mut worst = 0f32;
    for (i, (got, want)) in batch.iter().zip(&expected).enumerate() {
        let alone: Vec<Vec<f32>> = encoder.encode(&[sentences[i]]).unwrap().to_vec2().unwrap();
        for ((g, a), w) in got.iter().zip(&alone[0]).zip(want) {
            worst = worst.max((g - w).abs()).max((a - w).abs());
        }
    }
    assert!(worst < 1e-5, "max abs difference {worst}");
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = SentenceEncoder::load(dir.path()).err().unwrap().to_string();
    assert!(err.contains("config.json"), "{err}");
}
