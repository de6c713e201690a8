//! Scores `{"input", "target"}` JSON lines (an `instructrec export` split) with a checkpoint
//! or PEFT adapter directory and writes, per line, the token ids it scored and the summed
//! log-likelihood of the target: what `engine/score.py` recomputes with transformers to show
//! that a model trained by the Python engine comes back exactly (scripts/engine_roundtrip.sh).
//!
//!   score_lines --model DIR --lines IN.jsonl --out OUT.jsonl [--limit N]

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use instructrec_model::{Device, Encoded, Seq2Seq};

fn main() -> anyhow::Result<()> {
    let (mut model, mut lines, mut out, mut limit) = (None, None, None, usize::MAX);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--lines" => lines = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--limit" => limit = value()?.parse().context("--limit")?,
            _ => bail!("unknown argument {flag}; usage: --model DIR --lines IN --out OUT"),
        }
    }
    let (Some(model), Some(lines), Some(out)) = (model, lines, out) else {
        bail!("usage: score_lines --model DIR --lines IN.jsonl --out OUT.jsonl [--limit N]");
    };
    let s2s = Seq2Seq::load_hf_dir(&model, &Device::Cpu)?;
    let eos = s2s.config().eos_token_id;
    let ids = |text: &str| -> anyhow::Result<Vec<u32>> {
        let enc = s2s
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
        Ok(enc.get_ids().iter().copied().chain([eos]).collect())
    };
    let reader = std::io::BufReader::new(
        std::fs::File::open(&lines).with_context(|| lines.display().to_string())?,
    );
    let mut written = Vec::new();
    for (n, line) in reader.lines().take(limit).enumerate() {
        let line = line.with_context(|| lines.display().to_string())?;
        let record: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}", lines.display(), n + 1))?;
        let field = |name: &str| {
            record[name]
                .as_str()
                .with_context(|| format!("{}:{}: no string field {name}", lines.display(), n + 1))
        };
        let (input_ids, target_ids) = (ids(field("input")?)?, ids(field("target")?)?);
        let encoded = Encoded::new(&s2s.model, &input_ids)?;
        let score = instructrec_model::score::score_candidates(
            &s2s.model,
            &encoded,
            std::slice::from_ref(&target_ids),
        )?[0];
        let json = serde_json::json!({
            "input_ids": input_ids,
            "target_ids": target_ids,
            "sum": score.sum,
            "tokens": score.tokens,
        });
        writeln!(written, "{json}")?;
    }
    let tmp = out.with_extension("jsonl.tmp");
    std::fs::File::create(&tmp)?.write_all(&written)?;
    std::fs::rename(&tmp, &out)?;
    Ok(())
}
