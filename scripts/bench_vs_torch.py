#!/usr/bin/env python3
"""The PyTorch + transformers half of scripts/bench_vs_torch.sh, and the comparison table.

For each model shape the Rust example `bench_vs_torch prepare` writes a random checkpoint and
the inputs; this script loads the same checkpoint into transformers' T5ForConditionalGeneration,
times the same work, runs `bench_vs_torch run` for the Rust side, checks that both sides give
the same candidate scores, and prints times and ratios against the targets of issue 7:
scoring >= 2x faster than transformers scoring each candidate with its own forward pass and
>= 1x transformers batching all candidates; a training step >= 0.8x PyTorch's speed.

    python bench_vs_torch.py --bin target/release/examples/bench_vs_torch --work target/bench-vs-torch \
        [--shapes small,base] [--runs 3] [--threads 2] [--per-candidate-100 small] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import T5ForConditionalGeneration

SHAPE_NAMES = {"small": "project small (d256, 4+4, vocab 8000)", "base": "flan-t5-small (d512, 8+8, vocab 32128)"}


def median_time(runs: int, fn) -> float:
    """Median wall seconds of `runs` calls after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log p(label) per row of [n, t, vocab] logits, labels -100 ignored."""
    logp = torch.log_softmax(logits, dim=-1)
    keep = labels >= 0
    picked = logp.gather(2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (picked * keep).sum(dim=1)


def padded(rows, fill):
    longest = max(len(r) for r in rows)
    return torch.tensor([r + [fill] * (longest - len(r)) for r in rows])


def torch_side(model, inputs: dict, eos: int, runs: int, per_candidate_100: bool) -> dict:
    instruction = torch.tensor([inputs["instruction"] + [eos]])
    mask = torch.ones_like(instruction)
    out = {"scoring": {}}
    model.eval()
    for n in (20, 100):
        cands = [c + [eos] for c in inputs["candidates"][:n]]

        def per_candidate():
            with torch.inference_mode():
                return [
                    sequence_logprob(
                        model(input_ids=instruction, attention_mask=mask, labels=torch.tensor([c])).logits,
                        torch.tensor([c]),
                    ).item()
                    for c in cands
                ]

        labels = padded(cands, -100)

        def batched():
            with torch.inference_mode():
                enc = model.encoder(input_ids=instruction, attention_mask=mask).last_hidden_state
                # expand: every candidate attends to the one encoder output, no copy.
                logits = model(
                    encoder_outputs=(enc.expand(n, -1, -1),),
                    attention_mask=mask.expand(n, -1),
                    labels=labels,
                ).logits
                return sequence_logprob(logits, labels).tolist()

        row = {"scores": batched(), "batched_seconds": median_time(runs, batched)}
        # One forward pass per candidate is slow (n full passes): timed once, after the batched
        # runs warmed the model up, and for 100 candidates only where asked.
        if n == 20 or per_candidate_100:
            start = time.perf_counter()
            row["per_candidate_scores"] = per_candidate()
            row["per_candidate_seconds"] = time.perf_counter() - start
        out["scoring"][str(n)] = row

    src = torch.tensor(inputs["train_source"])
    tgt = torch.tensor(inputs["train_target"])
    train_model = T5ForConditionalGeneration.from_pretrained(model.name_or_path, dtype=torch.float32)
    train_model.train()
    opt = torch.optim.AdamW(train_model.parameters(), lr=inputs["learning_rate"], weight_decay=0.01)

    def train_step():
        loss = train_model(input_ids=src, attention_mask=torch.ones_like(src), labels=tgt).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(train_model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    out["train"] = {"seconds": median_time(runs, train_step)}
    del train_model, opt

    trie = {}
    for title in inputs["titles"]:
        path = tuple(title) + (eos,)
        for i in range(len(path)):
            trie.setdefault(path[:i], set()).add(path[i])
    allowed = {k: sorted(v) for k, v in trie.items()}
    start = model.config.decoder_start_token_id
    longest = max(len(t) for t in inputs["titles"]) + 1

    def prefix_allowed(_batch, decoder_ids):
        ids = decoder_ids.tolist()
        assert ids[0] == start
        # Finished beams are padded after EOS: let them keep padding.
        return allowed.get(tuple(ids[1:]), [model.config.pad_token_id])

    def generate():
        with torch.inference_mode():
            return model.generate(
                input_ids=instruction,
                attention_mask=mask,
                num_beams=inputs["num_beams"],
                num_return_sequences=inputs["top_k"],
                max_new_tokens=longest,
                prefix_allowed_tokens_fn=prefix_allowed,
                length_penalty=0.0,  # rank by summed log-likelihood, as ours does
                do_sample=False,
                early_stopping=True,
                output_scores=True,
                return_dict_in_generate=True,
            )

    generated = generate()
    out["generate"] = {
        "seconds": median_time(runs, generate),
        # Each sequence: the start token, the title, EOS, then padding.
        "titles": [(ids := seq.tolist()[1:])[: ids.index(eos) + 1] for seq in generated.sequences],
    }
    return out


def ct2_side(work: Path, model, inputs: dict, eos: int, runs: int, threads: int) -> dict:
    """CTranslate2's `score_batch` on the same checkpoint, converted at float32 and int8.

    The benchmark checkpoints have no tokenizer, and CTranslate2 speaks in token strings: the
    conversion gets a word-level tokenizer whose token for id i is `t{i}` (T5's three special
    tokens at their ids), so ids map to strings one to one. `score_batch` scores (source,
    target) pairs, so the instruction is encoded once per candidate; ours and PyTorch's batched
    path encode it once per list.
    """
    import ctranslate2
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    config = model.config
    names = {config.pad_token_id: "<pad>", eos: "</s>", 2: "<unk>"}
    vocab = {names.get(i, f"t{i}"): i for i in range(config.vocab_size)}
    tok_dir = work / "ct2-source"
    tok_dir.mkdir(exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        target = tok_dir / f
        if not target.exists():
            target.symlink_to((work / f).resolve())
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
        pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
    )
    fast.save_pretrained(tok_dir)
    word = lambda ids: [names.get(i, f"t{i}") for i in ids]

    class Converter(ctranslate2.converters.TransformersConverter):
        # transformers 5 sets `tie_word_embeddings` on every T5 and keeps the saved value in
        # `scale_decoder_outputs`; CTranslate2 reads the former to scale the outputs of a tied
        # head, which would shrink this untied head's logits by sqrt(d_model).
        def load_model(self, model_class, model_name_or_path, **kwargs):
            loaded = super().load_model(model_class, model_name_or_path, **kwargs)
            if hasattr(loaded.config, "scale_decoder_outputs"):
                loaded.config.tie_word_embeddings = loaded.config.scale_decoder_outputs
            return loaded

    source = word(inputs["instruction"] + [eos])
    out = {}
    for quantization in ("float32", "int8"):
        converted = work / f"ct2-{quantization}"
        Converter(str(tok_dir)).convert(
            str(converted), quantization=quantization, force=True
        )
        translator = ctranslate2.Translator(str(converted), device="cpu", inter_threads=1, intra_threads=threads)
        rows = {}
        for n in (20, 100):
            targets = [word(c) for c in inputs["candidates"][:n]]

            def score():
                results = translator.score_batch([source] * n, targets, max_batch_size=n)
                return [sum(r.log_probs) for r in results]

            rows[str(n)] = {"scores": score(), "seconds": median_time(runs, score)}
        out[quantization] = rows
    return out


def rust_side(binary: str, work: Path, runs: int, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    proc = subprocess.run([binary, "run", str(work), str(runs)], env=env, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout)


def max_abs_diff(a, b) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def bench_shape(shape: str, args) -> dict:
    work = Path(args.work) / shape
    subprocess.run([args.bin, "prepare", shape, str(work)], check=True)
    model = T5ForConditionalGeneration.from_pretrained(work, dtype=torch.float32)
    assert not model.config.scale_decoder_outputs
    assert not torch.equal(model.lm_head.weight, model.shared.weight), "lm_head was re-tied"
    inputs = json.loads((work / "inputs.json").read_text())
    eos = model.config.eos_token_id
    print(f"[{shape}] transformers ...", file=sys.stderr, flush=True)
    pt = torch_side(model, inputs, eos, args.runs, shape in args.per_candidate_100.split(","))
    ct2 = None
    if args.ctranslate2:
        print(f"[{shape}] ctranslate2 ...", file=sys.stderr, flush=True)
        ct2 = ct2_side(work, model, inputs, eos, args.runs, args.threads)
    print(f"[{shape}] rust ...", file=sys.stderr, flush=True)
    rs = rust_side(args.bin, work, args.runs, args.threads)
    checks = {}
    for n in ("20", "100"):
        checks[f"score {n} max abs diff (ours vs batched)"] = max_abs_diff(rs["scoring"][n]["scores"], pt["scoring"][n]["scores"])
        if "per_candidate_scores" in pt["scoring"][n]:
            checks[f"score {n} max abs diff (batched vs per-candidate)"] = max_abs_diff(
                pt["scoring"][n]["scores"], pt["scoring"][n]["per_candidate_scores"]
            )
    ours_titles = [t["tokens"] for t in rs["generate"]["titles"]]
    checks["generate: same top-1 title"] = bool(ours_titles) and ours_titles[0] == pt["generate"]["titles"][0]
    checks["generate: titles in common (of top-k)"] = len(
        {tuple(t) for t in ours_titles} & {tuple(t) for t in pt["generate"]["titles"]}
    )
    tokens = rs["train"]["batch"] * (rs["train"]["source_len"] + rs["train"]["target_len"])
    rows = []
    for n in ("20", "100"):
        ours = rs["scoring"][n]["seconds"]
        if "per_candidate_seconds" in pt["scoring"][n]:
            rows.append((f"score {n} (vs per-candidate)", pt["scoring"][n]["per_candidate_seconds"], ours, 2.0))
        rows.append((f"score {n} (vs batched)", pt["scoring"][n]["batched_seconds"], ours, 1.0))
        for quantization, sides in (ct2 or {}).items():
            rows.append((f"score {n} (vs CTranslate2 {quantization})", sides[n]["seconds"], ours, 1.0))
            checks[f"score {n} max abs diff (ours vs CTranslate2 {quantization})"] = max_abs_diff(
                rs["scoring"][n]["scores"], sides[n]["scores"]
            )
    rows.append((f"train step ({tokens} tok)", pt["train"]["seconds"], rs["train"]["seconds"], 0.8))
    rows.append((f"generate {inputs['num_beams']} beams top {inputs['top_k']}", pt["generate"]["seconds"], rs["generate"]["seconds"], None))
    return {"shape": shape, "tokens_per_step": tokens, "rows": rows, "checks": checks, "torch": pt, "rust": rs, "ctranslate2": ct2}


def print_table(result: dict) -> None:
    print(f"\n### {SHAPE_NAMES.get(result['shape'], result['shape'])}")
    print("| work | theirs s | ours s | speed ratio (theirs s / ours s) | target | met |")
    print("|---|---|---|---|---|---|")
    for name, theirs, ours, target in result["rows"]:
        ratio = theirs / ours
        met = "-" if target is None else ("yes" if ratio >= target else "no")
        tgt = "-" if target is None else f">= {target}x"
        print(f"| {name} | {theirs:.3f} | {ours:.3f} | {ratio:.2f}x | {tgt} | {met} |")
    train = [r for r in result["rows"] if r[0].startswith("train")][0]
    print(
        f"\ntraining throughput: PyTorch {result['tokens_per_step'] / train[1]:.0f} tokens/s, "
        f"ours {result['tokens_per_step'] / train[2]:.0f} tokens/s "
        f"(ours: forward+backward {result['rust']['train']['forward_backward_seconds']:.3f} s, "
        f"fused AdamW {result['rust']['train']['optimizer_seconds']:.3f} s, "
        f"pages faulted in per step {result['rust']['train'].get('minor_faults')})"
    )
    for k, v in result["checks"].items():
        print(f"- {k}: {v:.3g}" if isinstance(v, float) else f"- {k}: {v}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True, help="the bench_vs_torch example binary")
    p.add_argument("--work", required=True, help="directory for checkpoints and inputs")
    p.add_argument("--shapes", default="small,base")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--per-candidate-100", default="small", help="shapes on which to time 100 one-candidate passes")
    p.add_argument("--json", help="also write all measurements here")
    p.add_argument("--ctranslate2", action="store_true", help="also time CTranslate2's score_batch (float32 and int8)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ours RAYON_NUM_THREADS={args.threads}; "
          f"median of {args.runs} timed runs after 1 warm-up (one pass per candidate: 1 timed run)")
    results = [bench_shape(s, args) for s in args.shapes.split(",")]
    for r in results:
        print_table(r)
    if args.json:
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
