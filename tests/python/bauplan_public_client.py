"""Run by test_bauplan_api.py with the public `bauplan` client from PyPI (in .venv-bauplan, apart
from this repository's own `bauplan` module): BAUPLAN_API_ENDPOINT / BAUPLAN_API_KEY point it at
a lakeplan server. Prints one JSON object with what each call returned or raised."""

import json
import sys
import tempfile
from pathlib import Path

import bauplan


def main() -> None:
    c = bauplan.Client()
    out = {}

    def step(name, f):
        try:
            out[name] = {"ok": f()}
        except Exception as e:  # the test asserts which error each refused call raised
            out[name] = {"error": type(e).__name__, "message": str(e)}

    step("branches", lambda: sorted(b.name for b in c.get_branches()))
    step("user_branches", lambda: sorted(b.name for b in c.get_branches(user="alice")))
    step("branches_paged", lambda: [b.name for b in c.get_branches(limit=1)])
    step("get_branch", lambda: [c.get_branch("alice.dev").name, c.get_branch("alice.dev").hash])
    step("has_branch_missing", lambda: c.has_branch("alice.nope"))
    step("get_branch_missing", lambda: c.get_branch("alice.nope"))
    step("create_branch", lambda: c.create_branch("alice.feature", "alice.dev").name)
    step("create_branch_again", lambda: c.create_branch("alice.feature", "alice.dev"))
    step("create_branch_outside_zone", lambda: c.create_branch("bob.feature", "main"))
    step("rename_branch", lambda: c.rename_branch("alice.feature", "alice.renamed").name)
    step("namespaces", lambda: [n.name for n in c.get_namespaces("alice.dev")])
    step("create_namespace", lambda: c.create_namespace("raw", "alice.renamed", commit_body="for raw files", commit_properties={"ticket": "LP-1"}).name)
    step("has_namespace", lambda: c.has_namespace("raw", "alice.renamed"))
    step("tables", lambda: [(t.namespace, t.name) for t in c.get_tables("alice.dev")])
    step("get_table", lambda: (lambda t: {"records": t.records, "fields": [[f.name, f.type] for f in t.fields]})(c.get_table("trips", "alice.dev")))
    step("get_table_missing", lambda: c.get_table("nope", "alice.dev"))
    step("commits", lambda: [[x.subject, x.body, x.author.name, x.properties.get("ticket")] for x in c.get_commits("alice.renamed", limit=3)])
    step("commits_filtered", lambda: [x.subject for x in c.get_commits("alice.renamed", filter_by_message="^Import", limit=10)])
    step("delete_namespace", lambda: c.delete_namespace("raw", "alice.renamed").name)
    step("create_tag", lambda: c.create_tag("alice.v1", "alice.dev").name)
    step("tags", lambda: [t.name for t in c.get_tags()])
    step("delete_table", lambda: c.delete_table("trips", "alice.renamed").name)
    step("tables_after_delete", lambda: [t.name for t in c.get_tables("alice.renamed")])
    step("revert_table", lambda: c.revert_table("trips", source_ref="alice.dev", into_branch="alice.renamed").name)
    step("revert_identical", lambda: c.revert_table("trips", source_ref="alice.dev", into_branch="alice.renamed", replace=True))
    # The table as it was created (empty), from its commit: the destination exists and differs.
    created = [x for x in c.get_commits("alice.dev", limit=10) if (x.subject or "").startswith("Create table")][0]
    step("revert_onto_existing", lambda: c.revert_table("trips", source_ref=f"alice.dev@{created.ref.hash}", into_branch="alice.renamed"))
    step("revert_replace", lambda: c.revert_table("trips", source_ref=f"alice.dev@{created.ref.hash}", into_branch="alice.renamed", replace=True).name)
    step("records_after_replace", lambda: c.get_table("trips", "alice.renamed").records)
    step("merge", lambda: [c.merge_branch("alice.dev", "main").name])
    step("main_tables", lambda: [t.name for t in c.get_tables("main")])
    step("delete_tag", lambda: c.delete_tag("alice.v1"))
    step("delete_branch", lambda: c.delete_branch("alice.renamed"))
    step("branches_after", lambda: sorted(b.name for b in c.get_branches()))
    # The job API (gRPC) is not served: the client reports the server's UNIMPLEMENTED message.
    with tempfile.TemporaryDirectory() as project:
        Path(project, "bauplan_project.yml").write_text("project:\n  id: 11111111-2222-3333-4444-555555555555\n  name: p\n")
        Path(project, "m.sql").write_text("SELECT 1 AS x\n")
        step("run", lambda: c.run(project_dir=project, ref="alice.dev"))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
