#!/usr/bin/env python3
"""Recomputes with transformers (and PEFT) the summed log-likelihoods that instructrec's Rust
scorer wrote, to show that a checkpoint or adapter comes back exactly.

    python engine/score.py --model DIR --lines IN.jsonl --rust RUST_OUT.jsonl [--out PY_OUT.jsonl]

RUST_OUT.jsonl is what `score_lines --model DIR --lines IN.jsonl --out RUST_OUT.jsonl` (the
example in crates/instructrec-model/examples) wrote: per input line {"input_ids", "target_ids",
"sum", "tokens"}. For each line this script

  * encodes `input` and `target` of IN.jsonl with the folder's tokenizer.json (pieces without
    special tokens, then the config's eos id), both through `tokenizers` directly and through
    transformers' AutoTokenizer, and compares the ids with the Rust ones;
  * runs the model in float32 on the Rust ids (labels = target_ids, so the decoder starts from
    decoder_start_token_id) and sums the log-probabilities of the target ids.

DIR is a checkpoint folder (config.json + model.safetensors or a sharded index) or a PEFT
adapter folder (adapter_config.json); an adapter's base_model_name_or_path is resolved relative
to the adapter folder when it is not absolute, and its tokenizer is the adapter folder's
tokenizer.json if it has one, else the base's.

Prints the number of lines, the largest |sum difference| and the number of lines whose ids
differ; exits 1 when ids differ or the difference exceeds --tol (default 1e-4).
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load(model_dir: Path):
    import torch
    from transformers import AutoModelForSeq2SeqLM
    adapter = model_dir / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel
        base_ref = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base_ref:
            sys.exit(f"score.py: {adapter}: no base_model_name_or_path")
        base_dir = Path(base_ref)
        if not base_dir.is_absolute():
            base_dir = model_dir / base_dir
        base = AutoModelForSeq2SeqLM.from_pretrained(base_dir, local_files_only=True, dtype=torch.float32)
        keep_untied(base, base_dir)
        model = PeftModel.from_pretrained(base, model_dir)
        tok_dir = model_dir if (model_dir / "tokenizer.json").is_file() else base_dir
        config = base.config
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
        keep_untied(model, model_dir)
        tok_dir, config = model_dir, model.config
    model.eval()
    return model, tok_dir, config


def keep_untied(model, model_dir: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train import keep_lm_head_untied
    keep_lm_head_untied(model, model_dir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--lines", required=True, help="the JSON lines the Rust scorer read")
    p.add_argument("--rust", required=True, help="the Rust scorer's output")
    p.add_argument("--out", help="write the Python sums here, one JSON line per input")
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    model_dir = Path(args.model)
    model, tok_dir, config = load(model_dir)
    eos = config.eos_token_id
    raw_tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    auto_tok = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)

    rust = [json.loads(l) for l in Path(args.rust).read_text(encoding="utf-8").splitlines() if l.strip()]
    texts = []
    with open(args.lines, encoding="utf-8") as f:
        for raw in f:
            if len(texts) == len(rust):
                break
            if raw.strip():
                line = json.loads(raw)
                texts.append((line["input"], line["target"]))
    if len(texts) != len(rust):
        sys.exit(f"score.py: {args.rust} has {len(rust)} lines, {args.lines} only {len(texts)}")

    max_diff, id_mismatch, auto_mismatch, written = 0.0, 0, 0, []
    with torch.no_grad():
        for n, (r, (src, tgt)) in enumerate(zip(rust, texts), 1):
            ids = [raw_tok.encode(t, add_special_tokens=False).ids + [eos] for t in (src, tgt)]
            auto = [auto_tok(t, add_special_tokens=False)["input_ids"] + [eos] for t in (src, tgt)]
            if ids != [r["input_ids"], r["target_ids"]]:
                id_mismatch += 1
                if id_mismatch <= 3:
                    print(f"  line {n}: tokenizer.json ids differ from the Rust ids")
            if auto != ids:
                auto_mismatch += 1
                if auto_mismatch <= 3:
                    print(f"  line {n}: AutoTokenizer ids differ from tokenizer.json ids")
            inp = torch.tensor([r["input_ids"]])
            labels = torch.tensor([r["target_ids"]])
            logits = model(input_ids=inp, attention_mask=torch.ones_like(inp), labels=labels).logits
            logp = torch.log_softmax(logits.double(), dim=-1)[0]
            s = logp.gather(1, labels[0].unsqueeze(1)).sum().item()
            diff = abs(s - r["sum"])
            max_diff = max(max_diff, diff)
            if r.get("tokens") not in (None, len(r["target_ids"])):
                print(f"  line {n}: Rust counted {r['tokens']} tokens for {len(r['target_ids'])} ids")
            written.append({"sum": s, "rust_sum": r["sum"], "diff": diff})
    if args.out:
        Path(args.out).write_text("".join(json.dumps(w) + "\n" for w in written))
    ok = max_diff <= args.tol and id_mismatch == 0 and auto_mismatch == 0
    print(f"score.py {model_dir}: {len(rust)} lines, max |sum diff| {max_diff:.3e}, "
          f"id mismatches {id_mismatch} (tokenizer.json) {auto_mismatch} (AutoTokenizer): "
          f"{'ok' if ok else 'FAIL'}")
    print(json.dumps({"model": str(model_dir), "lines": len(rust), "max_abs_diff": max_diff,
                      "id_mismatches": id_mismatch, "auto_id_mismatches": auto_mismatch, "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
