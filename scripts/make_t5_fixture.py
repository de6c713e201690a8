#!/usr/bin/env python3
"""Writes the reference fixtures that crates/instructrec-model's exactness tests compare against.

Two tiny randomly initialised T5 checkpoints, in Hugging Face layout, each with reference
outputs computed by transformers' own T5ForConditionalGeneration:

  t5-relu-tied/       T5 v1.0 style: relu FFN, LM head tied to the embeddings, output scaled by
                      d_model^-0.5; saved by save_pretrained (transformers 5 config flags), f32.
  flan-gated-untied/  Flan-T5 style: gated-gelu FFN, separate lm_head.weight, no output scaling;
                      written tensor by tensor (transformers 5 cannot create an untied T5) with an
                      old-style config.json like the ones on the Hub, stored as bf16.

Each directory holds config.json, model.safetensors, tokenizer.json and reference.safetensors
(inputs with padding, decoder inputs longer than 9 positions, logits, mean loss and the loss
gradient of a few weights). buckets.json holds transformers' relative-position buckets and
tokenizer_sample.json one text with the ids the Python tokenizer gives it. Rerunning reproduces
every file but tokenizer.json (Unigram training is not bit-reproducible: the last digits of
scores and the order of equally scored pieces vary); the reference tensors do not depend on it.

Usage (needs torch, transformers, tokenizers, safetensors; keep the venv outside the repo):
    python3 -m venv /work/venv && /work/venv/bin/pip install torch transformers tokenizers safetensors
    /work/venv/bin/python scripts/make_t5_fixture.py crates/instructrec-model/tests/fixtures
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import T5Config, T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5Attention

SEED = 20240607

# Invented catalogue-like text: the tokenizer only has to cover the fixture's sentences.
CORPUS = [
    "Recommend a racing game for a player who enjoyed Speed Rivals and Drift Kings.",
    "The user bought a wireless controller, a headset and a strategy game about castles.",
    "Is Castle Siege Deluxe a good choice for someone who likes slow tactical puzzles? yes",
    "Which item fits better: Galaxy Pilots Remastered or Farm Valley Stories? Galaxy Pilots",
    "Pick the next item from: Dungeon Crawl Legends, Puzzle Garden, Soccer Stars 2, Zombie Night.",
    "She prefers horror games with a strong story and dark atmosphere.",
    "A gift my son would enjoy, something with cars and friendly multiplayer.",
    "Video Games, PC, Accessories, Gaming Mice, Keyboards, Handheld consoles.",
]
SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=240, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    assert [tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2]
    return tok


def small_config(vocab: int, **kw) -> T5Config:
    # Few buckets and a short max distance so that the logarithmic buckets are exercised by
    # sequences of a dozen tokens.
    return T5Config(
        vocab_size=vocab,
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        **kw,
    )


def perturb_norms(model: T5ForConditionalGeneration, gen: torch.Generator) -> None:
    # Layer norms start at exactly 1, which would hide a norm weight applied to the wrong place.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))


def make_inputs(vocab: int, gen: torch.Generator) -> dict:
    src_lens, tgt_lens = [14, 9, 5], [12, 7, 12]
    b, s, t = len(src_lens), max(src_lens), max(tgt_lens)
    input_ids = torch.zeros(b, s, dtype=torch.long)
    mask = torch.zeros(b, s, dtype=torch.long)
    labels = torch.full((b, t), -100, dtype=torch.long)
    for i, (n, m) in enumerate(zip(src_lens, tgt_lens)):
        input_ids[i, : n - 1] = torch.randint(3, vocab, (n - 1,), generator=gen)
        input_ids[i, n - 1] = 1
        mask[i, :n] = 1
        labels[i, : m - 1] = torch.randint(3, vocab, (m - 1,), generator=gen)
        labels[i, m - 1] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


GRAD_NAMES = [
    "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    "decoder.block.1.layer.1.EncDecAttention.q.weight",
    "encoder.block.0.layer.0.layer_norm.weight",
    "shared.weight",
]


def write_reference(model: T5ForConditionalGeneration, inputs: dict, out: Path) -> None:
    model.eval()  # no dropout; gradients are still computed
    model.zero_grad()
    res = model(**inputs)
    res.loss.backward()
    params = dict(model.named_parameters())
    tensors = {k: v.contiguous() for k, v in inputs.items()}
    tensors["decoder_input_ids"] = model._shift_right(inputs["labels"]).contiguous()
    tensors["logits"] = res.logits.detach().contiguous()
    tensors["loss"] = res.loss.detach().reshape(1)
    for name in GRAD_NAMES:
        tensors["grad." + name] = params[name].grad.detach().clone().contiguous()
    save_file(tensors, str(out / "reference.safetensors"))


def tied_relu(root: Path, tok: Tokenizer) -> None:
    out = root / "t5-relu-tied"
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    model = T5ForConditionalGeneration(small_config(tok.get_vocab_size(), feed_forward_proj="relu"))
    perturb_norms(model, gen)
    assert model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    model.save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))
    write_reference(model, make_inputs(tok.get_vocab_size(), gen), out)


def untied_gated(root: Path, tok: Tokenizer) -> None:
    out = root / "flan-gated-untied"
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(SEED + 1)
    torch.manual_seed(SEED + 1)
    vocab = tok.get_vocab_size()
    cfg = small_config(vocab, feed_forward_proj="gated-gelu")
    model = T5ForConditionalGeneration(cfg)
    perturb_norms(model, gen)
    state = {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k not in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
    }
    state["lm_head.weight"] = torch.randn(vocab, cfg.d_model, generator=gen)
    # bf16 on disk, as many Hub checkpoints are: the loader must convert to f32.
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    hub_style = {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": vocab,
        "d_model": cfg.d_model,
        "d_kv": cfg.d_kv,
        "d_ff": cfg.d_ff,
        "num_layers": cfg.num_layers,
        "num_decoder_layers": cfg.num_decoder_layers,
        "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "dropout_rate": cfg.dropout_rate,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "decoder_start_token_id": 0,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "is_encoder_decoder": True,
        "torch_dtype": "bfloat16",
    }
    (out / "config.json").write_text(json.dumps(hub_style, indent=2) + "\n")
    tok.save(str(out / "tokenizer.json"))

    ref, info = T5ForConditionalGeneration.from_pretrained(
        out, output_loading_info=True, dtype=torch.float32
    )
    assert not info["missing_keys"], info
    assert not info["mismatched_keys"], info
    assert not ref.config.scale_decoder_outputs
    assert torch.equal(ref.lm_head.weight, state["lm_head.weight"].float()), "lm_head was re-tied"
    assert not torch.equal(ref.lm_head.weight, ref.shared.weight)
    write_reference(ref, make_inputs(vocab, gen), out)


def buckets(root: Path) -> None:
    rel = torch.arange(-300, 301)
    table = {"relative_positions": rel.tolist(), "cases": []}
    for nb, md in [(32, 128), (8, 20), (32, 64)]:
        for bidirectional in (True, False):
            b = T5Attention._relative_position_bucket(rel, bidirectional, nb, md)
            table["cases"].append(
                {"num_buckets": nb, "max_distance": md, "bidirectional": bidirectional,
                 "buckets": b.tolist()}
            )
    (root / "buckets.json").write_text(json.dumps(table) + "\n")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/instructrec-model/tests/fixtures")
    root.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer()
    tied_relu(root, tok)
    untied_gated(root, tok)
    buckets(root)
    sample = "Recommend a horror game with castles."
    (root / "tokenizer_sample.json").write_text(
        json.dumps({"text": sample, "ids": tok.encode(sample).ids}) + "\n"
    )


if __name__ == "__main__":
    main()
