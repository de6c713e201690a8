#!/usr/bin/env python3
"""Paired HR@1 and NDCG@5 differences between two eval reports' rows on the same cases.

    scripts/paired.py A.json ROW_A B.json ROW_B [SETTING]

Each report's per-case ranks (1 = first) of the named model row, list setting number SETTING
(0 by default: the first; 1 is the 1+99 lists of sequential reports), are
compared case by case; the standard error is that of the mean per-case difference. Both
reports must have scored the same cases in the same order (same data, lists and seed)."""
import json
import math
import sys


def ranks(path, row, setting):
    report = json.load(open(path))
    for model in report["models"]:
        if model["name"] == row:
            result = model["results"][setting]
            return result["ranks"], result.get("asked")
    names = [m["name"] for m in report["models"]]
    sys.exit(f"{path}: no row {row!r} (rows: {', '.join(names)})")


def mean_se(xs):
    n = len(xs)
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return m, math.sqrt(var / n)


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    setting = int(sys.argv[5]) if len(sys.argv) == 6 else 0
    a, asked_a = ranks(sys.argv[1], sys.argv[2], setting)
    b, asked_b = ranks(sys.argv[3], sys.argv[4], setting)
    if len(a) != len(b):
        sys.exit(f"different case counts: {len(a)} against {len(b)}")
    hit = lambda r: 1.0 if r == 1 else 0.0
    ndcg5 = lambda r: 1.0 / math.log2(r + 1) if r <= 5 else 0.0
    for name, f in [("HR@1", hit), ("NDCG@5", ndcg5)]:
        ma, _ = mean_se([f(r) for r in a])
        mb, _ = mean_se([f(r) for r in b])
        d, se = mean_se([f(x) - f(y) for x, y in zip(a, b)])
        print(f"{name}: {ma:.3f} (asked {asked_a}) vs {mb:.3f} (asked {asked_b}): "
              f"{d:+.3f} ± {se:.3f} over {len(a)} cases")


main()
