//! Planner tests over whole projects written to temp dirs, against a mock catalog.

use std::collections::BTreeMap;
use std::path::Path;

use crate::*;

struct MockCatalog {
    ns: String,
    tables: BTreeMap<(String, String), TableInfo>,
}

impl MockCatalog {
    fn sample() -> MockCatalog {
        let mut tables = BTreeMap::new();
        let cols = |c: &[(&str, &str)]| {
            c.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        tables.insert(
            ("default".to_string(), "trips".to_string()),
            TableInfo {
                columns: cols(&[
                    ("trip_id", "Int64"),
                    ("vendor", "Utf8"),
                    ("pickup_at", "Timestamp(Microsecond, None)"),
                    ("pickup_zone", "Int64"),
                    ("dropoff_zone", "Int64"),
                    ("passengers", "Int64"),
                    ("distance_km", "Float64"),
                    ("fare", "Float64"),
                ]),
                snapshot_id: Some(100),
            },
        );
        tables.insert(
            ("default".to_string(), "zones".to_string()),
            TableInfo {
                columns: cols(&[("zone_id", "Int64"), ("borough", "Utf8"), ("name", "Utf8")]),
                snapshot_id: Some(200),
            },
        );
        tables.insert(
            ("raw".to_string(), "events".to_string()),
            TableInfo {
                columns: cols(&[("id", "Int64"), ("day", "Date32")]),
                snapshot_id: None,
            },
        );
        MockCatalog {
            ns: "default".into(),
            tables,
        }
    }

    fn set_snapshot(&mut self, table: &str, snap: i64) {
        if let Some(t) = self
            .tables
            .get_mut(&("default".to_string(), table.to_string()))
        {
            t.snapshot_id = Some(snap);
        }
    }
}

impl CatalogView for MockCatalog {
    fn table(&self, namespace: &str, name: &str) -> Option<TableInfo> {
        self.tables
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
    fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = self.tables.keys().map(|(n, _)| n.clone()).collect();
        out.dedup();
        out
    }
    fn table_names(&self, namespace: &str) -> Vec<String> {
        self.tables
            .keys()
            .filter(|(n, _)| n == namespace)
            .map(|(_, t)| t.clone())
            .collect()
    }
    fn ref_label(&self) -> String {
        "branch 'main'".into()
    }
}

const PROJECT: &str = "project:\n  name: t\nparameters:\n  rate: {type: float, default: 2.0}\n  day: {type: str, default: mon}\n";

fn write_project(dir: &Path, files: &[(&str, &str)]) {
    let has_project = files.iter().any(|(n, _)| n.contains("_project."));
    if !has_project {
        std::fs::write(dir.join("lakeplan_project.yml"), PROJECT).unwrap();
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn plan_files(files: &[(&str, &str)], cat: &MockCatalog) -> Result<Plan> {
    let d = tempfile::tempdir().unwrap();
    write_project(d.path(), files);
    load_and_plan(d.path(), cat, &[]).map(|(_, p)| p)
}

/// Plans in the mock's namespace, as `lakeplan run -n <ns>` does.
fn load_and_plan(
    dir: &Path,
    cat: &MockCatalog,
    overrides: &[(String, String)],
) -> Result<(Project, Plan)> {
    crate::load_and_plan(
        dir,
        cat,
        overrides,
        &NamespaceRule {
            explicit: Some(&cat.ns),
            lake: None,
        },
    )
}

#[track_caller]
fn reject(files: &[(&str, &str)], at: &str, want: &str) -> PipelineError {
    let e = plan_files(files, &MockCatalog::sample()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(at), "expected '{at}' in: {msg}");
    assert!(msg.contains(want), "expected '{want}' in: {msg}");
    e
}

/// Lines 1-4; functions start at line 5.
const HEAD: &str = "import bauplan\nfrom typing import Annotated\nimport pyarrow\n\n";

fn py(body: &str) -> String {
    format!("{HEAD}{body}")
}

#[test]
fn scaffolded_project_plans_and_renders() {
    let d = tempfile::tempdir().unwrap();
    let written = scaffold(d.path().join("proj"), "my demo").unwrap();
    assert_eq!(written.len(), 3);
    let (project, plan) =
        load_and_plan(&d.path().join("proj"), &MockCatalog::sample(), &[]).unwrap();
    assert_eq!(project.name.as_deref(), Some("my demo"));
    assert!(uuid::Uuid::parse_str(project.id.as_deref().unwrap()).is_ok());
    let names: Vec<_> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "paid_trips",
            "fares_by_zone",
            "trip_ids_are_unique",
            "trips_by_borough"
        ]
    );
    assert_eq!(plan.levels, vec![vec![0], vec![1, 2], vec![3]]);
    let expected = "\
plan at branch 'main', namespace default: 4 node(s) in 3 level(s)

tables
  (T) default.trips  snapshot 100
  (T) default.zones  snapshot 200
   |
   v
level 0
  [paid_trips]  python model, REPLACE  ./models.py:26
      <-- (T) default.trips  columns: trip_id, pickup_zone, distance_km, fare  filter: fare > 0
      <-- $min_fare = 5.0
   |
   v
level 1
  [fares_by_zone]  python model, NONE  ./models.py:42
      <-- [paid_trips]  columns: pickup_zone, fare  as trips
  [trip_ids_are_unique]  expectation  ./models.py:49
      <-- [paid_trips]  columns: trip_id  as data
   |
   v
level 2
  [trips_by_borough]  sql model, REPLACE  ./trips_by_borough.sql
      <-- [fares_by_zone]
      <-- (T) default.zones
      <-- $min_trips = 1
";
    assert_eq!(plan.render_ascii(), expected);
    // Rendering is deterministic.
    assert_eq!(plan.render_ascii(), plan.render_ascii());
    // A second scaffold into the same folder is refused.
    let e = scaffold(d.path().join("proj"), "again")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lakeplan_project.yml") && e.contains("already exists"),
        "{e}"
    );
}

