"""Server benchmark 2: a 1 GB query result fetched over Arrow Flight vs read from local Parquet.

Run through `bench/run.sh flight`. A `lakeplan serve --workers 1` (release binary) on loopback,
with one tenant and a read/write key made by `lakeplan admin`. The table `default.wide` holds
ROWS rows of 8 fixed-width columns (4 int64, 4 float64: 64 bytes a row, GB = 1e9 bytes of
Arrow data by default), written once by pyarrow and imported with `Client.create_table` +
`Client.import_data` (the worker writes the lake's own data files: LZ4, 256 Ki-row groups).

Each round times, in a rotating order:

* flight (headline): `Client.query("SELECT * FROM wide")` over Arrow Flight. The control plane
  plans nothing itself: a worker plans the query and answers a single-use ticket, then the
  client's `pyarrow.flight` `DoGet(ticket)` streams the rows from the worker, which decodes the
  table's Parquet files as it sends. Ends with the whole result as a `pyarrow.Table` in this
  process.
* http: the same call with `query_transport="http"` (303 to the worker's `/results/{ticket}`,
  one Arrow IPC stream body over HTTP/1.1).
* parquet (the peer): `pyarrow.parquet.read_table` of the table's own data files (the same
  bytes the worker decodes), to a `pyarrow.Table` in this process; and, for context, of the
  single file pyarrow wrote (snappy).

Every answer is checked: row count and the sum of `id` equal the source's. Medians over REPS
rounds after a warm-up; ratios flight / parquet. Writes OUT/flight.json.
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import lakeplan  # noqa: E402  (the repository's SDK)


def say(msg=""):
    print(msg, flush=True)


def make_table(rows: int, batch_rows: int = 1 << 20) -> pa.Table:
    """4 int64 + 4 float64 columns: 64 bytes a row."""
    batches = []
    for start in range(0, rows, batch_rows):
        n = min(batch_rows, rows - start)
        cols = {"id": pa.array(range(start, start + n), pa.int64())}
        for i in range(3):
            cols[f"k{i}"] = pc.cast(pc.floor(pc.multiply(pc.random(n), 1e9)), pa.int64())
        for i in range(4):
            cols[f"x{i}"] = pc.random(n)
        batches.append(pa.record_batch(cols))
    return pa.Table.from_batches(batches)


class Server:
    def __init__(self, bin_dir: str, root: str):
        self.bin = os.path.join(bin_dir, "lakeplan")
        self.root = root
        self.metastore = f"sqlite:{os.path.join(root, 'meta')}"
        self.env = dict(os.environ, HOME=os.path.join(root, "home"))
        os.makedirs(self.env["HOME"], exist_ok=True)
        self.proc = None
        self.url = ""

    def admin(self, *args: str) -> str:
        p = subprocess.run([self.bin, "admin", *args, "--metastore", self.metastore],
                           env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"lakeplan admin {' '.join(args)}: {p.stderr}")
        return p.stdout.strip()

    def admin_key(self) -> str:
        """A tenant `bench` with an admin user; returns an admin key of theirs."""
        self.admin("tenant", "create", "bench")
        self.admin("user", "create", "bench", "--tenant", "bench", "--admin")
        return self.admin("key", "create", "--tenant", "bench", "--user", "bench", "--scope", "admin")

    def start(self, workers: int = 1) -> None:
        self.log = open(os.path.join(self.root, "serve.log"), "w")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--listen", "127.0.0.1:0", "--metastore", self.metastore,
             "--allow-local-paths", "--workers", str(workers)],
            env=self.env, stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        prefix = "lakeplan server listening on "
        if not line.startswith(prefix):
            sys.exit(f"serve said {line!r}; see {self.log.name}")
        self.url = line[len(prefix):].strip()

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.log.close()


def parse_args(doc: str, what: str) -> argparse.Namespace:
    """The arguments every server benchmark takes: the binary, the output folder, the size."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="folder of the release lakeplan binary")
    ap.add_argument("--out", required=True)
    ap.add_argument("--gb", type=float, default=1.0, help=f"{what} size in GB of Arrow data (1e9 bytes)")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    return a


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def main() -> None:
    a = parse_args(__doc__, "result")
    rows = int(a.gb * 1e9) // 64
    src = os.path.join(a.out, "wide.parquet")
    say(f"== data: {rows:,} rows x 8 columns ({rows * 64 / 1e9:.2f} GB of Arrow data)")
    table = make_table(rows)
    want_sum = pc.sum(table["id"]).as_py()
    pq.write_table(table, src, row_group_size=1 << 20)
    del table

    server = Server(a.bin, os.path.join(a.out, "server"))
    key = server.admin_key()
    server.start()
    try:
        flight = lakeplan.Client(api_key=key, endpoint=server.url, query_transport="flight")
        http = lakeplan.Client(api_key=key, endpoint=server.url, query_transport="http")
        t0 = time.perf_counter()
        flight.create_table("wide", src, branch="main")
        flight.import_data("wide", src, branch="main", client_timeout=1800)
        say(f"== imported in {time.perf_counter() - t0:.1f} s")
        files = sorted(glob.glob(os.path.join(server.root, "**", "*.parquet"), recursive=True))
        if not files:
            sys.exit("no data files under the server's folder")
        size = sum(os.path.getsize(f) for f in files)
        say(f"== the table's data files: {len(files)}, {size / 1e9:.2f} GB")

        sql = "SELECT * FROM wide"
        paths = {
            "flight": lambda: flight.query(sql, client_timeout=1800),
            "http": lambda: http.query(sql, client_timeout=1800),
            "parquet": lambda: pq.read_table(files),
            "parquet-src": lambda: pq.read_table(src),
        }

        def check(name, t):
            if t.num_rows != rows or pc.sum(t["id"]).as_py() != want_sum:
                sys.exit(f"{name}: wrong answer ({t.num_rows} rows)")

        for name, f in paths.items():  # warm-up: page cache, the worker's table cache
            check(name, f())
        times = {k: [] for k in paths}
        order = list(paths)
        for r in range(a.reps):
            for name in order:
                dt, t = timed(paths[name])
                check(name, t)
                del t
                times[name].append(dt)
            say("   round %d: %s" % (r + 1, "  ".join(f"{k} {times[k][-1]:.2f}s" for k in order)))
            order = order[1:] + order[:1]
    finally:
        server.stop()

    med = {k: statistics.median(v) for k, v in times.items()}
    gb = rows * 64 / 1e9
    res = {
        "rows": rows,
        "arrow_gb": gb,
        "data_files": len(files),
        "data_files_gb": size / 1e9,
        "reps": a.reps,
        "median_s": med,
        "gb_per_s": {k: gb / v for k, v in med.items()},
        "flight_over_parquet": med["flight"] / med["parquet"],
        "http_over_parquet": med["http"] / med["parquet"],
        "flight_over_parquet_src": med["flight"] / med["parquet-src"],
        "times_s": times,
    }
    with open(os.path.join(os.path.dirname(a.out.rstrip("/")), "flight.json"), "w") as f:
        json.dump(res, f, indent=2)
    say()
    for k in paths:
        say(f"{k:>12}: {med[k]:.3f} s median ({gb / med[k]:.2f} GB/s)")
    say(f"flight / local parquet (the same files): {res['flight_over_parquet']:.2f}x")
    say(f"http   / local parquet (the same files): {res['http_over_parquet']:.2f}x")
    say(f"flight / pyarrow's own snappy file:      {res['flight_over_parquet_src']:.2f}x")


if __name__ == "__main__":
    main()
