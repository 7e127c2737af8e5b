//! The operations that read source files or run code: table plans and imports, pipeline runs,
//! and the jobs that record runs. Each is split where the work is: the catalog half (applying a
//! plan, reading a job's record) runs where the service runs; the half that reads files or
//! runs code runs on the service's [`DataPlane`]: this process for a lake on the user's machine
//! ([`InProcess`]), a server's data-plane workers for a server's tenant (the server provides
//! that one). Either way the rights were checked once, by the service, before.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use lakeplan_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::catalog::{bind_branch, bound, with_extras};
use super::{Access, Operation, Service};
use crate::{
    CommitExtras, CreatePlan, ImportOptions, ImportReport, JobRecord, JobStatus, Lake, ProgressFn,
    RunOptions, WriteInfo,
};

/// Where the half of an operation that reads source files or runs code happens.
#[async_trait::async_trait]
pub trait DataPlane: Send + Sync {
    /// A new table's plan, inferred from its source files (`req` is bound: its branch is set).
    async fn plan_table(&self, lake: &Lake, req: PlanTable) -> Result<CreatePlan>;
    /// Appends source files to a table: one commit, or nothing (`req` is bound).
    async fn import(&self, lake: &Lake, req: Import) -> Result<Imported>;
    /// Starts a run. Answers its job id once its job is recorded, or the error that stopped
    /// it before (a project that does not plan, say); the run goes on.
    async fn start_run(&self, lake: &Lake, run: RunTask) -> Result<String>;
    /// Stops a run that this data plane runs (not one with a process of its own: see
    /// [`CancelJob`]); the job's record once it ended.
    async fn cancel_run(&self, lake: &Lake, job: &JobRecord) -> Result<JobRecord>;
}

/// A new table's plan from the files at `search_uri`: its schema, partitioning, the files'
/// type conflicts. Nothing is written (see [`ApplyPlan`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PlanTable {
    pub table: String,
    pub namespace: Option<String>,
    pub search_uri: String,
    /// The branch the table will be created on (default: the active branch).
    pub branch: Option<String>,
    pub partitioned_by: Option<String>,
    /// Replace a table of that name instead of refusing.
    #[serde(default)]
    pub replace: bool,
}

impl Operation for PlanTable {
    type Output = CreatePlan;
    const NAME: &'static str = "plan_table";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        bind_branch(lake, &mut self.branch)
    }
    fn access(&self) -> Vec<Access> {
        vec![
            Access::WriteRef(bound(&self.branch).into()),
            Access::ReadSource(self.search_uri.clone()),
        ]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        on.data_plane().plan_table(on.lake(), self).await
    }
}

/// Creates a table from a plan (one commit). The plan names its branch and files, and each
/// is checked as the plan's own reads would be: a plan is a request, not a proof.
#[derive(Clone, Debug)]
pub struct ApplyPlan {
    pub plan: CreatePlan,
    pub commit: CommitExtras,
}

impl Operation for ApplyPlan {
    type Output = WriteInfo;
    const NAME: &'static str = "apply_plan";
    fn access(&self) -> Vec<Access> {
        let mut a = vec![
            Access::WriteRef(self.plan.branch.clone()),
            Access::ReadSource(self.plan.search_uri.clone()),
        ];
        a.extend(
            self.plan
                .files
                .iter()
                .map(|f| Access::ReadSource(f.path.clone())),
        );
        a
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        with_extras(on.lake(), self.commit)?
            .apply_plan(&self.plan)
            .await
    }
}

/// [`PlanTable`] then [`ApplyPlan`]: a table created from files in one call.
#[derive(Clone, Debug, Default)]
pub struct CreateTable {
    pub plan: PlanTable,
    pub commit: CommitExtras,
}

