"""Writes a deterministic lineitem-like CSV of about 1 GB (benchmark 4's input).

    .venv/bin/python bench/gen_csv.py OUT.csv [--rows N]

16 columns shaped like TPC-H lineitem (integers, DECIMAL(15,2) amounts, dates, short flags,
text), one header line. Every value is a function of the row number through DuckDB's hash(),
and DuckDB (pinned to 1.4.4) writes rows in order, so the file is the same on every run.
The default row count gives ~1.0e9 bytes.
"""

import argparse
import os
import time

import duckdb

DEFAULT_ROWS = 7_150_000

SQL = """
COPY (
  WITH r AS (
    SELECT i,
           (hash(i * 16 + 1) >> 2)::BIGINT AS h1, (hash(i * 16 + 2) >> 2)::BIGINT AS h2, (hash(i * 16 + 3) >> 2)::BIGINT AS h3,
           (hash(i * 16 + 4) >> 2)::BIGINT AS h4, (hash(i * 16 + 5) >> 2)::BIGINT AS h5, (hash(i * 16 + 6) >> 2)::BIGINT AS h6,
           (hash(i * 16 + 7) >> 2)::BIGINT AS h7, (hash(i * 16 + 8) >> 2)::BIGINT AS h8
    FROM range({rows}) t(i)
  )
  SELECT
    i // 4 + 1                                              AS l_orderkey,
    (h1 % 200000 + 1)::BIGINT                               AS l_partkey,
    (h2 % 10000 + 1)::BIGINT                                AS l_suppkey,
    (i % 4 + 1)::INTEGER                                    AS l_linenumber,
    ((h3 % 50 + 1))::DECIMAL(15, 2)                         AS l_quantity,
    ((h4 % 10000000) / 100)::DECIMAL(15, 2)                 AS l_extendedprice,
    ((h5 % 11) / 100)::DECIMAL(15, 2)                       AS l_discount,
    ((h6 % 9) / 100)::DECIMAL(15, 2)                        AS l_tax,
    ['A', 'N', 'R'][h7 % 3 + 1]                             AS l_returnflag,
    ['F', 'O'][h8 % 2 + 1]                                  AS l_linestatus,
    DATE '1992-01-02' + (h1 % 2526)::INTEGER                AS l_shipdate,
    DATE '1992-01-31' + (h2 % 2466)::INTEGER                AS l_commitdate,
    DATE '1992-01-03' + (h1 % 2526 + h3 % 30 + 1)::INTEGER  AS l_receiptdate,
    ['DELIVER IN PERSON', 'COLLECT COD', 'NONE', 'TAKE BACK RETURN'][h4 % 4 + 1] AS l_shipinstruct,
    ['REG AIR', 'AIR', 'RAIL', 'SHIP', 'TRUCK', 'MAIL', 'FOB'][h5 % 7 + 1]        AS l_shipmode,
    concat_ws(' ',
      {words}[h6 % 24 + 1], {words}[h7 % 24 + 1], {words}[h8 % 24 + 1],
      {words}[(h6 // 24) % 24 + 1], {words}[(h7 // 24) % 24 + 1])          AS l_comment
  FROM r
  ORDER BY i
) TO '{path}' (FORMAT csv, HEADER true)
"""

WORDS = [
    "furiously", "quickly", "carefully", "blithely", "slyly", "regular", "final", "special",
    "pending", "express", "ironic", "bold", "deposits", "requests", "packages", "accounts",
    "theodolites", "instructions", "foxes", "pinto", "beans", "ideas", "across", "among",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    a = ap.parse_args()
    words = "[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    t = time.perf_counter()
    tmp = a.path + ".tmp"
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(SQL.format(rows=a.rows, words=words, path=tmp))
    os.replace(tmp, a.path)
    print(f"wrote {a.path}: {a.rows} rows, {os.path.getsize(a.path) / 1e9:.3f} GB in {time.perf_counter() - t:.1f}s")


if __name__ == "__main__":
    main()
