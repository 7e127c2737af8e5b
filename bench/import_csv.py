"""Benchmark 4: import of a 1 GB CSV, lakeplan vs pyarrow CSV -> Parquet.

Run through `bench/run.sh import`. The CSV (bench/gen_csv.py, lineitem-like, deterministic)
is made once. Then ROUNDS rounds, each timing, in alternating order:

* lakeplan: `lakeplan table create t --search-uri x.csv` (schema inference) then
  `lakeplan table import t --search-uri x.csv` on a fresh lake: wall time of both processes;
  lakeplan writes LZ4-compressed Parquet data files (its default codec, see
  crates/storage/src/write_props.rs).
* pyarrow (the peer): `pyarrow.csv.read_csv` + `pyarrow.parquet.write_table`, in a
  subprocess, timed inside it after the imports, with compression='lz4' (the codec lakeplan
  writes; the headline ratio), and for context 'zstd' (Iceberg's default codec) and pyarrow's
  default (snappy).

Checks that lakeplan's table holds as many rows as pyarrow read. Prints medians and ratios and
writes OUT/summary.json.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

PYARROW_WORKER = r"""
import json, sys, time
import pyarrow.csv as pc, pyarrow.parquet as pq
src, dst, codec = sys.argv[1:4]
t0 = time.perf_counter()
table = pc.read_csv(src)
t1 = time.perf_counter()
pq.write_table(table, dst, compression=codec)
t2 = time.perf_counter()
print(json.dumps({"read_s": t1 - t0, "write_s": t2 - t1, "total_s": t2 - t0, "rows": table.num_rows}))
"""


def say(msg=""):
    print(msg, flush=True)


def run(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - t, p


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def lakeplan_round(lakeplan, csv, lake):
    shutil.rmtree(lake, ignore_errors=True)
    res = {}
    for step in ("create", "import"):
        cmd = [lakeplan, "--lake", lake, "table", step, "lineitem", "--search-uri", csv]
        dt, p = run(cmd)
        if p.returncode != 0:
            return {"error": f"{' '.join(cmd)}: {(p.stderr or p.stdout).strip()}"}
        res[step + "_s"] = dt
    res["total_s"] = res["create_s"] + res["import_s"]
    _, p = run([lakeplan, "--lake", lake, "-O", "json", "table", "get", "lineitem"])
    info = json.loads(p.stdout) if p.returncode == 0 else {}
    res["rows"] = info.get("records")
    res["data_files"] = info.get("data_files")
    res["bytes_written"] = du(os.path.join(lake, "warehouse"))
    shutil.rmtree(lake, ignore_errors=True)
    return res


def pyarrow_round(csv, dst, codec):
    p = subprocess.run([sys.executable, "-c", PYARROW_WORKER, csv, dst, codec], capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": p.stderr.strip()}
    res = json.loads(p.stdout)
    res["bytes_written"] = os.path.getsize(dst)
    os.remove(dst)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="folder with the release lakeplan binary")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=None, help="CSV rows (default: gen_csv.py's, ~1 GB)")
    a = ap.parse_args()
    lakeplan = os.path.join(a.bin, "lakeplan")
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    name = "lineitem-1gb.csv" if a.rows is None else f"lineitem-{a.rows}.csv"
    csv = os.path.join(out, name)
    if not os.path.exists(csv):
        cmd = [sys.executable, os.path.join(HERE, "gen_csv.py"), csv]
        if a.rows is not None:
            cmd += ["--rows", str(a.rows)]
        subprocess.run(cmd, check=True)
    size = os.path.getsize(csv)
    say(f"== CSV import: {csv} ({size / 1e9:.3f} GB), {a.rounds} rounds, {os.cpu_count()} cores")

    engines = ["lakeplan", "pyarrow-lz4", "pyarrow-zstd", "pyarrow-snappy"]
    results = {e: [] for e in engines}
    for r in range(a.rounds):
        order = engines[r % len(engines):] + engines[: r % len(engines)]
        for e in order:
            if e == "lakeplan":
                res = lakeplan_round(lakeplan, csv, os.path.join(out, "lake"))
            else:
                res = pyarrow_round(csv, os.path.join(out, "pyarrow.parquet"), e.split("-")[1])
            results[e].append(res)
            if "error" in res:
                say(f"   round {r + 1} {e}: FAILED: {res['error'][:1000]}")
            else:
                detail = (
                    f"create {res['create_s']:.2f}s + import {res['import_s']:.2f}s"
                    if e == "lakeplan"
                    else f"read {res['read_s']:.2f}s + write {res['write_s']:.2f}s"
                )
                say(f"   round {r + 1} {e:15} {res['total_s']:7.2f}s  ({detail}, rows {res['rows']}, "
                    f"{res['bytes_written'] / 1e6:.0f} MB written)")

    def med(e, key="total_s"):
        xs = [x[key] for x in results[e] if "error" not in x]
        return statistics.median(xs) if xs else None

    summary = {"csv_bytes": size, "rounds": a.rounds, "results": results, "medians": {}}
    say("\n== median seconds")
    for e in engines:
        m = med(e)
        summary["medians"][e] = m
        extra = ""
        if e == "lakeplan" and m:
            extra = f" (create {med(e, 'create_s'):.2f}s + import {med(e, 'import_s'):.2f}s)"
        say(f"{e:15} {m:7.2f}s  {size / 1e6 / m:6.1f} MB/s{extra}" if m else f"{e:15} FAILED")
    lp = med("lakeplan")
    rows = {e: {x.get("rows") for x in results[e] if "error" not in x} for e in engines}
    if lp and rows["lakeplan"] != rows["pyarrow-lz4"]:
        say(f"ROW COUNT MISMATCH: lakeplan {rows['lakeplan']} vs pyarrow {rows['pyarrow-lz4']}")
    for peer, goal in (("pyarrow-lz4", 1.3), ("pyarrow-zstd", None), ("pyarrow-snappy", None)):
        pm = med(peer)
        if lp and pm:
            ratio = lp / pm
            summary[f"ratio_vs_{peer}"] = ratio
            verdict = f"   goal <= {goal}: {'MET' if ratio <= goal else 'MISSED'}" if goal else ""
            say(f"lakeplan / {peer}: {ratio:.3f}x{verdict}")
    json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
    say(f"wrote {os.path.join(out, 'summary.json')}")


if __name__ == "__main__":
    main()
