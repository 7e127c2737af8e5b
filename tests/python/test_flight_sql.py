"""Arrow Flight SQL on `lakeplan serve`'s port, driven by the ADBC Flight SQL driver (the
`adbc-driver-flightsql` wheel: the Go driver BI tools use through ADBC), and by pyarrow's
Flight client to check where the rows come from.

The server is `test_client.py`'s (acme: alice, bob, root, reader; globex: eve).
"""

import pyarrow.flight as flight
import pytest
import adbc_driver_flightsql.dbapi as fsql
from adbc_driver_manager import DatabaseError, ProgrammingError

from test_client import JAN, csv_rows, serve

REF_OPTION = "adbc.flight.sql.rpc.call_header.x-lakeplan-ref"
AUTH = "adbc.flight.sql.authorization_header"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("flight-sql-server"), str(tmp_path_factory.mktemp("envs"))) as s:
        alice = s.client("alice")
        alice.create_branch("alice.sql", "main")
        alice.create_table("trips", str(JAN), branch="alice.sql")
        alice.import_data("trips", str(JAN), branch="alice.sql")
        yield s


def grpc(server) -> str:
    return server.url.replace("http://", "grpc://")


def connect(server, user="reader", ref="alice.sql", **extra):
    kw = {AUTH: f"Bearer {server.keys[user]}"}
    if ref is not None:
        kw[REF_OPTION] = ref
    kw.update(extra)
    return fsql.connect(grpc(server), db_kwargs=kw, autocommit=True)


def rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def test_adbc_queries_at_the_ref_of_the_call_header(server):
    lp = server.client("reader")
    sql = "SELECT vendor, count(*) AS n, round(sum(fare), 2) AS fares FROM trips GROUP BY vendor ORDER BY vendor"
    with connect(server) as conn:
        got = rows(conn, sql)
        assert got.equals(lp.query(sql, ref="alice.sql"))
        whole = rows(conn, "SELECT * FROM trips ORDER BY trip_id")
        assert whole.num_rows == csv_rows(JAN).num_rows
        assert whole.column_names == csv_rows(JAN).column_names
        # Other refs by name, inside the SQL.
        head = lp.get_branch("alice.sql").hash
        n = rows(conn, f'SELECT count(*) AS n FROM "alice.sql@{head[:12]}".default.trips')
        assert n["n"].to_pylist() == [csv_rows(JAN).num_rows]
        # A prepared statement (planned when prepared: no parameters), then its rows.
        with conn.cursor() as cur:
            params = cur.adbc_prepare("SELECT trip_id, fare FROM trips WHERE fare > 20")
            assert params is None or len(params) == 0
            with pytest.raises(ProgrammingError, match="No field named nope"):
                cur.adbc_prepare("SELECT nope FROM trips")
            cur.execute("SELECT trip_id, fare FROM trips WHERE fare > 20")
            assert cur.fetch_arrow_table().num_rows == lp.query("SELECT count(*) AS n FROM trips WHERE fare > 20", ref="alice.sql")["n"][0].as_py()
    # Without the header, statements read main, where trips does not exist.
    with connect(server, ref=None) as conn:
        assert rows(conn, "SELECT 1 AS one")["one"].to_pylist() == [1]
        with pytest.raises(ProgrammingError, match="not found"):
            rows(conn, "SELECT * FROM trips")


def test_basic_auth_with_the_key_as_password(server):
    conn = fsql.connect(grpc(server), db_kwargs={"username": "reader", "password": server.keys["reader"], REF_OPTION: "alice.sql"}, autocommit=True)
    with conn:
        assert rows(conn, "SELECT count(*) AS n FROM trips")["n"].to_pylist() == [csv_rows(JAN).num_rows]
    with pytest.raises(DatabaseError, match="(?i)unauthenticated"):
        fsql.connect(grpc(server), db_kwargs={"username": "reader", "password": "lpk_wrong"}, autocommit=True)


def test_keys_tenants_and_read_only_sql(server):
    # No key, a wrong key: UNAUTHENTICATED.
    for kw in ({}, {AUTH: "Bearer lpk_wrong"}):
        with fsql.connect(grpc(server), db_kwargs=kw, autocommit=True) as conn:
            with pytest.raises(DatabaseError, match="(?i)unauthenticated"):
                rows(conn, "SELECT 1")
    # Another tenant's branch does not exist for eve.
    with connect(server, user="eve") as conn:
        with pytest.raises(DatabaseError, match="not found"):
            rows(conn, "SELECT count(*) FROM trips")
    # SQL cannot write, nor read the server's files.
    with connect(server, user="root") as conn:
        for sql in ("INSERT INTO trips SELECT * FROM trips", "CREATE TABLE x AS SELECT 1", "SELECT * FROM '/etc/passwd'"):
            with pytest.raises(DatabaseError):
                rows(conn, sql)
    assert server.client("reader").query("SELECT count(*) AS n FROM trips", ref="alice.sql")["n"][0].as_py() == csv_rows(JAN).num_rows


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2]) + _varint(len(payload)) + payload


def statement_command(sql: str) -> bytes:
    """A Flight SQL CommandStatementQuery wrapped in google.protobuf.Any, encoded by hand."""
    cmd = _field(1, sql.encode())
    return _field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + _field(2, cmd)


