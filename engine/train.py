#!/usr/bin/env python3
"""Fine-tunes a local T5 / Flan-T5 checkpoint on an `instructrec export` folder with transformers'
Seq2SeqTrainer, and writes the result in the layout instructrec's Rust loader reads.

    python engine/train.py --model CHECKPOINT_DIR --export EXPORT_DIR --out OUT_DIR [options]

Inputs
  --model     a checkpoint folder (config.json, model.safetensors or a sharded index, tokenizer
              files); local paths only, nothing is downloaded.
  --export    what `instructrec export` wrote: train.jsonl and validation.jsonl lines with `input`,
              `target` and labels (task, preference, intention, strategy, target_kind, template).
              --task T3 (repeatable, or comma-separated) and --where KEY=VALUE keep matching lines.

Every text is encoded the way the Rust side scores it: the tokenizer's pieces without special
tokens, cut to the length limit, then the end-of-sequence id.

Outputs (in --out, which must be new or empty unless --overwrite)
  full fine-tuning: config.json, model.safetensors (or model.safetensors.index.json and shards,
      see --max-shard-size), tokenizer.json (+ tokenizer_config.json) and instructrec_engine.json.
  --lora: a PEFT adapter folder (adapter_config.json, adapter_model.safetensors) whose
      base_model_name_or_path is the base's path relative to --out, plus tokenizer.json. With
      --item-tokens the embedding rows are trained too and the resized base is written into
      OUT/base/, which base_model_name_or_path then names ("base").
  instructrec_engine.json records the seed, every option, the export manifest's SHA-256, step
  count, losses and library versions.

Everything is written into OUT.partial/ and renamed to OUT only when complete; a killed run
leaves OUT untouched (OUT.partial/ holds its checkpoints when --save-steps is given, which
--resume continues from).

Several GPUs: launch with accelerate/torchrun/deepspeed (see engine/README.md); with ZeRO-3
(--deepspeed engine/ds_zero3.json) the 16-bit weights are gathered on save, which this script
turns on in the config it passes if the file left it off.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PARTIAL_MARK = ".instructrec-engine-partial"
ENGINE_FORMAT = "instructrec-engine/1"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="local checkpoint folder to start from")
    p.add_argument("--export", required=True, help="an `instructrec export` folder")
    p.add_argument("--out", required=True, help="output folder (new or empty, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out at the end")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in OUT.partial/ (needs --save-steps)")
    p.add_argument("--task", action="append", default=[],
                   help="keep lines of these tasks (T0..T3; repeatable or comma-separated)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="keep lines whose label KEY equals VALUE (repeatable, all must hold)")
    p.add_argument("--limit-train", type=int, default=0, help="use only the first N train lines")
    p.add_argument("--eval-lines", type=int, default=512,
                   help="validation lines whose loss is reported at the end (0: none)")
    p.add_argument("--max-source-len", type=int, default=512)
    p.add_argument("--max-target-len", type=int, default=64)
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (-1: use --epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8, help="per device")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--scheduler", default="linear", help="transformers lr_scheduler_type")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (never fp16: T5 overflows)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--deepspeed", metavar="CONFIG", help="DeepSpeed JSON (engine/ds_zero2.json, ds_zero3.json)")
    p.add_argument("--item-tokens", action="store_true",
                   help="add the export's added_tokens.json to the tokenizer and grow the embeddings; "
                        "each new row starts as the mean of the rows of the title's own pieces")
    p.add_argument("--lora", action="store_true", help="train a PEFT LoRA adapter instead of all weights")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--lora-targets", default="q,v",
                   help="comma-separated module names (q,k,v,o,wi,wi_0,wi_1,wo)")
    p.add_argument("--rslora", action="store_true", help="rank-stabilised scale alpha/sqrt(r)")
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--save-steps", type=int, default=0,
                   help="keep resumable checkpoints in OUT.partial/checkpoints every N steps (0: none)")
    p.add_argument("--max-shard-size", default="5GB", help="safetensors shard size of the saved model")
    # set by `deepspeed` / older launchers; read by the Trainer from the environment anyway
    p.add_argument("--local_rank", "--local-rank", type=int, default=-1, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def fail(msg: str) -> None:
    print(f"engine/train.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def read_lines(path: Path, tasks: set, where: list, limit: int = 0) -> list:
    if not path.is_file():
        fail(f"{path} not found (is --export an `instructrec export` folder?)")
    keep = []
    with path.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            line = json.loads(raw)
            if not isinstance(line.get("input"), str) or not isinstance(line.get("target"), str):
                fail(f"{path}:{n}: no string `input` and `target`")
            if tasks and line.get("task") not in tasks:
                continue
            if any(str(line.get(k)) != v for k, v in where):
                continue
            keep.append((line["input"], line["target"]))
            if limit and len(keep) >= limit:
                break
    return keep


def encode(tok, pairs: list, max_source: int, max_target: int, eos: int) -> list:
    """Pieces without special tokens, cut, then eos: the Rust scorer's rule."""
    if not pairs:
        return []
    src = tok([a for a, _ in pairs], add_special_tokens=False)["input_ids"]
    tgt = tok([b for _, b in pairs], add_special_tokens=False)["input_ids"]
    rows = []
    for s, t in zip(src, tgt):
        s = s[: max_source - 1] + [eos]
        t = t[: max_target - 1] + [eos]
        rows.append({"input_ids": s, "attention_mask": [1] * len(s), "labels": t})
    return rows


