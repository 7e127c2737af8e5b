//! The job record's lifecycle: created with its code snapshot when a run starts, its log
//! written as the run goes, ended by the run, by a stop, or by a lost worker.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use lakeplan_core::{Error, Result};
use lakeplan_pipeline::{ParamType, ParamValue, Project};
use serde_json::json;

use super::*;
use crate::jobs::{JobRecord, JobStatus, JobStore};
use crate::Lake;

/// How often a run's new log lines go to the metastore, where every server reads them.
pub(super) const LIVE_FLUSH: Duration = Duration::from_millis(300);

pub(super) fn param_text(v: &ParamValue) -> String {
    match v {
        ParamValue::Bool(b) => b.to_string(),
        ParamValue::Int(i) => i.to_string(),
        ParamValue::Float(f) => f.to_string(),
        ParamValue::Str(s) => s.clone(),
        ParamValue::Secret(_) => lakeplan_pipeline::SECRET_MASK.to_string(),
    }
}

impl Lake {
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
