"""Pipelines benchmark 1: handoff of a 1 GiB Arrow table from one function to the next.

Run through `bench/run.sh handoff`. Everything runs in this one Python process, with the
worker's own functions (python/lakeplan/_worker.py is imported, not copied):

* handoff (the real path): the producer's worker writes its output table with
  `_worker.write_table(table, /dev/shm/...)` (uncompressed Arrow IPC file, temp file + rename),
  the consumer's worker reads it with `_worker.read_table(path)` (`pyarrow.memory_map` +
  `ipc.open_file().read_all()`, zero-copy) and touches it: `pyarrow.compute.sum` of every
  column, which reads every byte and faults every page of the mapping in.
* memcpy (the peer): `ctypes.memmove` of each of the table's data buffers into a fresh
  anonymous mapping (`mmap.mmap(-1, n)`: new pages, faulted on first write, as a fresh
  /dev/shm file's are; what numpy's `copy()` of a large array gets from malloc), and the same
  into destination buffers that are already faulted in (`memcpy-warm`, the fastest copy there
  is). Bare copy: nothing reads the destination afterwards.
* memcpy+sums: the fresh-page copy followed by the same sums over the copy (like for like
  with the handoff: the consumer has the data and has read it once).
* parquet: `pyarrow.parquet.write_table` (defaults: snappy) to /dev/shm + `read_table` + the
  same sums.

The headline ratio is `memcpy time / handoff time` (= handoff throughput as a fraction of
memcpy throughput); goal >= 0.5. REPS rounds, the order of the paths rotated every round,
medians. Writes OUT/handoff.json.
"""

import argparse
import ctypes
import json
import mmap
import os
import statistics
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

from lakeplan import _worker  # noqa: E402  (the real worker module of the repository)


def say(msg=""):
    print(msg, flush=True)


def make_table(gib: float, batch_rows: int) -> pa.Table:
    """8 fixed-width columns (4 int64, 4 float64) of 8 bytes each: 64 bytes a row."""
    rows = int(gib * (1 << 30)) // 64
    batches = []
    start = 0
    while start < rows:
        n = min(batch_rows, rows - start)
        ids = pa.array(range(start, start + n), pa.int64())
        cols = {"id": ids}
        for i in range(3):
            cols[f"k{i}"] = pc.cast(pc.floor(pc.multiply(pc.random(n), 1e9)), pa.int64())
        for i in range(4):
            cols[f"x{i}"] = pc.random(n)
        batches.append(pa.RecordBatch.from_pydict(cols))
        start += n
    return pa.Table.from_batches(batches)


def data_buffers(table: pa.Table):
    """The table's data buffers (validity bitmaps are absent: no nulls)."""
    return [b for col in table.columns for chunk in col.chunks for b in chunk.buffers() if b is not None]


def touch(table: pa.Table) -> float:
    """Sum of every column: reads every byte of the table."""
    return sum(pc.sum(table.column(i)).as_py() for i in range(table.num_columns))


def run_handoff(table, path):
    if os.path.exists(path):
        os.unlink(path)
    t0 = time.perf_counter()
    _worker.write_table(table, path)  # producer's worker
    t1 = time.perf_counter()
    got = _worker.read_table(path)  # consumer's worker
    t2 = time.perf_counter()
    total = touch(got)
    t3 = time.perf_counter()
    del got
    os.unlink(path)
    return {"s": t3 - t0, "write_s": t1 - t0, "open_s": t2 - t1, "touch_s": t3 - t2, "check": total}


def copy_into(bufs, dst):
    off = 0
    base = ctypes.addressof(ctypes.c_char.from_buffer(dst))
    for b in bufs:
        ctypes.memmove(base + off, b.address, b.size)
        off += b.size
    return base


def run_memcpy_fresh(bufs, nbytes, sums: bool, table=None):
    t0 = time.perf_counter()
    dst = mmap.mmap(-1, nbytes)
    copy_into(bufs, dst)
    t1 = time.perf_counter()
    total = None
    if sums:
        # The copy as a table again (zero-copy views of the destination), then the same sums.
        view = pa.py_buffer(dst)
        off, arrays = 0, []
        for col in table.columns:
            chunks = []
            for chunk in col.chunks:
                size = chunk.buffers()[1].size
                chunks.append(pa.Array.from_buffers(chunk.type, len(chunk), [None, view.slice(off, size)]))
                off += size
            arrays.append(pa.chunked_array(chunks, col.type))
        copy = pa.Table.from_arrays(arrays, schema=table.schema)
        total = touch(copy)
        del copy, arrays, chunks, view
    t2 = time.perf_counter()
    dst.close()
    return {"s": t2 - t0, "copy_s": t1 - t0, "check": total}


def run_memcpy_warm(bufs, dst):
    t0 = time.perf_counter()
    copy_into(bufs, dst)
    return {"s": time.perf_counter() - t0}


