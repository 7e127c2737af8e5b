"""Pipelines benchmarks 3 and 4, end to end through `lakeplan run` (release binary).

`bench/run.sh rerun` (this script's `rerun`): second run of an unchanged 3-node pipeline vs the
first. A fresh lake gets `default.events` (EVENTS rows, generated once as Parquet, imported by
`lakeplan table create/import`), tagged `base`. The project (written to OUT/rerun/project):

    clean_events   Python  Model("events", columns=[...], filter="amount > 0"); adds 2 columns;
                           REPLACE (materialized: ~all rows written to the lake)
    user_totals    Python  Model("clean_events") handed over whole (zero-copy); group by
                           user_id, category; NONE (in memory)
    category_stats SQL     over user_totals; REPLACE

* cold: the first `lakeplan run` on the fresh lake, which also builds the node environment with
  uv (reported apart; uv's own download cache is whatever the machine has).
* Then ROUNDS rounds, each on a new branch `rep-N` made from `base`, with the node cache
  (`<lake>/cache/nodes`) emptied first: `first` = `lakeplan run -r rep-N` (warm environment,
  every node executes and both REPLACE models are written), `second` = the same command again
  (every node a cache hit, nothing to publish). Wall time of the processes; medians;
  ratio second / first, goal <= 0.1. The second run's log is checked to hold 3 cache hits.

`bench/run.sh env-numpy1` (this script's `env-numpy1`): the environment build of a function
pinning numpy 1.x (`pip={"numpy": "1.26.4"}`: uv resolves it, redoes the resolution with
pyarrow<26, installs numpy 1.26.4 + pyarrow 25). A fresh lake gets a 1000-row table; each of
ROUNDS rounds times whole `lakeplan run --no-cache` processes (the worker runs every time):

* cold: an empty uv cache (UV_CACHE_DIR of its own, so wheels are downloaded from PyPI) and an
  empty environment cache (LAKEPLAN_ENV_CACHE of its own): the first run of that function.
* uv-warm: a new environment cache, uv's cache from the cold run: the environment is built
  again from cached wheels (what another project or lake on the machine pays).
* cached: the same command again: the environment is reused (its marker), nothing is built.
* plain: the same model without packages, its environment cached: the run without any
  environment cost, for reference.

Medians; the environment's build time is cold - cached (and uv-warm - cached).

`bench/run.sh pipeline-tpch` (this script's `tpch`): a 3-node pipeline over TPC-H lineitem SF1
vs the same logic as one plain pyarrow script. Data: bench/tpch.py's `generate` (DuckDB dbgen,
OUT/../tpch/sf1/data, shared with `bench/run.sh tpch`), lineitem imported into a fresh lake with
bench/tpch.py's `import_lake`. The pipeline is TPC-H Q1 split in three:

    shipped            Python  Model("lineitem", columns=[6 columns],
                               filter="l_shipdate <= DATE '1998-09-02'") -> float64 price,
                               discount, tax, disc_price, charge (NONE)
    revenue_by_status  Python  group by l_returnflag, l_linestatus: sums, means, count (NONE)
    tpch_summary       SQL     renames, revenue share of each group, ordered (REPLACE)

The peer is one pyarrow script (pyarrow_q1 below) doing the same: `pq.read_table` of the same
Parquet files with the same columns and filter, the same compute, group by, share and sort.
Both are timed as whole processes (interpreter/binary start included), alternating, ROUNDS
rounds after one warm-up each: `lakeplan run --no-cache` vs `python pyarrow_q1.py`. The peer
reads lakeplan's own data files (the table's `data/` folder: the same bytes; headline) and, for
context, DuckDB's source file. Answers: the pipeline's table (read back with `lakeplan query
--out`) equals the script's (floats to 1e-9 relative). Goal: pipeline <= 1.5x the script.
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
sys.path.insert(0, HERE)


def say(msg=""):
    print(msg, flush=True)


def run(cmd, check=True, **kw):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t
    if check and p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return dt, p


def job_log(output):
    """The timestamped job log of a `lakeplan run` (its path is printed first), without the plan."""
    import re

    m = re.search(r"\(log: (\S+)\)", output)
    if not m or not os.path.exists(m.group(1)):
        return []
    return [ln for ln in open(m.group(1)).read().splitlines() if re.match(r"\d\d:\d\d:\d\d", ln)]


def med(xs):
    return statistics.median(xs) if xs else None


def write_project(d, files):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, text in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)


# ----- rerun -------------------------------------------------------------------------------

RERUN_YML = """project:
  id: 00000000-0000-4000-8000-00000000b003
  name: bench-rerun
