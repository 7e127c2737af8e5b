use crate::util::{data, Lake};

in_both_modes!(
    every_ref_form_reads_its_own_state,
    one_query_compares_two_refs,
    output_formats,
    namespaces_select_the_default_schema,
    sql_errors_are_clear_and_writes_through_sql_are_refused,
    scans_report_row_counts_so_small_tables_are_the_join_build_side,
);

fn every_ref_form_reads_its_own_state(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let v1 = l.head("main");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_02.csv"),
    ]);
    let q = "SELECT count(*) FROM trips";
    assert_eq!(l.count(q, &[]), 4000);
    assert_eq!(l.count(q, &["-r", "main"]), 4000);
    assert_eq!(l.count(q, &["-r", &format!("main@{}", &v1[..8])]), 2000);
    assert_eq!(l.count(q, &["-r", &format!("@{v1}")]), 2000);
    assert_eq!(l.count(q, &["-r", &format!("main*{between}")]), 2000);
    l.ok(&["tag", "create", "v1", "--from-ref", &format!("@{v1}")]);
    assert_eq!(l.count(q, &["-r", "v1"]), 2000);
    l.err(&["query", q, "-r", "@0000000000"]);
    l.err(&["query", q, "-r", "main*1999-01-01T00:00:00Z"]);
    l.err(&["query", q, "-r", "main*not-a-time"]);
    l.err(&["query", q, "-r", "@abc"]);
}

fn one_query_compares_two_refs(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    l.ok(&["branch", "create", "dev"]);
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_02.csv"),
        "-b",
        "dev",
    ]);
    let rows = l.rows(
        r#"SELECT (SELECT count(*) FROM trips) AS here, (SELECT count(*) FROM "dev".default.trips) AS dev"#,
        &[],
    );
    assert_eq!(rows[0]["here"], 2000);
    assert_eq!(rows[0]["dev"], 4000);
    // rows on dev but not on main
    let n = l.count(
        r#"SELECT count(*) FROM "dev".default.trips d WHERE d.trip_id NOT IN (SELECT trip_id FROM lake.default.trips)"#,
        &[],
    );
    assert_eq!(n, 2000);
    l.err(&["query", r#"SELECT * FROM "nope".default.trips"#]);
}

fn output_formats(l: &Lake) {
    l.load("zones", &data("zones.jsonl"), &[]);
    let tty = l.ok(&["query", "SELECT zone_id FROM zones ORDER BY zone_id"]);
    assert!(tty.contains("| zone_id |"), "{tty}");
    assert!(tty.contains("first 10 rows"), "{tty}");
    assert_eq!(tty.matches("\n| ").count(), 11, "header + 10 rows: {tty}");
    let csv = l.ok(&[
        "-O",
        "csv",
        "query",
        "SELECT zone_id, name FROM zones ORDER BY zone_id",
        "--max-rows",
        "2",
    ]);
    assert_eq!(csv, "zone_id,name\n1,Zone 1\n2,Zone 2\n");
    let all = l.rows("SELECT zone_id FROM zones", &[]);
    assert_eq!(all.len(), 40);
    let empty = l.rows("SELECT zone_id FROM zones WHERE zone_id < 0", &[]);
    assert!(empty.is_empty());
    let sql = l.write(
        "q.sql",
        "SELECT count(*) AS n FROM zones WHERE borough = 'Queens'",
    );
    let n = l.json(&["query", "-f", &sql]);
    assert!(n[0]["n"].as_i64().unwrap() > 0);
    l.err(&["query", "SELECT 1", "-f", &sql]);
    l.err(&["query"]);
}

fn namespaces_select_the_default_schema(l: &Lake) {
    l.ok(&["namespace", "create", "bronze"]);
    l.load("zones", &data("zones.jsonl"), &["-n", "bronze"]);
    assert_eq!(l.count("SELECT count(*) FROM zones", &["-n", "bronze"]), 40);
    assert_eq!(l.count("SELECT count(*) FROM bronze.zones", &[]), 40);
    l.err(&["query", "SELECT count(*) FROM zones"]);
    let tables = l.json(&["table", "ls", "-n", "bronze"]);
    assert_eq!(tables[0]["name"], "zones");
    assert!(l
        .json(&["table", "ls", "-n", "default"])
        .as_array()
        .unwrap()
        .is_empty());
}

fn sql_errors_are_clear_and_writes_through_sql_are_refused(l: &Lake) {
    l.load("zones", &data("zones.jsonl"), &[]);
    let e = l.err(&["query", "SELEC 1"]);
    assert!(e.contains("SQL error"), "{e}");
    let e = l.err(&["query", "SELECT * FROM missing_table"]);
    assert!(e.contains("missing_table"), "{e}");
    let e = l.err(&["query", "SELECT nope FROM zones"]);
    assert!(e.contains("nope"), "{e}");
    let e = l.err(&["query", "INSERT INTO zones VALUES (1, 'x', 'y')"]);
    assert!(e.contains("read-only"), "{e}");
    l.err(&["query", "CREATE TABLE x AS SELECT 1"]);
    l.err(&["query", "DROP TABLE zones"]);
    assert_eq!(l.count("SELECT count(*) FROM zones", &[]), 40);
}

fn scans_report_row_counts_so_small_tables_are_the_join_build_side(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    l.load("zones", &data("zones.jsonl"), &[]);
    let plan = l.rows(
        "EXPLAIN SELECT z.borough, count(*) FROM trips t JOIN zones z ON t.pickup_zone = z.zone_id GROUP BY z.borough",
        &[],
    );
    let text = serde_json::to_string(&plan).unwrap();
    assert!(text.contains("HashJoinExec: mode=CollectLeft"), "{text}");
    assert_eq!(
        l.count(
            "SELECT count(*) FROM trips t JOIN zones z ON t.pickup_zone = z.zone_id",
            &[]
        ),
        2000
    );
}
