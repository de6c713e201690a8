#!/usr/bin/env bash
# The engine's round trip, in one command: what engine/train.py writes comes back into the Rust
# model exactly.
#
#   scripts/engine_roundtrip.sh            # ENGINE_VENV=/work/venv by default (engine/README.md)
#
# On MovieLens 100K (../shared/datasets/ml-100k) it prepares the data, builds instructions and
# exports them (with --item-tokens), creates a tiny random Flan-T5-shaped model
# (engine/make_tiny_t5.py), trains it on CPU for a few steps fully (with item tokens) and as
# LoRA adapters (plain, and with item tokens, whose adapter carries its grown base), writes a
# bf16 copy of the fully trained model in several safetensors shards, then scores 50 test lines
# with the Rust scorer (crates/instructrec-model/examples/score_lines.rs) and with transformers
# (engine/score.py) for each of them. It prints one row per model and fails if the token ids
# differ or a summed log-likelihood differs by more than 1e-4. Work folder:
# target/engine-roundtrip/ (replaced on each run). Minutes on CPU; not part of CI.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${ENGINE_VENV:-/work/venv}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no Python at $PY: create the venv (engine/README.md) or set ENGINE_VENV" >&2; exit 2; }
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PATH="$VENV/bin:$PATH"
DATA=${ENGINE_DATA:-../shared/datasets/ml-100k}
W=target/engine-roundtrip
LINES=50
STEPS=${ENGINE_STEPS:-20}

cargo build --release -p instructrec-cli
cargo build --release -p instructrec-model --example score_lines
BIN=target/release/instructrec
SCORE=target/release/examples/score_lines

rm -rf "$W"
mkdir -p "$W"
"$BIN" data prepare --input "$DATA" --out "$W/prepared"
"$BIN" instructions build --data "$W/prepared" --out "$W/instructions" --eval-users 50 --seed 42
"$BIN" export --instructions "$W/instructions" --data "$W/prepared" --out "$W/export" --item-tokens

"$PY" engine/make_tiny_t5.py --export "$W/export" --out "$W/tiny" --seed 7

COMMON=(--model "$W/tiny" --export "$W/export" --max-steps "$STEPS" --batch-size 8
        --max-source-len 256 --max-target-len 32 --eval-lines 32 --logging-steps 10 --seed 42)
"$PY" engine/train.py "${COMMON[@]}" --out "$W/full" --lr 1e-3 --item-tokens
"$PY" engine/train.py "${COMMON[@]}" --out "$W/lora" --lr 3e-3 \
    --lora --lora-r 4 --lora-alpha 8 --lora-targets q,v,wi_0,wo
"$PY" engine/train.py "${COMMON[@]}" --out "$W/lora-item-tokens" --lr 3e-3 --item-tokens \
    --lora --lora-r 4 --lora-alpha 8 --lora-targets q,k,v,o

# bf16, in shards: model.safetensors.index.json and several model-0000k-of-0000n.safetensors.
"$PY" - "$W/full" "$W/full-bf16-sharded" <<'EOF'
import shutil, sys
from pathlib import Path
import torch
from transformers import T5ForConditionalGeneration
sys.path.insert(0, "engine")
from train import keep_lm_head_untied
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
model = T5ForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
assert keep_lm_head_untied(model, src)
model.to(torch.bfloat16).save_pretrained(dst, max_shard_size="400KB")
for name in ["tokenizer.json", "tokenizer_config.json"]:
    shutil.copy(src / name, dst / name)
shards = sorted(p.name for p in dst.glob("model-*.safetensors"))
assert (dst / "model.safetensors.index.json").is_file() and len(shards) > 1, shards
print(f"bf16 copy in {len(shards)} shards: {dst}")
EOF

RESULTS="$W/results.jsonl"
: > "$RESULTS"
status=0
for name in tiny full full-bf16-sharded lora lora-item-tokens; do
    dir="$W/$name"
    echo "== $name"
    if ! "$SCORE" --model "$dir" --lines "$W/export/test.jsonl" --out "$W/rust-$name.jsonl" \
            --limit "$LINES" 2> "$W/rust-$name.err"; then
        cat "$W/rust-$name.err" >&2
        printf '{"model": "%s", "error": "Rust scorer failed (see %s)"}\n' "$dir" "$W/rust-$name.err" >> "$RESULTS"
        status=1
        continue
    fi
    if ! "$PY" engine/score.py --model "$dir" --lines "$W/export/test.jsonl" \
            --rust "$W/rust-$name.jsonl" --out "$W/py-$name.jsonl" > "$W/py-$name.log" 2>&1; then
        status=1
    fi
    grep '^score.py' "$W/py-$name.log" || tail -5 "$W/py-$name.log"
    tail -n 1 "$W/py-$name.log" | grep '^{' >> "$RESULTS" || \
        printf '{"model": "%s", "error": "score.py failed (see %s)"}\n' "$dir" "$W/py-$name.log" >> "$RESULTS"
done

"$PY" - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print(f"| {'model':<44} | lines | max abs sum diff | id mismatches | ok |")
print(f"|{'-' * 46}|-------|------------------|---------------|----|")
for r in rows:
    if "error" in r:
        print(f"| {r['model']:<44} |       | {r['error']} | | no |")
        continue
    ids = r["id_mismatches"] + r["auto_id_mismatches"]
    print(f"| {r['model']:<44} | {r['lines']:>5} | {r['max_abs_diff']:>16.3e} | {ids:>13} | "
          f"{'yes' if r['ok'] else 'NO'} |")
EOF
if [ "$status" -ne 0 ]; then
    echo "engine round trip: FAILED" >&2
    exit 1
fi
echo "engine round trip: every model comes back within 1e-4"