parameters:
  rate:
    type: float
    default: 1.1
"""

RERUN_PY = '''"""Benchmark pipeline: 3 nodes over default.events."""

import pyarrow
import pyarrow.compute as pc

import lakeplan


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11")
def clean_events(
    ev=lakeplan.Model("events", columns=["id", "user_id", "category", "amount", "ts"], filter="amount > 0"),
    rate=lakeplan.Parameter("rate"),
):
    """Paid events, in USD, with their day."""
    ev = ev.append_column("amount_usd", pc.multiply(ev["amount"], rate))
    return ev.append_column("day", pc.cast(pc.floor_temporal(ev["ts"], unit="day"), pyarrow.date32()))


@lakeplan.model()
@lakeplan.python("3.11")
def user_totals(ev=lakeplan.Model("clean_events")):
    """Spend and event count per user and category."""
    return ev.group_by(["user_id", "category"]).aggregate([("amount_usd", "sum"), ("amount_usd", "count")])
'''

RERUN_SQL = """-- lakeplan: materialization_strategy=REPLACE
SELECT category,
       count(*) AS users,
       sum(amount_usd_sum) AS revenue,
       sum(amount_usd_count) AS events
FROM user_totals
GROUP BY category
ORDER BY revenue DESC
"""


def make_events(path, rows):
    marker = path + f".{rows}.done"
    if os.path.exists(marker):
        return
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    say(f"== generating {rows} event rows into {path}")
    cats = pa.array([f"category_{i:02d}" for i in range(20)])
    batches, start, n = [], 0, 1 << 20
    while start < rows:
        k = min(n, rows - start)
        r = pc.random(k)
        batches.append(pa.RecordBatch.from_pydict({
            "id": pa.array(range(start, start + k), pa.int64()),
            "user_id": pc.cast(pc.floor(pc.multiply(pc.random(k), 200_000)), pa.int64()),
            "category": pc.take(cats, pc.cast(pc.floor(pc.multiply(r, 20)), pa.int32())),
            # about 10% of amounts are <= 0 (refunds), filtered out by the pipeline
            "amount": pc.round(pc.subtract(pc.multiply(pc.random(k), 110.0), 10.0), 2),
            "ts": pc.cast(pc.add(pc.cast(pc.floor(pc.multiply(pc.random(k), 365 * 86400)), pa.int64()),
                                 1_704_067_200), pa.timestamp("s")).cast(pa.timestamp("us")),
        }))
        start += k
    pq.write_table(pa.Table.from_batches(batches), path)
    open(marker, "w").write("ok\n")


def rerun_main(a):
    lakeplan = os.path.join(a.bin, "lakeplan")
    root = os.path.abspath(a.out)
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    events = os.path.join(data, "events.parquet")
    make_events(events, a.events)
    lake = os.path.join(root, "lake")
    shutil.rmtree(lake, ignore_errors=True)
    project = os.path.join(root, "project")
    write_project(project, {"lakeplan_project.yml": RERUN_YML, "models.py": RERUN_PY, "category_stats.sql": RERUN_SQL})
    L = [lakeplan, "--lake", lake]
    say(f"== fresh lake {lake}: import default.events")
    t_imp = sum(run(L + ["table", step, "events", "--search-uri", events])[0] for step in ("create", "import"))
    rows = json.loads(run(L + ["-O", "json", "table", "get", "events"])[1].stdout).get("records")
    say(f"   {rows} rows in {t_imp:.1f}s")
    run(L + ["tag", "create", "base"])

    say("== cold: first run on the fresh lake (builds the environment)")
    cold, p = run(L + ["run", "-p", project])
    built = "built environment" in p.stdout + p.stderr
    say(f"   {cold:.2f}s (environment built: {built})")

    firsts, seconds, node_times = [], [], []
    say(f"== {a.rounds} rounds: new branch from base, node cache emptied, first run, second run")
    for i in range(a.rounds):
        br = f"rep-{i}"
        run(L + ["branch", "create", br, "--from-ref", "base"])
        shutil.rmtree(os.path.join(lake, "cache", "nodes"), ignore_errors=True)
        t1, p1 = run(L + ["run", "-p", project, "-r", br])
        t2, p2 = run(L + ["run", "-p", project, "-r", br])
        out1, out2 = p1.stdout + p1.stderr, p2.stdout + p2.stderr
        hits = out2.count("cache hit (")
        if hits != 3 or "cache hit (" in out1 or "built environment" in out1:
            sys.exit(f"unexpected run logs (second run cache hits: {hits}):\n{out1[-2000:]}\n{out2[-2000:]}")
        node_times.append({ln.split("]")[0].strip("["): ln for ln in out1.splitlines() if "succeeded in" in ln})
        firsts.append(t1)
        seconds.append(t2)
        logs = {"first": job_log(out1), "second": job_log(out2)}
        say(f"   round {i + 1}: first {t1:.2f}s  second {t2:.3f}s  ratio {t2 / t1:.3f}")
    stats = json.loads(run(L + ["-O", "json", "table", "get", "clean_events", "-r", "rep-0"])[1].stdout)
    ratio = med(seconds) / med(firsts)
    say(f"\nfirst run (warm env, all nodes execute): median {med(firsts):.2f}s; "
        f"second run (all cache hits): median {med(seconds) * 1e3:.0f} ms; cold first run {cold:.2f}s")
    say(f"   first-run node lines (round 1): " + " | ".join(node_times[0].values()))
    for k, lines in logs.items():
        say(f"   job log of the last {k} run:")
        for ln in lines:
            say(f"      {ln[:160]}")
    say(f"second / first: {ratio:.3f}   goal <= 0.1: {'MET' if ratio <= 0.1 else 'MISSED'}")
    summary = {
        "last_round_job_logs": logs,
        "events_rows": rows, "clean_events_rows": stats.get("records"), "import_s": t_imp,
        "cold_first_run_s": cold, "cold_built_env": built,
        "first_runs_s": firsts, "second_runs_s": seconds,
        "first_median_s": med(firsts), "second_median_s": med(seconds),
        "second_vs_first": ratio, "goal": "<= 0.1", "goal_met": ratio <= 0.1,
        "first_run_node_lines": node_times,
    }
    out = os.path.join(root, "..", "rerun.json")
    json.dump(summary, open(out, "w"), indent=1)
    say(f"wrote {os.path.normpath(out)}")


# ----- env-numpy1 ---------------------------------------------------------------------------

ENV_YML = """project:
  id: 00000000-0000-4000-8000-00000000b005
  name: bench-env-numpy1