impl Operation for CreateTable {
    type Output = WriteInfo;
    const NAME: &'static str = "create_table";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        self.commit.validate()?;
        self.plan.bind(lake)
    }
    fn access(&self) -> Vec<Access> {
        self.plan.access()
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let plan = on.data_plane().plan_table(on.lake(), self.plan).await?;
        with_extras(on.lake(), self.commit)?.apply_plan(&plan).await
    }
}

/// Appends the files at `search_uri` to a table: one commit, or nothing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Import {
    pub table: String,
    pub namespace: Option<String>,
    pub search_uri: String,
    /// Default: the active branch.
    pub branch: Option<String>,
    #[serde(default)]
    pub continue_on_error: bool,
    #[serde(default)]
    pub import_duplicate_files: bool,
    /// Create the table from the files first when the branch has none of that name (MCP's
    /// `import_data`): a commit of its own.
    #[serde(default)]
    pub create_table: bool,
    #[serde(default)]
    pub commit: CommitExtras,
}

impl Import {
    /// Its options for the lake's import.
    pub fn options(&self) -> ImportOptions {
        ImportOptions {
            continue_on_error: self.continue_on_error,
            import_duplicate_files: self.import_duplicate_files,
            ..ImportOptions::default()
        }
    }
}

/// What an import did: its report, and the commit that appended the files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    pub report: ImportReport,
    pub commit: WriteInfo,
}

impl Operation for Import {
    type Output = Imported;
    const NAME: &'static str = "import";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        self.commit.validate()?;
        bind_branch(lake, &mut self.branch)
    }
    fn access(&self) -> Vec<Access> {
        vec![
            Access::WriteRef(bound(&self.branch).into()),
            Access::ReadSource(self.search_uri.clone()),
        ]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        if self.create_table
            && !lake.has_table(
                &self.table,
                self.namespace.as_deref(),
                self.branch.as_deref(),
            )?
        {
            let plan = PlanTable {
                table: self.table.clone(),
                namespace: self.namespace.clone(),
                search_uri: self.search_uri.clone(),
                branch: self.branch.clone(),
                partitioned_by: None,
                replace: false,
            };
            let plan = on.data_plane().plan_table(lake, plan).await?;
            with_extras(lake, self.commit.clone())?
                .apply_plan(&plan)
                .await?;
        }
        on.data_plane().import(lake, self).await
    }
}

/// A pipeline run as a data plane takes it. Its id is chosen before it starts, so that the
/// run can be followed (and cancelled) before its job is recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunTask {
    pub job_id: String,
    pub project: RunProject,
    pub target: String,
    pub namespace: Option<String>,
    pub params: Vec<(String, String)>,
    pub dry_run: bool,
    pub no_cache: bool,
    pub strict: bool,
    pub transaction: bool,
    pub strict_python: bool,
    /// Each model's first (true) or last (false) N rows in the job's log.
    #[serde(default)]
    pub preview: Option<(bool, usize)>,
    /// The project folder as the client named it, for messages (`my_project/models.py:31`).
    #[serde(default)]
    pub project_shown: Option<String>,
    /// Bauplan's `args` and `priority`, recorded in the job ([`RunOptions`]).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    #[serde(default)]
    pub priority: Option<u8>,
}

impl RunTask {
    /// A run of an uploaded project (a zip) on `target`, with the defaults every surface
    /// shares: a new job id, strict, transactional (publish only if every function and
    /// expectation passed).
    pub fn upload(zip: &[u8], target: impl Into<String>) -> RunTask {
        use base64::Engine;
        RunTask {
            job_id: uuid::Uuid::new_v4().simple().to_string(),
            project: RunProject::Upload {
                zip_base64: base64::engine::general_purpose::STANDARD.encode(zip),
            },
            target: target.into(),
            namespace: None,
            params: Vec::new(),
            dry_run: false,
            no_cache: false,
            strict: true,
            transaction: true,
            strict_python: false,
            preview: None,
            project_shown: None,
            args: BTreeMap::new(),
            priority: None,
        }
    }