def test_the_rows_come_from_a_worker_not_the_control_plane(server):
    key = server.keys["reader"]
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {key}".encode()), (b"x-lakeplan-ref", b"alice.sql")])
    control = flight.FlightClient(grpc(server).replace("grpc://", "grpc+tcp://"))
    info = control.get_flight_info(flight.FlightDescriptor.for_command(statement_command("SELECT trip_id FROM trips")), options)
    assert info.schema.names == ["trip_id"]
    [endpoint] = info.endpoints
    [location] = endpoint.locations
    worker = location.uri.decode()
    assert worker.startswith("grpc+tcp://127.0.0.1:") and not worker.endswith(server.url.rsplit(":", 1)[1])
    # The ticket is good only with the key that asked for it.
    with pytest.raises(flight.FlightUnauthenticatedError):
        flight.FlightClient(worker).do_get(endpoint.ticket).read_all()
    got = flight.FlightClient(worker).do_get(endpoint.ticket, options).read_all()
    assert got.num_rows == csv_rows(JAN).num_rows
    # The ticket is single-use; the control plane serves no rows itself.
    with pytest.raises(Exception, match="spent or expired"):
        flight.FlightClient(worker).do_get(endpoint.ticket, options).read_all()
    with pytest.raises(Exception, match="invalid argument"):  # not a Flight SQL ticket there
        control.do_get(endpoint.ticket, options).read_all()
    control.close()


def test_bi_tools_can_browse_refs_namespaces_and_tables(server):
    with connect(server) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        by_catalog = {o["catalog_name"]: o for o in objects}
        # `lake` is the connection's ref (alice.sql); each branch and tag is a catalog too.
        assert {"lake", "main", "alice.sql"} <= set(by_catalog)
        [schema] = [s for s in by_catalog["lake"]["catalog_db_schemas"] if s["db_schema_name"] == "default"]
        [table] = schema["db_schema_tables"]
        assert (table["table_name"], table["table_type"]) == ("trips", "TABLE")
        assert [c["column_name"] for c in table["table_columns"]][:3] == ["trip_id", "vendor", "pickup_at"]
        main_tables = [t for s in by_catalog["main"]["catalog_db_schemas"] for t in (s["db_schema_tables"] or [])]
        assert main_tables == [], "trips exists only on alice.sql"
        assert conn.adbc_get_table_types() == ["TABLE"]
        schema = conn.adbc_get_table_schema("trips", db_schema_filter="default", catalog_filter="alice.sql")
        assert schema.names == csv_rows(JAN).column_names
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "lakeplan"


@pytest.mark.parametrize("cookies", [True, False], ids=["cookies", "no-cookies"])
def test_use_ref_sets_the_sessions_ref(server, cookies):
    """With cookies (the client's middleware keeps the one USE REF sets) or without (the server
    keeps the ref for the connection and the key)."""
    kw = {AUTH: f"Bearer {server.keys['reader']}"}
    if cookies:
        kw["adbc.flight.sql.rpc.with_cookie_middleware"] = "true"
    with fsql.connect(grpc(server), db_kwargs=kw, autocommit=True) as conn:
        with pytest.raises(ProgrammingError, match="not found"):
            rows(conn, "SELECT count(*) AS n FROM trips")  # main has no trips
        assert rows(conn, "USE REF 'alice.sql'")["ref"].to_pylist() == ["alice.sql"]
        assert rows(conn, "SELECT count(*) AS n FROM trips")["n"].to_pylist() == [csv_rows(JAN).num_rows]
        with pytest.raises(DatabaseError, match="not found"):
            rows(conn, "USE REF 'nope'")
        # A failed USE REF leaves the session where it was; so do other tenants' refs.
        assert rows(conn, "SELECT count(*) AS n FROM trips")["n"].to_pylist() == [csv_rows(JAN).num_rows]
        # Another connection has a session of its own.
        with fsql.connect(grpc(server), db_kwargs=kw, autocommit=True) as other:
            with pytest.raises(ProgrammingError, match="not found"):
                rows(other, "SELECT count(*) AS n FROM trips")
        assert rows(conn, "USE REF main")["ref"].to_pylist() == ["main"]
        with pytest.raises(ProgrammingError, match="not found"):
            rows(conn, "SELECT count(*) AS n FROM trips")



def test_unquoted_names_match_ignoring_case_quoted_names_exactly(server, tmp_path):
    # Bauplan SQL names: PULocationID and bauplan.amountStatsTable unquoted find the column
    # and table so spelled; quoted names are exact; `zone` matches both zone and Zone.
    csv = tmp_path / "stats.csv"
    csv.write_text("PULocationID,Fare_Amount,zone,Zone\n1,10.5,1,10\n2,20.0,2,20\n")
    alice = server.client("alice")
    alice.create_branch("alice.names", "main")
    alice.create_namespace("bauplan", "alice.names")
    alice.create_table("amountStatsTable", str(csv), branch="alice.names", namespace="bauplan")
    alice.import_data("amountStatsTable", str(csv), branch="alice.names", namespace="bauplan")
    with connect(server, ref="alice.names") as conn:
        got = rows(conn, "SELECT PULocationID, fare_amount FROM bauplan.amountstatstable ORDER BY pulocationid")
        assert got.column_names == ["PULocationID", "Fare_Amount"]
        assert got.to_pylist() == [{"PULocationID": 1, "Fare_Amount": 10.5}, {"PULocationID": 2, "Fare_Amount": 20.0}]
        with pytest.raises(ProgrammingError, match="No field named pulocationid"):
            rows(conn, 'SELECT "pulocationid" FROM bauplan.amountStatsTable')
        with pytest.raises(ProgrammingError, match='column name zone is ambiguous.*"Zone", "zone"'):
            rows(conn, "SELECT zone FROM bauplan.amountStatsTable")
        assert rows(conn, 'SELECT "Zone" FROM bauplan.amountStatsTable ORDER BY "Zone"')["Zone"].to_pylist() == [10, 20]
