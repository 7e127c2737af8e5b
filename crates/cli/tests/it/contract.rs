//! The service contract through the binaries users run: every operation of
//! `lakeplan_lake::ops::OPERATIONS` through the CLI (embedded, and remote against a real
//! `lakeplan serve`) and `lakeplan mcp` (on the local lake, and bridged to the server's `/mcp`),
//! asserting the same answers, and, for keys without the right (a write key outside its zone, a
//! read-only key) or of another tenant, the same refusal: its kind, and the CLI's exit code for
//! it (`lakeplan_core::ERROR_KINDS`). The server's own ways in (the service, `/api/v1`, MCP in
//! process) are held together by `crates/server/src/tests/contract.rs`.
//!
//! One row of [`CASES`] per call; a new operation is a row (and [`NO_MCP_TOOL`] says which have
//! no MCP tool).

use lakeplan_core::{error_kind, EXIT_DENIED, EXIT_NOT_FOUND};
use lakeplan_lake::ops::OPERATIONS;
use serde_json::Value;

use crate::mcp::McpSession;
use crate::util::{data, Lake};

/// What a case needs of the caller, as its operation declares it (`ops::Access`), for the keys
/// that should be refused.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Read,
    /// Write (or merge into) a ref outside every write key's zone.
    WriteRef,
    /// Write at all (any key that is not read-only).
    Write,
    Admin,
}

/// How two answers must agree.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Compare {
    /// The whole record (without hashes, times, ids and locations).
    Answer,
    /// Only whether it succeeded (an answer whose contents are the surface's own or differ by
    /// moment: a sealed secret's ciphertext, the audit log's newest record).
    Kind,
}

/// One call of an operation, through each surface that has it. In templates `{b}` is the
/// branch the cases read (`dev`, which only the first tenant has), `{w}` names what each surface
/// writes (`wcli`, `wmcp`: each writes its own refs), `{proj}` a project folder.
struct Case {
    /// The operation's name in `OPERATIONS`.
    op: &'static str,
    needs: Needs,
    /// Whether it names `{b}` (or `{b}`'s table) as it is: another tenant's key finds no such ref.
    names_b: bool,
    /// `lakeplan` arguments (`-O json` is added).
    cli: Option<&'static [&'static str]>,
    /// An MCP tool and its arguments (JSON).
    mcp: Option<(&'static str, &'static str)>,
    compare: Compare,
    /// The error kind an allowed caller gets, if it fails by design.
    fails: Option<&'static str>,
}

const fn case(op: &'static str, needs: Needs, names_b: bool) -> Case {
    Case {
        op,
        needs,
        names_b,
        cli: None,
        mcp: None,
        compare: Compare::Answer,
        fails: None,
    }
}

impl Case {
    const fn cli(mut self, args: &'static [&'static str]) -> Case {
        self.cli = Some(args);
        self
    }
    const fn mcp(mut self, tool: &'static str, args: &'static str) -> Case {
        self.mcp = Some((tool, args));
        self
    }
    const fn kind_only(mut self) -> Case {
        self.compare = Compare::Kind;
        self
    }
    const fn fails(mut self, kind: &'static str) -> Case {
        self.fails = Some(kind);
        self
    }
}

use Needs::*;