    /// Its run options on `lake`, and the folder its upload was unpacked to (removed once the
    /// run ends).
    pub fn options(self, lake: &Lake) -> Result<(RunOptions, Option<PathBuf>)> {
        match self.project {
            RunProject::Upload { zip_base64 } => {
                use base64::Engine;
                let zip = base64::engine::general_purpose::STANDARD
                    .decode(zip_base64.as_bytes())
                    .map_err(|e| Error::InvalidInput(format!("the uploaded project: {e}")))?;
                let project = lake.unpack_project(&zip)?;
                let upload = project.parent().map(std::path::Path::to_path_buf);
                let opts = RunOptions {
                    project_dir: project,
                    target: Some(self.target),
                    namespace: self.namespace,
                    params: self.params,
                    no_cache: self.no_cache,
                    dry_run: self.dry_run,
                    strict: self.strict,
                    transaction: self.transaction,
                    strict_python: self.strict_python,
                    preview: self.preview,
                    job_id: Some(self.job_id),
                    // Plan errors name the folder the client named, never the upload's.
                    project_shown: Some(self.project_shown.unwrap_or_else(|| ".".into())),
                    args: self.args,
                    priority: self.priority,
                    ..Default::default()
                };
                Ok((opts, upload))
            }
            RunProject::Rerun { job_id } => {
                let job = lake.jobs()?.get(&job_id)?;
                let opts = lake.rerun_options(
                    &job,
                    Some(self.target),
                    self.dry_run,
                    self.no_cache,
                    Some(self.job_id),
                )?;
                Ok((opts, None))
            }
        }
    }
}

/// Where a run's code comes from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum RunProject {
    /// A project uploaded as a zip (base64).
    Upload { zip_base64: String },
    /// The stored code, parameters and input commit of an earlier job (`lakeplan rerun`).
    Rerun { job_id: String },
}

/// Starts a pipeline run; answers its job id once the job is recorded.
#[derive(Clone, Debug)]
pub struct StartRun {
    pub run: RunTask,
}

/// A run executes the project's code, even a dry one; it writes its target unless dry.
fn run_access(target: &str, dry_run: bool) -> Vec<Access> {
    let mut a = vec![Access::Execute];
    if !dry_run {
        a.push(Access::WriteRef(target.to_string()));
    }
    a
}

impl Operation for StartRun {
    type Output = String;
    const NAME: &'static str = "start_run";
    fn bind(&mut self, _: &Lake) -> Result<()> {
        crate::check_run_flags(self.run.priority, &self.run.args)
    }
    fn access(&self) -> Vec<Access> {
        run_access(&self.run.target, self.run.dry_run)
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        on.data_plane().start_run(on.lake(), self.run).await
    }
}

/// Runs an earlier job again: its stored code, parameters and input commit, on `at` (default:
/// the job's target). Answers the new job's id once it is recorded.
#[derive(Clone, Debug, Default)]
pub struct Rerun {
    pub job_id: String,
    pub at: Option<String>,
    pub dry_run: bool,
    pub no_cache: bool,
}

impl Operation for Rerun {
    type Output = String;
    const NAME: &'static str = "rerun";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        let job = get_job(lake, &self.job_id)?;
        self.job_id = job.id;
        self.at.get_or_insert(job.target);
        Ok(())
    }
    fn access(&self) -> Vec<Access> {
        run_access(bound(&self.at), self.dry_run)
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let job = get_job(on.lake(), &self.job_id)?;
        let run = RunTask {
            job_id: uuid::Uuid::new_v4().simple().to_string(),
            project: RunProject::Rerun { job_id: job.id },
            target: bound(&self.at).into(),
            namespace: None,
            params: Vec::new(),
            dry_run: self.dry_run,
            no_cache: self.no_cache,
            // Taken from the job when the run starts.
            strict: job.strict,
            transaction: job.transactional,
            strict_python: job.strict_python,
            preview: None,
            project_shown: None,
            args: BTreeMap::new(),
            priority: None,
        };
        on.data_plane().start_run(on.lake(), run).await
    }
}

