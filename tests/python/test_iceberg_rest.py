"""The Iceberg REST catalog of `lakeplan serve` (`/iceberg/v1/{ref}/...`), driven by pyiceberg,
the reference Python client, and checked through lakeplan's own API (`lakeplan.Client`).

The server is the one `test_client.py` starts (acme: alice writes `alice.*`, bob may merge into
main, reader reads; globex: eve). Each test works on branches of its own.
"""

import json
import urllib.error
import urllib.request

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import (
    BadRequestError,
    ForbiddenError,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

from test_client import FEB, JAN, csv_rows, exc, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("iceberg-server"), str(tmp_path_factory.mktemp("envs"))) as s:
        yield s


def catalog(server, user: str, ref: str, **extra):
    """pyiceberg's REST catalog of `ref`, with `user`'s key."""
    props = {"type": "rest", "uri": server.url + "/iceberg", "token": server.keys[user], "warehouse": ref}
    props.update(extra)
    return load_catalog(f"lakeplan-{user}-{ref}", **props)


def raw(server, method: str, path: str, key=None, body=None):
    """(status, JSON body) of one request to the server."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method)
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


@pytest.fixture(scope="module")
def trips(server):
    """alice's branch `alice.ice` with trips (January), tagged `ice-v1` by root."""
    alice = server.client("alice")
    alice.create_branch("alice.ice", "main")
    alice.create_table("trips", str(JAN), branch="alice.ice")
    alice.import_data("trips", str(JAN), branch="alice.ice")
    server.client("root").create_tag("ice-v1", "alice.ice")
    return "alice.ice"


def count(client, ref: str, table: str = "trips") -> int:
    return client.query(f"SELECT count(*) AS n FROM {table}", ref=ref)["n"][0].as_py()


def test_load_and_scan_a_table_at_a_branch(server, trips):
    cat = catalog(server, "reader", trips)
    assert cat.list_namespaces() == [("default",)]
    assert cat.list_tables("default") == [("default", "trips")]
    assert cat.namespace_exists("default") and not cat.namespace_exists("nope")
    assert cat.table_exists("default.trips") and not cat.table_exists("default.nope")
    t = cat.load_table("default.trips")
    assert [f.name for f in t.schema().fields][:3] == ["trip_id", "vendor", "pickup_at"]
    scanned = t.scan().to_arrow()
    expected = csv_rows(JAN)
    assert scanned.num_rows == expected.num_rows
    assert sorted(scanned["trip_id"].to_pylist()) == sorted(expected["trip_id"].to_pylist())
    # Projection and a filter, evaluated by pyiceberg over the same files.
    cheap = t.scan(row_filter="fare < 10", selected_fields=("trip_id", "fare")).to_arrow()
    assert cheap.column_names == ["trip_id", "fare"]
    assert cheap.num_rows == pc.sum(pc.less(expected["fare"], 10)).as_py()
    # The same table at the tag, and at a commit.
    head = server.client("reader").get_branch(trips).hash
    for ref in ("ice-v1", f"{trips}@{head[:12]}"):
        assert catalog(server, "reader", ref).load_table("default.trips").scan().to_arrow().num_rows == expected.num_rows


def test_an_append_through_pyiceberg_is_a_lakeplan_commit_on_that_branch(server, trips):
    alice, bob = server.client("alice"), server.client("bob")
    alice.create_branch("alice.append", trips)
    before = alice.get_branch("alice.append").hash
    t = catalog(server, "alice", "alice.append").load_table("default.trips")
    feb = csv_rows(FEB).select([f.name for f in t.schema().fields if f.name in csv_rows(FEB).column_names])
    rows = t.scan().to_arrow()
    t.append(rows.slice(0, 25))
    log = list(alice.get_commits("alice.append", limit=2))
    assert log[1].hash == before, "one new commit, on top of the branch's head"
    assert log[0].subject == "Commit default.trips through the Iceberg REST catalog"
    assert log[0].author.name == "alice" and log[0].properties["lakeplan.operation"] == "iceberg.commit"
    assert count(alice, "alice.append") == rows.num_rows + 25
    assert catalog(server, "reader", "alice.append").load_table("default.trips").scan().to_arrow().num_rows == rows.num_rows + 25
    # Absent on the branch it came from, and on main, until a merge.
    assert count(alice, trips) == rows.num_rows
    assert not alice.has_table("trips", "main")
    bob.merge_branch("alice.append", "main")
    assert count(bob, "main") == rows.num_rows + 25
    assert feb.num_rows > 0
    # The audit log names the operation and the user.
    audit = server.client("root")._json("GET", "/api/v1/audit", params=[("limit", 20)])
    assert any(a["operation"] == "iceberg.commit" and a["actor"] == "alice" and a["result"] == "ok" for a in audit)


