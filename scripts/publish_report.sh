#!/usr/bin/env bash
# Copies an eval report (STEM.json, STEM.md, STEM.svg) to another stem, e.g. from a run folder
# into docs/results, pointing the markdown's chart at the copied SVG.
# Usage: scripts/publish_report.sh runs/games-bpe/reports/sequential docs/results/scenarios-games-sequential-bpe
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 SOURCE_STEM DEST_STEM (without .json/.md/.svg)" >&2
  exit 2
fi
src=$1 dest=$2
for ext in json md svg; do
  [ -f "$src.$ext" ] || { echo "$src.$ext: no such report file" >&2; exit 1; }
done
for ext in json svg; do
  cp "$src.$ext" "$dest.$ext.tmp" && mv "$dest.$ext.tmp" "$dest.$ext"
done
name=$(basename "$dest")
sed "s|^!\[metrics\](.*\.svg)\$|![metrics]($name.svg)|" "$src.md" > "$dest.md.tmp"
mv "$dest.md.tmp" "$dest.md"
echo "wrote $dest.{json,md,svg}"
