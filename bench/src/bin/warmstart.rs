//! Pipelines benchmark 2: warm start of a function with a cached environment vs
//! `python -c "import pyarrow"` (see bench/README.md, "Warm function start").
//!
//! Each round times, in rotated order:
//!
//! * `worker`: the runtime's path for one Python node, as `lakeplan run` takes it
//!   (crates/lake/src/run.rs, `run_python`): `EnvManager::ensure` of the node's declared
//!   environment (already built: a cache hit), `task.json` written to the node's folder in the
//!   job's shared-memory directory, then `run_worker` of `python -m lakeplan._worker task.json`
//!   in the bubblewrap sandbox (read-only system, env, worker source, project and job dir; the
//!   node folder writable) — the real worker module of this repository running a trivial model
//!   (returns a one-row table, which the worker writes as an Arrow IPC file), until its result
//!   JSON has been read back.
//! * `direct`: the same worker and task without the sandbox (`python -m lakeplan._worker`
//!   spawned directly): splits the sandbox's cost from the worker's.
//! * `import`: the peer, `<the same env's python> -c "import pyarrow"`, spawned directly.
//! * with `--cli`, `lakeplan run --no-cache` of a 1-node pipeline (the same trivial model) on a
//!   lake sharing the environment cache: the whole product path for context (process start,
//!   planning with the Python analyzer, temporary branch, job records, merge).
//!
//! The first `ensure` (which builds the environment when it is not cached yet) is timed and
//! reported apart as the cold start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use lakeplan_bench::{median, percentile, secs};
use lakeplan_runtime::{run_worker, EnvManager, EnvSpec, SandboxOptions, ShmJobDir, WorkerSpec};
use serde_json::json;

#[derive(Parser)]
#[command(
    about = "Warm function start (cached env, sandboxed worker) vs python -c 'import pyarrow'"
)]
struct Args {
    /// Work folder: the lake (its `envs/` is the environment cache) and the project go here.
    #[arg(long)]
    dir: PathBuf,
    /// The repository's `python/` folder (holds lakeplan/_worker.py).
    #[arg(long)]
    python_src: PathBuf,
    /// Timed rounds (each runs every path once).
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// The Python version the node declares (`@python("3.11")`).
    #[arg(long, default_value = "3.11")]
    python: String,
    /// The `lakeplan` binary: also time `lakeplan run --no-cache` of a 1-node pipeline.
    #[arg(long)]
    cli: Option<PathBuf>,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

const MODELS_PY: &str = r#""""Warm-start benchmark: one trivial model."""

import pyarrow

import lakeplan


@lakeplan.model()
@lakeplan.python("3.11")
def tiny(rows=lakeplan.Model("one_row")):
    """Returns a one-row table."""
    return pyarrow.table({"x": [rows.num_rows]})
"#;

const PROJECT_YML: &str =
    "project:\n  id: 00000000-0000-4000-8000-00000000b002\n  name: warmstart\n";

fn main() {
    let a = Args::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(a)) {
        eprintln!("bench-warmstart: {e}");
        std::process::exit(1);
    }
}

fn time_cmd(cmd: &mut Command) -> Result<f64, String> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let dt = secs(t.elapsed());
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dt)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

