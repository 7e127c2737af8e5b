//! The job record's lifecycle: created with its code snapshot when a run starts, its log
//! written as the run goes, ended by the run, by a stop, or by a lost worker.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use lakeplan_core::{Error, Result};
use lakeplan_pipeline::{InputSource, ParamType, ParamValue, Project};
use serde_json::json;

use super::plan::Planned;
use super::{RunCtx, RunEvent, RunObserver, RunOptions, RunOutcome};
use crate::jobs::{JobRecord, JobStatus, JobStore};
use crate::Lake;

/// How often a run's new log lines go to the metastore, where every server reads them.
const LIVE_FLUSH: Duration = Duration::from_millis(300);

fn param_text(v: &ParamValue) -> String {
    match v {
        ParamValue::Bool(b) => b.to_string(),
        ParamValue::Int(i) => i.to_string(),
        ParamValue::Float(f) => f.to_string(),
        ParamValue::Str(s) => s.clone(),
        ParamValue::Secret(_) => lakeplan_pipeline::SECRET_MASK.to_string(),
    }
}

/// A job the run started: its record (running), its store and its log file.
pub(super) struct StartedJob {
    pub(super) jobs: JobStore,
    pub(super) rec: JobRecord,
    pub(super) log: PathBuf,
}

impl Lake {
    /// The job's start: its record, log and code snapshot, for a run of `planned`.
    pub(super) fn start_job(&self, opts: &RunOptions, planned: &Planned) -> Result<StartedJob> {
        let Planned {
            target,
            input_commit,
            project,
            plan,
        } = planned;
        let ns = plan.namespace.clone();
        let jobs = self.jobs()?;
        let job_id = opts
            .job_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        // The id names folders (job dir, /dev/shm) and is sliced for the branch name.
        if job_id.is_empty()
            || job_id.len() > 64
            || !job_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::InvalidInput(format!(
                "job id '{job_id}': expected 1 to 64 letters, digits, '-' or '_'"
            )));
        }
        let mut files: Vec<(String, PathBuf)> = vec![(
            project.file_name.clone(),
            project.dir.join(&project.file_name),
        )];
        for p in project.python_files.iter().chain(project.sql_files.iter()) {
            let rel = p
                .strip_prefix(&project.dir)
                .unwrap_or(p)
                .to_string_lossy()
                .to_string();
            files.push((rel, p.clone()));
        }
        let req = project.dir.join("requirements.txt");
        if req.is_file() {
            files.push(("requirements.txt".into(), req));
        }
        std::fs::create_dir_all(jobs.job_dir(&job_id))
            .map_err(|e| Error::io(jobs.job_dir(&job_id).display(), e))?;
        let code_hash = crate::snapshot::write_snapshot(&files, &jobs.snapshot_path(&job_id))?;
        jobs.keep_code(&job_id)?;
        let values: BTreeMap<String, String> = plan
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter())
            .filter_map(|i| match &i.source {
                InputSource::Param { name, value } => Some((name.clone(), param_text(value))),
                _ => None,
            })
            .collect();
        let transactional = opts.transaction && !opts.dry_run;
        let tx_branch =
            transactional.then(|| format!("{target}.run-{}", &job_id[..job_id.len().min(12)]));
        let rec = JobRecord {
            id: job_id.clone(),
            status: JobStatus::Running,
            actor: self.config.actor.clone(),
            project_dir: project.dir.display().to_string(),
            project_id: project.id.clone(),
            project_name: project.name.clone(),
            target: target.clone(),
            input_commit: input_commit.to_string(),
            namespace: ns.clone(),
            parameters: values,
            dry_run: opts.dry_run,
            transactional,
            strict: opts.strict,
            strict_python: opts.strict_python,
            tx_branch: tx_branch.clone(),
            result_commit: None,
            code_hash: code_hash.clone(),
            error: None,
            pid: (!opts.shared_process).then(std::process::id),
            created_at: Utc::now(),
            finished_at: None,
            nodes: json!([]),
            rerun_of: opts.rerun_of.clone(),
            args: opts.args.clone(),
            priority: opts.priority,
        };
        jobs.insert(&rec)?;
        let log_path = jobs.log_path(&job_id);
        Ok(StartedJob {
            jobs,
            rec,
            log: log_path,
        })
    }

    /// The job's end: its record says how the run ended (each node's outcome, the published
    /// commit or the error), its last log lines are written, and the run is recorded.
    pub(super) fn end_run(
        &self,
        ctx: &RunCtx,
        job: StartedJob,
        target: &str,
        ended: RunOutcome,
        opts: &RunOptions,
    ) -> Result<JobRecord> {
        let StartedJob {
            jobs,
            mut rec,
            log: log_path,
        } = job;
        let RunOutcome { nodes, result } = ended;
        let job_id = rec.id.clone();
        let tx_branch = rec.tx_branch.clone();
        rec.nodes = serde_json::to_value(&nodes).unwrap_or(json!([]));
        rec.finished_at = Some(Utc::now());
        match result {
            Ok(commit) => {
                rec.status = JobStatus::Succeeded;
                rec.result_commit = commit.map(|c| c.to_string());
                if let Some(tx) = &tx_branch {
                    // Published: the temporary branch has done its job.
                    self.close_tx_branch(tx);
                }
                ctx.emit(RunEvent::Info(match &rec.result_commit {
                    Some(c) => format!(
                        "job {job_id} succeeded: published {} to '{target}'",
                        &c[..12.min(c.len())]
                    ),
                    None => format!("job {job_id} succeeded: nothing to publish"),
                }));
            }
            Err(e) => {
                rec.status = JobStatus::Failed;
                let mut msg = e.to_string();
                if let Some(tx) = &tx_branch {
                    msg.push_str(&self.unpublished_note(tx, target));
                }
                msg.push_str(&format!("; log: {}", log_path.display()));
                ctx.emit(RunEvent::Info(format!("job {job_id} failed: {msg}")));
                rec.error = Some(msg);
            }
        }
        // Its last lines before its status: a reader that sees the job ended has all of them.
        ctx.flush_live();
        jobs.update(&rec)?;
        jobs.keep_log(&job_id);
        self.record(
            "pipeline.run",
            target,
            json!({"job_id": job_id, "dry_run": opts.dry_run, "status": rec.status.as_str()}),
            None,
        );
        Ok(rec)
    }

    /// The job store of this lake.
    pub fn jobs(&self) -> Result<JobStore> {
        JobStore::open(&self.root, self.catalog.store().clone())
    }
}

