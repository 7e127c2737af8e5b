//! `bauplan.store` (`save_obj` / `load_obj`) through `lakeplan run`: objects saved by a run are
//! committed to the branch it writes with its tables, seen by later runs there and by branches
//! made from it afterwards, never by others, and never published by a run that failed; an
//! import of a library module that does not exist is a planning error with file and line.

use serde_json::Value;

use crate::pipeline::{assert_failed, assert_rejected, load_inputs, project, run, run_ok};
use crate::util::Lake;

in_both_modes!(
    env = vec![("LAKEPLAN_ENV_CACHE", crate::pipeline::env_cache())];
    objects_persist_between_runs_on_their_branch,
    a_failed_run_publishes_no_object,
    an_unknown_library_module_is_a_planning_error,
);

/// Saves a dict and a class instance; a downstream node of the same run loads both.
pub(crate) const TRAIN: &str = r#"import bauplan
from bauplan.store import save_obj


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, x):
        return x * self.factor


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def fare_stats(trips=bauplan.Model("trips", columns=["fare"])):
    import pyarrow.compute as pc

    mean = pc.mean(trips["fare"]).as_py()
    save_obj("fare_model", {"mean": mean, "n": trips.num_rows})
    bauplan.store.save_obj("scaler", Scaler(2.0))
    return [{"mean": mean}]


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def scaled(stats=bauplan.Model("fare_stats")):
    from bauplan.store import load_obj

    return [{"doubled": load_obj("scaler").apply(load_obj("fare_model")["mean"])}]
"#;

/// Loads what [`TRAIN`] saved, in a later run.
pub(crate) const PREDICT: &str = r#"import bauplan


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def predicted(trips=bauplan.Model("trips", columns=["fare"])):
    from bauplan.store import load_obj

    m = load_obj("fare_model")
    return [{"mean": m["mean"], "n": m["n"]}]
"#;

// The projects import `bauplan`, whose default namespace is `bauplan`; the inputs are in `default`.
fn f64_at(rows: &[Value], col: &str) -> f64 {
    rows[0][col]
        .as_f64()
        .unwrap_or_else(|| panic!("{col} in {rows:?}"))
}

fn objects_persist_between_runs_on_their_branch(l: &Lake) {
    load_inputs(l);
    l.ok(&["branch", "create", "alice.dev"]);
    // Made before the save: it never sees the object.
    l.ok(&["branch", "create", "alice.other"]);
    let train = project(l, "train", &[("models.py", TRAIN)]);
    let predict = project(l, "predict", &[("models.py", PREDICT)]);
    let mean = l.rows("SELECT avg(fare) AS m FROM trips", &[]);
    let mean = f64_at(&mean, "m");

    let r = run_ok(l, &train, &["-r", "alice.dev", "-n", "default"]);
    assert_eq!(r.status("scaled"), "succeeded");
    let doubled = l.rows("SELECT doubled FROM scaled", &["-r", "alice.dev"]);
    assert!((f64_at(&doubled, "doubled") - 2.0 * mean).abs() < 1e-9);

    // Committed with the tables: the diff names them; table listings are unchanged.
    let diff = l.json(&["branch", "diff", "main", "alice.dev"]);
    let changes: Vec<(String, String)> = diff
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["table"].as_str().unwrap().to_string(),
                d["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for key in ["object:fare_model", "object:scaler"] {
        assert!(
            changes.contains(&(key.to_string(), "object_added".to_string())),
            "{changes:?}"
        );
    }
    assert!(l
        .ok(&["branch", "diff", "main", "alice.dev"])
        .contains("+ object:fare_model"));
    let tables = l.json(&["table", "ls", "-r", "alice.dev"]);
    let names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"scaled") && !names.iter().any(|n| n.contains("object")));
    assert_eq!(
        l.json(&["namespace", "ls", "-r", "alice.dev"]),
        serde_json::json!(["default"])
    );
    // SQL sees tables only.
    assert_eq!(
        l.count(
            "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '%object%' \
             OR table_name LIKE '%fare_model%'",
            &["-r", "alice.dev"]
        ),
        0
    );

    // A later run on the branch loads it.
    run_ok(l, &predict, &["-r", "alice.dev", "-n", "default"]);
    let rows = l.rows("SELECT * FROM predicted", &["-r", "alice.dev"]);
    assert!((f64_at(&rows, "mean") - mean).abs() < 1e-9);
    assert_eq!(
        rows[0]["n"].as_i64().unwrap(),
        l.count("SELECT count(*) FROM trips", &[])
    );

    // Unchanged objects: the loading node is a cache hit. The saving node always runs (a hit
    // would not save).
    assert_eq!(
        run_ok(l, &predict, &["-r", "alice.dev", "-n", "default"]).status("predicted"),
        "cached"
    );
    assert_eq!(
        run_ok(l, &train, &["-r", "alice.dev", "-n", "default"]).status("fare_stats"),
        "succeeded"
    );
    // A changed object: the node that loads it runs again (its cache key has the objects).
    let retrain = project(
        l,
        "retrain",
        &[(
            "models.py",
            r#"import bauplan


@bauplan.model()
@bauplan.python("3.11")
def retrain(trips=bauplan.Model("trips", columns=["fare"])):
    bauplan.store.save_obj("fare_model", {"mean": 1.5, "n": 1})
    return trips
"#,
        )],
    );
    let old = l.head("alice.dev");
    run_ok(l, &retrain, &["-r", "alice.dev", "-n", "default"]);
    let new = l.head("alice.dev");
    let r = run_ok(l, &predict, &["-r", "alice.dev", "-n", "default"]);
    assert_eq!(r.status("predicted"), "succeeded");
    let rows = l.rows("SELECT * FROM predicted", &["-r", "alice.dev"]);
    assert_eq!(
        (f64_at(&rows, "mean"), rows[0]["n"].as_i64()),
        (1.5, Some(1))
    );
    // The diff of the retraining names the changed object.
    let diff = l.json(&["branch", "diff", &format!("@{old}"), &format!("@{new}")]);
    assert!(
        diff.as_array()
            .unwrap()
            .iter()
            .any(|d| d["table"] == "object:fare_model" && d["change"] == "object_changed"),
        "{diff}"
    );

    // So does a run on a branch made from it afterwards...
    l.ok(&["branch", "create", "alice.later", "--from-ref", "alice.dev"]);
    run_ok(l, &predict, &["-r", "alice.later", "-n", "default"]);
    // ...from a copy of its own: the warehouse's folder of every branch's objects is not
    // mounted into the sandbox.
    let peek = project(
        l,
        "peek",
        &[(
            "models.py",
            &PREDICT.replace(
                "    m = load_obj(\"fare_model\")",
                "    mounts = open(\"/proc/self/mountinfo\").read()\n    \
                 assert \".lakeplan/objects\" not in mounts, mounts\n    \
                 m = load_obj(\"fare_model\")",
            ),
        )],
    );
    run_ok(l, &peek, &["-r", "alice.later", "-n", "default"]);

    // ...but not one on a branch made before the save, nor on main: a clear error in the
    // function.
    for branch in ["alice.other", "main"] {
        let r = run(l, &predict, &["-r", branch, "-n", "default"]);
        assert!(!r.ok, "{branch}: {}", r.stderr);
        assert!(
            r.error().contains(
                "raised UserObjectKeyNotExistsError: no object is saved under 'fare_model'"
            ),
            "{branch}: {}",
            r.error()
        );
    }

    // Merging the branch brings its objects along.
    l.ok(&["branch", "merge", "alice.dev", "--into", "main"]);
    run_ok(l, &predict, &["-r", "main", "-n", "default"]);
}

