#!/usr/bin/env bash
# Coverage-guided fuzzing of the importers and the request parser with libFuzzer, on stable
# Rust (see docs/reliability.md, "Coverage-guided fuzzing").
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   fuzz each target for SECONDS (default $FUZZ_SECONDS,
#                                           else 60), then minimise its corpus
#   scripts/fuzz.sh minimize [TARGET...]    only minimise the corpora (libFuzzer -merge=1)
#   scripts/fuzz.sh list                    the targets
#
# Needs a C++17 compiler (g++ or clang++: the libfuzzer-sys crate compiles libFuzzer from its
# C++ sources) and cargo; nothing else. Corpora: fuzz/corpus/<target>/ (committed; libFuzzer
# adds the inputs that reach new code), seeded from the test fixtures on every run. A crash
# (panic, abort, timeout, out of memory) stops that target, is written to
# fuzz/artifacts/<target>/ and makes the script exit non-zero after the other targets ran.
# Inputs kept under fuzz/regressions/<target>/ are replayed before fuzzing.
#
# Environment: FUZZ_SECONDS (time per target), FUZZ_TIMEOUT (seconds one input may take before
# it counts as a hang, default 30), FUZZ_ARGS (more libFuzzer flags, e.g.
# "-max_len=8192"), CARGO_BUILD_JOBS (cargo's parallelism; 1 on a shared machine).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz="$root/fuzz"
all_targets=(import_amazon_games import_p5 import_recbole import_amazon2018 import_amazon2018_gz
    request_json request_http)

mode=fuzz
seconds=${FUZZ_SECONDS:-60}
case "${1:-}" in
    minimize | minimise) mode=minimize; shift ;;
    list) printf '%s\n' "${all_targets[@]}"; exit 0 ;;
    -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    '' | *[!0-9]*) ;;
    *) seconds=$1; shift ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    if [[ ! " ${all_targets[*]} " =~ " $t " ]]; then
        echo "fuzz.sh: unknown target $t; targets: ${all_targets[*]}" >&2
        exit 2
    fi
done

if ! command -v "${CXX:-c++}" >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
    echo "fuzz.sh: no C++ compiler: libfuzzer-sys builds libFuzzer from C++17 sources; install" \
        "g++ (Debian/Ubuntu: apt-get install g++) or clang++" >&2
    exit 2
fi

# The instrumentation cargo-fuzz passes, all of it stable rustc: SanitizerCoverage's LLVM pass
# (-Cpasses, -Cllvm-args) gives libFuzzer its edge counters, PC table, comparison operands and
# stack depth. No sanitizer (-Zsanitizer is nightly-only; Rust code outside `unsafe` needs
# none to catch what these targets look for: panics, overflows, hangs, memory blow-ups).
# --cfg fuzzing as cargo-fuzz sets it; debug assertions and overflow checks make arithmetic
# overflow a crash instead of a silent wrap in the optimised build.
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# Building for an explicit --target keeps these flags off build scripts and proc macros
# (serde_derive, ...), which run inside the compiler and are not linked with libFuzzer.
host=$(rustc -vV | sed -n 's/^host: //p')
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "== building ${targets[*]} (instrumented, release) into fuzz/target"
nice cargo build --manifest-path "$fuzz/Cargo.toml" --release --target "$host" \
    --target-dir "$fuzz/target" "${bins[@]}"
bin_dir="$fuzz/target/$host/release"

# Seed inputs from the fixtures, rebuilt on every run (fuzz/target/seeds/<target>/). Importer
# inputs are one selector byte (which file of the layout the rest replaces; see
# fuzz/src/lib.rs) followed by that file's content.
seed_layout() { # target selector-offset file...
    local dir="$fuzz/target/seeds/$1" offset=$2 i=0
    shift 2
    mkdir -p "$dir"
    for file in "$@"; do
        { printf "$(printf '\\%03o' $((offset + i)))"; cat "$file"; } >"$dir/seed-$((offset + i))"
        i=$((i + 1))
    done
}
seed_requests() { # target
    local dir="$fuzz/target/seeds/$1" i=0
    mkdir -p "$dir"
    while IFS= read -r body; do
        printf '%s' "$body" >"$dir/seed-$i"
        i=$((i + 1))
    done <<'EOF'
{"intention": "a racing game for two players"}
{"user": "U3", "k": 5}
{"user": 3, "intention": "Video Games, Racing", "intention_style": "specific"}
{"history": [1, 2, "S00002", "Puzzle game number 5"], "candidates": [3, 4, 5, "S00007"], "preference": "I like puzzles", "context": "on a train"}
{"preference": "short games", "intention": "something relaxing", "intention_style": "vague", "k": 3, "refine": false}
{"session": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "refine": true, "intention": "cheaper"}
{"user": "U1", "history": [], "candidates": [], "k": 0}
EOF
}
seed() {
    local fx="$fuzz/fixtures" data="$root/crates/instructrec-data/tests/fixtures"
    rm -rf "$fuzz/target/seeds/$1"
    case $1 in
        import_amazon_games) seed_layout "$1" 0 "$fx/amazon-games/raw/G.inter.json" \
            "$fx/amazon-games/raw/G.item2id" "$fx/amazon-games/raw/G.user2id" \
            "$fx/amazon-games/items.jsonl" ;;
        import_p5) seed_layout "$1" 0 "$fx/p5/sequential_data.txt" "$fx/p5/id2title.json" \
            "$fx/p5/id2category.json" ;;
        import_recbole) seed_layout "$1" 0 "$fx/recbole/m.inter" "$fx/recbole/m.item" \
            "$fx/recbole/m.user" ;;
        import_amazon2018) seed_layout "$1" 0 "$data/amazon2018/Toy_Games.json" \
            "$data/amazon2018/meta_Toy_Games.json" ;;
        import_amazon2018_gz)
            # Selectors 0, 1: the .gz files as they are; 2, 3: plain text the harness gzips.
            seed_layout "$1" 0 "$data/amazon2018-gz/Toy_Games.json.gz" \
                "$data/amazon2018-gz/meta_Toy_Games.json.gz"
            seed_layout "$1" 2 "$data/amazon2018/Toy_Games.json" \
                "$data/amazon2018/meta_Toy_Games.json" ;;
        request_json | request_http) seed_requests "$1" ;;
    esac
}

