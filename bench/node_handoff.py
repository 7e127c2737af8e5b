"""Server benchmark 3: a pipeline node's 1 GB output handed to another worker over Arrow Flight.

Run through `bench/run.sh node-handoff`. A `lakeplan serve --workers 0` (release binary) on
loopback with two workers of its own started here: A (`--tasks run,query,import`) coordinates
runs and runs no functions, B (`--tasks node`) runs them. The project has a Python model `big`
that makes ROWS rows of 8 fixed-width columns (4 int64, 4 float64: 64 bytes a row; GB = 1e9
bytes of Arrow data by default) and a SQL model `total` over it. Python nodes run on B, SQL
models on the run's coordinator A, so `total` reads `big` from B over Arrow Flight: A's `DoGet`
with the output's ticket, written as an Arrow IPC file into A's shared memory. The run's log
says how long that took ("output fetched over Arrow Flight ... in S s"); that is the headline.

The peers, in the same run, of the same table:

* pyarrow-flight: a `pyarrow.flight` server in another process serving the table (memory-mapped
  from an IPC file in /dev/shm) and a `pyarrow.flight` client reading it whole (`read_all`):
  the reference implementation of the same transport, on the same loopback.
* mmap: reading the IPC file memory-mapped (`pa.memory_map` + `read_all`): what a consumer on
  the producer's own machine does (the handoff between functions on one worker).

Every run is checked: `total`'s count and sum of `id` equal the table's. Medians over REPS runs
(each `cache="off"`, so `big` is recomputed and fetched again); ratios lakeplan / peer. Writes
OUT/../node-handoff.json.
"""

import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

import lakeplan  # noqa: E402  (the repository's SDK)
from flight import Server, make_table, parse_args, say, timed  # noqa: E402

# The model makes the same table as the peers read (flight.make_table's own source).
MODELS = f'''import pyarrow as pa
import pyarrow.compute as pc
from typing import Annotated

import lakeplan


{inspect.getsource(make_table)}

@lakeplan.model()
@lakeplan.python("3.11")
def big(rows: Annotated[int, lakeplan.Parameter("rows")]) -> pa.Table:
    return make_table(rows)
'''

TOTAL = """-- lakeplan: materialization_strategy=REPLACE
SELECT count(*) AS n, sum(id) AS s FROM big
"""

FLIGHT_SERVER = r'''
import sys
import pyarrow as pa
import pyarrow.flight as fl

path = sys.argv[1]


class Serve(fl.FlightServerBase):
    def do_get(self, context, ticket):
        table = pa.ipc.open_file(pa.memory_map(path)).read_all()
        return fl.RecordBatchStream(table)


server = Serve("grpc://127.0.0.1:0")
print(server.port, flush=True)
server.serve()
'''

FETCHED = re.compile(r"\[big\] output fetched over Arrow Flight from \S+: (\d+) rows, (\d+) bytes in ([0-9.]+) s")


def worker(srv: Server, token: str, *args: str) -> subprocess.Popen:
    env = dict(srv.env, LAKEPLAN_WORKER_TOKEN=token)
    log = open(os.path.join(srv.root, f"worker-{args[-1].replace(',', '-')}.log"), "w")
    return subprocess.Popen(
        [srv.bin, "worker", "--control-plane", srv.url, *args],
        env=env, stdout=log, stderr=log, start_new_session=True)


