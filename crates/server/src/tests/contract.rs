//! The service contract: every operation of `lakeplan_lake::ops`, for keys of every kind, gives
//! the same answer and the same refusal through each way in — the service itself under the
//! key's policy, `/api/v1`, and the MCP tools (where a tool exists) — including tenant isolation
//! and the zone rule. A surface that re-implemented a default or a rights check differently
//! would break it.

use axum::http::StatusCode;
use lakeplan_core::{RefKind, MAIN_BRANCH};
use lakeplan_lake::ops::{self, Operation};
use lakeplan_lake::LakeConfig;
use lakeplan_mcp::{Backend, Op};
use serde_json::{json, Value};

use super::{fixture, Fixture};
use crate::registry::Principal;

/// How an operation came out: its answer (normalized), or its error's kind.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Value),
    Err(String),
}

/// Fields whose values differ between two equal operations made at different times.
const VOLATILE: &[&str] = &["hash", "timestamp", "created_at", "commit", "id", "parents"];

/// `v` without its volatile fields, and with the names each way gave its own refs made the same
/// (`…-svc`, `…-http`, `…-mcp` all read `…-S`).
fn normalize(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if VOLATILE.contains(&k.as_str()) {
                        *x = Value::Null;
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            Value::String(s) => {
                for way in ["svc", "http", "mcp"] {
                    *s = s.replace(&format!("-{way}"), "-S");
                }
            }
            _ => {}
        }
    }
    walk(&mut v);
    v
}

struct Way<'a> {
    f: &'a Fixture,
    key: &'a str,
    principal: Principal,
}

impl Way<'_> {
    fn new<'a>(f: &'a Fixture, key: &'a str) -> Way<'a> {
        let principal = f
            .state
            .registry
            .authenticate(key)
            .expect("registry")
            .expect("a valid key");
        Way { f, key, principal }
    }

    /// The caller as the server makes it for this key.
    fn caller(&self) -> crate::auth::Caller {
        let lake = self
            .f
            .state
            .tenants
            .lake(&self.principal.tenant)
            .expect("tenant lake")
            .acting_as(LakeConfig {
                actor: self.principal.user.name.clone(),
                client: "test".into(),
            });
        crate::auth::Caller {
            principal: self.principal.clone(),
            lake,
            state: self.f.state.clone(),
        }
    }

    async fn service<O: Operation>(&self, op: O) -> Outcome
    where
        O::Output: serde::Serialize,
    {
        let svc = self.caller().service();
        match svc.call(op).await {
            Ok(v) => Outcome::Ok(normalize(serde_json::to_value(v).expect("json"))),
            Err(e) => Outcome::Err(e.kind().to_string()),
        }
    }

    async fn http(&self, method: &str, path: &str, body: Option<Value>) -> Outcome {
        let (s, v) = self.f.call(method, path, self.key, body).await;
        if s.is_success() {
            Outcome::Ok(normalize(v))
        } else {
            assert_ne!(s, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}: {v}");
            Outcome::Err(super::error_type(&v).to_string())
        }
    }

    async fn mcp(&self, op: Op) -> Outcome {
        let header = format!("Bearer {}", self.key).parse().expect("header");
        let backend =
            crate::mcp::backend(&self.f.state, self.principal.clone(), header).expect("backend");
        match backend.call(op).await {
            Ok(v) => Outcome::Ok(normalize(v)),
            Err(e) => Outcome::Err(e.kind().to_string()),
        }
    }
}

/// The outcome of one operation through every way, asserted equal; returns it.
macro_rules! same {
    ($what:expr, $svc:expr, $http:expr $(, $mcp:expr)?) => {{
        let svc = $svc;
        let http = $http;
        assert_eq!(svc, http, "{}: the service and /api/v1 differ", $what);
        $( assert_eq!(svc, $mcp, "{}: the service and MCP differ", $what); )?
        svc
    }};
}

/// Only whether it was refused, and how (for operations whose answer's shape is the
/// surface's own: a deletion's, a sealed secret's).
fn kind(o: Outcome) -> Outcome {
    match o {
        Outcome::Ok(_) => Outcome::Ok(Value::Null),
        e => e,
    }
}

