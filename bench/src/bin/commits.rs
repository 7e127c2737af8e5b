//! Benchmark 2: commits per second, one writer, SQLite metastore on disk.
//!
//! Each lakeplan commit is `Catalog::commit` of one changed table entry on `main` (what every
//! table write ends with: build the new tree nodes, then one `BEGIN IMMEDIATE` transaction that
//! checks the head, stores the nodes and the commit and moves the ref). Peers, measured in the
//! same run on fresh files with the same pragmas (WAL, synchronous=NORMAL, busy_timeout):
//!
//! * `raw-update`: rusqlite, one `BEGIN IMMEDIATE; UPDATE refs ...; COMMIT` per commit: the
//!   floor of any transaction that moves a ref;
//! * `raw-same-rows`: rusqlite issuing the same statements as a lakeplan commit (read the ref,
//!   insert two tree nodes of the byte size lakeplan wrote, insert the commit row, update the
//!   ref) in one transaction: what is left is lakeplan's own work (hashing, JSON, tree, cache).
//!
//! Both done with 1 table and with 10,000 tables in the tree (a commit rewrites one bucket node
//! and the root node, so it should not grow much with tables).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use lakeplan_bench::{median, say, secs, table_entry, table_key};
use lakeplan_catalog::{Catalog, CommitMeta, SqliteMetastore};
use rusqlite::{params, Connection, TransactionBehavior};

#[derive(Parser)]
#[command(about = "Commits per second on the SQLite metastore vs raw rusqlite")]
struct Args {
    /// Commits per measurement
    #[arg(long, default_value_t = 3000)]
    commits: usize,
    /// Rounds (the medians over rounds are reported)
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Tree sizes to measure, comma-separated
    #[arg(long, default_value = "1,10000", value_delimiter = ',')]
    tables: Vec<usize>,
    /// Where the database files are made (a temporary folder inside it, removed at the end)
    #[arg(long, default_value = "bench/out")]
    dir: std::path::PathBuf,
    /// Write the figures as JSON to this file
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn meta(msg: &str) -> CommitMeta {
    CommitMeta {
        author: "bench".into(),
        message: msg.into(),
        properties: Default::default(),
    }
}

/// Times `n` single-table commits through the versioned catalog over a tree of `tables`
/// tables. Returns (seconds, average byte size of the tree nodes the timed commits wrote).
fn lakeplan_run(path: &Path, tables: usize, n: usize) -> Res<(f64, f64)> {
    let catalog = Catalog::new(Arc::new(SqliteMetastore::open(path)?));
    catalog.init()?;
    let mut head = lakeplan_bench::populate(&catalog, tables)?;
    let m = meta("append to default.t00000");
    let t = Instant::now();
    for v in 0..n {
        let changes = [(table_key(0), Some(table_entry(0, 2 + v as u64)))];
        head = catalog.commit("main", &head, &changes, &m)?;
    }
    let dt = secs(t.elapsed());
    assert_eq!(catalog.branch_head("main")?, head);
    drop(catalog);
    let conn = Connection::open(path)?;
    let avg: f64 = conn.query_row(
        "SELECT avg(length(body)) FROM (SELECT body FROM nodes ORDER BY rowid DESC LIMIT ?1)",
        params![(2 * n) as i64],
        |r| r.get(0),
    )?;
    Ok((dt, avg))
}

fn open_raw(path: &Path) -> Res<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE refs (name TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, commit_id TEXT NOT NULL);
         CREATE TABLE commits (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, parents TEXT NOT NULL,
             tree TEXT NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL, timestamp TEXT NOT NULL,
             properties TEXT NOT NULL);
         CREATE TABLE nodes (hash TEXT PRIMARY KEY NOT NULL, body BLOB NOT NULL);",
    )?;
    conn.execute(
        "INSERT INTO refs (name, kind, commit_id) VALUES ('main', 'BRANCH', ?1)",
        params![format!("{:064x}", 0)],
    )?;
    Ok(conn)
}

/// `n` transactions of one `UPDATE refs`.
fn raw_update_run(path: &Path, n: usize) -> Res<f64> {
    let mut conn = open_raw(path)?;
    let t = Instant::now();
    for v in 0..n {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("UPDATE refs SET commit_id = ?2 WHERE name = ?1")?
            .execute(params!["main", format!("{:064x}", v + 1)])?;
        tx.commit()?;
    }
    Ok(secs(t.elapsed()))
}

