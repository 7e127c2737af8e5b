//! `lakeplan run | init | parameter | job | rerun` end to end: example projects and bad input,
//! through the real binary, real sandboxes (bubblewrap) and real `uv` environments.
//!
//! Every lake shares one environment cache (`LAKEPLAN_ENV_CACHE` under the target folder), so
//! the pyarrow environment is built once for the whole suite.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{data, Lake};

in_both_modes!(
    env = vec![("LAKEPLAN_ENV_CACHE", crate::pipeline::env_cache())];
    taxi_example_end_to_end_cache_and_parameters,
    taxi_dry_run_no_transaction_and_preview,
    bauplan_style_project_runs_unchanged,
    mixed_case_names_in_sql_models_and_filters,
    failing_expectation_publishes_nothing_unless_not_strict,
    a_function_that_raises_or_returns_garbage_fails_the_run,
    time_and_memory_limits_kill_the_function,
    the_sandbox_hides_host_files_and_the_network,
    unknown_packages_and_missing_python_versions,
    the_planner_rejects_bad_projects_with_file_and_line,
    init_and_parameters,
    detached_runs_can_be_followed_and_stopped,
    rerun_replays_the_stored_code_at_the_recorded_inputs,
    an_unchanged_append_model_is_not_appended_twice,
    shared_memory_is_released_as_soon_as_nothing_reads_it,
);

pub(crate) fn env_cache() -> String {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pipeline-envs")
        .display()
        .to_string()
}

/// Puts default.trips (2000 rows) and default.zones (40 rows) on main.
fn load_inputs(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    l.load("zones", &data("zones.jsonl"), &[]);
}

/// A lake of [`load_inputs`], embedded, for what only embedded mode has.
fn lake() -> Lake {
    let mut l = Lake::new();
    l.env.push(("LAKEPLAN_ENV_CACHE".into(), env_cache()));
    load_inputs(&l);
    l
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Copies `examples/<name>` into the test's folder.
fn example(l: &Lake, name: &str) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let dst = l.file(name);
    copy_dir(&src, &dst);
    dst.display().to_string()
}

const PROJECT_YML: &str = "project:\n  id: 11111111-2222-3333-4444-555555555555\n  name: t\n\
parameters:\n  min_fare:\n    type: float\n    default: 1.0\n";

/// Writes a project folder `name` with the given files (a default project file unless given).
fn project(l: &Lake, name: &str, files: &[(&str, &str)]) -> String {
    let dir = l.file(name);
    std::fs::create_dir_all(&dir).unwrap();
    if !files.iter().any(|(f, _)| f.ends_with("_project.yml")) {
        std::fs::write(dir.join("lakeplan_project.yml"), PROJECT_YML).unwrap();
    }
    for (f, body) in files {
        std::fs::write(dir.join(f), body).unwrap();
    }
    dir.display().to_string()
}

/// One `lakeplan -O json run`: its job record (when one was made) and its stderr.
struct Run {
    ok: bool,
    job: Value,
    stderr: String,
}

impl Run {
    fn id(&self) -> String {
        self.job["id"].as_str().expect("job id").to_string()
    }