def test_a_stale_snapshot_is_refused_with_409_and_pyiceberg_retries_it(server, trips, caplog):
    alice = server.client("alice")
    alice.create_branch("alice.race", trips)
    cat = catalog(server, "alice", "alice.race")
    first, second = cat.load_table("default.trips"), cat.load_table("default.trips")
    rows = first.scan().to_arrow().slice(0, 5)
    first.append(rows)
    head = alice.get_branch("alice.race").hash
    # `second` still asserts the snapshot it loaded: the server answers CommitFailedException
    # (409), and pyiceberg, as the spec intends, reloads the table and retries on top of it.
    with caplog.at_level("WARNING", logger="pyiceberg"):
        second.append(rows)
    assert "Commit failed due to a concurrent update" in caplog.text
    log = list(alice.get_commits("alice.race", limit=2))
    assert log[1].hash == head, "the retry is one more commit on top: no write is lost"
    assert count(alice, "alice.race") == csv_rows(JAN).num_rows + 10


def test_create_evolve_rename_and_drop_through_pyiceberg(server, trips):
    alice = server.client("alice")
    alice.create_branch("alice.new", trips)
    cat = catalog(server, "alice", "alice.new")
    cat.create_namespace("sales")
    with pytest.raises(NamespaceAlreadyExistsError):
        cat.create_namespace("sales")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "item", StringType(), required=False),
        NestedField(3, "price", DoubleType(), required=False),
    )
    t = cat.create_table("sales.orders", schema=schema)
    with pytest.raises(TableAlreadyExistsError):
        cat.create_table("sales.orders", schema=schema)
    t.append(pa.table({"id": [1, 2, 3], "item": ["a", "b", "c"], "price": [1.5, 2.5, 3.5]}))
    got = alice.query("SELECT sum(price) AS s FROM sales.orders", ref="alice.new")
    assert got["s"][0].as_py() == 7.5
    # Schema evolution through pyiceberg: a new column, seen by lakeplan's SQL.
    with t.update_schema() as u:
        u.add_column("qty", LongType())
    t.append(pa.table({"id": [4], "item": ["d"], "price": [4.5], "qty": [2]}))
    got = alice.query("SELECT id, qty FROM sales.orders ORDER BY id", ref="alice.new")
    assert got["qty"].to_pylist() == [None, None, None, 2]
    assert alice.get_table("orders", "alice.new", namespace="sales").records == 4

    cat.rename_table("sales.orders", "sales.purchases")
    assert cat.list_tables("sales") == [("sales", "purchases")]
    with pytest.raises(NoSuchTableError):
        cat.load_table("sales.orders")
    cat.drop_table("sales.purchases")
    assert cat.list_tables("sales") == []
    cat.drop_namespace("sales")
    with pytest.raises(NoSuchNamespaceError):
        cat.list_tables("sales")
    # Every step was a commit on alice.new; the branch it came from is as it was.
    ops = [c.properties["lakeplan.operation"] for c in alice.get_commits("alice.new", limit=9)]
    assert ops[:3] == ["namespace.delete", "table.delete", "iceberg.rename_table"]
    assert "iceberg.create_table" in ops
    assert not alice.has_namespace("sales", trips)


