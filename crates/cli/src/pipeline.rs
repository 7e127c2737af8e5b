//! `lakeplan run | init | parameter | job | rerun`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lakeplan_core::{Error, Result};
use lakeplan_lake::ops;
use lakeplan_lake::pipeline::{self, ParamType};
use lakeplan_lake::{JobRecord, JobStatus, Lake, RunEvent, RunObserver, RunOptions};

use crate::remote::Remote;
use crate::service::Service;

use crate::args::*;
use crate::output;

fn perr(e: pipeline::PipelineError) -> Error {
    e.into_plan_error()
}

fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| Error::InvalidInput(format!("--param '{p}': expected name=value")))
        })
        .collect()
}

/// `lakeplan init [PATH] [--name N]`: needs no lake.
pub fn init(path: Option<PathBuf>, name: Option<String>, out: Output) -> Result<()> {
    let dir = path.unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    let name = match name {
        Some(n) => n,
        None => std::fs::canonicalize(&dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "my_project".into()),
    };
    let files = pipeline::scaffold(&dir, &name).map_err(perr)?;
    match out {
        Output::Json => output::json(&files)?,
        _ => {
            outln!("Created project '{name}' in {}:", dir.display());
            for f in files {
                outln!("  {}", f.display());
            }
            outln!("Run it with: lakeplan run -p {}", dir.display());
        }
    }
    Ok(())
}

/// Whether `cmd` sets a secret's value (which needs the lake's key, so the lake or the
/// server): `--type secret`, or a new value for a parameter that is a secret already.
pub fn is_secret_set(cmd: &ParameterCmd) -> bool {
    match cmd {
        ParameterCmd::Set { ty: Some(t), .. } => t == "secret",
        ParameterCmd::Set {
            ty: None,
            value: Some(_),
            name,
            project_dir,
            ..
        } => pipeline::Project::load(project_dir).is_ok_and(|p| {
            p.parameters
                .get(name)
                .is_some_and(|s| s.ty == ParamType::Secret)
        }),
        _ => false,
    }
}

/// `lakeplan parameter set NAME [VALUE] --type secret`: the value (else one line of stdin) is
/// sealed by the lake (the tenant's key, on a server) and only the ciphertext is written.
pub async fn set_secret(svc: &Service, cmd: ParameterCmd, out: Output) -> Result<()> {
    let ParameterCmd::Set {
        name,
        value,
        project_dir,
        description,
        ..
    } = cmd
    else {
        return Err(Error::Internal(
            "only `parameter set --type secret` needs the lake".into(),
        ));
    };
    // Checks the project file loads before anything is sealed.
    let project = pipeline::Project::load(&project_dir).map_err(perr)?;
    let value = match value {
        Some(v) => v,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::io("stdin", e))?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if value.is_empty() {
        return Err(Error::InvalidInput(format!(
            "secret parameter '{name}': the value is empty (give it as VALUE, or on stdin)"
        )));
    }
    let sealed = svc
        .seal_secret(project.id.as_deref(), &name, &value)
        .await?;
    let key = sealed.key.clone();
    let spec = pipeline::set_secret_parameter(&project_dir, sealed, description.as_deref())
        .map_err(perr)?;
    match out {
        Output::Json => output::json(&spec)?,
        _ => outln!("Set parameter '{name}' (secret, sealed with key {key})"),
    }
    Ok(())
}