/// Each user of the fixture and its key: writers in their zones (alice; bob, who may also
/// merge into main), an admin, a read-only key, and another tenant's admin.
fn keys(f: &Fixture) -> [(&'static str, String); 5] {
    [
        ("alice", f.alice.clone()),
        ("bob", f.bob.clone()),
        ("root", f.root.clone()),
        ("reader", f.reader.clone()),
        ("eve", f.eve.clone()),
    ]
}

fn refused(o: &Outcome) -> bool {
    *o == Outcome::Err("Forbidden".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_and_refuses_the_same_through_every_way_in() {
    let f = fixture();
    // Branches the keys' users may write, made by an admin.
    for b in ["alice.w", "bob.w", "reader.w", "root.w"] {
        let (s, v) = f
            .post("/api/v1/branches", &f.root, json!({"name": b}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for (user, key) in &keys(&f) {
        let w = Way::new(&f, key);
        let who = |op: &str| format!("{user}: {op}");
        let mine = format!("{user}.w");

        // Reads: the same answers.
        same!(
            who("list branches"),
            w.service(ops::ListRefs {
                kind: RefKind::Branch
            })
            .await,
            w.http("GET", "/api/v1/branches", None).await,
            w.mcp(Op::ListBranches).await
        );
        same!(
            who("list tags"),
            w.service(ops::ListRefs { kind: RefKind::Tag }).await,
            w.http("GET", "/api/v1/tags", None).await,
            w.mcp(Op::ListTags).await
        );
        // Another tenant's branch is not there (404, never 403).
        let o = same!(
            who("get alice.w"),
            w.service(ops::GetRef {
                name: "alice.w".into(),
                kind: RefKind::Branch
            })
            .await,
            w.http("GET", "/api/v1/branches/alice.w", None).await
        );
        assert_eq!(
            *user == "eve",
            o == Outcome::Err("RefNotFound".into()),
            "{o:?}"
        );
        same!(
            who("diff"),
            w.service(ops::Diff {
                from: MAIN_BRANCH.into(),
                to: Some(MAIN_BRANCH.into())
            })
            .await,
            w.http("GET", "/api/v1/diff?from=main&to=main", None).await,
            w.mcp(Op::Diff {
                from: MAIN_BRANCH.into(),
                to: MAIN_BRANCH.into()
            })
            .await
        );
        same!(
            who("commits"),
            w.service(ops::Commits {
                at: Some(MAIN_BRANCH.into()),
                limit: Some(5),
                ..Default::default()
            })
            .await,
            w.http("GET", "/api/v1/refs/main/commits?limit=5", None)
                .await,
            w.mcp(Op::ListCommits {
                at: Some(MAIN_BRANCH.into()),
                limit: 5,
                message: None,
                author: None
            })
            .await
        );
        same!(
            who("namespaces"),
            w.service(ops::ListNamespaces {
                at: Some(MAIN_BRANCH.into())
            })
            .await,
            w.http("GET", "/api/v1/refs/main/namespaces", None).await,
            w.mcp(Op::ListNamespaces {
                at: Some(MAIN_BRANCH.into())
            })
            .await
        );
        same!(
            who("tables"),
            w.service(ops::ListTables {
                at: Some(MAIN_BRANCH.into()),
                namespace: None
            })
            .await,
            w.http("GET", "/api/v1/refs/main/tables", None).await,
            w.mcp(Op::ListTables {
                at: Some(MAIN_BRANCH.into()),
                namespace: None
            })
            .await
        );
        let o = same!(
            who("get a missing table"),
            w.service(ops::GetTable {
                table: "nope".into(),
                namespace: None,
                at: Some(MAIN_BRANCH.into())
            })
            .await,
            w.http("GET", "/api/v1/refs/main/tables/nope", None).await,
            w.mcp(Op::GetTable {
                table: "nope".into(),
                at: Some(MAIN_BRANCH.into()),
                namespace: None
            })
            .await
        );
        assert_eq!(o, Outcome::Err("TableNotFound".into()));
        same!(
            who("settings"),
            w.service(ops::Settings).await,
            w.http("GET", "/api/v1/settings", None).await
        );
        same!(
            who("audit"),
            kind(w.service(ops::AuditLog { limit: Some(1) }).await),
            kind(w.http("GET", "/api/v1/audit?limit=1", None).await)
        );

        // Writes: each way makes its own ref (named after it), and is allowed or refused alike.
        for target in [mine.clone(), "main2".to_string()] {
            let name = |s: &str| format!("{target}-c-{s}");
            let o = same!(
                who(&format!("create {target}-c-*")),
                w.service(ops::CreateRef {
                    name: name("svc"),
                    kind: RefKind::Branch,
                    from: Some(MAIN_BRANCH.into()),
                    if_not_exists: false
                })
                .await,
                w.http(
                    "POST",
                    "/api/v1/branches",
                    Some(json!({"name": name("http")}))
                )
                .await,
                w.mcp(Op::CreateBranch {
                    name: name("mcp"),
                    from_ref: None
                })
                .await
            );
            let may = match *user {
                "root" | "eve" => true,
                "alice" | "bob" => target == mine,
                _ => false,
            };
            assert_eq!(refused(&o), !may, "{user} creating {target}: {o:?}");
            if !may {
                continue;
            }
            let renamed = |s: &str| format!("{target}-r-{s}");
            same!(
                who("rename"),
                w.service(ops::RenameRef {
                    name: name("svc"),
                    new_name: renamed("svc"),
                    kind: RefKind::Branch
                })
                .await,
                w.http(
                    "POST",
                    &format!("/api/v1/branches/{}/rename", name("http")),
                    Some(json!({"new_name": renamed("http")}))
                )
                .await
            );
            same!(
                who("delete"),
                kind(
                    w.service(ops::DeleteRef {
                        name: renamed("svc"),
                        kind: RefKind::Branch,
                        if_exists: false
                    })
                    .await
                ),
                kind(
                    w.http(
                        "DELETE",
                        &format!("/api/v1/branches/{}", renamed("http")),
                        None
                    )
                    .await
                )
            );
        }

        // Namespaces on the user's branch (another tenant's is not there).
        let o = same!(
            who("create namespace"),
            kind(
                w.service(ops::CreateNamespace {
                    name: "ns_svc".into(),
                    branch: Some(mine.clone()),
                    ..Default::default()
                })
                .await
            ),
            kind(
                w.http(
                    "POST",
                    &format!("/api/v1/branches/{mine}/namespaces"),
                    Some(json!({"name": "ns_http"}))
                )
                .await
            )
        );
        let writes_own = ["alice", "bob", "root"].contains(user);
        assert_eq!(o == Outcome::Ok(Value::Null), writes_own, "{user}: {o:?}");
        if writes_own {
            same!(
                who("drop namespace"),
                kind(
                    w.service(ops::DropNamespace {
                        name: "ns_svc".into(),
                        branch: Some(mine.clone()),
                        ..Default::default()
                    })
                    .await
                ),
                kind(
                    w.http(
                        "DELETE",
                        &format!("/api/v1/branches/{mine}/namespaces/ns_http"),
                        None
                    )
                    .await
                )
            );
        }
        same!(
            who("drop a missing table if it exists"),
            kind(
                w.service(ops::DropTable {
                    table: "nope".into(),
                    branch: Some(mine.clone()),
                    if_exists: true,
                    ..Default::default()
                })
                .await
            ),
            kind(
                w.http(
                    "DELETE",
                    &format!("/api/v1/branches/{mine}/tables/nope?if_exists=true"),
                    None
                )
                .await
            )
        );
        same!(
            who("revert a missing table"),
            w.service(ops::RevertTable {
                table: "nope".into(),
                source_ref: MAIN_BRANCH.into(),
                into: Some(mine.clone()),
                ..Default::default()
            })
            .await,
            w.http(
                "POST",
                &format!("/api/v1/branches/{mine}/tables/nope/revert"),
                Some(json!({"source_ref": "main"}))
            )
            .await
        );

        // Merges: into the user's branch, and into main (only bob and admins).
        for into in [mine.clone(), MAIN_BRANCH.to_string()] {
            let (source, from) = if into == MAIN_BRANCH {
                (mine.clone(), mine.clone())
            } else {
                (MAIN_BRANCH.to_string(), MAIN_BRANCH.to_string())
            };
            // (Only the outcome's kind: the first merge may fast-forward, the next finds
            // nothing to do.)
            let o = same!(
                who(&format!("merge {source} into {into}")),
                kind(
                    w.service(ops::Merge {
                        source: source.clone(),
                        into: Some(into.clone()),
                        ..Default::default()
                    })
                    .await
                ),
                kind(
                    w.http(
                        "POST",
                        &format!("/api/v1/branches/{from}/merge"),
                        Some(json!({"into": into}))
                    )
                    .await
                ),
                kind(
                    w.mcp(Op::Merge {
                        source: source.clone(),
                        into: into.clone()
                    })
                    .await
                )
            );
            let may = match *user {
                "root" | "eve" => true,
                "bob" => true,
                "alice" => into != MAIN_BRANCH,
                _ => false,
            };
            assert_eq!(refused(&o), !may, "{user} merging into {into}: {o:?}");
        }

        // Admin only: the lake's settings. Any write key: sealing a secret.
        let o = same!(
            who("set a setting"),
            w.service(ops::SetSetting {
                name: "default_namespace".into(),
                value: None
            })
            .await,
            w.http(
                "POST",
                "/api/v1/settings/default_namespace",
                Some(json!({"value": null}))
            )
            .await
        );
        assert_eq!(refused(&o), !["root", "eve"].contains(user), "{o:?}");
        let o = same!(
            who("seal a secret"),
            kind(
                w.service(ops::SealSecret {
                    project_id: None,
                    name: "token".into(),
                    value: "s3cret".into()
                })
                .await
            ),
            kind(
                w.http(
                    "POST",
                    "/api/v1/secrets",
                    Some(json!({"name": "token", "value": "s3cret"}))
                )
                .await
            )
        );
        assert_eq!(refused(&o), *user == "reader", "{o:?}");
    }
}

/// The outcome as an HTTP status: what the Iceberg REST routes answer (their error bodies take
/// the Iceberg spec's types, so they are compared by status).
fn status(o: &Outcome) -> u16 {
    match o {
        Outcome::Ok(_) => 200,
        Outcome::Err(kind) => lakeplan_core::error_kind(kind).map_or(500, |k| k.http_status),
    }
}

impl Way<'_> {
    /// An operation through the service, as a status (for answers that have no JSON form).
    async fn service_status<O: Operation>(&self, op: O) -> u16 {
        match self.caller().service().call(op).await {
            Ok(_) => 200,
            Err(e) => status(&Outcome::Err(e.kind().to_string())),
        }
    }

    /// An `/iceberg/v1` call's status (2xx read as 200).
    async fn iceberg(&self, method: &str, path: &str, body: Option<Value>) -> u16 {
        let (s, v) = self
            .f
            .call(method, &format!("/iceberg/v1/{path}"), self.key, body)
            .await;
        assert_ne!(s, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}: {v}");
        if s.is_success() {
            200
        } else {
            s.as_u16()
        }
    }

    /// A run of the project `zip` through `/api/v1/runs`: its job id, or the error's kind
    /// (with the error body, for its context).
    async fn http_run(&self, zip: &[u8], query: &str) -> (Outcome, Value) {
        let req = axum::http::Request::post(format!("/api/v1/runs?{query}"))
            .header(
                axum::http::header::AUTHORIZATION,
                format!("Bearer {}", self.key),
            )
            .header(axum::http::header::CONTENT_TYPE, "application/zip")
            .body(axum::body::Body::from(zip.to_vec()))
            .expect("request");
        let (s, v) = self.f.send(req).await;
        assert_ne!(s, StatusCode::INTERNAL_SERVER_ERROR, "run: {v}");
        if s.is_success() {
            (Outcome::Ok(json!(v["job_id"].is_string())), v)
        } else {
            (Outcome::Err(super::error_type(&v).to_string()), v)
        }
    }
}

/// An Iceberg schema of one column.
fn iceberg_schema() -> Value {
    json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "x", "required": false, "type": "long"}
    ]})
}

/// The operations that read source files or run code, and the Iceberg REST catalog's own, through
/// every way in with a data-plane worker: the same answers and refusals, the zone rule and tenant
/// isolation, and no source file outside the caller's reach (another tenant's warehouse) read by
/// a plan, an applied plan or a registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_iceberg_operations_answer_and_refuse_the_same_through_every_way_in() {
    let f = super::fixture_with(|c| c.allow_local_paths = true)
        .with_data_plane()
        .await;
    for (b, key) in [
        ("alice.w", &f.root),
        ("bob.w", &f.root),
        ("reader.w", &f.root),
        ("root.w", &f.root),
        ("eve.w", &f.eve),
    ] {
        let (s, v) = f.post("/api/v1/branches", key, json!({"name": b})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let src = f.csv("cities.csv", &[(1, "Rome"), (2, "Oslo")]);
    let src = src.display().to_string();
    // A file in each tenant's warehouse: out of the other tenant's reach.
    let foreign = |tenant: &str| {
        let wh = f.state.registry.tenant(tenant).expect("tenant").warehouse;
        let dir = std::path::PathBuf::from(wh.trim_start_matches("file://")).join("inbox");
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("secret.csv");
        std::fs::write(&p, "id,city\n9,Nowhere\n").expect("write");
        p.display().to_string()
    };
    let (acme_file, globex_file) = (foreign("acme"), foreign("globex"));
    // A running job of alice's on a worker that is not there: to cancel and to re-run.
    let acme = f.state.registry.tenant("acme").expect("tenant");
    let job: lakeplan_lake::JobRecord = serde_json::from_value(json!({
        "id": "0123456789abcdef0123456789abcdef", "status": "running", "actor": "alice",
        "project_dir": "/nowhere", "project_id": null, "project_name": null,
        "target": "alice.w", "input_commit": "", "namespace": "default", "parameters": {},
        "dry_run": false, "transactional": true, "tx_branch": null, "result_commit": null,
        "code_hash": "", "error": null, "pid": null, "created_at": "2026-12-08T00:00:00Z",
        "finished_at": null, "nodes": null, "rerun_of": null
    }))
    .expect("job record");
    let jobs = f
        .state
        .tenants
        .lake(&acme)
        .expect("lake")
        .jobs()
        .expect("jobs");
    jobs.insert(&job).expect("insert job");
    // A project that does not plan (a syntax error on its line 3).
    let files: std::collections::BTreeMap<String, String> = [
        (
            "bauplan_project.yml".to_string(),
            "project:\n  id: 5e8a2c71-0d4b-4f3a-b6e9-1c2d3e4f5a61\n  name: broken\n".to_string(),
        ),
        (
            "models.py".to_string(),
            "import bauplan\n\ndef oops(:\n".to_string(),
        ),
    ]
    .into();
    let zip = lakeplan_lake::zip_files(&files).expect("zip");

    for (user, key) in &keys(&f) {
        let w = Way::new(&f, key);
        let who = |op: &str| format!("{user}: {op}");
        let mine = format!("{user}.w");
        let writes = *user != "reader";
        let other_tenants_file = if *user == "eve" {
            &acme_file
        } else {
            &globex_file
        };

        // A table plan from files: the same plan, or the same refusal. Another tenant's files
        // are not there for the caller, as a search location (nor as a file an edited plan
        // names, below).
        for (table, uri) in [("cities", &src), ("stolen", other_tenants_file)] {
            let o = same!(
                who(&format!("plan {table}")),
                w.service(ops::PlanTable {
                    table: table.into(),
                    search_uri: uri.clone(),
                    branch: Some(mine.clone()),
                    ..Default::default()
                })
                .await,
                w.http(
                    "POST",
                    "/api/v1/table-plans",
                    Some(json!({"table": table, "search_uri": uri, "branch": mine}))
                )
                .await
            );
            let readable = uri == &src;
            assert_eq!(
                matches!(o, Outcome::Ok(_)),
                writes && readable,
                "{user}: {o:?}"
            );
            assert_eq!(refused(&o), !writes, "{user}: {o:?}");
        }
        if writes {
            let mut plan: lakeplan_lake::CreatePlan =
                w.f.state
                    .tenants
                    .lake(&w.principal.tenant)
                    .expect("lake")
                    .plan_table("edited", None, &src, Some(&mine), None, false)
                    .await
                    .expect("plan");
            plan.files[0].path = other_tenants_file.clone();
            let body = serde_json::to_value(&plan).expect("plan json");
            let o = same!(
                who("apply a plan naming another tenant's file"),
                w.service(ops::ApplyPlan {
                    plan,
                    commit: Default::default()
                })
                .await,
                w.http(
                    "POST",
                    "/api/v1/table-plans/apply",
                    Some(json!({"plan": body}))
                )
                .await
            );
            assert!(matches!(o, Outcome::Err(_)), "{user}: {o:?}");
        }

        // A table created from files, then files imported into it: each way its own table.
        let o = same!(
            who("create a table from files"),
            kind(
                w.service(ops::CreateTable {
                    plan: ops::PlanTable {
                        table: "t_svc".into(),
                        search_uri: src.clone(),
                        branch: Some(mine.clone()),
                        ..Default::default()
                    },
                    commit: Default::default()
                })
                .await
            ),
            kind(
                w.http(
                    "POST",
                    &format!("/api/v1/branches/{mine}/tables"),
                    Some(json!({"table": "t_http", "search_uri": src}))
                )
                .await
            )
        );
        assert_eq!(o == Outcome::Ok(Value::Null), writes, "{user}: {o:?}");
        let o = same!(
            who("import"),
            w.service(ops::Import {
                table: "t_svc".into(),
                search_uri: src.clone(),
                branch: Some(mine.clone()),
                ..Default::default()
            })
            .await,
            w.http(
                "POST",
                &format!("/api/v1/branches/{mine}/tables/t_http/import"),
                Some(json!({"search_uri": src}))
            )
            .await
        );
        assert_eq!(refused(&o), !writes, "{user}: {o:?}");
        let o = same!(
            who("import into main"),
            kind(
                w.service(ops::Import {
                    table: "t_svc".into(),
                    search_uri: src.clone(),
                    branch: Some(MAIN_BRANCH.into()),
                    ..Default::default()
                })
                .await
            ),
            kind(
                w.http(
                    "POST",
                    "/api/v1/branches/main/tables/t_http/import",
                    Some(json!({"search_uri": src}))
                )
                .await
            )
        );
        let admin = ["root", "eve"].contains(user);
        assert_eq!(refused(&o), !admin, "{user}: {o:?}");
        // MCP's import_data creates the table first when asked.
        let o = w
            .mcp(Op::ImportData {
                table: "t_mcp".into(),
                search_uri: src.clone(),
                branch: mine.clone(),
                namespace: None,
                create_table: true,
            })
            .await;
        assert_eq!(refused(&o), !writes, "{user}: {o:?}");

        // Runs: code runs only for keys that may run it, and a run writes only where the key
        // may write (a dry run writes nothing). This project does not plan: its error has the
        // file and line as data.
        for (target, dry) in [
            (mine.as_str(), false),
            (MAIN_BRANCH, false),
            (MAIN_BRANCH, true),
        ] {
            let mut run = ops::RunTask::upload(&zip, target);
            run.dry_run = dry;
            let (http, body) = w
                .http_run(&zip, &format!("ref={target}&dry_run={dry}"))
                .await;
            let o = same!(
                who(&format!("run on {target}, dry {dry}")),
                w.service(ops::StartRun { run }).await,
                http,
                w.mcp(Op::RunPipeline {
                    branch: target.into(),
                    files: files.clone(),
                    parameters: Default::default(),
                    dry_run: dry
                })
                .await
            );
            let may = writes && (dry || target != MAIN_BRANCH || admin);
            assert_eq!(refused(&o), !may, "{user} running on {target}: {o:?}");
            if may {
                assert_eq!(o, Outcome::Err("PlanError".into()));
                assert_eq!(
                    body["error"]["context"]["file"],
                    json!("./models.py"),
                    "{body}"
                );
                assert_eq!(body["error"]["context"]["line"], json!(3), "{body}");
            }
        }

        // Jobs: read alike; another tenant's job is not there; cancelling and re-running need
        // the right to write the job's target.
        same!(
            who("list jobs"),
            w.service(ops::ListJobs { limit: Some(5) }).await,
            w.http("GET", "/api/v1/jobs?limit=5", None).await
        );
        for id in [job.id.as_str(), "01234567", "no_such!job"] {
            let o = same!(
                who(&format!("get job {id}")),
                w.service(ops::GetJob { id: id.into() }).await,
                w.http("GET", &format!("/api/v1/jobs/{id}"), None).await
            );
            let there = *user != "eve" && id != "no_such!job";
            assert_eq!(
                o != Outcome::Err("JobNotFound".into()),
                there,
                "{user} {id}: {o:?}"
            );
            same!(
                who(&format!("job {id}'s log")),
                kind(w.service(ops::JobLog { id: id.into() }).await),
                kind(
                    w.http("GET", &format!("/api/v1/jobs/{id}/logs"), None)
                        .await
                )
            );
        }
        let o = same!(
            who("cancel alice's job"),
            w.service(ops::CancelJob::new(&job.id)).await,
            w.http("POST", &format!("/api/v1/jobs/{}/cancel", job.id), None)
                .await
        );
        let expected = match *user {
            "eve" => "JobNotFound",
            "alice" | "root" => "InvalidOperation",
            _ => "Forbidden",
        };
        assert_eq!(o, Outcome::Err(expected.into()), "{user}");
        let o = same!(
            who("rerun alice's job"),
            w.service(ops::Rerun {
                job_id: job.id.clone(),
                ..Default::default()
            })
            .await,
            w.http("POST", &format!("/api/v1/jobs/{}/rerun", job.id), None)
                .await
        );
        match *user {
            "eve" => assert_eq!(o, Outcome::Err("JobNotFound".into())),
            "alice" | "root" => assert!(!refused(&o), "{user}: {o:?}"),
            _ => assert!(refused(&o), "{user}: {o:?}"),
        }

        // The Iceberg REST catalog's operations: the same outcome as the service's.
        let table = |t: &str| lakeplan_core::TableName::new("default", t).expect("name");
        same!(
            who("get a namespace"),
            status(
                &w.service(ops::GetNamespace {
                    name: "default".into(),
                    at: Some(mine.clone())
                })
                .await
            ),
            w.iceberg("GET", &format!("{mine}/namespaces/default"), None)
                .await
        );
        for target in [mine.clone(), MAIN_BRANCH.to_string()] {
            let o = same!(
                who(&format!("create an Iceberg table on {target}")),
                w.service_status(ops::IcebergCreateTable {
                    branch: target.clone(),
                    table: table("ice_svc"),
                    schema: serde_json::from_value(iceberg_schema()).expect("schema"),
                    partition_spec: None,
                    properties: Default::default()
                })
                .await,
                w.iceberg(
                    "POST",
                    &format!("{target}/namespaces/default/tables"),
                    Some(json!({"name": "ice_http", "schema": iceberg_schema()}))
                )
                .await
            );
            let may = admin || (writes && target == mine);
            assert_eq!(o == 403, !may, "{user} on {target}: {o}");
            if !may {
                continue;
            }
            same!(
                who("load an Iceberg table"),
                w.service_status(ops::IcebergLoadTable {
                    at: target.clone(),
                    table: table("ice_svc")
                })
                .await,
                w.iceberg(
                    "GET",
                    &format!("{target}/namespaces/default/tables/ice_http"),
                    None
                )
                .await
            );
            let exists = w
                .service(ops::IcebergTableExists {
                    at: target.clone(),
                    table: table("nope"),
                })
                .await;
            assert_eq!(exists, Outcome::Ok(json!(false)));
            assert_eq!(
                w.iceberg(
                    "HEAD",
                    &format!("{target}/namespaces/default/tables/nope"),
                    None
                )
                .await,
                404
            );
            let props = json!([{"action": "set-properties", "updates": {"k": "v"}}]);
            same!(
                who("commit to an Iceberg table"),
                w.service_status(ops::IcebergCommit {
                    branch: target.clone(),
                    changes: vec![lakeplan_lake::IcebergChange {
                        table: table("ice_svc"),
                        requirements: Vec::new(),
                        updates: serde_json::from_value(props.clone()).expect("updates"),
                    }]
                })
                .await,
                w.iceberg(
                    "POST",
                    &format!("{target}/namespaces/default/tables/ice_http"),
                    Some(json!({"requirements": [], "updates": props}))
                )
                .await
            );
            same!(
                who("rename an Iceberg table"),
                w.service_status(ops::IcebergRenameTable {
                    branch: target.clone(),
                    from: table("ice_svc"),
                    to: table("ice_svc2")
                })
                .await,
                w.iceberg(
                    "POST",
                    &format!("{target}/tables/rename"),
                    Some(json!({
                        "source": {"namespace": ["default"], "name": "ice_http"},
                        "destination": {"namespace": ["default"], "name": "ice_http2"}
                    }))
                )
                .await
            );
            // Registering metadata from another tenant's warehouse finds nothing there.
            let foreign_metadata = format!("{}.metadata.json", other_tenants_file);
            let o = same!(
                who("register another tenant's metadata"),
                w.service_status(ops::IcebergRegisterTable {
                    branch: target.clone(),
                    table: table("reg_svc"),
                    metadata_location: foreign_metadata.clone()
                })
                .await,
                w.iceberg(
                    "POST",
                    &format!("{target}/namespaces/default/register"),
                    Some(json!({"name": "reg_http", "metadata-location": foreign_metadata}))
                )
                .await
            );
            assert!(o >= 400, "{user}: {o}");
        }
    }
    // Every operation of the table was exercised, by this test or the one above.
    let covered: Vec<&str> = vec![
        ops::ListRefs::NAME,
        ops::GetRef::NAME,
        ops::CreateRef::NAME,
        ops::DeleteRef::NAME,
        ops::RenameRef::NAME,
        ops::Merge::NAME,
        ops::Diff::NAME,
        ops::Commits::NAME,
        ops::ListNamespaces::NAME,
        ops::GetNamespace::NAME,
        ops::CreateNamespace::NAME,
        ops::DropNamespace::NAME,
        ops::ListTables::NAME,
        ops::GetTable::NAME,
        ops::DropTable::NAME,
        ops::RevertTable::NAME,
        ops::Settings::NAME,
        ops::SetSetting::NAME,
        ops::AuditLog::NAME,
        ops::SealSecret::NAME,
        ops::PlanTable::NAME,
        ops::ApplyPlan::NAME,
        ops::CreateTable::NAME,
        ops::Import::NAME,
        ops::StartRun::NAME,
        ops::Rerun::NAME,
        ops::ListJobs::NAME,
        ops::GetJob::NAME,
        ops::JobLog::NAME,
        ops::CancelJob::NAME,
        ops::IcebergLoadTable::NAME,
        ops::IcebergTableExists::NAME,
        ops::IcebergCreateTable::NAME,
        ops::IcebergRegisterTable::NAME,
        ops::IcebergCommit::NAME,
        ops::IcebergRenameTable::NAME,
    ];
    let mut all: Vec<&str> = ops::OPERATIONS.iter().map(|o| o.name).collect();
    let mut covered = covered;
    all.sort_unstable();
    covered.sort_unstable();
    assert_eq!(all, covered, "an operation the contract does not exercise");
}
