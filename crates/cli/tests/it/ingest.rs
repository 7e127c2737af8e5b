use crate::util::{data, Lake};

in_both_modes!(
    csv_jsonl_and_parquet_import,
    a_folder_or_glob_imports_many_files_in_one_commit,
    schema_evolves_by_iceberg_rules,
    an_incompatible_file_is_an_error_naming_file_and_column_and_nothing_is_committed,
    files_already_imported_are_skipped_unless_asked,
    partitioned_tables_prune_files,
    create_plan_lists_conflicts_and_apply_uses_the_edited_plan,
    replace_makes_a_new_table_version,
    jsonl_values_of_mixed_types_import_into_the_string_column_create_infers,
);

/// `table create` infers a string column for values of mixed types, and the README says any
/// value converts to a string: the import takes the numbers and booleans as their text, and a
/// value the inferred type cannot take names its line.
fn jsonl_values_of_mixed_types_import_into_the_string_column_create_infers(l: &Lake) {
    let mixed = l.write(
        "mixed.jsonl",
        "{\"id\": 1, \"v\": \"x\"}\n{\"id\": 2, \"v\": 1}\n{\"id\": 3, \"v\": true}\n{\"id\": 4, \"v\": 2.5}\n",
    );
    l.load("mixed", &mixed, &[]);
    let info = l.json(&["table", "get", "mixed"]);
    assert_eq!(info["fields"][1]["type"], "string");
    let rows = l.rows("SELECT v FROM mixed ORDER BY id", &[]);
    let v: Vec<&str> = rows.iter().map(|r| r["v"].as_str().unwrap()).collect();
    assert_eq!(v, ["x", "1", "true", "2.5"]);

    // Numbers into a string column of an existing table, from a file of numbers only.
    let numbers = l.write("numbers.jsonl", "{\"id\": 5, \"v\": 7}\n");
    l.ok(&["table", "import", "mixed", "--search-uri", &numbers]);
    assert_eq!(l.count("SELECT count(*) FROM mixed WHERE v = '7'", &[]), 1);

    // A value the file's inferred type cannot take (an object where a string was inferred).
    let head = l.head("main");
    let object = l.write(
        "object.jsonl",
        "{\"id\": 6, \"v\": \"a\"}\n{\"id\": 7, \"v\": \"b\"}\n{\"id\": 8, \"v\": {\"k\": 1}}\n",
    );
    let o = l.run(&["table", "import", "mixed", "--search-uri", &object]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("object.jsonl: line 3"),
        "error names file and line: {e}"
    );
    assert_eq!(l.head("main"), head);
}

