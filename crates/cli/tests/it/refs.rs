use serde_json::Value;

use crate::util::{data, Lake};

in_both_modes!(
    a_new_lake_has_main_and_default_namespace,
    branches_create_get_rename_remove,
    ref_names_follow_git_rules,
    tags_are_read_only,
    checkout_sets_the_active_branch,
    diff_merge_and_conflicts,
    namespaces_are_versioned,
    commit_log_filters,
    writes_carry_a_commit_body_and_properties,
);

fn a_new_lake_has_main_and_default_namespace(l: &Lake) {
    let branches = l.json(&["branch", "ls"]);
    assert_eq!(branches.as_array().map(Vec::len), Some(1));
    assert_eq!(branches[0]["name"], "main");
    assert_eq!(branches[0]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(l.json(&["namespace", "ls"]), serde_json::json!(["default"]));
    assert_eq!(l.json(&["lake", "info"])["active_branch"], "main");
    assert_eq!(l.log_len("main"), 1);
}

fn branches_create_get_rename_remove(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let main = l.head("main");
    let b = l.json(&["branch", "create", "alice.dev"]);
    assert_eq!(
        b["hash"],
        main.as_str(),
        "a new branch points at its source's head"
    );
    l.err(&["branch", "create", "alice.dev"]);
    l.ok(&["branch", "create", "alice.dev", "--if-not-exists"]);
    let got = l.json(&["branch", "get", "alice.dev"]);
    assert_eq!(got["tables"][0]["name"], "trips");
    assert_eq!(got["tables"][0]["records"], 2000);
    l.ok(&["branch", "rename", "alice.dev", "alice.work"]);
    l.err(&["branch", "get", "alice.dev"]);
    l.ok(&["branch", "get", "alice.work"]);
    l.ok(&["branch", "rm", "alice.work"]);
    l.err(&["branch", "rm", "alice.work"]);
    l.ok(&["branch", "rm", "alice.work", "--if-exists"]);
    let e = l.err(&["branch", "rm", "main"]);
    assert!(e.contains("main"), "{e}");
    // --from-ref with an older commit
    let first = l
        .json(&["commit", "main"])
        .as_array()
        .unwrap()
        .last()
        .unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    l.ok(&[
        "branch",
        "create",
        "old",
        "--from-ref",
        &format!("@{}", &first[..10]),
    ]);
    assert_eq!(l.head("old"), first);
    assert!(l
        .json(&["table", "ls", "-r", "old"])
        .as_array()
        .unwrap()
        .is_empty());
}

fn ref_names_follow_git_rules(l: &Lake) {
    for bad in [
        "a..b", "x.lock", "-x", "a b", "a~1", "a:b", "/x", "x/", ".x", "a@b",
    ] {
        let e = l.err(&["branch", "create", "--", bad]);
        assert!(e.contains("invalid"), "{bad}: {e}");
    }
    let long = "a".repeat(256);
    l.err(&["branch", "create", &long]);
    l.ok(&["branch", "create", "feature/x-1"]);
    l.err(&["branch", "create", "b", "--from-ref", "nope"]);
}

fn tags_are_read_only(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    l.ok(&["tag", "create", "v1"]);
    assert_eq!(l.json(&["tag", "ls"])[0]["name"], "v1");
    let e = l.err(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_02.csv"),
        "-b",
        "v1",
    ]);
    assert!(e.contains("not a branch"), "{e}");
    let head = l.head("main");
    let e = l.err(&[
        "namespace",
        "create",
        "x",
        "-b",
        &format!("main@{}", &head[..8]),
    ]);
    assert!(e.contains("not a branch"), "{e}");
    l.err(&["tag", "create", "v1"]);
    l.err(&["branch", "create", "v1"]);
    l.ok(&["tag", "rename", "v1", "v1.0"]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &["-r", "v1.0"]), 2000);
    l.ok(&["tag", "rm", "v1.0"]);
    assert!(l.json(&["tag", "ls"]).as_array().unwrap().is_empty());
}

fn checkout_sets_the_active_branch(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    l.ok(&["checkout", "dev", "-b"]);
    assert_eq!(l.json(&["lake", "info"])["active_branch"], "dev");
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_02.csv"),
    ]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 4000);
    assert_eq!(l.count("SELECT count(*) FROM trips", &["-r", "main"]), 2000);
    l.err(&["checkout", "missing"]);
    l.ok(&["checkout", "main"]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 2000);
}