async fn run(a: Args) -> Result<(), String> {
    let dir = std::path::absolute(&a.dir).map_err(|e| e.to_string())?;
    let python_src = std::fs::canonicalize(&a.python_src).map_err(|e| e.to_string())?;
    if !python_src.join("lakeplan/_worker.py").is_file() {
        return Err(format!(
            "{} has no lakeplan/_worker.py",
            python_src.display()
        ));
    }
    let lake = dir.join("lake");
    let project = dir.join("project");
    std::fs::create_dir_all(&project).map_err(|e| e.to_string())?;
    write(&project.join("models.py"), MODELS_PY)?;
    write(&project.join("lakeplan_project.yml"), PROJECT_YML)?;

    // The environment the node declares, in the lake's environment cache (the one `lakeplan run`
    // uses, so the CLI path below finds it built).
    let uv = EnvManager::locate_uv().map_err(|e| e.to_string())?;
    let envs = EnvManager::new(lake.join("envs"), uv);
    let spec = EnvSpec {
        python: Some(a.python.clone()),
        pip: BTreeMap::new(),
    };
    let t = Instant::now();
    let env = envs.ensure(&spec, false).await.map_err(|e| e.to_string())?;
    let first_ensure = secs(t.elapsed());
    println!(
        "== environment {} ({}): first ensure {:.2}s ({})",
        &env.key[..12],
        env.requirements.join(" "),
        first_ensure,
        if env.installed {
            "built now: cold start"
        } else {
            "already cached"
        }
    );
    for w in &env.warnings {
        println!("   warning: {w}");
    }

    // The CLI path needs a lake with the input table.
    if let Some(cli) = &a.cli {
        let csv = dir.join("one_row.csv");
        write(&csv, "x\n1\n")?;
        let has_table = Command::new(cli)
            .arg("--lake")
            .arg(&lake)
            .args(["table", "get", "one_row"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !has_table {
            for step in ["create", "import"] {
                time_cmd(
                    Command::new(cli)
                        .arg("--lake")
                        .arg(&lake)
                        .args(["table", step, "one_row", "--search-uri"])
                        .arg(&csv),
                )?;
            }
        }
    }

    let mut names: Vec<&str> = vec!["worker", "direct", "import"];
    if a.cli.is_some() {
        names.push("cli-run");
    }
    let mut times: BTreeMap<&str, Vec<f64>> = names.iter().map(|n| (*n, Vec::new())).collect();
    let mut ensure_times = Vec::new();
    let total = a.rounds + 1; // round 0 is a warm-up, not recorded
    for round in 0..total {
        let k = round % names.len();
        let order: Vec<&str> = names[k..].iter().chain(&names[..k]).copied().collect();
        for name in order {
            let dt = match name {
                "worker" => {
                    let (dt, ensure) = worker_once(&envs, &spec, &python_src, &project, round)
                        .await
                        .map_err(|e| format!("worker: {e}"))?;
                    if round > 0 {
                        ensure_times.push(ensure);
                    }
                    dt
                }
                "direct" => direct_once(&env.python, &python_src, &project, round)?,
                "import" => time_cmd(
                    Command::new(&env.python)
                        .args(["-c", "import pyarrow"])
                        .env_clear()
                        .env("PATH", "/usr/local/bin:/usr/bin:/bin"),
                )?,
                _ => {
                    let cli = a.cli.as_ref().expect("cli path");
                    time_cmd(
                        Command::new(cli)
                            .arg("--lake")
                            .arg(&lake)
                            .args(["run", "--no-cache", "-p"])
                            .arg(&project),
                    )?
                }
            };
            if round > 0 {
                times.get_mut(name).expect("name").push(dt);
            }
        }
    }

    let med = |n: &str| median(&times[n]);
    println!("\n== {} rounds (order rotated), median / p90 ms", a.rounds);
    for n in &names {
        println!(
            "   {n:8} {:8.1} / {:8.1}",
            med(n) * 1e3,
            percentile(&times[n], 90.0) * 1e3
        );
    }
    println!(
        "   (ensure of the cached env inside `worker`: median {:.3} ms)",
        median(&ensure_times) * 1e3
    );
    let ratio = med("worker") / med("import");
    println!(
        "\nwarm worker start (sandbox, cached env, trivial model) / python -c 'import pyarrow': {ratio:.2}x   goal <= 3: {}",
        if ratio <= 3.0 { "MET" } else { "MISSED" }
    );
    println!(
        "   without the sandbox (worker run directly) / import: {:.2}x; sandbox cost {:.1} ms",
        med("direct") / med("import"),
        (med("worker") - med("direct")) * 1e3
    );
    if a.cli.is_some() {
        println!(
            "   `lakeplan run --no-cache` of the 1-node pipeline / import: {:.2}x",
            med("cli-run") / med("import")
        );
    }
    if let Some(path) = &a.json {
        let report = json!({
            "rounds": a.rounds,
            "env_key": env.key,
            "env_requirements": env.requirements,
            "python_version": env.python_version,
            "first_ensure_s": first_ensure,
            "first_ensure_built_env": env.installed,
            "median_s": names.iter().map(|n| (n.to_string(), json!(med(n)))).collect::<serde_json::Map<_, _>>(),
            "p90_s": names.iter().map(|n| (n.to_string(), json!(percentile(&times[n], 90.0)))).collect::<serde_json::Map<_, _>>(),
            "ensure_cached_median_s": median(&ensure_times),
            "worker_vs_import": ratio,
            "direct_vs_import": med("direct") / med("import"),
            "cli_run_vs_import": a.cli.as_ref().map(|_| med("cli-run") / med("import")),
            "goal": "worker <= 3x import",
            "goal_met": ratio <= 3.0,
            "times_s": times,
        });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The task of the trivial model: its input is a one-row table written by the benchmark.
fn task(input: &Path, project: &Path, node_dir: &Path) -> serde_json::Value {
    json!({
        "node": "tiny", "kind": "model",
        "module_file": project.join("models.py"), "function": "tiny",
        "project_dir": project,
        "inputs": [{"param": "rows", "kind": "table", "path": input}],
        "output": node_dir.join("output.arrow"),
        "result": node_dir.join("result.json"),
    })
}

/// A one-row Arrow IPC file (the trivial model's input), as the orchestrator writes inputs.
fn write_input(path: &Path) -> Result<(), String> {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))])
        .map_err(|e| e.to_string())?;
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut w = arrow::ipc::writer::FileWriter::try_new(f, &schema).map_err(|e| e.to_string())?;
    w.write(&batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())
}