#[test]
fn bauplan_project_with_both_styles_and_sql_headers() {
    let models = "\
import bauplan
import pyarrow
from typing import Annotated


class Cols(bauplan.TableSchema):
    trip_id: Annotated[bauplan.Int64 | None, bauplan.TableField(doc='id')]
    fare: bauplan.Float64 | None


@bauplan.model()
@bauplan.python('3.11', pip={'polars': '1.37'})
@bauplan.resources(cpus=2, memory='512MiB', timeout=60)
def old_style(trips=bauplan.Model('trips', columns=['trip_id', 'fare'], filter='fare > 3'), r=bauplan.Parameter('rate')):
    return trips


@bauplan.model(materialization_strategy='APPEND', internet_access=True)
def new_style(
    data: Annotated[pyarrow.Table, bauplan.Model('old_style', projection_schema=Cols)],
    day: Annotated[str, bauplan.Parameter('day')],
) -> Annotated[pyarrow.Table, Cols]:
    return data
";
    let sql = "-- bauplan: name = by_zone\n-- bauplan: materialization_strategy = REPLACE\nSELECT n.trip_id, z.borough FROM new_style n JOIN default.zones z ON n.trip_id = z.zone_id\n";
    let project = "project:\n  id: fdb13966-3b19-44d0-b0d7-928dfd332929\n  name: demo\nparameters:\n  rate: {type: float, default: 2}\n  day: {type: str, required: true}\n";
    let d = tempfile::tempdir().unwrap();
    write_project(
        d.path(),
        &[
            ("bauplan_project.yml", project),
            ("models.py", models),
            ("query_model.sql", sql),
        ],
    );
    let cat = MockCatalog::sample();
    let e = load_and_plan(d.path(), &cat, &[]).unwrap_err();
    assert!(matches!(e, PipelineError::ParameterRequired { .. }));
    let (p, plan) = load_and_plan(d.path(), &cat, &[("day".into(), "tue".into())]).unwrap();
    assert_eq!(
        p.id.as_deref(),
        Some("fdb13966-3b19-44d0-b0d7-928dfd332929")
    );

    let old = plan.node("old_style").unwrap();
    assert_eq!(old.kind, NodeKind::PythonModel);
    assert_eq!(old.python.as_deref(), Some("3.11"));
    assert_eq!(old.pip["polars"], "1.37");
    assert_eq!(old.resources.memory_bytes, Some(512 << 20));
    assert_eq!(old.resources.cpus, Some(2.0));
    assert_eq!(old.resources.timeout_secs, Some(60));
    assert_eq!(
        old.inputs[0].source,
        InputSource::Scan {
            namespace: "default".into(),
            table: "trips".into(),
            columns: Some(vec!["trip_id".into(), "fare".into()]),
            filter: Some("fare > 3".into()),
            snapshot_id: Some(100),
        }
    );
    assert_eq!(
        old.inputs[1].source,
        InputSource::Param {
            name: "rate".into(),
            value: ParamValue::Float(2.0)
        }
    );

    let new = plan.node("new_style").unwrap();
    assert_eq!(new.materialization, Materialization::Append);
    assert!(new.internet_access);
    assert_eq!(new.output_schema.as_ref().unwrap()[1].name, "fare");
    assert!(
        matches!(&new.inputs[0].source, InputSource::Upstream { node, columns: Some(c), .. } if node == "old_style" && c.len() == 2)
    );
    assert_eq!(
        new.inputs[1].source,
        InputSource::Param {
            name: "day".into(),
            value: ParamValue::Str("tue".into())
        }
    );

    let sqln = plan.node("by_zone").unwrap();
    assert_eq!(sqln.kind, NodeKind::SqlModel);
    assert_eq!(sqln.materialization, Materialization::Replace);
    assert!(sqln.sql.as_deref().unwrap().contains("JOIN default.zones"));
    assert!(
        matches!(&sqln.inputs[0].source, InputSource::Upstream { node, .. } if node == "new_style")
    );
    assert!(matches!(&sqln.inputs[1].source, InputSource::Scan { table, .. } if table == "zones"));
    assert_eq!(plan.levels.len(), 3);
}