fn diff_merge_and_conflicts(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    l.ok(&["branch", "create", "dev"]);
    // dev: change trips (+2000 rows, new column) and add zones
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_02.csv"),
        "-b",
        "dev",
    ]);
    l.load("zones", &data("zones.jsonl"), &["-b", "dev"]);
    let d = l.json(&["branch", "diff", "main", "dev"]);
    let d = d.as_array().unwrap();
    assert_eq!(d.len(), 2, "{d:?}");
    let trips = d.iter().find(|x| x["table"] == "default.trips").unwrap();
    assert_eq!(trips["change"], "changed");
    assert_eq!(trips["records_delta"], 2000);
    assert_eq!(trips["schema_changed"], true);
    let zones = d.iter().find(|x| x["table"] == "default.zones").unwrap();
    assert_eq!(zones["change"], "added");
    assert_eq!(zones["records_delta"], 40);

    // main moves on another table -> merge makes a two-parent commit
    l.load("other", &data("zones.jsonl"), &[]);
    let m = l.json(&["branch", "merge", "dev", "--into", "main"]);
    assert_eq!(m["outcome"], "merged");
    let log = l.json(&["commit", "main", "-n", "1"]);
    assert_eq!(log[0]["parent_hashes"].as_array().unwrap().len(), 2);
    assert_eq!(l.count("SELECT count(*) FROM trips", &["-r", "main"]), 4000);
    assert_eq!(l.count("SELECT count(*) FROM zones", &["-r", "main"]), 40);
    let again = l.json(&["branch", "merge", "dev", "--into", "main"]);
    assert_eq!(again["outcome"], "up_to_date");

    // fast-forward
    l.ok(&["branch", "create", "ff"]);
    l.ok(&["table", "rm", "other", "-b", "ff"]);
    let m = l.json(&["branch", "merge", "ff", "--into", "main"]);
    assert_eq!(m["outcome"], "fast_forward");
    assert_eq!(l.head("main"), l.head("ff"));

    // both sides change the same tables -> conflict naming each, nothing written
    l.ok(&["branch", "create", "c1"]);
    l.ok(&[
        "table",
        "import",
        "zones",
        "--search-uri",
        &data("zones.jsonl"),
        "-b",
        "c1",
        "--import-duplicate-files",
    ]);
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_01.csv"),
        "-b",
        "c1",
        "--import-duplicate-files",
    ]);
    l.ok(&[
        "table",
        "import",
        "zones",
        "--search-uri",
        &data("zones.jsonl"),
        "--import-duplicate-files",
    ]);
    l.ok(&["table", "rm", "trips"]);
    let before = l.head("main");
    let e = l.err(&["branch", "merge", "c1"]);
    assert!(
        e.contains("default.trips") && e.contains("default.zones"),
        "{e}"
    );
    assert_eq!(l.head("main"), before, "a conflicting merge writes nothing");
}

#[test]
fn revert_restores_a_table_without_copying_files() {
    let l = Lake::new();
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let v1 = l.head("main");
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_02.csv"),
    ]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 4000);
    let files_before = count_files(&l.path());
    l.ok(&[
        "table",
        "revert",
        "trips",
        "--source-ref",
        &format!("main@{}", &v1[..12]),
    ]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 2000);
    assert_eq!(
        count_files(&l.path()),
        files_before,
        "revert writes no file"
    );
    l.err(&[
        "table",
        "revert",
        "trips",
        "--source-ref",
        &format!("main@{}", &v1[..12]),
    ]);
    // a removed table is still readable at older refs
    l.ok(&["table", "rm", "trips"]);
    l.err(&["query", "SELECT count(*) FROM trips"]);
    assert_eq!(
        l.count("SELECT count(*) FROM trips", &["-r", &format!("@{v1}")]),
        2000
    );
    l.ok(&["table", "revert", "trips", "-s", &format!("@{}", &v1[..8])]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 2000);
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += count_files(&p);
        } else if !p.to_string_lossy().contains("catalog.db") {
            n += 1;
        }
    }
    n
}

#[test]
fn branching_copies_no_data_file() {
    let l = Lake::new();
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let before = count_files(&l.path());
    for i in 0..5 {
        l.ok(&["branch", "create", &format!("b{i}")]);
    }
    l.ok(&["branch", "merge", "b0"]);
    assert_eq!(count_files(&l.path()), before);
}