"""

ENV_PY = '''"""One function pinning numpy 1.x."""

import pyarrow as pa

import lakeplan


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11"PIP)
def doubled(t=lakeplan.Model("numbers", columns=["n"])):
BODY'''

NUMPY_BODY = """    import numpy as np

    return pa.table({"n2": pa.array(np.asarray(t["n"].to_numpy()) * 2), "numpy": [np.__version__] * t.num_rows})
"""

PLAIN_BODY = """    import pyarrow.compute as pc

    return pa.table({"n2": pc.multiply(t["n"], 2), "numpy": ["none"] * t.num_rows})
"""


def env_numpy1_main(a):
    lakeplan = os.path.join(a.bin, "lakeplan")
    root = os.path.abspath(a.out)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    csv = os.path.join(root, "numbers.csv")
    with open(csv, "w") as f:
        f.write("n\n" + "".join(f"{i}\n" for i in range(1000)))
    lake = os.path.join(root, "lake")
    L = [lakeplan, "--lake", lake]
    for step in ("create", "import"):
        run(L + ["table", step, "numbers", "--search-uri", csv])
    numpy1 = os.path.join(root, "numpy1")
    plain = os.path.join(root, "plain")
    write_project(numpy1, {"lakeplan_project.yml": ENV_YML, "models.py": ENV_PY.replace("PIP", ', pip={"numpy": "1.26.4"}').replace("BODY", NUMPY_BODY)})
    write_project(plain, {"lakeplan_project.yml": ENV_YML, "models.py": ENV_PY.replace("PIP", "").replace("BODY", PLAIN_BODY)})
    uv_cache = os.path.join(root, "uv-cache")

    def timed(project, envs):
        env = dict(os.environ, UV_CACHE_DIR=uv_cache, LAKEPLAN_ENV_CACHE=envs)
        dt, p = run(L + ["run", "-p", project, "--no-cache"], env=env)
        return dt, "built environment" in p.stdout + p.stderr, p.stdout + p.stderr

    plain_envs = os.path.join(root, "envs-plain")
    timed(plain, plain_envs)  # builds the plain environment once
    rows = {"cold": [], "uv-warm": [], "cached": [], "plain": []}
    installed, numpy = "", None
    for i in range(a.rounds):
        shutil.rmtree(uv_cache, ignore_errors=True)
        envs = os.path.join(root, f"envs-{i}")
        t_cold, built_cold, out = timed(numpy1, envs)
        installed = next((ln for ln in out.splitlines() if "built environment" in ln), installed)
        envs2 = os.path.join(root, f"envs-{i}-again")
        t_warm, built_warm, _ = timed(numpy1, envs2)
        t_cached, built_cached, _ = timed(numpy1, envs2)
        if i == 0:
            numpy = json.loads(run(L + ["-O", "json", "query", "SELECT DISTINCT numpy FROM doubled"])[1].stdout)
        t_plain, built_plain, _ = timed(plain, plain_envs)
        if not (built_cold and built_warm) or built_cached or built_plain:
            sys.exit(f"unexpected builds: cold {built_cold}, uv-warm {built_warm}, cached {built_cached}, plain {built_plain}")
        for k, v in (("cold", t_cold), ("uv-warm", t_warm), ("cached", t_cached), ("plain", t_plain)):
            rows[k].append(v)
        say(f"   round {i + 1}: cold {t_cold:.2f}s  uv-warm {t_warm:.2f}s  cached {t_cached:.2f}s  plain {t_plain:.2f}s")
    m = {k: med(v) for k, v in rows.items()}
    say(f"\n{installed.strip()}")
    say(f"numpy in the function: {numpy}")
    say(f"medians: cold {m['cold']:.2f}s, uv-warm {m['uv-warm']:.2f}s, cached {m['cached']:.2f}s, plain {m['plain']:.2f}s")
    say(f"environment build: {m['cold'] - m['cached']:.2f}s with an empty uv cache, "
        f"{m['uv-warm'] - m['cached']:.2f}s from uv's cache; reuse costs {m['cached'] - m['plain']:+.2f}s vs a function without packages")
    summary = {"runs_s": rows, "medians_s": m, "build_cold_s": m["cold"] - m["cached"],
               "build_uv_warm_s": m["uv-warm"] - m["cached"], "installed": installed.strip(), "numpy": numpy}
    out = os.path.join(root, "..", "env-numpy1.json")
    json.dump(summary, open(out, "w"), indent=1)
    say(f"wrote {os.path.normpath(out)}")


# ----- pipeline-tpch -----------------------------------------------------------------------

TPCH_YML = """project:
  id: 00000000-0000-4000-8000-00000000b004
  name: bench-pipeline-tpch
