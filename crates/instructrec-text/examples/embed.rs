//! Prints the pooled embeddings of sentences (one per argument after the directory) as JSON, to
//! compare a real checkpoint with `scripts/make_bert_fixture.py --check DIR`.
//!
//!     cargo run --release -p instructrec-text --example embed -- /work/runs/minilm "some text"

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: embed DIR SENTENCE...");
    let sentences: Vec<String> = args.collect();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let encoder = instructrec_text::SentenceEncoder::load(dir.as_ref())?;
    let emb: Vec<Vec<f32>> = encoder.encode(&refs)?.to_vec2()?;
    println!(
        "{}",
        serde_json::json!({"sentences": sentences, "embeddings": emb})
    );
    Ok(())
}
