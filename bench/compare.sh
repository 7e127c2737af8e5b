#!/usr/bin/env bash
# Benchmarks 1 (branch) and 9 (server-load) for two builds of lakeplan in one sitting, alternating
# which goes first, and prints the ratio of their medians (B over A: > 1 means B is slower for
# latencies, faster for throughput). The builds are two target folders holding `lakeplan`,
# `bench-branch` and `bench-server-load` (e.g. `target/debug` of this checkout and of a git
# worktree at the previous commit, each built with `cargo build --workspace --all-targets`).
#
#   bench/compare.sh A_DIR B_DIR [ROUNDS]     # ROUNDS pairs (default 3), 15 s per workload
set -euo pipefail
A=${1:?A_DIR}; B=${2:?B_DIR}; ROUNDS=${3:-3}
OUT=${BENCH_OUT:-$(cd "$(dirname "$0")" && pwd)/out}/compare
mkdir -p "$OUT"
one() { # which dir round
    local d=$2
    "$d/bench-server-load" --cli "$d/lakeplan" --secs 15 --dir "$OUT" \
        --json "$OUT/server-load-$1-$3.json" >"$OUT/server-load-$1-$3.txt" 2>&1
    "$d/bench-branch" --cli "$d/lakeplan" --tables 2000 --rounds 4 --dir "$OUT" \
        --json "$OUT/branch-$1-$3.json" >"$OUT/branch-$1-$3.txt" 2>&1
}
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then one a "$A" "$r"; one b "$B" "$r"; else one b "$B" "$r"; one a "$A" "$r"; fi
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(kind, which):
    return [json.load(open(f"{out}/{kind}-{which}-{r}.json")) for r in range(1, rounds + 1)]
def med(xs):
    return statistics.median(xs)
sa, sb = load("server-load", "a"), load("server-load", "b")
ops = lambda d: d["http"]["ops_per_sec"]
print(f"server-load HTTP ops/s: A {[round(ops(d)) for d in sa]}  B {[round(ops(d)) for d in sb]}")
print(f"  throughput ratio A/B (median): {med(map(ops, sa)) / med(map(ops, sb)):.3f}  (> 1: B is slower)")
ba, bb = load("branch", "a"), load("branch", "b")
for what, unit, get in (
    ("in process", "us", lambda d: [d["in_process"]["median_us_1"], d["in_process"]["median_us_large"]]),
    ("lakeplan process", "ms", lambda d: [d["cli"]["median_ms_1"], d["cli"]["median_ms_large"]]),
):
    a = med([x for d in ba for x in get(d)])
    b = med([x for d in bb for x in get(d)])
    print(f"branch create ({what}) median {unit}: A {a:.2f}  B {b:.2f}  ratio B/A {b / a:.3f}")
PY
