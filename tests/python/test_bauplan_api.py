"""Bauplan's catalog API (`/catalog/v0`) driven by the public `bauplan` client from PyPI.

That client lives in its own venv (`.venv-bauplan`, made by scripts/setup.sh), because this
repository's `python/` package provides a `bauplan` module of its own (the pipeline-authoring
compatibility layer). `bauplan_public_client.py` runs there against a real `lakeplan serve` and
reports what each call returned or raised; this test checks that and the lake's state.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from test_client import JAN, csv_rows, serve

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-bauplan" / "bin" / "python"
DRIVER = Path(__file__).with_name("bauplan_public_client.py")

USERS = [
    ("acme", "alice", ["--can-merge-main"], "write"),
    ("acme", "bob", [], "write"),
    ("globex", "eve", ["--admin"], "admin"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("bauplan-api"), str(tmp_path_factory.mktemp("envs")), USERS) as s:
        alice = s.client("alice")
        alice.create_branch("alice.dev", "main")
        alice.create_table("trips", str(JAN), branch="alice.dev")
        alice.import_data("trips", str(JAN), branch="alice.dev")
        yield s


def run_public_client(server) -> dict:
    assert PYTHON.exists(), f"{PYTHON} is missing: run scripts/setup.sh"
    env = dict(os.environ, BAUPLAN_API_ENDPOINT=server.url, BAUPLAN_API_KEY=server.keys["alice"], HOME=str(server.root / "home"))
    env.pop("BAUPLAN_PROFILE", None)
    p = subprocess.run([str(PYTHON), str(DRIVER)], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_public_bauplan_client_works_unchanged(server):
    r = run_public_client(server)
    ok = {k: v["ok"] for k, v in r.items() if "ok" in v}
    err = {k: v for k, v in r.items() if "error" in v}
    head = server.client("alice").get_branch("alice.dev")

    assert ok["branches"] == ["alice.dev", "main"]
    assert ok["user_branches"] == ["alice.dev"]
    assert len(ok["branches_paged"]) == 1
    assert ok["get_branch"] == ["alice.dev", head.hash]
    assert ok["has_branch_missing"] is False
    assert err["get_branch_missing"]["error"] == "BranchNotFoundError"
    assert ok["create_branch"] == "alice.feature"
    assert err["create_branch_again"]["error"] in ("BranchExistsError", "ConflictError")
    assert err["create_branch_outside_zone"]["error"] == "CreateBranchForbiddenError"
    assert "zone" in err["create_branch_outside_zone"]["message"]
    assert ok["rename_branch"] == "alice.renamed"

    assert ok["namespaces"] == ["default"]
    assert ok["create_namespace"] == "raw" and ok["has_namespace"] is True
    assert ok["tables"] == [["default", "trips"]]
    assert ok["get_table"]["records"] == csv_rows(JAN).num_rows
    assert ok["get_table"]["fields"][:2] == [["trip_id", "long"], ["vendor", "string"]]
    assert err["get_table_missing"]["error"] in ("TableNotFoundError", "NotFoundError")

    # The namespace commit carries the body and properties the client sent.
    subject, body, author, ticket = ok["commits"][0]
    assert (subject, body, author, ticket) == ("Create namespace raw", "for raw files", "alice", "LP-1")
    assert ok["commits_filtered"] == ["Import " + str(JAN) + " into default.trips"]

    assert ok["delete_namespace"] == "alice.renamed"
    assert ok["create_tag"] == "alice.v1" and "alice.v1" in ok["tags"]
    assert ok["delete_table"] == "alice.renamed" and ok["tables_after_delete"] == []
    assert ok["revert_table"] == "alice.renamed"
    assert err["revert_identical"]["error"] == "RevertIdenticalTableError"
    assert err["revert_onto_existing"]["error"] == "RevertDestinationTableExistsError"
    assert "replace" in err["revert_onto_existing"]["message"]
    assert ok["revert_replace"] == "alice.renamed" and ok["records_after_replace"] == 0
    assert ok["merge"] == ["main"] and ok["main_tables"] == ["trips"]
    assert ok["delete_tag"] is True and ok["delete_branch"] is True
    assert ok["branches_after"] == ["alice.dev", "main"]
    # The job API is not served yet: the client says so and what to use, not "invalid compression flag".
    assert "error" in r["run"] and "lakeplan run" in r["run"]["message"], r["run"]

    # What the client did is in the lake: main has trips, and the audit log names alice.
    lp = server.client("alice")
    assert lp.get_branch("main").hash == head.hash
    assert not lp.has_branch("alice.renamed")
    ops = [a["operation"] for a in lp._json("GET", "/api/v1/audit", params=[("limit", 100)]) if a["actor"] == "alice"]
    assert {"branch.create", "branch.rename", "namespace.create", "table.delete", "table.revert", "branch.merge", "tag.create"} <= set(ops)


def test_errors_have_bauplans_shape(server):
    import urllib.error
    import urllib.request

    def get(path, key):
        req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {key}"} if key else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    key = server.keys["alice"]
    status, body = get("/catalog/v0/branches/alice.nope", key)
    assert status == 404 and body["error"]["type"] == "BRANCH_NOT_FOUND" and body["error"]["context"] == {"branch_name": "alice.nope"}
    status, body = get("/catalog/v0/refs/nope/tables", key)
    assert status == 404 and body["error"]["type"] == "REF_NOT_FOUND"
    status, body = get("/catalog/v0/branches?max_records=x", key)
    assert status == 400 and body["error"]["type"] == "BAD_REQUEST"
    status, body = get("/catalog/v0/no/such/route", key)
    assert status == 404 and body["error"]["type"] == "NOT_FOUND"
    status, _ = get("/catalog/v0/branches", None)
    assert status == 401
    # Another tenant's key sees its own lake only: acme's branches and tables are not there.
    eve = server.keys["eve"]
    status, body = get("/catalog/v0/branches", eve)
    assert status == 200 and [b["name"] for b in body["data"]] == ["main"]
    for path in ("/catalog/v0/branches/alice.dev", "/catalog/v0/refs/alice.dev/tables", "/catalog/v0/refs/alice.dev/commits"):
        status, body = get(path, eve)
        assert status == 404, (path, body)
    # Paging: max_records and the token of the next page.
    status, body = get("/catalog/v0/branches?max_records=1", key)
    assert status == 200 and len(body["data"]) == 1 and body["metadata"]["pagination_token"] == "1"
    status, body = get("/catalog/v0/branches?max_records=1&pagination_token=1", key)
    assert len(body["data"]) == 1 and body["metadata"]["pagination_token"] is None
