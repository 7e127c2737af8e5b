"""`lakeplan.Client` against a real `lakeplan serve` (the built binary, a temporary SQLite
metastore, keys made with `lakeplan admin`).

Tenants and users of the server (module-scoped, shared by the tests; each test writes only its
own branches, except the merge test, which writes `main`):
- `acme`: alice (write, may not merge into main), bob (write, may merge into main), root (admin),
  reader (read-only);
- `globex`: eve (admin), whose refs and tables acme must not see.

Pipeline runs execute in the server's sandboxes with uv environments, built once into a shared
cache (`env_cache`): `$LAKEPLAN_ENV_CACHE`, else the one cargo's pipeline tests fill beside the
binary (`target/tmp/pipeline-envs`), else a folder of this session.
"""

import contextlib
import os
import select
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from conftest import DATA, lakeplan_bin

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
sys.path.insert(0, str(PYTHON_DIR))

import bauplan  # noqa: E402
import lakeplan  # noqa: E402
from lakeplan import client as client_module  # noqa: E402
from lakeplan import exceptions as exc  # noqa: E402

JAN = DATA / "trips_2024_01.csv"
FEB = DATA / "trips_2024_02.csv"
USERS = [
    ("acme", "alice", [], "write"),
    ("acme", "bob", ["--can-merge-main"], "write"),
    ("acme", "root", ["--admin"], "admin"),
    ("acme", "reader", [], "read"),
    ("globex", "eve", ["--admin"], "admin"),
]