"""

TPCH_PY = '''"""TPC-H Q1 as a 3-node pipeline over default.lineitem."""

import pyarrow as pa
import pyarrow.compute as pc

import lakeplan


@lakeplan.model()
@lakeplan.python("3.11")
def shipped(
    li=lakeplan.Model(
        "lineitem",
        columns=["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax"],
        filter="l_shipdate <= DATE '1998-09-02'",
    ),
):
    """Shipped line items with their discounted price and charge."""
    f64 = pa.float64()
    price = pc.cast(li["l_extendedprice"], f64)
    disc = pc.cast(li["l_discount"], f64)
    disc_price = pc.multiply(price, pc.subtract(1.0, disc))
    charge = pc.multiply(disc_price, pc.add(1.0, pc.cast(li["l_tax"], f64)))
    return pa.table({
        "l_returnflag": li["l_returnflag"], "l_linestatus": li["l_linestatus"],
        "qty": pc.cast(li["l_quantity"], f64), "price": price, "disc": disc,
        "disc_price": disc_price, "charge": charge,
    })


@lakeplan.model()
@lakeplan.python("3.11")
def revenue_by_status(t=lakeplan.Model("shipped")):
    """Sums, means and count per return flag and line status."""
    return t.group_by(["l_returnflag", "l_linestatus"]).aggregate([
        ("qty", "sum"), ("price", "sum"), ("disc_price", "sum"), ("charge", "sum"),
        ("qty", "mean"), ("price", "mean"), ("disc", "mean"), ("qty", "count"),
    ])
'''

TPCH_SQL = """-- lakeplan: materialization_strategy=REPLACE
SELECT l_returnflag, l_linestatus,
       qty_sum AS sum_qty, price_sum AS sum_base_price, disc_price_sum AS sum_disc_price,
       charge_sum AS sum_charge, qty_mean AS avg_qty, price_mean AS avg_price, disc_mean AS avg_disc,
       qty_count AS count_order,
       disc_price_sum / (SELECT sum(disc_price_sum) FROM revenue_by_status) AS revenue_share