bytes() { find "$1" -type f -exec cat {} + | wc -c; }

# Replaces fuzz/corpus/<target>/ by a small subset of it and the seeds that reaches the same
# code: -use_counters=0 merges on edges alone (one input per edge, not one per hit-count
# bucket of each edge), which keeps the committed corpus about a quarter of the bytes; the
# hit-count variety is found again within seconds of the next run.
minimize() { # target
    local t=$1 corpus="$fuzz/corpus/$1" fresh="$fuzz/target/merge/$1"
    rm -rf "$fresh"
    mkdir -p "$fresh" "$corpus"
    nice "$bin_dir/$t" -merge=1 -use_counters=0 "$fresh" "$corpus" "$fuzz/target/seeds/$t" >"$fuzz/target/logs/$t.merge.log" 2>&1 || {
        echo "$t: minimising failed; see fuzz/target/logs/$t.merge.log" >&2
        return 1
    }
    rm -rf "$corpus"
    mv "$fresh" "$corpus"
    echo "$t: corpus minimised to $(find "$corpus" -type f | wc -l) inputs, $(bytes "$corpus") bytes"
}

# The numbers of one libFuzzer log: coverage when the corpus was loaded and at the end.
summary() { # target log
    local inited done execs
    inited=$(grep -m1 -o 'INITED cov: [0-9]* ft: [0-9]*' "$2" | sed 's/INITED //' || true)
    done=$(grep -o 'DONE *cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9a-zA-Z]*' "$2" | tail -1 | sed 's/DONE *//' || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$2" | tail -1)
    printf '%-22s executions %-9s start %-22s end %s\n' "$1" "${execs:-?}" "${inited:-?}" "${done:-?}"
}

mkdir -p "$fuzz/target/logs"
# The importer harnesses write their directory under TMPDIR once per process and never remove
# it (libFuzzer exits without running destructors): keep those under fuzz/target, emptied here.
export TMPDIR="$fuzz/target/tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"
failed=()
results=()
for t in "${targets[@]}"; do
    seed "$t"
    if [ "$mode" = minimize ]; then
        minimize "$t" || failed+=("$t")
        continue
    fi
    corpus="$fuzz/corpus/$t" artifacts="$fuzz/artifacts/$t" log="$fuzz/target/logs/$t.log"
    mkdir -p "$corpus" "$artifacts"
    regressions=()
    if [ -d "$fuzz/regressions/$t" ]; then
        mapfile -t regressions < <(find "$fuzz/regressions/$t" -type f | sort)
    fi
    if [ ${#regressions[@]} -gt 0 ]; then
        echo "== $t: replaying ${#regressions[@]} saved regression input(s)"
        if ! nice "$bin_dir/$t" -timeout="${FUZZ_TIMEOUT:-30}" "${regressions[@]}" >"$fuzz/target/logs/$t.regressions.log" 2>&1; then
            echo "$t: a regression input under fuzz/regressions/$t/ still fails; see fuzz/target/logs/$t.regressions.log" >&2
            failed+=("$t (regression)")
        fi
    fi
    echo "== $t: fuzzing for ${seconds}s (log: fuzz/target/logs/$t.log)"
    status=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    nice "$bin_dir/$t" "$corpus" "$fuzz/target/seeds/$t" -max_total_time="$seconds" \
        -timeout="${FUZZ_TIMEOUT:-30}" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|pulse|DONE)' "$log" | tail -4 || true
    # An uninstrumented build would fuzz blind: libFuzzer then finds no counters.
    if ! grep -q 'inline 8-bit counters' "$log" || grep -q 'Is the code instrumented' "$log"; then
        echo "$t: the binary has no coverage counters (was it built without the flags above?)" >&2
        failed+=("$t (uninstrumented)")
    fi
    if [ "$status" -ne 0 ]; then
        echo "$t: CRASHED (exit $status); the input and the message:" >&2
        grep -E 'Test unit written to|panicked at|^thread|ERROR: libFuzzer|SUMMARY' "$log" | head -8 >&2 || true
        echo "full log: fuzz/target/logs/$t.log; reproduce: $bin_dir/$t <input>" >&2
        failed+=("$t (crash)")
    else
        minimize "$t" || failed+=("$t (minimise)")
    fi
    results+=("$(summary "$t" "$log")")
done

if [ ${#results[@]} -gt 0 ]; then
    echo "== summary (${seconds}s per target)"
    printf '%s\n' "${results[@]}"
    echo "corpus: $(find "$fuzz/corpus" -type f | wc -l) files, $(bytes "$fuzz/corpus") bytes"
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
