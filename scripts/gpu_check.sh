#!/usr/bin/env bash
# The device check of docs/gpu.md, for a machine with an NVIDIA GPU and the CUDA toolkit: runs
# the quick recipe (MovieLens 100K, a tiny model; pre-training, tuning, evaluation) once on the
# CPU and once on the GPU, then compares every training stage's validation losses and the
# evaluation's HR@1, and times both. The CPU build of the same commit gives the reference.
# Usage: scripts/gpu_check.sh [WORK_DIR] [DEVICE]     (defaults: runs/gpu-check, cuda:0)
# With DEVICE=cpu it runs everywhere (both halves on the CPU): a check of this script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/gpu-check}
device=${2:-cuda:0}
features=()
[[ $device == cpu ]] || features=(--features cuda)
cargo build --release -p instructrec-cli "${features[@]}"
bin=target/release/instructrec
mkdir -p "$work"
for half in ref dev; do
  d=$([[ $half == ref ]] && echo cpu || echo "$device")
  out=$work/$half-$(tr : - <<<"$d")
  rm -rf "$out"
  SECONDS=0
  "$bin" run --recipe quick --work "$out" --device "$d" --no-serve > "$out.log" 2>&1
  echo "$d: the quick recipe in $SECONDS s (log $out.log)"
done
python3 - "$work" <<'PY'
import glob, json, os, sys
work = sys.argv[1]
ref, dev = (next(p for p in glob.glob(os.path.join(work, half + "-*")) if os.path.isdir(p))
            for half in ("ref", "dev"))
worst = 0.0
for state in sorted(glob.glob(os.path.join(ref, "**", "last", "trainer_state.json"), recursive=True)):
    other = os.path.join(dev, os.path.relpath(state, ref))
    a, b = (json.load(open(p))["history"] for p in (state, other))
    for x, y in zip(a, b):
        if x["valid_loss"] is not None:
            rel = abs(x["valid_loss"] - y["valid_loss"]) / abs(x["valid_loss"])
            worst = max(worst, rel)
            print(f"{os.path.relpath(state, ref)} step {x['step']}: valid loss {x['valid_loss']:.5f} vs {y['valid_loss']:.5f}")
print(f"largest relative validation-loss difference: {worst:.2e} (float rounding only: expect < 1e-3)")
for report in sorted(glob.glob(os.path.join(ref, "report-*.json"))):
    other = os.path.join(dev, os.path.basename(report))
    models = [{m["name"]: m for m in json.load(open(p))["models"]} for p in (report, other)]
    for name, x in models[0].items():
        for rx, ry in zip(x["results"], models[1][name]["results"]):
            same = sum(a == b for a, b in zip(rx["ranks"], ry["ranks"])) / max(len(rx["ranks"]), 1)
            print(f"{os.path.basename(report)} {name} {rx['setting']}: HR@1 {rx['metrics']['hr1']:.4f} vs "
                  f"{ry['metrics']['hr1']:.4f}, identical ranks {same:.1%}, "
                  f"scoring {rx['eval_wall_s']:.1f} s vs {ry['eval_wall_s']:.1f} s")
PY
