//! Shared helpers of the lakeplan benchmarks (`bench/README.md` says how to run them): timing
//! statistics, fake table entries for catalog-level benchmarks, and a `lakeplan serve` process
//! for the server's.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lakeplan_catalog::{Catalog, CommitMeta};
use lakeplan_core::{CommitId, Entry, TableEntry};

/// The median of `xs` (the mean of the two middle values for an even count); 0 when empty.
pub fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// The `p`-th percentile of `xs` by linear interpolation between closest ranks; 0 when empty.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (p / 100.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Seconds as f64.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The catalog key of synthetic table `i` in namespace `default`.
pub fn table_key(i: usize) -> String {
    format!("default.t{i:05}")
}

/// A table entry as a commit's tree stores it (a pointer to an Iceberg metadata file plus the
/// facts listing and diff need). Catalog-level benchmarks never open the metadata file, so it
/// need not exist; `version` varies the snapshot so that each commit changes the entry.
pub fn table_entry(i: usize, version: u64) -> Entry {
    Entry::Table(TableEntry {
        metadata_location: format!(
            "file:///bench/warehouse/default/t{i:05}/metadata/{version:05}-00000000-0000-0000-0000-{i:012}.metadata.json"
        ),
        table_uuid: format!("00000000-0000-4000-8000-{i:012}"),
        snapshot_id: Some(1_000_000 + version as i64),
        schema_id: 0,
        records: version * 1000,
    })
}

/// Commits `tables` synthetic tables ([`table_key`], [`table_entry`] version 1) to `main`,
/// 100 per commit, and returns the new head.
pub fn populate(catalog: &Catalog, tables: usize) -> lakeplan_core::Result<CommitId> {
    let mut head = catalog.branch_head("main")?;
    let ids: Vec<usize> = (0..tables).collect();
    for chunk in ids.chunks(100) {
        let changes: Vec<_> = chunk
            .iter()
            .map(|&i| (table_key(i), Some(table_entry(i, 1))))
            .collect();
        let meta = CommitMeta {
            author: "bench".into(),
            message: format!("create {} tables", chunk.len()),
            properties: Default::default(),
        };
        head = catalog.commit("main", &head, &changes, &meta)?;
    }
    Ok(head)
}

/// The error type of the benchmark programs.
pub type Res<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A `lakeplan serve` process, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lakeplan admin ARGS --metastore META [--state-dir DIR]`: its standard output, trimmed.
pub fn admin(cli: &Path, metastore: &[&str], args: &[&str]) -> Res<String> {
    let out = Command::new(cli)
        .arg("admin")
        .args(args)
        .args(metastore)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "lakeplan admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A scratch folder in `dir` (made if missing; removed when dropped) and a multi-threaded
/// runtime for a benchmark's clients.
pub fn scratch_and_runtime(dir: &Path) -> Res<(tempfile::TempDir, tokio::runtime::Runtime)> {
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::tempdir_in(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok((tmp, rt))
}

/// Makes tenant `tenant` with an admin user `root` through `lakeplan admin`; returns an admin
/// key of that user.
pub fn admin_key(cli: &Path, metastore: &[&str], tenant: &str) -> Res<String> {
    admin(cli, metastore, &["tenant", "create", tenant])?;
    admin(
        cli,
        metastore,
        &["user", "create", "root", "--tenant", tenant, "--admin"],
    )?;
    admin(
        cli,
        metastore,
        &[
            "key", "create", "--tenant", tenant, "--user", "root", "--scope", "admin",
        ],
    )
}

/// Starts `lakeplan serve --listen 127.0.0.1:0 ARGS` with `env` added, and reads its base URL
/// from the first line it prints.
pub fn start_server(cli: &Path, args: &[&str], env: &[(&str, &str)]) -> Res<Server> {
    let mut child = Command::new(cli)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut server = Server {
        child,
        base: String::new(),
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    server.base = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|b| b.starts_with("http://"))
        .ok_or_else(|| format!("unexpected first line from lakeplan serve: {line}"))?
        .to_string();
    Ok(server)
}

/// Prints a line and flushes, so progress shows when stdout is a pipe.
pub fn say(msg: impl AsRef<str>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", msg.as_ref());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!((percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 90.0) - 4.6).abs() < 1e-9);
        assert_eq!(percentile(&[5.0, 1.0], 0.0), 1.0);
        assert_eq!(percentile(&[5.0, 1.0], 100.0), 5.0);
    }

    #[test]
    fn table_entries_differ_by_version() {
        assert_eq!(table_key(7), "default.t00007");
        assert_ne!(table_entry(7, 1), table_entry(7, 2));
        assert_eq!(table_entry(7, 1), table_entry(7, 1));
    }
}
