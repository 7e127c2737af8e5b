//! Benchmark 9: the server under load. 32 concurrent clients on loopback run a mixed metadata
//! workload against `lakeplan serve` for 30 s; each round of a client is
//!
//! ```text
//! GET  /api/v1/branches                       list
//! GET  /api/v1/branches/main                  get
//! POST /api/v1/branches {name}                create a branch
//! POST /api/v1/branches/{name}/namespaces     commit (a namespace: one commit on the branch)
//! DELETE /api/v1/branches/{name}              delete the branch
//! ```
//!
//! The peer, measured in the same run: the same workload, the same 32 concurrent tasks, calling
//! the service layer (`lakeplan_lake::Lake`) in process on a fresh SQLite lake: what is left is
//! the cost of HTTP, JSON and authentication. Reported: operations per second and the p50/p99
//! latency of each operation, and branch create's p50 (goal: under 5 ms over HTTP; lakeFS
//! publishes under 15 ms).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use lakeplan_bench::{admin_key, percentile, say, scratch_and_runtime, start_server, Res};
use lakeplan_core::RefKind;
use lakeplan_lake::{Lake, LakeConfig};
use serde_json::json;

#[derive(Parser)]
#[command(about = "32 concurrent clients doing a mixed metadata workload over HTTP vs in process")]
struct Args {
    /// The release `lakeplan` binary
    #[arg(long)]
    cli: PathBuf,
    /// Concurrent clients
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds each workload runs
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Where the server's metastore and the peer's lake are made (removed at the end)
    #[arg(long, default_value = "bench/out")]
    dir: PathBuf,
    /// Write the figures as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

const OPS: [&str; 5] = ["list", "get", "create", "commit", "delete"];

/// Latencies in seconds, by operation.
type Samples = BTreeMap<&'static str, Vec<f64>>;

async fn timed<F, Fut, T>(samples: &mut Samples, op: &'static str, f: F) -> Res<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Res<T>>,
{
    let start = Instant::now();
    let out = f().await?;
    samples
        .entry(op)
        .or_default()
        .push(start.elapsed().as_secs_f64());
    Ok(out)
}

async fn expect(resp: reqwest::Response, want: u16, what: &str) -> Res<()> {
    let status = resp.status().as_u16();
    if status != want {
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("{what}: HTTP {status}: {body}").into());
    }
    // Read the body: a client uses what it asked for.
    resp.bytes().await?;
    Ok(())
}

async fn http_client(base: String, key: String, id: usize, until: Instant) -> Res<Samples> {
    let client = reqwest::Client::new();
    let mut s = Samples::new();
    let mut n = 0usize;
    while Instant::now() < until {
        let name = format!("c{id}_{n}");
        let c = &client;
        let (b, k) = (&base, &key);
        timed(&mut s, "list", || async {
            expect(
                c.get(format!("{b}/api/v1/branches"))
                    .bearer_auth(k)
                    .send()
                    .await?,
                200,
                "list",
            )
            .await
        })
        .await?;
        timed(&mut s, "get", || async {
            expect(
                c.get(format!("{b}/api/v1/branches/main"))
                    .bearer_auth(k)
                    .send()
                    .await?,
                200,
                "get",
            )
            .await
        })
        .await?;
        timed(&mut s, "create", || async {
            let r = c
                .post(format!("{b}/api/v1/branches"))
                .bearer_auth(k)
                .json(&json!({"name": name}))
                .send()
                .await?;
            expect(r, 201, "create").await
        })
        .await?;
        timed(&mut s, "commit", || async {
            let r = c
                .post(format!("{b}/api/v1/branches/{name}/namespaces"))
                .bearer_auth(k)
                .json(&json!({"name": "staging"}))
                .send()
                .await?;
            expect(r, 201, "commit").await
        })
        .await?;
        timed(&mut s, "delete", || async {
            expect(
                c.delete(format!("{b}/api/v1/branches/{name}"))
                    .bearer_auth(k)
                    .send()
                    .await?,
                200,
                "delete",
            )
            .await
        })
        .await?;
        n += 1;
    }
    Ok(s)
}

async fn embedded_client(lake: Arc<Lake>, id: usize, until: Instant) -> Res<Samples> {
    let mut s = Samples::new();
    let mut n = 0usize;
    while Instant::now() < until {
        let name = format!("c{id}_{n}");
        let l = &lake;
        timed(&mut s, "list", || async {
            Ok(l.list_refs(RefKind::Branch).map(|v| v.len())?)
        })
        .await?;
        timed(&mut s, "get", || async {
            Ok(l.get_ref("main", RefKind::Branch)?)
        })
        .await?;
        timed(&mut s, "create", || async {
            Ok(l.create_ref(&name, RefKind::Branch, Some("main"), false)?)
        })
        .await?;
        timed(&mut s, "commit", || async {
            Ok(l.create_namespace("staging", Some(&name)).await?)
        })
        .await?;
        timed(&mut s, "delete", || async {
            Ok(l.delete_ref(&name, RefKind::Branch, false)?)
        })
        .await?;
        n += 1;
    }
    Ok(s)
}

/// Runs `clients` copies of a workload for `secs` and merges their samples.
async fn run_clients<F, Fut>(clients: usize, secs: u64, make: F) -> Res<(Samples, f64)>
where
    F: Fn(usize, Instant) -> Fut,
    Fut: std::future::Future<Output = Res<Samples>> + Send + 'static,
{
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients).map(|i| tokio::spawn(make(i, until))).collect();
    let mut all = Samples::new();
    for t in tasks {
        for (op, v) in t.await?? {
            all.entry(op).or_default().extend(v);
        }
    }
    Ok((all, start.elapsed().as_secs_f64()))
}