fn csv_jsonl_and_parquet_import(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    l.load("zones", &data("zones.jsonl"), &[]);
    assert_eq!(
        l.count("SELECT count(*) FROM zones WHERE borough IS NOT NULL", &[]),
        40
    );
    // a Parquet file written by lakeplan itself, re-imported as a new table
    let pq = l.file("jan.parquet");
    l.ok(&[
        "query",
        "SELECT * FROM trips WHERE vendor = 'acme'",
        "--out",
        pq.to_str().unwrap(),
    ]);
    l.load("acme", pq.to_str().unwrap(), &[]);
    assert_eq!(
        l.count("SELECT count(*) FROM acme", &[]),
        l.count("SELECT count(*) FROM trips WHERE vendor = 'acme'", &[])
    );
    // semicolon-delimited CSV with a .tsv-free extension is sniffed
    let semi = l.write("semi.csv", "a;b;c\n1;x;2.5\n2;y;3.5\n");
    l.load("semi", &semi, &[]);
    let rows = l.rows("SELECT a, b, c FROM semi ORDER BY a", &[]);
    assert_eq!(rows[1]["b"], "y");
    assert_eq!(rows[1]["c"], 3.5);
    let info = l.json(&["table", "get", "semi"]);
    let types: Vec<&str> = info["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["long", "string", "double"]);
    assert_eq!(info["fields"][0]["id"], 1);
    assert_eq!(info["records"], 2);
    assert_eq!(info["snapshots"], 1);
    assert!(info["metadata_location"]
        .as_str()
        .unwrap()
        .ends_with(".metadata.json"));
}

fn a_folder_or_glob_imports_many_files_in_one_commit(l: &Lake) {
    let dir = l.file("parts");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..6 {
        let body: String = (0..50)
            .map(|j| format!("{},{}\n", i * 100 + j, i))
            .collect();
        std::fs::write(dir.join(format!("p{i}.csv")), format!("id,part\n{body}")).unwrap();
    }
    std::fs::write(dir.join("README.md"), "not data").unwrap();
    let d = dir.display().to_string();
    l.ok(&["table", "create", "parts", "--search-uri", &d]);
    let before = l.log_len("main");
    let r = l.json(&[
        "table",
        "import",
        "parts",
        "--search-uri",
        &format!("{d}/*.csv"),
    ]);
    assert_eq!(r["report"]["imported"].as_array().unwrap().len(), 6);
    assert_eq!(r["report"]["rows"], 300);
    assert_eq!(l.log_len("main"), before + 1, "one commit for all files");
    assert_eq!(l.count("SELECT count(DISTINCT part) FROM parts", &[]), 6);
}

fn schema_evolves_by_iceberg_rules(l: &Lake) {
    // int32 column first, then a file where it is int64 and a new column appears
    let narrow = l.file("narrow.parquet");
    let wide = l.file("wide.parquet");
    l.load("seed", &l.write("seed.csv", "x\n1\n"), &[]);
    l.ok(&[
        "query",
        "SELECT CAST(1 AS INT) AS id, 'a' AS name FROM seed",
        "--out",
        narrow.to_str().unwrap(),
    ]);
    l.ok(&[
        "query",
        "SELECT CAST(5000000000 AS BIGINT) AS id, 'b' AS name, 1.5 AS score FROM seed",
        "--out",
        wide.to_str().unwrap(),
    ]);
    l.load("t", narrow.to_str().unwrap(), &[]);
    assert_eq!(l.json(&["table", "get", "t"])["fields"][0]["type"], "int");
    let r = l.json(&[
        "table",
        "import",
        "t",
        "--search-uri",
        wide.to_str().unwrap(),
    ]);
    let changes = r["report"]["schema_changes"].to_string();
    assert!(
        changes.contains("widen column 'id' from int to long"),
        "{changes}"
    );
    assert!(changes.contains("add column 'score'"), "{changes}");
    let info = l.json(&["table", "get", "t"]);
    assert_eq!(info["fields"][0]["type"], "long");
    assert_eq!(info["fields"][0]["id"], 1, "field ids are kept");
    assert_eq!(info["fields"][2]["name"], "score");
    assert_eq!(info["fields"][2]["id"], 3);
    let rows = l.rows("SELECT id, name, score FROM t ORDER BY id", &[]);
    assert_eq!(rows[0]["id"], 1);
    assert!(rows[0]["score"].is_null());
    assert_eq!(rows[1]["id"], 5000000000i64);
    assert_eq!(rows[1]["score"], 1.5);
    // reading the old commit still sees the old schema
    let first_import = l.json(&["commit", "--message", "narrow"])[0]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let old = l.rows("SELECT * FROM t", &["-r", &format!("@{first_import}")]);
    assert_eq!(old[0].as_object().unwrap().len(), 2);
}

fn an_incompatible_file_is_an_error_naming_file_and_column_and_nothing_is_committed(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let bad = l.write("bad.csv", "trip_id,vendor\nnot-a-number,acme\n");
    let head = l.head("main");
    let e = l.err(&["table", "import", "trips", "--search-uri", &bad]);
    assert!(e.contains("bad.csv") && e.contains("trip_id"), "{e}");
    assert_eq!(l.head("main"), head);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 2000);

    // --continue-on-error imports the good files and reports every skipped one
    let dir = l.file("mixed");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(data("trips_2024_02.csv"), dir.join("a.csv")).unwrap();
    std::fs::copy(&bad, dir.join("b.csv")).unwrap();
    std::fs::write(dir.join("c.csv"), "").unwrap();
    let d = dir.display().to_string();
    l.err(&["table", "import", "trips", "--search-uri", &d]);
    assert_eq!(l.head("main"), head);
    let r = l.json(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &d,
        "--continue-on-error",
    ]);
    let skipped = r["report"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("b.csv"));
    assert!(skipped[1]["reason"].as_str().unwrap().contains("empty"));
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 4000);
}

fn files_already_imported_are_skipped_unless_asked(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let head = l.head("main");
    let r = l.json(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_01.csv"),
    ]);
    assert_eq!(r["report"]["duplicates"].as_array().unwrap().len(), 1);
    assert_eq!(
        r["commit"]["hash"],
        serde_json::Value::Null,
        "nothing to commit"
    );
    assert_eq!(l.head("main"), head);
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_01.csv"),
        "--import-duplicate-files",
    ]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 4000);
}

fn partitioned_tables_prune_files(l: &Lake) {
    l.ok(&[
        "table",
        "create",
        "trips",
        "--search-uri",
        &data("trips_2024_01.csv"),
        "--partitioned-by",
        "vendor, day(pickup_at)",
    ]);
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("trips_2024_01.csv"),
    ]);
    let info = l.json(&["table", "get", "trips"]);
    let parts = info["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1]["transform"], "day");
    assert!(
        info["data_files"].as_u64().unwrap() > 3 * 20,
        "one file per vendor and day"
    );
    assert_eq!(
        l.count("SELECT count(*) FROM trips WHERE vendor = 'acme'", &[]),
        660
    );
    let plan = l.rows(
        "EXPLAIN SELECT count(*) FROM trips WHERE vendor = 'acme'",
        &[],
    );
    let text = serde_json::to_string(&plan).unwrap();
    assert!(
        text.contains("predicate"),
        "filter pushed into the Iceberg scan: {text}"
    );
    l.err(&[
        "table",
        "create",
        "t2",
        "--search-uri",
        &data("trips_2024_01.csv"),
        "--partitioned-by",
        "nope",
    ]);
    l.err(&[
        "table",
        "create",
        "t3",
        "--search-uri",
        &data("trips_2024_01.csv"),
        "--partitioned-by",
        "day(vendor)",
    ]);
}

