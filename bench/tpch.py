"""Benchmark 3: TPC-H SF1, lakeplan vs raw DataFusion vs DuckDB 1.4.4.

Run through `bench/run.sh tpch` (which builds the binaries and the venv). Steps:

1. Data: DuckDB's tpch extension (`CALL dbgen(sf=1)`, from the PyPI wheel
   duckdb-ext-tpch) writes the 8 tables as Parquet files, once (kept in OUT/data).
2. Lake: `lakeplan table create` + `lakeplan table import` of each file into a fresh lake
   (OUT/lake), every run (~10 s), so that the lake is always written by the binary under test;
   the times are reported.
3. Per query q01..q22 (texts in bench/tpch/queries, unqualified table names):
   * `bench-tpch`: raw DataFusion over the Parquet files and lakeplan in-process
     (`Lake::query`), one warm-up + REPS timed runs each, alternating;
   * DuckDB over the same Parquet files (views on read_parquet), warm-up + REPS;
   * the `lakeplan query -f q.sql --out r.parquet` process, warm-up + REPS (wall time,
     process start and lake open included).
4. Every engine's answer is checked against DuckDB's (floats with a relative tolerance).

Prints a table and writes OUT/summary.json.
"""

import argparse
import datetime
import decimal
import glob
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import duckdb
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
QUERIES = os.path.join(HERE, "tpch", "queries")
TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
REL_TOL = 1e-6
ABS_TOL = 1e-6


def say(msg=""):
    print(msg, flush=True)


def tpch_extension():
    import duckdb_ext  # noqa: F401  (the wheel's package: its folder holds the extension)

    paths = glob.glob(
        os.path.join(list(duckdb_ext.__path__)[0], "extensions", "v1.4.4", "*", "tpch.duckdb_extension")
    )
    if not paths:
        sys.exit("the tpch extension of duckdb-ext-tpch 1.4.4 is not installed in the venv")
    return paths[0]


def generate(data, sf):
    marker = os.path.join(data, ".done")
    if os.path.exists(marker):
        return
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    say(f"== generating TPC-H SF{sf} with DuckDB dbgen into {data}")
    t = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"LOAD '{tpch_extension()}'")
    con.execute(f"CALL dbgen(sf={sf})")
    for tb in TABLES:
        con.execute(f"COPY {tb} TO '{os.path.join(data, tb + '.parquet')}' (FORMAT parquet)")
    con.close()
    open(marker, "w").write(f"sf={sf}\n")
    say(f"   done in {time.perf_counter() - t:.1f}s")


def run(cmd, **kw):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.perf_counter() - t, p


def import_lake(lakeplan, data, lake, tables=TABLES):
    shutil.rmtree(lake, ignore_errors=True)
    say(f"== importing {', '.join(tables)} into a lakeplan lake at {lake}")
    report = {"tables": {}, "failures": []}
    for tb in tables:
        src = os.path.join(data, tb + ".parquet")
        entry = {}
        for step in ("create", "import"):
            cmd = [lakeplan, "--lake", lake, "table", step, tb, "--search-uri", src]
            dt, p = run(cmd)
            entry[step + "_s"] = dt
            if p.returncode != 0:
                err = (p.stderr or p.stdout).strip()
                report["failures"].append({"command": " ".join(cmd), "error": err})
                say(f"   FAILED: {' '.join(cmd)}\n   {err}")
                break
        _, p = run([lakeplan, "--lake", lake, "-O", "json", "table", "get", tb])
        if p.returncode == 0:
            entry["records"] = json.loads(p.stdout).get("records")
        expected = pq.ParquetFile(src).metadata.num_rows
        entry["source_rows"] = expected
        if entry.get("records") != expected:
            report["failures"].append(
                {"command": f"table get {tb}", "error": f"records {entry.get('records')} != {expected}"}
            )
        report["tables"][tb] = entry
        say(
            f"   {tb:9} create {entry.get('create_s', 0):6.2f}s  import {entry.get('import_s', 0):6.2f}s"
            f"  rows {entry.get('records')}"
        )
    report["total_s"] = sum(e.get("create_s", 0) + e.get("import_s", 0) for e in report["tables"].values())
    return report