#[test]
fn sql_model_with_ctes_and_defaults() {
    let plan = plan_files(
        &[
            (
                "zone_trips.sql",
                "WITH t AS (SELECT * FROM trips WHERE fare > $rate), zones AS (SELECT * FROM default.zones)\nSELECT zones.borough, count(*) FROM t JOIN zones ON t.pickup_zone = zones.zone_id\nLEFT JOIN raw.events e ON e.id = t.trip_id GROUP BY 1",
            ),
        ],
        &MockCatalog::sample(),
    )
    .unwrap();
    let n = &plan.nodes[0];
    assert_eq!(n.materialization, Materialization::None);
    let params: Vec<_> = n.inputs.iter().map(|i| i.param.as_str()).collect();
    assert_eq!(params, ["trips", "default.zones", "raw.events", "$rate"]);
    assert!(n.sql.as_deref().unwrap().contains("fare > 2.0"));
}

#[test]
fn syntax_errors_and_analyzer_problems_have_file_and_line() {
    reject(
        &[(
            "models.py",
            &py("@bauplan.model()\ndef f(x=bauplan.Model('trips')\n    return x\n"),
        )],
        "./models.py:6",
        "syntax error",
    );
    reject(
        &[(
            "models.py",
            &py("@bauplan.python('3.11')\ndef f():\n    pass\n"),
        )],
        "./models.py:6",
        "neither @model nor @expectation",
    );
    reject(
        &[("models.py", &py("@bauplan.model()\ndef f(x):\n    pass\n"))],
        "./models.py:6",
        "has no Model(...) or Parameter(...)",
    );
    reject(
        &[(
            "models.py",
            &py("T = 'trips'\n@bauplan.model()\ndef f(x=bauplan.Model(T)):\n    pass\n"),
        )],
        "./models.py:7",
        "must be a literal",
    );
}

#[test]
fn cycles_are_named() {
    let e = reject(
        &[(
            "models.py",
            &py("@bauplan.model()\ndef a(x=bauplan.Model('b')):\n    return x\n\n@bauplan.model()\ndef b(x=bauplan.Model('a')):\n    return x\n"),
        )],
        "./models.py:6",
        "Graph contains a cycle: a -> b -> a",
    );
    assert!(matches!(e, PipelineError::Cycle { .. }));
    // Through a SQL model.
    reject(
        &[
            (
                "models.py",
                &py("@bauplan.model()\ndef a(x=bauplan.Model('s')):\n    return x\n"),
            ),
            ("s.sql", "SELECT * FROM a"),
        ],
        "./models.py:6",
        "a -> s -> a",
    );
}