FROM revenue_by_status
ORDER BY l_returnflag, l_linestatus
"""

# The peer: the same logic as one plain pyarrow script.
PYARROW_Q1 = r'''
import datetime, json, sys, time
t0 = time.perf_counter()
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
src, out = sys.argv[1:3]
t1 = time.perf_counter()
li = pq.read_table(
    src,
    columns=["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax"],
    filters=[("l_shipdate", "<=", datetime.date(1998, 9, 2))],
)
f64 = pa.float64()
price = pc.cast(li["l_extendedprice"], f64)
disc = pc.cast(li["l_discount"], f64)
disc_price = pc.multiply(price, pc.subtract(1.0, disc))
charge = pc.multiply(disc_price, pc.add(1.0, pc.cast(li["l_tax"], f64)))
t = pa.table({
    "l_returnflag": li["l_returnflag"], "l_linestatus": li["l_linestatus"],
    "qty": pc.cast(li["l_quantity"], f64), "price": price, "disc": disc,
    "disc_price": disc_price, "charge": charge,
})
g = t.group_by(["l_returnflag", "l_linestatus"]).aggregate([
    ("qty", "sum"), ("price", "sum"), ("disc_price", "sum"), ("charge", "sum"),
    ("qty", "mean"), ("price", "mean"), ("disc", "mean"), ("qty", "count"),
])
share = pc.divide(g["disc_price_sum"], pc.sum(g["disc_price_sum"]))
res = pa.table({
    "l_returnflag": g["l_returnflag"], "l_linestatus": g["l_linestatus"],
    "sum_qty": g["qty_sum"], "sum_base_price": g["price_sum"], "sum_disc_price": g["disc_price_sum"],
    "sum_charge": g["charge_sum"], "avg_qty": g["qty_mean"], "avg_price": g["price_mean"],
    "avg_disc": g["disc_mean"], "count_order": g["qty_count"], "revenue_share": share,
}).sort_by([("l_returnflag", "ascending"), ("l_linestatus", "ascending")])
t2 = time.perf_counter()
pq.write_table(res, out)
print(json.dumps({"import_s": t1 - t0, "work_s": t2 - t1, "rows_read": li.num_rows}))
'''


def same_tables(a, b):
    import math

    if a.column_names != b.column_names or a.num_rows != b.num_rows:
        return f"columns/rows differ: {a.column_names} x {a.num_rows} vs {b.column_names} x {b.num_rows}"
    for name in a.column_names:
        for x, y in zip(a.column(name).to_pylist(), b.column(name).to_pylist()):
            if isinstance(x, float) or isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9):
                    return f"{name}: {x} != {y}"
            elif x != y:
                return f"{name}: {x!r} != {y!r}"
    return None


def tpch_main(a):
    import pyarrow.parquet as pq
    import tpch

    lakeplan = os.path.join(a.bin, "lakeplan")
    root = os.path.abspath(a.out)
    os.makedirs(root, exist_ok=True)
    data = os.path.abspath(a.tpch_data)
    tpch.generate(data, "1")
    lake = os.path.join(root, "lake")
    imp = tpch.import_lake(lakeplan, data, lake, tables=["lineitem"])
    if imp["failures"]:
        sys.exit(f"import failed: {imp['failures']}")
    L = [lakeplan, "--lake", lake]
    info = json.loads(run(L + ["-O", "json", "table", "get", "lineitem"])[1].stdout)
    meta = info["metadata_location"].removeprefix("file://")
    lake_files = os.path.join(os.path.dirname(os.path.dirname(meta)), "data")
    source_file = os.path.join(data, "lineitem.parquet")
    project = os.path.join(root, "project")
    write_project(project, {"lakeplan_project.yml": TPCH_YML, "models.py": TPCH_PY, "tpch_summary.sql": TPCH_SQL})
    script = os.path.join(root, "pyarrow_q1.py")
    open(script, "w").write(PYARROW_Q1)
    results = os.path.join(root, "results")
    os.makedirs(results, exist_ok=True)

    py = sys.executable
    paths = {
        "pipeline": L + ["run", "--no-cache", "-p", project],
        "pyarrow": [py, script, lake_files, os.path.join(results, "pyarrow.parquet")],
        "pyarrow-source": [py, script, source_file, os.path.join(results, "pyarrow-source.parquet")],
    }
    say("== warm-up: one run of each (the first pipeline run builds the node environment)")
    warm = {}
    for n, cmd in paths.items():
        warm[n], p = run(cmd)
        say(f"   {n:15} {warm[n]:.2f}s")
    # Answers.
    run(L + ["query", "SELECT * FROM tpch_summary ORDER BY l_returnflag, l_linestatus",
             "--out", os.path.join(results, "pipeline.parquet")])
    ref = pq.read_table(os.path.join(results, "pyarrow.parquet"))
    checks = {}
    for n, f in (("pipeline", "pipeline.parquet"), ("pyarrow-source", "pyarrow-source.parquet")):
        diff = same_tables(ref, pq.read_table(os.path.join(results, f)))
        checks[n] = diff or "ok"
        say(f"   answer {n} vs pyarrow script: {checks[n]}")
    if any(v != "ok" for v in checks.values()):
        sys.exit("answers differ")

    names = list(paths)
    times = {n: [] for n in names}
    inner = {n: [] for n in names if n != "pipeline"}
    node_lines = []
    say(f"== {a.rounds} rounds, order rotated")
    for r in range(a.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            dt, p = run(paths[n])
            times[n].append(dt)
            if n == "pipeline":
                node_lines.append(job_log(p.stdout + p.stderr))
            else:
                inner[n].append(json.loads(p.stdout.strip().splitlines()[-1]))
        say(f"   round {r + 1}: " + "  ".join(f"{n} {times[n][-1]:.2f}s" for n in names))
    m = {n: med(times[n]) for n in names}
    ratio = m["pipeline"] / m["pyarrow"]
    say(f"\nmedian s: " + ", ".join(f"{n} {m[n]:.2f}" for n in names))
    for n in inner:
        say(f"   {n}: inside the script, imports {med([x['import_s'] for x in inner[n]]):.2f}s, "
            f"read+compute {med([x['work_s'] for x in inner[n]]):.2f}s, {inner[n][0]['rows_read']} rows read")
    say("   job log of the last pipeline run:")
    for ln in node_lines[-1]:
        say(f"      {ln[:160]}")
    say(f"pipeline / pyarrow script (same files): {ratio:.2f}x   goal <= 1.5: {'MET' if ratio <= 1.5 else 'MISSED'}")
    say(f"pipeline / pyarrow script over DuckDB's source file: {m['pipeline'] / m['pyarrow-source']:.2f}x")
    summary = {
        "import": imp, "lake_data_files": lake_files, "warmup_s": warm, "times_s": times, "median_s": m,
        "script_inner": inner, "pipeline_job_logs": node_lines, "answers": checks,
        "pipeline_vs_pyarrow": ratio, "pipeline_vs_pyarrow_source": m["pipeline"] / m["pyarrow-source"],
        "goal": "<= 1.5", "goal_met": ratio <= 1.5,
    }
    out = os.path.join(root, "..", "pipeline-tpch.json")
    json.dump(summary, open(out, "w"), indent=1)
    say(f"wrote {os.path.normpath(out)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["rerun", "tpch", "env-numpy1"])
    ap.add_argument("--bin", required=True, help="folder with the release lakeplan binary")
    ap.add_argument("--out", required=True, help="work folder (the JSON summary goes to its parent)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=5_000_000, help="rerun: rows of default.events")
    ap.add_argument("--tpch-data", help="tpch: folder of the TPC-H SF1 Parquet files (bench/run.sh tpch's)")
    a = ap.parse_args()
    if a.which == "rerun":
        rerun_main(a)
    elif a.which == "env-numpy1":
        env_numpy1_main(a)
    else:
        if not a.tpch_data:
            ap.error("tpch needs --tpch-data")
        tpch_main(a)


if __name__ == "__main__":
    main()