struct Figures {
    ops_per_sec: f64,
    p50_ms: BTreeMap<&'static str, f64>,
    p99_ms: BTreeMap<&'static str, f64>,
    ops: usize,
}

fn figures(s: &Samples, wall: f64) -> Figures {
    let ops: usize = s.values().map(Vec::len).sum();
    Figures {
        ops_per_sec: ops as f64 / wall,
        p50_ms: s
            .iter()
            .map(|(k, v)| (*k, percentile(v, 50.0) * 1e3))
            .collect(),
        p99_ms: s
            .iter()
            .map(|(k, v)| (*k, percentile(v, 99.0) * 1e3))
            .collect(),
        ops,
    }
}

fn main() -> Res<()> {
    let args = Args::parse();
    let (tmp, rt) = scratch_and_runtime(&args.dir)?;

    // The server: one tenant, one admin key.
    let meta = format!("sqlite:{}", tmp.path().join("server").display());
    let meta = ["--metastore", meta.as_str()];
    let key = admin_key(&args.cli, &meta, "bench")?;
    let server = start_server(&args.cli, &meta, &[])?;
    let base = server.base.clone();
    say(format!(
        "HTTP: {} clients for {} s against {base}",
        args.clients, args.secs
    ));
    let (http, http_wall) = rt.block_on(run_clients(args.clients, args.secs, |i, until| {
        http_client(base.clone(), key.clone(), i, until)
    }))?;
    drop(server);

    // The peer: the same workload on the service layer, in process.
    let lake = Arc::new(Lake::open(
        &tmp.path().join("embedded"),
        LakeConfig {
            actor: "bench".into(),
            client: "bench".into(),
        },
    )?);
    say(format!(
        "in process: {} tasks for {} s",
        args.clients, args.secs
    ));
    let (emb, emb_wall) = rt.block_on(run_clients(args.clients, args.secs, |i, until| {
        embedded_client(lake.clone(), i, until)
    }))?;

    let h = figures(&http, http_wall);
    let e = figures(&emb, emb_wall);
    println!(
        "\n{:<8} {:>12} {:>12} {:>14} {:>14}",
        "op", "HTTP p50 ms", "HTTP p99 ms", "in-proc p50 ms", "in-proc p99 ms"
    );
    for op in OPS {
        println!(
            "{:<8} {:>12.2} {:>12.2} {:>14.2} {:>14.2}",
            op,
            h.p50_ms.get(op).copied().unwrap_or(0.0),
            h.p99_ms.get(op).copied().unwrap_or(0.0),
            e.p50_ms.get(op).copied().unwrap_or(0.0),
            e.p99_ms.get(op).copied().unwrap_or(0.0),
        );
    }
    let create_p50 = h.p50_ms.get("create").copied().unwrap_or(f64::NAN);
    println!(
        "\nHTTP: {:.0} ops/s ({} ops); in process: {:.0} ops/s ({} ops); HTTP / in process throughput {:.2}",
        h.ops_per_sec,
        h.ops,
        e.ops_per_sec,
        e.ops,
        h.ops_per_sec / e.ops_per_sec
    );
    println!(
        "goal >= 1,000 ops/s over HTTP: {}; branch create p50 over HTTP {create_p50:.2} ms, goal < 5 ms: {}",
        if h.ops_per_sec >= 1000.0 { "met" } else { "MISSED" },
        if create_p50 < 5.0 { "met" } else { "MISSED" }
    );
    if let Some(path) = &args.json {
        let j = json!({
            "clients": args.clients,
            "secs": args.secs,
            "http": {"ops_per_sec": h.ops_per_sec, "ops": h.ops, "p50_ms": h.p50_ms, "p99_ms": h.p99_ms},
            "in_process": {"ops_per_sec": e.ops_per_sec, "ops": e.ops, "p50_ms": e.p50_ms, "p99_ms": e.p99_ms},
            "http_over_in_process_throughput": h.ops_per_sec / e.ops_per_sec,
        });
        std::fs::write(path, serde_json::to_string_pretty(&j)?)?;
    }
    Ok(())
}