def main() -> None:
    a = parse_args(__doc__, "output")
    rows = int(a.gb * 1e9) // 64
    project = os.path.join(a.out, "project")
    os.makedirs(project)
    with open(os.path.join(project, "lakeplan_project.yml"), "w") as f:
        f.write("project:\n  name: node_handoff\nparameters:\n  rows:\n    type: int\n    default: 1000\n")
    with open(os.path.join(project, "models.py"), "w") as f:
        f.write(MODELS)
    with open(os.path.join(project, "total.sql"), "w") as f:
        f.write(TOTAL)
    want = (rows, rows * (rows - 1) // 2)

    srv = Server(a.bin, os.path.join(a.out, "server"))
    key = srv.admin_key()
    token = "node-handoff-bench-token"
    srv.env["LAKEPLAN_WORKER_TOKEN"] = token
    srv.start(workers=0)
    procs = []
    try:
        procs.append(worker(srv, token, "--tasks", "run,query,import"))
        procs.append(worker(srv, token, "--tasks", "node"))
        client = lakeplan.Client(api_key=key, endpoint=srv.url)
        fetch_s, run_s = [], []
        for r in range(a.reps + 1):
            t0 = time.perf_counter()
            state = client.run(project, ref="main", parameters={"rows": rows}, cache="off",
                               client_timeout=1800)
            dt = time.perf_counter() - t0
            if not state.job_id:
                sys.exit(f"run {r}: no job: {state.job_status} {state.error}")
            log = client.get_job_logs(state.job_id)
            if state.job_status != "SUCCESS":
                sys.exit(f"run {r}: {state.job_status} {state.error}\n{log}")
            got = [m for m in FETCHED.finditer(log) if m.group(1)]
            if len(got) != 1:
                sys.exit(f"run {r}: expected one fetch of big's output over Flight:\n{log}")
            n, size, secs = int(got[0].group(1)), int(got[0].group(2)), float(got[0].group(3))
            total = client.query("SELECT n, s FROM total", ref="main").to_pylist()[0]
            if n != rows or (total["n"], total["s"]) != want:
                sys.exit(f"run {r}: wrong answer: fetched {n} rows, total {total}, want {want}")
            label = "warm-up" if r == 0 else f"run {r}"
            say(f"   {label}: {secs:.3f} s to fetch {size / 1e9:.2f} GB ({rows:,} rows); whole run {dt:.1f} s")
            if r > 0:
                fetch_s.append(secs)
                run_s.append(dt)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        srv.stop()

    # The peers, on the same table.
    say("== peers: the same table through pyarrow.flight, and memory-mapped")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else a.out
    path = os.path.join(shm, f"lakeplan-bench-node-handoff-{os.getpid()}.arrow")
    table = make_table(rows)
    with pa.OSFile(path, "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    del table
    peer = subprocess.Popen([sys.executable, "-c", FLIGHT_SERVER, path], stdout=subprocess.PIPE, text=True)
    try:
        import pyarrow.flight as fl
        port = int(peer.stdout.readline())
        fc = fl.connect(f"grpc://127.0.0.1:{port}")
        peers = {
            "pyarrow-flight": lambda: fc.do_get(fl.Ticket(b"t")).read_all(),
            "mmap": lambda: pa.ipc.open_file(pa.memory_map(path)).read_all(),
        }
        times = {k: [] for k in peers}
        for name, f in peers.items():
            f()  # warm-up
        for r in range(a.reps):
            for name, f in peers.items():
                dt, t = timed(f)
                if t.num_rows != rows:
                    sys.exit(f"{name}: {t.num_rows} rows")
                del t
                times[name].append(dt)
    finally:
        peer.terminate()
        peer.wait()
        os.remove(path)

    med = {"lakeplan-node-fetch": statistics.median(fetch_s)}
    med.update({k: statistics.median(v) for k, v in times.items()})
    gb = rows * 64 / 1e9
    res = {
        "rows": rows,
        "arrow_gb": gb,
        "reps": a.reps,
        "median_s": med,
        "gb_per_s": {k: gb / v for k, v in med.items()},
        "run_median_s": statistics.median(run_s),
        "fetch_over_pyarrow_flight": med["lakeplan-node-fetch"] / med["pyarrow-flight"],
        "fetch_over_mmap": med["lakeplan-node-fetch"] / med["mmap"],
        "times_s": {"lakeplan-node-fetch": fetch_s, **times},
    }
    with open(os.path.join(os.path.dirname(a.out.rstrip("/")), "node-handoff.json"), "w") as f:
        json.dump(res, f, indent=2)
    say()
    for k, v in med.items():
        say(f"{k:>20}: {v:.3f} s median ({gb / v:.2f} GB/s)")
    say(f"node output fetch / pyarrow.flight DoGet:  {res['fetch_over_pyarrow_flight']:.2f}x")
    say(f"node output fetch / memory-mapped read:    {res['fetch_over_mmap']:.1f}x")
    say(f"whole run (make 1 GB on B, fetch to A, SQL): {res['run_median_s']:.1f} s median")


if __name__ == "__main__":
    main()