#[test]
fn model_named_like_a_table_it_reads_is_a_cycle() {
    let e = reject(
        &[(
            "models.py",
            &py("@bauplan.model()\ndef trips(\n    t=bauplan.Model('trips'),\n):\n    return t\n"),
        )],
        "./models.py:7",
        "Graph contains a cycle: trips -> trips",
    );
    assert!(e.to_string().contains("also a table"), "{e}");
    reject(
        &[("zones.sql", "SELECT *\nFROM default.zones")],
        "./zones.sql:2",
        "zones -> zones",
    );
}

#[test]
fn unknown_inputs_name_the_ref() {
    reject(
        &[(
            "models.py",
            &py("@bauplan.model()\ndef f(\n    x=bauplan.Model('nope'),\n):\n    return x\n"),
        )],
        "./models.py:7",
        "input 'nope' of 'f' is neither a model of this project nor a table at branch 'main'",
    );
    reject(
        &[("m.sql", "SELECT 1\nFROM other.trips")],
        "./m.sql:2",
        "input 'other.trips' of 'm' is neither",
    );
}

#[test]
fn duplicate_models_across_python_and_sql() {
    let models = py("@bauplan.model()\ndef m(x=bauplan.Model('trips')):\n    return x\n");
    let e = reject(
        &[("models.py", &models), ("m.sql", "SELECT * FROM trips")],
        "./models.py:6",
        "",
    );
    assert_eq!(
        e.to_string(),
        "Duplicate definition of 'm' in ./models.py:6 and ./m.sql"
    );
    // @model(name=...) collides too.
    reject(
        &[(
            "models.py",
            &py("@bauplan.model()\ndef m(x=bauplan.Model('trips')):\n    return x\n\n@bauplan.model(name='m')\ndef other(x=bauplan.Model('trips')):\n    return x\n"),
        )],
        "./models.py:6 and ./models.py:10",
        "Duplicate definition of 'm'",
    );
}

#[test]
fn unknown_columns_against_tables_and_upstream_schemas() {
    reject(
        &[("models.py", &py("@bauplan.model()\ndef f(\n    x=bauplan.Model('trips', columns=['fare', 'tip']),\n):\n    return x\n"))],
        "./models.py:7",
        "unknown column(s) 'tip' in input 'trips' of 'f'; table default.trips has:",
    );
    // projection_schema against a table.
    reject(
        &[(
            "models.py",
            &py("class C(bauplan.TableSchema):\n    fare: bauplan.Float64\n    tips: bauplan.Float64\n\n@bauplan.model()\ndef f(x: Annotated[pyarrow.Table, bauplan.Model('trips', projection_schema=C)]):\n    return x\n"),
        )],
        "./models.py:10",
        "unknown column(s) 'tips'",
    );
    // Against an upstream's output schema.
    let upstream = "class Out(bauplan.TableSchema):\n    fare: bauplan.Float64\n\n@bauplan.model()\ndef up(x=bauplan.Model('trips')) -> Annotated[pyarrow.Table, Out]:\n    return x\n\n@bauplan.model()\ndef down(x=bauplan.Model('up', columns=['trip_id'])):\n    return x\n";
    reject(
        &[("models.py", &py(upstream))],
        "./models.py:13",
        "model 'up' has: fare",
    );
    // An upstream without a schema (a SQL model) is not checked.
    let plan = plan_files(
        &[
            ("s.sql", "SELECT fare FROM trips"),
            ("models.py", &py("@bauplan.model()\ndef down(x=bauplan.Model('s', columns=['anything'], filter='whatever > 1')):\n    return x\n")),
        ],
        &MockCatalog::sample(),
    )
    .unwrap();
    assert_eq!(plan.nodes.len(), 2);
}

#[test]
fn bad_filters() {
    reject(
        &[("models.py", &py("@bauplan.model()\ndef f(x=bauplan.Model('trips', filter='fare >')):\n    return x\n"))],
        "./models.py:6",
        "bad filter \"fare >\" of 'f'",
    );
    reject(
        &[("models.py", &py("@bauplan.model()\ndef f(x=bauplan.Model('trips', filter='tip > 1 AND fare > 0')):\n    return x\n"))],
        "./models.py:6",
        "unknown column(s) tip",
    );
}

