use crate::util::{data, Lake};

in_both_modes!(
    exit_codes_say_the_kind_of_error,
    bad_input_gets_a_one_line_error_and_changes_nothing,
    concurrent_writers_on_one_branch_lose_nothing,
    malformed_files_are_refused_at_create_and_import_naming_file_and_line,
);

/// The exit code of a failed command (and that it printed a one-line error).
fn exit_code(l: &Lake, args: &[&str]) -> (i32, String) {
    let e = l.err(args);
    (l.run(args).status.code().unwrap_or(-1), e)
}

/// The CLI's exit codes are by kind of error (lakeplan_core::ERROR_KINDS, listed in the README),
/// the same in embedded and remote mode.
fn exit_codes_say_the_kind_of_error(l: &Lake) {
    use lakeplan_core::{EXIT_CONFLICT, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_PLAN, EXIT_SQL};
    let code = |args: &[&str]| exit_code(l, args).0;
    assert_eq!(
        code(&["table", "get", "missing"]),
        i32::from(EXIT_NOT_FOUND)
    );
    assert_eq!(
        code(&["namespace", "create", "default"]),
        i32::from(EXIT_CONFLICT)
    );
    assert_eq!(code(&["query", "SELEC 1"]), i32::from(EXIT_SQL));
    assert_eq!(
        code(&["namespace", "create", "a.b"]),
        i32::from(EXIT_INVALID)
    );
    // A project that does not plan: 9, and the message names the file and line.
    let project = l.path().join("broken");
    std::fs::create_dir_all(&project).expect("dir");
    std::fs::write(
        project.join("lakeplan_project.yml"),
        "project:\n  id: 00000000-0000-0000-0000-000000000001\n  name: broken\n",
    )
    .expect("project file");
    std::fs::write(project.join("models.py"), "import lakeplan\n\ndef oops(:\n").expect("models");
    let dir = project.display().to_string();
    let (c, e) = exit_code(l, &["run", "-p", &dir]);
    assert_eq!(c, i32::from(EXIT_PLAN), "{e}");
    assert!(e.contains("models.py:3"), "{e}");
}

fn bad_input_gets_a_one_line_error_and_changes_nothing(l: &Lake) {
    l.load("trips", &data("trips_2024_01.csv"), &[]);
    let head = l.head("main");
    let bad_row = l.write("short.csv", "trip_id,vendor\n1,acme\n2\n3,zoom\n");
    let e = l.err(&["table", "create", "short", "--search-uri", &bad_row]);
    assert!(e.contains("short.csv"), "{e}");
    l.load(
        "short_ok",
        &l.write("ok.csv", "trip_id,vendor\n1,acme\n"),
        &[],
    );
    let head2 = l.head("main");
    let e = l.err(&["table", "import", "short_ok", "--search-uri", &bad_row]);
    assert!(
        e.contains("short.csv") && e.contains("line"),
        "error names file and line: {e}"
    );
    assert_eq!(l.head("main"), head2);

    let bad_json = l.write("bad.jsonl", "{\"a\": 1}\n{\"a\": 2\n");
    let e = l.err(&["table", "create", "j", "--search-uri", &bad_json]);
    assert!(e.contains("bad.jsonl"), "{e}");

    let empty = l.write("empty.csv", "");
    let e = l.err(&["table", "create", "e", "--search-uri", &empty]);
    assert!(e.contains("empty.csv") && e.contains("empty"), "{e}");

    let odd = l.write("data.xlsx", "x");
    let e = l.err(&["table", "create", "x", "--search-uri", &odd]);
    assert!(e.contains("unknown file extension"), "{e}");

    let e = l.err(&["table", "create", "x", "--search-uri", "/no/such/path.csv"]);
    assert!(e.contains("/no/such/path.csv"), "{e}");
    let e = l.err(&["table", "create", "x", "--search-uri", "/no/such/*.csv"]);
    assert!(e.contains("no files match"), "{e}");

    for bad in ["../evil", "a/b", "x.y.z", "1abc", ""] {
        l.err(&["table", "create", bad, "--search-uri", &data("zones.jsonl")]);
    }
    l.err(&["table", "get", "missing"]);
    l.err(&["table", "get", "trips", "-r", "nobranch"]);
    l.err(&["table", "rm", "missing"]);
    l.ok(&["table", "rm", "missing", "--if-exists"]);
    l.err(&[
        "table",
        "import",
        "missing",
        "--search-uri",
        &data("zones.jsonl"),
    ]);
    l.err(&["namespace", "rm", "nope"]);
    l.err(&[
        "table",
        "create",
        "t",
        "-n",
        "nope",
        "--search-uri",
        &data("zones.jsonl"),
    ]);
    l.err(&["branch", "merge", "nobranch"]);
    l.err(&["branch", "diff", "main", "nobranch"]);
    assert_eq!(l.head("main"), head2);
    assert_ne!(head, head2);
    // nothing leaked into the warehouse outside the lake
    assert!(!l.dir.path().join("evil").exists());
}