fn namespaces_are_versioned(l: &Lake) {
    l.ok(&["branch", "create", "dev"]);
    l.ok(&["namespace", "create", "bronze", "-b", "dev"]);
    assert_eq!(
        l.json(&["namespace", "ls", "-r", "dev"]),
        serde_json::json!(["bronze", "default"])
    );
    assert_eq!(
        l.json(&["namespace", "ls", "-r", "main"]),
        serde_json::json!(["default"])
    );
    l.err(&["namespace", "create", "bronze", "-b", "dev"]);
    l.load(
        "trips",
        &data("trips_2024_01.csv"),
        &["-n", "bronze", "-b", "dev"],
    );
    let e = l.err(&["namespace", "rm", "bronze", "-b", "dev"]);
    assert!(e.contains("not empty"), "{e}");
    l.ok(&["table", "rm", "bronze.trips", "-b", "dev"]);
    l.ok(&["namespace", "rm", "bronze", "-b", "dev"]);
    l.err(&["namespace", "rm", "bronze", "-b", "dev"]);
    l.err(&["namespace", "create", "../x"]);
    l.err(&["namespace", "create", "system"]);
}

fn commit_log_filters(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let all = l.json(&["commit"]);
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert!(all[0]["message"].as_str().unwrap().starts_with("Import"));
    let f = l.json(&["commit", "--message", "^Create"]);
    assert_eq!(f.as_array().unwrap().len(), 1);
    let f = l.json(&["commit", "--author", "^tester$"]);
    assert_eq!(f.as_array().unwrap().len(), 2);
    assert_eq!(l.json(&["commit", "-n", "1"]).as_array().unwrap().len(), 1);
    let imports = l.json(&["commit", "--property", "lakeplan.operation=table.import"]);
    assert_eq!(imports.as_array().unwrap().len(), 1);
    // Commits name the client that made them: the CLI, or the server's API in remote mode.
    let client = if l.is_remote() { "api" } else { "cli" };
    assert_eq!(imports[0]["properties"]["lakeplan.client"], client);
    let none = l.json(&["commit", "--property", "lakeplan.operation=branch.merge"]);
    assert!(none.as_array().unwrap().is_empty());
    l.err(&["commit", "--message", "("]);
    l.err(&["commit", "--property", "novalue"]);
}

#[test]
fn the_audit_log_records_successes_and_failures() {
    let l = Lake::new();
    l.ok(&["branch", "create", "dev"]);
    l.err(&["branch", "create", "dev"]);
    let recs = l.json(&["audit", "-n", "10"]);
    let recs = recs.as_array().unwrap();
    assert_eq!(recs[0]["operation"], "branch.create");
    assert_eq!(recs[0]["result"], "error");
    assert!(recs[0]["error"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    assert_eq!(recs[1]["result"], "ok");
    assert_eq!(recs[1]["actor"], "tester");
    let rows = l.rows(
        "SELECT operation, result FROM system.audit WHERE target = 'dev' ORDER BY seq",
        &[],
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["result"], Value::from("error"));
}

/// `--commit-body` and `--commit-property` (Bauplan's) land in the commit a write makes: the
/// body under the operation's message, the properties beside `lakeplan.*`, filterable with
/// `commit --property`. Bad ones are refused before anything is written.
fn writes_carry_a_commit_body_and_properties(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    l.ok(&[
        "namespace",
        "create",
        "staging",
        "--commit-body",
        "for the February reload",
        "--commit-property",
        "ticket=LP-7",
        "--commit-property",
        "team=data",
    ]);
    l.ok(&[
        "table",
        "rm",
        "trips",
        "--commit-body",
        "superseded",
        "--commit-property",
        "ticket=LP-8",
    ]);
    let log = l.json(&["commit", "main", "-n", "2"]);
    assert_eq!(
        log[0]["message"],
        "Delete table default.trips\n\nsuperseded"
    );
    assert_eq!(log[0]["properties"]["ticket"], "LP-8");
    assert_eq!(log[0]["properties"]["lakeplan.operation"], "table.delete");
    assert_eq!(
        log[1]["message"],
        "Create namespace staging\n\nfor the February reload"
    );
    assert_eq!(log[1]["properties"]["ticket"], "LP-7");
    assert_eq!(log[1]["properties"]["team"], "data");
    let found = l.json(&["commit", "main", "--property", "ticket=LP-7"]);
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");

    let head = l.head("main");
    for (prop, says) in [
        ("lakeplan.operation=x", "reserved"),
        ("no-value", "KEY=VALUE"),
        ("=v", "non-empty"),
    ] {
        let e = l.err(&["namespace", "create", "other", "--commit-property", prop]);
        assert!(e.contains(says), "{prop}: {e}");
    }
    assert_eq!(l.head("main"), head, "a refused write commits nothing");
    assert_eq!(
        l.json(&["namespace", "ls"]),
        serde_json::json!(["default", "staging"])
    );
}
