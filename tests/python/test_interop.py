"""What lakeplan writes is valid Iceberg: DuckDB's iceberg extension (a reader nobody here
wrote) reads each branch's current metadata file and gets the same rows as `lakeplan query`."""
import pathlib
import sysconfig

import duckdb
import pytest

from conftest import DATA

EXT_DIR = pathlib.Path(sysconfig.get_paths()["purelib"]) / "duckdb_ext" / "extensions" / f"v{duckdb.__version__}"


def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for ext in ("avro", "iceberg"):
        found = list(EXT_DIR.glob(f"*/{ext}.duckdb_extension"))
        assert found, f"{ext} extension wheel not installed under {EXT_DIR}"
        con.execute(f"LOAD '{found[0]}'")
    return con


def metadata_path(lake, table: str, ref: str) -> str:
    loc = lake.json("table", "get", table, "-r", ref)["metadata_location"]
    assert loc.startswith("file://")
    return loc[len("file://"):]


STATS = "SELECT count(*) AS n, sum(trip_id) AS ids, round(sum(fare), 2) AS fare, count(DISTINCT vendor) AS vendors FROM {src}"


def stats_duckdb(con, path: str) -> dict:
    cur = con.execute(STATS.format(src=f"iceberg_scan('{path}')"))
    cols = [d[0] for d in cur.description]
    return dict(zip(cols, cur.fetchone()))


def test_duckdb_reads_two_branches_that_differ(lake):
    jan, feb = str(DATA / "trips_2024_01.csv"), str(DATA / "trips_2024_02.csv")
    lake.run("table", "create", "trips", "--search-uri", jan)
    lake.run("table", "import", "trips", "--search-uri", jan)
    lake.run("branch", "create", "dev")
    lake.run("table", "import", "trips", "--search-uri", feb, "-b", "dev")

    con = duck()
    seen = {}
    for ref in ("main", "dev"):
        ours = lake.rows(STATS.format(src="trips"), "-r", ref)[0]
        theirs = stats_duckdb(con, metadata_path(lake, "trips", ref))
        assert theirs["n"] == ours["n"]
        assert theirs["ids"] == ours["ids"]
        assert theirs["fare"] == pytest.approx(ours["fare"])
        assert theirs["vendors"] == ours["vendors"]
        seen[ref] = theirs["n"]
    assert seen == {"main": 2000, "dev": 4000}

    # the column added on dev (schema evolution) reads back with nulls for January's rows
    path = metadata_path(lake, "trips", "dev")
    tips = con.execute(
        f"SELECT count(tip), count(*) FROM iceberg_scan('{path}')"
    ).fetchone()
    assert tips == (2000, 4000)


def test_duckdb_reads_a_partitioned_table(lake):
    jan = str(DATA / "trips_2024_01.csv")
    lake.run("table", "create", "trips", "--search-uri", jan, "--partitioned-by", "vendor, day(pickup_at)")
    lake.run("table", "import", "trips", "--search-uri", jan)
    con = duck()
    path = metadata_path(lake, "trips", "main")
    ours = lake.rows("SELECT vendor, count(*) AS n FROM trips GROUP BY vendor ORDER BY vendor")
    theirs = con.execute(
        f"SELECT vendor, count(*) FROM iceberg_scan('{path}') GROUP BY vendor ORDER BY vendor"
    ).fetchall()
    assert [(r["vendor"], r["n"]) for r in ours] == theirs
