//! Benchmark 12: a slow PostgreSQL must not stall the server (issue 17). `lakeplan serve` runs
//! on a PostgreSQL metastore reached through a proxy on loopback that holds every message to
//! PostgreSQL for `--delay-ms` (`lakeplan_catalog::testing::SlowProxy`), so every round trip of
//! a metastore call takes that much longer. Meanwhile `--clients` concurrent clients keep the
//! metadata API busy, each round
//!
//! ```text
//! GET /api/v1/branches                  list the branches
//! GET /api/v1/branches/main             get one
//! GET /api/v1/refs/main/namespaces      list the namespaces
//! ```
//!
//! and two probes, each on a connection of its own, measure what needs no metastore at all:
//! `GET /healthz` and a registered worker's `POST /internal/v1/workers/{id}/heartbeat`, one
//! every `--probe-ms`. The same run measures with no delay first (the peer), then with it.
//! Reported: p50/p99/max of both probes in each phase, the p99 ratio delayed / not delayed,
//! heartbeats that found their worker lost (silent longer than the server's worker timeout,
//! 10 s), and the API's own throughput and latency.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use lakeplan_bench::{admin_key, percentile, say, scratch_and_runtime, start_server, Res};
use lakeplan_catalog::testing::{SlowProxy, TestPostgres};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "/healthz and worker heartbeat latency while every metastore call is slow")]
struct Args {
    /// The release `lakeplan` binary
    #[arg(long)]
    cli: PathBuf,
    /// How long the proxy holds each message to PostgreSQL in the slow phase
    #[arg(long, default_value_t = 200)]
    delay_ms: u64,
    /// Concurrent API clients
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds each phase runs
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Pause between two probes of one kind
    #[arg(long, default_value_t = 50)]
    probe_ms: u64,
    /// Where the server's state folder is made (removed at the end)
    #[arg(long, default_value = "bench/out")]
    dir: PathBuf,
    /// Write the figures as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

const WORKER_TOKEN: &str = "bench-slow-metastore-worker-token";

/// What one phase measured; latencies in seconds.
#[derive(Default)]
struct Phase {
    healthz: Vec<f64>,
    heartbeat: Vec<f64>,
    /// Heartbeats answered 404: the server had declared the worker lost.
    lost: usize,
    api: Vec<f64>,
    wall: f64,
}

async fn expect_ok(resp: reqwest::Response, what: &str) -> Res<()> {
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        return Err(format!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(())
}

async fn register(client: &reqwest::Client, base: &str) -> Res<String> {
    let v: Value = client
        .post(format!("{base}/internal/v1/workers"))
        .bearer_auth(WORKER_TOKEN)
        .json(&json!({"endpoint": "http://127.0.0.1:9"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["worker_id"]
        .as_str()
        .ok_or_else(|| format!("no worker_id in {v}"))?
        .to_string())
}

/// One API client: its requests' latencies until `until`.
async fn api_client(base: String, key: String, until: Instant) -> Res<Vec<f64>> {
    let client = reqwest::Client::new();
    let mut lat = Vec::new();
    let paths = [
        "/api/v1/branches",
        "/api/v1/branches/main",
        "/api/v1/refs/main/namespaces",
    ];
    while Instant::now() < until {
        for path in paths {
            let start = Instant::now();
            let resp = client
                .get(format!("{base}{path}"))
                .bearer_auth(&key)
                .send()
                .await?;
            expect_ok(resp, path).await?;
            lat.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(lat)
}

/// `/healthz` every `pause` until `until`.
async fn probe_healthz(base: String, pause: Duration, until: Instant) -> Res<Vec<f64>> {
    let client = reqwest::Client::new();
    let mut lat = Vec::new();
    while Instant::now() < until {
        let start = Instant::now();
        expect_ok(
            client.get(format!("{base}/healthz")).send().await?,
            "healthz",
        )
        .await?;
        lat.push(start.elapsed().as_secs_f64());
        tokio::time::sleep(pause).await;
    }
    Ok(lat)
}

/// A worker's heartbeat every `pause` until `until`; a worker found lost registers again.
async fn probe_heartbeat(
    base: String,
    mut worker: String,
    pause: Duration,
    until: Instant,
) -> Res<(Vec<f64>, usize, String)> {
    let client = reqwest::Client::new();
    let mut lat = Vec::new();
    let mut lost = 0;
    while Instant::now() < until {
        let start = Instant::now();
        let resp = client
            .post(format!("{base}/internal/v1/workers/{worker}/heartbeat"))
            .bearer_auth(WORKER_TOKEN)
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            lat.push(start.elapsed().as_secs_f64());
            lost += 1;
            worker = register(&client, &base).await?;
        } else {
            expect_ok(resp, "heartbeat").await?;
            lat.push(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(pause).await;
    }
    Ok((lat, lost, worker))
}

async fn phase(args: &Args, base: &str, key: &str, worker: &mut String) -> Res<Phase> {
    let start = Instant::now();
    let until = start + Duration::from_secs(args.secs);
    let pause = Duration::from_millis(args.probe_ms);
    let clients: Vec<_> = (0..args.clients)
        .map(|_| tokio::spawn(api_client(base.to_string(), key.to_string(), until)))
        .collect();
    let health = tokio::spawn(probe_healthz(base.to_string(), pause, until));
    let beat = tokio::spawn(probe_heartbeat(
        base.to_string(),
        worker.clone(),
        pause,
        until,
    ));
    let mut p = Phase {
        healthz: health.await??,
        ..Phase::default()
    };
    let (heartbeat, lost, w) = beat.await??;
    (p.heartbeat, p.lost, *worker) = (heartbeat, lost, w);
    for c in clients {
        p.api.extend(c.await??);
    }
    p.wall = start.elapsed().as_secs_f64();
    Ok(p)
}

fn ms(xs: &[f64], p: f64) -> f64 {
    percentile(xs, p) * 1e3
}

fn max_ms(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(0.0, f64::max) * 1e3
}

fn summary(p: &Phase) -> Value {
    let stats = |xs: &[f64]| json!({"n": xs.len(), "p50_ms": ms(xs, 50.0), "p99_ms": ms(xs, 99.0), "max_ms": max_ms(xs)});
    json!({
        "healthz": stats(&p.healthz),
        "heartbeat": stats(&p.heartbeat),
        "heartbeats_found_lost": p.lost,
        "api": stats(&p.api),
        "api_requests_per_sec": p.api.len() as f64 / p.wall,
    })
}

fn main() -> Res<()> {
    let args = Args::parse();
    let (tmp, rt) = scratch_and_runtime(&args.dir)?;

    say("starting PostgreSQL and the delaying proxy");
    let pg = TestPostgres::start()?;
    let proxy = SlowProxy::start(pg.port(), Duration::ZERO)?;
    let url = proxy.postgres_url();
    let state = tmp.path().join("state").display().to_string();
    let meta = ["--metastore", url.as_str(), "--state-dir", state.as_str()];
    let key = admin_key(&args.cli, &meta, "bench")?;
    let server = start_server(
        &args.cli,
        &[&meta[..], &["--workers", "0"]].concat(),
        &[("LAKEPLAN_WORKER_TOKEN", WORKER_TOKEN)],
    )?;
    let base = server.base.clone();
    let mut worker = rt.block_on(register(&reqwest::Client::new(), &base))?;

    let delays = [0, args.delay_ms];
    let mut phases = Vec::new();
    for d in delays {
        proxy.set_delay(Duration::from_millis(d));
        say(format!(
            "metastore delay {d} ms: {} API clients for {} s, probes every {} ms, against {base}",
            args.clients, args.secs, args.probe_ms
        ));
        phases.push(rt.block_on(phase(&args, &base, &key, &mut worker))?);
    }
    proxy.set_delay(Duration::ZERO);
    drop(server);

    println!(
        "\n{:>9} {:>11} {:>11} {:>11} {:>12} {:>12} {:>12} {:>5} {:>9} {:>11}",
        "delay ms",
        "healthz p50",
        "healthz p99",
        "healthz max",
        "heartbeat p50",
        "heartbeat p99",
        "heartbeat max",
        "lost",
        "API req/s",
        "API p50 ms"
    );
    for (d, p) in delays.iter().zip(&phases) {
        println!(
            "{:>9} {:>11.2} {:>11.2} {:>11.2} {:>12.2} {:>12.2} {:>12.2} {:>5} {:>9.1} {:>11.2}",
            d,
            ms(&p.healthz, 50.0),
            ms(&p.healthz, 99.0),
            max_ms(&p.healthz),
            ms(&p.heartbeat, 50.0),
            ms(&p.heartbeat, 99.0),
            max_ms(&p.heartbeat),
            p.lost,
            p.api.len() as f64 / p.wall,
            ms(&p.api, 50.0),
        );
    }
    let (fast, slow) = (&phases[0], &phases[1]);
    let health_ratio = ms(&slow.healthz, 99.0) / ms(&fast.healthz, 99.0);
    let beat_ratio = ms(&slow.heartbeat, 99.0) / ms(&fast.heartbeat, 99.0);
    let met = |r: f64| if r <= 2.0 { "met" } else { "MISSED" };
    println!(
        "\np99 with {} ms / without: /healthz {health_ratio:.2}, heartbeat {beat_ratio:.2}; \
         goal <= 2 (a slow metastore does not slow what needs none): {} / {}",
        args.delay_ms,
        met(health_ratio),
        met(beat_ratio)
    );
    if let Some(path) = &args.json {
        let j = json!({
            "delay_ms": args.delay_ms,
            "clients": args.clients,
            "secs": args.secs,
            "probe_ms": args.probe_ms,
            "without_delay": summary(fast),
            "with_delay": summary(slow),
            "p99_ratio": {"healthz": health_ratio, "heartbeat": beat_ratio},
        });
        std::fs::write(path, serde_json::to_string_pretty(&j)?)?;
    }
    Ok(())
}