def checkpoint_keys(model_dir: Path) -> dict:
    """tensor name -> file of a safetensors checkpoint (single file or sharded index)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return {k: model_dir / v for k, v in json.loads(index.read_text())["weight_map"].items()}
    single = model_dir / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open
        with safe_open(str(single), "pt") as f:
            return {k: single for k in f.keys()}
    return {}


def keep_lm_head_untied(model, model_dir: Path) -> bool:
    """transformers 5 ties T5's lm_head to the embeddings unless the checkpoint's two differ and
    it can compare them; a Flan-T5 checkpoint stores its own lm_head.weight, so make sure the
    model uses it. Returns whether the model is untied."""
    import torch
    from safetensors import safe_open
    keys = checkpoint_keys(model_dir)
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if "lm_head.weight" not in keys:
        return head.weight is not emb.weight
    if head.weight is not emb.weight:
        return True
    with safe_open(str(keys["lm_head.weight"]), "pt") as f:
        w = f.get_tensor("lm_head.weight")
    head.weight = torch.nn.Parameter(w.to(emb.weight.dtype).clone())
    print("engine: lm_head.weight is stored separately in the checkpoint: kept untied")
    return True


def add_item_tokens(model, tok, titles: list, untied: bool) -> int:
    """Adds one token per title and grows the embedding (and an untied lm_head); a new row is the
    mean of the rows of the pieces the title had before. Never shrinks the matrix (Flan-T5 has
    more rows than tokenizer entries) and keeps an untied lm_head untied, which
    resize_token_embeddings does not."""
    import contextlib
    import torch
    pieces = [tok(t, add_special_tokens=False)["input_ids"] for t in titles]
    added = tok.add_tokens(titles)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    params = [emb.weight] + ([head.weight] if untied else [])
    gather = contextlib.nullcontext()
    if hasattr(emb.weight, "ds_id"):  # partitioned by ZeRO-3 at load
        import deepspeed
        gather = deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    with gather:
        old_e = emb.weight.detach().clone()
        old_h = head.weight.detach().clone() if untied else None
    old_n, d = old_e.shape
    new_n = max(len(tok), old_n)
    new_e = torch.zeros(new_n, d, dtype=old_e.dtype)
    new_e[:old_n] = old_e
    new_h = None
    if untied:
        new_h = torch.zeros(new_n, d, dtype=old_h.dtype)
        new_h[:old_n] = old_h
    for title, ids in zip(titles, pieces):
        row = tok.convert_tokens_to_ids(title)
        if row < old_n and row < len(tok) - added:
            continue  # already a token of the base vocabulary
        ids = [i for i in ids if i < old_n] or [tok.unk_token_id]
        new_e[row] = old_e[ids].float().mean(0).to(old_e.dtype)
        if untied:
            new_h[row] = old_h[ids].float().mean(0).to(old_h.dtype)
    e = torch.nn.Embedding(new_n, d, dtype=old_e.dtype)
    e.weight = torch.nn.Parameter(new_e)
    model.set_input_embeddings(e)
    if untied:
        h = torch.nn.Linear(d, new_n, bias=False, dtype=old_h.dtype)
        h.weight = torch.nn.Parameter(new_h)
        model.set_output_embeddings(h)
    else:
        model.get_output_embeddings().weight = e.weight
        model.get_output_embeddings().out_features = new_n
    model.config.vocab_size = new_n
    return added


def ds_config(path: str) -> dict:
    cfg = json.loads(Path(path).read_text())
    zero = cfg.setdefault("zero_optimization", {})
    if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        print("engine: ZeRO-3: stage3_gather_16bit_weights_on_model_save set to true "
              "(needed to write model.safetensors)")
    return cfg


def partial_dir(out: Path) -> Path:
    return out.parent / (out.name + ".partial")


def prepare_partial(out: Path, resume: bool) -> Path:
    partial = partial_dir(out)
    if is_main():
        if partial.exists() and not resume:
            if not (partial / PARTIAL_MARK).exists():
                fail(f"{partial} exists and was not made by this script; remove it")
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        (partial / PARTIAL_MARK).write_text("staging folder of engine/train.py\n")
    return partial


def trainer_barrier() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    import importlib
    v = {}
    for name in ["torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "deepspeed"]:
        try:
            v[name] = importlib.import_module(name).__version__
        except Exception:
            pass
    return v


def main(argv=None) -> None:
    args = parse_args(argv)
    model_dir, export, out = Path(args.model), Path(args.export), Path(args.out)
    if not (model_dir / "config.json").is_file():
        fail(f"--model {model_dir}: no config.json (local checkpoint folders only)")
    if not (export / "train.jsonl").is_file():
        fail(f"--export {export}: no train.jsonl")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        fail(f"--out {out} exists and is not empty (use --overwrite to replace it at the end)")
    if args.resume and not args.save_steps:
        fail("--resume needs --save-steps (checkpoints are only kept then)")
    tasks = {t.strip() for spec in args.task for t in spec.split(",") if t.strip()}
    where = []
    for spec in args.where:
        if "=" not in spec:
            fail(f"--where {spec}: expected KEY=VALUE")
        k, v = spec.split("=", 1)
        where.append((k, v))

    import torch
    from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
                              Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed)

    print(f"engine: seed {args.seed}")
    set_seed(args.seed)
    partial = partial_dir(out)

    # The arguments come before the model: with ZeRO-3 they make from_pretrained partition the
    # weights as it loads them.
    targs = Seq2SeqTrainingArguments(
        output_dir=str(partial / "checkpoints"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        lr_scheduler_type=args.scheduler,
        max_steps=args.max_steps,
        num_train_epochs=args.epochs,
        seed=args.seed,
        data_seed=args.seed,
        bf16=args.bf16,
        deepspeed=ds_config(args.deepspeed) if args.deepspeed else None,
        logging_steps=args.logging_steps,
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500,
        eval_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        **({"gradient_checkpointing": True} if args.gradient_checkpointing else {}),
    )

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not tok.is_fast:
        fail(f"{model_dir}: no fast tokenizer (tokenizer.json) could be loaded")
    # A frozen LoRA base needs no float32 copy under --bf16 (PEFT keeps the adapters in float32);
    # everything that is trained starts from float32 weights.
    frozen_bf16 = args.lora and args.bf16 and not args.item_tokens
    model = AutoModelForSeq2SeqLM.from_pretrained(
        model_dir, local_files_only=True, dtype=torch.bfloat16 if frozen_bf16 else torch.float32)
    if model.config.model_type not in ("t5", "mt5", "umt5"):
        print(f"engine: warning: model_type {model.config.model_type}: the Rust loader reads T5 only")
    untied = keep_lm_head_untied(model, model_dir)
    eos = model.config.eos_token_id
    if eos is None or eos != tok.eos_token_id:
        fail(f"config eos_token_id {eos} and tokenizer eos {tok.eos_token_id} differ")

    added = 0
    if args.item_tokens:
        path = export / "added_tokens.json"
        if not path.is_file():
            fail(f"--item-tokens: {path} missing (export with `instructrec export --item-tokens`)")
        titles = json.loads(path.read_text())
        added = add_item_tokens(model, tok, titles, untied)
        print(f"engine: {added} item tokens added ({len(titles)} titles); vocabulary rows "
              f"{model.config.vocab_size}")

    if args.lora:
        from peft import LoraConfig, get_peft_model
        alpha = int(args.lora_alpha) if float(args.lora_alpha).is_integer() else args.lora_alpha
        lcfg = LoraConfig(task_type="SEQ_2_SEQ_LM", r=args.lora_r, lora_alpha=alpha,
                          lora_dropout=args.lora_dropout, use_rslora=args.rslora,
                          target_modules=[t.strip() for t in args.lora_targets.split(",") if t.strip()])
        model = get_peft_model(model, lcfg)
        if args.item_tokens:
            base = model.get_base_model()
            base.get_input_embeddings().weight.requires_grad_(True)
            base.get_output_embeddings().weight.requires_grad_(True)
        model.print_trainable_parameters()

    train_pairs = read_lines(export / "train.jsonl", tasks, where, args.limit_train)
    eval_pairs = (read_lines(export / "validation.jsonl", tasks, where, args.eval_lines)
                  if args.eval_lines and (export / "validation.jsonl").is_file() else [])
    if not train_pairs:
        fail("no train lines left after the filters")
    train_rows = encode(tok, train_pairs, args.max_source_len, args.max_target_len, eos)
    eval_rows = encode(tok, eval_pairs, args.max_source_len, args.max_target_len, eos)
    print(f"engine: {len(train_rows)} train lines, {len(eval_rows)} validation lines")

    prepare_partial(out, args.resume)
    trainer_barrier()
    base_model = model.get_base_model() if args.lora else model
    collator = DataCollatorForSeq2Seq(tok, model=base_model, label_pad_token_id=-100,
                                      pad_to_multiple_of=8 if args.bf16 else None)
    trainer = Seq2SeqTrainer(model=model, args=targs, train_dataset=train_rows,
                             eval_dataset=eval_rows or None, data_collator=collator,
                             processing_class=tok)
    resume = None
    if args.resume and any((partial / "checkpoints").glob("checkpoint-*")):
        resume = True
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = {"train_loss": result.training_loss, "steps": trainer.state.global_step,
               "train_runtime_s": round(time.time() - started, 1)}
    if eval_rows:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    print(f"engine: {json.dumps(metrics)}")

    # Gather the weights (a collective under ZeRO-3: every process takes part), write on the main one.
    if trainer.is_deepspeed_enabled:
        state = trainer.accelerator.get_state_dict(trainer.deepspeed)
    else:
        state = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    staged = partial / "model"
    if trainer.args.should_save:
        if staged.exists():
            shutil.rmtree(staged)
        staged.mkdir(parents=True)
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        info = {"format": ENGINE_FORMAT, "seed": args.seed, "args": vars(args),
                "model": str(model_dir), "lora": args.lora, "item_tokens_added": added,
                "train_lines": len(train_rows), "eval_lines": len(eval_rows), **metrics,
                "versions": versions()}
        manifest = export / "manifest.json"
        if manifest.is_file():
            info["export_manifest_sha256"] = sha256(manifest)
            info["export_format"] = json.loads(manifest.read_text()).get("format")
        if args.lora:
            save_adapter(unwrapped, state, staged, model_dir, out, tok, args)
        else:
            unwrapped.save_pretrained(staged, state_dict=state, max_shard_size=args.max_shard_size)
            tok.save_pretrained(staged)
            check_saved(staged, untied)
        (staged / "training_args.bin").unlink(missing_ok=True)
        (staged / "instructrec_engine.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        publish(staged, out, partial)
        print(f"engine: wrote {out}")
    trainer.accelerator.wait_for_everyone()


def save_adapter(peft_model, state: dict, staged: Path, model_dir: Path, out: Path, tok, args) -> None:
    peft_model.save_pretrained(staged, state_dict=state, save_embedding_layers=False)
    (staged / "README.md").unlink(missing_ok=True)
    cfg_path = staged / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    if args.item_tokens:
        # The grown, embedding-trained base goes with the adapter.
        base = peft_model.get_base_model()
        base_state = {}
        for k, v in state.items():
            if ".lora_" in k:
                continue
            k = k.removeprefix("base_model.model.").replace(".base_layer.", ".")
            base_state[k] = v
        (staged / "base").mkdir()
        base.save_pretrained(staged / "base", state_dict=base_state,
                             max_shard_size=args.max_shard_size)
        tok.save_pretrained(staged / "base")
        cfg["base_model_name_or_path"] = "base"
    else:
        cfg["base_model_name_or_path"] = os.path.relpath(model_dir.resolve(), out.resolve())
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])  # PEFT writes a set, in any order
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tok.save_pretrained(staged)
    print(f"engine: adapter base_model_name_or_path = {cfg['base_model_name_or_path']!r} "
          "(relative to the adapter folder)")


def check_saved(staged: Path, untied: bool) -> None:
    keys = checkpoint_keys(staged)
    if not keys:
        fail(f"no model.safetensors written in {staged}")
    if untied and "lm_head.weight" not in keys:
        fail("the base had its own lm_head.weight but the saved model has none")
    if not (staged / "tokenizer.json").is_file():
        fail("no tokenizer.json written (the tokenizer is not a fast one)")


def publish(staged: Path, out: Path, partial: Path) -> None:
    """Renames the staged folder to OUT; a replaced OUT is moved aside first, removed after."""
    old = None
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            old = out.parent / f"{out.name}.replaced-{os.getpid()}"
            out.rename(old)
    staged.rename(out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    shutil.rmtree(partial)


if __name__ == "__main__":
    main()
