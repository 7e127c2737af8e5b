//! Benchmark 1: branch creation in a lake with 1 table vs a lake with 10,000 tables.
//!
//! A branch is one ref row pointing at a commit: creating one must cost the same whatever the
//! lake holds. Two lakes are built side by side (their tables are catalog entries committed
//! through `Catalog::commit`, 100 tables per commit; branch creation never opens a table's
//! metadata, so no Iceberg files are written), then branches are created in both, in
//! alternating rounds, through the service layer (`Lake::create_ref`, what `lakeplan branch
//! create` calls: validation, resolve, insert, audit record) and, with `--cli`, through the
//! `lakeplan` binary (process start + lake open + create). Prints per-op medians and the ratio
//! large/small for each path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Parser;
use lakeplan_bench::{median, percentile, say, secs};
use lakeplan_core::{RefKind, Result};
use lakeplan_lake::{Lake, LakeConfig};

#[derive(Parser)]
#[command(about = "Branch creation: 1 table vs many tables")]
struct Args {
    /// Tables in the large lake
    #[arg(long, default_value_t = 10_000)]
    tables: usize,
    /// Rounds; each creates `--per-round` branches in each lake (alternating which goes first)
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    #[arg(long, default_value_t = 200)]
    per_round: usize,
    /// The `lakeplan` binary, to also time `lakeplan branch create` processes
    #[arg(long)]
    cli: Option<PathBuf>,
    /// Process runs per lake for `--cli`
    #[arg(long, default_value_t = 40)]
    cli_runs: usize,
    /// Where the lakes are made (a fresh temporary folder inside it, removed at the end)
    #[arg(long, default_value = "bench/out")]
    dir: PathBuf,
    /// Write the figures as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

fn config() -> LakeConfig {
    LakeConfig {
        actor: "bench".into(),
        client: "bench".into(),
    }
}

/// A lake at `root` whose `main` holds `tables` tables (100 per commit).
fn build_lake(root: &Path, tables: usize) -> Result<Lake> {
    let lake = Lake::open(root, config())?;
    lakeplan_bench::populate(lake.catalog(), tables)?;
    let n = lake.list_tables(Some("main"), None)?.len();
    assert_eq!(n, tables, "the lake should list {tables} tables");
    Ok(lake)
}

fn cli_create(cli: &Path, lake: &Path, name: &str) -> f64 {
    let t = Instant::now();
    let status = Command::new(cli)
        .arg("--lake")
        .arg(lake)
        .args(["branch", "create", name])
        .stdout(Stdio::null())
        .status()
        .expect("run lakeplan");
    let dt = secs(t.elapsed());
    assert!(status.success(), "lakeplan branch create {name} failed");
    dt
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).map_err(|e| lakeplan_core::Error::io("bench dir", e))?;
    let tmp = tempfile::Builder::new()
        .prefix("branch-")
        .tempdir_in(&args.dir)
        .map_err(|e| lakeplan_core::Error::io("tempdir", e))?;
    let small_dir = tmp.path().join("lake-1");
    let large_dir = tmp.path().join(format!("lake-{}", args.tables));

    let t = Instant::now();
    let small = build_lake(&small_dir, 1)?;
    let large = build_lake(&large_dir, args.tables)?;
    say(format!(
        "built lakes with 1 and {} tables in {:.1}s",
        args.tables,
        secs(t.elapsed())
    ));

    // In-process: Lake::create_ref, alternating lakes each round.
    let mut lat = [Vec::new(), Vec::new()];
    let lakes = [&small, &large];
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            for i in 0..args.per_round {
                let name = format!("b{round}-{i}");
                let t = Instant::now();
                lakes[which].create_ref(&name, RefKind::Branch, Some("main"), false)?;
                lat[which].push(secs(t.elapsed()));
            }
        }
    }
    // The new branches see every table.
    let seen = large.list_tables(Some("b0-0"), None)?.len();
    assert_eq!(seen, args.tables);
    drop(small);
    drop(large);

    let (m_small, m_large) = (median(&lat[0]), median(&lat[1]));
    let ratio = m_large / m_small;
    say(format!(
        "\n== Branch create, in-process (Lake::create_ref), {} branches per lake ==",
        lat[0].len()
    ));
    say(format!(
        "{:>12} {:>12} {:>12} {:>12}",
        "tables", "median us", "p90 us", "ops/s"
    ));
    for (n, l) in [(1, &lat[0]), (args.tables, &lat[1])] {
        say(format!(
            "{:>12} {:>12.1} {:>12.1} {:>12.0}",
            n,
            median(l) * 1e6,
            percentile(l, 90.0) * 1e6,
            1.0 / median(l)
        ));
    }
    say(format!(
        "ratio {}/1 tables (median): {ratio:.3}   goal <= 1.10: {}",
        args.tables,
        if ratio <= 1.10 { "MET" } else { "MISSED" }
    ));

    let mut cli_json = serde_json::Value::Null;
    if let Some(cli) = &args.cli {
        let mut cl = [Vec::new(), Vec::new()];
        let dirs = [&small_dir, &large_dir];
        // One warm-up each (page cache, binary load).
        for d in dirs {
            cli_create(cli, d, "warmup");
        }
        for r in 0..args.cli_runs {
            let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                cl[which].push(cli_create(cli, dirs[which], &format!("cli-{r}")));
            }
        }
        let (c_small, c_large) = (median(&cl[0]), median(&cl[1]));
        say(format!(
            "\n== Branch create, `lakeplan branch create` process, {} runs per lake ==",
            args.cli_runs
        ));
        say(format!(
            "{:>12} {:>12} {:>12}",
            "tables", "median ms", "p90 ms"
        ));
        for (n, l) in [(1, &cl[0]), (args.tables, &cl[1])] {
            say(format!(
                "{:>12} {:>12.2} {:>12.2}",
                n,
                median(l) * 1e3,
                percentile(l, 90.0) * 1e3
            ));
        }
        let cratio = c_large / c_small;
        say(format!(
            "ratio {}/1 tables (median): {cratio:.3}   goal <= 1.10: {}",
            args.tables,
            if cratio <= 1.10 { "MET" } else { "MISSED" }
        ));
        cli_json = serde_json::json!({
            "runs": args.cli_runs,
            "median_ms_1": c_small * 1e3,
            "median_ms_large": c_large * 1e3,
            "ratio": cratio,
        });
    }

    if let Some(path) = &args.json {
        let v = serde_json::json!({
            "benchmark": "branch",
            "tables": args.tables,
            "in_process": {
                "ops": lat[0].len(),
                "median_us_1": m_small * 1e6,
                "median_us_large": m_large * 1e6,
                "p90_us_1": percentile(&lat[0], 90.0) * 1e6,
                "p90_us_large": percentile(&lat[1], 90.0) * 1e6,
                "ratio": ratio,
            },
            "cli": cli_json,
        });
        std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default())
            .map_err(|e| lakeplan_core::Error::io(path.display(), e))?;
    }
    Ok(())
}
