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
    a_runs_namespace_comes_from_the_run_the_project_the_lake_or_bauplan,
    bauplans_run_flags_are_checked_and_recorded_in_the_job,
    a_failed_run_keeps_the_models_that_finished_on_its_temporary_branch,
    a_bauplan_project_runs_unchanged_with_everything_at_once,
    plan_errors_name_the_project_folder_as_the_user_gave_it,
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
    secret_parameters_reach_only_the_functions_that_declare_them,
    declared_libraries_get_an_environment_they_import_with,
    a_worker_that_cannot_start_reports_the_python_error,
);

pub(crate) fn env_cache() -> String {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pipeline-envs")
        .display()
        .to_string()
}

/// Puts default.trips (2000 rows) and default.zones (40 rows) on main.
pub(crate) fn load_inputs(l: &Lake) {
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
pub(crate) fn project(l: &Lake, name: &str, files: &[(&str, &str)]) -> String {
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
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) job: Value,
    pub(crate) stderr: String,
}

impl Run {
    fn id(&self) -> String {
        self.job["id"].as_str().expect("job id").to_string()
    }

    /// Each node's status (succeeded, cached, failed, ...).
    pub(crate) fn status(&self, node: &str) -> String {
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

    pub(crate) fn error(&self) -> String {
        self.job["error"].as_str().unwrap_or_default().to_string()
    }
}

pub(crate) fn run(l: &Lake, project: &str, extra: &[&str]) -> Run {
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

pub(crate) fn run_ok(l: &Lake, project: &str, extra: &[&str]) -> Run {
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
pub(crate) fn assert_failed(l: &Lake, r: &Run, before: &str, msg: &str) {
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
pub(crate) fn assert_rejected(l: &Lake, project: &str, extra: &[&str], msgs: &[&str]) {
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

/// Bauplan's sample data lives in its default namespace, `bauplan`: trips there too.
fn load_bauplan_inputs(l: &Lake) {
    l.ok(&["namespace", "create", "bauplan"]);
    l.load("trips", &data("trips_2024_01.csv"), &["-n", "bauplan"]);
}

fn bauplan_style_project_runs_unchanged(l: &Lake) {
    load_bauplan_inputs(l);
    let p = example(l, "bauplan_style");
    assert!(Path::new(&p).join("bauplan_project.yml").is_file());
    let r = run_ok(l, &p, &[]);
    assert_eq!(r.job["namespace"], "bauplan", "{}", r.job);
    for n in ["vendor_trips", "big_fares", "one_vendor", "big_fare_count"] {
        assert_eq!(r.status(n), "succeeded", "{n}");
    }
    assert_eq!(
        l.count("SELECT count(*) FROM bauplan.vendor_trips", &[]),
        l.count(
            "SELECT count(*) FROM bauplan.trips WHERE vendor = 'acme'",
            &[]
        )
    );
    let rows = l.rows("SELECT * FROM bauplan.big_fare_count", &[]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["vendor"], "acme");
    assert_eq!(
        rows[0]["trips"].as_i64().unwrap(),
        l.count(
            "SELECT count(*) FROM bauplan.trips WHERE vendor = 'acme' AND fare > 30",
            &[]
        )
    );
    // Nothing landed in `default`.
    l.err(&["table", "get", "default.vendor_trips"]);
    let props = &l.json(&["commit", "main", "-n", "1"])[0]["properties"];
    assert_eq!(
        props["bpln_project_id"],
        "5e8a2c71-0d4b-4f3a-b6e9-1c2d3e4f5a60"
    );
    // another vendor through the project parameter
    run_ok(l, &p, &["--param", "vendor=zoom"]);
    assert_eq!(
        l.count("SELECT count(*) FROM bauplan.vendor_trips", &[]),
        l.count(
            "SELECT count(*) FROM bauplan.trips WHERE vendor = 'zoom'",
            &[]
        )
    );
}

/// A project written the way Bauplan projects are, using at once what issue 16 made work:
/// `bauplan_project.yml` with parameters of every type (a secret among them), `import
/// bauplan` in both decorator styles, a pinned `pandas==2.2.0`, `bauplan.store`, Bauplan's
/// mixed-case SQL names in a filter and a SQL model, bare names in Bauplan's namespace,
/// and Bauplan's run flags. Nothing in it is lakeplan-specific.
const BAUPLAN_SUITE_YML: &str = r#"project:
  id: 2b7c1d9e-4f3a-4e8b-9c0d-5a6b7c8d9e0f
  name: bauplan_suite
parameters:
  min_fare:
    type: float
    default: 5.0
  top_n:
    type: int
    default: 2
  keep_label:
    type: bool
    default: true
  label:
    type: str
    default: fares
"#;

const BAUPLAN_SUITE_PY: &str = r#"from typing import Annotated

import bauplan
import pyarrow as pa
from bauplan.store import load_obj, save_obj


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11", pip={"pandas": "2.2.0"})
def fareStats(
    trips=bauplan.Model("taxiTrips", columns=["PULocationID", "Fare_Amount"], filter="fare_amount >= 5"),
    min_fare=bauplan.Parameter("min_fare"),
    top_n=bauplan.Parameter("top_n"),
    api_token=bauplan.Parameter("api_token"),
):
    import pandas as pd

    assert pd.__version__ == "2.2.0", pd.__version__
    df = trips.to_pandas()
    df = df[df["Fare_Amount"] >= min_fare]
    stats = df.groupby("PULocationID", as_index=False)["Fare_Amount"].mean()
    stats = stats.sort_values("Fare_Amount", ascending=False).head(top_n)
    stats["token_len"] = len(api_token)
    save_obj("fare_model", {"mean": float(df["Fare_Amount"].mean()), "n": int(len(df))})
    return pa.Table.from_pandas(stats, preserve_index=False)


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def modelCheck(
    stats: Annotated[pa.Table, bauplan.Model("fareStats")],
    label: Annotated[str, bauplan.Parameter("label")],
    keep_label: Annotated[bool, bauplan.Parameter("keep_label")],
) -> pa.Table:
    m = load_obj("fare_model")
    return pa.table({
        "label": [label if keep_label else None],
        "mean": [m["mean"]],
        "n": [m["n"]],
        "rows": [stats.num_rows],
    })
"#;

fn a_bauplan_project_runs_unchanged_with_everything_at_once(l: &Lake) {
    let taxi = l.write(
        "taxi.csv",
        "PULocationID,Fare_Amount\n1,10.0\n1,20.0\n2,30.0\n3,4.0\n3,6.0\n4,50.0\n",
    );
    l.ok(&["namespace", "create", "bauplan"]);
    l.load("bauplan.taxiTrips", &taxi, &[]);
    let p = project(
        l,
        "bauplan_suite",
        &[
            ("bauplan_project.yml", BAUPLAN_SUITE_YML),
            ("models.py", BAUPLAN_SUITE_PY),
            (
                "topZones.sql",
                "-- bauplan: materialization_strategy=REPLACE\n\
                 SELECT PULocationID, Fare_Amount AS meanFare FROM FARESTATS ORDER BY meanFare DESC",
            ),
        ],
    );
    let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    l.ok(&[
        "parameter",
        "set",
        "api_token",
        &token,
        "--type",
        "secret",
        "-p",
        &p,
    ]);
    let r = run_ok(l, &p, &["-a", "team=ml", "--priority", "8"]);
    assert_eq!(r.job["namespace"], "bauplan", "{}", r.job);
    assert_eq!(r.job["priority"], 8);
    assert_eq!(r.job["args"]["team"], "ml");
    for n in ["fareStats", "modelCheck", "topZones"] {
        assert_eq!(r.status(n), "succeeded", "{n}");
    }
    // Fares >= 5 (the filter) and >= min_fare 5.0: zones 4 (50), 2 (30), 1 (15), 3 (6); top 2.
    let stats = l.rows(
        "SELECT PULocationID, Fare_Amount, token_len FROM bauplan.fareStats ORDER BY Fare_Amount DESC",
        &[],
    );
    assert_eq!(stats.len(), 2, "{stats:?}");
    assert_eq!(stats[0]["PULocationID"], 4);
    assert_eq!(stats[1]["PULocationID"], 2);
    assert_eq!(stats[0]["token_len"].as_i64(), Some(token.len() as i64));
    let check = &l.rows("SELECT * FROM bauplan.modelCheck", &[])[0];
    assert_eq!(check["label"], "fares");
    assert_eq!(check["n"], 5);
    assert_eq!(check["rows"], 2);
    assert!((f64_of(&check["mean"]) - 23.2).abs() < 1e-9, "{check}");
    let top = l.rows("SELECT * FROM bauplan.topZones", &[]);
    assert_eq!(top.len(), 2);
    // Columns keep the table's spelling; a new unquoted alias folds to lower case, as in
    // DataFusion (and so on Bauplan).
    assert_eq!(top[0]["PULocationID"], 4);
    assert_eq!(top[0]["meanfare"], 50.0);
    // The saved object is on main with the tables; the secret is nowhere in the job.
    assert!(!l
        .json(&["job", "get", &r.id()])
        .to_string()
        .contains(&token));
    assert!(!job_log(l, &r.id()).contains(&token));
    // Another set of parameter values, every type through --param.
    run_ok(
        l,
        &p,
        &[
            "--param",
            "top_n=1",
            "--param",
            "min_fare=40",
            "--param",
            "keep_label=false",
        ],
    );
    let check = &l.rows("SELECT * FROM bauplan.modelCheck", &[])[0];
    assert_eq!(check["label"], Value::Null);
    assert_eq!(check["n"], 1);
    assert_eq!(check["rows"], 1);
}

/// A run that fails after some models finished keeps them on its temporary branch (never the
/// target), for debugging, and its log says so; models that did not finish are not there.
fn a_failed_run_keeps_the_models_that_finished_on_its_temporary_branch(l: &Lake) {
    load_inputs(l);
    let before = l.head("main");
    let p = project(
        l,
        "partial",
        &[
            (
                "models.py",
                &model(
                    "def cheap(trips=lakeplan.Model(\"trips\", columns=[\"trip_id\", \"fare\"], filter=\"fare < 10\")):\n    \
                     return trips\n\n\n\
                     @lakeplan.model(materialization_strategy=\"REPLACE\")\n\
                     @lakeplan.python(\"3.11\")\n\
                     def broken(data=lakeplan.Model(\"cheap\")):\n    \
                     raise RuntimeError(\"boom after cheap\")\n",
                ),
            ),
            (
                "cheap_count.sql",
                "-- lakeplan: materialization_strategy=REPLACE\nSELECT count(*) AS n FROM cheap",
            ),
        ],
    );
    let r = run(l, &p, &["--workers", "1"]);
    assert_failed(l, &r, &before, "boom after cheap");
    let tx = r.job["tx_branch"].as_str().unwrap().to_string();
    assert_eq!(r.status("cheap"), "succeeded");
    assert_eq!(r.status("broken"), "failed");
    let want = l.count("SELECT count(*) FROM trips WHERE fare < 10", &[]);
    assert!(want > 0);
    assert_eq!(l.count("SELECT count(*) FROM cheap", &["-r", &tx]), want);
    // What did not finish (failed, or never started after the failure) is not there.
    l.err(&["table", "get", "broken", "-r", &tx]);
    let count_ran = r.job["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["node"] == "cheap_count" && n["status"] == "succeeded");
    if count_ran {
        assert_eq!(l.count("SELECT n FROM cheap_count", &["-r", &tx]), want);
    } else {
        l.err(&["table", "get", "cheap_count", "-r", &tx]);
    }
    // Never on the target.
    l.err(&["table", "get", "cheap"]);
    assert_eq!(l.head("main"), before);
    let log = job_log(l, &r.id());
    assert!(log.contains("the model(s) that finished (cheap"), "{log}");
    assert!(
        log.contains(&format!(
            "are on the temporary branch '{tx}' for inspection"
        )),
        "{log}"
    );
    // A failure before anything finished writes nothing to the temporary branch.
    let p = project(
        l,
        "early",
        &[(
            "models.py",
            &model(
                "def first(trips=lakeplan.Model(\"trips\")):\n    raise RuntimeError(\"early\")\n",
            ),
        )],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "early");
    let tx = r.job["tx_branch"].as_str().unwrap().to_string();
    assert_eq!(l.head(&tx), before, "nothing was committed to {tx}");
}

/// Bauplan's `-a/--arg KEY=VALUE` and `--priority 1-10`: checked, then recorded in the job,
/// for a run in the foreground and a detached one.
fn bauplans_run_flags_are_checked_and_recorded_in_the_job(l: &Lake) {
    load_inputs(l);
    let p = project(
        l,
        "flags",
        &[("fares.sql", "SELECT trip_id, fare FROM trips")],
    );
    let r = run_ok(
        l,
        &p,
        &["-a", "team=ml", "--arg", "note=a=b", "--priority", "7"],
    );
    let job = l.json(&["job", "get", &r.id()]);
    assert_eq!(
        job["args"],
        serde_json::json!({"team": "ml", "note": "a=b"}),
        "{job}"
    );
    assert_eq!(job["priority"], 7, "{job}");
    // Without them, none is recorded.
    let r = run_ok(l, &p, &[]);
    let job = l.json(&["job", "get", &r.id()]);
    assert_eq!(job["args"], serde_json::json!({}), "{job}");
    assert_eq!(job["priority"], Value::Null, "{job}");
    // Detached, they reach the job all the same.
    let started = l.json(&["run", "-p", &p, "-d", "-a", "k=v", "--priority", "1"]);
    let job = wait_finished(l, started["job_id"].as_str().unwrap());
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["args"], serde_json::json!({"k": "v"}), "{job}");
    assert_eq!(job["priority"], 1, "{job}");
    // Bad values are refused before anything runs.
    let jobs = l.json(&["job", "ls"]).as_array().unwrap().len();
    for (args, msg) in [
        (
            vec!["--priority", "11"],
            "priority 11: expected 1 (lowest) to 10 (highest)",
        ),
        (
            vec!["--priority", "0"],
            "priority 0: expected 1 (lowest) to 10 (highest)",
        ),
        (vec!["-a", "novalue"], "--arg 'novalue': expected KEY=VALUE"),
        (vec!["-a", "=v"], "--arg '=v': expected KEY=VALUE"),
    ] {
        let mut a = vec!["run", "-p", &p];
        a.extend_from_slice(&args);
        let e = l.err(&a);
        assert!(e.contains(msg), "{args:?}: {e}");
    }
    assert_eq!(l.json(&["job", "ls"]).as_array().unwrap().len(), jobs);
}

/// A plan error names files under the project folder as the user named it: `-p my_proj`
/// gives `my_proj/models.py:N`, `-p .` gives `./models.py:N`, in both modes.
fn plan_errors_name_the_project_folder_as_the_user_gave_it(l: &Lake) {
    load_inputs(l);
    let body = model("def bad(trips=lakeplan.Model(\"no_such_table\")):\n    return trips\n");
    project(l, "my_proj", &[("models.py", &body)]);
    let line = body
        .lines()
        .position(|x| x.contains("no_such_table"))
        .unwrap()
        + 1;
    let try_run = |cwd: &Path, dir: &str| {
        let o = l
            .cmd(&["run", "-p", dir])
            .current_dir(cwd)
            .output()
            .expect("run lakeplan");
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = try_run(l.dir.path(), "my_proj");
    assert!(
        e.starts_with(&format!(
            "error: my_proj/models.py:{line}: input 'no_such_table'"
        )),
        "{e}"
    );
    let e = try_run(l.dir.path(), "./my_proj/");
    assert!(
        e.starts_with(&format!("error: ./my_proj/models.py:{line}:")),
        "{e}"
    );
    let e = try_run(&l.file("my_proj"), ".");
    assert!(e.starts_with(&format!("error: ./models.py:{line}:")), "{e}");
    let abs = l.file("my_proj").display().to_string();
    let e = try_run(l.dir.path(), &abs);
    assert!(
        e.starts_with(&format!("error: {abs}/models.py:{line}:")),
        "{e}"
    );
    // A folder without a project file is named as given too.
    std::fs::create_dir_all(l.file("empty")).unwrap();
    let e = try_run(l.dir.path(), "empty");
    assert!(e.starts_with("error: no project file in empty:"), "{e}");
}

/// Where a run's bare names resolve and its models land: the run's `-n`, then the project
/// file's `project.namespace`, then the lake's `default_namespace` setting, then `bauplan`
/// for a Bauplan project, else `default`.
fn a_runs_namespace_comes_from_the_run_the_project_the_lake_or_bauplan(l: &Lake) {
    load_inputs(l);
    let before = l.head("main");
    // A Bauplan project over data in `default` is refused, saying where it looked and how
    // to reach the table it meant.
    let p = example(l, "bauplan_style");
    assert_rejected(
        l,
        &p,
        &[],
        &[
            "input 'trips' of 'vendor_trips' is neither a model of this project nor a table",
            "bare names are looked up in namespace 'bauplan': Bauplan's default namespace, for a Bauplan project",
            "default.trips exists: run with -n default",
        ],
    );
    // -n wins over the Bauplan default.
    let r = run_ok(l, &p, &["-n", "default"]);
    assert_eq!(r.job["namespace"], "default");
    assert!(l.count("SELECT count(*) FROM default.vendor_trips", &[]) > 0);
    assert!(job_log(l, &r.id()).contains("namespace 'default' (given to the run)"));
    l.ok(&["table", "rm", "default.vendor_trips"]);
    l.ok(&["table", "rm", "default.big_fare_count"]);

    // The project file names its namespace: a Bauplan project that says `default`.
    let yml = Path::new(&p).join("bauplan_project.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(
        &yml,
        text.replacen("project:\n", "project:\n  namespace: default\n", 1),
    )
    .unwrap();
    let r = run_ok(l, &p, &[]);
    assert_eq!(r.job["namespace"], "default");
    assert!(job_log(l, &r.id()).contains("the project file's project.namespace"));
    let bad = project(
        l,
        "bad_ns",
        &[
            (
                "lakeplan_project.yml",
                "project:\n  id: 11111111-2222-3333-4444-555555555555\n  namespace: no-dashes\n",
            ),
            ("m.sql", "SELECT 1 AS one"),
        ],
    );
    assert_rejected(l, &bad, &[], &["project.namespace", "no-dashes"]);

    // The lake's setting: bare names everywhere (queries, tables, runs) resolve there.
    assert_eq!(
        l.ok(&["lake", "config", "default_namespace"]).trim(),
        "(unset)"
    );
    let e = l.err(&["lake", "config", "default_namespace", "system"]);
    assert!(e.contains("reserved"), "{e}");
    let e = l.err(&["lake", "config", "default_ns", "x"]);
    assert!(e.contains("unknown lake setting 'default_ns'"), "{e}");
    l.ok(&["namespace", "create", "silver"]);
    l.ok(&["lake", "config", "default_namespace", "silver"]);
    assert_eq!(
        l.ok(&["lake", "config", "default_namespace"]).trim(),
        "silver"
    );
    let lp = project(
        l,
        "to_silver",
        &[(
            "fares.sql",
            "-- lakeplan: materialization_strategy=REPLACE\nSELECT trip_id, fare FROM default.trips",
        )],
    );
    let r = run_ok(l, &lp, &[]);
    assert_eq!(r.job["namespace"], "silver");
    // A bare name in a query is the lake's default namespace now.
    assert_eq!(
        l.count("SELECT count(*) FROM fares", &[]),
        l.count("SELECT count(*) FROM default.trips", &[])
    );
    assert!(l.ok(&["table", "get", "fares"]).contains("silver.fares"));
    // The lake's setting beats Bauplan's convention, and the project file beats the lake.
    std::fs::write(&yml, &text).unwrap();
    let r = run(l, &p, &[]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("namespace 'silver': the lake's default_namespace setting"),
        "{}",
        r.stderr
    );
    l.ok(&["lake", "config", "default_namespace", "--unset"]);
    assert_eq!(
        l.ok(&["lake", "config", "default_namespace"]).trim(),
        "(unset)"
    );
    l.err(&["table", "get", "fares"]);
    let audit = l.json(&["audit", "-n", "5"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["operation"] == "lake.config" && a["target"] == "default_namespace"),
        "{audit}"
    );
    assert_ne!(l.head("main"), before);
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

const SECRET_PROJECT_YML: &str =
    "project:\n  id: 7d0c5a1e-9b2f-4c3d-8e4f-a1b2c3d4e5f6\n  name: secrets\n  namespace: default\n";

/// Two functions, run side by side: one declares the secret and writes its length and SHA-256
/// into its output; the other does not, and scans what it can see (its environment, arguments,
/// `/dev/shm`, `/tmp` and the project folder) for anything shaped like the secret.
const SECRET_MODELS: &str = r#"
import hashlib, os, re, sys, time
import bauplan
import pyarrow as pa


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def with_secret(trips=bauplan.Model("trips", columns=["trip_id"]), api_key=bauplan.Parameter("api_key")):
    time.sleep(1.5)  # still running while the other one looks around
    return pa.table({"n": [len(api_key)], "sha": [hashlib.sha256(api_key.encode()).hexdigest()]})


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def without_secret(trips=bauplan.Model("trips", columns=["trip_id"])):
    time.sleep(0.5)
    shape = re.compile(rb"sk-[A-Za-z0-9]{24}")
    found = []
    for v in list(os.environ.values()) + sys.argv:
        found += shape.findall(v.encode())
    scanned = 0
    for root in ["/dev/shm", "/tmp", os.getcwd()]:
        for dirpath, _, files in os.walk(root):
            for f in files:
                try:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        data = fh.read(1 << 22)
                except OSError:
                    continue
                scanned += 1
                found += shape.findall(data)
    return pa.table({"found": [len(found)], "scanned": [scanned]})
"#;

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if ft.is_file() {
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn secret_parameters_reach_only_the_functions_that_declare_them(l: &Lake) {
    load_inputs(l);
    let p = project(
        l,
        "secrets",
        &[
            ("bauplan_project.yml", SECRET_PROJECT_YML),
            ("models.py", SECRET_MODELS),
        ],
    );
    // A fresh value each time, so that finding it anywhere means this test leaked it.
    let secret = format!("sk-{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
    let out = l.ok(&[
        "parameter",
        "set",
        "api_key",
        &secret,
        "--type",
        "secret",
        "-p",
        &p,
        "--description",
        "the vendor's key",
    ]);
    assert!(out.contains("secret") && !out.contains(&secret), "{out}");
    // The project file holds Bauplan's shape: type, ciphertext, key; never the value.
    let yml = std::fs::read_to_string(Path::new(&p).join("bauplan_project.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&yml).unwrap();
    let entry = &doc["parameters"]["api_key"];
    assert_eq!(entry["type"].as_str(), Some("secret"), "{yml}");
    assert!(
        entry["default"].as_str().is_some_and(|c| c.len() > 40),
        "{yml}"
    );
    assert!(
        entry["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("lakeplan:")),
        "{yml}"
    );
    assert!(!yml.contains(&secret), "{yml}");
    // Set again from stdin (out of shell history): a new ciphertext for the same value.
    let mut child = l
        .cmd(&["parameter", "set", "api_key", "--type", "secret", "-p", &p])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{secret}").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let yml = std::fs::read_to_string(Path::new(&p).join("bauplan_project.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&yml).unwrap();
    let entry = &doc["parameters"]["api_key"];
    assert!(!yml.contains(&secret), "{yml}");
    assert_eq!(
        entry["description"].as_str(),
        Some("the vendor's key"),
        "{yml}"
    );
    // `parameter ls` shows it masked.
    let ls = l.ok(&["parameter", "ls", "-p", &p]);
    assert!(ls.contains("<secret>") && !ls.contains(&secret), "{ls}");

    // The plan of a dry run shows the mask.
    let o = l.run(&["run", "-p", &p, "--dry-run"]);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{shown}");
    assert!(!shown.contains(&secret), "{shown}");

    let r = run_ok(l, &p, &[]);
    assert!(!r.stderr.contains(&secret) && !r.job.to_string().contains(&secret));
    // The declaring function got the value; the other saw nothing shaped like it.
    let got = &l.rows("SELECT n, sha FROM with_secret", &[])[0];
    assert_eq!(got["n"].as_i64(), Some(secret.len() as i64), "{got}");
    assert_eq!(
        got["sha"].as_str(),
        Some(sha256_hex(&secret).as_str()),
        "{got}"
    );
    let seen = &l.rows("SELECT found, scanned FROM without_secret", &[])[0];
    assert_eq!(seen["found"].as_i64(), Some(0), "{seen}");
    assert!(seen["scanned"].as_i64().unwrap() > 0, "{seen}");

    // The job record masks it; its log does not have it.
    let id = r.id();
    let job = l.json(&["job", "get", &id]);
    assert_eq!(job["parameters"]["api_key"], "<secret>", "{job}");
    let log = job_log(l, &id);
    assert!(!log.contains(&secret), "{log}");

    // A rerun opens it again from the stored project file (which holds only the ciphertext).
    let o = l.run(&["-O", "json", "rerun", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = &l.rows("SELECT sha FROM with_secret", &[])[0];
    assert_eq!(again["sha"].as_str(), Some(sha256_hex(&secret).as_str()));

    // Nowhere at rest: lake or server state (catalog, audit log, job records, logs, code
    // snapshots), the project folder, the client's home.
    let leaked = files_containing(l.dir.path(), secret.as_bytes());
    assert!(leaked.is_empty(), "the secret is in {leaked:?}");
    let audit = l.ok(&["-O", "json", "audit"]);
    assert!(
        !audit.contains(&secret) && audit.contains("parameter.seal"),
        "{audit}"
    );

    // --param cannot override it (it would land in shell history and request URLs), and the
    // refusal does not echo the value.
    let e = l.err(&["run", "-p", &p, "--param", "api_key=sk-other"]);
    assert!(
        e.contains("'api_key' is a secret") && !e.contains("sk-other"),
        "{e}"
    );

    // A changed ciphertext fails the run with the parameter's name, not a crash or a value.
    let entry_ct = entry["default"].as_str().unwrap().to_string();
    let mut broken = entry_ct.clone().into_bytes();
    let i = broken.len() / 2;
    broken[i] = if broken[i] == b'A' { b'B' } else { b'A' };
    let broken = String::from_utf8(broken).unwrap();
    std::fs::write(
        Path::new(&p).join("bauplan_project.yml"),
        yml.replace(&entry_ct, &broken),
    )
    .unwrap();
    let r = run(l, &p, &[]);
    assert!(!r.ok, "a changed ciphertext must fail");
    let all = format!("{}{}", r.stderr, r.job);
    assert!(all.contains("secret parameter 'api_key'"), "{all}");
    assert!(!all.contains(&secret), "{all}");

    // SQL models cannot use it: their SQL is logged and stored.
    std::fs::write(Path::new(&p).join("bauplan_project.yml"), &yml).unwrap();
    std::fs::write(
        Path::new(&p).join("leak.sql"),
        "SELECT trip_id FROM trips WHERE $api_key <> ''\n",
    )
    .unwrap();
    let e = l.err(&["run", "-p", &p, "--dry-run"]);
    assert!(
        e.contains("'api_key' is a secret") && e.contains("leak.sql") && !e.contains(&secret),
        "{e}"
    );
}

/// On a server, secrets are per tenant: a project file whose secret tenant `acme` sealed, copied
/// to tenant `globex`, fails there with the parameter's name, and no value.
#[test]
fn a_secret_sealed_for_one_tenant_does_not_open_for_another() {
    let (acme, _server) =
        crate::server::remote_lake(&[("LAKEPLAN_ENV_CACHE", crate::pipeline::env_cache())]);
    load_inputs(&acme);
    let p = project(
        &acme,
        "secrets",
        &[
            ("bauplan_project.yml", SECRET_PROJECT_YML),
            ("models.py", SECRET_MODELS),
        ],
    );
    let secret = format!("sk-{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
    acme.ok(&[
        "parameter",
        "set",
        "api_key",
        &secret,
        "--type",
        "secret",
        "-p",
        &p,
    ]);
    run_ok(&acme, &p, &[]);

    // Tenant globex on the same server, with its own key and profile.
    let meta = format!("sqlite:{}", acme.file("server").display());
    let admin = |args: &[&str]| {
        let mut a = vec!["admin"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--metastore", &meta]);
        acme.ok(&a)
    };
    admin(&["tenant", "create", "globex"]);
    admin(&["user", "create", "tester", "--tenant", "globex", "--admin"]);
    let key = admin(&[
        "key", "create", "--tenant", "globex", "--user", "tester", "--scope", "admin",
    ]);
    let home = acme.file("home");
    let config = home.join(".lakeplan/config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let endpoint = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("api_endpoint: "))
        .unwrap()
        .to_string();
    std::fs::write(
        &config,
        format!(
            "{text}  globex:\n    api_endpoint: {endpoint}\n    api_key: {}\n",
            key.trim()
        ),
    )
    .unwrap();
    let mut globex = Lake::new();
    globex.env = acme
        .env
        .iter()
        .filter(|(k, _)| k != "LAKEPLAN_PROFILE")
        .cloned()
        .collect();
    globex
        .env
        .push(("LAKEPLAN_PROFILE".into(), "globex".into()));
    load_inputs(&globex);
    let copy = globex.file("copied");
    copy_dir(Path::new(&p), &copy);
    let r = run(&globex, &copy.display().to_string(), &[]);
    assert!(!r.ok, "globex opened acme's secret");
    let all = format!("{}{}", r.stderr, r.job);
    assert!(
        all.contains("secret parameter 'api_key'") && all.contains("parameter set api_key"),
        "{all}"
    );
    assert!(!all.contains(&secret), "{all}");
    // Once globex seals its own value, the copy runs there.
    globex.ok(&[
        "parameter",
        "set",
        "api_key",
        "sk-globexglobexglobexglobex12",
        "--type",
        "secret",
        "-p",
        &copy.display().to_string(),
    ]);
    run_ok(&globex, &copy.display().to_string(), &[]);
    let got = &globex.rows("SELECT n FROM with_secret", &[])[0];
    assert_eq!(got["n"].as_i64(), Some(29), "{got}");
}

/// Functions pinning what Bauplan pipelines often pin: numpy 1.x, pandas 1.5.3 and 2.2.0, and a
/// pyarrow of their own. Each environment gets a pyarrow that imports with its numpy (pyarrow
/// 26 refuses numpy 1.x; pandas 1.5.3's and pyarrow 14's wheels refuse numpy 2), and Arrow
/// tables go in and out, from a scan and from an upstream function. Real installs from PyPI,
/// kept in the suite's environment cache.
const LIBRARIES_PY: &str = r#"import lakeplan
import pyarrow as pa


def with_versions(table, **libs):
    n = table.num_rows
    for name, version in sorted(libs.items()):
        table = table.append_column(name, pa.array([version] * n, pa.string()))
    return table.append_column("pyarrow", pa.array([pa.__version__] * n, pa.string()))


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11", pip={"numpy": "1.26.4"})
def numpy_fares(trips=lakeplan.Model("trips", columns=["trip_id", "fare"])):
    import numpy as np

    doubled = np.asarray(trips["fare"].to_numpy()) * 2
    out = pa.table({"trip_id": trips["trip_id"], "fare_x2": pa.array(doubled)})
    return with_versions(out, numpy=np.__version__)


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11", pip={"pandas": "1.5.3"})
def pandas153_fares(up=lakeplan.Model("numpy_fares", columns=["trip_id", "fare_x2"])):
    import numpy as np
    import pandas as pd

    df = up.to_pandas()
    df["fare_x4"] = df["fare_x2"] * 2
    df["pandas"] = pd.__version__
    df["numpy"] = np.__version__
    df["pyarrow"] = pa.__version__
    return df


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11", pip={"pandas": "2.2.0"})
def pandas220_vendors(trips=lakeplan.Model("trips", columns=["vendor", "fare"])):
    import pandas as pd

    by_vendor = trips.to_pandas().groupby("vendor").agg(trips=("fare", "size"), fare=("fare", "sum"))
    return with_versions(pa.Table.from_pandas(by_vendor.reset_index(), preserve_index=False), pandas=pd.__version__)


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11", pip={"pyarrow": "14.0.2"})
def own_pyarrow(trips=lakeplan.Model("trips", columns=["trip_id", "fare"])):
    return with_versions(trips)
"#;

fn declared_libraries_get_an_environment_they_import_with(l: &Lake) {
    load_inputs(l);
    let p = project(l, "libraries", &[("models.py", LIBRARIES_PY)]);
    let r = run_ok(l, &p, &[]);
    for n in [
        "numpy_fares",
        "pandas153_fares",
        "pandas220_vendors",
        "own_pyarrow",
    ] {
        assert_eq!(r.status(n), "succeeded", "{n}");
    }
    let trips = l.count("SELECT count(*) FROM trips", &[]);
    let one = |sql: &str| -> Value {
        let rows = l.rows(sql, &[]);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0].clone()
    };
    let major = |v: &Value| -> u64 {
        v.as_str()
            .and_then(|s| s.split('.').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("a version: {v}"))
    };
    // numpy 1.26.4 with the newest pyarrow that imports with it (pyarrow 26 does not).
    let v = one("SELECT DISTINCT numpy, pyarrow FROM numpy_fares");
    assert_eq!(v["numpy"], "1.26.4");
    assert!((10..26).contains(&major(&v["pyarrow"])), "{v}");
    assert_eq!(l.count("SELECT count(*) FROM numpy_fares", &[]), trips);
    // pandas 1.5.3 (whose wheels need numpy 1.x), fed by numpy_fares' output.
    let v = one("SELECT DISTINCT pandas, numpy, pyarrow FROM pandas153_fares");
    assert_eq!(v["pandas"], "1.5.3");
    assert_eq!(major(&v["numpy"]), 1, "{v}");
    let sums = one("SELECT (SELECT sum(fare) FROM trips) AS fare, \
         (SELECT sum(fare_x4) FROM pandas153_fares) AS x4, \
         (SELECT count(*) FROM pandas153_fares) AS n");
    assert_eq!(sums["n"].as_i64(), Some(trips));
    let (fare, x4) = (f64_of(&sums["fare"]), f64_of(&sums["x4"]));
    assert!(
        (x4 - 4.0 * fare).abs() < 1e-6 * fare.abs().max(1.0),
        "{sums}"
    );
    // pandas 2.2.0: a group-by whose result is an Arrow table.
    let v = one("SELECT DISTINCT pandas FROM pandas220_vendors");
    assert_eq!(v["pandas"], "2.2.0");
    let got = l.rows(
        "SELECT vendor, trips FROM pandas220_vendors ORDER BY vendor",
        &[],
    );
    let want = l.rows(
        "SELECT vendor, count(*) AS trips FROM trips GROUP BY vendor ORDER BY vendor",
        &[],
    );
    assert_eq!(got, want);
    // The function's own pyarrow wins.
    let v = one("SELECT DISTINCT pyarrow FROM own_pyarrow");
    assert_eq!(v["pyarrow"], "14.0.2");
    assert_eq!(l.count("SELECT count(*) FROM own_pyarrow", &[]), trips);

    // A declared pyarrow below the worker's floor, and one that cannot import with the
    // declared numpy, are refused with the reason.
    let before = l.head("main");
    let old = project(
        l,
        "old_pyarrow",
        &[(
            "models.py",
            &model(
                "def too_old(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    return trips\n",
            )
            .replace(
                "@lakeplan.python(\"3.11\")",
                "@lakeplan.python(\"3.11\", pip={\"pyarrow\": \"9.0.0\"})",
            ),
        )],
    );
    let r = run(l, &old, &[]);
    assert_failed(l, &r, &before, "node 'too_old'");
    assert!(
        r.error().contains("needs pyarrow 10.0.1 or newer"),
        "{}",
        r.error()
    );
    let clash = project(
        l,
        "clash",
        &[(
            "models.py",
            &model(
                "def clash(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    return trips\n",
            )
            .replace(
                "@lakeplan.python(\"3.11\")",
                "@lakeplan.python(\"3.11\", pip={\"pyarrow\": \"26.0.1\", \"numpy\": \"1.26.4\"})",
            ),
        )],
    );
    let r = run(l, &clash, &[]);
    assert_failed(l, &r, &before, "node 'clash'");
    assert!(
        r.error()
            .contains("pyarrow 26 and newer import only with numpy 2 or newer"),
        "{}",
        r.error()
    );
}

/// A worker that dies at its start, before it can write a result (here a project module named
/// `pyarrow.py` shadows pyarrow), fails the run with the Python error itself, not only an
/// exit code; the traceback is in the log.
fn a_worker_that_cannot_start_reports_the_python_error(l: &Lake) {
    load_inputs(l);
    let before = l.head("main");
    let p = project(
        l,
        "shadowed",
        &[
            (
                "models.py",
                &model(
                    "def shadowed(trips=lakeplan.Model(\"trips\", columns=[\"fare\"])):\n    return trips\n",
                ),
            ),
            ("pyarrow.py", "\"\"\"Helpers, in a file that shadows the pyarrow package.\"\"\"\n"),
        ],
    );
    let r = run(l, &p, &[]);
    assert_failed(l, &r, &before, "node 'shadowed'");
    let err = r.error();
    assert!(
        err.contains(
            "the worker failed to start: AttributeError: module 'pyarrow' has no attribute"
        ),
        "{err}"
    );
    assert!(err.contains("traceback in the log"), "{err}");
    assert!(!err.contains("without a result"), "{err}");
    let log = job_log(l, &r.id());
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
}