fn a_failed_run_publishes_no_object(l: &Lake) {
    load_inputs(l);
    let failing = project(
        l,
        "leaky",
        &[(
            "models.py",
            r#"import bauplan


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def saves(trips=bauplan.Model("trips", columns=["fare"])):
    bauplan.store.save_obj("fare_model", {"mean": -1.0, "n": 0})
    return trips


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def breaks(t=bauplan.Model("saves")):
    raise RuntimeError("late failure")
"#,
        )],
    );
    let before = l.head("main");
    let r = run(l, &failing, &["-n", "default"]);
    assert_failed(l, &r, &before, "RuntimeError: late failure");
    // Two nodes of one run cannot save one key.
    let twice = project(
        l,
        "twice",
        &[(
            "models.py",
            r#"import bauplan


@bauplan.model()
@bauplan.python("3.11")
def first(trips=bauplan.Model("trips", columns=["fare"])):
    bauplan.store.save_obj("fare_model", 1)
    return trips


@bauplan.model()
@bauplan.python("3.11")
def second(t=bauplan.Model("first")):
    bauplan.store.save_obj("fare_model", 2)
    return t
"#,
        )],
    );
    let r = run(l, &twice, &["-n", "default"]);
    assert_failed(
        l,
        &r,
        &before,
        "UserObjectWithKeyExistsError: object 'fare_model' was saved by 'first' in this run already",
    );
    // Nothing reached main: a run that loads the object finds none.
    let predict = project(l, "predict", &[("models.py", PREDICT)]);
    let r = run(l, &predict, &["-n", "default"]);
    assert!(!r.ok);
    assert!(
        r.error()
            .contains("UserObjectKeyNotExistsError: no object is saved under 'fare_model'"),
        "{}",
        r.error()
    );
}

fn an_unknown_library_module_is_a_planning_error(l: &Lake) {
    load_inputs(l);
    let p = project(
        l,
        "typo",
        &[(
            "models.py",
            "import bauplan\n\nfrom bauplan.stor import save_obj\n\n\n\
             @bauplan.model()\n@bauplan.python(\"3.11\")\n\
             def m(trips=bauplan.Model(\"trips\")):\n    return trips\n",
        )],
    );
    assert_rejected(
        l,
        &p,
        &[],
        &["models.py:3: module 'bauplan.stor' does not exist (known: bauplan.store,"],
    );
}