#[test]
fn unknown_and_valueless_parameters() {
    reject(
        &[("models.py", &py("@bauplan.model()\ndef f(x=bauplan.Model('trips'),\n      r=bauplan.Parameter('nope')):\n    return x\n"))],
        "./models.py:7",
        "'f' uses unknown parameter 'nope'; the project declares: day, rate",
    );
    reject(
        &[("m.sql", "SELECT *\nFROM trips WHERE fare > $nope")],
        "./m.sql:2",
        "unknown parameter 'nope'",
    );
    let d = tempfile::tempdir().unwrap();
    write_project(
        d.path(),
        &[
            ("lakeplan_project.yml", "parameters:\n  opt: {type: int}\n"),
            ("models.py", &py("@bauplan.model()\ndef f(x=bauplan.Model('trips'), o=bauplan.Parameter('opt')):\n    return x\n")),
        ],
    );
    let e = load_and_plan(d.path(), &MockCatalog::sample(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("./models.py:6") && e.contains("has no value"),
        "{e}"
    );
    assert!(load_and_plan(
        d.path(),
        &MockCatalog::sample(),
        &[("opt".into(), "3".into())]
    )
    .is_ok());
}

#[test]
fn expectations_cannot_be_consumed() {
    reject(
        &[(
            "models.py",
            &py("@bauplan.expectation()\ndef e(x=bauplan.Model('trips')):\n    return True\n\n@bauplan.model()\ndef m(x=bauplan.Model('e')):\n    return x\n"),
        )],
        "./models.py:10",
        "'e' is an expectation",
    );
}

#[test]
fn ref_pins_are_rejected() {
    reject(
        &[(
            "models.py",
            &py("@bauplan.model()\ndef f(x=bauplan.Model('trips', ref='dev')):\n    return x\n"),
        )],
        "./models.py:6",
        "ref='dev'",
    );
}

#[test]
fn materialization_options_are_validated() {
    let with = |decorator: &str| {
        py(&format!(
            "@bauplan.model({decorator})\ndef f(x=bauplan.Model('trips')):\n    return x\n"
        ))
    };
    reject(
        &[("models.py", &with("materialization_strategy='MERGE'"))],
        "./models.py:6",
        "is not one of NONE, REPLACE, APPEND, OVERWRITE_PARTITIONS",
    );
    reject(
        &[(
            "models.py",
            &with("materialization_strategy='OVERWRITE_PARTITIONS', overwrite_filter='vendor = 1'"),
        )],
        "./models.py:6",
        "without partitioned_by",
    );
    reject(
        &[(
            "models.py",
            &with("materialization_strategy='OVERWRITE_PARTITIONS', partitioned_by='vendor'"),
        )],
        "./models.py:6",
        "without an overwrite_filter",
    );
    reject(
        &[("models.py", &with("materialization_strategy='OVERWRITE_PARTITIONS', partitioned_by='vendor', overwrite_filter=\"fare = 1\""))],
        "./models.py:6",
        "only use partition columns (vendor), not fare",
    );
    reject(
        &[("models.py", &with("materialization_strategy='OVERWRITE_PARTITIONS', partitioned_by=['vendor'], overwrite_filter=\"vendor BETWEEN 'a' AND 'b'\""))],
        "./models.py:6",
        "BETWEEN is not allowed",
    );
    reject(
        &[("models.py", &with("materialization_strategy='OVERWRITE_PARTITIONS', partitioned_by=['vendor'], overwrite_filter=\"lower(vendor) = 'a'\""))],
        "./models.py:6",
        "function 'lower' is not allowed",
    );
    reject(
        &[(
            "models.py",
            &with("materialization_strategy='REPLACE', overwrite_filter=\"vendor = 'a'\""),
        )],
        "./models.py:6",
        "only used with OVERWRITE_PARTITIONS",
    );
    reject(
        &[("models.py", &with("cache_strategy='SOMETIMES'"))],
        "./models.py:6",
        "cache_strategy 'SOMETIMES'",
    );
    reject(
        &[("m.sql", "-- lakeplan: materialization_strategy=OVERWRITE_PARTITIONS\n-- lakeplan: partitioned_by=vendor\n-- lakeplan: overwrite_filter=fare > 1\nSELECT * FROM trips")],
        "./m.sql:3",
        "only use partition columns",
    );
    let plan = plan_files(
        &[("models.py", &with("materialization_strategy='overwrite_partitions', partitioned_by='vendor', overwrite_filter=\"vendor IN ('a', 'b') AND vendor != 'c'\""))],
        &MockCatalog::sample(),
    )
    .unwrap();
    assert_eq!(
        plan.nodes[0].materialization,
        Materialization::OverwritePartitions
    );
    assert_eq!(plan.nodes[0].partitioned_by, ["vendor"]);
}

#[test]
fn invalid_model_names_and_resources() {
    reject(
        &[("my-model.sql", "SELECT * FROM trips")],
        "./my-model.sql",
        "cannot name a model",
    );
    reject(
        &[("models.py", &py("@bauplan.model()\n@bauplan.resources(memory='lots')\ndef f(x=bauplan.Model('trips')):\n    return x\n"))],
        "./models.py:7",
        "@resources of 'f'",
    );
}

const CHAIN: &str = "\
import bauplan


def helper(t):
    return t


@bauplan.model()
def a(t=bauplan.Model('trips', columns=['fare'])):
    return helper(t)


@bauplan.model()
def b(t=bauplan.Model('a'), r=bauplan.Parameter('rate')):
    return t


@bauplan.model()
def z(t=bauplan.Model('zones')):
    return t
";

fn keys(
    files: &[(&str, &str)],
    cat: &MockCatalog,
    params: &[(String, String)],
) -> BTreeMap<String, String> {
    let d = tempfile::tempdir().unwrap();
    write_project(d.path(), files);
    let (_, plan) = load_and_plan(d.path(), cat, params).unwrap();
    plan.nodes
        .into_iter()
        .map(|n| (n.name, n.cache_key))
        .collect()
}

#[test]
fn cache_keys_follow_code_inputs_and_parameters() {
    let cat = MockCatalog::sample();
    let sql = ("s.sql", "SELECT * FROM b -- a comment\n");
    let base = keys(&[("models.py", CHAIN), sql], &cat, &[]);
    assert_eq!(base.len(), 4);

    // Same inputs: same keys (and they are deterministic).
    assert_eq!(base, keys(&[("models.py", CHAIN), sql], &cat, &[]));

    // Comments and blank lines change nothing, in Python and SQL.
    let commented = CHAIN.replace("def helper", "# helps\n\n\ndef helper");
    let sql2 = ("s.sql", "-- header comment\nSELECT *\n  FROM b\n");
    assert_eq!(base, keys(&[("models.py", &commented), sql2], &cat, &[]));

    // A helper's code change changes its user and everything downstream, not z.
    let changed = CHAIN.replace(
        "return t\n\n\n@bauplan.model()\ndef a",
        "return t.slice(0)\n\n\n@bauplan.model()\ndef a",
    );
    let k = keys(&[("models.py", &changed), sql], &cat, &[]);
    assert_ne!(k["a"], base["a"]);
    assert_ne!(k["b"], base["b"]);
    assert_ne!(k["s"], base["s"]);
    assert_eq!(k["z"], base["z"]);

    // A new snapshot of trips changes a, b and s; z reads zones and keeps its key.
    let mut cat2 = MockCatalog::sample();
    cat2.set_snapshot("trips", 101);
    let k = keys(&[("models.py", CHAIN), sql], &cat2, &[]);
    assert_ne!(k["a"], base["a"]);
    assert_ne!(k["b"], base["b"]);
    assert_ne!(k["s"], base["s"]);
    assert_eq!(k["z"], base["z"]);

    // A parameter counts only where it is used: b (and downstream s), not a or z.
    let k = keys(
        &[("models.py", CHAIN), sql],
        &cat,
        &[("rate".into(), "3".into())],
    );
    assert_eq!(k["a"], base["a"]);
    assert_ne!(k["b"], base["b"]);
    assert_ne!(k["s"], base["s"]);
    assert_eq!(k["z"], base["z"]);
    let k = keys(
        &[("models.py", CHAIN), sql],
        &cat,
        &[("day".into(), "fri".into())],
    );
    assert_eq!(k, base);

    // Pushdowns and materialization options are part of the key.
    let k = keys(
        &[
            (
                "models.py",
                &CHAIN.replace("columns=['fare']", "columns=['fare', 'vendor']"),
            ),
            sql,
        ],
        &cat,
        &[],
    );
    assert_ne!(k["a"], base["a"]);
    let k = keys(
        &[
            ("models.py", CHAIN),
            (
                "s.sql",
                "-- lakeplan: materialization_strategy=REPLACE\nSELECT * FROM b\n",
            ),
        ],
        &cat,
        &[],
    );
    assert_ne!(k["s"], base["s"]);
    assert_eq!(k["b"], base["b"]);
}

#[test]
fn an_import_of_a_library_module_or_name_that_does_not_exist_is_a_problem() {
    reject(
        &[(
            "models.py",
            "import bauplan\nfrom bauplan.stor import save_obj\n",
        )],
        "models.py:2",
        "module 'bauplan.stor' does not exist (known: bauplan.store,",
    );
    reject(
        &[("models.py", "import lakeplan.nope\n")],
        "models.py:1",
        "module 'lakeplan.nope' does not exist (known: ",
    );
    // Inside a function too, and a name the module does not have.
    reject(
        &[(
            "models.py",
            &py("@bauplan.model()\ndef f(x=bauplan.Model('trips')):\n    from bauplan.store import save_objs\n    return x\n"),
        )],
        "models.py:7",
        "'save_objs' is not in module 'bauplan.store' (known: save_obj,",
    );
    reject(
        &[("models.py", "from bauplan import Modle\n")],
        "models.py:1",
        "'Modle' is not in module 'bauplan' (known: Model,",
    );
    // What exists plans: the store, a submodule imported by name, the client's modules.
    let ok = py("from bauplan.store import save_obj, load_obj\nfrom bauplan import store, Client\nimport bauplan.exceptions\n\n@bauplan.model()\ndef f(x=bauplan.Model('trips')):\n    return x\n");
    plan_files(&[("models.py", &ok)], &MockCatalog::sample()).unwrap();
}

#[test]
fn sql_models_and_filters_find_names_ignoring_case_unless_quoted() {
    let mut cat = MockCatalog::sample();
    let info = |cols: &[&str]| TableInfo {
        columns: cols
            .iter()
            .map(|c| (c.to_string(), "Int64".into()))
            .collect(),
        snapshot_id: Some(1),
    };
    cat.tables.insert(
        ("Bauplan".into(), "taxiTrips".into()),
        info(&["PULocationID", "Fare_Amount"]),
    );
    cat.tables
        .insert(("default".into(), "Zones".into()), info(&["x"]));
    let plan = plan_files(
        &[
            ("models.py", &py("@bauplan.model()\ndef amountStats(t=bauplan.Model('Bauplan.taxiTrips', filter='pulocationid > 5 AND \"Fare_Amount\" > 0')):\n    return t\n")),
            ("top.sql", "SELECT PULocationID FROM AMOUNTSTATS JOIN bauplan.TAXITRIPS USING (PULocationID)"),
        ],
        &cat,
    )
    .unwrap();
    let top = plan.nodes.iter().find(|n| n.name == "top").unwrap();
    let sources: Vec<String> = top
        .inputs
        .iter()
        .map(|i| match &i.source {
            InputSource::Upstream { node, .. } => format!("model {node}"),
            InputSource::Scan {
                namespace, table, ..
            } => format!("table {namespace}.{table}"),
            InputSource::Param { name, .. } => name.clone(),
        })
        .collect();
    assert_eq!(sources, ["model amountStats", "table Bauplan.taxiTrips"]);
    // quoted names are exact
    let plan_with = |files: &[(&str, &str)]| plan_files(files, &cat);
    let err = plan_with(&[("top.sql", "SELECT 1 FROM \"bauplan\".taxitrips")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("is neither a model"), "{err}");
    // `zones` and `Zones` both exist: an unquoted `ZONES` is ambiguous, a quoted one exact
    let err = plan_with(&[("top.sql", "SELECT * FROM ZONES")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("./top.sql:1") && err.contains("\"Zones\", \"zones\""),
        "{err}"
    );
    assert!(plan_with(&[("top.sql", "SELECT * FROM \"Zones\"")]).is_ok());
    let err = plan_with(&[("models.py", &py("@bauplan.model()\ndef f(t=bauplan.Model('Bauplan.taxiTrips', filter='\"fare_amount\" > 0')):\n    return t\n"))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown column(s) fare_amount"), "{err}");
}