/// `n` transactions issuing a lakeplan commit's statements, with nodes of `node_bytes` bytes.
fn raw_same_rows_run(path: &Path, n: usize, node_bytes: usize) -> Res<f64> {
    let mut conn = open_raw(path)?;
    let mut body = vec![b'x'; node_bytes.max(8)];
    let t = Instant::now();
    for v in 0..n {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (kind, head): (String, String) = tx
            .prepare_cached("SELECT kind, commit_id FROM refs WHERE name = ?1")?
            .query_row(params!["main"], |r| Ok((r.get(0)?, r.get(1)?)))?;
        assert_eq!(kind, "BRANCH");
        {
            let mut st =
                tx.prepare_cached("INSERT OR IGNORE INTO nodes (hash, body) VALUES (?1, ?2)")?;
            for k in 0..2u8 {
                body[..8].copy_from_slice(&((v as u64) * 2 + k as u64).to_le_bytes());
                st.execute(params![format!("{:063x}{k}", v), &body])?;
            }
        }
        let id = format!("{:064x}", v + 1);
        tx.prepare_cached(
            "INSERT OR IGNORE INTO commits (id, parents, tree, author, message, timestamp, properties) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            id,
            format!("[\"{head}\"]"),
            format!("{:063x}0", v),
            "bench",
            "append to default.t00000",
            "2026-01-01T00:00:00.000000Z",
            "{}"
        ])?;
        tx.prepare_cached("UPDATE refs SET commit_id = ?2 WHERE name = ?1")?
            .execute(params!["main", id])?;
        tx.commit()?;
    }
    Ok(secs(t.elapsed()))
}

fn main() -> Res<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("commits-")
        .tempdir_in(&args.dir)?;
    let n = args.commits;
    // [tree size] -> (lakeplan, raw-update, raw-same-rows) seconds per round
    let mut times: Vec<[Vec<f64>; 3]> = vec![Default::default(); args.tables.len()];
    let mut node_bytes = vec![0f64; args.tables.len()];
    let mut file = 0;
    for round in 0..args.rounds {
        for (ti, &tables) in args.tables.iter().enumerate() {
            // Rotate which engine runs first.
            for k in 0..3 {
                let which = (k + round) % 3;
                file += 1;
                let path = tmp.path().join(format!("db-{file}.sqlite"));
                let dt = match which {
                    0 => {
                        let (dt, nb) = lakeplan_run(&path, tables, n)?;
                        node_bytes[ti] = nb;
                        dt
                    }
                    1 => raw_update_run(&path, n)?,
                    _ => {
                        let nb = if node_bytes[ti] > 0.0 {
                            node_bytes[ti]
                        } else {
                            // First round, raw-same-rows before lakeplan: a quick size probe.
                            let probe = tmp.path().join(format!("probe-{file}.sqlite"));
                            let (_, nb) = lakeplan_run(&probe, tables, 50)?;
                            nb
                        };
                        raw_same_rows_run(&path, n, nb as usize)?
                    }
                };
                times[ti][which].push(dt);
                let _ = std::fs::remove_file(&path);
            }
            say(format!(
                "round {} tables {tables}: lakeplan {:.0}/s, raw-update {:.0}/s, raw-same-rows {:.0}/s",
                round + 1,
                n as f64 / times[ti][0].last().copied().unwrap_or(f64::NAN),
                n as f64 / times[ti][1].last().copied().unwrap_or(f64::NAN),
                n as f64 / times[ti][2].last().copied().unwrap_or(f64::NAN),
            ));
        }
    }

    say(format!(
        "\n== Commits per second, one writer, SQLite (WAL, synchronous=NORMAL), {n} commits x {} rounds, medians ==",
        args.rounds
    ));
    say(format!(
        "{:>8} {:>12} {:>12} {:>14} {:>10} {:>16} {:>12}",
        "tables",
        "lakeplan/s",
        "raw-update/s",
        "raw-same-rows/s",
        "node bytes",
        "lake/raw-update",
        "lake/raw-same"
    ));
    let mut rows = Vec::new();
    for (ti, &tables) in args.tables.iter().enumerate() {
        let [l, u, s] = &times[ti];
        let (l, u, s) = (median(l), median(u), median(s));
        say(format!(
            "{:>8} {:>12.0} {:>12.0} {:>14.0} {:>10.0} {:>15.2}x {:>11.2}x",
            tables,
            n as f64 / l,
            n as f64 / u,
            n as f64 / s,
            node_bytes[ti],
            l / u,
            l / s
        ));
        say(format!(
            "{:>8} goal >= 1000 commits/s: {}",
            "",
            if n as f64 / l >= 1000.0 {
                "MET"
            } else {
                "MISSED"
            }
        ));
        rows.push(serde_json::json!({
            "tables": tables,
            "lakeplan_per_s": n as f64 / l,
            "raw_update_per_s": n as f64 / u,
            "raw_same_rows_per_s": n as f64 / s,
            "node_bytes": node_bytes[ti],
            "ratio_time_vs_raw_update": l / u,
            "ratio_time_vs_raw_same_rows": l / s,
        }));
    }
    if let Some(path) = &args.json {
        let v = serde_json::json!({"benchmark": "commits", "commits": n, "rounds": args.rounds, "results": rows});
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}
