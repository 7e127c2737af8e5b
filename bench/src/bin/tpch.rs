//! Benchmark 3 (Rust part): the 22 TPC-H queries in-process, raw DataFusion vs lakeplan.
//!
//! * `datafusion`: a `SessionContext` with DataFusion's default configuration and each table
//!   registered from its Parquet file (`<data>/<table>.parquet`), made once.
//! * `lakeplan`: `Lake::query` on the lake the orchestration script imported the same files
//!   into (`lakeplan table create` + `table import`); each query opens a session at `main` as
//!   the CLI does.
//!
//! Per query: one warm-up run of each engine (its result is written to
//! `<out>/<engine>/qNN.parquet` for the answer check), then `--reps` timed runs, alternating
//! engines. One JSON line per (query, engine) goes to `--json`; a table goes to stdout.
//! Same binary, same release profile, same DataFusion: the ratio is lakeplan's overhead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use clap::Parser;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use lakeplan_bench::{median, say, secs};
use lakeplan_lake::{Lake, LakeConfig};

const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

#[derive(Parser)]
#[command(about = "TPC-H queries: raw DataFusion over Parquet vs lakeplan in-process")]
struct Args {
    /// Folder with <table>.parquet for the 8 TPC-H tables
    #[arg(long)]
    data: PathBuf,
    /// The lake holding the same tables in namespace `default` on `main`
    #[arg(long)]
    lake: PathBuf,
    /// Folder with q01.sql .. q22.sql
    #[arg(long)]
    queries: PathBuf,
    /// Results go to <out>/<engine>/qNN.parquet
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Engines, comma-separated: datafusion, lakeplan, and (a diagnostic) datafusion-lakefiles:
    /// raw DataFusion over the Parquet data files lakeplan's import wrote into the lake
    #[arg(long, default_value = "datafusion,lakeplan", value_delimiter = ',')]
    engines: Vec<String>,
    /// Only these query numbers (default: 1..=22)
    #[arg(long, value_delimiter = ',')]
    only: Vec<usize>,
    /// JSON lines of timings
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print each engine's physical plan (EXPLAIN) for the queries instead of timing them
    #[arg(long)]
    explain: bool,
}

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

enum Engine {
    /// Raw DataFusion; the label says over which files.
    DataFusion(SessionContext, &'static str),
    Lakeplan(Box<Lake>),
}

impl Engine {
    fn name(&self) -> &'static str {
        match self {
            Engine::DataFusion(_, label) => label,
            Engine::Lakeplan(_) => "lakeplan",
        }
    }

    async fn run(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
        match self {
            Engine::DataFusion(ctx, _) => {
                let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await.map_err(|e| e.to_string())?;
                Ok((schema, batches))
            }
            Engine::Lakeplan(lake) => {
                let res = lake
                    .query(sql, None, None, None)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((res.schema, res.batches))
            }
        }
    }
}

fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Res<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(path)?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(())
}

#[derive(Default)]
struct Outcome {
    times: Vec<f64>,
    rows: usize,
    error: Option<String>,
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = Args::parse();
    let mut engines = Vec::new();
    for e in &args.engines {
        match e.as_str() {
            "datafusion" => {
                let ctx = SessionContext::new();
                for t in TABLES {
                    let path = args.data.join(format!("{t}.parquet"));
                    ctx.register_parquet(
                        t,
                        path.to_str().ok_or("non-UTF-8 path")?,
                        ParquetReadOptions::default(),
                    )
                    .await?;
                }
                engines.push(Engine::DataFusion(ctx, "datafusion"));
            }
            "datafusion-lakefiles" => {
                let lake = Lake::open(&args.lake, LakeConfig::default())?;
                let ctx = SessionContext::new();
                for t in TABLES {
                    // <table dir>/metadata/<v>.metadata.json -> <table dir>/data/
                    let info = lake.get_table(t, None, None).await?;
                    let meta = info.metadata_location.trim_start_matches("file://");
                    let dir = Path::new(meta)
                        .parent()
                        .and_then(Path::parent)
                        .ok_or("unexpected metadata location")?
                        .join("data");
                    let dir = format!("{}/", dir.display());
                    ctx.register_parquet(t, &dir, ParquetReadOptions::default())
                        .await?;
                }
                engines.push(Engine::DataFusion(ctx, "datafusion-lakefiles"));
            }
            "lakeplan" => {
                let lake = Lake::open(
                    &args.lake,
                    LakeConfig {
                        actor: "bench".into(),
                        client: "bench".into(),
                    },
                )?;
                engines.push(Engine::Lakeplan(Box::new(lake)));
            }
            other => return Err(format!("unknown engine '{other}'").into()),
        }
    }
    let queries: Vec<usize> = if args.only.is_empty() {
        (1..=22).collect()
    } else {
        args.only.clone()
    };
    let mut json = match &args.json {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    };

    let header: Vec<String> = engines
        .iter()
        .map(|e| format!("{:>12}", e.name()))
        .collect();
    say(format!(
        "query {}  (median ms of {} runs after 1 warm-up)",
        header.join(""),
        args.reps
    ));
    for q in queries {
        let sql = std::fs::read_to_string(args.queries.join(format!("q{q:02}.sql")))?;
        if args.explain {
            for e in &engines {
                let plan = match e.run(&format!("EXPLAIN {sql}")).await {
                    Ok((_, batches)) => {
                        arrow::util::pretty::pretty_format_batches(&batches)?.to_string()
                    }
                    Err(msg) => msg,
                };
                say(format!("== q{q:02} {}\n{plan}", e.name()));
            }
            continue;
        }
        let mut outcomes: Vec<Outcome> = engines.iter().map(|_| Outcome::default()).collect();
        // Warm-up, keeping the result.
        for (i, e) in engines.iter().enumerate() {
            match e.run(&sql).await {
                Ok((schema, batches)) => {
                    outcomes[i].rows = batches.iter().map(|b| b.num_rows()).sum();
                    let path = args.out.join(e.name()).join(format!("q{q:02}.parquet"));
                    write_parquet(&path, schema, &batches)?;
                }
                Err(msg) => outcomes[i].error = Some(msg),
            }
        }
        for rep in 0..args.reps {
            for k in 0..engines.len() {
                let i = (k + rep + q) % engines.len();
                if outcomes[i].error.is_some() {
                    continue;
                }
                let t = Instant::now();
                match engines[i].run(&sql).await {
                    Ok(_) => outcomes[i].times.push(secs(t.elapsed())),
                    Err(msg) => outcomes[i].error = Some(msg),
                }
            }
        }
        let cells: Vec<String> = outcomes
            .iter()
            .map(|o| match &o.error {
                Some(_) => format!("{:>12}", "FAIL"),
                None => format!("{:>12.1}", median(&o.times) * 1e3),
            })
            .collect();
        say(format!("q{q:02}  {}", cells.join("")));
        for (e, o) in engines.iter().zip(&outcomes) {
            if let Some(err) = &o.error {
                say(format!("      {} q{q:02} failed: {err}", e.name()));
            }
            if let Some(f) = json.as_mut() {
                use std::io::Write;
                let line = serde_json::json!({
                    "query": q,
                    "engine": e.name(),
                    "times_s": o.times,
                    "median_s": if o.error.is_none() { Some(median(&o.times)) } else { None },
                    "rows": o.rows,
                    "error": o.error,
                });
                writeln!(f, "{line}")?;
            }
        }
    }
    Ok(())
}