def test_refs_rights_and_bad_input(server, trips):
    alice = server.client("alice")
    # A tag (or a commit) is read-only: a clear 400, nothing written.
    tag_head = server.client("reader").get_tag("ice-v1").hash
    t = catalog(server, "root", "ice-v1").load_table("default.trips")  # an admin key: no zone
    with pytest.raises(BadRequestError, match="not a branch"):
        t.append(t.scan().to_arrow().slice(0, 1))
    head = server.client("reader").get_branch(trips).hash
    t = catalog(server, "root", f"{trips}@{head}").load_table("default.trips")
    with pytest.raises(BadRequestError, match="not a branch"):
        t.append(t.scan().to_arrow().slice(0, 1))
    assert server.client("reader").get_tag("ice-v1").hash == tag_head
    # Outside the key's zone, or with a read key: 403.
    server.client("bob").create_branch("bob.ice", trips)
    t = catalog(server, "alice", "bob.ice").load_table("default.trips")
    with pytest.raises(ForbiddenError, match="zone"):
        t.append(t.scan().to_arrow().slice(0, 1))
    t = catalog(server, "reader", trips).load_table("default.trips")
    with pytest.raises(ForbiddenError, match="read-only"):
        t.append(t.scan().to_arrow().slice(0, 1))
    # An unknown ref fails when the catalog is made; unknown tables are NoSuchTableError.
    with pytest.raises(Exception, match="not found"):
        catalog(server, "alice", "alice.nope")
    with pytest.raises(NoSuchTableError):
        catalog(server, "alice", trips).load_table("default.nope")
    # Another tenant's refs do not exist.
    with pytest.raises(Exception, match="not found"):
        catalog(server, "eve", trips)

    key = server.keys["alice"]
    base = f"/iceberg/v1/{trips}/namespaces/default/tables/trips"
    # No key, a bad key: 401 in the spec's shape.
    for k in (None, "lpk_wrong"):
        status, body = raw(server, "GET", base, key=k)
        assert status == 401 and body["error"]["type"] == "NotAuthorizedException" and body["error"]["code"] == 401
    # Malformed requirements and updates: 400, nothing written.
    head = alice.get_branch(trips).hash
    for bad in (
        {"requirements": [{"type": "assert-nonsense"}], "updates": []},
        {"requirements": [], "updates": [{"action": "add-snapshot"}]},
        {"requirements": "no", "updates": []},
    ):
        status, body = raw(server, "POST", base, key=key, body=bad)
        assert status == 400 and body["error"]["type"] == "BadRequestException", body
    # A stale snapshot id: 409 CommitFailedException.
    stale = {"requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1}], "updates": []}
    status, body = raw(server, "POST", base, key=key, body=stale)
    assert status == 409 and body["error"]["type"] == "CommitFailedException", body
    assert alice.get_branch(trips).hash == head
    # What lakeplan does not do: the spec's 406.
    for method, path in (("GET", f"/iceberg/v1/{trips}/namespaces/default/views"),
                         ("POST", f"/iceberg/v1/{trips}/namespaces/default/properties")):
        status, body = raw(server, method, path, key=key, body={} if method == "POST" else None)
        assert status == 406 and body["error"]["type"] == "UnsupportedOperationException", body
    status, body = raw(server, "POST", f"/iceberg/v1/{trips}/namespaces", key=key, body={"namespace": ["a", "b"]})
    assert status == 400 and "one level" in body["error"]["message"]
    assert alice.get_branch(trips).hash == head


def test_a_multi_table_transaction_is_one_commit_or_nothing(server, trips):
    alice = server.client("alice")
    alice.create_branch("alice.tx", trips)
    alice.create_table("zones", str(JAN.parent / "zones.jsonl"), branch="alice.tx")
    cat = catalog(server, "alice", "alice.tx")
    uuids = {t: str(cat.load_table(f"default.{t}").metadata.table_uuid) for t in ("trips", "zones")}
    key, head = server.keys["alice"], alice.get_branch("alice.tx").hash

    def change(table, uuid, value):
        return {
            "identifier": {"namespace": ["default"], "name": table},
            "requirements": [{"type": "assert-table-uuid", "uuid": uuid}],
            "updates": [{"action": "set-properties", "updates": {"owner": value}}],
        }

    # One table's requirement fails: neither table changes.
    bad = {"table-changes": [change("trips", uuids["trips"], "x"), change("zones", "00000000-0000-0000-0000-000000000000", "x")]}
    status, body = raw(server, "POST", "/iceberg/v1/alice.tx/transactions/commit", key=key, body=bad)
    assert status == 409 and body["error"]["type"] == "CommitFailedException", body
    assert alice.get_branch("alice.tx").hash == head
    good = {"table-changes": [change("trips", uuids["trips"], "ops"), change("zones", uuids["zones"], "ops")]}
    status, _ = raw(server, "POST", "/iceberg/v1/alice.tx/transactions/commit", key=key, body=good)
    assert status == 204
    log = list(alice.get_commits("alice.tx", limit=2))
    assert log[1].hash == head and "2 tables" in log[0].subject
    cat = catalog(server, "alice", "alice.tx")
    assert all(cat.load_table(f"default.{t}").properties["owner"] == "ops" for t in ("trips", "zones"))


def test_the_lakeplan_client_and_pyiceberg_see_one_history(server, trips):
    # A lakeplan import after a pyiceberg append: both snapshots are in the table's history.
    alice = server.client("alice")
    alice.create_branch("alice.mixed", trips)
    cat = catalog(server, "alice", "alice.mixed")
    t = cat.load_table("default.trips")
    t.append(t.scan().to_arrow().slice(0, 3))
    alice.import_data("trips", str(JAN), branch="alice.mixed", import_duplicate_files=True)
    t = cat.load_table("default.trips")
    assert len(t.metadata.snapshots) >= 3
    assert t.scan().to_arrow().num_rows == 2 * csv_rows(JAN).num_rows + 3 == count(alice, "alice.mixed")
    with pytest.raises(exc.NotFoundError):
        alice.get_table("nope", "alice.mixed")