    /// Each node's status (succeeded, cached, failed, ...).
    fn status(&self, node: &str) -> String {
        self.job["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["node"] == node)
            .unwrap_or_else(|| panic!("node {node} not in {}", self.job))["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn error(&self) -> String {
        self.job["error"].as_str().unwrap_or_default().to_string()
    }
}

fn run(l: &Lake, project: &str, extra: &[&str]) -> Run {
    let mut a = vec!["-O", "json", "run", "-p", project];
    a.extend_from_slice(extra);
    let o = l.run(&a);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    Run {
        ok: o.status.success(),
        job: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn run_ok(l: &Lake, project: &str, extra: &[&str]) -> Run {
    let r = run(l, project, extra);
    assert!(r.ok, "run {project} {extra:?} failed:\n{}", r.stderr);
    assert_eq!(r.job["status"], "succeeded", "{}", r.job);
    r
}

fn branch_exists(l: &Lake, name: &str) -> bool {
    l.run(&["branch", "get", name]).status.success()
}

fn run_branches(l: &Lake) -> Vec<String> {
    l.json(&["branch", "ls"])
        .as_array()
        .expect("branches")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .filter(|n| n.contains(".run-"))
        .map(String::from)
        .collect()
}

fn job_log(l: &Lake, id: &str) -> String {
    l.ok(&["job", "logs", id])
}

/// A run that reached execution and failed: the job failed, main is exactly as before, the
/// temporary branch is kept and named in the one-line error, whose text contains `msg`.
fn assert_failed(l: &Lake, r: &Run, before: &str, msg: &str) {
    assert!(!r.ok, "run should fail: {}", r.stderr);
    assert_eq!(r.job["status"], "failed", "{}", r.job);
    let last = r.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "stderr: {}", r.stderr);
    let err = r.error();
    assert!(err.contains(msg), "error {err:?} should contain {msg:?}");
    assert_eq!(l.head("main"), before, "main must be unchanged");
    let tx = r.job["tx_branch"].as_str().expect("a temporary branch");
    assert!(tx.starts_with("main.run-"), "{tx}");
    assert!(branch_exists(l, tx), "temporary branch {tx} is kept");
    assert!(err.contains(tx), "error names the temporary branch: {err}");
    assert!(r.stderr.contains(tx), "stderr names the temporary branch");
    assert!(r.stderr.contains("'main' is unchanged"), "{}", r.stderr);
}

/// A planner rejection: no job, one `error:` line containing every part of `msgs`.
fn assert_rejected(l: &Lake, project: &str, extra: &[&str], msgs: &[&str]) {
    let before = l.head("main");
    let jobs = l.json(&["job", "ls"]).as_array().unwrap().len();
    let r = run(l, project, extra);
    assert!(!r.ok, "{project} should be rejected");
    let err = r.stderr.trim_end();
    assert!(err.starts_with("error: "), "{err}");
    for m in msgs {
        assert!(err.contains(m), "error {err:?} should contain {m:?}");
    }
    assert_eq!(l.head("main"), before);
    assert_eq!(l.json(&["job", "ls"]).as_array().unwrap().len(), jobs);
    assert!(run_branches(l).is_empty());
}

fn wait_finished(l: &Lake, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let j = l.json(&["job", "get", id]);
        if j["status"] != "running" {
            return j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "job {id} still running"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number: {v}"))
}

/// default.borough_summary as the taxi example computes it, in one SQL query over the inputs.
fn expected_boroughs(l: &Lake, min_fare: f64, min_trips: i64) -> Vec<Value> {
    l.rows(
        &format!(
            "SELECT z.borough, count(*) AS trips, sum(t.fare) / count(*) AS mean_fare \
             FROM trips t JOIN zones z ON t.pickup_zone = z.zone_id \
             WHERE t.fare > 0 AND t.fare >= {min_fare} \
             GROUP BY z.borough HAVING count(*) >= {min_trips} ORDER BY z.borough"
        ),
        &[],
    )
}

fn assert_boroughs(l: &Lake, min_fare: f64, min_trips: i64) {
    let want = expected_boroughs(l, min_fare, min_trips);
    let got = l.rows("SELECT * FROM borough_summary ORDER BY borough", &[]);
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["borough"], w["borough"]);
        assert_eq!(g["trips"], w["trips"]);
        assert!((f64_of(&g["mean_fare"]) - f64_of(&w["mean_fare"])).abs() <= 0.0051);
    }
}

const TAXI_ID: &str = "3c1f0a8e-5b2d-4d7e-9a61-7f2b8c4e9d10";

fn taxi_example_end_to_end_cache_and_parameters(l: &Lake) {
    load_inputs(l);
    let p = example(l, "taxi");
    let before = l.head("main");

    let r = run_ok(l, &p, &[]);
    let id = r.id();
    // published: main moved to the run's commit, which carries the job's properties
    let head = l.head("main");
    assert_ne!(head, before);
    assert_eq!(r.job["result_commit"].as_str().unwrap(), head);
    let c = &l.json(&["commit", "main", "-n", "1"])[0];
    assert_eq!(c["hash"].as_str().unwrap(), head);
    let props = &c["properties"];
    assert_eq!(props["lakeplan.job-id"].as_str().unwrap(), id);
    assert_eq!(props["lakeplan.project-id"], TAXI_ID);
    assert_eq!(props["lakeplan.code-hash"], r.job["code_hash"]);
    assert_eq!(props["bpln_job_id"].as_str().unwrap(), id);
    assert_eq!(r.job["code_hash"].as_str().unwrap().len(), 64);
    // the temporary branch did its job and is gone
    let tx = r.job["tx_branch"].as_str().unwrap();
    assert!(!branch_exists(l, tx));
    assert!(run_branches(l).is_empty());

    // tables: the materialized models hold what the same logic in SQL computes
    assert_eq!(
        l.count("SELECT count(*) FROM clean_trips", &[]),
        l.count(
            "SELECT count(*) FROM trips WHERE fare > 0 AND fare >= 5.0",
            &[]
        )
    );
    assert_eq!(
        l.count(
            "SELECT count(*) FROM clean_trips c JOIN trips t ON c.trip_id = t.trip_id \
             WHERE abs(c.fare_per_km - t.fare / CASE WHEN t.distance_km > 0.1 \
             THEN t.distance_km ELSE 0.1 END) > 1e-9 OR c.fare <> t.fare",
            &[]
        ),
        0
    );
    assert_boroughs(l, 5.0, 100);
    // zone_stats is NONE: in memory only
    assert!(!l.run(&["table", "get", "zone_stats"]).status.success());
    for n in [
        "clean_trips",
        "zone_stats",
        "clean_trips_are_valid",
        "borough_summary",
    ] {
        assert_eq!(r.status(n), "succeeded", "{n}");
    }
    let check = r.job["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "clean_trips_are_valid")
        .unwrap();
    assert_eq!(check["passed"], true, "{check}");

    // the job store
    let ls = l.json(&["job", "ls"]);
    assert_eq!(ls[0]["id"].as_str().unwrap(), id);
    assert_eq!(ls[0]["status"], "succeeded");
    let got = l.json(&["job", "get", &id]);
    assert_eq!(got["status"], "succeeded");
    assert_eq!(got["project_id"], TAXI_ID);
    assert_eq!(got["parameters"]["min_fare"], "5");
    let log = job_log(l, &id);
    assert!(
        log.contains("clean_trips: kept"),
        "user output in the log: {log}"
    );
    assert!(log.contains("succeeded"), "{log}");
    assert!(l.ok(&["job", "get", &id]).contains("succeeded"));

    // an unchanged second run: every node from the cache, nothing published
    let commits = l.log_len("main");
    let r2 = run_ok(l, &p, &[]);
    for n in [
        "clean_trips",
        "zone_stats",
        "clean_trips_are_valid",
        "borough_summary",
    ] {
        assert_eq!(r2.status(n), "cached", "{n}");
    }
    assert!(r2.job["result_commit"].is_null(), "{}", r2.job);
    assert_eq!(l.head("main"), head);
    assert_eq!(l.log_len("main"), commits);
    assert!(run_branches(l).is_empty());

    // a parameter only the SQL model reads: only it runs again
    let r3 = run_ok(l, &p, &["--param", "min_trips=300"]);
    assert_eq!(r3.status("clean_trips"), "cached");
    assert_eq!(r3.status("zone_stats"), "cached");
    assert_eq!(r3.status("clean_trips_are_valid"), "cached");
    assert_eq!(r3.status("borough_summary"), "succeeded");
    assert_boroughs(l, 5.0, 300);
    // the Python models' parameter: everything downstream of it runs again
    let r4 = run_ok(l, &p, &["--param", "min_fare=20"]);
    for n in [
        "clean_trips",
        "zone_stats",
        "clean_trips_are_valid",
        "borough_summary",
    ] {
        assert_eq!(r4.status(n), "succeeded", "{n}");
    }
    assert_boroughs(l, 20.0, 100);
    assert_eq!(
        l.count("SELECT count(*) FROM clean_trips", &[]),
        l.count("SELECT count(*) FROM trips WHERE fare >= 20", &[])
    );

    // --no-cache executes everything again
    let r5 = run_ok(l, &p, &["--no-cache", "--param", "min_fare=20"]);
    for n in [
        "clean_trips",
        "zone_stats",
        "clean_trips_are_valid",
        "borough_summary",
    ] {
        assert_eq!(r5.status(n), "succeeded", "{n}");
    }
}

fn taxi_dry_run_no_transaction_and_preview(l: &Lake) {
    load_inputs(l);
    let p = example(l, "taxi");
    let before = l.head("main");

    // --dry-run: the plan is printed, functions run, nothing is materialized
    let r = run_ok(l, &p, &["--dry-run"]);
    assert_eq!(r.job["dry_run"], true);
    assert!(r.job["tx_branch"].is_null());
    assert!(r.job["result_commit"].is_null());
    assert!(r.stderr.contains("level 0"), "ASCII plan: {}", r.stderr);
    assert!(r.stderr.contains("[clean_trips]"));
    assert_eq!(l.head("main"), before);
    assert!(!l.run(&["table", "get", "clean_trips"]).status.success());
    assert!(run_branches(l).is_empty());

    // --no-transaction: written straight to main, no temporary branch
    let r = run_ok(l, &p, &["--no-transaction", "--param", "min_fare=20"]);
    assert!(r.job["tx_branch"].is_null(), "{}", r.job);
    assert!(!r.stderr.contains("temporary branch"), "{}", r.stderr);
    assert!(run_branches(l).is_empty());
    assert_eq!(
        r.job["result_commit"].as_str().unwrap(),
        l.head("main"),
        "the run's commit is main's head"
    );
    assert_eq!(
        l.count("SELECT count(*) FROM clean_trips", &[]),
        l.count("SELECT count(*) FROM trips WHERE fare >= 20", &[])
    );
    assert_boroughs(l, 20.0, 100);

    // --preview head prints each model's first rows
    let r = run_ok(l, &p, &["--preview", "head", "--param", "min_trips=1"]);
    assert!(
        r.stderr.contains("[borough_summary] preview:"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("| borough"), "{}", r.stderr);
    assert!(r.stderr.contains("Manhattan"), "{}", r.stderr);
    assert!(r.stderr.contains("[clean_trips] preview:"));
    assert!(r.stderr.contains("fare_per_km"));
}

fn bauplan_style_project_runs_unchanged(l: &Lake) {
    load_inputs(l);
    let p = example(l, "bauplan_style");
    assert!(Path::new(&p).join("bauplan_project.yml").is_file());
    let r = run_ok(l, &p, &[]);
    for n in ["vendor_trips", "big_fares", "one_vendor", "big_fare_count"] {
        assert_eq!(r.status(n), "succeeded", "{n}");
    }
    assert_eq!(
        l.count("SELECT count(*) FROM vendor_trips", &[]),
        l.count("SELECT count(*) FROM trips WHERE vendor = 'acme'", &[])
    );
    let rows = l.rows("SELECT * FROM big_fare_count", &[]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["vendor"], "acme");
    assert_eq!(
        rows[0]["trips"].as_i64().unwrap(),
        l.count(
            "SELECT count(*) FROM trips WHERE vendor = 'acme' AND fare > 30",
            &[]
        )
    );
    let props = &l.json(&["commit", "main", "-n", "1"])[0]["properties"];
    assert_eq!(
        props["bpln_project_id"],
        "5e8a2c71-0d4b-4f3a-b6e9-1c2d3e4f5a60"
    );
    // another vendor through the project parameter
    run_ok(l, &p, &["--param", "vendor=zoom"]);
    assert_eq!(
        l.count("SELECT count(*) FROM vendor_trips", &[]),
        l.count("SELECT count(*) FROM trips WHERE vendor = 'zoom'", &[])
    );
}

/// A SQL model and a Python model's filter written with Bauplan's SQL names: unquoted names
/// match tables, models and columns ignoring case; a quoted name is exact.
fn mixed_case_names_in_sql_models_and_filters(l: &Lake) {
    let taxi = l.write(
        "taxi.csv",
        "PULocationID,Fare_Amount\n1,10.5\n2,20.0\n2,30.0\n3,5.0\n",
    );
    l.ok(&["namespace", "create", "bauplan"]);
    l.load("bauplan.taxiTrips", &taxi, &[]);
    let models = |filter: &str| {
        format!(
            "import bauplan\n\n\n@bauplan.model()\n@bauplan.python(\"3.11\")\n\
             def bigFares(trips=bauplan.Model(\"bauplan.taxiTrips\", columns=[\"PULocationID\", \"Fare_Amount\"], filter='{filter}')):\n    return trips\n"
        )
    };
    let sql = "-- bauplan: materialization_strategy=REPLACE\n\
        SELECT b.PULocationID, sum(b.FARE_AMOUNT) AS Total, count(*) AS N FROM BIGFARES b\n\
        JOIN (SELECT DISTINCT pulocationid FROM bauplan.TAXITRIPS) USING (PULocationID)\n\
        GROUP BY b.PULocationID";
    let p = project(
        l,
        "names",
        &[
            (
                "models.py",
                &models("fare_amount > 15 AND PULOCATIONID >= 1"),
            ),
            ("zone_totals.sql", sql),
        ],
    );
    let r = run_ok(l, &p, &[]);
    assert_eq!(r.status("zone_totals"), "succeeded");
    // (a project that imports bauplan runs in namespace bauplan)
    let rows = l.rows(
        "SELECT PULocationID, total, n FROM bauplan.zone_totals",
        &[],
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["PULocationID"], 2);
    assert_eq!(rows[0]["total"], 50.0);
    assert_eq!(rows[0]["n"], 2);
    // a quoted name is exact: the planner refuses it before anything runs
    let p = project(
        l,
        "quoted",
        &[("models.py", &models(r#""fare_amount" > 15"#))],
    );
    let r = run(l, &p, &[]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("unknown column(s) fare_amount"),
        "{}",
        r.stderr
    );
}

fn failing_expectation_publishes_nothing_unless_not_strict(l: &Lake) {
    load_inputs(l);
    let p = example(l, "failing");
    let before = l.head("main");
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "expectation(s) failed: fares_are_cheap");
    assert_eq!(r.status("fares_are_cheap"), "failed");
    assert!(!l.run(&["table", "get", "expensive_trips"]).status.success());
    assert_eq!(l.json(&["job", "get", &r.id()])["status"], "failed");
    // The outputs were materialized on the kept temporary branch, for inspection.
    let tx = r.job["tx_branch"].as_str().unwrap().to_string();
    assert!(r.error().contains("for inspection"), "{}", r.error());
    assert_eq!(
        l.count("SELECT count(*) FROM expensive_trips", &["-r", &tx]),
        l.count("SELECT count(*) FROM trips WHERE fare > 20", &[])
    );

    // --no-strict: the failure is a warning and the run publishes
    let r = run_ok(l, &p, &["--no-strict"]);
    assert!(r
        .stderr
        .contains("warning: expectation(s) failed: fares_are_cheap"));
    assert_ne!(l.head("main"), before);
    assert_eq!(
        l.count("SELECT count(*) FROM expensive_trips", &[]),
        l.count("SELECT count(*) FROM trips WHERE fare > 20", &[])
    );
}

fn model(body: &str) -> String {
    format!(
        "import lakeplan\n\n\n@lakeplan.model(materialization_strategy=\"REPLACE\")\n\
         @lakeplan.python(\"3.11\")\n{body}"
    )
}

fn a_function_that_raises_or_returns_garbage_fails_the_run(l: &Lake) {
    load_inputs(l);
    let before = l.head("main");

    let p = project(
        l,
        "raises",
        &[(
            "models.py",
            &model(
                "def boom(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
                 print(\"about to fail\")\n    raise ValueError(\"bad fare data\")\n",
            ),
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "node 'boom'");
    assert!(
        r.error().contains("ValueError: bad fare data"),
        "{}",
        r.error()
    );
    let log = job_log(l, &r.id());
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("models.py\", line 8, in boom"), "{log}");
    assert!(log.contains("[boom] about to fail"), "{log}");

    let p = project(
        l,
        "nontable",
        &[(
            "models.py",
            &model("def not_a_table(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    return 42\n"),
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "node 'not_a_table'");
    assert!(
        r.error().contains("returned int, expected a table"),
        "{}",
        r.error()
    );

    let p = project(
        l,
        "contract",
        &[(
            "models.py",
            "from typing import Annotated\n\nimport pyarrow\nimport lakeplan\n\n\n\
             class Out(lakeplan.TableSchema):\n    trip_id: lakeplan.Int64\n    total: lakeplan.Float64\n\n\n\
             @lakeplan.model(materialization_strategy=\"REPLACE\")\n@lakeplan.python(\"3.11\")\n\
             def broken(trips=lakeplan.Model(\"trips\", columns=[\"trip_id\", \"fare\"])) \
             -> Annotated[pyarrow.Table, Out]:\n    return trips\n",
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "output contract violated: broken");
    assert!(r.error().contains("column 'total'"), "{}", r.error());
    assert!(!l.run(&["table", "get", "broken"]).status.success());
}

fn time_and_memory_limits_kill_the_function(l: &Lake) {
    load_inputs(l);
    let before = l.head("main");
    let p = project(
        l,
        "slow",
        &[(
            "models.py",
            &model(
                "@lakeplan.resources(timeout=2)\n\
                 def slow(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
                 import time\n    time.sleep(60)\n    return trips\n",
            ),
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "node 'slow'");
    assert!(
        r.error().contains("exceeded its time limit of 2s"),
        "{}",
        r.error()
    );

    let p = project(
        l,
        "hungry",
        &[(
            "models.py",
            &model(
                "@lakeplan.resources(memory=\"300MB\")\n\
                 def hungry(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
                 blobs = [bytearray(50 * 1024 * 1024) for _ in range(40)]\n    \
                 return trips\n",
            ),
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "node 'hungry'");
    assert!(r.error().contains("memory"), "{}", r.error());
}

fn the_sandbox_hides_host_files_and_the_network(l: &Lake) {
    load_inputs(l);
    let before = l.head("main");
    // The catalog: the lake's own, or the server's metastore in remote mode.
    let catalog = if l.is_remote() {
        let dir = l.file("server");
        std::fs::read_dir(&dir)
            .expect("the server's folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "db"))
            .unwrap_or_else(|| panic!("a .db file in {}", dir.display()))
    } else {
        l.path().join("catalog.db")
    };
    let catalog_name = catalog.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        catalog.is_file(),
        "the host file exists outside the sandbox"
    );
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let repo_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let p = project(
        l,
        "snoop",
        &[(
            "models.py",
            &model(&format!(
                "def snoop(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
                 for p in [{shadow:?}, {home:?}, {repo:?}]:\n        \
                 try:\n            \
                 open(p, \"rb\").read(1)\n            \
                 print(\"READABLE\", p)\n        \
                 except OSError as e:\n            \
                 print(\"hidden\", p, type(e).__name__)\n    \
                 with open({catalog:?}, \"rb\") as f:\n        \
                 f.read(16)\n    \
                 return trips\n",
                shadow = "/etc/shadow",
                home = format!("{home}/.profile"),
                repo = repo_file.display().to_string(),
                catalog = catalog.display().to_string(),
            )),
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "node 'snoop'");
    assert!(r.error().contains(&catalog_name), "{}", r.error());
    assert!(
        r.error().contains("FileNotFoundError") || r.error().contains("PermissionError"),
        "{}",
        r.error()
    );
    let log = job_log(l, &r.id());
    assert!(!log.contains("READABLE"), "{log}");
    assert_eq!(log.matches("[snoop] hidden").count(), 3, "{log}");

    // a port on the host's loopback, held open by the test: unreachable from the sandbox
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let p = project(
        l,
        "net",
        &[(
            "models.py",
            &model(&format!(
                "def phone_home(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
                 import socket\n    \
                 socket.create_connection((\"127.0.0.1\", {port}), timeout=5).close()\n    \
                 return trips\n"
            )),
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "node 'phone_home'");
    assert!(r.error().contains("Error"), "{}", r.error());
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the sandbox reached the host's port"
    );
}

fn unknown_packages_and_missing_python_versions(l: &Lake) {
    load_inputs(l);
    let before = l.head("main");
    let p = project(
        l,
        "pkg",
        &[(
            "models.py",
            "import lakeplan\n\n\n@lakeplan.model()\n\
             @lakeplan.python(\"3.11\", pip={\"definitely-not-a-package-xyz\": \"1.0\"})\n\
             def needs_pkg(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    return trips\n",
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "node 'needs_pkg'");
    // uv's own words
    assert!(r.error().contains("No solution found"), "{}", r.error());
    assert!(
        r.error().contains("definitely-not-a-package-xyz"),
        "{}",
        r.error()
    );

    let p = project(
        l,
        "py313",
        &[(
            "models.py",
            "import sys\n\nimport lakeplan\n\n\n@lakeplan.model(materialization_strategy=\"REPLACE\")\n\
             @lakeplan.python(\"3.13\")\n\
             def newer(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
             print(\"running on %d.%d\" % sys.version_info[:2])\n    return trips\n",
        )],
    );
    let r = run_ok(l, &p, &[]);
    let log = job_log(l, &r.id());
    let warning = log
        .lines()
        .find(|line| line.contains("warning:") && line.contains("3.13"))
        .unwrap_or_else(|| panic!("a warning naming 3.13: {log}"));
    assert!(warning.contains("3.11"), "{warning}");
    assert!(log.contains("[newer] running on 3.11"), "{log}");

    let before = l.head("main");
    let r = run(l, &p, &["--strict-python", "--param", "min_fare=2"]);
    assert_failed(l, &r, &before, "node 'newer'");
    assert!(r.error().contains("3.13"), "{}", r.error());
}

const OK_MODEL: &str = "import lakeplan\n\n\n@lakeplan.model()\n\
def a(x=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    return x\n";

fn the_planner_rejects_bad_projects_with_file_and_line(l: &Lake) {
    load_inputs(l);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "syntax",
            vec![(
                "models.py",
                "import lakeplan\n\n@lakeplan.model()\ndef broken(trips=lakeplan.Model(\"trips\"):\n    return trips\n",
            )],
            vec!["models.py:4", "syntax"],
        ),
        (
            "nodecorator",
            vec![(
                "models.py",
                "import lakeplan\n\n@lakeplan.python(\"3.11\")\ndef orphan(trips=lakeplan.Model(\"trips\")):\n    return trips\n",
            )],
            vec!["models.py:4", "orphan", "neither @model nor @expectation"],
        ),
        (
            "cycle",
            vec![(
                "models.py",
                "import lakeplan\n\n@lakeplan.model()\ndef a(x=lakeplan.Model(\"b\")):\n    return x\n\n\
                 @lakeplan.model()\ndef b(x=lakeplan.Model(\"a\")):\n    return x\n",
            )],
            vec!["models.py:", "cycle", "a -> b"],
        ),
        (
            "unknowninput",
            vec![(
                "models.py",
                "import lakeplan\n\n\n@lakeplan.model()\ndef a(x=lakeplan.Model(\"no_such_table\")):\n    return x\n",
            )],
            vec!["models.py:5", "no_such_table", "neither a model"],
        ),
        (
            "duplicate",
            vec![
                ("models.py", OK_MODEL),
                ("a.sql", "SELECT fare FROM trips"),
            ],
            vec!["models.py:5", "a.sql", "'a'"],
        ),
        (
            "unknowncolumn",
            vec![(
                "models.py",
                "import lakeplan\n\n\n@lakeplan.model()\ndef a(x=lakeplan.Model(\"trips\", columns=[\"fare\", \"tip_amount\"])):\n    return x\n",
            )],
            vec!["models.py:5", "unknown column", "tip_amount"],
        ),
        (
            "unknowncolumn_schema",
            vec![(
                "models.py",
                "from typing import Annotated\nimport pyarrow\nimport lakeplan\n\n\
                 class Cols(lakeplan.TableSchema):\n    fare: lakeplan.Float64\n    tip_amount: lakeplan.Float64\n\n\n\
                 @lakeplan.model()\ndef a(x: Annotated[pyarrow.Table, lakeplan.Model(\"trips\", projection_schema=Cols)]):\n    return x\n",
            )],
            vec!["models.py:11", "tip_amount"],
        ),
        (
            "badfilter",
            vec![(
                "models.py",
                "import lakeplan\n\n\n@lakeplan.model()\ndef a(x=lakeplan.Model(\"trips\", columns=[\"fare\"], filter=\"fare >>> 3\")):\n    return x\n",
            )],
            vec!["models.py:5", "filter", "fare >>> 3"],
        ),
        (
            "unknownparam",
            vec![(
                "models.py",
                "import lakeplan\n\n\n@lakeplan.model()\ndef a(x=lakeplan.Model(\"trips\", columns=[\"fare\"]), r=lakeplan.Parameter(\"max_fare\")):\n    return x\n",
            )],
            vec!["models.py:5", "unknown parameter 'max_fare'"],
        ),
        (
            "sqlparam",
            vec![("s.sql", "SELECT fare\nFROM trips\nWHERE fare > $nope\n")],
            vec!["s.sql:3", "nope"],
        ),
        (
            "badyaml",
            vec![
                ("models.py", OK_MODEL),
                (
                    "lakeplan_project.yml",
                    "project:\n  id: 1\n  name: [oops\nparameters: {}\n",
                ),
            ],
            vec!["lakeplan_project.yml:"],
        ),
        (
            "badparamtype",
            vec![
                ("models.py", OK_MODEL),
                (
                    "lakeplan_project.yml",
                    "project:\n  name: p\nparameters:\n  n:\n    type: integer\n    default: 1\n",
                ),
            ],
            vec!["lakeplan_project.yml:", "integer"],
        ),
    ];
    for (name, files, msgs) in cases {
        let p = project(l, name, &files);
        assert_rejected(l, &p, &[], &msgs);
    }

    // both project file names: ambiguous
    let p = project(l, "both", &[("models.py", OK_MODEL)]);
    std::fs::write(Path::new(&p).join("bauplan_project.yml"), PROJECT_YML).unwrap();
    assert_rejected(l, &p, &[], &["lakeplan_project.yml", "bauplan_project.yml"]);

    // bad --param values
    let p = project(l, "params", &[("models.py", OK_MODEL)]);
    assert_rejected(l, &p, &["--param", "nope=1"], &["unknown parameter 'nope'"]);
    assert_rejected(l, &p, &["--param", "min_fare=abc"], &["min_fare", "abc"]);
    assert_rejected(l, &p, &["--param", "min_fare"], &["name=value"]);
    // the rejected runs left nothing behind
    assert!(l.json(&["job", "ls"]).as_array().unwrap().is_empty());
}

fn init_and_parameters(l: &Lake) {
    load_inputs(l);
    let dir = l.file("fresh");
    let d = dir.display().to_string();
    let files = l.json(&["init", &d, "--name", "fresh_demo"]);
    assert!(files.as_array().unwrap().len() >= 2, "{files}");
    assert!(dir.join("lakeplan_project.yml").is_file());
    let ls = l.json(&["parameter", "ls", "-p", &d]);
    assert!(ls.get("min_fare").is_some(), "{ls}");

    l.ok(&[
        "parameter",
        "set",
        "rate",
        "2.5",
        "-p",
        &d,
        "--type",
        "float",
        "--description",
        "a rate",
    ]);
    let ls = l.json(&["parameter", "ls", "-p", &d]);
    assert_eq!(ls["rate"]["type"], "float", "{ls}");
    assert!(l.ok(&["parameter", "ls", "-p", &d]).contains("a rate"));
    // a value that does not fit the type is refused
    let e = l.err(&["parameter", "set", "rate", "fast", "-p", &d]);
    assert!(e.contains("rate"), "{e}");
    l.ok(&["parameter", "set", "min_fare", "7.5", "-p", &d]);
    l.ok(&["parameter", "rm", "rate", "-p", &d]);
    let ls = l.json(&["parameter", "ls", "-p", &d]);
    assert!(ls.get("rate").is_none(), "{ls}");
    l.err(&["parameter", "rm", "rate", "-p", &d]);

    // the scaffold runs as written, with the new default
    let r = run_ok(l, &d, &[]);
    assert_eq!(r.job["parameters"]["min_fare"], "7.5");
    assert_eq!(r.job["project_name"], "fresh_demo");
    assert_eq!(
        l.count("SELECT count(*) FROM paid_trips", &[]),
        l.count("SELECT count(*) FROM trips WHERE fare >= 7.5", &[])
    );
}

fn detached_runs_can_be_followed_and_stopped(l: &Lake) {
    load_inputs(l);
    let p = example(l, "taxi");
    let before = l.head("main");
    let started = l.json(&["run", "-p", &p, "-d"]);
    let id = started["job_id"].as_str().unwrap().to_string();
    let job = wait_finished(l, &id);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_ne!(l.head("main"), before);
    assert!(job_log(l, &id).contains("[borough_summary]"));

    // a slow run, stopped while its function sleeps
    let before = l.head("main");
    let p = project(
        l,
        "sleepy",
        &[(
            "models.py",
            &model(
                "def sleepy(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
                 import time\n    print(\"sleeping\", flush=True)\n    time.sleep(30)\n    return trips\n",
            ),
        )],
    );
    let started = l.json(&["run", "-p", &p, "-d"]);
    let id = started["job_id"].as_str().unwrap().to_string();
    let t = Instant::now();
    while !job_log(l, &id).contains("[sleepy] sleeping") {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{}",
            job_log(l, &id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = l.json(&["job", "stop", &id]);
    assert_eq!(stopped["status"], "cancelled");
    let job = l.json(&["job", "get", &id]);
    assert_eq!(job["status"], "cancelled");
    let tx = job["tx_branch"].as_str().unwrap();
    assert!(job["error"].as_str().unwrap().contains(tx));
    // the killed run publishes nothing, not even later
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(l.head("main"), before);
    assert_eq!(l.json(&["job", "get", &id])["status"], "cancelled");
    assert!(!l.run(&["table", "get", "sleepy"]).status.success());
    let e = l.err(&["job", "stop", &id]);
    assert!(e.contains("already ended"), "{e}");

    // A run in another terminal's foreground (no process group of its own) stops as quietly:
    // no complaint of `kill` about the group it does not lead.
    if !l.is_remote() {
        let id = "0123456789abcdef0123456789abcdef";
        let mut child = l
            .cmd(&["run", "-p", &p, "--job-id", id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let log = || String::from_utf8_lossy(&l.run(&["job", "logs", id]).stdout).to_string();
        while !log().contains("[sleepy] sleeping") {
            assert!(t.elapsed() < Duration::from_secs(120), "{}", log());
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = l.run(&["job", "stop", id]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("No such process"), "{stderr}");
        let _ = child.wait();
    }
}

fn rerun_replays_the_stored_code_at_the_recorded_inputs(l: &Lake) {
    load_inputs(l);
    let p = example(l, "taxi");
    let r = run_ok(l, &p, &[]);
    let id = r.id();
    let jan = l.count("SELECT count(*) FROM clean_trips", &[]);

    // the project changes (a higher min_fare) and the data grows
    let yml = PathBuf::from(&p).join("lakeplan_project.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(&yml, text.replace("default: 5.0", "default: 25.0")).unwrap();
    run_ok(l, &p, &[]);
    assert!(l.count("SELECT count(*) FROM clean_trips", &[]) < jan);
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_02.csv"),
    ]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 4000);
    // ... and then the project folder is gone
    std::fs::remove_dir_all(&p).unwrap();

    let o = l.run(&["-O", "json", "rerun", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let job: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["rerun_of"].as_str().unwrap(), id);
    assert_eq!(job["code_hash"], r.job["code_hash"]);
    assert_eq!(job["input_commit"], r.job["input_commit"]);
    // the original code (min_fare 5) over the original January data
    assert_eq!(l.count("SELECT count(*) FROM clean_trips", &[]), jan);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 4000);
    assert!(run_branches(l).is_empty());
    assert_eq!(
        l.json(&["job", "get", job["id"].as_str().unwrap()])["status"],
        "succeeded"
    );
}

fn an_unchanged_append_model_is_not_appended_twice(l: &Lake) {
    load_inputs(l);
    let p = project(
        l,
        "append",
        &[(
            "models.py",
            "import lakeplan\n\n\n@lakeplan.model(materialization_strategy=\"APPEND\")\n\
             @lakeplan.python(\"3.11\")\n\
             def big_trips(trips=lakeplan.Model(\"trips\", columns=[\"trip_id\", \"fare\"], filter=\"fare > 40\")):\n    \
             return trips\n",
        )],
    );
    let once = l.count("SELECT count(*) FROM trips WHERE fare > 40", &[]);
    run_ok(l, &p, &[]);
    assert_eq!(l.count("SELECT count(*) FROM big_trips", &[]), once);
    let head = l.head("main");
    // unchanged: from the cache, and the table already holds that output
    let r = run_ok(l, &p, &[]);
    assert_eq!(r.status("big_trips"), "cached");
    assert!(r.job["result_commit"].is_null(), "{}", r.job);
    assert_eq!(l.head("main"), head);
    assert_eq!(l.count("SELECT count(*) FROM big_trips", &[]), once);
    // an explicit re-execution appends
    run_ok(l, &p, &["--no-cache"]);
    assert_eq!(l.count("SELECT count(*) FROM big_trips", &[]), 2 * once);
}

/// Shared memory is released while the run goes on: once every reader of an in-memory output
/// (and of a node's scan files) has finished, the files are gone. The last node of a chain
/// sees, inside its sandbox, that the first node's output and scan input were removed.
fn shared_memory_is_released_as_soon_as_nothing_reads_it(l: &Lake) {
    load_inputs(l);
    let src = "import glob, os, time\nimport lakeplan\n\n\n\
@lakeplan.model()\n\
def first(trips=lakeplan.Model(\"trips\", columns=[\"trip_id\", \"fare\"])):\n    return trips\n\n\n\
@lakeplan.model()\n\
def second(t=lakeplan.Model(\"first\")):\n    return t\n\n\n\
@lakeplan.model(materialization_strategy=\"REPLACE\")\n\
def third(t=lakeplan.Model(\"second\")):\n    \
pattern = [\"/dev/shm/lakeplan-*/out/first/output.arrow\", \"/dev/shm/lakeplan-*/in/first.*\"]\n    \
deadline = time.time() + 20\n    \
while any(glob.glob(p) for p in pattern) and time.time() < deadline:\n        \
time.sleep(0.05)\n    \
gone = not any(glob.glob(p) for p in pattern)\n    \
seen = bool(glob.glob(\"/dev/shm/lakeplan-*/out/second/output.arrow\"))\n    \
print(\"released\", gone, \"second still there\", seen)\n    \
return t\n";
    let p = project(l, "release", &[("models.py", src)]);
    let r = run_ok(l, &p, &["--no-cache"]);
    assert!(
        r.stderr.contains("released True second still there True"),
        "{}",
        r.stderr
    );
    assert_eq!(
        l.count("SELECT count(*) FROM third", &[]),
        l.count("SELECT count(*) FROM trips", &[])
    );
}

#[test]
fn a_worker_starts_while_its_inputs_are_computed_and_is_dropped_if_they_fail() {
    let l = lake();
    let models = |fail: bool| {
        format!(
            "import time\n\nimport lakeplan\n\n\n\
             @lakeplan.model()\n@lakeplan.python(\"3.11\")\n\
             def slow(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
             time.sleep(1.5)\n    {}\n    return trips\n\n\n\
             @lakeplan.model(materialization_strategy=\"REPLACE\")\n@lakeplan.python(\"3.11\")\n\
             def after(t=lakeplan.Model(\"slow\")):\n    return t\n",
            if fail {
                "raise RuntimeError(\"slow broke\")"
            } else {
                "pass"
            }
        )
    };
    let p = project(&l, "ahead", &[("models.py", &models(false))]);
    let r = run_ok(&l, &p, &["--workers", "2"]);
    let log = job_log(&l, &r.id());
    let ahead = log
        .find("[after] worker starting while its inputs are computed")
        .unwrap_or_else(|| panic!("no early start in:\n{log}"));
    let slow_done = log.find("[slow] succeeded").expect("slow finished");
    let after_started = log.find("[after] started").expect("after started");
    assert!(ahead < slow_done && slow_done < after_started, "{log}");
    assert_eq!(r.status("after"), "succeeded");
    assert_eq!(
        l.count("SELECT count(*) FROM after", &[]),
        l.count("SELECT count(*) FROM trips", &[])
    );

    // All cached: nothing starts early (a cached input is done at once).
    let r = run_ok(&l, &p, &["--workers", "2"]);
    assert_eq!(r.status("after"), "cached");
    assert!(!job_log(&l, &r.id()).contains("worker starting while"));

    // The input fails while the early worker waits: the run fails on the input's error, the
    // waiting node is not reported, and the run does not hang.
    let before = l.head("main");
    let p = project(&l, "ahead_fails", &[("models.py", &models(true))]);
    let r = run(&l, &p, &["--workers", "2", "--no-cache"]);
    assert_failed(&l, &r, &before, "node 'slow'");
    assert!(r.error().contains("slow broke"), "{}", r.error());
    let nodes = r.job["nodes"].as_array().expect("nodes");
    assert!(nodes.iter().all(|n| n["node"] != "after"), "{}", r.job);
}

/// The node cache keeps to its size: with room for almost nothing, each store removes the
/// entries before it, so one entry is left after a run, and runs still succeed with the same
/// result (a hit's output is pinned for the run that reads it). A size that is not a number
/// is an error naming the variable, before anything runs.
#[test]
fn the_node_cache_keeps_to_its_size() {
    let mut l = lake();
    let p = example(&l, "taxi");
    l.env
        .push(("LAKEPLAN_NODE_CACHE_MAX_GB".into(), "lots".into()));
    let before = l.head("main");
    let r = run(&l, &p, &[]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("LAKEPLAN_NODE_CACHE_MAX_GB='lots'"),
        "{}",
        r.stderr
    );
    assert_eq!(l.head("main"), before, "nothing ran");
    l.env.pop();
    l.env
        .push(("LAKEPLAN_NODE_CACHE_MAX_GB".into(), "0.000000001".into()));
    let entries = |l: &Lake| -> Vec<String> {
        std::fs::read_dir(l.path().join("cache/nodes"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    run_ok(&l, &p, &[]);
    let first = entries(&l);
    assert_eq!(
        first.iter().filter(|n| n.ends_with(".json")).count(),
        1,
        "{first:?}"
    );
    let r = run_ok(&l, &p, &[]);
    let cached = ["clean_trips", "zone_stats", "borough_summary"]
        .iter()
        .filter(|n| r.status(n) == "cached")
        .count();
    assert!(cached <= 1, "{}", r.job);
    assert_boroughs(&l, 5.0, 100);
    let second = entries(&l);
    assert_eq!(
        second.iter().filter(|n| n.ends_with(".json")).count(),
        1,
        "{second:?}"
    );
    let pins: Vec<_> = std::fs::read_dir(l.path().join("cache/nodes/.pins"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(pins.is_empty(), "a run's pins go with it: {pins:?}");
}

/// A function that declares no `@resources` runs under the machine's defaults
/// (`LAKEPLAN_FUNCTION_*`): past them it fails with an error naming the limit, and a default
/// that is not a number is an error naming the variable, before anything runs.
#[test]
fn functions_without_resources_run_under_the_machines_default_limits() {
    let mut l = lake();
    let before = l.head("main");
    let hog = project(
        &l,
        "hog",
        &[(
            "models.py",
            &model(
                "def hog(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
                 blobs = [bytearray(64 * 1024 * 1024) for _ in range(16)]\n    \
                 return trips\n",
            ),
        )],
    );
    let forker = project(
        &l,
        "forker",
        &[(
            "models.py",
            &model(
                "def forker(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    \
                 import os, time\n    \
                 for _ in range(100):\n        \
                 if os.fork() == 0:\n            \
                 time.sleep(30)\n            \
                 os._exit(0)\n    \
                 return trips\n",
            ),
        )],
    );
    // Under the built-in defaults (8 GB, 512 processes) both run.
    run_ok(&l, &hog, &[]);
    run_ok(&l, &forker, &[]);
    let before_limits = l.head("main");

    l.env
        .push(("LAKEPLAN_FUNCTION_MAX_PROCESSES".into(), "none".into()));
    let r = run(&l, &hog, &[]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("LAKEPLAN_FUNCTION_MAX_PROCESSES='none'"),
        "{}",
        r.stderr
    );
    assert_eq!(l.head("main"), before_limits, "nothing ran");
    l.env.pop();

    l.env
        .push(("LAKEPLAN_FUNCTION_MEMORY_GB".into(), "0.5".into()));
    l.env
        .push(("LAKEPLAN_FUNCTION_MAX_PROCESSES".into(), "32".into()));
    // (not from the cache, where the first runs left their outputs)
    let r = run(&l, &hog, &["--no-cache"]);
    assert_failed(&l, &r, &before_limits, "node 'hog'");
    assert!(r.error().contains("out of memory"), "{}", r.error());
    let r = run(&l, &forker, &["--no-cache"]);
    assert_failed(&l, &r, &before_limits, "node 'forker'");
    assert!(
        r.error().contains("limit of 32 processes")
            && r.error().contains("LAKEPLAN_FUNCTION_MAX_PROCESSES"),
        "{}",
        r.error()
    );
    assert_ne!(before, before_limits);
}