# ----- answers -----------------------------------------------------------------------------


def norm(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, str):
        return v.rstrip()
    return v


def has_order_by(sql):
    """Whether a query's result has an order (an ORDER BY outside any parenthesis)."""
    depth, text = 0, []
    for ch in sql:
        depth += ch == "("
        text.append(ch if depth == 0 else " ")
        depth -= ch == ")"
    return re.search(r"\border\s+by\b", "".join(text), re.IGNORECASE) is not None


def rows_of(table):
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [tuple(norm(c[r]) for c in cols) for r in range(table.num_rows)]


def same_value(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def same_rows(x, y):
    return len(x) == len(y) and all(len(r) == len(s) and all(map(same_value, r, s)) for r, s in zip(x, y))


def sort_key(row):
    return tuple((0, round(v, 4)) if isinstance(v, float) else (1, str(v)) for v in row)


def check(reference, table, ordered):
    """'ok', 'ok (order)' when equal only as multisets and the query has no ORDER BY, or what
    differs. A query with ORDER BY must match in order (the TPC-H queries order by keys that make
    the order total, so there are no ties to allow for)."""
    if table.num_columns != reference.num_columns:
        return f"{table.num_columns} columns, expected {reference.num_columns}"
    x, y = rows_of(reference), rows_of(table)
    if len(x) != len(y):
        return f"{len(y)} rows, expected {len(x)}"
    if same_rows(x, y):
        return "ok"
    if same_rows(sorted(x, key=sort_key), sorted(y, key=sort_key)):
        if not ordered:
            return "ok (order)"
        first = next(i for i, (r, s) in enumerate(zip(x, y)) if not all(map(same_value, r, s)))
        return f"wrong order: row {first} is {y[first]}, expected {x[first]}"
    for i, (r, s) in enumerate(zip(x, y)):
        if not all(map(same_value, r, s)):
            return f"row {i}: {s} != expected {r}"
    return "differs"


# ----- engines -----------------------------------------------------------------------------


def duckdb_conn(data):
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for tb in TABLES:
        con.execute(f"CREATE VIEW {tb} AS SELECT * FROM read_parquet('{os.path.join(data, tb + '.parquet')}')")
    return con


def time_duckdb(con, sql, reps):
    first = con.execute(sql).fetch_arrow_table()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        con.execute(sql).fetch_arrow_table()
        times.append(time.perf_counter() - t)
    return first, times


def time_cli(lakeplan, lake, qfile, out, reps):
    cmd = [lakeplan, "--lake", lake, "query", "-f", qfile, "--out", out]
    _, p = run(cmd)
    if p.returncode != 0:
        return None, [], f"{' '.join(cmd)}: {(p.stderr or p.stdout).strip()}"
    first = pq.read_table(out)
    times = []
    for _ in range(reps):
        dt, p = run(cmd)
        if p.returncode != 0:
            return first, times, (p.stderr or p.stdout).strip()
        times.append(dt)
    return first, times, None


def med(xs):
    return statistics.median(xs) if xs else None


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def fmt(x, scale=1e3, spec="8.0f"):
    return f"{x * scale:{spec}}" if x is not None else f"{'FAIL':>{spec.split('.')[0]}}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="folder with lakeplan and bench-tpch (release)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sf", default="1")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated query numbers")
    ap.add_argument("--no-cli", action="store_true", help="skip the lakeplan CLI process runs")
    ap.add_argument(
        "--diagnose",
        action="store_true",
        help="also time raw DataFusion over the Parquet files lakeplan's import wrote (dflake): "
        "separates the cost of the data files from the cost of lakeplan's read path",
    )
    a = ap.parse_args()

    lakeplan = os.path.join(a.bin, "lakeplan")
    bench_tpch = os.path.join(a.bin, "bench-tpch")
    root = os.path.abspath(a.out)
    data = os.path.join(root, f"sf{a.sf}", "data")
    lake = os.path.join(root, f"sf{a.sf}", "lake")
    results = os.path.join(root, f"sf{a.sf}", "results")
    shutil.rmtree(results, ignore_errors=True)
    os.makedirs(results)

    generate(data, a.sf)
    imp = import_lake(lakeplan, data, lake)
    if imp["failures"]:
        say("lakeplan import failures (the lakeplan columns will fail for those tables):")
        for f in imp["failures"]:
            say(f"   {f['command']}: {f['error']}")
    say(f"   lake import total: {imp['total_s']:.1f}s")

    queries = [int(q) for q in a.only.split(",") if q] or list(range(1, 23))
    con = duckdb_conn(data)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    say(
        f"\n== TPC-H SF{a.sf}: median ms of {a.reps} runs after 1 warm-up; {os.cpu_count()} cores; "
        f"DuckDB {duckdb.__version__} threads={threads}"
    )
    engines = ["datafusion", "lakeplan"] + (["datafusion-lakefiles"] if a.diagnose else [])
    diag = " dflake lp/dflake" if a.diagnose else ""
    say(f"   q   duckdb datafusion  lakeplan  lp/df lp/duck      cli cli/df{diag}  answers (vs duckdb)")
    rows = []
    for q in queries:
        qfile = os.path.join(QUERIES, f"q{q:02d}.sql")
        sql = open(qfile).read()
        rec = {"query": q, "errors": {}}
        # Rust: raw DataFusion and lakeplan in-process, alternating.
        jl = os.path.join(results, f"rust-q{q:02d}.jsonl")
        _, p = run(
            [bench_tpch, "--data", data, "--lake", lake, "--queries", QUERIES, "--out", results,
             "--reps", str(a.reps), "--only", str(q), "--json", jl, "--engines", ",".join(engines)]
        )
        if p.returncode != 0:
            say(p.stdout + p.stderr)
            sys.exit(f"bench-tpch failed on q{q:02d}")
        for line in open(jl):
            r = json.loads(line)
            rec[r["engine"]] = r["median_s"]
            rec[r["engine"] + "_times"] = r["times_s"]
            if r["error"]:
                rec["errors"][r["engine"]] = r["error"]
        # DuckDB.
        try:
            ref, times = time_duckdb(con, sql, a.reps)
            rec["duckdb"], rec["duckdb_times"] = med(times), times
        except duckdb.Error as e:
            ref = None
            rec["duckdb"] = None
            rec["errors"]["duckdb"] = str(e)
        # lakeplan CLI.
        if not a.no_cli:
            out = os.path.join(results, "cli", f"q{q:02d}.parquet")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            first, times, err = time_cli(lakeplan, lake, qfile, out, a.reps)
            rec["cli"], rec["cli_times"] = med(times), times
            if err:
                rec["errors"]["cli"] = err
        # Answers.
        checks = {}
        for eng in engines + ["cli"]:
            path = os.path.join(results, eng, f"q{q:02d}.parquet")
            if eng in rec["errors"] or not os.path.exists(path) or ref is None:
                checks[eng] = "FAIL" if eng in rec["errors"] else "-"
                continue
            checks[eng] = check(ref, pq.read_table(path), has_order_by(sql))
        rec["checks"] = checks
        df, lp, dk, cli = rec.get("datafusion"), rec.get("lakeplan"), rec.get("duckdb"), rec.get("cli")
        rec["lp_df"] = lp / df if lp and df else None
        rec["lp_duck"] = lp / dk if lp and dk else None
        rec["cli_df"] = cli / df if cli and df else None
        summary = ", ".join(f"{k}:{v}" for k, v in checks.items())
        extra = ""
        if a.diagnose:
            dl = rec.get("datafusion-lakefiles")
            rec["lp_dflake"] = lp / dl if lp and dl else None
            extra = f" {fmt(dl, spec='6.0f')} {fmt(rec['lp_dflake'], 1, '9.2f')}"
        cli_cells = f"{'-':>8} {'-':>6}" if a.no_cli else f"{fmt(cli)} {fmt(rec['cli_df'], 1, '6.2f')}"
        say(
            f"q{q:02d} {fmt(dk)} {fmt(df, spec='10.0f')} {fmt(lp, spec='9.0f')} "
            f"{fmt(rec['lp_df'], 1, '6.2f')} {fmt(rec['lp_duck'], 1, '7.2f')} "
            f"{cli_cells}{extra}  {summary}"
        )
        for eng, err in rec["errors"].items():
            say(f"      {eng} failed: {err[:400]}")
        rows.append(rec)

    def total(key):
        vals = [r.get(key) for r in rows]
        return sum(vals) if all(v is not None for v in vals) else None

    ok_all = [r for r in rows if all(r.get(k) for k in ("datafusion", "lakeplan", "duckdb"))]
    tot = {k: sum(r[k] for r in ok_all) for k in ("datafusion", "lakeplan", "duckdb")}
    agg = {
        "queries_compared": len(ok_all),
        "sum_ms": {k: v * 1e3 for k, v in tot.items()},
        "lakeplan_vs_datafusion_sum": tot["lakeplan"] / tot["datafusion"] if ok_all else None,
        "lakeplan_vs_datafusion_geomean": geomean([r["lp_df"] for r in ok_all]),
        "lakeplan_vs_duckdb_sum": tot["lakeplan"] / tot["duckdb"] if ok_all else None,
        "lakeplan_vs_duckdb_geomean": geomean([r["lp_duck"] for r in ok_all]),
        "datafusion_vs_duckdb_sum": tot["datafusion"] / tot["duckdb"] if ok_all else None,
        "cli_sum_ms": (total("cli") or 0) * 1e3 if not a.no_cli else None,
        "datafusion_lakefiles_sum_ms": (total("datafusion-lakefiles") or 0) * 1e3 if a.diagnose else None,
        "datafusion_lakefiles_vs_datafusion_sum": (total("datafusion-lakefiles") or 0) / tot["datafusion"]
        if a.diagnose and ok_all
        else None,
        "cli_vs_datafusion_geomean": geomean([r.get("cli_df") for r in ok_all]) if not a.no_cli else None,
        "failures": {f"q{r['query']:02d}": r["errors"] for r in rows if r["errors"]},
        "wrong_answers": {
            f"q{r['query']:02d}": {k: v for k, v in r["checks"].items() if not v.startswith("ok") and v != "-"}
            for r in rows
            if any(not v.startswith("ok") and v != "-" for v in r["checks"].values())
        },
    }
    say(f"\nOver the {len(ok_all)} queries all three engines ran (sum of medians, ms): "
        + ", ".join(f"{k} {v * 1e3:.0f}" for k, v in tot.items()))
    if ok_all:
        for label, key, goal in (
            ("lakeplan in-process / raw DataFusion", "lakeplan_vs_datafusion", 1.05),
            ("lakeplan in-process / DuckDB        ", "lakeplan_vs_duckdb", 1.2),
        ):
            s, g = agg[key + "_sum"], agg[key + "_geomean"]
            verdict = "MET" if max(s, g) <= goal else "MISSED"
            say(f"{label}: sum {s:.3f}x, geomean {g:.3f}x   goal <= {goal}: {verdict}")
        say(f"raw DataFusion / DuckDB (context): sum {agg['datafusion_vs_duckdb_sum']:.3f}x")
        if a.diagnose and agg["datafusion_lakefiles_vs_datafusion_sum"]:
            say(
                "raw DataFusion over lakeplan's data files / over the source files (diagnostic): "
                f"sum {agg['datafusion_lakefiles_vs_datafusion_sum']:.3f}x"
            )
        if not a.no_cli and agg["cli_vs_datafusion_geomean"]:
            say(f"lakeplan CLI process / raw DataFusion in-process: geomean {agg['cli_vs_datafusion_geomean']:.3f}x")
    if len(ok_all) < len(rows):
        say(f"FAILURES: {json.dumps(agg['failures'])[:2000]}")
    if agg["wrong_answers"]:
        say(f"WRONG ANSWERS: {json.dumps(agg['wrong_answers'])[:2000]}")
    else:
        say("answers: every engine that ran matches DuckDB")
    json.dump({"import": imp, "queries": rows, "aggregate": agg}, open(os.path.join(root, "summary.json"), "w"), indent=1)
    say(f"wrote {os.path.join(root, 'summary.json')}")


if __name__ == "__main__":
    main()
