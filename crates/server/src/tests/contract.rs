//! The service contract: every operation of `lakeplan_lake::ops`, for keys of every kind, gives
//! the same answer and the same refusal through each way in — the service itself under the
//! key's policy, `/api/v1`, and the MCP tools (where a tool exists) — including tenant isolation
//! and the zone rule. A surface that re-implemented a default or a rights check differently
//! would break it.

use std::sync::Arc;

use axum::http::StatusCode;
use lakeplan_core::{RefKind, MAIN_BRANCH};
use lakeplan_lake::ops::{self, Operation, Service};
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

    async fn service<O: Operation>(&self, op: O) -> Outcome
    where
        O::Output: serde::Serialize,
    {
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
        let svc = Service::new(lake, Arc::new(self.principal.clone()));
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
    let keys = [
        ("alice", f.alice.clone()),
        ("bob", f.bob.clone()),
        ("root", f.root.clone()),
        ("reader", f.reader.clone()),
        ("eve", f.eve.clone()),
    ];
    for (user, key) in &keys {
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
    // Every operation of the table was exercised above.
    assert_eq!(ops::OPERATIONS.len(), 19);
}