/// Every operation, in the order they run (later rows use what earlier ones made).
const CASES: &[Case] = &[
    case("list_refs", Read, false)
        .cli(&["branch", "ls"])
        .mcp("list_branches", "{}"),
    case("list_refs", Read, false)
        .cli(&["tag", "ls"])
        .mcp("list_tags", "{}"),
    case("get_ref", Read, true).cli(&["branch", "get", "{b}"]),
    case("diff", Read, true)
        .cli(&["branch", "diff", "main", "{b}"])
        .mcp("diff_refs", r#"{"from": "main", "to": "{b}"}"#),
    case("commits", Read, true)
        .cli(&["commit", "{b}", "-n", "5"])
        .mcp("list_commits", r#"{"ref": "{b}", "limit": 5}"#),
    case("list_namespaces", Read, true)
        .cli(&["namespace", "ls", "-r", "{b}"])
        .mcp("list_namespaces", r#"{"ref": "{b}"}"#),
    case("list_tables", Read, true)
        .cli(&["table", "ls", "-r", "{b}"])
        .mcp("list_tables", r#"{"ref": "{b}"}"#),
    case("get_table", Read, true)
        .cli(&["table", "get", "trips", "-r", "{b}"])
        .mcp("get_table", r#"{"table": "trips", "ref": "{b}"}"#),
    case("get_table", Read, true)
        .cli(&["table", "get", "nope", "-r", "{b}"])
        .mcp("get_table", r#"{"table": "nope", "ref": "{b}"}"#)
        .fails("TableNotFound"),
    case("create_ref", WriteRef, false)
        .cli(&["branch", "create", "{b}-{w}", "--from-ref", "main"])
        .mcp(
            "create_branch",
            r#"{"name": "{b}-{w}", "from_ref": "main"}"#,
        ),
    case("create_ref", WriteRef, false)
        .cli(&["branch", "create", "{b}-{w}", "--from-ref", "main"])
        .mcp(
            "create_branch",
            r#"{"name": "{b}-{w}", "from_ref": "main"}"#,
        )
        .fails("RefExists"),
    case("merge", WriteRef, true)
        .cli(&["branch", "merge", "{b}", "--into", "{b}-{w}"])
        .mcp("merge_branch", r#"{"source": "{b}", "into": "{b}-{w}"}"#),
    case("create_namespace", WriteRef, false).cli(&[
        "namespace",
        "create",
        "ns_{w}",
        "-b",
        "{b}-{w}",
    ]),
    case("plan_table", WriteRef, false).cli(&[
        "table",
        "create-plan",
        "t_{w}",
        "--search-uri",
        "{csv}",
        "-b",
        "{b}-{w}",
    ]),
    case("plan_table", WriteRef, false)
        .cli(&[
            "table",
            "create-plan",
            "p_{w}",
            "--search-uri",
            "{csv}",
            "-b",
            "{b}-{w}",
            "--save-plan",
            "{proj}/p_{w}.yaml",
        ])
        .kind_only(),
    case("apply_plan", WriteRef, false).cli(&[
        "table",
        "create-plan-apply",
        "--plan",
        "{proj}/p_{w}.yaml",
    ]),
    case("create_table", WriteRef, false).cli(&[
        "table",
        "create",
        "t_{w}",
        "--search-uri",
        "{csv}",
        "-b",
        "{b}-{w}",
    ]),
    case("import", WriteRef, false)
        .cli(&[
            "table",
            "import",
            "t_{w}",
            "--search-uri",
            "{csv}",
            "-b",
            "{b}-{w}",
        ])
        .mcp(
            "import_data",
            r#"{"table": "t_{w}", "search_uri": "{csv}", "branch": "{b}-{w}", "create_table": true}"#,
        ),
    // A project that does not plan: refused where the key may not write, else its plan error.
    case("start_run", WriteRef, false)
        .cli(&["run", "-p", "{proj}/broken", "-r", "{b}-{w}"])
        .mcp(
            "run_pipeline",
            r#"{"branch": "{b}-{w}", "files": {"lakeplan_project.yml": "project:\n  name: broken\n", "models.py": "import lakeplan\n\ndef oops(:\n"}}"#,
        )
        .fails("PlanError"),
    case("list_jobs", Read, false).cli(&["job", "ls", "-n", "5"]),
    case("get_job", Read, false)
        .cli(&["job", "get", "nope"])
        .fails("JobNotFound"),
    case("job_log", Read, false)
        .cli(&["job", "logs", "nope"])
        .fails("JobNotFound"),
    // A job's target decides who may stop or re-run it: a missing job is missing for every key.
    case("cancel_job", Read, false)
        .cli(&["job", "stop", "nope"])
        .fails("JobNotFound"),
    case("rerun", Read, false)
        .cli(&["rerun", "nope"])
        .fails("JobNotFound"),
    case("drop_namespace", WriteRef, false).cli(&["namespace", "rm", "ns_{w}", "-b", "{b}-{w}"]),
    case("drop_table", WriteRef, false).cli(&[
        "table",
        "rm",
        "trips",
        "-b",
        "{b}-{w}",
        "--if-exists",
    ]),
    case("revert_table", WriteRef, true).cli(&[
        "table",
        "revert",
        "trips",
        "--source-ref",
        "{b}",
        "--into-branch",
        "{b}-{w}",
    ]),
    case("rename_ref", WriteRef, false).cli(&["branch", "rename", "{b}-{w}", "{b}-r-{w}"]),
    case("delete_ref", WriteRef, false).cli(&["branch", "rm", "{b}-r-{w}"]),
    case("settings", Read, false).cli(&["lake", "config"]),
    case("set_setting", Admin, false).cli(&["lake", "config", "default_namespace", "--unset"]),
    case("audit_log", Read, false)
        .cli(&["audit", "-n", "1"])
        .kind_only(),
    case("seal_secret", Write, false)
        .cli(&[
            "parameter",
            "set",
            "token",
            "s3cret",
            "--type",
            "secret",
            "-p",
            "{proj}",
        ])
        .kind_only(),
];

/// Operations no MCP tool offers (yet): each is in `OPERATIONS`, and none has an MCP row above.
const NO_MCP_TOOL: &[&str] = &[
    "get_ref",
    "delete_ref",
    "rename_ref",
    "create_namespace",
    "drop_namespace",
    "drop_table",
    "revert_table",
    "settings",
    "set_setting",
    "audit_log",
    "seal_secret",
    "plan_table",
    "apply_plan",
    "create_table",
    "list_jobs",
    "get_job",
    "job_log",
    "cancel_job",
    "rerun",
    // The Iceberg REST catalog's own (see NO_CLI_COMMAND).
    "get_namespace",
    "iceberg_load_table",
    "iceberg_table_exists",
    "iceberg_create_table",
    "iceberg_register_table",
    "iceberg_commit",
    "iceberg_rename_table",
];

/// Operations no CLI command runs: the Iceberg REST catalog's own, which Iceberg clients call
/// (`crates/server/src/tests/contract.rs` runs them through the service and `/iceberg/v1`).
const NO_CLI_COMMAND: &[&str] = &[
    "get_namespace",
    "iceberg_load_table",
    "iceberg_table_exists",
    "iceberg_create_table",
    "iceberg_register_table",
    "iceberg_commit",
    "iceberg_rename_table",
];

/// The table and the lists above name every operation, and only operations: an operation added
/// to `OPERATIONS` fails here until it has a row (or is listed as having no tool).
#[test]
fn contract_cases_and_lists_name_every_operation() {
    let names: Vec<&str> = OPERATIONS.iter().map(|o| o.name).collect();
    for c in CASES {
        assert!(
            names.contains(&c.op),
            "case of '{}', not an operation",
            c.op
        );
        assert!(c.cli.is_some() || c.mcp.is_some(), "{}: no surface", c.op);
    }
    for (surface, missing, has) in [
        (
            "CLI",
            NO_CLI_COMMAND,
            (|c: &Case| c.cli.is_some()) as fn(&Case) -> bool,
        ),
        ("MCP", NO_MCP_TOOL, |c: &Case| c.mcp.is_some()),
    ] {
        for op in &names {
            let covered = CASES.iter().any(|c| c.op == *op && has(c));
            assert!(
                covered != missing.contains(op),
                "{op}: either a case through the {surface} or listed as without one, not {}",
                if covered { "both" } else { "neither" }
            );
        }
        for op in missing {
            assert!(names.contains(op), "{op} is listed but not an operation");
        }
    }
}

/// How one call came out: the normalized answer, or the error's kind.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Ok(Value),
    Err(String),
}

impl Outcome {
    fn kind(&self) -> Outcome {
        match self {
            Outcome::Ok(_) => Outcome::Ok(Value::Null),
            e => e.clone(),
        }
    }
}

/// Fields that differ between two equal operations on two lakes or at two moments.
const VOLATILE: &[&str] = &[
    "hash",
    "parent_hashes",
    "date",
    "timestamp",
    "created_at",
    "id",
    "uuid",
    "snapshot_id",
    "current_snapshot_id",
    "snapshot_before",
    "snapshot_after",
    "metadata_location",
    "last_updated_ms",
    "location",
    // The client a commit came through: the CLI, the API (remote mode) or MCP.
    "lakeplan.client",
];

/// `v` without volatile fields, with each surface's names made the same (`wcli`, `wmcp` →
/// `wS`).
fn normalize(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !VOLATILE.contains(&k.as_str()));
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            Value::String(s) => *s = s.replace("wcli", "wS").replace("wmcp", "wS"),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// The template with its placeholders filled.
fn fill(t: &str, w: &str, proj: &str) -> String {
    t.replace("{b}", "dev")
        .replace("{w}", w)
        .replace("{proj}", proj)
        .replace("{csv}", &data("trips_2024_01.csv"))
}

/// One place the operations run: a lake (local, or a remote one through a server) as one key.
struct Way<'a> {
    lake: &'a Lake,
    key: Option<String>,
    mcp: McpSession,
    proj: String,
}

impl<'a> Way<'a> {
    fn new(lake: &'a Lake, key: Option<&str>, proj: &str) -> Way<'a> {
        Way {
            lake,
            key: key.map(str::to_string),
            mcp: McpSession::start(lake, key),
            proj: proj.to_string(),
        }
    }

    /// The case through the CLI: its JSON answer, or its error's kind (with the exit code the
    /// one table gives that kind).
    fn cli(&self, c: &Case) -> Option<Outcome> {
        let args: Vec<String> = c.cli?.iter().map(|a| fill(a, "wcli", &self.proj)).collect();
        let mut cmd = self.lake.cmd(&["-v", "-O", "json"]);
        cmd.args(&args);
        if let Some(k) = &self.key {
            cmd.env("LAKEPLAN_API_KEY", k);
        }
        let o = cmd.output().expect("run lakeplan");
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            let v = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"));
            return Some(Outcome::Ok(normalize(v)));
        }
        let kind = stderr
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .unwrap_or_else(|| panic!("{args:?}: no error kind: {stderr}"))
            .to_string();
        let row = error_kind(&kind).unwrap_or_else(|| panic!("{kind}: not in ERROR_KINDS"));
        assert_eq!(
            o.status.code(),
            Some(i32::from(row.exit_code)),
            "{args:?}: exit code of {kind}: {stderr}"
        );
        Some(Outcome::Err(kind))
    }

    /// The case through MCP: its answer, or its error's kind.
    fn mcp(&mut self, c: &Case) -> Option<Outcome> {
        let (tool, args) = c.mcp?;
        let args: Value = serde_json::from_str(&fill(args, "wmcp", &self.proj)).expect("args");
        Some(match self.mcp.call(tool, args) {
            Ok(v) => Outcome::Ok(normalize(v)),
            Err(e) => Outcome::Err(e["type"].as_str().unwrap_or_default().to_string()),
        })
    }

    /// The case through every surface this way has for it, compared as the case says.
    fn run(&mut self, c: &Case) -> Vec<(&'static str, Outcome)> {
        let mut out = Vec::new();
        for (surface, o) in [("cli", self.cli(c)), ("mcp", self.mcp(c))] {
            if let Some(o) = o {
                out.push((
                    surface,
                    match c.compare {
                        Compare::Answer => o,
                        Compare::Kind => o.kind(),
                    },
                ));
            }
        }
        out
    }
}

/// The same commands make the same lake locally and on the server: branch `dev` with table
/// `trips`, and a project folder for secrets.
fn set_up(lake: &Lake) -> String {
    let jan = data("trips_2024_01.csv");
    lake.ok(&["branch", "create", "dev"]);
    lake.ok(&[
        "table",
        "create",
        "trips",
        "--search-uri",
        &jan,
        "-b",
        "dev",
    ]);
    lake.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        &jan,
        "-b",
        "dev",
    ]);
    let proj = lake.file("proj");
    std::fs::create_dir_all(&proj).expect("project folder");
    lake.write("proj/lakeplan_project.yml", "project:\n  name: contract\n");
    // A project that does not plan: a syntax error on models.py's line 3.
    std::fs::create_dir_all(lake.file("proj/broken")).expect("project folder");
    lake.write(
        "proj/broken/lakeplan_project.yml",
        "project:\n  name: broken\n",
    );
    lake.write("proj/broken/models.py", "import lakeplan\n\ndef oops(:\n");
    proj.display().to_string()
}

/// A key of a new user of `tenant` (made first if it is not there), made with `lakeplan admin`
/// on the server's metastore while it runs.
fn key(remote: &Lake, tenant: &str, user: &[&str], scope: &str) -> String {
    let admin = |args: &[&str]| crate::server::remote_admin(remote, args);
    if !admin(&["tenant", "ls"]).contains(tenant) {
        admin(&["tenant", "create", tenant]);
    }
    let mut u = vec!["user", "create"];
    u.extend_from_slice(user);
    u.extend_from_slice(&["--tenant", tenant]);
    admin(&u);
    admin(&[
        "key", "create", "--tenant", tenant, "--user", user[0], "--scope", scope,
    ])
    .trim()
    .to_string()
}

/// Every case answers the same through the embedded CLI, embedded MCP, the remote CLI and the
/// server's MCP (as the tenant's admin, on lakes made alike); then keys that may not do a case
/// are refused alike through the remote CLI and MCP, and another tenant's key finds none of
/// this tenant's refs.
#[test]
fn contract_every_operation_answers_and_refuses_the_same_through_cli_and_mcp() {
    let local = Lake::new();
    let (remote, _server) = crate::server::remote_lake(&[]);
    let local_proj = set_up(&local);
    let remote_proj = set_up(&remote);

    // The same answers, case by case (the lakes change alike).
    let mut ways = [
        ("embedded", Way::new(&local, None, &local_proj)),
        ("remote", Way::new(&remote, None, &remote_proj)),
    ];
    let mut answers = Vec::new();
    for c in CASES {
        let mut seen: Vec<(String, Outcome)> = Vec::new();
        for (mode, way) in &mut ways {
            for (surface, o) in way.run(c) {
                seen.push((format!("{mode} {surface}"), o));
            }
        }
        let (first_way, first) = &seen[0];
        for (way, o) in &seen[1..] {
            assert_eq!(o, first, "{}: {way} and {first_way} differ", c.op);
        }
        let want = c.fails.map(|k| Outcome::Err(k.into()));
        match &want {
            Some(e) => assert_eq!(first, e, "{}", c.op),
            None => assert!(matches!(first, Outcome::Ok(_)), "{}: {first:?}", c.op),
        }
        answers.push(first.kind());
    }
    drop(ways);

    // Refusals: each key, through the remote CLI and MCP.
    let keys = [
        ("alice", key(&remote, "acme", &["alice"], "write")),
        (
            "bob",
            key(&remote, "acme", &["bob", "--can-merge-main"], "write"),
        ),
        ("reader", key(&remote, "acme", &["reader"], "read")),
        ("eve", key(&remote, "globex", &["eve", "--admin"], "admin")),
    ];
    for (user, k) in &keys {
        let mut way = Way::new(&remote, Some(k), &remote_proj);
        for (c, allowed) in CASES.iter().zip(&answers) {
            let refused = match (*user, c.needs) {
                (_, Read) | ("eve", _) => false,
                ("reader", _) => true,
                (_, Write) => false,
                (_, WriteRef | Admin) => true,
            };
            let want = if refused {
                Outcome::Err("Forbidden".into())
            } else if *user == "eve" && c.names_b {
                Outcome::Err("RefNotFound".into())
            } else {
                allowed.clone()
            };
            let seen = way.run(c);
            for (surface, o) in &seen {
                assert_eq!(o.kind(), want, "{user}: {} through {surface}", c.op);
                assert_eq!(
                    *o, seen[0].1,
                    "{user}: {}: {surface} and the CLI differ",
                    c.op
                );
            }
        }
    }
    // The codes the refusals above exited with.
    assert_eq!(
        error_kind("Forbidden").map(|k| k.exit_code),
        Some(EXIT_DENIED)
    );
    assert_eq!(
        error_kind("RefNotFound").map(|k| k.exit_code),
        Some(EXIT_NOT_FOUND)
    );
}