/// `lakeplan parameter ls|set|rm`: edits the project file; needs no lake.
pub fn parameter(cmd: ParameterCmd, out: Output) -> Result<()> {
    match cmd {
        ParameterCmd::Ls { project_dir } => {
            let p = pipeline::Project::load(&project_dir).map_err(perr)?;
            match out {
                Output::Json => output::json(&p.parameters)?,
                _ => output::table(
                    &["NAME", "TYPE", "DEFAULT", "REQUIRED", "DESCRIPTION"],
                    p.parameters
                        .iter()
                        .map(|(n, s)| {
                            vec![
                                n.clone(),
                                s.ty.to_string(),
                                s.default
                                    .as_ref()
                                    .map(|d| d.to_string())
                                    .unwrap_or_default(),
                                s.required.to_string(),
                                s.description.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                ),
            }
        }
        ParameterCmd::Set {
            name,
            value,
            project_dir,
            ty,
            description,
        } => {
            let ty = match ty.as_deref() {
                None => None,
                Some(t) => Some(ParamType::parse(t).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "--type '{t}': expected str, int, float, bool or secret"
                    ))
                })?),
            };
            let spec = pipeline::set_parameter(
                &project_dir,
                &name,
                value.as_deref(),
                ty,
                description.as_deref(),
            )
            .map_err(perr)?;
            match out {
                Output::Json => output::json(&spec)?,
                _ => outln!("Set parameter '{name}' ({})", spec.ty),
            }
        }
        ParameterCmd::Rm { name, project_dir } => {
            pipeline::remove_parameter(&project_dir, &name).map_err(perr)?;
            match out {
                Output::Json => output::json(&serde_json::json!({"removed": name}))?,
                _ => outln!("Removed parameter '{name}'"),
            }
        }
    }
    Ok(())
}

/// The live view of a run: every function's output prefixed by its node, and a line per
/// node start and end. On `-O json` it goes to stderr so stdout stays one JSON document.
fn observer(out: Output) -> RunObserver {
    Arc::new(move |ev: &RunEvent| {
        let line = ev.to_string();
        if out == Output::Tty {
            outln!("{line}");
        } else {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{line}");
        }
    })
}

