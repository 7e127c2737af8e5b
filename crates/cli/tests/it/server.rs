//! `lakeplan admin` and `lakeplan serve`: the real binary serving on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::{json, Value};

use crate::util::{bin, data, Lake};

/// A `lakeplan serve` process, killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(metastore: &str, extra: &[&str]) -> Server {
    serve_with_env(metastore, extra, &[])
}

pub(crate) fn serve_with_env(metastore: &str, extra: &[&str], env: &[(&str, String)]) -> Server {
    let mut child = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--metastore", metastore])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start lakeplan serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let base = line.trim().rsplit(' ').next().expect("address").to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    Server { child, base }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// One request; a redirect (a query's rows on a worker) is followed with the same key, which
/// the worker asks for (reqwest drops it on a redirect to another port).
async fn call(method: &str, url: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut req = client
        .request(method.parse().expect("method"), url)
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let mut resp = req.send().await.expect("request");
    if resp.status() == reqwest::StatusCode::SEE_OTHER {
        let to = resp.headers()[reqwest::header::LOCATION]
            .to_str()
            .expect("location")
            .to_string();
        resp = client
            .get(to)
            .bearer_auth(key)
            .send()
            .await
            .expect("follow");
    }
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A GET's body as text (a log, an event stream).
async fn get_text(url: &str, key: &str) -> String {
    let (status, body) = call("GET", url, key, None).await;
    assert_eq!(status, 200, "{url}: {body}");
    match body {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

#[test]
fn admin_creates_keys_that_a_running_server_honours_until_revoked() {
    let lake = Lake::new();
    let meta = format!("sqlite:{}", lake.file("server").display());
    let m = ["--metastore", meta.as_str()];
    let admin = |args: &[&str]| {
        let mut a = vec!["admin"];
        a.extend_from_slice(args);
        a.extend_from_slice(&m);
        lake.ok(&a)
    };
    admin(&["tenant", "create", "acme"]);
    let err = lake.err(&["admin", "tenant", "create", "acme", "--metastore", &meta]);
    assert!(err.contains("tenant 'acme' already exists"), "{err}");
    let err = lake.err(&[
        "admin",
        "tenant",
        "create",
        "Bad/Name",
        "--metastore",
        &meta,
    ]);
    assert!(err.contains("invalid name"), "{err}");
    admin(&[
        "user",
        "create",
        "alice",
        "--tenant",
        "acme",
        "--can-merge-main",
    ]);
    let err = lake.err(&[
        "admin",
        "key",
        "create",
        "--tenant",
        "acme",
        "--user",
        "alice",
        "--scope",
        "admin",
        "--metastore",
        &meta,
    ]);
    assert!(err.contains("not an admin"), "{err}");
    let key = admin(&["key", "create", "--tenant", "acme", "--user", "alice"]);
    let key = key.trim().to_string();
    assert!(key.starts_with("lpk_"), "{key}");
    let keys = lake.json(&[
        "admin",
        "key",
        "ls",
        "--tenant",
        "acme",
        "--metastore",
        &meta,
    ]);
    assert_eq!(keys[0]["scope"], "write");
    assert!(
        !keys.to_string().contains(&key),
        "the secret is never listed"
    );
    let tenants = lake.json(&["admin", "tenant", "ls", "--metastore", &meta]);
    assert!(tenants[0]["warehouse"]
        .as_str()
        .is_some_and(|w| w.ends_with("/warehouses/acme")));

    let server = serve(&meta, &["--allow-local-paths"]);
    let api = |p: &str| format!("{}/api/v1{p}", server.base);
    rt().block_on(async {
        let (s, _) = call("GET", &format!("{}/healthz", server.base), "", None).await;
        assert_eq!(s, 200);
        let (s, v) = call(
            "POST",
            &api("/branches"),
            &key,
            Some(json!({"name": "alice.trips"})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = call(
            "POST",
            &api("/branches/alice.trips/tables"),
            &key,
            Some(json!({"table": "trips", "search_uri": data("trips_2024_01.csv")})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = call(
            "POST",
            &api("/branches/alice.trips/tables/trips/import"),
            &key,
            Some(json!({"search_uri": data("trips_2024_01.csv")})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = call(
            "POST",
            &api("/branches/alice.trips/merge"),
            &key,
            Some(json!({})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = call(
            "POST",
            &api("/query"),
            &key,
            Some(json!({"sql": "SELECT count(*) AS n FROM trips"})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert!(v["rows"][0]["n"].as_i64().is_some_and(|n| n > 0), "{v}");
    });

    // Revoked from another process while the server runs: refused from the next request on.
    let id = keys[0]["id"].as_str().expect("id");
    admin(&["key", "revoke", id, "--tenant", "acme"]);
    rt().block_on(async {
        let (s, v) = call("GET", &api("/branches"), &key, None).await;
        assert_eq!(s, 401, "{v}");
    });
}

/// Two `lakeplan serve` processes on one PostgreSQL metastore and one warehouse serve one lake:
/// concurrent commits through both land, none lost, and each server sees the other's.
#[test]
fn two_servers_on_one_postgres_metastore_lose_no_commit() {
    let pg = lakeplan_catalog::testing::TestPostgres::shared().expect("PostgreSQL for tests");
    let lake = Lake::new();
    let url = pg.url();
    let state = |n: &str| lake.file(n).display().to_string();
    let (sa, sb) = (state("state-a"), state("state-b"));
    let wh = lake.file("warehouse").join("acme").display().to_string();
    let admin = |args: &[&str]| {
        let mut a = vec!["admin"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--metastore", &url, "--state-dir", &sa]);
        lake.ok(&a)
    };
    admin(&["tenant", "create", "acme", "--warehouse", &wh]);
    admin(&["user", "create", "root", "--tenant", "acme", "--admin"]);
    let key = admin(&[
        "key", "create", "--tenant", "acme", "--user", "root", "--scope", "admin",
    ]);
    let key = key.trim().to_string();
    let a = serve(&url, &["--state-dir", &sa]);
    let b = serve(&url, &["--state-dir", &sb]);

    const CLIENTS: usize = 8;
    const EACH: usize = 25;
    rt().block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let base = if c % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut created = 0;
                for i in 0..EACH {
                    let (s, v) = call(
                        "POST",
                        &format!("{base}/api/v1/branches/main/namespaces"),
                        &key,
                        Some(json!({"name": format!("ns_{c}_{i}")})),
                    )
                    .await;
                    assert_eq!(s, 201, "client {c} commit {i}: {v}");
                    created += 1;
                }
                created
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("client");
        }
        assert_eq!(total, CLIENTS * EACH);
        for base in [&a.base, &b.base] {
            let (s, v) = call(
                "GET",
                &format!("{base}/api/v1/refs/main/namespaces"),
                &key,
                None,
            )
            .await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v.as_array().map(Vec::len), Some(CLIENTS * EACH + 1), "{v}");
            let (_, log) = call(
                "GET",
                &format!("{base}/api/v1/refs/main/commits?limit=100000"),
                &key,
                None,
            )
            .await;
            // Every namespace is its own commit, on one linear first-parent history.
            assert!(
                log.as_array().is_some_and(|l| l.len() > CLIENTS * EACH),
                "{log}"
            );
        }
    });
}

/// A `lakeplan serve` on a PostgreSQL metastore behind a [`SlowProxy`] (no delay yet), with a
/// tenant of its own, an admin key and a registered worker, for the slow-metastore tests.
struct SlowMetastore {
    proxy: lakeplan_catalog::testing::SlowProxy,
    server: Server,
    key: String,
    token: String,
    worker: String,
    _dirs: Lake,
}

impl SlowMetastore {
    fn start(tenant: &str) -> SlowMetastore {
        use lakeplan_catalog::testing::{SlowProxy, TestPostgres};

        let pg = TestPostgres::shared().expect("PostgreSQL for tests");
        let proxy = SlowProxy::start(pg.port(), std::time::Duration::ZERO).expect("proxy");
        let url = proxy.postgres_url();
        let lake = Lake::new();
        let state = lake.file("state").display().to_string();
        let admin = |args: &[&str]| {
            let mut a = vec!["admin"];
            a.extend_from_slice(args);
            a.extend_from_slice(&["--metastore", &url, "--state-dir", &state]);
            lake.ok(&a).trim().to_string()
        };
        // A tenant of its own: the PostgreSQL server is shared by the tests.
        admin(&["tenant", "create", tenant]);
        admin(&["user", "create", "root", "--tenant", tenant, "--admin"]);
        let key = admin(&[
            "key", "create", "--tenant", tenant, "--user", "root", "--scope", "admin",
        ]);
        let token = format!("{tenant}-worker-token");
        let server = serve_with_env(
            &url,
            &["--state-dir", &state, "--workers", "0"],
            &[("LAKEPLAN_WORKER_TOKEN", token.clone())],
        );
        let worker = rt().block_on(async {
            let (s, v) = call(
                "POST",
                &format!("{}/internal/v1/workers", server.base),
                &token,
                Some(json!({"endpoint": "http://127.0.0.1:9"})),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            let worker = v["worker_id"].as_str().expect("worker id").to_string();
            // The tenant's lake is open before PostgreSQL turns slow.
            let (s, v) = call(
                "GET",
                &format!("{}/api/v1/branches", server.base),
                &key,
                None,
            )
            .await;
            assert_eq!(s, 200, "{v}");
            worker
        });
        SlowMetastore {
            proxy,
            server,
            key,
            token,
            worker,
            _dirs: lake,
        }
    }

    /// More requests than the server has runtime threads, and than a metastore has connections.
    fn enough_to_fill_every_thread() -> usize {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        2 * threads + lakeplan_catalog::postgres::POOL_SIZE
    }

    /// Sends `n` `GET /api/v1/branches` in the background.
    fn list_branches(&self, n: usize) -> Vec<tokio::task::JoinHandle<(u16, Value)>> {
        (0..n)
            .map(|_| {
                let (url, key) = (
                    format!("{}/api/v1/branches", self.server.base),
                    self.key.clone(),
                );
                tokio::spawn(async move { call("GET", &url, &key, None).await })
            })
            .collect()
    }

    /// `/healthz` and the worker's heartbeat each answer 200 within 5 s (a generous bound: they
    /// need no metastore and take milliseconds unless the runtime is stalled).
    async fn assert_alive(&self, client: &reqwest::Client, when: &str) {
        let within = std::time::Duration::from_secs(5);
        let base = &self.server.base;
        let health = tokio::time::timeout(within, async {
            let r = client.get(format!("{base}/healthz")).send().await?;
            Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
        })
        .await;
        assert!(
            matches!(&health, Ok(Ok((200, body))) if body == "ok"),
            "/healthz {when}: {health:?}"
        );
        let beat = tokio::time::timeout(within, async {
            let r = client
                .post(format!(
                    "{base}/internal/v1/workers/{}/heartbeat",
                    self.worker
                ))
                .bearer_auth(&self.token)
                .send()
                .await?;
            Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
        })
        .await;
        assert!(
            matches!(&beat, Ok(Ok((200, _)))),
            "a heartbeat {when}: {beat:?}"
        );
    }
}

/// A slow PostgreSQL stalls neither `/healthz` nor a worker's heartbeat (issue 17). A proxy
/// holds every message to PostgreSQL for 30 s while more API requests than the server has
/// runtime threads (and than the metastore has connections) wait on it in their key check;
/// `/healthz` and a registered worker's heartbeat, which need no metastore, must still answer
/// within 5 s. Before the fix, each waiting request held a runtime thread (its key was looked
/// up right there) and both timed out.
#[test]
fn requests_waiting_for_their_key_check_stall_neither_healthz_nor_heartbeats() {
    let slow = SlowMetastore::start("slowkeys");
    rt().block_on(async {
        slow.proxy.set_delay(std::time::Duration::from_secs(30));
        let stuck = slow.list_branches(SlowMetastore::enough_to_fill_every_thread());
        let since = std::time::Instant::now();
        while slow.proxy.held() == 0 && since.elapsed().as_secs() < 30 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(slow.proxy.held() > 0, "no request reached the metastore");
        // Time for the rest to reach it too (they stay there for 30 s).
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        slow.assert_alive(
            &reqwest::Client::new(),
            "while keys are checked on a slow metastore",
        )
        .await;
        assert!(
            slow.proxy.held() > 0,
            "the slow requests were still waiting"
        );
        for t in stuck {
            t.abort();
        }
    });
}

/// The same once the requests are past their key check and in their handlers, which call the
/// synchronous service layer: every PostgreSQL message is held 2 s, and `/healthz` and the
/// heartbeat are asked every half second until every request has answered (each must, with
/// 200). Before handlers ran off the runtime's threads, the requests that reached their
/// handlers together held every runtime thread for seconds on end.
#[test]
fn requests_waiting_in_their_handlers_stall_neither_healthz_nor_heartbeats() {
    let slow = SlowMetastore::start("slowhandlers");
    rt().block_on(async {
        slow.proxy.set_delay(std::time::Duration::from_secs(2));
        let mut stuck = slow.list_branches(SlowMetastore::enough_to_fill_every_thread());
        let client = reqwest::Client::new();
        let since = std::time::Instant::now();
        while !stuck.is_empty() {
            assert!(
                since.elapsed().as_secs() < 300,
                "{} requests still unanswered after 300 s",
                stuck.len()
            );
            slow.assert_alive(&client, "while handlers wait on a slow metastore")
                .await;
            let mut waiting = Vec::new();
            for t in stuck {
                if t.is_finished() {
                    let (s, v) = t.await.expect("request");
                    assert_eq!(s, 200, "{v}");
                } else {
                    waiting.push(t);
                }
            }
            stuck = waiting;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
}

/// Jobs are records of the shared metastore: a run through one server (its log and code on
/// that server's disk) is listed, its log read and the job rerun through another server with a
/// state folder of its own, whose worker (`--state-dir`: another machine's folder) finds every
/// node in the node cache A's run left in the lake.
#[test]
fn two_servers_on_one_postgres_metastore_share_jobs() {
    let pg = lakeplan_catalog::testing::TestPostgres::shared().expect("PostgreSQL for tests");
    let lake = Lake::new();
    let url = pg.url();
    let (sa, sb) = (
        lake.file("state-a").display().to_string(),
        lake.file("state-b").display().to_string(),
    );
    let wh = lake.file("warehouse").join("jobs").display().to_string();
    let admin = |args: &[&str]| {
        let mut a = vec!["admin"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--metastore", &url, "--state-dir", &sa]);
        lake.ok(&a)
    };
    // A tenant of its own: the PostgreSQL server is shared by the tests.
    admin(&["tenant", "create", "jobs", "--warehouse", &wh]);
    admin(&["user", "create", "root", "--tenant", "jobs", "--admin"]);
    let key = admin(&[
        "key", "create", "--tenant", "jobs", "--user", "root", "--scope", "admin",
    ]);
    let key = key.trim().to_string();
    let env = worker_env();
    let a = serve_with_env(&url, &["--state-dir", &sa, "--allow-local-paths"], &env);
    // B's tasks go to a worker with a folder of its own, as on another machine.
    let b = serve_with_env(
        &url,
        &["--state-dir", &sb, "--allow-local-paths", "--workers", "0"],
        &env,
    );
    let sc = lake.file("state-c");
    let _elsewhere = worker_with(&b, &env, &["--state-dir", &sc.display().to_string()]);
    let files: std::collections::BTreeMap<String, String> = [
        ("lakeplan_project.yml", "project:\n  name: shared_jobs\n"),
        (
            "vendors.sql",
            "-- lakeplan: materialization_strategy=REPLACE\nSELECT vendor, count(*) AS n FROM trips GROUP BY vendor\n",
        ),
        (
            "models.py",
            "import lakeplan\n\n\n@lakeplan.model(materialization_strategy=\"REPLACE\")\n\
             @lakeplan.python(\"3.11\")\n\
             def fares(trips=lakeplan.Model(\"trips\", columns=[\"trip_id\", \"fare\"])):\n    \
             return trips\n",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let zip = lakeplan_lake::zip_files(&files).expect("zip");
    rt().block_on(async {
        let jan = data("trips_2024_01.csv");
        let (s, v) = call(
            "POST",
            &format!("{}/api/v1/branches/main/tables", a.base),
            &key,
            Some(json!({"table": "trips", "search_uri": jan})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = call(
            "POST",
            &format!("{}/api/v1/branches/main/tables/trips/import", a.base),
            &key,
            Some(json!({"search_uri": jan})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/runs?ref=main", a.base))
            .bearer_auth(&key)
            .header("content-type", "application/zip")
            .body(zip)
            .send()
            .await
            .expect("run");
        assert_eq!(resp.status().as_u16(), 202);
        let id = resp.json::<Value>().await.expect("json")["job_id"]
            .as_str()
            .expect("job id")
            .to_string();
        // Followed live through server B, which did not run it: the stream reads the log's
        // parts from the metastore, and ends with the job's status.
        let stream = get_text(&format!("{}/api/v1/jobs/{id}/logs/stream", b.base), &key).await;
        assert!(
            stream.contains("data: ") && stream.contains("vendors"),
            "{stream}"
        );
        assert!(stream.contains("event: end\ndata: succeeded"), "{stream}");
        let mut status = String::new();
        for _ in 0..600 {
            let (_, job) = call("GET", &format!("{}/api/v1/jobs/{id}", b.base), &key, None).await;
            status = job["status"].as_str().unwrap_or_default().to_string();
            if status != "running" && !status.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(status, "succeeded");
        let (_, jobs) = call("GET", &format!("{}/api/v1/jobs", b.base), &key, None).await;
        assert!(
            jobs.as_array()
                .is_some_and(|j| j.iter().any(|x| x["id"] == id.as_str())),
            "{jobs}"
        );
        let log = get_text(&format!("{}/api/v1/jobs/{id}/logs", b.base), &key).await;
        assert!(
            log.contains("vendors") && log.contains("succeeded"),
            "{log}"
        );
        // A rerun through B uses the code snapshot A's run stored.
        let (s, v) = call(
            "POST",
            &format!("{}/api/v1/jobs/{id}/rerun", b.base),
            &key,
            None,
        )
        .await;
        assert_eq!(s, 202, "{v}");
        let again = v["job_id"].as_str().expect("job id").to_string();
        let mut job = Value::Null;
        for _ in 0..600 {
            (_, job) = call(
                "GET",
                &format!("{}/api/v1/jobs/{again}", a.base),
                &key,
                None,
            )
            .await;
            status = job["status"].as_str().unwrap_or_default().to_string();
            if status != "running" && !status.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(status, "succeeded");
        // B's workers (another machine's folders) had no cache of their own: the nodes came
        // from the cache A's run left in the lake (metastore + warehouse).
        let log = get_text(&format!("{}/api/v1/jobs/{again}/logs", b.base), &key).await;
        for node in ["vendors", "fares"] {
            let n = job["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["node"] == node))
                .unwrap_or_else(|| panic!("{node} in {job}"));
            assert_eq!(n["status"], "cached", "{job}\n{log}");
            assert!(
                log.contains(&format!("[{node}] cache entry"))
                    && log.contains("copied from the lake's shared node cache"),
                "{log}"
            );
        }
        assert!(
            std::path::Path::new(&wh)
                .join(".lakeplan/node-cache")
                .is_dir(),
            "the shared entries are in the warehouse"
        );
        assert!(
            sc.join("tenants/jobs/cache/nodes").is_dir(),
            "the worker copied them into its own folder"
        );
    });
}

/// Hashes, times, snapshot ids, locations and uuids differ between two lakes; everything else
/// the CLI prints must not.
fn normalize(s: &str) -> String {
    let rules = [
        (r"file://[^\s\x22]+", "<LOCATION>"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "<UUID>",
        ),
        (r"\b[0-9a-f]{12,64}\b", "<HASH>"),
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "<TIME>",
        ),
        (r"\b\d{10,}\b", "<ID>"),
        // Commits record the client they came through: the CLI, or the API for remote mode.
        (
            r"lakeplan\.client(\x22: \x22|=)(cli|api)",
            "lakeplan.client=<CLIENT>",
        ),
    ];
    let mut out = s.to_string();
    for (re, to) in rules {
        out = regex::Regex::new(re)
            .expect("regex")
            .replace_all(&out, to)
            .into_owned();
    }
    // Aligned columns widen with the placeholders' lengths: compare words, not spacing.
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The same commands in embedded mode and in remote mode print the same (tty and JSON), and
/// fail with the same one-line errors.
/// A server with tenant `acme` and an admin user called what embedded mode's author is
/// (`LAKEPLAN_USER=tester`), and a [`Lake`] whose commands run in remote mode against it
/// through a profile in its own `HOME`.
pub(crate) fn remote_lake(server_env: &[(&str, String)]) -> (Lake, Server) {
    remote_lake_with(server_env, &[])
}

/// The metastore of a [`remote_lake`]'s server.
fn metastore_of(remote: &Lake) -> String {
    format!("sqlite:{}", remote.file("server").display())
}

/// `lakeplan admin ARGS` on the metastore of a [`remote_lake`]'s server (running or not);
/// its output.
pub(crate) fn remote_admin(remote: &Lake, args: &[&str]) -> String {
    let meta = metastore_of(remote);
    let mut a = vec!["admin"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--metastore", &meta]);
    remote.ok(&a)
}

/// [`remote_lake`], with more `lakeplan serve` arguments.
fn remote_lake_with(server_env: &[(&str, String)], serve_args: &[&str]) -> (Lake, Server) {
    let remote = Lake::new();
    let meta = metastore_of(&remote);
    let admin = |args: &[&str]| remote_admin(&remote, args);
    admin(&["tenant", "create", "acme"]);
    admin(&["user", "create", "tester", "--tenant", "acme", "--admin"]);
    let key = admin(&[
        "key", "create", "--tenant", "acme", "--user", "tester", "--scope", "admin",
    ]);
    let mut args = vec!["--allow-local-paths"];
    args.extend_from_slice(serve_args);
    let server = serve_with_env(&meta, &args, server_env);
    // A profile file, as a user would write it; HOME is the test's folder.
    let home = remote.file("home");
    std::fs::create_dir_all(home.join(".lakeplan")).expect("home");
    std::fs::write(
        home.join(".lakeplan/config.yaml"),
        format!(
            "profiles:\n  test:\n    api_endpoint: {}\n    api_key: {}\n",
            server.base,
            key.trim()
        ),
    )
    .expect("config");
    let mut remote = remote;
    remote.env.push(("HOME".into(), home.display().to_string()));
    remote.env.push(("LAKEPLAN_PROFILE".into(), "test".into()));
    (remote, server)
}

/// The same commands in embedded mode and in remote mode print the same (tty and JSON), and
/// fail with the same one-line errors.
#[test]
fn remote_mode_prints_what_embedded_mode_prints() {
    let local = Lake::new();
    let (remote, server) = remote_lake(&[]);

    let jan = data("trips_2024_01.csv");
    let feb = data("trips_2024_02.csv");
    let script: Vec<Vec<&str>> = vec![
        vec!["table", "create", "trips", "--search-uri", &jan],
        vec!["table", "import", "trips", "--search-uri", &jan],
        vec!["tag", "create", "v1"],
        vec!["checkout", "-b", "tester.feb"],
        vec![
            "table",
            "import",
            "trips",
            "--search-uri",
            &feb,
            "--commit-property",
            "source=feb",
        ],
        vec!["branch", "ls"],
        vec!["branch", "get", "tester.feb"],
        vec!["branch", "diff", "main"],
        vec!["table", "ls", "-r", "main"],
        vec!["table", "get", "trips"],
        vec![
            "query",
            "SELECT vendor, count(*) AS n FROM trips GROUP BY vendor ORDER BY vendor",
        ],
        vec!["query", "SELECT count(*) AS n FROM trips", "-r", "v1"],
        vec![
            "namespace",
            "create",
            "staging",
            "--commit-body",
            "for the reload",
            "--commit-property",
            "ticket=LP-1",
        ],
        vec!["namespace", "ls"],
        vec!["tag", "ls"],
        vec!["branch", "merge", "tester.feb", "--into", "main"],
        vec!["commit", "main", "-n", "3", "--author", "tester"],
        vec![
            "table",
            "revert",
            "trips",
            "--source-ref",
            "v1",
            "--into-branch",
            "main",
            "--commit-property",
            "ticket=LP-2",
        ],
        vec!["namespace", "rm", "staging", "--commit-body", "done"],
        vec!["table", "rm", "trips", "--commit-body", "superseded"],
        vec!["commit", "main", "-n", "4"],
        vec!["commit", "tester.feb", "--property", "ticket=LP-1"],
        vec!["checkout", "main"],
        vec!["branch", "rm", "tester.feb"],
        vec!["lake", "info"],
    ];
    for args in &script {
        for json in [false, true] {
            let mut a: Vec<&str> = if json { vec!["-O", "json"] } else { vec![] };
            a.extend_from_slice(args);
            // Writes run once (tty); `lake info` says where it runs, which differs by mode.
            let write = matches!(
                args[1],
                "create" | "import" | "rm" | "merge" | "revert" | "-b"
            );
            if json && (write || args[0] == "lake") {
                continue;
            }
            let l = local.run(&a);
            let r = remote.run(&a);
            assert!(
                l.status.success(),
                "local {a:?}: {}",
                String::from_utf8_lossy(&l.stderr)
            );
            assert!(
                r.status.success(),
                "remote {a:?}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            if args[0] == "lake" {
                let text = String::from_utf8_lossy(&r.stdout);
                assert!(
                    text.contains(&server.base) && text.contains("acme"),
                    "{text}"
                );
                continue;
            }
            assert_eq!(
                normalize(&String::from_utf8_lossy(&l.stdout)),
                normalize(&String::from_utf8_lossy(&r.stdout)),
                "{a:?} prints differently in remote mode"
            );
        }
    }
    for args in [
        vec!["branch", "get", "nope"],
        vec!["table", "get", "nope"],
        vec!["branch", "create", "bad..name"],
        vec!["query", "SELEC 1"],
        vec!["tag", "create", "v1"],
        vec![
            "namespace",
            "create",
            "x",
            "--commit-property",
            "lakeplan.client=me",
        ],
        vec!["namespace", "create", "x", "--commit-property", "novalue"],
    ] {
        assert_eq!(local.err(&args), remote.err(&args), "{args:?}");
    }
    let e = remote.err(&["rerun", "0123456789abcdef"]);
    assert!(e.contains("not found"), "{e}");
}

/// `lakeplan run` in remote mode uploads the project and runs it on the server (functions in
/// its sandboxes); `job ls|get|logs` read it back; a broken project fails with its planning
/// error and changes nothing.
#[test]
fn pipelines_run_through_the_server() {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pipeline-envs")
        .display()
        .to_string();
    let (remote, _server) = remote_lake(&[("LAKEPLAN_ENV_CACHE", cache)]);
    let jan = data("trips_2024_01.csv");
    remote.load("trips", &jan, &[]);
    remote.load("zones", &data("zones.jsonl"), &[]);
    let dir = remote.file("project");
    let d = dir.display().to_string();
    remote.ok(&["init", &d, "--name", "remote_demo"]);
    let before = remote.head("main");
    let out = remote.ok(&[
        "run",
        "-p",
        &d,
        "--param",
        "min_fare=10",
        "--preview",
        "head",
    ]);
    assert!(
        out.contains("paid_trips"),
        "the run's log is followed: {out}"
    );
    assert!(
        out.contains("[paid_trips] preview:"),
        "--preview reaches the worker and its rows the log: {out}"
    );
    assert_ne!(remote.head("main"), before, "the run published to main");
    assert_eq!(
        remote.count("SELECT count(*) FROM paid_trips", &[]),
        remote.count("SELECT count(*) FROM trips WHERE fare >= 10", &[])
    );
    let jobs = remote.json(&["job", "ls"]);
    let job = &jobs[0];
    assert_eq!(job["status"], "succeeded", "{jobs}");
    assert_eq!(job["project_name"], "remote_demo");
    assert_eq!(job["parameters"]["min_fare"], "10");
    let id = job["id"].as_str().expect("id");
    assert_eq!(remote.json(&["job", "get", id])["id"], job["id"]);
    let log = remote.ok(&["job", "logs", id]);
    assert!(log.contains("paid_trips"));
    // The server's own folders are not shown to clients.
    let server_dir = remote.file("server").display().to_string();
    for text in [jobs.to_string(), log.clone(), out.clone()] {
        assert!(!text.contains(&server_dir), "a server path leaked: {text}");
    }
    assert!(
        jobs[0]["project_dir"]
            .as_str()
            .is_some_and(|p| p.starts_with("<lake>")),
        "{jobs}"
    );

    // A rerun on the server: the stored code, parameters and input commit, into a branch.
    remote.ok(&["branch", "create", "tester.again", "--from-ref", "main"]);
    remote.ok(&["rerun", id, "-r", "tester.again"]);
    let jobs = remote.json(&["job", "ls"]);
    assert_eq!(jobs[0]["rerun_of"], job["id"], "{jobs}");
    assert_eq!(jobs[0]["status"], "succeeded");
    assert_eq!(jobs[0]["parameters"]["min_fare"], "10");
    assert_eq!(
        remote.count("SELECT count(*) FROM paid_trips", &["-r", "tester.again"]),
        remote.count("SELECT count(*) FROM trips WHERE fare >= 10", &[])
    );

    // A project that does not plan: its error, with file and line, and nothing written.
    std::fs::write(
        dir.join("models.py"),
        "import lakeplan\n\n@lakeplan.model()\ndef broken(:\n",
    )
    .expect("write");
    let head = remote.head("main");
    let e = remote.err(&["run", "-p", &d]);
    assert!(e.contains("models.py"), "{e}");
    assert_eq!(remote.head("main"), head);
    let e = remote.err(&["job", "get", "0123456789abcdef"]);
    assert!(e.contains("not found"), "{e}");
}

/// A `lakeplan worker` process, killed on drop.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The environment of a server and the workers started by hand: a shared environment cache
/// and the worker token.
fn worker_env() -> [(&'static str, String); 2] {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pipeline-envs")
        .display()
        .to_string();
    [
        ("LAKEPLAN_ENV_CACHE", cache),
        (
            "LAKEPLAN_WORKER_TOKEN",
            "worker-secret-for-tests".to_string(),
        ),
    ]
}

fn worker(server: &Server, env: &[(&str, String)]) -> Worker {
    worker_with(server, env, &[])
}

fn worker_with(server: &Server, env: &[(&str, String)], args: &[&str]) -> Worker {
    let child = std::process::Command::new(bin())
        .args(["worker", "--control-plane", &server.base])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start lakeplan worker");
    Worker(child)
}

/// A run on a worker stops on `job stop`; a worker killed mid-run fails its job cleanly. Either
/// way the target branch is untouched, and the run can be retried on another worker.
#[test]
fn a_worker_lost_mid_run_fails_the_job_and_leaves_the_branch() {
    let env = worker_env();
    let (remote, server) =
        remote_lake_with(&env, &["--workers", "0", "--worker-timeout-secs", "2"]);
    let mut first = worker(&server, &env);
    remote.load("trips", &data("trips_2024_01.csv"), &[]);
    remote.load("zones", &data("zones.jsonl"), &[]);
    let dir = remote.file("project");
    let d = dir.display().to_string();
    remote.ok(&["init", &d, "--name", "slow"]);
    let models = dir.join("models.py");
    let code = std::fs::read_to_string(&models).expect("models.py");
    let slow = code.replacen(
        "    kept = trips.filter(",
        "    import time\n    time.sleep(600)\n    kept = trips.filter(",
        1,
    );
    assert_ne!(slow, code, "the example model changed: update this test");
    std::fs::write(&models, slow).expect("write");

    let before = remote.head("main");
    let started = remote.json(&["run", "-p", &d, "--detach"]);
    let id = started["job_id"].as_str().expect("job id").to_string();
    // Wait until the slow function runs, then kill the worker outright.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let log = remote.ok(&["job", "logs", &id]);
        if log.contains("paid_trips") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    first.0.kill().expect("kill the worker");
    let _ = first.0.wait();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let job = loop {
        let job = remote.json(&["job", "get", &id]);
        if job["status"] != "running" {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "still running: {job}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().is_some_and(|e| e.contains("lost")),
        "{job}"
    );
    assert_eq!(remote.head("main"), before, "nothing was published");

    // The same run, retried once another worker is up, publishes.
    let _second = worker(&server, &env);
    std::fs::write(&models, code).expect("restore the model");
    remote.ok(&["run", "-p", &d]);
    assert_ne!(remote.head("main"), before, "the retried run published");
    assert!(remote.count("SELECT count(*) FROM paid_trips", &[]) > 0);
}

/// A run's Python nodes are tasks of their own: with a coordinating worker that runs no
/// functions and two one-slot node workers, two independent nodes run on different workers,
/// the node reading both gets the other worker's output over Arrow Flight, and the coordinator
/// fetches the materialized output the same way. The coordinator builds no environment (it
/// cannot: it has no uv and an empty environment cache of its own).
#[test]
fn pipeline_nodes_run_on_several_workers_and_hand_outputs_over_flight() {
    let env = worker_env();
    let (remote, server) = remote_lake_with(&env, &["--workers", "0"]);
    let coordinator_envs = remote.file("coordinator-envs");
    let mut coordinator_env = env.to_vec();
    coordinator_env.retain(|(k, _)| *k != "LAKEPLAN_ENV_CACHE");
    coordinator_env.push(("LAKEPLAN_ENV_CACHE", coordinator_envs.display().to_string()));
    coordinator_env.push(("LAKEPLAN_UV", "/nonexistent/uv".to_string()));
    let _coordinator = worker_with(&server, &coordinator_env, &["--tasks", "run,query,import"]);
    let _b = worker_with(&server, &env, &["--tasks", "node", "--max-tasks", "1"]);
    let _c = worker_with(&server, &env, &["--tasks", "node", "--max-tasks", "1"]);
    remote.load("trips", &data("trips_2024_01.csv"), &[]);
    let dir = remote.file("spread");
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::write(
        dir.join("lakeplan_project.yml"),
        "project:\n  name: spread\n",
    )
    .expect("project file");
    std::fs::write(
        dir.join("models.py"),
        r#"import time

import pyarrow
import lakeplan


@lakeplan.model()
@lakeplan.python("3.11")
def cheap(trips=lakeplan.Model("trips", columns=["trip_id", "fare"], filter="fare < 20")):
    time.sleep(2)
    return trips


@lakeplan.model()
@lakeplan.python("3.11")
def dear(trips=lakeplan.Model("trips", columns=["trip_id", "fare"], filter="fare >= 20")):
    time.sleep(2)
    return trips


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11")
def all_fares(cheap=lakeplan.Model("cheap"), dear=lakeplan.Model("dear")):
    print(f"joining {cheap.num_rows} + {dear.num_rows}")
    return pyarrow.concat_tables([cheap, dear])
"#,
    )
    .expect("models.py");
    let d = dir.display().to_string();
    let out = remote.ok(&["run", "-p", &d, "--no-cache"]);
    let ran_on = |node: &str| -> String {
        let marker = format!("[{node}] ran on worker ");
        let at = out
            .find(&marker)
            .unwrap_or_else(|| panic!("no worker named for {node}: {out}"));
        out[at + marker.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (cheap, dear, all) = (ran_on("cheap"), ran_on("dear"), ran_on("all_fares"));
    assert_ne!(
        cheap, dear,
        "the independent nodes ran on two workers: {out}"
    );
    let other = if all == cheap { &dear } else { &cheap };
    assert!(
        out.contains(&format!("fetched over Arrow Flight from {other}")),
        "all_fares read the other worker's output over Flight: {out}"
    );
    assert!(
        out.contains(&format!(
            "[all_fares] output fetched over Arrow Flight from {all}"
        )),
        "the coordinator fetched the output it materializes: {out}"
    );
    assert!(
        out.contains("[all_fares] joining"),
        "the function's print: {out}"
    );
    let built: Vec<String> = std::fs::read_dir(&coordinator_envs)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n != "interpreters.json")
                .collect()
        })
        .unwrap_or_default();
    assert!(built.is_empty(), "the coordinator built {built:?}");
    // Once the run is over, the workers free the outputs they held for it.
    let job = out
        .split_whitespace()
        .nth(2)
        .expect("the job id on the first line")
        .to_string();
    assert_job_folders_are_gone(&job);
    assert_eq!(
        remote.count("SELECT count(*) FROM all_fares", &[]),
        remote.count(
            "SELECT count(*) FROM trips WHERE fare < 20 OR fare >= 20",
            &[]
        )
    );
}

/// Waits (10 s at most) until no shared-memory folder of job `job` is left (they are named
/// lakeplan-<job id's first 12>-<node>-…, in /dev/shm or the temporary folder).
fn assert_job_folders_are_gone(job: &str) {
    let prefix = format!("lakeplan-{}-", &job[..12]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<String> = [std::path::PathBuf::from("/dev/shm"), std::env::temp_dir()]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node outputs still held after the run: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A node's worker lost mid-node: the node is queued again and another worker runs it, so the
/// run still publishes. The output of the node before it, which the lost worker held, is
/// computed again on the new worker first. What the function prints reaches the job's log
/// while it runs, from the node's worker (through the metastore, as any server would read
/// it). The lost worker's shared-memory folders are removed by the next worker to make one on
/// the machine.
#[test]
fn a_node_whose_worker_is_lost_runs_again_elsewhere_and_its_lines_are_live() {
    let env = worker_env();
    let (remote, server) =
        remote_lake_with(&env, &["--workers", "0", "--worker-timeout-secs", "2"]);
    let _coordinator = worker_with(&server, &env, &["--tasks", "run,query,import"]);
    let mut first = worker_with(&server, &env, &["--tasks", "node"]);
    remote.load("trips", &data("trips_2024_01.csv"), &[]);
    let dir = remote.file("retry");
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::write(
        dir.join("lakeplan_project.yml"),
        "project:\n  name: retry\n",
    )
    .expect("project file");
    std::fs::write(
        dir.join("models.py"),
        r#"import time

import lakeplan


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11")
def first(trips=lakeplan.Model("trips", columns=["trip_id"])):
    print("computing", flush=True)
    return trips


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11")
def slow(first=lakeplan.Model("first")):
    print("sleeping", flush=True)
    time.sleep(4)
    return first
"#,
    )
    .expect("models.py");
    let d = dir.display().to_string();
    let before = remote.head("main");
    let started = remote.json(&["run", "-p", &d, "--detach", "--no-cache"]);
    let id = started["job_id"].as_str().expect("job id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let log = remote.ok(&["job", "logs", &id]);
        if log.contains("[slow] sleeping") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the function's print never reached the log while it ran: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(remote.json(&["job", "get", &id])["status"], "running");
    first.0.kill().expect("kill the node's worker");
    let _ = first.0.wait();
    let _second = worker_with(&server, &env, &["--tasks", "node"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let job = loop {
        let job = remote.json(&["job", "get", &id]);
        if job["status"] != "running" {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "still running: {job}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let log = remote.ok(&["job", "logs", &id]);
    assert_eq!(job["status"], "succeeded", "{job}\n{log}");
    assert!(
        log.contains("queued again after an attempt failed"),
        "{log}"
    );
    assert!(log.contains("lost"), "{log}");
    assert_eq!(
        log.matches("[slow] sleeping").count(),
        2,
        "it ran twice, once per worker: {log}"
    );
    assert!(
        log.contains("could not be read") && log.contains("computing 'first' again"),
        "{log}"
    );
    assert_eq!(
        log.matches("[first] computing").count(),
        2,
        "the lost worker's output of first was computed again: {log}"
    );
    assert_ne!(remote.head("main"), before, "the run published");
    assert_job_folders_are_gone(&id);
    for t in ["first", "slow"] {
        assert_eq!(
            remote.count(&format!("SELECT count(*) FROM {t}"), &[]),
            remote.count("SELECT count(*) FROM trips", &[])
        );
    }
}
