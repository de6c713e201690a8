#!/usr/bin/env python3
"""Creates a tiny randomly initialised Flan-T5-shaped checkpoint for trying the engine end to end
without downloading anything (scripts/engine_roundtrip.sh uses it).

    python engine/make_tiny_t5.py --export EXPORT_DIR --out DIR [--vocab 1000] [--seed 7]

The tokenizer is a Unigram model trained with the `tokenizers` package on the export's
train.jsonl texts (inputs and targets), with T5's special ids: <pad> 0, </s> 1, <unk> 2, NFKC
normalisation, Metaspace pre-tokenisation and "</s>" appended as the post-processor. The model
is Flan-T5 style: gated-gelu feed-forward, an lm_head of its own (untied, no output scaling),
and more embedding rows than tokenizer entries (rounded up to a multiple of 64, as Flan-T5 has
32128 rows for 32100 tokens). transformers 5 cannot build an untied T5 itself, so the weights
are written tensor by tensor with a Hub-style config.json (tie_word_embeddings false).

Output: config.json, model.safetensors, tokenizer.json, tokenizer_config.json (what
AutoTokenizer needs to load it as a fast tokenizer). The weights are a function of --seed and
the vocabulary size; Unigram training itself is not bit-reproducible in its last digits.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5


def texts(export: Path, limit: int):
    with (export / "train.jsonl").open(encoding="utf-8") as f:
        for n, raw in enumerate(f):
            if n >= limit:
                break
            line = json.loads(raw)
            yield line["input"]
            yield line["target"]


def train_tokenizer(export: Path, vocab: int, limit: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab, special_tokens=SPECIALS, unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(texts(export, limit), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    assert [tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2]
    return tok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", required=True, help="an `instructrec export` folder (train.jsonl)")
    p.add_argument("--out", required=True, help="new folder to write")
    p.add_argument("--vocab", type=int, default=1000, help="Unigram vocabulary size")
    p.add_argument("--lines", type=int, default=20000, help="train lines the tokenizer learns from")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--d-ff", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        sys.exit(f"make_tiny_t5.py: {out} exists and is not empty")

    import torch
    from safetensors.torch import save_file
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    tok = train_tokenizer(Path(args.export), args.vocab, args.lines)
    rows = -(-tok.get_vocab_size() // 64) * 64
    cfg = dict(
        vocab_size=rows, d_model=args.d_model, d_kv=args.d_model // args.heads, d_ff=args.d_ff,
        num_layers=args.layers, num_decoder_layers=args.layers, num_heads=args.heads,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        dropout_rate=0.1, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu",
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = T5ForConditionalGeneration(T5Config(**cfg))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if k not in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")}
    state["lm_head.weight"] = torch.randn(rows, args.d_model, generator=gen) * args.d_model ** -0.5
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    hub = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", **cfg,
           "tie_word_embeddings": False, "is_encoder_decoder": True, "torch_dtype": "float32"}
    (out / "config.json").write_text(json.dumps(hub, indent=2) + "\n")

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=512)
    fast.save_pretrained(out)

    # What the engine will see: untied, and the tokenizer loads as a fast one with the same ids.
    from transformers import AutoTokenizer
    back = T5ForConditionalGeneration.from_pretrained(out, dtype=torch.float32)
    assert back.lm_head.weight is not back.shared.weight
    assert torch.equal(back.lm_head.weight, state["lm_head.weight"])
    auto = AutoTokenizer.from_pretrained(out, local_files_only=True)
    sample = "Recommend a movie for a fan of Star Wars (1977)."
    assert auto.is_fast and auto(sample, add_special_tokens=False)["input_ids"] == tok.encode(
        sample, add_special_tokens=False).ids
    assert auto.eos_token_id == 1 and auto.pad_token_id == 0
    n = sum(p.numel() for p in back.parameters())
    print(f"make_tiny_t5: {out}: {tok.get_vocab_size()} tokens, {rows} rows, {n} parameters, seed {args.seed}")


if __name__ == "__main__":
    main()
