#!/usr/bin/env bash
# Benchmark against PyTorch + transformers (issue 7): scoring 20 / 100 candidates, one training
# step and constrained beam search on the same random T5 checkpoints and the same inputs, then
# the peak resident memory of serving and of training the default model.
#
#   scripts/bench_vs_torch.sh [--shapes small,base] [--runs 3] [--per-candidate-100 small] [--ctranslate2]
#
# --ctranslate2 also times CTranslate2's score_batch (float32 and int8) on the same checkpoint.
#
# Arguments go to scripts/bench_vs_torch.py. Environment:
#   BENCH_VENV          venv with torch + transformers; created from PyPI when missing
#                       (default target/bench-venv; PyPI's torch is the CUDA build, ~5.6 GB, it
#                       runs on CPU)
#   BENCH_THREADS       threads on both sides (default 2)
#   OMP_WAIT_POLICY     PyTorch's OpenMP waiting (default PASSIVE here; ACTIVE spins)
#   INSTRUCTREC_BIN     the CLI for the memory part (default target/release/instructrec)
#   INSTRUCTREC_MODEL   model served (default runs/amazon-games/model/best)
#   INSTRUCTREC_DATA    prepared data (default runs/amazon-games/prepared)
#   INSTRUCTREC_TRAIN   instruction lines to train on (default runs/amazon-games/instructions/train.jsonl)
#   BENCH_MEMORY_ONLY=1 skips the comparison with PyTorch
# A memory measurement whose inputs are missing is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${BENCH_VENV:-target/bench-venv}
THREADS=${BENCH_THREADS:-2}
if [ "${BENCH_MEMORY_ONLY:-0}" != 1 ]; then
if ! "$VENV/bin/python" -c 'import torch, transformers' 2>/dev/null; then
    echo "creating $VENV (torch + transformers from PyPI)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet torch transformers safetensors
fi
if [[ " $* " == *" --ctranslate2 "* ]] && ! "$VENV/bin/python" -c 'import ctranslate2' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet ctranslate2
fi

cargo build --release -p instructrec-model --example bench_vs_torch
# transformers' loading progress bars and warnings are noise here. PyTorch's OpenMP threads
# busy-wait between parallel regions by default, as candle's pool does (which our side turns
# off, cpu::serial_elementwise_ops): on a shared machine that doubled PyTorch's times, so both
# sides run without spinning unless OMP_WAIT_POLICY says otherwise.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} \
HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1 \
    "$VENV/bin/python" scripts/bench_vs_torch.py --threads "$THREADS" \
    --bin target/release/examples/bench_vs_torch --work target/bench-vs-torch "$@"
fi

BIN=${INSTRUCTREC_BIN:-target/release/instructrec}
MODEL=${INSTRUCTREC_MODEL:-runs/amazon-games/model/best}
DATA=${INSTRUCTREC_DATA:-runs/amazon-games/prepared}
TRAIN=${INSTRUCTREC_TRAIN:-runs/amazon-games/instructions/train.jsonl}
echo
echo "### Peak resident memory (VmHWM), RAYON_NUM_THREADS=$THREADS"
if [ ! -x "$BIN" ]; then
    echo "- skipped: $BIN not found (cargo build --release -p instructrec-cli)"
    exit 0
fi
export RAYON_NUM_THREADS=$THREADS

if [ -d "$DATA" ] && [ -f "$TRAIN" ]; then
    out=$(mktemp -d target/bench-train-XXXXXX)
    log="$out.log"
    /usr/bin/time -v "$BIN" train --train "$TRAIN" --preference P1 --data "$DATA" \
        --out "$out/model" --preset small --max-steps 5 >"$log" 2>&1 \
        || { echo "- training failed, see $log"; exit 1; }
    kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
    echo "- training the small preset, 5 steps (default batch and lengths): $((kb / 1024)) MiB"
    rm -rf "$out" "$log"
else
    echo "- training skipped: $DATA or $TRAIN not found"
fi

if [ -d "$MODEL" ] && [ -d "$DATA" ]; then
    port=$((20000 + RANDOM % 20000))
    log=$(mktemp target/bench-serve-XXXXXX.log)
    "$BIN" serve --model "$MODEL" --data "$DATA" --addr "127.0.0.1:$port" >"$log" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null || true' EXIT
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.5
    done
    requests=0
    for body in '{"user":0,"k":10}' '{"intention":"a scary horror game with a good story","k":10}' \
        '{"user":1,"intention":"something to play with friends","k":10}' \
        '{"intention":"racing games for a wheel","k":20}'; do
        curl -sf -H 'content-type: application/json' -d "$body" \
            "http://127.0.0.1:$port/v1/recommend" >/dev/null && requests=$((requests + 1))
    done
    kb=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
    echo "- serving $MODEL, $requests of 4 requests answered: $((kb / 1024)) MiB"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    trap - EXIT
    rm -f "$log"
else
    echo "- serving skipped: $MODEL or $DATA not found"
fi