/// A job by id or unique prefix. The job store decides what can name a job: an id that is not
/// one of its ids (a path, say) is `JobNotFound`, and never reaches a key or a path.
fn get_job(lake: &Lake, id: &str) -> Result<JobRecord> {
    lake.jobs()?.get(id)
}

/// The newest jobs first (default: 50).
#[derive(Clone, Debug, Default)]
pub struct ListJobs {
    pub limit: Option<usize>,
}

impl Operation for ListJobs {
    type Output = Vec<JobRecord>;
    const NAME: &'static str = "list_jobs";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        on.lake().jobs()?.list(self.limit.unwrap_or(50))
    }
}

/// One job's record (by id or a unique prefix of one).
#[derive(Clone, Debug, Default)]
pub struct GetJob {
    pub id: String,
}

impl Operation for GetJob {
    type Output = JobRecord;
    const NAME: &'static str = "get_job";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        get_job(on.lake(), &self.id)
    }
}

/// One job's log as it is now, whichever processes and machines wrote it.
#[derive(Clone, Debug, Default)]
pub struct JobLog {
    pub id: String,
}

/// A job's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobLogText {
    /// The job's full id.
    pub id: String,
    pub text: String,
}

impl Operation for JobLog {
    type Output = JobLogText;
    const NAME: &'static str = "job_log";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let job = get_job(on.lake(), &self.id)?;
        let text = on.lake().jobs()?.log_text(&job.id)?;
        Ok(JobLogText { id: job.id, text })
    }
}

/// Stops a running job: it writes nothing more, and publishes nothing. A job with a process of
/// its own (`lakeplan run` on this machine) is signalled; one its data plane runs (a server's
/// worker, this process) is stopped there. Needs the right to write the job's target.
#[derive(Clone, Debug, Default)]
pub struct CancelJob {
    pub id: String,
    /// The job's target (bound from its record: not the caller's to say).
    target: Option<String>,
}

impl CancelJob {
    pub fn new(id: impl Into<String>) -> CancelJob {
        CancelJob {
            id: id.into(),
            target: None,
        }
    }
}

impl Operation for CancelJob {
    type Output = JobRecord;
    const NAME: &'static str = "cancel_job";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        let job = get_job(lake, &self.id)?;
        self.id = job.id;
        self.target = Some(job.target);
        Ok(())
    }
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(bound(&self.target).into())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let job = get_job(on.lake(), &self.id)?;
        if job.pid.is_some() || job.status.is_finished() {
            return on.lake().stop_job(&job.id);
        }
        on.data_plane().cancel_run(on.lake(), &job).await
    }
}