fn check_result(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if v["ok"] != json!(true) || v["rows"] != json!(1) {
        return Err(format!("unexpected result {v}"));
    }
    Ok(())
}

/// One sandboxed worker start, as `run_python` does it; returns (total, ensure) seconds. The
/// job directory (input written before the clock starts, as the orchestrator's scan would) is
/// removed after.
async fn worker_once(
    envs: &EnvManager,
    spec: &EnvSpec,
    python_src: &Path,
    project: &Path,
    round: usize,
) -> Result<(f64, f64), String> {
    let job = ShmJobDir::create(&format!("bench-warmstart-{}-{round}", std::process::id()))
        .map_err(|e| e.to_string())?;
    let input = job.input_dir().join("tiny.rows.arrow");
    write_input(&input)?;

    let t = Instant::now();
    let env = envs.ensure(spec, false).await.map_err(|e| e.to_string())?;
    let ensure = secs(t.elapsed());
    let node_dir = job.output_dir().join("tiny");
    std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
    let task_path = node_dir.join("task.json");
    write(&task_path, &task(&input, project, &node_dir).to_string())?;
    let mut sandbox = SandboxOptions::new()
        .ro(python_src.to_path_buf())
        .ro(project.to_path_buf())
        .ro(job.path().to_path_buf())
        .rw(node_dir.clone());
    sandbox.pythonpath = vec![python_src.to_path_buf(), project.to_path_buf()];
    let mut w = WorkerSpec::new(
        "tiny",
        env,
        vec![
            "-m".into(),
            "lakeplan._worker".into(),
            task_path.display().to_string(),
        ],
    );
    w.sandbox = sandbox;
    w.timeout = Some(Duration::from_secs(120));
    w.cwd = Some(project.to_path_buf());
    w.result_file = Some(node_dir.join("result.json"));
    let outcome = run_worker(&w, |_, _, line| eprintln!("[tiny] {line}"))
        .await
        .map_err(|e| e.to_string())?;
    let dt = secs(t.elapsed());
    if !outcome.success() {
        return Err(format!("worker failed: {:?}", outcome.result));
    }
    check_result(&node_dir.join("result.json"))?;
    Ok((dt, ensure))
}

/// The same worker and task, spawned directly (no sandbox, no ensure).
fn direct_once(
    python: &Path,
    python_src: &Path,
    project: &Path,
    round: usize,
) -> Result<f64, String> {
    let job = ShmJobDir::create(&format!("bench-warmstart-d-{}-{round}", std::process::id()))
        .map_err(|e| e.to_string())?;
    let input = job.input_dir().join("tiny.rows.arrow");
    write_input(&input)?;
    let node_dir = job.output_dir().join("tiny");
    std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
    let task_path = node_dir.join("task.json");
    write(&task_path, &task(&input, project, &node_dir).to_string())?;
    let pythonpath = std::env::join_paths([python_src, project]).map_err(|e| e.to_string())?;
    let dt = time_cmd(
        Command::new(python)
            .args(["-m", "lakeplan._worker"])
            .arg(&task_path)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("PYTHONPATH", pythonpath)
            .current_dir(project),
    )?;
    check_result(&node_dir.join("result.json"))?;
    Ok(dt)
}