fn create_plan_lists_conflicts_and_apply_uses_the_edited_plan(l: &Lake) {
    let a = l.write("a.csv", "id,v\n1,10\n");
    let b = l.write("b.csv", "id,v\nx,2.5\n");
    let glob = format!("{}/*.csv", l.dir.path().display());
    let plan_path = l.file("plan.yml");
    l.ok(&[
        "table",
        "create-plan",
        "t",
        "--search-uri",
        &glob,
        "--save-plan",
        plan_path.to_str().unwrap(),
    ]);
    let plan = std::fs::read_to_string(&plan_path).unwrap();
    assert!(
        plan.contains("conflicts:") && plan.contains("column: id"),
        "{plan}"
    );
    assert!(plan.contains(&a) && plan.contains(&b));
    let e = l.err(&[
        "table",
        "create-plan-apply",
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    assert!(e.contains("id"), "{e}");
    l.err(&["table", "create", "t", "--search-uri", &glob]);
    // the user resolves the conflict: id becomes a string
    let v: serde_json::Value = serde_json::to_value(serde_yaml_edit(&plan)).unwrap();
    std::fs::write(&plan_path, serde_yaml_to(&v)).unwrap();
    l.ok(&[
        "table",
        "create-plan-apply",
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    let info = l.json(&["table", "get", "t"]);
    assert_eq!(info["fields"][0]["type"], "string");
    assert_eq!(
        info["fields"][1]["type"], "double",
        "long and double unify to double"
    );
    l.ok(&["table", "import", "t", "--search-uri", &glob]);
    assert_eq!(l.count("SELECT count(*) FROM t", &[]), 2);
    l.err(&[
        "table",
        "create-plan-apply",
        "--plan",
        l.write("junk.yml", "not: [a plan").as_str(),
    ]);
}

/// Sets the conflicting column's type to string and clears the conflicts.
fn serde_yaml_edit(plan: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&yaml_to_json(plan)).unwrap();
    v["schema"][0]["type"] = "string".into();
    v["conflicts"] = serde_json::json!([]);
    v
}

fn yaml_to_json(y: &str) -> String {
    let v: serde_yaml::Value = serde_yaml::from_str(y).unwrap();
    serde_json::to_string(&v).unwrap()
}

fn serde_yaml_to(v: &serde_json::Value) -> String {
    serde_yaml::to_string(v).unwrap()
}

fn replace_makes_a_new_table_version(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let old = l.head("main");
    l.err(&[
        "table",
        "create",
        "trips",
        "--search-uri",
        &data("zones.jsonl"),
    ]);
    l.ok(&[
        "table",
        "create",
        "trips",
        "--search-uri",
        &data("zones.jsonl"),
        "--replace",
    ]);
    l.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &data("zones.jsonl"),
    ]);
    assert_eq!(l.count("SELECT count(*) FROM trips", &[]), 40);
    assert_eq!(
        l.count("SELECT count(*) FROM trips", &["-r", &format!("@{old}")]),
        2000
    );
    let d = l.json(&["branch", "diff", &format!("@{old}"), "main"]);
    assert_eq!(d[0]["schema_changed"], true);
}

#[test]
fn data_files_are_lz4_in_bounded_row_groups_and_strings_come_back_plain() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let l = Lake::new();
    let rows = 600_000;
    let body: String = (0..rows).map(|i| format!("{i},n{}\n", i % 10)).collect();
    let csv = l.write("big.csv", &format!("id,name\n{body}"));
    l.load("big", &csv, &[]);
    let info = l.json(&["table", "get", "big"]);
    let meta = info["metadata_location"].as_str().unwrap();
    let data_dir = std::path::Path::new(meta.trim_start_matches("file://"))
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("data");
    let (mut most_groups, mut total) = (0, 0i64);
    for f in std::fs::read_dir(&data_dir).unwrap() {
        let reader =
            SerializedFileReader::new(std::fs::File::open(f.unwrap().path()).unwrap()).unwrap();
        most_groups = most_groups.max(reader.metadata().num_row_groups());
        for rg in reader.metadata().row_groups() {
            total += rg.num_rows();
            assert!(
                rg.num_rows() <= 256 * 1024,
                "row group of {}",
                rg.num_rows()
            );
            for c in rg.columns() {
                assert_eq!(c.compression(), parquet::basic::Compression::LZ4_RAW);
            }
        }
    }
    assert_eq!(total, rows);
    assert!(most_groups >= 2, "no file was split into row groups");
    // strings are scanned as views inside, but results carry the table's plain type
    assert_eq!(
        l.count("SELECT count(*) FROM big WHERE name = 'n7'", &[]),
        60_000
    );
    let out = l.file("n7.parquet");
    l.ok(&[
        "query",
        "SELECT name, count(*) AS n FROM big WHERE name IN ('n7', 'n8') GROUP BY name",
        "--out",
        out.to_str().unwrap(),
    ]);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&out).unwrap(),
    )
    .unwrap();
    assert_eq!(
        reader.schema().field(0).data_type(),
        &arrow::datatypes::DataType::Utf8
    );
}