/// Waits for run `id`'s job record: its id once recorded, or the error the run ended with
/// before (`ended` answers when the run ends). Every data plane starts runs this way.
pub async fn await_job_record(
    lake: &Lake,
    id: &str,
    mut ended: tokio::sync::oneshot::Receiver<Result<()>>,
) -> Result<String> {
    use tokio::sync::oneshot::error::TryRecvError;
    let jobs = lake.jobs()?;
    loop {
        if jobs.get(id).is_ok() {
            return Ok(id.to_string());
        }
        match ended.try_recv() {
            Ok(Err(e)) => return Err(e),
            // Ended well: its record is there now.
            Ok(Ok(())) => return jobs.get(id).map(|_| id.to_string()),
            Err(TryRecvError::Closed) => {
                return Err(Error::Internal(format!(
                    "run {id} ended without a job record"
                )))
            }
            Err(TryRecvError::Empty) => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits (at most 30 s) for job `id` to end after it was told to stop; its record then.
pub async fn await_job_end(lake: &Lake, id: &str) -> Result<JobRecord> {
    let jobs = lake.jobs()?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let job = jobs.get(id)?;
        if job.status.is_finished() || tokio::time::Instant::now() > deadline {
            return Ok(job);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs `opts` to its end, or until `stopped` fires (the job is then recorded cancelled), on a
/// blocking thread of its own: a run lives as long as it runs, and pipeline code is not
/// required to be `Send`. The unpacked `upload` is removed after.
pub async fn drive_run(
    lake: Lake,
    opts: RunOptions,
    upload: Option<PathBuf>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<()> {
    let handle = tokio::runtime::Handle::current();
    let id = opts.job_id.clone().unwrap_or_default();
    let job = id.clone();
    tokio::task::spawn_blocking(move || {
        let res = handle.block_on(async {
            tokio::select! {
                res = lake.run_pipeline(&opts, Arc::new(|_| {})) => res.map(|_| ()),
                Ok(()) = stopped => lake
                    .end_job(&job, JobStatus::Cancelled, "stopped through the API")
                    .map(|_| ()),
            }
        });
        if let Some(dir) = upload {
            let _ = std::fs::remove_dir_all(dir);
        }
        res
    })
    .await
    .map_err(|e| Error::Internal(format!("run {id}: {e}")))?
}

/// The work done in this process: a lake on the user's machine (the CLI, `lakeplan mcp`).
#[derive(Clone, Default)]
pub struct InProcess {
    /// Told of an import's progress (the CLI's progress bar).
    progress: Option<ProgressFn>,
}

impl InProcess {
    pub fn with_progress(progress: ProgressFn) -> InProcess {
        InProcess {
            progress: Some(progress),
        }
    }
}

/// The runs this process runs for [`InProcess`] services, by job id: how to stop each.
fn running() -> &'static Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>> {
    static RUNNING: OnceLock<Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>>> =
        OnceLock::new();
    RUNNING.get_or_init(Mutex::default)
}

fn running_lock(
) -> std::sync::MutexGuard<'static, HashMap<String, tokio::sync::oneshot::Sender<()>>> {
    running()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait::async_trait]
impl DataPlane for InProcess {
    async fn plan_table(&self, lake: &Lake, req: PlanTable) -> Result<CreatePlan> {
        lake.plan_table(
            &req.table,
            req.namespace.as_deref(),
            &req.search_uri,
            req.branch.as_deref(),
            req.partitioned_by.as_deref(),
            req.replace,
        )
        .await
    }

    async fn import(&self, lake: &Lake, req: Import) -> Result<Imported> {
        let progress = self.progress.clone().unwrap_or_else(|| Arc::new(|_| {}));
        let (report, commit) = with_extras(lake, req.commit.clone())?
            .import(
                &req.table,
                req.namespace.as_deref(),
                &req.search_uri,
                req.branch.as_deref(),
                &req.options(),
                progress,
            )
            .await?;
        Ok(Imported { report, commit })
    }

    async fn start_run(&self, lake: &Lake, run: RunTask) -> Result<String> {
        let id = run.job_id.clone();
        let (opts, upload) = run.options(lake)?;
        // This process serves other calls: it must never be signalled to stop the run.
        let opts = RunOptions {
            shared_process: true,
            ..opts
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        running_lock().insert(id.clone(), stop);
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let (runner, job) = (lake.clone(), id.clone());
        tokio::spawn(async move {
            let res = drive_run(runner, opts, upload, stopped).await;
            running_lock().remove(&job);
            let _ = ended_tx.send(res);
        });
        await_job_record(lake, &id, ended).await
    }

    async fn cancel_run(&self, lake: &Lake, job: &JobRecord) -> Result<JobRecord> {
        let Some(stop) = running_lock().remove(&job.id) else {
            return Err(Error::InvalidOperation {
                op: format!("stop job {}", job.id),
                reason: "it runs in another process that serves other calls (a server's data-plane worker, or `lakeplan mcp`): stop it through that server (`lakeplan job stop` in remote mode)".into(),
            });
        };
        let _ = stop.send(());
        await_job_end(lake, &job.id).await
    }
}
