#!/usr/bin/env bash
# Rebuilds docs/results/scenarios-games.{md,json,svg} from the per-scenario reports kept in
# docs/results (the default recipe's BPE checkpoint first, then the earlier Unigram checkpoint,
# then baselines scored on the same lists). A scenario given several reports gathers their rows;
# `instructrec scenarios` checks that they scored the same lists.
# Usage: scripts/scenarios_games.sh [path to the instructrec binary]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/instructrec}
r=docs/results/scenarios-games
args=()
for s in sequential hard-negatives hard-negatives-mined3 product-search personalised-search-i1 \
  personalised-search-i2 personalised-search-p2 tournament-i1 zero-shot-toys; do
  for suffix in -bpe-chosen -bpe-shortlist -bpe -bpe-t3t2 -bpe-t2 "" -t2 -t3t2 -sasrec; do
    if [ -f "$r-$s$suffix.json" ]; then
      args+=(--scenario "$s=$r-$s$suffix.json")
    fi
  done
done
"$bin" scenarios "${args[@]}" --out "$r"
