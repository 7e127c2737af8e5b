use crate::util::{data, Lake};

in_both_modes!(
    every_ref_form_reads_its_own_state,
    one_query_compares_two_refs,
    output_formats,
    order_by_holds_in_every_output_format,
    deep_expressions_are_an_error_not_a_crash,
    a_query_stops_at_its_timeout,
    namespaces_select_the_default_schema,
    sql_errors_are_clear_and_writes_through_sql_are_refused,
    scans_report_row_counts_so_small_tables_are_the_join_build_side,
    unquoted_names_match_ignoring_case_quoted_names_exactly,
);

/// Bauplan's SQL names: `PULocationID` and `bauplan.amountStatsTable` unquoted find the
/// column and table so spelled; quoted names are exact; an unquoted name that matches two
/// columns ignoring case is an error naming both.
fn unquoted_names_match_ignoring_case_quoted_names_exactly(l: &Lake) {
    let taxi = l.write(
        "taxi.csv",
        "PULocationID,Fare_Amount\n1,10.5\n2,20.0\n2,30.0\n",
    );
    l.ok(&["namespace", "create", "bauplan"]);
    l.load("bauplan.amountStatsTable", &taxi, &[]);
    let rows = l.rows(
        "SELECT PULocationID, sum(Fare_Amount) AS Total FROM bauplan.amountStatsTable \
         GROUP BY PULocationID ORDER BY total DESC",
        &[],
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["PULocationID"], 2);
    assert_eq!(rows[0]["total"], 50.0);
    let err = l.err(&[
        "query",
        r#"SELECT "pulocationid" FROM bauplan.amountStatsTable"#,
    ]);
    assert!(err.contains("No field named pulocationid"), "{err}");
    let clash = l.write("clash.csv", "zone,Zone\n1,10\n");
    l.load("clash", &clash, &[]);
    let err = l.err(&["query", "SELECT zone FROM clash"]);
    assert!(
        err.contains("column name zone is ambiguous") && err.contains(r#""Zone", "zone""#),
        "{err}"
    );
    let rows = l.rows(r#"SELECT "zone", "Zone" FROM clash"#, &[]);
    assert_eq!(
        (rows[0]["zone"].as_i64(), rows[0]["Zone"].as_i64()),
        (Some(1), Some(10))
    );
}

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

/// `(vendor, trip_id)` pairs in the order they came, from each way `query` returns rows.
fn order_by_holds_in_every_output_format(l: &Lake) {
    // 16,000 rows in 8 data files: several batches, read in parallel.
    l.ok(&[
        "table",
        "create",
        "trips",
        "--search-uri",
        &data("trips_2024_02.csv"),
    ]);
    for _ in 0..4 {
        for f in ["trips_2024_01.csv", "trips_2024_02.csv"] {
            l.ok(&[
                "table",
                "import",
                "trips",
                "--search-uri",
                &data(f),
                "--import-duplicate-files",
            ]);
        }
    }
    let sorted = |rows: &[(String, i64)], what: &str| {
        assert_eq!(rows.len(), 16_000, "{what}");
        let bad = rows.windows(2).position(|w| w[1] < w[0]);
        assert_eq!(bad, None, "{what}: out of order at row {bad:?}");
    };
    let sql = "SELECT vendor, trip_id FROM trips ORDER BY vendor, trip_id";
    let csv = l.ok(&["-O", "csv", "query", sql, "--all-rows"]);
    let rows: Vec<(String, i64)> = csv
        .lines()
        .skip(1)
        .map(|line| {
            let (v, t) = line.split_once(',').expect("two columns");
            (v.to_string(), t.parse().expect("an id"))
        })
        .collect();
    sorted(&rows, "csv");
    let pairs = |sql: &str| -> Vec<(String, i64)> {
        l.rows(sql, &[])
            .iter()
            .map(|r| {
                (
                    r["vendor"].as_str().expect("vendor").to_string(),
                    r["trip_id"].as_i64().expect("trip_id"),
                )
            })
            .collect()
    };
    sorted(&pairs(sql), "json");
    let out = l.file("sorted.parquet");
    l.ok(&["query", sql, "--out", &out.display().to_string()]);
    let file = std::fs::File::open(&out).expect("the --out file");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut rows = Vec::new();
    for b in reader {
        let b = b.expect("a batch");
        let v = arrow::array::cast::as_string_array(b.column(0));
        let t = b
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("int64 ids");
        rows.extend((0..b.num_rows()).map(|i| (v.value(i).to_string(), t.value(i))));
    }
    sorted(&rows, "--out");
    // descending, with a limit
    let mut desc =
        pairs("SELECT vendor, trip_id FROM trips ORDER BY vendor DESC, trip_id DESC LIMIT 9000");
    assert_eq!(desc.len(), 9000);
    desc.reverse();
    let bad = desc.windows(2).position(|w| w[1] < w[0]);
    assert_eq!(bad, None, "DESC LIMIT: out of order");
}

/// `SELECT 1+1+...+1` with `terms` terms.
fn sum_of(terms: usize) -> String {
    format!("SELECT {} AS x", vec!["1"; terms].join("+"))
}

fn deep_expressions_are_an_error_not_a_crash(l: &Lake) {
    l.load("zones", &data("zones.jsonl"), &[]);
    // As deep as the limit allows: planned and run (on the server's worker in remote mode).
    let sql = l.write("deep.sql", &sum_of(1000));
    assert_eq!(l.count(&sql_of(&sql), &[]), 1000);
    // A filter as deep, pushed into the scan.
    let ors: Vec<String> = (0..990).map(|i| format!("zone_id = {i}")).collect();
    let filter = format!("SELECT count(*) FROM zones WHERE {}", ors.join(" OR "));
    assert_eq!(l.count(&filter, &[]), 40);
    // Deeper: a clear error, whatever the length (the last is ~200 KB of SQL).
    for terms in [1001, 3000, 100_000] {
        let f = l.write("deeper.sql", &sum_of(terms));
        let e = l.err(&["query", "-f", &f]);
        assert!(
            e.contains("more than 1000 levels deep"),
            "{terms} terms: {e}"
        );
    }
    // and the process that refused them still answers
    assert_eq!(l.count("SELECT count(*) FROM zones", &[]), 40);
}

fn a_query_stops_at_its_timeout(l: &Lake) {
    let endless = "SELECT count(*) FROM generate_series(1, 100000000000)";
    let started = std::time::Instant::now();
    let e = l.err(&["query", endless, "--timeout", "2"]);
    assert!(
        e.contains("longer than 2 s") && e.contains("--timeout"),
        "{e}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "stopped at its timeout, not run on: {:?}",
        started.elapsed()
    );
    // the default limit is there (and long enough for an ordinary query)
    assert_eq!(
        l.count("SELECT count(*) FROM generate_series(1, 1000)", &[]),
        1000
    );
    let help = l.ok(&["query", "--help"]);
    assert!(
        help.contains("--timeout") && help.contains("default: 300"),
        "{help}"
    );
}

fn sql_of(path: &str) -> String {
    std::fs::read_to_string(path).expect("the SQL file")
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