/// Files that read "successfully" into the wrong rows, or fail with a reader's message that
/// names neither the problem nor the line, are refused by `table create` and `table import` alike
/// with the file, the line and what is wrong.
fn malformed_files_are_refused_at_create_and_import_naming_file_and_line(l: &Lake) {
    l.load("ab", &l.write("ab.csv", "a,b\nx,y\n"), &[]);
    let head = l.head("main");
    let once = |e: &str, path: &str| {
        assert_eq!(
            e.matches(path.trim_start_matches('/')).count(),
            1,
            "the path once: {e}"
        );
    };

    // An unterminated quote would swallow the rest of the file into one row.
    let open = l.write("open.csv", "a,b\n1,\"unterminated\n2,3\n");
    for cmd in ["create", "import"] {
        let e = l.err(&["table", cmd, "ab", "--search-uri", &open]);
        assert!(
            e.contains("open.csv: line 2:") && e.contains("not closed"),
            "{e}"
        );
        once(&e, &open);
    }
    // Quotes that do close (escaped, inside an unquoted field, across lines) are fine.
    let quoted = l.write("quoted.csv", "a,b\n\"x\"\"y\",5'10\"\n\"multi\nline\",3\n");
    l.ok(&["table", "import", "ab", "--search-uri", &quoted]);
    assert_eq!(l.count("SELECT count(*) FROM ab", &[]), 3);
    let head = {
        assert_ne!(l.head("main"), head);
        l.head("main")
    };

    // Two columns of one name: refused at create, not one of them dropped.
    let twice = l.write("twice.csv", "a,a\n1,2\n");
    for cmd in ["create", "import"] {
        let e = l.err(&["table", cmd, "ab", "--search-uri", &twice]);
        assert!(
            e.contains("twice.csv") && e.contains("column 'a' appears more than once"),
            "{e}"
        );
    }
    l.err(&["table", "get", "twice"]);

    // A Parquet file under a text extension is said to be one, the path said once.
    let pq = l.file("real.parquet");
    l.ok(&["query", "SELECT * FROM ab", "--out", pq.to_str().unwrap()]);
    for ext in ["csv", "jsonl"] {
        let named = l.file(&format!("parquet.{ext}"));
        std::fs::copy(&pq, &named).unwrap();
        let named = named.display().to_string();
        for cmd in ["create", "import"] {
            let e = l.err(&["table", cmd, "ab", "--search-uri", &named]);
            assert!(e.contains("looks like a Parquet file"), "{e}");
            once(&e, &named);
        }
    }
    // A reader's own error names the file once too.
    let short = l.write("short.csv", "a,b\n1,2\n3\n");
    let e = l.err(&["table", "import", "ab", "--search-uri", &short]);
    assert!(e.contains("line 3"), "{e}");
    once(&e, &short);

    // A JSON Lines syntax error names the line of the file.
    let broken = l.write("broken.jsonl", "{\"a\": 1}\n\n{\"a\": 2\n");
    let e = l.err(&["table", "import", "ab", "--search-uri", &broken]);
    assert!(e.contains("broken.jsonl: line 3:"), "{e}");
    assert_eq!(l.head("main"), head);
}

fn concurrent_writers_on_one_branch_lose_nothing(l: &Lake) {
    // 6 processes import into 6 different tables of main at once: all land
    let files: Vec<String> = (0..6)
        .map(|i| {
            let body: String = (0..100).map(|j| format!("{j},{i}\n")).collect();
            l.write(&format!("t{i}.csv"), &format!("id,w\n{body}"))
        })
        .collect();
    for (i, f) in files.iter().enumerate() {
        l.ok(&["table", "create", &format!("t{i}"), "--search-uri", f]);
    }
    let before = l.log_len("main");
    let children: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            l.cmd(&["table", "import", &format!("t{i}"), "--search-uri", f])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(l.log_len("main"), before + 6);
    for i in 0..6 {
        assert_eq!(l.count(&format!("SELECT count(*) FROM t{i}"), &[]), 100);
    }
    // 4 processes import into the same table at once: each either lands or gets a conflict
    let children: Vec<_> = (0..4)
        .map(|_| {
            l.cmd(&[
                "table",
                "import",
                "t0",
                "--search-uri",
                &files[0],
                "--import-duplicate-files",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut ok = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        if o.status.success() {
            ok += 1;
        } else {
            let e = String::from_utf8_lossy(&o.stderr);
            assert!(e.contains("conflict") && e.contains("default.t0"), "{e}");
        }
    }
    assert!(ok >= 1);
    assert_eq!(l.count("SELECT count(*) FROM t0", &[]), 100 * (1 + ok));
    assert_eq!(l.log_len("main"), before + 6 + ok as usize);
}

#[test]
fn the_warehouse_is_chosen_once() {
    let l = Lake::new();
    let other = l.file("elsewhere");
    let info = l.json(&["lake", "init", "--warehouse", other.to_str().unwrap()]);
    let canon = other.canonicalize().unwrap();
    assert_eq!(info["warehouse"], format!("file://{}", canon.display()));
    l.load("zones", &data("zones.jsonl"), &[]);
    assert!(
        other.join("default").exists(),
        "tables are written to the chosen folder"
    );
    assert!(!l.path().join("warehouse").exists());
    let e = l.err(&[
        "lake",
        "init",
        "--warehouse",
        l.file("third").to_str().unwrap(),
    ]);
    assert!(e.contains("already holds tables"), "{e}");
    l.ok(&["lake", "init", "--warehouse", other.to_str().unwrap()]);
    assert_eq!(l.count("SELECT count(*) FROM zones", &[]), 40);
}
