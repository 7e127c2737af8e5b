"""The MCP server, driven by the `mcp` Python SDK's client: `lakeplan mcp` over stdio on a local
lake and bridged to a server (remote mode), and the server's `/mcp` over streamable HTTP with
keys, including an agent's key that writes only `agent.*`.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import DATA, lakeplan_bin
from test_client import JAN, csv_rows, env_cache, serve  # noqa: F401 (env_cache: a fixture)

FEB = DATA / "trips_2024_02.csv"
TOOLS = {
    "list_branches", "list_tags", "list_namespaces", "list_tables", "get_table", "list_commits",
    "diff_refs", "query", "create_branch", "import_data", "run_pipeline", "merge_branch",
}
# A pipeline of one SQL model (no Python environment to build).
PROJECT = {
    "lakeplan_project.yml": "project:\n  name: agent_demo\n",
    "vendor_counts.sql": "-- lakeplan: materialization_strategy=REPLACE\n"
    "SELECT vendor, count(*) AS trips FROM trips GROUP BY vendor ORDER BY vendor\n",
}


def run(coro):
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def stdio_session(env):
    params = StdioServerParameters(command=lakeplan_bin(), args=["mcp"], env=env)
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            yield s


@contextlib.asynccontextmanager
async def http_session(url, key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url + "/mcp", http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as s:
                await s.initialize()
                yield s


async def call(s, tool, **args):
    res = await s.call_tool(tool, args)
    return res.is_error, (res.structured_content if not res.is_error else res.content[0].text)


def ok(pair):
    is_error, value = pair
    assert not is_error, value
    return value


def refused(pair, says):
    is_error, value = pair
    assert is_error, value
    assert says in value, value
    return value


@pytest.fixture
def local_env(tmp_path, env_cache):
    lake = tmp_path / "lake"
    env = dict(os.environ, LAKEPLAN_LAKE=str(lake), LAKEPLAN_USER="agent-tester", LAKEPLAN_ENV_CACHE=env_cache)
    for args in (["table", "create", "trips", "--search-uri", str(JAN)], ["table", "import", "trips", "--search-uri", str(JAN)]):
        subprocess.run([lakeplan_bin(), *args], env=env, check=True, capture_output=True)
    return env


def audit(env):
    p = subprocess.run([lakeplan_bin(), "-O", "json", "audit", "-n", "200"], env=env, capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def test_stdio_on_a_local_lake(local_env):
    async def session():
        async with stdio_session(local_env) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) == TOOLS
            q = tools["query"].input_schema
            assert q["required"] == ["sql"] and {"ref", "max_rows", "timeout_secs"} <= set(q["properties"])

            assert [b["name"] for b in ok(await call(s, "list_branches"))["items"]] == ["main"]
            assert ok(await call(s, "list_namespaces"))["items"] == ["default"]
            [t] = ok(await call(s, "list_tables"))["items"]
            assert (t["name"], t["records"]) == ("trips", csv_rows(JAN).num_rows)
            info = ok(await call(s, "get_table", table="trips"))
            assert [f["name"] for f in info["fields"]][:2] == ["trip_id", "vendor"] and info["records"] == csv_rows(JAN).num_rows
            rows = ok(await call(s, "query", sql="SELECT vendor, count(*) AS n FROM trips GROUP BY vendor ORDER BY vendor"))
            assert [r["vendor"] for r in rows["rows"]] == ["acme", "yell", "zoom"] and not rows["truncated"]
            cut = ok(await call(s, "query", sql="SELECT * FROM trips", max_rows=5))
            assert len(cut["rows"]) == 5 and cut["truncated"]

            # Changes on a branch: import (creating a table), a pipeline run, a diff, a merge.
            ok(await call(s, "create_branch", name="agent.feb"))
            ok(await call(s, "import_data", table="trips", search_uri=str(FEB), branch="agent.feb"))
            # Files already imported: no commit, said as null.
            again = ok(await call(s, "import_data", table="trips", search_uri=str(FEB), branch="agent.feb"))
            assert again["commit"]["hash"] is None, again
            ok(await call(s, "import_data", table="zones", search_uri=str(DATA / "zones.jsonl"), branch="agent.feb", create_table=True))
            job = ok(await call(s, "run_pipeline", branch="agent.feb", files=PROJECT))
            assert job["status"] == "succeeded", job
            counts = ok(await call(s, "query", sql="SELECT sum(trips) AS n FROM vendor_counts", ref="agent.feb"))
            total = csv_rows(JAN).num_rows + csv_rows(FEB).num_rows
            assert counts["rows"] == [{"n": total}]
            diff = {d["table"]: d["change"] for d in ok(await call(s, "diff_refs", **{"from": "main", "to": "agent.feb"}))["items"]}
            assert diff == {"default.trips": "changed", "default.zones": "added", "default.vendor_counts": "added"}
            ok(await call(s, "merge_branch", source="agent.feb", into="main"))
            log = ok(await call(s, "list_commits", limit=3))["items"]
            assert len(log) == 3 and ok(await call(s, "list_commits", message="^Import", limit=10))["items"]

            # Errors: the tool's (with the service layer's message), or the arguments'.
            refused(await call(s, "get_table", table="nope"), "not found")
            refused(await call(s, "query", sql="INSERT INTO trips SELECT * FROM trips"), "")
            refused(await call(s, "create_branch", name="bad..name"), "invalid")
            refused(await call(s, "run_pipeline", branch="agent.feb", files={"../escape.sql": "SELECT 1"}), "")
            # Arguments that break a tool's schema or limits are tool errors the model can act on.
            for bad, says in (
                ({"sql": "SELECT 1", "max_rows": 100000}, "max_rows must be at most 10000"),
                ({"sql": "SELECT 1", "timeout_secs": 0}, "timeout_secs must be 1 to 300"),
                ({}, "missing field `sql`"),
                ({"sql": 5}, "expected a string"),
                ({"sql": "SELECT 1", "reff": "main"}, "unknown field `reff`"),
            ):
                refused(await call(s, "query", **bad), says)
            with pytest.raises(MCPError):
                await s.call_tool("no_such_tool", {})

    run(session())
    ops = [a["operation"] for a in audit(local_env) if a["client"] == "mcp"]
    assert {"mcp.query", "mcp.create_branch", "mcp.import_data", "mcp.run_pipeline", "mcp.merge_branch", "mcp.get_table"} <= set(ops)
    failed = [a for a in audit(local_env) if a["operation"] == "mcp.get_table" and a["result"] == "error"]
    assert failed and "not found" in failed[0]["error"]


def test_stdio_run_pipeline_is_strict_and_transactional(local_env):
    """A failed expectation through `run_pipeline` fails the run and leaves the branch as it was,
    as `lakeplan run` does by default (the example `failing`)."""
    example = DATA.parent / "examples" / "failing"
    files = {f: (example / f).read_text() for f in ("lakeplan_project.yml", "models.py")}

    async def session():
        async with stdio_session(local_env) as s:
            ok(await call(s, "create_branch", name="agent.fail"))

            def head(branches):
                return next(b["hash"] for b in branches["items"] if b["name"] == "agent.fail")

            before = head(ok(await call(s, "list_branches")))
            job = ok(await call(s, "run_pipeline", branch="agent.fail", files=files))
            assert job["status"] == "failed", job
            assert "expectation(s) failed: fares_are_cheap" in job["error"], job
            assert head(ok(await call(s, "list_branches"))) == before
            refused(await call(s, "get_table", table="expensive_trips", ref="agent.fail"), "not found")

    run(session())


AGENT_USERS = [
    ("acme", "alice", ["--admin", "--can-merge-main"], "admin"),
    ("acme", "reader", [], "read"),
    ("globex", "eve", ["--admin"], "admin"),
]


def test_query_names_match_ignoring_case_unless_quoted(local_env, tmp_path):
    # Bauplan SQL names through the query tool: unquoted names match ignoring case when one
    # name does; quoted names are exact; a name matching two columns is an error naming both.
    csv = tmp_path / "stats.csv"
    csv.write_text("PULocationID,Fare_Amount,zone,Zone\n1,10.5,1,10\n2,20.0,2,20\n")
    for args in (
        ["namespace", "create", "bauplan"],
        ["table", "create", "bauplan.amountStatsTable", "--search-uri", str(csv)],
        ["table", "import", "bauplan.amountStatsTable", "--search-uri", str(csv)],
    ):
        subprocess.run([lakeplan_bin(), *args], env=local_env, check=True, capture_output=True)

    async def session():
        async with stdio_session(local_env) as s:
            got = ok(await call(s, "query", sql="SELECT PULocationID, fare_amount FROM BAUPLAN.amountstatstable ORDER BY pulocationid"))
            assert got["rows"] == [{"PULocationID": 1, "Fare_Amount": 10.5}, {"PULocationID": 2, "Fare_Amount": 20.0}]
            refused(await call(s, "query", sql='SELECT "pulocationid" FROM bauplan.amountStatsTable'), "No field named pulocationid")
            refused(await call(s, "query", sql="SELECT zone FROM bauplan.amountStatsTable"), '"Zone", "zone"')

    run(session())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("mcp-server"), str(tmp_path_factory.mktemp("envs")), AGENT_USERS) as s:
        s.keys["agent"] = s.admin("key", "create", "--tenant", "acme", "--user", "alice", "--scope", "write", "--agent")
        alice = s.client("alice")
        alice.create_table("trips", str(JAN), branch="main")
        alice.import_data("trips", str(JAN), branch="main")
        yield s


def test_http_with_an_agents_key(server):
    async def session():
        async with http_session(server.url, server.keys["agent"]) as s:
            assert ok(await call(s, "query", sql="SELECT count(*) AS n FROM trips"))["rows"] == [{"n": csv_rows(JAN).num_rows}]
            ok(await call(s, "create_branch", name="agent.fix"))
            refused(await call(s, "create_branch", name="alice.dev"), "agent.*")
            ok(await call(s, "import_data", table="trips", search_uri=str(FEB), branch="agent.fix"))
            job = ok(await call(s, "run_pipeline", branch="agent.fix", files=PROJECT))
            assert job["status"] == "succeeded" and "project_dir" not in job
            # An agent never writes main: not by import, not by merge.
            refused(await call(s, "import_data", table="trips", search_uri=str(FEB), branch="main"), "agent.*")
            refused(await call(s, "merge_branch", source="agent.fix", into="main"), "agent.*")
        async with http_session(server.url, server.keys["reader"]) as s:
            refused(await call(s, "create_branch", name="reader.x"), "read-only")
            [t] = ok(await call(s, "list_tables"))["items"]
            assert t["records"] == csv_rows(JAN).num_rows, "main is untouched"
        async with http_session(server.url, server.keys["eve"]) as s:
            assert ok(await call(s, "list_tables"))["items"] == []  # another tenant's lake
            refused(await call(s, "get_table", table="trips"), "not found")
        # A human's key merges what the agent did.
        async with http_session(server.url, server.keys["alice"]) as s:
            ok(await call(s, "merge_branch", source="agent.fix", into="main"))
            n = ok(await call(s, "query", sql="SELECT sum(trips) AS n FROM vendor_counts"))
            assert n["rows"] == [{"n": csv_rows(JAN).num_rows + csv_rows(FEB).num_rows}]

    run(session())
    records = server.client("alice")._json("GET", "/api/v1/audit", params=[("limit", 200)])
    calls = [a for a in records if a["operation"].startswith("mcp.")]
    refusals = [a for a in calls if a["operation"] == "mcp.merge_branch" and a["result"] == "error"]
    assert refusals and "agent.*" in refusals[0]["error"]
    # Each call names the key it came with (the id is the first 12 hex digits of its SHA-256).
    agent_id = hashlib.sha256(server.keys["agent"].encode()).hexdigest()[:12]
    assert refusals[0]["details"]["key"] == agent_id
    assert refusals[0]["details"]["arguments"] == {"source": "agent.fix", "into": "main"}
    assert {a["details"]["key"] for a in calls} == {
        agent_id,
        *(hashlib.sha256(server.keys[u].encode()).hexdigest()[:12] for u in ("reader", "alice")),
    }


def test_http_without_a_valid_key_is_refused(server):
    import urllib.error
    import urllib.request

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    for key in (None, "lpk_wrong", server.keys["agent"] + "x"):
        req = urllib.request.Request(server.url + "/mcp", data=json.dumps(init).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json, text/event-stream")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 401 and e.value.headers["WWW-Authenticate"] == "Bearer"
    # The SDK's client fails to connect.
    with pytest.raises(BaseException):
        run(http_session(server.url, "lpk_wrong").__aenter__())


def test_http_session_close_answers_204(server):
    """The MCP SDKs expect 200 or 204 when they close a session (DELETE /mcp)."""
    import urllib.request

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Authorization": f"Bearer {server.keys['alice']}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    req = urllib.request.Request(server.url + "/mcp", data=json.dumps(init).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        session = r.headers["Mcp-Session-Id"]
    assert session
    close = urllib.request.Request(server.url + "/mcp", method="DELETE",
                                   headers={**headers, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    with urllib.request.urlopen(close, timeout=30) as r:
        assert r.status == 204


def test_stdio_bridged_to_a_server(server):
    env = dict(os.environ, LAKEPLAN_API_ENDPOINT=server.url, LAKEPLAN_API_KEY=server.keys["agent"], HOME=str(server.root / "home"))

    async def session():
        async with stdio_session(env) as s:
            assert {t.name for t in (await s.list_tools()).tools} == TOOLS
            assert ok(await call(s, "query", sql="SELECT count(*) AS n FROM trips", ref="main"))["rows"][0]["n"] > 0
            ok(await call(s, "create_branch", name="agent.bridge"))
            refused(await call(s, "create_branch", name="bridge"), "agent.*")

    run(session())
    assert server.client("alice").has_branch("agent.bridge")
