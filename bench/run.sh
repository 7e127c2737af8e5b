#!/usr/bin/env bash
# One command per benchmark of the local lake (see bench/README.md):
#
#   bench/run.sh branch    # 1. branch create, 1 table vs 10,000 tables
#   bench/run.sh commits   # 2. commits/s on SQLite vs raw rusqlite
#   bench/run.sh tpch      # 3. TPC-H SF1: lakeplan vs raw DataFusion vs DuckDB 1.4.4
#   bench/run.sh import    # 4. 1 GB CSV import: lakeplan vs pyarrow
#   bench/run.sh handoff        # 5. pipelines: 1 GiB Arrow handoff between functions vs memcpy, Parquet
#   bench/run.sh warmstart      # 6. pipelines: warm sandboxed worker start vs python -c 'import pyarrow'
#   bench/run.sh rerun          # 7. pipelines: second (all cached) run of a 3-node pipeline vs the first
#   bench/run.sh pipeline-tpch  # 8. pipelines: TPC-H Q1 as a 3-node pipeline over lineitem SF1 vs pyarrow
#   bench/run.sh env-numpy1     # 8b. pipelines: environment build of a numpy-1.x function, cold and cached
#   bench/run.sh server-load    # 9. server: 32 clients, mixed metadata workload over HTTP vs in process
#   bench/run.sh flight         # 10. server: a 1 GB query result over Arrow Flight vs local Parquet
#   bench/run.sh node-handoff   # 11. server: a node's 1 GB output to another worker over Flight vs pyarrow.flight, mmap
#   bench/run.sh slow-metastore # 12. server: /healthz and heartbeat latency, metastore calls delayed 200 ms vs not
#   bench/run.sh all
#
# Builds the release binaries first (CARGO_TARGET_DIR is honoured; BENCH_NO_BUILD=1 skips the
# build), makes the Python venv .venv if missing, writes everything under bench/out (or
# BENCH_OUT). Extra arguments go to the benchmark (e.g. `bench/run.sh tpch --reps 5`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
OUT=${BENCH_OUT:-$BENCH/out}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET/release"
PY="$ROOT/.venv/bin/python"

build() {
    if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
        echo "== cargo build --release -p lakeplan-bench -p lakeplan-cli (target: $TARGET)" >&2
        (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p lakeplan-bench -p lakeplan-cli)
    fi
    for b in lakeplan bench-branch bench-commits bench-tpch bench-warmstart bench-server-load bench-slow-metastore; do
        [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build it, or set CARGO_TARGET_DIR)" >&2; exit 1; }
    done
}

venv() {
    if ! "$PY" -c 'import duckdb, pyarrow, duckdb_ext' >/dev/null 2>&1 ||
        [ "$("$PY" -c 'import duckdb; print(duckdb.__version__)')" != 1.4.4 ]; then
        echo "== making $ROOT/.venv (duckdb 1.4.4 + its tpch extension, pyarrow)" >&2
        [ -x "$PY" ] || python3 -m venv "$ROOT/.venv"
        "$ROOT/.venv/bin/pip" install -q duckdb==1.4.4 duckdb-ext-tpch==1.4.4.20260205 pyarrow
    fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
mkdir -p "$OUT"
case "$cmd" in
    branch)
        build
        "$BIN/bench-branch" --cli "$BIN/lakeplan" --dir "$OUT" --json "$OUT/branch.json" "$@"
        ;;
    commits)
        build
        "$BIN/bench-commits" --dir "$OUT" --json "$OUT/commits.json" "$@"
        ;;
    tpch)
        build
        venv
        "$PY" "$BENCH/tpch.py" --bin "$BIN" --out "$OUT/tpch" "$@"
        ;;
    import)
        build
        venv
        "$PY" "$BENCH/import_csv.py" --bin "$BIN" --out "$OUT/import" "$@"
        ;;
    handoff)
        venv
        "$PY" "$BENCH/handoff.py" --out "$OUT" "$@"
        ;;
    warmstart)
        build
        "$BIN/bench-warmstart" --dir "$OUT/warmstart" --python-src "$ROOT/python" --cli "$BIN/lakeplan" \
            --json "$OUT/warmstart.json" "$@"
        ;;
    server-load)
        build
        "$BIN/bench-server-load" --cli "$BIN/lakeplan" --dir "$OUT" --json "$OUT/server-load.json" "$@"
        ;;
    slow-metastore)
        build
        "$BIN/bench-slow-metastore" --cli "$BIN/lakeplan" --dir "$OUT" --json "$OUT/slow-metastore.json" "$@"
        ;;
    flight)
        build
        venv
        "$PY" "$BENCH/flight.py" --bin "$BIN" --out "$OUT/flight" "$@"
        ;;
    node-handoff)
        build
        venv
        "$PY" "$BENCH/node_handoff.py" --bin "$BIN" --out "$OUT/node-handoff" "$@"
        ;;
    rerun)
        build
        venv
        "$PY" "$BENCH/pipelines.py" rerun --bin "$BIN" --out "$OUT/rerun" "$@"
        ;;
    pipeline-tpch)
        build
        venv
        "$PY" "$BENCH/pipelines.py" tpch --bin "$BIN" --out "$OUT/pipeline-tpch" \
            --tpch-data "$OUT/tpch/sf1/data" "$@"
        ;;
    env-numpy1)
        build
        venv
        "$PY" "$BENCH/pipelines.py" env-numpy1 --bin "$BIN" --out "$OUT/env-numpy1" "$@"
        ;;
    all)
        for b in branch commits tpch import handoff warmstart rerun pipeline-tpch env-numpy1 server-load flight node-handoff slow-metastore; do
            "$0" "$b"
            BENCH_NO_BUILD=1
            export BENCH_NO_BUILD
        done
        ;;
    *)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