impl Lake {
    /// Stops a running job: its process (and so its sandboxes, which die with it) is killed,
    /// its shared-memory folder removed, and the job marked cancelled. The target branch is
    /// unchanged unless the run had already merged; the temporary branch is kept.
    pub fn stop_job(&self, id: &str) -> Result<JobRecord> {
        let jobs = self.jobs()?;
        let job = jobs.get(id)?;
        if job.status.is_finished() {
            return Err(Error::InvalidOperation {
                op: format!("stop job {}", job.id),
                reason: format!("it already ended ({})", job.status.as_str()),
            });
        }
        let Some(pid) = job.pid else {
            // A run inside a server: signalling its process would stop the server itself.
            return Err(Error::InvalidOperation {
                op: format!("stop job {}", job.id),
                reason: "it runs on a server's data-plane worker: stop it through that server (`lakeplan job stop` in remote mode)".into(),
            });
        };
        {
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            if alive {
                // A detached run leads its own process group: end the group; otherwise the
                // process alone. (`kill`'s complaints are not the user's: a run in another
                // terminal's foreground leads no group.)
                let kill = |target: String| {
                    std::process::Command::new("kill")
                        .args(["-TERM", "--", &target])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false)
                };
                if !kill(format!("-{pid}")) {
                    kill(pid.to_string());
                }
            }
        }
        let shm = Path::new("/dev/shm").join(format!("lakeplan-{}", job.id));
        let _ = std::fs::remove_dir_all(shm);
        // In one step with the check: a run that ended by itself meanwhile keeps its ending.
        let actor = &self.config.actor;
        let job = jobs.update_with(&job.id, |job| {
            if !job.status.is_finished() {
                job.status = JobStatus::Cancelled;
                job.finished_at = Some(Utc::now());
                job.error = Some(match &job.tx_branch {
                    Some(tx) => format!("stopped by {actor}; the temporary branch '{tx}' is kept"),
                    None => format!("stopped by {actor}"),
                });
            }
            Ok(())
        })?;
        jobs.keep_log(&job.id);
        self.record("job.stop", &job.id, json!({}), None);
        Ok(job)
    }

    /// Ends a running job whose run was stopped from outside: its worker was lost mid-run
    /// (`Failed`), or the run was cancelled on its worker (`Cancelled`). Its target branch is
    /// untouched: a run publishes by one merge at its end. A job that already ended is left as
    /// it is.
    pub fn end_job(&self, id: &str, status: JobStatus, why: &str) -> Result<JobRecord> {
        let jobs = self.jobs()?;
        let job = jobs.get(id)?;
        if job.status.is_finished() {
            return Ok(job);
        }
        let log = jobs.log_path(&job.id);
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&log) {
            use std::io::Write;
            let _ = writeln!(f, "error: {why}");
        }
        if jobs.log_parts(&job.id).is_ok_and(|p| !p.is_empty()) {
            let _ = jobs.append_log_part(&job.id, "end", 0, &format!("error: {why}\n"));
        }
        // In one step with the check: a run that ended meanwhile keeps its own ending.
        let mut ended_here = false;
        let job = jobs.update_with(&job.id, |job| {
            ended_here = !job.status.is_finished();
            if ended_here {
                job.status = status;
                job.finished_at = Some(Utc::now());
                job.error = Some(match &job.tx_branch {
                    Some(tx) => format!("{why}; the temporary branch '{tx}' is kept"),
                    None => why.to_string(),
                });
            }
            Ok(())
        })?;
        if !ended_here {
            return Ok(job);
        }
        jobs.keep_log(&job.id);
        let op = if status == JobStatus::Cancelled {
            "job.stop"
        } else {
            "job.lost"
        };
        self.record(op, &job.id, json!({"error": why}), None);
        Ok(job)
    }

    /// `lakeplan rerun`: the options of a new run of `job` from its stored code (extracted into
    /// the new job's folder), parameters and input commit, publishing to `target` (default: the
    /// job's own target).
    pub fn rerun_options(
        &self,
        job: &JobRecord,
        target: Option<String>,
        dry_run: bool,
        no_cache: bool,
        job_id: Option<String>,
    ) -> Result<RunOptions> {
        let jobs = self.jobs()?;
        let new_id = job_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let project_dir = jobs.job_dir(&new_id).join("project");
        crate::snapshot::extract_snapshot(&jobs.snapshot_file(&job.id)?, &project_dir)?;
        let project = Project::load(&project_dir).map_err(|e| e.into_plan_error())?;
        Ok(RunOptions {
            project_dir,
            target: Some(target.unwrap_or_else(|| job.target.clone())),
            namespace: Some(job.namespace.clone()),
            // A secret comes from the stored project file again (the record holds its mask).
            params: job
                .parameters
                .iter()
                .filter(|(name, _)| {
                    project
                        .parameters
                        .get(*name)
                        .is_none_or(|s| s.ty != ParamType::Secret)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            no_cache,
            dry_run,
            strict: job.strict,
            strict_python: job.strict_python,
            transaction: job.transactional || job.dry_run,
            job_id: Some(new_id),
            input_commit: Some(job.input_commit.clone()),
            rerun_of: Some(job.id.clone()),
            project_shown: Some(".".into()),
            args: job.args.clone(),
            priority: job.priority,
            ..Default::default()
        })
    }
}

/// A run's log: its file and observer, and the lines on their way to the job's log in the
/// metastore, where every server reads them.
pub(super) struct RunLog {
    pub(super) observer: RunObserver,
    pub(super) file: Mutex<std::fs::File>,
    /// Log lines not yet written as a part of the job's log in the metastore.
    pub(super) live: Mutex<String>,
    /// This process's name in the parts' keys, and how many it wrote.
    pub(super) writer: String,
    pub(super) parts: std::sync::atomic::AtomicU64,
    pub(super) jobs: JobStore,
}

impl RunCtx {
    pub(super) fn emit(&self, ev: RunEvent) {
        self.emit_to(ev, true);
    }

    /// Writes lines another process logged already (a node's worker): to the file and the
    /// observer, not again to the job's live log.
    pub(super) fn emit_relayed(&self, ev: RunEvent) {
        self.emit_to(ev, false);
    }

    fn emit_to(&self, ev: RunEvent, live: bool) {
        // The log marks what a function wrote to stderr; otherwise it reads like the terminal.
        let line = match &ev {
            RunEvent::Line {
                node,
                stderr: true,
                line,
            } => format!("[{node}] ! {line}"),
            other => other.to_string(),
        };
        let line = format!("{} {line}\n", Utc::now().format("%H:%M:%S%.3f"));
        if let Ok(mut f) = self.log.file.lock() {
            let _ = f.write_all(line.as_bytes());
        }
        if live {
            if let Ok(mut l) = self.log.live.lock() {
                l.push_str(&line);
            }
        }
        (self.log.observer)(&ev);
    }

    /// Writes the lines logged since the last call as a part of the job's log.
    fn flush_live(&self) {
        let text = match self.log.live.lock() {
            Ok(mut l) if !l.is_empty() => std::mem::take(&mut *l),
            _ => return,
        };
        let seq = self
            .log
            .parts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) =
            self.log
                .jobs
                .append_log_part(&self.scope.job_id, &self.log.writer, seq, &text)
        {
            eprintln!("warning: job {}: a part of its log: {e}", self.scope.job_id);
        }
    }

    /// Runs `fut`, writing what it logs to the job's live log every few hundred milliseconds
    /// and once more at its end.
    pub(super) async fn live_while<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
        let ticker = async {
            loop {
                tokio::time::sleep(LIVE_FLUSH).await;
                self.flush_live();
            }
        };
        tokio::pin!(fut);
        tokio::pin!(ticker);
        let out = tokio::select! {
            out = &mut fut => out,
            never = &mut ticker => never,
        };
        self.flush_live();
        out
    }
}