class Server:
    def __init__(self, root: Path, env_cache: str):
        self.root = root
        self.metastore = f"sqlite:{root / 'meta'}"
        self.env = dict(os.environ, HOME=str(root / "home"), LAKEPLAN_ENV_CACHE=env_cache)
        self.keys = {}
        self.url = ""
        self.proc = None

    def admin(self, *args: str) -> str:
        p = subprocess.run(
            [lakeplan_bin(), "admin", *args, "--metastore", self.metastore],
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, f"lakeplan admin {args}: {p.stderr}"
        return p.stdout.strip()

    def new_key(self, tenant: str, user: str, scope: str) -> str:
        return self.admin("key", "create", "--tenant", tenant, "--user", user, "--scope", scope)

    def client(self, user: str, **kw) -> "lakeplan.Client":
        return lakeplan.Client(api_key=self.keys[user], endpoint=self.url, **kw)


@contextlib.contextmanager
def serve(root: Path, env_cache: str, users=USERS):
    """A `lakeplan serve` with `users` (tenant, user, flags, scope), each with a key, in its own
    process group (stopped when the block ends)."""
    s = Server(root, env_cache)
    (s.root / "home").mkdir(parents=True)
    for tenant in sorted({u[0] for u in users}):
        s.admin("tenant", "create", tenant)
    for tenant, user, flags, scope in users:
        s.admin("user", "create", user, "--tenant", tenant, *flags)
        s.keys[user] = s.new_key(tenant, user, scope)
    log = open(s.root / "serve.log", "w")
    s.proc = subprocess.Popen(
        [lakeplan_bin(), "serve", "--listen", "127.0.0.1:0", "--metastore", s.metastore, "--allow-local-paths"],
        env=s.env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        ready, _, _ = select.select([s.proc.stdout], [], [], 60)
        line = s.proc.stdout.readline() if ready else ""
        prefix = "lakeplan server listening on "
        assert line.startswith(prefix), f"serve said {line!r}; log: {(s.root / 'serve.log').read_text()}"
        s.url = line[len(prefix):].strip()
        yield s
    finally:
        s.proc.terminate()
        try:
            s.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
        log.close()


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory) -> str:
    """Where pipeline environments are built once and shared (see the module docstring)."""
    if os.environ.get("LAKEPLAN_ENV_CACHE"):
        return os.environ["LAKEPLAN_ENV_CACHE"]
    cargo_tests = Path(lakeplan_bin()).resolve().parents[1] / "tmp" / "pipeline-envs"
    if cargo_tests.is_dir():
        return str(cargo_tests)
    return str(tmp_path_factory.mktemp("pipeline-envs"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, env_cache):
    with serve(tmp_path_factory.mktemp("server"), env_cache) as s:
        yield s


@pytest.fixture(scope="module")
def trips(server):
    """alice's branch `alice.trips` with table `trips` holding January's CSV."""
    alice = server.client("alice")
    alice.create_branch("alice.trips", from_ref="main")
    created = alice.create_table("trips", str(JAN), branch="alice.trips")
    report = alice.import_data("trips", str(JAN), branch="alice.trips")
    return created, report


def csv_rows(path: Path) -> pa.Table:
    return pcsv.read_csv(path)


# --------------------------------------------------------------------------- refs


def test_branch_lifecycle(server):
    alice = server.client("alice")
    main = alice.get_branch("main")
    b = alice.create_branch("alice.life", from_ref="main")
    assert isinstance(b, lakeplan.records.Branch)
    assert (b.name, b.hash, b.type) == ("alice.life", main.hash, "BRANCH")
    assert alice.get_branch("alice.life") == b
    assert alice.has_branch("alice.life") and not alice.has_branch("alice.nope")

    with pytest.raises(exc.BranchExistsError) as e:
        alice.create_branch("alice.life", from_ref="main")
    assert e.value.status == 409 and e.value.type == "RefExists"
    assert alice.create_branch("alice.life", "main", if_not_exists=True).hash == main.hash

    renamed = alice.rename_branch(b, "alice.life2")  # a Branch object stands for its name
    assert renamed.name == "alice.life2" and not alice.has_branch("alice.life")
    assert alice.delete_branch("alice.life2") is True
    with pytest.raises(exc.BranchNotFoundError):
        alice.delete_branch("alice.life2")
    assert alice.delete_branch("alice.life2", if_exists=True) is False


def test_list_methods_are_lazy_and_filter(server):
    alice = server.client("alice")
    alice.create_branch("alice.lazy1", "main")
    it = alice.get_branches(name="alice.lazy")
    # Nothing is fetched until iteration: a branch created now is listed.
    alice.create_branch("alice.lazy2", "main")
    assert [b.name for b in it] == ["alice.lazy1", "alice.lazy2"]
    assert list(it) == []  # an iterator, used up
    assert [b.name for b in alice.get_branches(name="alice.lazy", limit=1)] == ["alice.lazy1"]
    assert {b.name for b in alice.get_branches(user="alice")} >= {"alice.lazy1", "alice.lazy2"}
    assert all(b.name.startswith("alice.") for b in alice.get_branches(user="alice"))
    assert list(alice.get_branches(user="nobody")) == []
    with pytest.raises(ValueError):
        alice.get_branches(limit=-1)

    # A request that fails does so on iteration, not when the iterator is made.
    it = alice.get_tables("no.such.ref")
    with pytest.raises(exc.RefNotFoundError):
        next(it)


def test_tags(server):
    alice = server.client("alice")
    b = alice.create_branch("alice.tagged", "main")
    t = alice.create_tag("alice.v1", from_ref=b)
    assert (t.name, t.hash, t.type) == ("alice.v1", b.hash, "TAG")
    assert isinstance(t, lakeplan.records.Tag)
    assert alice.has_tag("alice.v1") and alice.get_tag("alice.v1") == t
    assert [x.name for x in alice.get_tags(filter_by_name="alice.v")] == ["alice.v1"]
    with pytest.raises(exc.TagExistsError):
        alice.create_tag("alice.v1", "main")
    assert alice.rename_tag("alice.v1", "alice.v2").name == "alice.v2"
    with pytest.raises(exc.TagNotFoundError) as e:
        alice.get_tag("alice.v1")
    assert isinstance(e.value, exc.RefNotFoundError) and e.value.context == {"ref": "alice.v1"}
    with pytest.raises(exc.NotAWriteBranchRefError) as e:  # tags are read-only refs
        alice.create_namespace("raw", "alice.v2")
    assert e.value.status == 400 and isinstance(e.value, exc.InvalidRefError)
    assert alice.delete_tag("alice.v2") and not alice.has_tag("alice.v2")


# --------------------------------------------------------------------------- tables and queries


def test_create_import_and_table_metadata(server, trips):
    created, report = trips
    alice = server.client("alice")
    expected = csv_rows(JAN)
    assert created.fqn == "default.trips" and created.records == 0
    assert [f.name for f in created.fields] == expected.column_names
    assert report.rows == expected.num_rows and report.data_files == 1
    assert [f["path"] for f in report.imported] == [str(JAN)]
    assert report.branch.name == "alice.trips" and report.branch.hash == alice.get_branch("alice.trips").hash

    t = alice.get_table("trips", "alice.trips")
    assert isinstance(t, lakeplan.records.TableWithMetadata)
    assert (t.records, t.snapshots, t.namespace) == (expected.num_rows, 1, "default")
    assert t.fields[0].id == 1 and t.last_updated_at is not None
    assert [x.fqn for x in alice.get_tables("alice.trips")] == ["default.trips"]
    assert list(alice.get_tables("alice.trips", namespace="other")) == []
    assert alice.has_table("trips", "alice.trips") and not alice.has_table("trips", "main")
    assert alice.has_table("default.trips", "alice.trips")
    diff = alice.diff("main", "alice.trips")
    assert [(d.table, d.change, d.records_after) for d in diff] == [("default.trips", "added", expected.num_rows)]

    # Importing the same file again skips it.
    again = alice.import_data("trips", str(JAN), branch="alice.trips")
    assert again.rows == 0 and again.duplicates == [str(JAN)]


@pytest.fixture(params=["flight", "http"])
def transport(request) -> str:
    """Both ways query rows come from the worker: Arrow Flight DoGet, and HTTP (Arrow IPC)."""
    return request.param


def test_query_scan_and_files(server, trips, tmp_path, transport):
    reader = server.client("reader", query_transport=transport)
    expected = csv_rows(JAN)
    t = reader.query("SELECT * FROM trips", ref="alice.trips")
    assert isinstance(t, pa.Table)
    assert t.num_rows == expected.num_rows and t.column_names == expected.column_names
    n = reader.query("SELECT count(*) AS n FROM trips", ref="alice.trips")
    assert n.column("n").to_pylist() == [expected.num_rows]
    assert reader.query("SELECT * FROM trips", ref="alice.trips", max_rows=7).num_rows == 7
    empty = reader.query("SELECT trip_id FROM trips WHERE fare < 0", ref="alice.trips")
    assert empty.num_rows == 0 and empty.column_names == ["trip_id"]

    # scan: quoted columns, a predicate, a limit.
    s = reader.scan("trips", ref="alice.trips", columns=["trip_id", "fare"], filters="fare > 20")
    assert s.column_names == ["trip_id", "fare"]
    assert s.num_rows == pc.sum(pc.greater(expected["fare"], 20)).as_py() > 0
    assert pc.min(s["fare"]).as_py() > 20
    assert reader.scan("default.trips", ref="alice.trips", filters="fare > 20", limit=5).num_rows == 5
    with pytest.raises(exc.SqlError):
        reader.scan("trips", ref="alice.trips", columns=['fare" FROM trips; --'])
    with pytest.raises(ValueError):
        reader.scan("trips", limit="5; DROP")

    # Files: Parquet round trip, CSV, JSON, JSONL; rows as dicts.
    sql = "SELECT trip_id, vendor, pickup_at, fare FROM trips ORDER BY trip_id"
    full = reader.query(sql, ref="alice.trips")
    p = reader.query_to_parquet_file(tmp_path / "t.parquet", sql, ref="alice.trips")
    assert pq.read_table(p).equals(full)
    c = reader.query_to_csv_file(tmp_path / "t.csv", sql, ref="alice.trips")
    assert pcsv.read_csv(c).num_rows == full.num_rows
    j = reader.query_to_json_file(tmp_path / "t.json", sql, ref="alice.trips")
    import json

    rows = json.loads(j.read_text())
    assert len(rows) == full.num_rows and rows[0]["trip_id"] == full["trip_id"][0].as_py()
    jl = reader.query_to_json_file(tmp_path / "t.jsonl", sql, ref="alice.trips", file_format="jsonl")
    assert len(jl.read_text().splitlines()) == full.num_rows
    gen = reader.query_to_generator(sql, ref="alice.trips", max_rows=3)
    assert [r["trip_id"] for r in gen] == full["trip_id"].to_pylist()[:3]


@pytest.fixture(scope="module")
def many_trips(server):
    """alice's branch `alice.many` with table `trips` holding January's CSV 8 times (16,000
    rows in 8 data files: several batches, read in parallel)."""
    alice = server.client("alice")
    alice.create_branch("alice.many", from_ref="main")
    alice.create_table("trips", str(JAN), branch="alice.many")
    for _ in range(8):
        alice.import_data("trips", str(JAN), branch="alice.many", import_duplicate_files=True)
    return "alice.many"


def test_ordered_results_keep_their_order(server, many_trips, transport, tmp_path):
    reader = server.client("reader", query_transport=transport)
    sql = "SELECT vendor, trip_id FROM trips ORDER BY vendor, trip_id"
    t = reader.query(sql, ref=many_trips)
    rows = list(zip(t["vendor"].to_pylist(), t["trip_id"].to_pylist()))
    assert len(rows) == 16_000
    assert rows == sorted(rows), "ORDER BY rows out of order"
    desc = reader.query(
        "SELECT vendor, trip_id FROM trips ORDER BY vendor DESC, trip_id DESC LIMIT 9000",
        ref=many_trips,
    )
    drows = list(zip(desc["vendor"].to_pylist(), desc["trip_id"].to_pylist()))
    assert len(drows) == 9000 and drows == sorted(drows, reverse=True)
    p = reader.query_to_parquet_file(tmp_path / "sorted.parquet", sql, ref=many_trips)
    assert pq.read_table(p).equals(t)


def test_query_results_say_when_max_rows_cut_them(server, trips, monkeypatch, transport):
    reader = server.client("reader", query_transport=transport)
    n = csv_rows(JAN).num_rows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max_rows asked for the cut: no warning
        cut = reader.query("SELECT * FROM trips", ref="alice.trips", max_rows=7)
        whole = reader.query("SELECT * FROM trips", ref="alice.trips")
        exact = reader.query("SELECT * FROM trips", ref="alice.trips", max_rows=n)
        scanned = reader.scan("trips", ref="alice.trips", limit=3)
        nothing = reader.query("SELECT * FROM trips", ref="alice.trips", max_rows=0)
    assert nothing.num_rows == 0 and lakeplan.client.is_truncated(nothing)
    assert nothing.column_names == whole.column_names
    assert cut.num_rows == 7 and lakeplan.client.is_truncated(cut)
    assert cut.schema.metadata[b"lakeplan.truncated"] == b"true"
    assert whole.num_rows == n and not lakeplan.client.is_truncated(whole) and whole.schema.metadata is None
    assert exact.num_rows == n and not lakeplan.client.is_truncated(exact)
    assert scanned.num_rows == 3 and not lakeplan.client.is_truncated(scanned)  # a LIMIT, not a cut

    with pytest.raises(ValueError):
        reader.query("SELECT 1", max_rows=-1)
    if transport == "flight":
        return
    # A result the server cut though no max_rows was asked for (a server-side cap): a warning.
    send = lakeplan.Client._send

    def capped(self, *a, **kw):
        raw, _ = send(self, *a, **kw)
        return raw, {"x-lakeplan-truncated": "true"}

    monkeypatch.setattr(lakeplan.Client, "_send", capped)
    with pytest.warns(exc.ResultTruncatedWarning, match="first 2000 rows"):
        t = reader.query("SELECT * FROM trips", ref="alice.trips")
    assert lakeplan.client.is_truncated(t)


def test_flight_tickets_are_single_use_and_errors_are_typed(server, trips):
    import pyarrow.flight as flight

    reader = server.client("reader")
    t = reader._json(
        "POST",
        "/api/v1/query",
        body={"sql": "SELECT trip_id FROM trips ORDER BY trip_id", "ref": "alice.trips"},
        accept=lakeplan.client.FLIGHT_TICKET,
    )
    assert set(t) >= {"endpoint", "ticket", "expires_at", "columns"}
    assert t["endpoint"] != server.url  # the rows come from the worker, not the control plane
    assert t["columns"] == [{"name": "trip_id", "type": "Int64"}]
    fc = flight.FlightClient(lakeplan.client._flight_location(t["endpoint"]))
    ticket = flight.Ticket(t["ticket"].encode())

    def key(user):
        return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {server.keys[user]}".encode())])

    # The ticket is the reader's: no key, another key of the tenant or another tenant's key
    # gets nothing (and does not spend it).
    with pytest.raises(flight.FlightUnauthenticatedError):
        fc.do_get(ticket).read_all()
    with pytest.raises(flight.FlightUnauthorizedError, match="another API key"):
        fc.do_get(ticket, key("alice")).read_all()
    with pytest.raises(pa.ArrowKeyError, match="spent or expired"):  # another tenant's key
        fc.do_get(ticket, key("eve")).read_all()
    got = fc.do_get(ticket, key("reader")).read_all()
    assert got["trip_id"].to_pylist() == sorted(csv_rows(JAN)["trip_id"].to_pylist())
    # pyarrow raises gRPC's NOT_FOUND as ArrowKeyError.
    with pytest.raises(pa.ArrowKeyError, match="spent or expired"):
        fc.do_get(ticket, key("reader")).read_all()
    with pytest.raises(pa.ArrowKeyError, match="spent or expired"):
        fc.do_get(flight.Ticket(b"0" * 64), key("reader")).read_all()
    # Planning errors answer at once, from the control plane; errors while rows stream (a cast
    # that fails on a row) are the query's too.
    with pytest.raises(exc.SqlError):
        reader.query("SELECT nope FROM trips", ref="alice.trips")
    with pytest.raises(exc.SqlError):
        reader.query("SELECT CAST(vendor AS INT) FROM trips", ref="alice.trips")
    fc.close()


def test_writes_carry_commit_body_and_properties(server, trips):
    alice = server.client("alice")
    alice.create_branch("alice.extras", "alice.trips")
    alice.create_branch("alice.other", "alice.trips")
    alice.create_namespace("scratch", "alice.extras", commit_body="space for the reload", commit_properties={"ticket": "LP-9"})
    c = next(alice.get_commits("alice.extras", limit=1))
    assert c.subject == "Create namespace scratch" and c.body == "space for the reload"
    assert c.properties["ticket"] == "LP-9" and c.properties["lakeplan.operation"] == "namespace.create"
    alice.delete_namespace("scratch", "alice.extras", commit_body="done", commit_properties={"ticket": "LP-9"})
    c = next(alice.get_commits("alice.extras", limit=1))
    assert (c.subject, c.body, c.properties["ticket"]) == ("Delete namespace scratch", "done", "LP-9")
    tagged = list(alice.get_commits("alice.extras", filter_by_properties={"ticket": "LP-9"}))
    assert len(tagged) == 2

    # A merge commit (both sides changed) carries them too.
    alice.create_namespace("a", "alice.extras")
    alice.create_namespace("b", "alice.other")
    alice.merge_branch("alice.extras", "alice.other", commit_message="Bring in a", commit_body="why", commit_properties={"ticket": "LP-11"})
    m = next(alice.get_commits("alice.other", limit=1))
    assert len(m.parent_hashes) == 2 and m.message == "Bring in a\n\nwhy" and m.properties["ticket"] == "LP-11"

    w = alice.delete_table("trips", "alice.other", commit_body="superseded", commit_properties={"k": "v"})
    c = next(alice.get_commits("alice.other", limit=1))
    assert c.hash == w.hash and c.body == "superseded" and c.properties["k"] == "v"
    w = alice.revert_table("trips", "alice.trips", "alice.other", commit_properties={"ticket": "LP-12"})
    assert next(alice.get_commits("alice.other", limit=1)).properties["ticket"] == "LP-12"

    # Reserved keys are refused by the server and nothing is written.
    head = alice.get_branch("alice.other").hash
    with pytest.raises(exc.BadRequestError, match="reserved"):
        alice.create_namespace("c", "alice.other", commit_properties={"lakeplan.operation": "x"})
    with pytest.raises(exc.BadRequestError, match="reserved"):
        alice.delete_table("trips", "alice.other", commit_properties={"lakeplan.client": "x"})
    assert alice.get_branch("alice.other").hash == head


def test_namespaces_plans_revert_and_delete(server, trips):
    alice = server.client("alice")
    b = alice.create_branch("alice.more", from_ref="alice.trips")
    ns = alice.create_namespace("raw", b)
    assert ns.name == "raw" and alice.has_namespace("raw", "alice.more")
    with pytest.raises(exc.NamespaceExistsError):
        alice.create_namespace("raw", "alice.more")
    assert alice.create_namespace("raw", "alice.more", if_not_exists=True).name == "raw"
    assert [n.name for n in alice.get_namespaces("alice.more")] == ["default", "raw"]
    assert alice.get_namespace("raw", "alice.more").name == "raw"
    with pytest.raises(exc.NamespaceNotFoundError):
        alice.get_namespace("raw", "main")

    # Plan, then apply: a table in namespace raw from both months (February has one more column).
    plan = alice.plan_table_creation("both", str(DATA / "trips_2024_0*.csv"), "alice.more", namespace="raw")
    assert plan.can_auto_apply and plan.files_to_be_imported == [str(JAN), str(FEB)]
    assert "tip" in [c["name"] for c in plan.plan["schema"]]
    both = alice.apply_table_creation_plan(plan)
    assert both.fqn == "raw.both" and "tip" in [f.name for f in both.fields]
    imported = alice.import_data("both", str(DATA / "trips_2024_0*.csv"), "alice.more", namespace="raw")
    assert imported.rows == csv_rows(JAN).num_rows + csv_rows(FEB).num_rows
    with pytest.raises(exc.NamespaceIsNotEmptyError):
        alice.delete_namespace("raw", "alice.more")

    # Revert: the table as it was when created (empty), then delete it.
    created_at = next(alice.get_commits("alice.more", filter_by_message="^Create table raw.both"))
    alice.revert_table("raw.both", source_ref=f"@{created_at.hash}", into_branch="alice.more")
    assert alice.get_table("both", "alice.more", namespace="raw").records == 0
    with pytest.raises(exc.InvalidOperationError):  # already identical
        alice.revert_table("raw.both", source_ref=f"@{created_at.hash}", into_branch="alice.more")
    after = alice.delete_table("both", "alice.more", namespace="raw")
    assert after.name == "alice.more" and not alice.has_table("raw.both", "alice.more")
    assert alice.delete_namespace("raw", "alice.more").hash == alice.get_branch("alice.more").hash
    assert not alice.has_namespace("raw", "alice.more")


def test_get_commits_filters_and_pages(server, trips, monkeypatch):
    alice = server.client("alice")
    log = list(alice.get_commits("alice.trips"))
    assert [c.subject for c in log[:3]] == [
        f"Import {JAN} into default.trips",
        "Create table default.trips",
        "Initialize lake",
    ]
    assert log[0].author.name == "alice" and log[0].parent_hashes == [log[1].hash]
    assert log[0].properties["lakeplan.client"] == "api" and log[0].authored_date.tzinfo is not None
    assert log[0].hash == alice.get_branch("alice.trips").hash

    imports = list(alice.get_commits("alice.trips", filter_by_message="^Import"))
    assert [c.hash for c in imports] == [log[0].hash]
    by_alice = list(alice.get_commits("alice.trips", filter_by_author_name="^alice$"))
    assert [c.hash for c in by_alice] == [log[0].hash, log[1].hash]
    created = list(alice.get_commits("alice.trips", filter_by_properties={"lakeplan.operation": "table.create"}))
    assert [c.hash for c in created] == [log[1].hash]
    assert len(list(alice.get_commits("alice.trips", limit=1))) == 1
    with pytest.raises(exc.NotAvailableError):
        alice.get_commits("alice.trips", filter_by_author_email="a@b.c")

    # Paging: tiny pages give the same log, and later pages are pinned to where the first began.
    alice.create_branch("alice.paged", "alice.trips")
    for i in range(3):
        alice.create_namespace(f"ns{i}", "alice.paged")
    full = [c.hash for c in alice.get_commits("alice.paged")]
    monkeypatch.setattr(client_module, "_COMMITS_PAGE", 2)
    it = alice.get_commits("alice.paged")
    first = next(it)
    alice.create_namespace("late", "alice.paged")  # a commit made between pages
    assert [first.hash, *(c.hash for c in it)] == full
    assert [c.hash for c in alice.get_commits("alice.paged", limit=5)] == [
        alice.get_branch("alice.paged").hash,
        *full[:4],
    ]


def test_merges_follow_rights_and_report_conflicts(server, trips):
    alice, bob, root = server.client("alice"), server.client("bob"), server.client("root")
    head = alice.get_branch("alice.trips")
    with pytest.raises(exc.ForbiddenError) as e:
        alice.merge_branch("alice.trips", into_branch="main")
    assert e.value.status == 403 and "main" in e.value.message
    merged = bob.merge_branch(head, into_branch="main", commit_message="publish trips")
    assert (merged.name, merged.hash, merged.raw["outcome"]) == ("main", head.hash, "fast_forward")
    assert root.query("SELECT count(*) AS n FROM trips")["n"].to_pylist() == [csv_rows(JAN).num_rows]

    # Both sides change trips: a 409 naming it, and main stays as it was.
    bob.create_branch("bob.feb", "main")
    bob.import_data("trips", str(FEB), "bob.feb", continue_on_error=True)
    root.import_data("trips", str(FEB), "main", continue_on_error=True)
    before = root.get_branch("main")
    with pytest.raises(exc.MergeConflictError) as e:
        bob.merge_branch("bob.feb", "main")
    err = e.value
    assert isinstance(err, exc.ConflictError) and isinstance(err, exc.MergeConflict)
    assert (err.status, err.type, err.context["tables"]) == (409, "MergeConflict", ["default.trips"])
    assert root.get_branch("main") == before


# --------------------------------------------------------------------------- pipeline runs


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """`lakeplan init --name sdk_demo`: paid_trips (trips with fare >= $min_fare, a table),
    fares_by_zone, an expectation, trips_by_borough (SQL, a table)."""
    d = tmp_path_factory.mktemp("projects") / "sdk_demo"
    p = subprocess.run([lakeplan_bin(), "init", str(d), "--name", "sdk_demo"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return d


def variant(project: Path, dest: Path, old: str, new: str) -> Path:
    """A copy of `project` whose models.py has `old` replaced by `new`."""
    shutil.copytree(project, dest)
    code = (dest / "models.py").read_text()
    assert old in code
    (dest / "models.py").write_text(code.replace(old, new, 1))
    return dest


@pytest.fixture
def slow_project(project, tmp_path) -> Path:
    """The project with a model that takes 3 s."""
    return variant(project, tmp_path / "slow", "    kept = ", "    import time\n\n    time.sleep(3)\n    kept = ")


@pytest.fixture(scope="module")
def pipeline(server):
    """alice's branch `alice.pipe` with tables trips (January) and zones, as the project reads."""
    alice = server.client("alice")
    alice.create_branch("alice.pipe", from_ref="main")
    for table, path in (("trips", JAN), ("zones", DATA / "zones.jsonl")):
        alice.create_table(table, str(path), branch="alice.pipe", replace=True)  # main may have trips
        alice.import_data(table, str(path), branch="alice.pipe")
    return "alice.pipe"


def count(client, sql: str, ref: str) -> int:
    return client.query(f"SELECT count(*) AS n FROM {sql}", ref=ref)["n"][0].as_py()


def wait_for(client, job_id: str, seconds: float = 120) -> "lakeplan.records.Job":
    deadline = time.monotonic() + seconds
    while (job := client.get_job(job_id)).status == "RUNNING":
        assert time.monotonic() < deadline, f"job {job_id} still running after {seconds} s"
        time.sleep(0.2)
    return job


def test_run_publishes_to_the_branch(server, pipeline, project):
    alice, reader = server.client("alice"), server.client("reader")
    before, main = alice.get_branch(pipeline), alice.get_branch("main")
    state = alice.run(project, ref=pipeline, parameters={"min_fare": 10})
    assert isinstance(state, lakeplan.records.RunState)
    assert (state.job_status, state.error) == ("SUCCESS", None), state.user_logs
    ctx = state.ctx
    assert (ctx.project_dir, ctx.ref, ctx.namespace, ctx.dry_run) == (str(project), pipeline, "default", False)
    assert (ctx.strict, ctx.cache, ctx.transaction, ctx.detach) == ("on", "on", "on", False)
    assert len(ctx.snapshot_id) == 64

    # The output table is on the branch, as many rows as the query says; main is untouched.
    after = alice.get_branch(pipeline)
    assert after.hash == state.result_commit != before.hash
    assert alice.get_branch("main") == main
    assert alice.has_table("paid_trips", pipeline) and not alice.has_table("paid_trips", "main")
    want = count(reader, "trips WHERE fare > 0 AND fare >= 10", pipeline)
    assert 0 < want < count(reader, "trips", pipeline)
    assert count(reader, "paid_trips", pipeline) == want
    assert alice.get_table("paid_trips", pipeline).records == want
    nodes = {n["node"]: n for n in state.nodes}
    assert nodes["paid_trips"]["rows"] == want and nodes["paid_trips"]["table"] == "default.paid_trips"
    assert {n["status"] for n in nodes.values()} == {"succeeded"}
    assert state.parameters["min_fare"] == "10"
    assert state.tx_ref.startswith(f"{pipeline}.run-") and state.duration > 0
    assert state.started_at_ns < state.ended_at_ns

    # The job, as get_job, get_jobs and get_job_logs tell it.
    job = alice.get_job(state.job_id)
    assert (job.id, job.status, job.human_readable_status) == (state.job_id, "COMPLETE", "succeeded")
    assert (job.user, job.target, job.raw["project_name"]) == ("alice", pipeline, "sdk_demo")
    assert job == state.job
    assert [j.id for j in reader.get_jobs(filter_by_ids=[state.job_id])] == [state.job_id]
    logs = reader.get_job_logs(state.job_id)
    assert "[paid_trips] succeeded" in logs and logs.splitlines() == state.user_logs


def test_run_options_reach_the_server(server, pipeline, project, monkeypatch):
    alice = server.client("alice")
    alice.create_branch("alice.opts", from_ref=pipeline)
    first = alice.run(project, ref="alice.opts", parameters={"min_fare": 12.5, "min_trips": None})
    assert first.job_status == "SUCCESS" and first.parameters == {"min_fare": "12.5", "min_trips": "1"}
    # The same code and inputs again: cached outputs; with cache='off' (or False), computed.
    again = alice.run(project, ref="alice.opts", parameters={"min_fare": 12.5})
    assert "cached" in {n["status"] for n in again.nodes}, again.nodes
    for off in ("off", False):
        fresh = alice.run(project, ref="alice.opts", parameters={"min_fare": 12.5}, cache=off)
        assert fresh.job_status == "SUCCESS" and fresh.ctx.cache == "off"
        assert "cached" not in {n["status"] for n in fresh.nodes}, fresh.nodes

    head = alice.get_branch("alice.opts")
    dry = alice.run(project, ref="alice.opts", dry_run=True, strict="off", parameters={"min_fare": 30})
    assert dry.job_status == "SUCCESS" and alice.get_branch("alice.opts") == head
    assert (dry.job.raw["dry_run"], dry.job.raw["strict"], dry.result_commit) == (True, False, None)
    assert (dry.ctx.dry_run, dry.ctx.strict) == (True, "off")

    direct = alice.run(project, ref="alice.opts", transaction="off", parameters={"min_fare": 30})
    assert direct.job_status == "SUCCESS" and direct.tx_ref is None and direct.job.raw["transactional"] is False
    assert count(alice, "paid_trips", "alice.opts") == count(alice, "trips WHERE fare >= 30", "alice.opts")

    # A run of the current folder when no project_dir is given.
    monkeypatch.chdir(project)
    here = alice.run(ref="alice.opts", parameters={"min_fare": 30})
    assert here.job_status == "SUCCESS" and here.ctx.project_dir == str(project)

    # preview: each model's first (head) or last (tail) rows in the job's log.
    shown = alice.run(project, ref="alice.opts", parameters={"min_fare": 30}, preview="head", cache="off")
    logs = "\n".join(shown.user_logs)
    assert shown.job_status == "SUCCESS" and "[paid_trips] preview:" in logs, logs
    assert shown.ctx.preview == "head"
    quiet = alice.run(project, ref="alice.opts", parameters={"min_fare": 30}, preview="off", cache="off")
    assert "preview:" not in "\n".join(quiet.user_logs)
    with pytest.raises(ValueError):
        alice.run(project, ref="alice.opts", preview="sideways")

    # Bauplan's args and priority: recorded in the job; bad ones refused before anything is sent.
    flagged = alice.run(project, ref="alice.opts", parameters={"min_fare": 30}, args={"team": "ml"}, priority=9)
    assert flagged.job_status == "SUCCESS", flagged.error
    assert (flagged.job.raw["args"], flagged.job.raw["priority"]) == ({"team": "ml"}, 9)
    assert alice.get_job(flagged.job_id).raw["priority"] == 9
    for bad in ({"priority": 0}, {"priority": 11}, {"priority": "high"}, {"args": {"": "x"}}, {"args": ["team"]}):
        with pytest.raises(ValueError):
            alice.run(project, ref="alice.opts", **bad)


def test_failed_runs_are_returned_not_raised(server, pipeline, project, tmp_path, monkeypatch):
    alice = server.client("alice")
    alice.create_branch("alice.fail", from_ref=pipeline)
    head = alice.get_branch("alice.fail")

    # A project that does not plan: no job, the error with file and line.
    broken = variant(project, tmp_path / "broken", "def paid_trips(", "def paid_trips(:")
    state = alice.run(broken, ref="alice.fail")
    assert (state.job_id, state.job_status) == (None, "FAILED")
    # Its files are named under the folder as it was given, never the server's upload folder.
    assert state.error.startswith(f"{broken}/models.py:") and "syntax" in state.error, state.error
    monkeypatch.chdir(tmp_path)
    relative = alice.run("broken", ref="alice.fail")
    assert relative.error.startswith("broken/models.py:"), relative.error
    monkeypatch.chdir(broken)
    here = alice.run(ref="alice.fail")
    assert here.error.startswith("./models.py:"), here.error
    unknown = alice.run(project, ref="alice.fail", parameters={"nope": 1})
    assert unknown.job_status == "FAILED" and "unknown parameter 'nope'" in unknown.error
    bad = alice.run(project, ref="alice.fail", parameters={"min_fare": "lots"})
    assert bad.job_status == "FAILED" and "'lots'" in bad.error

    # A model that fails as it runs: a failed job, the branch as it was.
    boom = variant(project, tmp_path / "boom", "    kept = ", "    raise ValueError('boom')\n    kept = ")
    failed = alice.run(boom, ref="alice.fail")
    assert failed.job_status == "FAILED" and failed.job_id and "boom" in failed.error
    assert alice.get_job(failed.job_id).status == "FAIL"
    assert any("boom" in line for line in failed.user_logs)
    assert failed.result_commit is None and alice.has_branch(failed.tx_ref)  # kept for debugging
    assert alice.get_branch("alice.fail") == head


def test_secret_parameters_through_the_sdk(server, pipeline, project, tmp_path):
    """A secret sealed for the tenant (`lakeplan parameter set --type secret` in remote mode)
    reaches the model that declares it on an SDK run, is masked in the job, and cannot be
    overridden; another tenant's key cannot open it."""
    secret = "sk-" + os.urandom(12).hex()
    keyed = variant(
        project, tmp_path / "keyed", "    kept = ",
        "    assert len(api_key) == 27 and api_key.startswith('sk-'), 'the secret did not arrive'\n    kept = ",
    )
    code = (keyed / "models.py").read_text()
    # paid_trips declares the secret too.
    code = code.replace("def paid_trips(", "def paid_trips(\n    api_key: Annotated[str, lakeplan.Parameter('api_key')],", 1)
    if "from typing import Annotated" not in code:
        code = "from typing import Annotated\n" + code
    (keyed / "models.py").write_text(code)

    def cli(user, *args):
        env = dict(server.env, LAKEPLAN_API_ENDPOINT=server.url, LAKEPLAN_API_KEY=server.keys[user])
        return subprocess.run([lakeplan_bin(), *args], env=env, capture_output=True, text=True)

    p = cli("alice", "parameter", "set", "api_key", secret, "--type", "secret", "-p", str(keyed))
    assert p.returncode == 0, p.stderr
    assert secret not in (keyed / "lakeplan_project.yml").read_text()

    alice = server.client("alice")
    alice.create_branch("alice.secret", from_ref=pipeline)
    state = alice.run(keyed, ref="alice.secret")
    assert state.job_status == "SUCCESS", state.error
    assert state.parameters["api_key"] == "<secret>"
    assert all(secret not in line for line in state.user_logs)

    refused = alice.run(keyed, ref="alice.secret", parameters={"api_key": "sk-other"})
    assert refused.job_status == "FAILED" and "'api_key' is a secret" in refused.error
    assert "sk-other" not in refused.error

    # Tenant globex cannot open acme's secret: the run fails naming the parameter.
    eve = server.client("eve")
    eve.create_branch("eve.secret", from_ref="main")
    for table, path in (("trips", JAN), ("zones", DATA / "zones.jsonl")):
        eve.create_table(table, str(path), branch="eve.secret")
        eve.import_data(table, str(path), branch="eve.secret")
    theirs = eve.run(keyed, ref="eve.secret")
    assert theirs.job_status == "FAILED" and "secret parameter 'api_key'" in theirs.error, theirs.error
    assert secret not in theirs.error


def test_declared_numpy_1_runs_and_a_worker_that_cannot_start_says_why(server, pipeline, project, tmp_path):
    alice = server.client("alice")
    alice.create_branch("alice.deps", from_ref=pipeline)
    head = alice.get_branch("alice.deps")

    # A function pinning numpy 1.x gets a pyarrow that imports with it (pyarrow 26 does not).
    pinned = variant(
        project,
        tmp_path / "pinned",
        '@lakeplan.python("3.11")\ndef paid_trips(',
        '@lakeplan.python("3.11", pip={"numpy": "1.26.4"})\ndef paid_trips(',
    )
    numpy1 = variant(
        pinned,
        tmp_path / "numpy1",
        "    kept = ",
        "    import numpy\n\n    assert numpy.__version__ == '1.26.4', numpy.__version__\n"
        "    assert int(pyarrow.__version__.split('.')[0]) < 26, pyarrow.__version__\n    kept = ",
    )
    state = alice.run(numpy1, ref="alice.deps", parameters={"min_fare": 10})
    assert (state.job_status, state.error) == ("SUCCESS", None), state.user_logs
    assert count(alice, "paid_trips", "alice.deps") == count(alice, "trips WHERE fare > 0 AND fare >= 10", "alice.deps")

    # A worker that dies at its start (a project file shadows pyarrow): the run's error is the
    # Python error, not only an exit code.
    alice.create_branch("alice.nostart", from_ref=pipeline)
    shadowed = variant(project, tmp_path / "shadowed", "    kept = ", "    kept = ")
    (shadowed / "pyarrow.py").write_text('"""Helpers, in a file named like the pyarrow package."""\n')
    failed = alice.run(shadowed, ref="alice.nostart")
    assert failed.job_status == "FAILED" and failed.job_id
    assert "the worker failed to start: AttributeError: module 'pyarrow' has no attribute" in failed.error, failed.error
    assert "without a result" not in failed.error
    assert any("Traceback (most recent call last)" in line for line in failed.user_logs)
    assert alice.get_branch("alice.deps") != head  # the first run published


def test_runs_the_server_refuses_raise(server, pipeline, project):
    alice, reader = server.client("alice"), server.client("reader")
    main = alice.get_branch("main")
    jobs = [j.id for j in alice.get_jobs()]
    for call in (
        lambda: alice.run(project, ref="main"),  # outside alice's zone
        lambda: alice.run(project, ref="bob.x"),
        lambda: alice.run(project),  # main, by default
        lambda: reader.run(project, ref="reader.x"),  # a read key
    ):
        with pytest.raises(exc.ForbiddenError) as e:
            call()
        assert e.value.status == 403
    with pytest.raises(exc.BranchNotFoundError):
        alice.run(project, ref="alice.nope")
    assert alice.get_branch("main") == main and [j.id for j in alice.get_jobs()] == jobs

    # Refused before anything is sent.
    with pytest.raises(ValueError, match="cache"):
        alice.run(project, ref=pipeline, cache="sometimes")
    with pytest.raises(ValueError, match="parameter name"):
        alice.run(project, ref=pipeline, parameters={"a=b": 1})
    with pytest.raises(TypeError, match="min_fare"):
        alice.run(project, ref=pipeline, parameters={"min_fare": [1]})
    with pytest.raises(NotADirectoryError):
        alice.run(project / "models.py", ref=pipeline)


def test_a_project_that_does_not_plan_says_its_file_and_line_as_data(server, pipeline, project, tmp_path):
    alice = server.client("alice")
    broken = tmp_path / "broken"
    shutil.copytree(project, broken)
    models = broken / "models.py"
    models.write_text(models.read_text() + "\ndef oops(:\n")
    line = models.read_text().count("\n")
    # Returned, not raised (Bauplan's RunState), with the place as data.
    state = alice.run(broken, ref=pipeline)
    assert (state.job_id, state.job_status) == (None, "FAILED")
    assert state.error_location == {"file": f"{broken}/models.py", "line": line}, state
    # The error's type is PlanError wherever it is raised from an answer.
    body = b'{"error": {"type": "PlanError", "message": "m", "context": {"file": "f.py", "line": 3}}}'
    e = exc.error_from_response(400, body)
    assert type(e) is exc.PlanError and isinstance(e, exc.BadRequestError)
    assert e.context == {"file": "f.py", "line": 3}


def test_detach_returns_at_once_and_timeouts_say_which_job(server, pipeline, slow_project):
    alice = server.client("alice")
    alice.create_branch("alice.bg", from_ref=pipeline)
    alice.create_branch("alice.late", from_ref=pipeline)
    t = time.monotonic()
    state = alice.run(slow_project, ref="alice.bg", parameters={"min_fare": 10}, detach=True)
    assert time.monotonic() - t < 3 and (state.job_status, state.error, state.user_logs) == ("RUNNING", None, [])
    assert state.ctx.detach and state.duration is None
    assert alice.get_job(state.job_id).status == "RUNNING"

    with pytest.raises(exc.JobTimeoutError) as e:
        alice.run(slow_project, ref="alice.late", client_timeout=0.5)
    assert isinstance(e.value, TimeoutError) and e.value.job_id in str(e.value)

    # Both jobs end by themselves and publish to their branches.
    for job_id, branch in ((state.job_id, "alice.bg"), (e.value.job_id, "alice.late")):
        job = wait_for(alice, job_id)
        assert job.status == "COMPLETE" and job.raw["result_commit"] == alice.get_branch(branch).hash
    assert count(alice, "paid_trips", "alice.bg") == count(alice, "trips WHERE fare >= 10", "alice.bg")


def test_the_project_zip(tmp_path, monkeypatch):
    d = tmp_path / "p"
    for name in ("models.py", "sql/a.sql", ".env", ".git/config", "__pycache__/m.pyc", "sql/__pycache__/x"):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(name)
    (d / "link.py").symlink_to(d / "models.py")
    import io
    import zipfile

    z = zipfile.ZipFile(io.BytesIO(client_module.zip_project(d)))
    assert z.namelist() == ["models.py", "sql/a.sql"]  # paths inside the project, '/' between
    assert z.read("sql/a.sql") == b"sql/a.sql"
    monkeypatch.setattr(client_module, "MAX_PROJECT_BYTES", 100)
    with pytest.raises(exc.PayloadTooLargeError, match="more than the 100"):
        client_module.zip_project(d)


def test_cancel_job_stops_the_run_on_its_worker_and_leaves_the_branch(project, tmp_path, env_cache):
    # The run executes on a data-plane worker: cancelling asks that worker to stop it; the job
    # ends ABORT, the target branch keeps its head, and the server keeps serving.
    users = [("acme", "carol", [], "write")]
    with serve(tmp_path / "server", env_cache, users) as s:
        carol = s.client("carol")
        carol.create_branch("carol.x", "main")
        for table, path in (("trips", JAN), ("zones", DATA / "zones.jsonl")):
            carol.create_table(table, str(path), branch="carol.x")
            carol.import_data(table, str(path), branch="carol.x")
        head = carol.get_branch("carol.x").hash
        slow = variant(project, tmp_path / "slow", "    kept = ", "    import time\n\n    time.sleep(600)\n    kept = ")
        state = carol.run(slow, ref="carol.x", detach=True)
        time.sleep(1)
        job = carol.cancel_job(state.job_id)
        assert job.status == "ABORT", job
        assert carol.get_job(state.job_id).status == "ABORT"
        assert carol.get_branch("carol.x").hash == head
        with pytest.raises(exc.BadRequest) as e:
            carol.cancel_job(state.job_id)
        assert "already ended" in e.value.message
        assert carol.info().user == "carol"  # the server is still up


# --------------------------------------------------------------------------- errors


def test_401_for_unknown_and_revoked_keys(server):
    bad = lakeplan.Client(api_key="lpk_not-a-key", endpoint=server.url)
    with pytest.raises(exc.UnauthorizedError) as e:
        bad.info()
    assert (e.value.status, e.value.code, e.value.type) == (401, 401, "Unauthorized")

    key = server.new_key("acme", "alice", "write")
    c = lakeplan.Client(api_key=key, endpoint=server.url)
    info = c.info()
    assert (info.tenant, info.user, info.scope, info.organization) == ("acme", "alice", "write", "acme")
    server.admin("key", "revoke", info.key_id, "--tenant", "acme")
    with pytest.raises(exc.Unauthorized):
        c.get_branch("main")
    assert server.client("alice").info().user == "alice"  # other keys still work


def test_403_outside_the_zone_and_for_read_keys(server):
    alice, reader = server.client("alice"), server.client("reader")
    for call in (
        lambda: alice.create_branch("dev", "main"),
        lambda: alice.create_branch("bob.dev", "main"),
        lambda: alice.delete_branch("main"),
        lambda: alice.import_data("trips", str(JAN), "main"),
        lambda: reader.create_branch("reader.dev", "main"),
        lambda: reader.create_namespace("x", "main"),
    ):
        with pytest.raises(exc.ForbiddenError) as e:
            call()
        assert e.value.status == 403 and e.value.type == "Forbidden"


def test_404_for_unknown_names_and_other_tenants(server):
    root, eve = server.client("root"), server.client("eve")
    with pytest.raises(exc.BranchNotFoundError) as e:
        root.get_branch("nope")
    assert isinstance(e.value, exc.NotFoundError) and e.value.status == 404
    with pytest.raises(exc.TableNotFoundError) as e:
        root.get_table("nope", "main")
    assert e.value.context == {"table": "default.nope", "ref": "main"}
    for call in (lambda: root.get_job("0123456789abcdef"), lambda: root.cancel_job("0123abcd")):
        with pytest.raises(exc.JobNotFoundError):
            call()
    with pytest.raises(exc.NotFoundError):
        root.get_job_logs("../../etc")
    # acme's runs, if any, are not globex's (globex's own, from other tests, are eve's).
    theirs = list(eve.get_jobs())
    assert all(j.user == "eve" for j in theirs), theirs
    assert not {j.id for j in theirs} & {j.id for j in root.get_jobs()}
    for job in root.get_jobs(limit=3):
        with pytest.raises(exc.JobNotFoundError):
            eve.get_job(job.id)

    # globex's secrets do not exist for acme: 404, never 403.
    eve.create_branch("secret", "main")
    eve.create_table("payroll", str(JAN), branch="secret")
    eve.create_table("salaries", str(JAN), branch="main")
    assert eve.has_table("payroll", "secret")
    assert not root.has_branch("secret")
    with pytest.raises(exc.BranchNotFoundError):
        root.get_branch("secret")
    with pytest.raises(exc.RefNotFoundError):
        root.get_table("payroll", "secret")
    with pytest.raises(exc.TableNotFoundError):
        root.get_table("salaries", "main")
    with pytest.raises(exc.NotFoundError):
        root.query("SELECT * FROM payroll", ref="secret")
    with pytest.raises(exc.RefNotFoundError):
        list(root.get_commits("secret"))
    assert "secret" not in [b.name for b in root.get_branches()]


def test_a_missing_branch_is_one_exception_from_every_method(server):
    """The condition, not the method, picks the class: a name that is no ref raises
    `BranchNotFoundError` (a `RefNotFoundError`) wherever it is named; only a request about a tag
    by its name says `TagNotFoundError`."""
    alice = server.client("alice")
    alice.create_branch("alice.mref", "main")
    alice.create_table("missing_ref_t", str(JAN), branch="alice.mref")
    calls = {
        "get_branch": lambda: alice.get_branch("alice.gone"),
        "delete_branch": lambda: alice.delete_branch("alice.gone"),
        "create_branch from it": lambda: alice.create_branch("alice.new", from_ref="alice.gone"),
        "create_tag from it": lambda: alice.create_tag("alice.t", from_ref="alice.gone"),
        "import_data": lambda: alice.import_data("missing_ref_t", str(JAN), branch="alice.gone"),
        "create_table": lambda: alice.create_table("t2", str(JAN), branch="alice.gone"),
        "merge_branch source": lambda: alice.merge_branch("alice.gone", "alice.mref"),
        "merge_branch into": lambda: alice.merge_branch("alice.mref", "alice.gone"),
        "query": lambda: alice.query("SELECT 1", ref="alice.gone"),
        "get_tables": lambda: list(alice.get_tables("alice.gone")),
        "get_table": lambda: alice.get_table("missing_ref_t", "alice.gone"),
        "get_commits": lambda: list(alice.get_commits("alice.gone")),
    }
    raised = {}
    for name, call in calls.items():
        try:
            call()
            raised[name] = None
        except exc.LakeplanHTTPError as e:
            raised[name] = type(e).__name__
    assert raised == {name: "BranchNotFoundError" for name in calls}, str(raised)
    with pytest.raises(exc.TagNotFoundError):
        alice.get_tag("alice.gone")
    with pytest.raises(exc.TagNotFoundError):
        alice.delete_tag("alice.gone")


def test_400_for_bad_names_and_sql(server):
    alice = server.client("alice")
    with pytest.raises(exc.InvalidRefError) as e:
        alice.create_branch("alice.bad..name", "main")
    assert (e.value.status, e.value.type) == (400, "InvalidRef") and isinstance(e.value, exc.BadRequestError)
    with pytest.raises(exc.InvalidRef):
        list(alice.get_tables("bad..ref"))
    with pytest.raises(exc.SqlError) as e:
        alice.query("SELEC 1")
    assert e.value.status == 400 and e.value.type == "Sql"
    with pytest.raises(exc.SqlError):
        alice.query("SELECT * FROM '/etc/passwd'")


def test_the_error_table():
    """Types pick the class; the status decides when the type is unknown or disagrees."""
    f = exc.error_from_response

    def body(t):
        return ('{"error": {"type": "%s", "message": "m", "context": {"tables": ["t"]}}}' % t).encode()

    assert type(f(409, body("Conflict"))) is exc.BranchHeadChangedError
    assert f(409, body("Conflict")).context == {"tables": ["t"]}
    assert type(f(404, body("RefNotFound"))) is exc.BranchNotFoundError
    assert type(f(404, body("CommitNotFound"))) is exc.RefNotFoundError
    assert type(f(404, body("RefNotFound"), "tag")) is exc.TagNotFoundError
    assert type(f(409, body("RefExists"), "branch")) is exc.BranchExistsError
    assert type(f(413, body("PayloadTooLarge"))) is exc.PayloadTooLargeError
    assert type(f(500, body("Metastore"))) is exc.InternalError
    assert type(f(409, body("SomethingNew"))) is exc.ConflictError
    assert type(f(404, body("Sql"))) is exc.NotFoundError  # status wins over a mismatched type
    assert type(f(503, b"<html>down</html>")) is exc.ServiceUnavailableError
    assert type(f(599, b"")) is exc.ServerError and isinstance(f(599, b""), exc.LakeplanHTTPError)
    assert f(503, b"<html>down</html>").message == "<html>down</html>"


def test_unreachable_server_and_unavailable_methods(server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    c = lakeplan.Client(api_key="lpk_x", endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(exc.LakeplanConnectionError) as e:
        c.info()
    assert f"127.0.0.1:{port}" in str(e.value)
    with pytest.raises(ValueError):
        lakeplan.Client(api_key="lpk_x", endpoint=server.url, query_transport="grpc")


# --------------------------------------------------------------------------- configuration


CONFIG = """\
# lakeplan profiles
profiles:
  default:
    api_key: {alice}
    api_endpoint: {url}
  ro:
    api_key: "{reader}"   # quoted
    api_endpoint: '{url}'
"""


@pytest.fixture
def home(server, tmp_path, monkeypatch):
    for var in ("LAKEPLAN_API_KEY", "LAKEPLAN_API_ENDPOINT", "LAKEPLAN_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".lakeplan").mkdir()
    text = CONFIG.format(alice=server.keys["alice"], reader=server.keys["reader"], url=server.url)
    (tmp_path / ".lakeplan" / "config.yaml").write_text(text)
    return tmp_path


def test_profiles_and_environment(server, home, monkeypatch):
    assert lakeplan.Client().info().user == "alice"  # profile default
    assert lakeplan.Client(profile="ro").info().user == "reader"
    monkeypatch.setenv("LAKEPLAN_PROFILE", "ro")
    assert lakeplan.Client().info().user == "reader"
    monkeypatch.setenv("LAKEPLAN_API_KEY", server.keys["bob"])  # the environment beats profiles...
    assert lakeplan.Client().info().user == "bob"
    assert lakeplan.Client(profile="default").info().user == "alice"  # ...but not a named one
    assert lakeplan.Client(api_key=server.keys["root"]).info().user == "root"  # arguments beat all
    monkeypatch.setenv("LAKEPLAN_API_ENDPOINT", "http://127.0.0.1:9")
    assert lakeplan.Client().endpoint == "http://127.0.0.1:9"
    assert lakeplan.Client(endpoint=server.url + "/").endpoint == server.url

    with pytest.raises(exc.ConfigurationError, match="profile 'nope'"):
        lakeplan.Client(profile="nope")
    monkeypatch.delenv("LAKEPLAN_API_KEY")
    monkeypatch.delenv("LAKEPLAN_PROFILE")
    (home / ".lakeplan" / "config.yaml").unlink()
    with pytest.raises(exc.ConfigurationError, match="LAKEPLAN_API_KEY"):
        lakeplan.Client()
    monkeypatch.setenv("LAKEPLAN_API_KEY", server.keys["bob"])
    monkeypatch.delenv("LAKEPLAN_API_ENDPOINT")
    assert lakeplan.Client().endpoint == client_module.DEFAULT_ENDPOINT


def test_profiles_without_pyyaml(server, home, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` now fails
    assert lakeplan.Client(profile="ro").info().user == "reader"
    (home / ".lakeplan" / "config.yaml").write_text("profiles:\n  - not a mapping\n")
    with pytest.raises(exc.ConfigurationError):
        lakeplan.Client()


def test_the_builtin_yaml_reader_reads_profiles_as_pyyaml_does():
    text = CONFIG.format(alice="lpk_a", reader="lpk_r", url="http://h:1") + "other:\n  x: 1 # c\n"
    want = {
        "profiles": {
            "default": {"api_key": "lpk_a", "api_endpoint": "http://h:1"},
            "ro": {"api_key": "lpk_r", "api_endpoint": "http://h:1"},
        },
        "other": {"x": "1"},
    }
    assert client_module.parse_simple_yaml(text) == want
    yaml = pytest.importorskip("yaml")
    parsed = yaml.safe_load(text)
    parsed["other"]["x"] = str(parsed["other"]["x"])
    assert parsed == want
    with pytest.raises(exc.ConfigurationError, match="line 2"):
        client_module.parse_simple_yaml("profiles:\n  just words\n")


# --------------------------------------------------------------------------- packaging


def test_bauplan_names_are_the_same_objects():
    import bauplan.exceptions as bex
    import bauplan.schema as bschema
    import bauplan.state as bstate

    assert bauplan.Client is lakeplan.Client
    assert bex.BauplanError is exc.LakeplanError and bex.BauplanHTTPError is exc.LakeplanHTTPError
    assert bex.MergeConflictError is exc.MergeConflict and bex.BranchNotFoundError is exc.BranchNotFound
    assert bschema.Branch is lakeplan.records.Branch
    assert bstate.RunState is lakeplan.records.RunState and bex.JobTimeoutError is exc.JobTimeoutError
    assert bauplan.state is bstate


def test_importing_lakeplan_does_not_load_the_client():
    code = textwrap.dedent(
        """
        import sys, lakeplan, bauplan
        client_modules = ('lakeplan.client', 'lakeplan.exceptions', 'lakeplan.records', 'urllib.request')
        print(sorted(m for m in client_modules if m in sys.modules))
        lakeplan.Client
        print(sorted(m for m in client_modules if m in sys.modules))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    before, after = out.stdout.strip().splitlines()
    assert before == "[]"
    assert after == "['lakeplan.client', 'lakeplan.exceptions', 'lakeplan.records', 'urllib.request']"


def test_a_sandbox_copy_without_the_client_says_so(tmp_path):
    """Sandboxes get only the authoring files (crates/lake/src/pysrc.rs): `lakeplan.Client`
    there is a clear AttributeError, not an import crash."""
    pkg = tmp_path / "lakeplan"
    pkg.mkdir()
    for f in PYTHON_DIR.joinpath("lakeplan").glob("*.py"):
        if f.name not in ("client.py", "exceptions.py", "records.py"):
            (pkg / f.name).write_text(f.read_text())
    code = "import lakeplan\ntry:\n    lakeplan.Client\nexcept AttributeError as e:\n    print(e)\n"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "not available in this copy" in out.stdout
