#!/usr/bin/env python3
"""Writes the PEFT LoRA adapter fixtures that crates/instructrec-model's import tests compare against.

Two adapter directories, each made by PEFT itself (get_peft_model + save_pretrained, safetensors)
on one of the base fixtures that scripts/make_t5_fixture.py wrote, loaded in float32:

  flan-gated-untied-lora/  plain LoRA on the untied gated-gelu base: r=4, lora_alpha=8 (scale
                           alpha/r), target_modules as a list of names ["q", "v", "wi_0", "wo"]
                           (matched as a suffix after a dot).
  t5-relu-tied-rslora/     rank-stabilised LoRA (scale alpha/sqrt(r)) on the tied relu base,
                           target_modules as one regular expression (matched against the whole
                           module name), with rank_pattern and alpha_pattern each overriding the
                           rank or alpha of one module.

PEFT starts lora_B at zero (the adapter is a no-op), so every lora_A and lora_B is overwritten
with seeded random values before saving; the script prints how far the logits move from the
base's. After saving, base_model_name_or_path in adapter_config.json is rewritten to the base's
path relative to the adapter directory ("../flan-gated-untied"), which is how our loader finds it,
and PEFT's generated README.md (a model card template) is removed.

Each directory then holds adapter_config.json, adapter_model.safetensors and reference.safetensors:
the base fixture's own inputs (input_ids, attention_mask, labels, decoder_input_ids) with the
logits and mean loss of the PeftModel's forward pass in float32 (no gradients).

Usage (needs torch, transformers, peft, safetensors; keep the venv outside the repo):
    python3 -m venv /work/venv && /work/venv/bin/pip install -r engine/requirements.txt
    HF_HUB_OFFLINE=1 /work/venv/bin/python scripts/make_peft_fixture.py \
        crates/instructrec-model/tests/fixtures
Reruns reproduce the same tensors (seeded) on the same library versions.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import T5ForConditionalGeneration

SEED = 20240619
INPUT_KEYS = ["input_ids", "attention_mask", "labels", "decoder_input_ids"]


def randomise_lora(model, gen: torch.Generator, std: float) -> int:
    """Overwrites every LoRA A and B matrix (PEFT's B starts at zero); returns how many."""
    n = 0
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(std * torch.randn(p.shape, generator=gen))
                n += 1
    return n


def reference(model, base_ref: dict) -> dict:
    model.eval()
    inputs = {k: base_ref[k] for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        res = model(**inputs)
    # The decoder inputs are the base reference's (labels shifted right), so both files agree.
    assert torch.equal(
        model.get_base_model()._shift_right(inputs["labels"]), base_ref["decoder_input_ids"]
    )
    tensors = {k: base_ref[k].contiguous() for k in INPUT_KEYS}
    tensors["logits"] = res.logits.detach().float().contiguous()
    tensors["loss"] = res.loss.detach().float().reshape(1)
    return tensors


def make_adapter(root: Path, base_name: str, out_name: str, config: LoraConfig, seed: int,
                 std: float) -> None:
    base_dir = root / base_name
    out = root / out_name
    out.mkdir(parents=True, exist_ok=True)
    base_ref = load_file(str(base_dir / "reference.safetensors"))
    base = T5ForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32)
    base.eval()
    with torch.no_grad():
        base_logits = base(**{k: base_ref[k] for k in ("input_ids", "attention_mask", "labels")}).logits
    # The base reproduces its own stored reference (same library, same weights).
    assert (base_logits - base_ref["logits"]).abs().max() < 1e-4

    model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(seed)
    n = randomise_lora(model, gen, std)
    model.save_pretrained(out, safe_serialization=True)
    readme = out / "README.md"
    if readme.exists():
        readme.unlink()

    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = f"../{base_name}"
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])  # PEFT writes a set, in any order
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    # Reload from disk exactly as a user would (base resolved relative to the adapter dir), so the
    # reference comes from the saved files and not from the in-memory model.
    fresh = T5ForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(fresh, out)
    tensors = reference(loaded, base_ref)
    mem = reference(model, base_ref)
    assert torch.equal(tensors["logits"], mem["logits"]), "saved adapter differs from in-memory one"
    save_file(tensors, str(out / "reference.safetensors"))

    change = (tensors["logits"] - base_logits).abs().max().item()
    keys = sorted(load_file(str(out / "adapter_model.safetensors")).keys())
    print(f"{out_name}: {n} LoRA matrices randomised (std {std}), {len(keys)} tensors saved, "
          f"max |logit change| vs base {change:.3f}, loss {tensors['loss'].item():.4f} "
          f"(base {base_ref['loss'].item():.4f})")
    assert 0.05 < change < 5.0, change


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/instructrec-model/tests/fixtures")
    torch.manual_seed(SEED)
    make_adapter(
        root, "flan-gated-untied", "flan-gated-untied-lora",
        LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8,
                   target_modules=["q", "v", "wi_0", "wo"], lora_dropout=0.0),
        seed=SEED, std=0.025,
    )
    make_adapter(
        root, "t5-relu-tied", "t5-relu-tied-rslora",
        LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, use_rslora=True,
                   # one regex, matched by re.fullmatch against the whole module name: self-attention
                   # q and k in encoder and decoder, not EncDecAttention
                   target_modules=r".*SelfAttention\.(q|k)",
                   # keys matched as re.match(rf"(.*\.)?({key})$", module name), first key wins
                   rank_pattern={"decoder.block.1.layer.0.SelfAttention.q": 2},
                   alpha_pattern={"encoder.block.0.layer.0.SelfAttention.k": 16},
                   lora_dropout=0.0),
        seed=SEED + 1, std=0.06,
    )


if __name__ == "__main__":
    main()