def run_parquet(table, path):
    import pyarrow.parquet as pq

    if os.path.exists(path):
        os.unlink(path)
    t0 = time.perf_counter()
    pq.write_table(table, path)
    t1 = time.perf_counter()
    got = pq.read_table(path)
    t2 = time.perf_counter()
    total = touch(got)
    t3 = time.perf_counter()
    size = os.path.getsize(path)
    del got
    os.unlink(path)
    return {"s": t3 - t0, "write_s": t1 - t0, "read_s": t2 - t1, "touch_s": t3 - t2, "check": total, "file_bytes": size}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for handoff.json")
    ap.add_argument("--gib", type=float, default=1.0, help="table size in GiB (default 1)")
    ap.add_argument("--batch-rows", type=int, default=1 << 20, help="rows per record batch")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--shm", default="/dev/shm", help="where the handoff and parquet files go")
    ap.add_argument("--no-parquet", action="store_true")
    a = ap.parse_args()

    say(f"== making a {a.gib} GiB table (8 int64/float64 columns, {a.batch_rows}-row batches)")
    table = make_table(a.gib, a.batch_rows)
    bufs = data_buffers(table)
    nbytes = sum(b.size for b in bufs)
    say(f"   {table.num_rows} rows, {len(bufs)} buffers, {nbytes / 2**30:.3f} GiB of data; pyarrow {pa.__version__}")
    expected = touch(table)
    warm_dst = mmap.mmap(-1, nbytes)
    copy_into(bufs, warm_dst)  # fault the warm destination in once

    tag = f"lakeplan-bench-handoff-{os.getpid()}"
    ipc_path = os.path.join(a.shm, tag + ".arrow")
    pq_path = os.path.join(a.shm, tag + ".parquet")
    paths = {
        "handoff": lambda: run_handoff(table, ipc_path),
        "memcpy": lambda: run_memcpy_fresh(bufs, nbytes, False),
        "memcpy-warm": lambda: run_memcpy_warm(bufs, warm_dst),
        "memcpy+sums": lambda: run_memcpy_fresh(bufs, nbytes, True, table),
    }
    if not a.no_parquet:
        paths["parquet"] = lambda: run_parquet(table, pq_path)
    names = list(paths)
    runs = {n: [] for n in names}
    # One warm-up of each (imports, allocator, page cache of the code), not recorded.
    for n in names:
        paths[n]()
    say(f"== {a.reps} rounds, order rotated each round")
    for r in range(a.reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            res = paths[n]()
            if res.get("check") is not None and not _close(res["check"], expected):
                sys.exit(f"{n}: sums {res['check']} != expected {expected}")
            runs[n].append(res)
        say("   round %d: %s" % (r + 1, "  ".join(f"{n} {runs[n][-1]['s'] * 1e3:.0f}ms" for n in names)))

    def med(n, key="s"):
        return statistics.median(x[key] for x in runs[n])

    gbps = {n: nbytes / med(n) / 1e9 for n in names}
    say(f"\n== median of {a.reps} ({nbytes / 1e9:.3f} GB)")
    for n in names:
        parts = ", ".join(f"{k} {med(n, k) * 1e3:.0f}ms" for k in runs[n][0] if k.endswith("_s"))
        say(f"   {n:12} {med(n) * 1e3:7.0f} ms  {gbps[n]:6.2f} GB/s   ({parts})" if parts else
            f"   {n:12} {med(n) * 1e3:7.0f} ms  {gbps[n]:6.2f} GB/s")
    ratio = med("memcpy") / med("handoff")
    summary = {
        "bytes": nbytes,
        "rows": table.num_rows,
        "reps": a.reps,
        "pyarrow": pa.__version__,
        "median_s": {n: med(n) for n in names},
        "components_median_s": {n: {k: med(n, k) for k in runs[n][0] if k.endswith("_s")} for n in names},
        "gb_per_s": gbps,
        "handoff_vs_memcpy_throughput": ratio,
        "handoff_vs_memcpy_warm_throughput": med("memcpy-warm") / med("handoff"),
        "handoff_vs_memcpy_plus_sums_throughput": med("memcpy+sums") / med("handoff"),
        "goal": ">= 0.5 of memcpy throughput",
        "goal_met": ratio >= 0.5,
        "runs": runs,
    }
    say(f"\nhandoff throughput / memcpy (fresh pages) throughput: {ratio:.2f}   goal >= 0.5: "
        f"{'MET' if ratio >= 0.5 else 'MISSED'}")
    say(f"handoff / memcpy into warm pages: {summary['handoff_vs_memcpy_warm_throughput']:.2f}; "
        f"handoff / (memcpy + the same sums): {summary['handoff_vs_memcpy_plus_sums_throughput']:.2f}")
    if "parquet" in names:
        summary["parquet_vs_handoff_time"] = med("parquet") / med("handoff")
        summary["parquet_file_bytes"] = runs["parquet"][0]["file_bytes"]
        say(f"parquet round trip / handoff (time): {summary['parquet_vs_handoff_time']:.1f}x")
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, "handoff.json")
    json.dump(summary, open(out, "w"), indent=1)
    say(f"wrote {out}")


def _close(x, y):
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1.0)


if __name__ == "__main__":
    main()