fn print_job(job: &JobRecord, out: Output) -> Result<()> {
    match out {
        Output::Json => output::json(job),
        _ => {
            outln!("job:          {}", job.id);
            outln!("status:       {}", job.status.as_str());
            outln!(
                "project:      {} ({})",
                job.project_name.as_deref().unwrap_or("-"),
                job.project_dir
            );
            outln!("target:       {}", job.target);
            outln!("input commit: {}", job.input_commit);
            if let Some(tx) = &job.tx_branch {
                outln!("tx branch:    {tx}");
            }
            if let Some(c) = &job.result_commit {
                outln!("published:    {c}");
            }
            outln!("dry run:      {}", job.dry_run);
            outln!(
                "created:      {}",
                job.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            if let Some(f) = job.finished_at {
                outln!(
                    "finished:     {}",
                    f.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            for (k, v) in &job.parameters {
                outln!("param:        {k}={v}");
            }
            if let Some(nodes) = job.nodes.as_array() {
                for n in nodes {
                    outln!(
                        "node:         {} [{}] {}{}",
                        n["node"].as_str().unwrap_or("?"),
                        n["kind"].as_str().unwrap_or("?"),
                        n["status"].as_str().unwrap_or("?"),
                        n["table"]
                            .as_str()
                            .map(|t| format!(" -> {t}"))
                            .unwrap_or_default()
                    );
                }
            }
            if let Some(e) = &job.error {
                outln!("error:        {e}");
            }
            Ok(())
        }
    }
}

fn finish(job: JobRecord, out: Output) -> Result<()> {
    match job.status {
        JobStatus::Succeeded => {
            if out == Output::Json {
                output::json(&job)?;
            }
            Ok(())
        }
        _ => {
            if out == Output::Json {
                output::json(&job)?;
            }
            Err(Error::InvalidOperation {
                op: format!("finish job {}", job.id),
                reason: job.error.unwrap_or_else(|| job.status.as_str().to_string()),
            })
        }
    }
}

/// `lakeplan run`.
pub async fn run(lake: &Lake, lake_dir: &Path, args: RunArgs, out: Output) -> Result<()> {
    let params = parse_params(&args.param)?;
    let run_args = run_args(&args)?;
    if args.detach {
        return detach(lake, lake_dir, &args, out).await;
    }
    let preview = lakeplan_lake::parse_preview(args.preview.as_str())?;
    let opts = RunOptions {
        project_dir: args.project_dir.clone(),
        project_shown: Some(args.project_dir.display().to_string()),
        args: run_args,
        priority: args.priority,
        target: args.r.clone(),
        namespace: args.namespace.clone(),
        params,
        no_cache: args.no_cache,
        dry_run: args.dry_run,
        strict: !args.no_strict,
        transaction: !args.no_transaction,
        strict_python: args.strict_python,
        workers: args.workers,
        job_id: args.job_id.clone(),
        preview,
        ..Default::default()
    };
    let job = lake.run_pipeline(&opts, observer(out)).await?;
    finish(job, out)
}

/// `-a/--arg KEY=VALUE` and `--priority`, checked as the lake checks them.
fn run_args(args: &RunArgs) -> Result<std::collections::BTreeMap<String, String>> {
    let parsed = args
        .arg
        .iter()
        .map(|a| lakeplan_lake::parse_run_arg(a))
        .collect::<Result<_>>()?;
    lakeplan_lake::check_run_flags(args.priority, &parsed)?;
    Ok(parsed)
}

/// `lakeplan run` in remote mode: uploads the project (its files, as a zip) and starts the run
/// on the server; unless detached, follows the job's log until it ends.
pub async fn run_remote(remote: &Remote, args: RunArgs, out: Output) -> Result<()> {
    parse_params(&args.param)?;
    run_args(&args)?;
    let zip = zip_project(&args.project_dir)?;
    let mut q: Vec<(&str, String)> = vec![
        ("ref", remote.ref_or_active(args.r.as_deref())?),
        ("project_dir", args.project_dir.display().to_string()),
    ];
    for a in &args.arg {
        q.push(("arg", a.clone()));
    }
    if let Some(p) = args.priority {
        q.push(("priority", p.to_string()));
    }
    if let Some(n) = &args.namespace {
        q.push(("namespace", n.clone()));
    }
    for p in &args.param {
        q.push(("param", p.clone()));
    }
    for (k, v) in [
        ("no_cache", args.no_cache),
        ("dry_run", args.dry_run),
        ("strict", !args.no_strict),
        ("transaction", !args.no_transaction),
        ("strict_python", args.strict_python),
    ] {
        q.push((k, v.to_string()));
    }
    q.push(("preview", args.preview.as_str().to_string()));
    let id = remote.start_run(zip, &q).await?;
    follow_remote(remote, id, args.detach, out).await
}

/// `lakeplan rerun` in remote mode: the server reruns the job from its stored code.
pub async fn rerun_remote(
    remote: &Remote,
    id: &str,
    r: Option<String>,
    dry_run: bool,
    no_cache: bool,
    out: Output,
) -> Result<()> {
    let op = ops::Rerun {
        job_id: id.to_string(),
        at: r,
        dry_run,
        no_cache,
    };
    let new_id = remote.call(op).await?;
    follow_remote(remote, new_id, false, out).await
}

/// What `run -d` prints: the job id, and how to follow it.
fn started_in_background(id: &str, out: Output) -> Result<()> {
    match out {
        Output::Json => output::json(&serde_json::json!({"job_id": id})),
        _ => {
            outln!("Started job {id} in the background");
            outln!("  lakeplan job get {id}   ·   lakeplan job logs {id}");
            Ok(())
        }
    }
}

/// Says where a detached remote job is, or follows its log until it ends.
async fn follow_remote(remote: &Remote, id: String, detach: bool, out: Output) -> Result<()> {
    if detach {
        return started_in_background(&id, out);
    }
    // Follow the log as the server streams it, until the job has ended.
    remote
        .follow_log(&id, |line| {
            if out == Output::Tty {
                outln!("{line}");
            } else {
                eprintln!("{line}");
            }
        })
        .await?;
    finish(remote.call(ops::GetJob { id }).await?, out)
}

/// The project's files as a zip, paths relative to `dir`. Hidden folders, `__pycache__` and
/// anything over the server's default body limit are left out or refused.
fn zip_project(dir: &Path) -> Result<Vec<u8>> {
    const LIMIT: u64 = 16 * 1024 * 1024;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut total = 0u64;
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(d.display(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(d.display(), e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ty = entry
                .file_type()
                .map_err(|e| Error::io(path.display(), e))?;
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            if ty.is_dir() {
                stack.push(path);
            } else if ty.is_file() {
                total += entry
                    .metadata()
                    .map_err(|e| Error::io(path.display(), e))?
                    .len();
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|_| {
                        Error::Internal(format!("{} is outside the project", path.display()))
                    })?
                    .to_string_lossy()
                    .into_owned();
                files.push((rel, path));
            }
        }
    }
    if total > LIMIT {
        return Err(Error::InvalidInput(format!(
            "the project in {} holds {total} bytes of files: more than the {LIMIT} a run uploads",
            dir.display()
        )));
    }
    let tmp = tempfile::NamedTempFile::new().map_err(|e| Error::io("a temporary file", e))?;
    lakeplan_lake::write_snapshot(&files, tmp.path())?;
    std::fs::read(tmp.path()).map_err(|e| Error::io(tmp.path().display(), e))
}

/// Starts the same `lakeplan run` in the background, in its own process group (so that the
/// terminal's Ctrl-C does not reach it), and waits until its job is recorded.
async fn detach(lake: &Lake, lake_dir: &Path, args: &RunArgs, out: Output) -> Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let exe = std::env::current_exe().map_err(|e| Error::io("the lakeplan executable", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--lake").arg(lake_dir).arg("run");
    cmd.arg("-p").arg(&args.project_dir);
    if let Some(r) = &args.r {
        cmd.arg("-r").arg(r);
    }
    if let Some(n) = &args.namespace {
        cmd.arg("-n").arg(n);
    }
    for p in &args.param {
        cmd.arg("--param").arg(p);
    }
    for a in &args.arg {
        cmd.arg("--arg").arg(a);
    }
    if let Some(p) = args.priority {
        cmd.arg("--priority").arg(p.to_string());
    }
    for (flag, on) in [
        ("--no-cache", args.no_cache),
        ("--dry-run", args.dry_run),
        ("--no-strict", args.no_strict),
        ("--no-transaction", args.no_transaction),
        ("--strict-python", args.strict_python),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    cmd.arg("--workers").arg(args.workers.to_string());
    cmd.arg("--job-id").arg(&id);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("starting a detached run", e))?;
    let jobs = lake.jobs()?;
    for _ in 0..600 {
        if jobs.get(&id).is_ok() {
            return started_in_background(&id, out);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::InvalidOperation {
                op: "start a detached run".into(),
                reason: format!(
                    "it ended ({status}) before recording a job: run it without -d to see why"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Internal(format!(
        "the detached run did not record job {id} within 30s"
    )))
}

/// `lakeplan job ...`, on a local lake or a server.
pub async fn job(svc: &Service, cmd: JobCmd, out: Output) -> Result<()> {
    match cmd {
        JobCmd::Ls { n } => {
            let all = svc.jobs(n).await?;
            match out {
                Output::Json => output::json(&all)?,
                _ => output::table(
                    &["ID", "STATUS", "CREATED", "TARGET", "PROJECT", "DRY RUN"],
                    all.iter()
                        .map(|j| {
                            vec![
                                j.id.clone(),
                                j.status.as_str().to_string(),
                                j.created_at
                                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                j.target.clone(),
                                j.project_name.clone().unwrap_or_default(),
                                j.dry_run.to_string(),
                            ]
                        })
                        .collect(),
                ),
            }
        }
        JobCmd::Get { id } => print_job(&svc.job(&id).await?, out)?,
        JobCmd::Logs { id } => {
            let (id, text) = svc.job_logs(&id).await?;
            match out {
                Output::Json => output::json(&serde_json::json!({"job_id": id, "log": text}))?,
                _ => out!("{text}"),
            }
        }
        JobCmd::Stop { id } => {
            let job = svc.stop_job(&id).await?;
            match out {
                Output::Json => output::json(&job)?,
                _ => outln!("Stopped job {} ({})", job.id, job.status.as_str()),
            }
        }
    }
    Ok(())
}

/// `lakeplan rerun ID`: the job's stored code, its parameters, its input commit.
pub async fn rerun(
    lake: &Lake,
    id: &str,
    r: Option<String>,
    dry_run: bool,
    no_cache: bool,
    out: Output,
) -> Result<()> {
    let job = lake.jobs()?.get(id)?;
    let opts = lake.rerun_options(&job, r, dry_run, no_cache, None)?;
    let job = lake.run_pipeline(&opts, observer(out)).await?;
    finish(job, out)
}
