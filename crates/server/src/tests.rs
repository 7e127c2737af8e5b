//! Router tests, in process (tower `oneshot`), and real-socket tests on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::registry::Scope;

mod contract;
use crate::state::{AppState, MetastoreUrl, ServerConfig};

/// A server state on a temporary folder with two tenants:
/// - `acme`: alice (write, not allowed into main), bob (write, may merge into main), root (admin)
///   and reader (read-only);
/// - `globex`: eve (admin).
struct Fixture {
    dir: tempfile::TempDir,
    state: AppState,
    alice: String,
    bob: String,
    root: String,
    reader: String,
    eve: String,
    /// A real-socket control plane and one in-process worker, for queries, imports and runs.
    plane: Option<(
        tokio::sync::oneshot::Sender<()>,
        crate::worker::WorkerHandle,
    )>,
}

const WORKER_TOKEN: &str = "test-worker-token";

fn fixture_with(config: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServerConfig::new(MetastoreUrl::Sqlite {
        dir: dir.path().join("meta"),
    });
    cfg.worker_token = WORKER_TOKEN.into();
    config(&mut cfg);
    let state = AppState::open(cfg).expect("state");
    let r = &state.registry;
    let wh = |t: &str| dir.path().join("warehouses").join(t).display().to_string();
    r.create_tenant("acme", &wh("acme")).expect("tenant");
    r.create_tenant("globex", &wh("globex")).expect("tenant");
    r.create_user("acme", "alice", false, false).expect("user");
    r.create_user("acme", "bob", false, true).expect("user");
    r.create_user("acme", "root", true, true).expect("user");
    r.create_user("acme", "reader", false, false).expect("user");
    r.create_user("globex", "eve", true, true).expect("user");
    let key = |t: &str, u: &str, s: Scope| r.create_key(t, u, s).expect("key").1;
    Fixture {
        alice: key("acme", "alice", Scope::Write),
        bob: key("acme", "bob", Scope::Write),
        root: key("acme", "root", Scope::Admin),
        reader: key("acme", "reader", Scope::Read),
        eve: key("globex", "eve", Scope::Admin),
        state,
        dir,
        plane: None,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

impl Fixture {
    /// Serves the fixture on a socket and connects a worker to it (the same code as
    /// `lakeplan worker`, in this process).
    async fn with_data_plane(mut self) -> Fixture {
        let (base, stop) = start_server(&self).await;
        let worker = crate::worker::start(crate::worker::WorkerOptions {
            control_plane: base,
            token: WORKER_TOKEN.into(),
            listen: "127.0.0.1:0".into(),
            advertise: None,
            max_tasks: 4,
            tasks: Vec::new(),
            state_dir: None,
        })
        .await
        .expect("worker");
        self.plane = Some((stop, worker));
        self
    }

    /// Sends `req` to the router; a redirect to a worker's result is followed, as clients do.
    async fn respond(&self, req: Request<HttpBody>) -> (StatusCode, axum::body::Bytes) {
        let accept = req.headers().get(header::ACCEPT).cloned();
        let auth = req.headers().get(header::AUTHORIZATION).cloned();
        let resp = crate::router(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        if resp.status() == StatusCode::SEE_OTHER {
            let location = resp.headers()[header::LOCATION]
                .to_str()
                .expect("location")
                .to_string();
            let mut get = reqwest::Client::new().get(location);
            if let Some(a) = accept {
                get = get.header(header::ACCEPT, a);
            }
            // The worker serves the rows to the key that ran the query only.
            if let Some(a) = auth {
                get = get.header(header::AUTHORIZATION, a);
            }
            let r = get.send().await.expect("fetch the result");
            let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
            return (status, r.bytes().await.expect("result body"));
        }
        let status = resp.status();
        (
            status,
            resp.into_body().collect().await.expect("body").to_bytes(),
        )
    }

    async fn send(&self, req: Request<HttpBody>) -> (StatusCode, Value) {
        let (status, bytes) = self.respond(req).await;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    /// Registers a worker by the internal route, as `lakeplan worker` does: its id.
    async fn register_worker(&self) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/internal/v1/workers",
                WORKER_TOKEN,
                Some(json!({"endpoint": "http://127.0.0.1:9"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["worker_id"].as_str().expect("id").to_string()
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path);
        if !key.is_empty() {
            b = b.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(HttpBody::from(v.to_string())),
            None => b.body(HttpBody::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call("GET", path, key, None).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, key, Some(body)).await
    }

    /// A small CSV file in the fixture's folder (outside every warehouse).
    fn csv(&self, name: &str, rows: &[(i64, &str)]) -> PathBuf {
        let dir = self.dir.path().join("incoming");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        let mut s = String::from("id,city\n");
        for (id, city) in rows {
            s.push_str(&format!("{id},{city}\n"));
        }
        std::fs::write(&path, s).expect("write csv");
        path
    }
}

fn error_type(v: &Value) -> &str {
    v["error"]["type"].as_str().unwrap_or("")
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_request_but_healthz_needs_a_valid_unrevoked_key() {
    let f = fixture();
    assert_eq!(f.get("/healthz", "").await.0, StatusCode::OK);
    for path in [
        "/api/v1/branches",
        "/metrics",
        "/openapi.json",
        "/api/v1/info",
    ] {
        let (s, v) = f.get(path, "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(error_type(&v), "Unauthorized");
        assert_eq!(
            f.get(path, "lpk_not-a-key").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let resp = crate::router(f.state.clone())
        .oneshot(
            Request::get("/api/v1/branches")
                .body(HttpBody::empty())
                .expect("req"),
        )
        .await
        .expect("resp");
    assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
    // Basic auth or a raw key without "Bearer " is not accepted either.
    let req = Request::get("/api/v1/branches")
        .header(header::AUTHORIZATION, f.alice.clone())
        .body(HttpBody::empty())
        .expect("req");
    assert_eq!(f.send(req).await.0, StatusCode::UNAUTHORIZED);

    let (s, v) = f.get("/api/v1/info", &f.alice).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["tenant"].as_str(), v["user"].as_str()),
        (Some("acme"), Some("alice"))
    );
    let key_id = v["key_id"].as_str().expect("id").to_string();
    f.state
        .registry
        .revoke_key("acme", &key_id)
        .expect("revoke");
    assert_eq!(
        f.get("/api/v1/info", &f.alice).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.get("/api/v1/info", &f.bob).await.0, StatusCode::OK);
}

#[tokio::test]
async fn branches_and_tags_follow_the_zone_rule() {
    let f = fixture().with_data_plane().await;
    let (s, v) = f
        .post("/api/v1/branches", &f.alice, json!({"name": "alice.dev"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "alice.dev");
    for (key, name, want) in [
        (&f.alice, "dev", StatusCode::FORBIDDEN),
        (&f.alice, "bob.dev", StatusCode::FORBIDDEN),
        (&f.reader, "reader.dev", StatusCode::FORBIDDEN),
        (&f.root, "release", StatusCode::CREATED),
        (&f.bob, "bob.x", StatusCode::CREATED),
    ] {
        let (s, v) = f.post("/api/v1/branches", key, json!({"name": name})).await;
        assert_eq!(s, want, "{name}: {v}");
        if s == StatusCode::FORBIDDEN {
            assert_eq!(error_type(&v), "Forbidden");
        }
    }
    let (_, v) = f.get("/api/v1/branches", &f.reader).await;
    assert_eq!(names(&v), ["alice.dev", "bob.x", "main", "release"]);
    let (s, v) = f
        .post("/api/v1/branches", &f.alice, json!({"name": "alice.dev"}))
        .await;
    assert_eq!((s, error_type(&v)), (StatusCode::CONFLICT, "RefExists"));
    let (s, v) = f
        .post(
            "/api/v1/branches",
            &f.alice,
            json!({"name": "alice.bad..name"}),
        )
        .await;
    assert_eq!(
        (s, error_type(&v)),
        (StatusCode::BAD_REQUEST, "InvalidRef"),
        "{v}"
    );

    // Rename: both names in the zone.
    let (s, _) = f
        .post(
            "/api/v1/branches/alice.dev/rename",
            &f.alice,
            json!({"new_name": "main2"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = f
        .post(
            "/api/v1/branches/alice.dev/rename",
            &f.alice,
            json!({"new_name": "alice.feature"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        f.get("/api/v1/branches/alice.dev", &f.alice).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.get("/api/v1/branches/alice.feature", &f.bob).await.0,
        StatusCode::OK
    );

    // Delete: others' branches are out of reach, and main is never deletable by write keys.
    assert_eq!(
        f.call("DELETE", "/api/v1/branches/alice.feature", &f.bob, None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.call("DELETE", "/api/v1/branches/main", &f.alice, None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (s, v) = f
        .call("DELETE", "/api/v1/branches/alice.feature", &f.alice, None)
        .await;
    assert_eq!((s, v["deleted"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, _) = f
        .call("DELETE", "/api/v1/branches/alice.feature", &f.alice, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = f
        .call(
            "DELETE",
            "/api/v1/branches/alice.feature?if_exists=true",
            &f.alice,
            None,
        )
        .await;
    assert_eq!((s, v["deleted"].as_bool()), (StatusCode::OK, Some(false)));

    // Tags: the same rule; and tags are read-only refs.
    assert_eq!(
        f.post("/api/v1/tags", &f.alice, json!({"name": "v1"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (s, v) = f
        .post("/api/v1/tags", &f.alice, json!({"name": "alice.v1"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = f
        .post(
            "/api/v1/branches/alice.v1/namespaces",
            &f.alice,
            json!({"name": "raw"}),
        )
        .await;
    assert_eq!(
        (s, error_type(&v)),
        (StatusCode::BAD_REQUEST, "NotAWriteBranch"),
        "{v}"
    );
    let (_, v) = f.get("/api/v1/tags", &f.reader).await;
    assert_eq!(names(&v), ["alice.v1"]);

    // Runs execute code: never with a read key, even dry; outside the zone only dry.
    let (s, v) = f
        .call(
            "POST",
            "/api/v1/runs?dry_run=true&ref=main",
            &f.reader,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, error_type(&v)),
        (StatusCode::FORBIDDEN, "Forbidden"),
        "{v}"
    );
    let (s, _) = f
        .call("POST", "/api/v1/runs?ref=main", &f.alice, Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // In the zone, a body that is not a zip is bad input.
    let (s, v) = f
        .call(
            "POST",
            "/api/v1/runs?ref=alice.v1",
            &f.alice,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, error_type(&v)),
        (StatusCode::BAD_REQUEST, "InvalidData"),
        "{v}"
    );
}

#[tokio::test]
async fn tables_queries_merges_and_the_audit_log_through_the_api() {
    let f = fixture_with(|c| c.allow_local_paths = true)
        .with_data_plane()
        .await;
    let jan = f.csv("jan.csv", &[(1, "Rome"), (2, "Oslo")]);
    let feb = f.csv("feb.csv", &[(3, "Lima")]);
    f.post("/api/v1/branches", &f.alice, json!({"name": "alice.load"}))
        .await;
    let (s, v) = f
        .post(
            "/api/v1/branches/alice.load/tables",
            &f.alice,
            json!({"table": "cities", "search_uri": jan.display().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = f
        .post(
            "/api/v1/branches/alice.load/tables/cities/import",
            &f.alice,
            json!({"search_uri": jan.display().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["report"]["rows"], 2);
    // Bob cannot write alice's branch; the reader cannot write at all.
    for key in [&f.bob, &f.reader] {
        let (s, _) = f
            .post(
                "/api/v1/branches/alice.load/tables/cities/import",
                key,
                json!({"search_uri": feb.display().to_string()}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, v) = f
        .get("/api/v1/refs/alice.load/tables/cities", &f.reader)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["records"], 2);
    assert_eq!(
        f.get("/api/v1/refs/main/tables/cities", &f.reader).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, v) = f
        .get("/api/v1/diff?from=main&to=alice.load", &f.reader)
        .await;
    assert_eq!(v[0]["table"], "default.cities");
    assert_eq!(v[0]["change"], "added");

    // Query: JSON rows, or an Arrow stream.
    let q = json!({"sql": "SELECT city FROM cities ORDER BY id", "ref": "alice.load"});
    let (s, v) = f.post("/api/v1/query", &f.reader, q.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["rows"], json!([{"city": "Rome"}, {"city": "Oslo"}]));
    assert_eq!(v["columns"][0]["name"], "city");
    let req = Request::post("/api/v1/query")
        .header(header::AUTHORIZATION, format!("Bearer {}", f.reader))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/vnd.apache.arrow.stream")
        .body(HttpBody::from(q.to_string()))
        .expect("req");
    let (status, bytes) = f.respond(req).await;
    assert_eq!(status, StatusCode::OK);
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .expect("arrow stream");
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(rows, 2);
    // SQL cannot reach the server's files or change tables.
    for sql in [
        "SELECT * FROM '/etc/passwd'",
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SELEC 1",
    ] {
        let (s, v) = f.post("/api/v1/query", &f.root, json!({"sql": sql})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{sql}: {v}");
        assert_eq!(error_type(&v), "Sql", "{sql}");
    }

    // Merging into main: alice may not, bob may.
    let merge = json!({"into": "main"});
    let (s, _) = f
        .post("/api/v1/branches/alice.load/merge", &f.alice, merge.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = f
        .post("/api/v1/branches/alice.load/merge", &f.bob, merge)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "fast_forward");
    let (_, v) = f
        .post(
            "/api/v1/query",
            &f.reader,
            json!({"sql": "SELECT count(*) AS n FROM cities"}),
        )
        .await;
    assert_eq!(v["rows"][0]["n"], 2);

    // A conflicting merge is a 409 naming the table, and writes nothing.
    f.post("/api/v1/branches", &f.bob, json!({"name": "bob.a"}))
        .await;
    let feb_s = feb.display().to_string();
    let (s, v) = f
        .post(
            "/api/v1/branches/bob.a/tables/cities/import",
            &f.bob,
            json!({"search_uri": feb_s}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = f
        .post(
            "/api/v1/branches/main/tables/cities/import",
            &f.root,
            json!({"search_uri": feb_s}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, before) = f.get("/api/v1/branches/main", &f.root).await;
    let (s, v) = f
        .post(
            "/api/v1/branches/bob.a/merge",
            &f.bob,
            json!({"into": "main"}),
        )
        .await;
    assert_eq!(
        (s, error_type(&v)),
        (StatusCode::CONFLICT, "MergeConflict"),
        "{v}"
    );
    assert_eq!(v["error"]["context"]["tables"], json!(["default.cities"]));
    assert_eq!(f.get("/api/v1/branches/main", &f.root).await.1, before);

    // The log and the audit log name the user and the API client.
    let (_, v) = f
        .get("/api/v1/refs/main/commits?limit=2&author=root", &f.reader)
        .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["properties"]["lakeplan.client"], "api");
    let (_, v) = f.get("/api/v1/audit?limit=50", &f.reader).await;
    let recs = v.as_array().expect("records");
    assert!(recs.iter().any(|r| r["actor"] == "bob"
        && r["operation"] == "branch.merge"
        && r["result"] == "error"));
    assert!(recs.iter().all(|r| r["client"] == "api"));
    let (s, v) = f.get("/api/v1/refs/main/commits?bogus=1", &f.reader).await;
    assert_eq!((s, error_type(&v)), (StatusCode::BAD_REQUEST, "BadRequest"));
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let f = fixture_with(|c| c.allow_local_paths = true)
        .with_data_plane()
        .await;
    let jan = f.csv("jan.csv", &[(1, "Rome")]);
    f.post("/api/v1/branches", &f.root, json!({"name": "secret"}))
        .await;
    let (s, v) = f
        .post(
            "/api/v1/branches/secret/tables",
            &f.root,
            json!({"table": "payroll", "search_uri": jan.display().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, acme_table) = f.get("/api/v1/refs/secret/tables/payroll", &f.root).await;
    let acme_hash = f.get("/api/v1/branches/secret", &f.root).await.1["hash"]
        .as_str()
        .expect("hash")
        .to_string();

    // globex's admin sees only its own lake: 404 for every name of acme's, never 403.
    let (_, v) = f.get("/api/v1/branches", &f.eve).await;
    assert_eq!(names(&v), ["main"]);
    for path in [
        "/api/v1/branches/secret".to_string(),
        "/api/v1/refs/secret/tables".to_string(),
        "/api/v1/refs/secret/tables/payroll".to_string(),
        "/api/v1/refs/secret/commits".to_string(),
        format!("/api/v1/refs/@{}/tables", &acme_hash[..12]),
        format!("/api/v1/refs/main@{acme_hash}/namespaces"),
    ] {
        let (s, v) = f.get(&path, &f.eve).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    let (s, _) = f
        .post(
            "/api/v1/query",
            &f.eve,
            json!({"sql": "SELECT * FROM payroll", "ref": "secret"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = f
        .post(
            "/api/v1/query",
            &f.eve,
            json!({"sql": "SELECT * FROM payroll"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(!v.to_string().contains("acme"), "{v}");
    let (_, v) = f.get("/api/v1/audit", &f.eve).await;
    assert!(
        v.as_array()
            .is_some_and(|a| a.iter().all(|r| r["actor"] != "root")),
        "{v}"
    );
    assert_eq!(
        f.get("/api/v1/jobs/0123456789abcdef", &f.eve).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.get("/api/v1/jobs/..%2F..%2Fetc", &f.eve).await.0,
        StatusCode::NOT_FOUND
    );

    // Nor can globex import acme's files through the server's access to storage.
    let acme_wh = f.state.registry.tenant("acme").expect("tenant").warehouse;
    let location = acme_table["metadata_location"].as_str().expect("location");
    assert!(
        location.contains(acme_wh.trim_start_matches("file://")),
        "{location}"
    );
    for uri in [
        acme_wh.clone(),
        format!("{acme_wh}/default"),
        format!("file://{acme_wh}"),
    ] {
        let (s, v) = f
            .post(
                "/api/v1/branches/main/tables",
                &f.eve,
                json!({"table": "stolen", "search_uri": uri}),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {v}");
    }
    let sneaky = format!("{}/incoming/../warehouses/acme", f.dir.path().display());
    let (s, _) = f
        .post(
            "/api/v1/branches/main/tables",
            &f.eve,
            json!({"table": "stolen", "search_uri": sneaky}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, v) = f.get("/api/v1/refs/main/tables", &f.eve).await;
    assert_eq!(v, json!([]));
}

/// Every file a tenant's import would read is checked where it resolves: no glob, `//`, `/./`,
/// parent folder or symbolic link reads another tenant's warehouse or the server's own files,
/// and the answer (404, as for a file that is not there) names none of those paths.
#[tokio::test]
async fn no_path_form_reads_another_tenants_files() {
    let f = fixture_with(|c| c.allow_local_paths = true)
        .with_data_plane()
        .await;
    let jan = f.csv("jan.csv", &[(1, "Rome")]);
    let (s, v) = f
        .post(
            "/api/v1/branches/main/tables",
            &f.root,
            json!({"table": "payroll", "search_uri": jan.display().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = f
        .post(
            "/api/v1/branches/main/tables/payroll/import",
            &f.root,
            json!({"search_uri": jan.display().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let acme_wh = f.state.registry.tenant("acme").expect("tenant").warehouse;
    let acme_wh = acme_wh.trim_start_matches("file://").to_string();
    let mut parquet = Vec::new();
    let mut stack = vec![PathBuf::from(&acme_wh)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                parquet.push(p);
            }
        }
    }
    let data_file = parquet.first().expect("acme's data file").clone();
    let data_dir = data_file.parent().expect("folder").to_path_buf();
    let links = f.dir.path().join("links");
    std::fs::create_dir_all(&links).expect("mkdir");
    std::os::unix::fs::symlink(&data_file, links.join("file.parquet")).expect("symlink");
    std::os::unix::fs::symlink(&data_dir, links.join("folder")).expect("symlink");
    std::os::unix::fs::symlink(
        f.dir.path().join("meta/server.db"),
        links.join("registry.csv"),
    )
    .expect("symlink");
    let warehouses = f.dir.path().join("warehouses").display().to_string();
    let uris = [
        format!("{warehouses}/a*/**/*.parquet"),
        format!("{warehouses}/*/**/*.parquet"),
        acme_wh.replace('/', "//"),
        format!("{warehouses}/./acme"),
        warehouses.clone(),
        links.join("file.parquet").display().to_string(),
        links.join("folder").display().to_string(),
        links.join("folder/*.parquet").display().to_string(),
        links.join("*.parquet").display().to_string(),
        links.join("registry.csv").display().to_string(),
    ];
    for uri in &uris {
        for (path, body) in [
            (
                "/api/v1/branches/main/tables",
                json!({"table": "stolen", "search_uri": uri}),
            ),
            (
                "/api/v1/table-plans",
                json!({"table": "stolen", "search_uri": uri, "branch": "main"}),
            ),
        ] {
            let (s, v) = f.post(path, &f.eve, body).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path} {uri}: {v}");
            // It names what was asked for, and nothing it found.
            let text = v.to_string().replace(uri.as_str(), "");
            assert!(
                !text.contains("/acme") && !text.contains("meta/") && !text.contains("Rome"),
                "{uri}: {v}"
            );
        }
    }
    // globex's own table takes no rows of acme's from any of them.
    let own = f.csv("own.csv", &[(7, "Lima")]);
    let (s, v) = f
        .post(
            "/api/v1/branches/main/tables",
            &f.eve,
            json!({"table": "mine", "search_uri": own.display().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for uri in &uris {
        let (s, v) = f
            .post(
                "/api/v1/branches/main/tables/mine/import",
                &f.eve,
                json!({"search_uri": uri}),
            )
            .await;
        // Not found, or (the parent folder) about globex's own files: never acme's.
        assert_ne!(s, StatusCode::OK, "{uri}: {v}");
        let text = v.to_string().replace(uri.as_str(), "");
        assert!(
            !text.contains("/acme") && !text.contains("Rome"),
            "{uri}: {v}"
        );
    }
    // A glob over every warehouse reads globex's own files only.
    let (s, v) = f
        .post(
            "/api/v1/branches/main/tables/mine/import",
            &f.eve,
            json!({"search_uri": own.display().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = f
        .post(
            "/api/v1/table-plans",
            &f.eve,
            json!({"table": "again", "search_uri": format!("{warehouses}/*/**/*.parquet"), "branch": "main"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let files = v["files"].as_array().expect("files");
    assert!(!files.is_empty());
    assert!(
        files
            .iter()
            .all(|x| x["path"].as_str().is_some_and(|p| p.contains("/globex/"))),
        "{v}"
    );
}

/// Iceberg REST `register` reads nothing of another tenant's: not its metadata by another
/// name (`//`, a link), nor a copy of it, whose manifests and data files are still the other
/// tenant's. A tenant registers a copy of its own metadata as before.
#[tokio::test]
async fn register_takes_no_metadata_that_names_another_tenants_files() {
    let f = fixture_with(|c| c.allow_local_paths = true)
        .with_data_plane()
        .await;
    let jan = f.csv("jan.csv", &[(1, "Rome")]);
    let mut located = Vec::new();
    for (key, table) in [(&f.root, "payroll"), (&f.eve, "mine")] {
        let (s, v) = f
            .post(
                "/api/v1/branches/main/tables",
                key,
                json!({"table": table, "search_uri": jan.display().to_string()}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = f
            .post(
                &format!("/api/v1/branches/main/tables/{table}/import"),
                key,
                json!({"search_uri": jan.display().to_string()}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (_, v) = f
            .get(&format!("/api/v1/refs/main/tables/{table}"), key)
            .await;
        let loc = v["metadata_location"].as_str().expect("location");
        located.push(PathBuf::from(loc.trim_start_matches("file://")));
    }
    let (acme_meta, globex_meta) = (&located[0], &located[1]);
    let incoming = f.dir.path().join("incoming");
    std::os::unix::fs::symlink(acme_meta, incoming.join("link.metadata.json")).expect("link");
    std::fs::copy(acme_meta, incoming.join("copy.metadata.json")).expect("copy");
    std::fs::copy(globex_meta, incoming.join("own.metadata.json")).expect("copy");
    let register = |location: String, name: &str| {
        f.post(
            "/iceberg/v1/main/namespaces/default/register",
            &f.eve,
            json!({"name": name, "metadata-location": location}),
        )
    };
    for location in [
        acme_meta.display().to_string().replace('/', "//"),
        format!("file://{}", acme_meta.display()).replacen("/warehouses/", "/./warehouses/", 1),
        incoming.join("link.metadata.json").display().to_string(),
        incoming.join("copy.metadata.json").display().to_string(),
    ] {
        let (s, v) = register(location.clone(), "stolen").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{location}: {v}");
        let text = v.to_string().replace(location.as_str(), "");
        assert!(!text.contains("/acme"), "{location}: {v}");
    }
    let (s, v) = register(
        incoming.join("own.metadata.json").display().to_string(),
        "mine_again",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = f.get("/api/v1/refs/main/tables", &f.eve).await;
    assert!(!names(&v).contains(&"stolen".to_string()), "{v}");

    // Nor does a commit take a snapshot whose manifest list is acme's.
    let meta: Value =
        serde_json::from_slice(&std::fs::read(acme_meta).expect("read")).expect("json");
    let list = meta["snapshots"][0]["manifest-list"].clone();
    let id = 4242_i64;
    let (s, v) = f
        .post(
            "/iceberg/v1/main/namespaces/default/tables/mine",
            &f.eve,
            json!({"requirements": [], "updates": [
                {"action": "add-snapshot", "snapshot": {
                    "snapshot-id": id, "sequence-number": 2, "timestamp-ms": 1_800_000_000_000_i64,
                    "manifest-list": list, "summary": {"operation": "append"}, "schema-id": 0}},
                {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch",
                 "snapshot-id": id}]}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (_, v) = f.get("/api/v1/refs/main/tables/mine", &f.eve).await;
    assert_eq!(v["records"], 1, "{v}");
}

/// A query's ticket is redeemed once, by the key that ran the query: not without a key, not
/// with another tenant's key (no such ticket), not with another key of the tenant; a refused
/// fetch leaves it good for its key.
#[tokio::test]
async fn a_ticket_serves_only_the_key_that_asked() {
    use arrow_flight::{FlightClient, Ticket};
    use futures::TryStreamExt;
    let f = fixture().with_data_plane().await;
    let ticket = || async {
        let req = Request::post("/api/v1/query")
            .header(header::AUTHORIZATION, format!("Bearer {}", f.reader))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, crate::results::FLIGHT_TICKET)
            .body(HttpBody::from(json!({"sql": "SELECT 42 AS x"}).to_string()))
            .expect("request");
        let (s, v) = f.send(req).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        (
            v["endpoint"].as_str().expect("endpoint").to_string(),
            v["ticket"].as_str().expect("ticket").to_string(),
        )
    };
    let (endpoint, t) = ticket().await;
    let http = reqwest::Client::new();
    let fetch = |key: &str| {
        let mut r = http.get(format!("{endpoint}/results/{t}"));
        if !key.is_empty() {
            r = r.bearer_auth(key);
        }
        async move { r.send().await.expect("fetch").status().as_u16() }
    };
    assert_eq!(fetch("").await, 401);
    assert_eq!(fetch("lpk_not-a-key").await, 401);
    assert_eq!(fetch(&f.eve).await, 404);
    assert_eq!(fetch(&f.alice).await, 403);
    assert_eq!(fetch(&f.reader).await, 200);
    assert_eq!(
        fetch(&f.reader).await,
        404,
        "a ticket is spent by its fetch"
    );

    let (endpoint, t) = ticket().await;
    let channel = tonic::transport::Channel::from_shared(endpoint)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the worker");
    let get = |key: Option<&str>| {
        let mut client = FlightClient::new(channel.clone());
        if let Some(k) = key {
            client
                .add_header("authorization", &format!("Bearer {k}"))
                .expect("header");
        }
        let t = Ticket::new(t.clone());
        async move {
            match client.do_get(t).await {
                Ok(s) => s.try_collect::<Vec<_>>().await.map(|b| b.len()),
                Err(e) => Err(e),
            }
        }
    };
    let code = |r: Result<usize, arrow_flight::error::FlightError>| match r {
        Ok(_) => tonic::Code::Ok,
        Err(arrow_flight::error::FlightError::Tonic(s)) => s.code(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(code(get(None).await), tonic::Code::Unauthenticated);
    assert_eq!(code(get(Some(&f.eve)).await), tonic::Code::NotFound);
    assert_eq!(
        code(get(Some(&f.alice)).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(code(get(Some(&f.reader)).await), tonic::Code::Ok);
    assert_eq!(code(get(Some(&f.reader)).await), tonic::Code::NotFound);
}

#[tokio::test]
async fn list_routes_page_by_token() {
    let f = fixture();
    for i in 0..5 {
        f.post(
            "/api/v1/branches",
            &f.alice,
            json!({"name": format!("alice.b{i}")}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/api/v1/branches?limit=2".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let req = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", f.reader))
            .body(HttpBody::empty())
            .expect("req");
        let resp = crate::router(f.state.clone())
            .oneshot(req)
            .await
            .expect("resp");
        assert_eq!(resp.status(), StatusCode::OK);
        token = resp
            .headers()
            .get("x-lakeplan-next-page-token")
            .map(|v| v.to_str().expect("ascii").to_string());
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert!(v.as_array().is_some_and(|a| a.len() <= 2), "{v}");
        seen.extend(names(&v));
        pages += 1;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        ["alice.b0", "alice.b1", "alice.b2", "alice.b3", "alice.b4", "main"]
    );
    let (_, v) = f
        .get("/api/v1/refs/main/namespaces?limit=1", &f.reader)
        .await;
    assert_eq!(v, json!(["default"]));
    let (s, v) = f.get("/api/v1/branches?limit=0", &f.reader).await;
    assert_eq!((s, error_type(&v)), (StatusCode::BAD_REQUEST, "BadRequest"));
}

#[tokio::test]
async fn server_local_files_are_off_limits_by_default() {
    let f = fixture().with_data_plane().await;
    let jan = f.csv("jan.csv", &[(1, "Rome")]);
    let (s, v) = f
        .post(
            "/api/v1/branches/main/tables",
            &f.root,
            json!({"table": "t", "search_uri": jan.display().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("--allow-local-paths")));
    let (s, _) = f
        .post(
            "/api/v1/table-plans",
            &f.root,
            json!({"table": "t", "search_uri": "/etc", "branch": "main"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_bodies_get_the_error_shape() {
    let f = fixture_with(|c| c.max_body_bytes = 1024);
    let req = |body: String| {
        Request::post("/api/v1/branches")
            .header(header::AUTHORIZATION, format!("Bearer {}", f.alice))
            .header(header::CONTENT_TYPE, "application/json")
            .body(HttpBody::from(body))
            .expect("req")
    };
    let (s, v) = f.send(req("{not json".into())).await;
    assert_eq!(
        (s, error_type(&v)),
        (StatusCode::BAD_REQUEST, "BadRequest"),
        "{v}"
    );
    let (s, v) = f.send(req("{\"from_ref\": \"main\"}".into())).await;
    assert!(s.is_client_error(), "{s}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("name")),
        "{v}"
    );
    let big = format!("{{\"name\": \"alice.{}\"}}", "x".repeat(4096));
    let (s, v) = f.send(req(big)).await;
    assert_eq!(
        (s, error_type(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
        "{v}"
    );
    let (s, v) = f.get("/api/v2/nothing", &f.alice).await;
    assert_eq!((s, error_type(&v)), (StatusCode::NOT_FOUND, "NotFound"));
    let (s, _) = f.call("PUT", "/api/v1/branches", &f.alice, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

/// A body field the route does not know is a 400 naming it (and the field meant), on every
/// route family, and nothing is done: `into_branch` never merges into `main`.
#[tokio::test]
async fn unknown_body_fields_are_refused_naming_the_field() {
    let f = fixture();
    let (s, v) = f
        .post("/api/v1/branches", &f.root, json!({"name": "root.dev"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, main) = f.get("/api/v1/branches/main", &f.root).await;
    let cases = [
        (
            "POST",
            "/api/v1/branches/root.dev/merge",
            json!({"into_branch": "root.x"}),
            "'into_branch' (did you mean 'into'?)",
        ),
        (
            "POST",
            "/api/v1/branches",
            json!({"name": "root.y", "from": "main"}),
            "'from' (did you mean 'from_ref'?)",
        ),
        (
            "POST",
            "/api/v1/branches/root.dev/namespaces",
            json!({"name": "ns", "commit_bdy": "b"}),
            "'commit_bdy' (did you mean 'commit_body'?)",
        ),
        (
            "DELETE",
            "/api/v1/branches/root.dev/tables/nope",
            json!({"commit_propertys": {}}),
            "'commit_propertys'",
        ),
        (
            "POST",
            "/catalog/v0/branches",
            json!({"branch_name": "root.z", "from_rf": "main"}),
            "'from_rf' (did you mean 'from_ref'?)",
        ),
        (
            "POST",
            "/iceberg/v1/root.dev/namespaces",
            json!({"namespace": ["ns"], "propertie": {}}),
            "'propertie' (did you mean 'properties'?)",
        ),
    ];
    for (method, path, body, says) in cases {
        let (s, v) = f.call(method, path, &f.root, Some(body)).await;
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
        assert!(
            message.contains(&format!("unknown field {says}")),
            "{method} {path}: {message}"
        );
    }
    // Query strings too.
    let (s, v) = f.get("/api/v1/branches?limt=1", &f.root).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown query parameter 'limt' (did you mean 'limit'?)")),
        "{v}"
    );
    assert_eq!(f.get("/api/v1/branches/main", &f.root).await.1, main);
    for r in ["root.x", "root.y", "root.z"] {
        let (s, _) = f.get(&format!("/api/v1/branches/{r}"), &f.root).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    }
    let (s, _) = f.get("/api/v1/branches/root.dev", &f.root).await;
    assert_eq!(s, StatusCode::OK);
}

/// The run route's switches take true/false and Bauplan's on/off (read before the key's rights:
/// a read-only key's run is refused only after them).
#[tokio::test]
async fn run_switches_take_on_and_off() {
    let f = fixture();
    let run = |q: &str| {
        Request::post(format!("/api/v1/runs?ref=reader.x&{q}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", f.reader))
            .header(header::CONTENT_TYPE, "application/zip")
            .body(HttpBody::from("not a zip"))
            .expect("req")
    };
    let (s, v) = f.send(run("transaction=maybe")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("expected true, false, on or off")));
    for q in ["transaction=off", "strict=OFF&no_cache=on", "dry_run=true"] {
        let (s, v) = f.send(run(q)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{q}: {v}");
    }
}

/// A lake setting is its tenant's: any key reads it, only an admin key changes it, and another
/// tenant neither sees nor changes it.
#[tokio::test]
async fn lake_settings_are_the_tenants_and_only_admins_change_them() {
    let f = fixture();
    let value = |v: &Value, name: &str| -> Value {
        v.as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .map(|s| s["value"].clone())
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    let (s, v) = f.get("/api/v1/settings", &f.reader).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(value(&v, "default_namespace"), Value::Null);
    for key in [&f.alice, &f.bob, &f.reader] {
        let (s, v) = f
            .post(
                "/api/v1/settings/default_namespace",
                key,
                json!({"value": "silver"}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    let (s, v) = f
        .post(
            "/api/v1/settings/default_namespace",
            &f.root,
            json!({"value": "silver"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(value(&v, "default_namespace"), "silver");
    let (_, v) = f.get("/api/v1/settings", &f.alice).await;
    assert_eq!(value(&v, "default_namespace"), "silver");
    // globex keeps its own.
    let (_, v) = f.get("/api/v1/settings", &f.eve).await;
    assert_eq!(value(&v, "default_namespace"), Value::Null);
    // Bad names and values are refused, naming what is wrong.
    let (s, v) = f
        .post(
            "/api/v1/settings/default_ns",
            &f.root,
            json!({"value": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("unknown lake setting 'default_ns'")));
    let (s, v) = f
        .post(
            "/api/v1/settings/default_namespace",
            &f.root,
            json!({"value": "no-dash"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = f
        .post(
            "/api/v1/settings/default_namespace",
            &f.root,
            json!({"value": null}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(value(&v, "default_namespace"), Value::Null);
}

#[tokio::test]
async fn the_openapi_document_describes_every_served_route() {
    let f = fixture().with_data_plane().await;
    let (s, doc) = f.get("/openapi.json", &f.reader).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for r in crate::api::ROUTES {
        let op = &doc["paths"][r.path][r.method];
        assert!(
            op["summary"].is_string(),
            "{} {} undocumented",
            r.method,
            r.path
        );
        // The route is served: whatever it answers, it is not the fallback or a 405.
        let path = r.path.replace(['{', '}'], "");
        let (s, v) = f
            .call(&r.method.to_uppercase(), &path, &f.root, Some(json!({})))
            .await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{} {}", r.method, r.path);
        assert!(
            !v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no such route")),
            "{} {} is documented but not routed",
            r.method,
            r.path
        );
    }
    // Every operation of the service is served: by an /api/v1 route that names it (and the
    // document says which), or by the Iceberg REST catalog (its own operations).
    for o in lakeplan_lake::ops::OPERATIONS {
        let routed: Vec<_> = crate::api::ROUTES
            .iter()
            .filter(|r| r.operation == Some(o.name))
            .collect();
        if o.name.starts_with("iceberg_") || o.name == "get_namespace" {
            assert!(routed.is_empty(), "{}", o.name);
            continue;
        }
        assert!(!routed.is_empty(), "operation {} has no route", o.name);
        for r in routed {
            assert_eq!(
                doc["paths"][r.path][r.method]["x-lakeplan-operation"],
                o.name
            );
        }
    }
    let (s, text) = f.get("/metrics", &f.reader).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().expect("text");
    assert!(text.contains("route=\"/api/v1/branches/{name}\""), "{text}");
    assert!(text.contains("lakeplan_http_request_duration_seconds_bucket"));
    assert!(text.contains("\nlakeplan_workers 1\n"), "{text}");
}

async fn start_server(f: &Fixture) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = crate::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = f.state.clone();
    tokio::spawn(async move {
        let _ = crate::serve(listener, state, async {
            let _ = rx.await;
        })
        .await;
    });
    (format!("http://{addr}"), tx)
}

/// A gRPC call of a service this port does not serve (Bauplan's job API) is UNIMPLEMENTED,
/// saying what to use instead (a JSON 404 read as gRPC is "invalid compression flag").
#[tokio::test]
async fn grpc_calls_of_unknown_services_are_unimplemented() {
    let f = fixture();
    let (base, _stop) = start_server(&f).await;
    let channel = tonic::transport::Channel::from_shared(base)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = axum::http::uri::PathAndQuery::from_static(
        "/bpln_proto.commander.service.v2.V2CommanderService/CodeSnapshotRun",
    );
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let err = grpc
        .unary(tonic::Request::new(()), path, codec)
        .await
        .expect_err("an unknown service");
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    for says in [
        "bpln_proto.commander.service.v2.V2CommanderService",
        "lakeplan run",
        "/api/v1/runs",
    ] {
        assert!(err.message().contains(says), "{}", err.message());
    }
}

#[tokio::test]
async fn a_real_socket_serves_keep_alive_clients_and_drops_slow_ones() {
    let f = fixture_with(|c| c.header_timeout = Duration::from_millis(500));
    let (base, _stop) = start_server(&f).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    for i in 0..3 {
        let r = client
            .post(format!("{base}/api/v1/branches"))
            .bearer_auth(&f.alice)
            .json(&json!({"name": format!("alice.b{i}")}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
    }
    let v: Value = client
        .get(format!("{base}/api/v1/branches"))
        .bearer_auth(&f.reader)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(names(&v).len(), 4);

    // A client that starts a request and never finishes its headers is disconnected.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a slow client's connection open"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

/// The server's folder layout: tenants' catalogs apart from the registry.
#[test]
fn tenants_have_their_own_catalog_files() {
    let f = fixture();
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        f.post("/api/v1/branches", &f.eve, json!({"name": "x"}))
            .await;
        f.post("/api/v1/branches", &f.root, json!({"name": "y"}))
            .await;
    });
    let meta: &Path = &f.dir.path().join("meta");
    assert!(meta.join("server.db").is_file());
    assert!(meta.join("tenants/acme/catalog.db").is_file());
    assert!(meta.join("tenants/globex/catalog.db").is_file());
}

/// Query rows come from the worker over Arrow Flight with a single-use ticket; the control
/// plane answers only the ticket.
#[tokio::test]
async fn query_results_come_from_the_worker_over_flight() {
    use arrow_flight::{FlightClient, Ticket};
    use futures::TryStreamExt;
    let f = fixture().with_data_plane().await;
    let ticket_for = |sql: &str, max_rows: Option<usize>| {
        Request::post("/api/v1/query")
            .header(header::AUTHORIZATION, format!("Bearer {}", f.reader))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, crate::results::FLIGHT_TICKET)
            .body(HttpBody::from(
                json!({"sql": sql, "max_rows": max_rows}).to_string(),
            ))
            .expect("request")
    };
    let sql = "SELECT v, v * 2 AS w FROM generate_series(1, 10000) AS t(v)";
    let (s, v) = f.send(ticket_for(sql, None)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["columns"][1]["name"], "w");
    let endpoint = v["endpoint"].as_str().expect("endpoint").to_string();
    assert_eq!(
        Some(endpoint.as_str()),
        f.plane.as_ref().map(|p| p.1.endpoint.as_str()),
        "rows are served by the worker, not the control plane"
    );
    let channel = tonic::transport::Channel::from_shared(endpoint)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the worker");
    let mut client = FlightClient::new(channel);
    client
        .add_header("authorization", &format!("Bearer {}", f.reader))
        .expect("header");
    let ticket = Ticket::new(v["ticket"].as_str().expect("ticket").to_string());
    let batches: Vec<arrow::record_batch::RecordBatch> = client
        .do_get(ticket.clone())
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("rows");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 10000);
    let sum: i64 = batches
        .iter()
        .map(|b| {
            arrow::compute::sum(
                b.column(1)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .expect("int64"),
            )
            .unwrap_or(0)
        })
        .sum();
    assert_eq!(sum, 10000 * 10001);

    // A ticket is spent by its fetch; a made-up one was never good.
    for t in [ticket, Ticket::new("00".repeat(32))] {
        let err = match client.do_get(t).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.expect_err("spent ticket"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("ticket"), "{err}");
    }

    // max_rows cuts the stream.
    let (_, v) = f.send(ticket_for(sql, Some(7))).await;
    let ticket = Ticket::new(v["ticket"].as_str().expect("ticket").to_string());
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("rows");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 7);

    // Planning errors answer at once, in the API's error shape.
    let (s, v) = f.send(ticket_for("SELECT nope FROM nowhere", None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(error_type(&v), "Sql");
}

/// The internal routes take the worker token and nothing else; a worker the control plane
/// lost must register again, and its late answers are refused.
#[tokio::test]
async fn only_workers_reach_the_internal_routes() {
    let f = fixture();
    for key in ["", f.root.as_str(), "wrong-token"] {
        let (s, _) = f
            .call(
                "POST",
                "/internal/v1/workers",
                key,
                Some(json!({"endpoint": "http://127.0.0.1:9"})),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "key '{key}'");
    }
    let (s, v) = f
        .call(
            "POST",
            "/internal/v1/workers",
            WORKER_TOKEN,
            Some(json!({"endpoint": "ftp://x"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let id = f.register_worker().await;
    let (s, v) = f
        .call(
            "POST",
            &format!("/internal/v1/workers/{id}/heartbeat"),
            WORKER_TOKEN,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"cancel": []}), "nothing to stop");
    let (s, _) = f
        .call(
            "POST",
            "/internal/v1/workers/nobody/heartbeat",
            WORKER_TOKEN,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = f
        .call(
            "POST",
            "/internal/v1/tasks/t1/result",
            WORKER_TOKEN,
            Some(json!({"worker_id": id, "ok": 1})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "an answer for a task it does not hold"
    );
}

/// `POST /api/v1/secrets` seals with the caller's tenant key (one per tenant, in its own state
/// folder), keeps no value (nor audits one), and is refused to a read-only key.
#[tokio::test]
async fn secrets_are_sealed_per_tenant_and_never_kept() {
    let f = fixture();
    let body = json!({"name": "api_key", "value": "sk-plain-value-123", "project_id": "p1"});
    let (s, v) = f.post("/api/v1/secrets", &f.reader, body.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, acme) = f.post("/api/v1/secrets", &f.alice, body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{acme}");
    assert_eq!(acme["name"], "api_key");
    assert_eq!(acme["project_id"], "p1");
    let ct = acme["ciphertext"].as_str().expect("ciphertext");
    assert!(!ct.contains("sk-plain"), "{acme}");
    let (s, globex) = f.post("/api/v1/secrets", &f.eve, body).await;
    assert_eq!(s, StatusCode::OK, "{globex}");
    // Each tenant has its own key, made on first use, readable by the server's user only.
    assert_ne!(acme["key"], globex["key"]);
    for t in ["acme", "globex"] {
        let key = f.dir.path().join("meta/tenants").join(t).join("secret.key");
        let mode = std::fs::metadata(&key).expect("key file").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{}",
            key.display()
        );
    }
    let (_, audit) = f.get("/api/v1/audit", &f.root).await;
    let text = audit.to_string();
    assert!(
        text.contains("parameter.seal") && !text.contains("sk-plain"),
        "{text}"
    );
    // A missing value is refused, naming the field.
    let (s, v) = f
        .post("/api/v1/secrets", &f.alice, json!({"name": "api_key"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("value"), "{v}");
}

/// A worker whose answer is not what its task answers fails the task, for the client and the
/// worker alike, saying what was wrong (never a default: no redirect to `/results/`).
#[tokio::test]
async fn a_worker_that_answers_wrongly_fails_the_task_saying_what_was_wrong() {
    let f = fixture();
    let id = f.register_worker().await;
    let client = f.call(
        "POST",
        "/api/v1/query",
        &f.alice,
        Some(json!({"sql": "SELECT 1"})),
    );
    let worker = async {
        let (s, task) = f
            .call(
                "POST",
                &format!("/internal/v1/workers/{id}/next"),
                WORKER_TOKEN,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{task}");
        assert_eq!(task["work"]["kind"], "query");
        let task_id = task["id"].as_str().expect("task id").to_string();
        f.call(
            "POST",
            &format!("/internal/v1/tasks/{task_id}/result"),
            WORKER_TOKEN,
            Some(json!({"worker_id": id, "ok": {"endpoint": "http://127.0.0.1:9"}})),
        )
        .await
    };
    let ((s, v), (worker_status, refused)) = tokio::join!(client, worker);
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(error_type(&v), "BadGateway");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("worker {id}")) && message.contains("missing field `ticket`"),
        "{message}"
    );
    assert_eq!(worker_status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the answer to a query task is malformed")),
        "{refused}"
    );
}
