//! `lakeplan run`: a pipeline project planned statically, executed node by node (Python
//! functions in sandboxes, SQL models in DataFusion), checked, materialized on a temporary
//! branch and published to the target by one merge — or nothing.
//!
//! ```text
//! plan (lakeplan-pipeline, no user code) ─ job record + code snapshot
//!   └─ temporary branch <target>.run-<job>      (unless --no-transaction / --dry-run)
//!      └─ levels of independent nodes, in parallel:
//!           inputs: scans (columns + filter pushed into Iceberg) → Arrow IPC in /dev/shm
//!           python: sandboxed worker (lakeplan-runtime) · sql: DataFusion over the lake + outputs
//!           outputs: Arrow IPC, contract-checked, cached by the node's key
//!      └─ expectations (strict: any failure fails the run)
//!      └─ one commit of every materialized model on the temporary branch
//!   └─ merge into the target; on success the temporary branch is deleted
//! ```
//!
//! One file per stage, each handing the next a value of its own type; [`Lake::run_pipeline`]
//! reads as their sequence:
//!
//! ```text
//! plan.rs         plan_run      -> Planned {target, input commit, project, plan}
//! job.rs          start_job     -> StartedJob {record, log}      ... end_run(RunOutcome)
//! publish.rs      open_tx_branch                                  (temporary branch)
//! schedule.rs     schedule      -> Scheduled {outcomes, failure, failed checks}
//!   node.rs         run_node    -> NodeOutcome (cache hit, SQL, or Python in a sandbox)
//! publish.rs      publish       -> published commit (materialize.rs, then the merge)
//! remote.rs       a node as a task on a data-plane worker: runs through node.rs's code
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lakeplan_core::{CommitId, Error, Result};
use lakeplan_pipeline::NodeKind;
use lakeplan_runtime::{EnvManager, ShmJobDir};
use serde::Serialize;

use crate::jobs::JobRecord;
use crate::node_cache::{NodeCache, Retention, SharedCache};
use crate::Lake;

mod job;
mod limits;
mod materialize;
mod node;
mod objects;
mod plan;
mod publish;
mod remote;
mod schedule;

use job::{RunLog, StartedJob};
use limits::FunctionLimits;
use node::{env_cache_dir, node_err, NodeCaching, NodeEnvs, Outputs, PyRun, Skip};
use objects::RunObjects;
use plan::Planned;
pub use remote::{NodeDispatch, NodeRun, NodeTask, NodeTaskResult, Nodes, RemoteOutput};
use schedule::{RunProgress, ScheduleState};

/// What `lakeplan run` asks for. Its [`Default`] is the product's: strict and transactional.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub project_dir: PathBuf,
    /// The branch to publish to (or, for a dry run, any ref to read); default: active branch.
    pub target: Option<String>,
    pub namespace: Option<String>,
    pub params: Vec<(String, String)>,
    pub no_cache: bool,
    pub dry_run: bool,
    /// Strict (default): a failed expectation or broken output contract fails the run.
    pub strict: bool,
    /// Transactional (default): materialize on a temporary branch, then merge.
    pub transaction: bool,
    /// Fail instead of running on the nearest installed Python when the declared one is absent.
    pub strict_python: bool,
    /// Nodes run at once; 0 = the number of cores.
    pub workers: usize,
    /// A job id chosen by the caller (a detached run records it before starting).
    pub job_id: Option<String>,
    /// Read inputs at this commit instead of the target's head (`lakeplan rerun`).
    pub input_commit: Option<String>,
    pub rerun_of: Option<String>,
    /// Show each model's first (true) or last (false) N rows after it ran.
    pub preview: Option<(bool, usize)>,
    /// The project folder as the user named it (`my_project`, `.`), for messages: plan errors
    /// name `my_project/models.py:31`. Default: `project_dir` as given. A server sets it to
    /// what the client named, never to its own folder for the upload.
    pub project_shown: Option<String>,
    /// Bauplan's `-a/--arg KEY=VALUE`: free-form flags for the backend. None changes how a run
    /// executes here; they are checked and recorded in the job.
    pub args: BTreeMap<String, String>,
    /// Bauplan's `--priority` (1 lowest to 10 highest), for ordering queued jobs. Runs here
    /// start at once, never queued behind each other, so it is checked and recorded in the job.
    pub priority: Option<u8>,
    /// The run executes inside a long-lived process that serves others too (the server): its
    /// process must never be signalled to stop the run, so the job records no pid.
    pub shared_process: bool,
    /// Python nodes run as tasks of their own on data-plane workers (server mode), instead of
    /// in sandboxes of this process.
    pub nodes: Option<Nodes>,
}

/// By hand: a surface that fills only some fields (`..Default::default()`) gets a strict,
/// transactional run, as the CLI, the HTTP API and the SDK default to.
impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            project_dir: PathBuf::new(),
            target: None,
            namespace: None,
            params: Vec::new(),
            no_cache: false,
            dry_run: false,
            strict: true,
            transaction: true,
            strict_python: false,
            workers: 0,
            job_id: None,
            input_commit: None,
            rerun_of: None,
            preview: None,
            project_shown: None,
            args: BTreeMap::new(),
            priority: None,
            shared_process: false,
            nodes: None,
        }
    }
}

/// Bauplan's priorities: 1 (lowest) to 10 (highest).
pub const PRIORITIES: std::ops::RangeInclusive<u8> = 1..=10;

/// Checks a run's `priority` (1 to 10) and `args` (non-empty keys), as every surface takes them.
pub fn check_run_flags(priority: Option<u8>, args: &BTreeMap<String, String>) -> Result<()> {
    if let Some(p) = priority {
        if !PRIORITIES.contains(&p) {
            return Err(Error::InvalidInput(format!(
                "priority {p}: expected 1 (lowest) to 10 (highest)"
            )));
        }
    }
    if args.keys().any(|k| k.trim().is_empty()) {
        return Err(Error::InvalidInput(
            "an --arg has an empty key: expected KEY=VALUE".into(),
        ));
    }
    Ok(())
}

/// One `-a/--arg KEY=VALUE`.
pub fn parse_run_arg(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(Error::InvalidInput(format!(
            "--arg '{s}': expected KEY=VALUE"
        ))),
    }
}

/// Bauplan's `preview` switch (`on`, `off`, `head`, `tail`) as [`RunOptions::preview`]: each
/// model's first (`on`, `head`) or last (`tail`) 10 rows, or none.
pub fn parse_preview(s: &str) -> Result<Option<(bool, usize)>> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(None),
        "on" | "head" => Ok(Some((true, 10))),
        "tail" => Ok(Some((false, 10))),
        _ => Err(Error::InvalidInput(format!(
            "preview '{s}': expected on, off, head or tail"
        ))),
    }
}

/// What a run tells its observer (the CLI's live view; every event also goes to the job log).
#[derive(Clone, Debug)]
pub enum RunEvent {
    Started {
        job_id: String,
        log: PathBuf,
    },
    Planned {
        rendered: String,
        nodes: usize,
    },
    Info(String),
    Warning(String),
    NodeStarted {
        node: String,
    },
    Line {
        node: String,
        stderr: bool,
        line: String,
    },
    NodeFinished {
        node: String,
        outcome: NodeOutcome,
    },
    /// A model output's first or last rows, formatted as a table.
    Preview {
        node: String,
        text: String,
    },
}

pub type RunObserver = Arc<dyn Fn(&RunEvent) + Send + Sync>;

/// One line (or block) of the live view and of the job log.
impl std::fmt::Display for RunEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEvent::Started { job_id, log } => {
                write!(f, "job {job_id} (log: {})", log.display())
            }
            RunEvent::Planned { rendered, .. } => f.write_str(rendered.trim_end()),
            RunEvent::Info(m) => f.write_str(m),
            RunEvent::Warning(m) => write!(f, "warning: {m}"),
            RunEvent::NodeStarted { node } => write!(f, "[{node}] started"),
            RunEvent::Line { node, line, .. } => write!(f, "[{node}] {line}"),
            RunEvent::Preview { node, text } => write!(f, "[{node}] preview:\n{text}"),
            RunEvent::NodeFinished { node, outcome } => {
                write!(f, "[{node}] {} in {:.2}s", outcome.status, outcome.seconds)?;
                if let Some(r) = outcome.rows {
                    write!(f, " ({r} rows)")?;
                }
                if let Some(p) = outcome.passed {
                    f.write_str(if p { " (passed)" } else { " (FAILED)" })?;
                }
                if let Some(e) = &outcome.error {
                    write!(f, ": {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// How one node ended.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NodeOutcome {
    pub node: String,
    pub kind: String,
    /// succeeded | failed | cached | skipped
    pub status: String,
    pub rows: Option<u64>,
    /// An expectation's verdict.
    pub passed: Option<bool>,
    pub seconds: f64,
    pub error: Option<String>,
    /// Table written, for materialized models.
    pub table: Option<String>,
    /// For a cache hit: the table snapshot the cached output was last materialized as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_snapshot: Option<i64>,
}

/// A run's (or a node task's) state: a few parts, each owned by the stage that uses it.
struct RunCtx {
    /// What the run reads.
    scope: RunScope,
    /// Where its files live.
    files: RunFiles,
    /// Its log (job.rs).
    log: RunLog,
    /// Its node cache and the nodes' effective keys (node.rs).
    cache: NodeCaching,
    /// The Python environments its nodes run in (node.rs).
    envs: NodeEnvs,
    /// The nodes' outputs, here and on other workers (node.rs, remote.rs).
    outputs: Outputs,
    /// What the scheduler and the nodes share (schedule.rs).
    schedule: ScheduleState,
    /// The objects (`bauplan.store`) its nodes load and save (objects.rs).
    objects: RunObjects,
}

/// What a run reads: its job, the commit, the namespace its models go to, the project.
struct RunScope {
    job_id: String,
    commit: CommitId,
    namespace: String,
    project_dir: PathBuf,
}

/// Where a run's files live.
struct RunFiles {
    shm: ShmJobDir,
    pysrc: PathBuf,
    /// More folders bound read-only into sandboxes (inputs held by other tasks of this worker).
    extra_ro: Vec<PathBuf>,
}

/// What a run's stages end with: each node's outcome, and the commit published (none when
/// nothing was) or why the run failed.
struct RunOutcome {
    nodes: Vec<NodeOutcome>,
    result: Result<Option<CommitId>>,
}

/// What a [`RunCtx`] is made of, besides the lake's helpers.
struct CtxParts {
    job_id: String,
    commit: CommitId,
    namespace: String,
    shm: ShmJobDir,
    project_dir: PathBuf,
    strict_python: bool,
    no_cache: bool,
    preview: Option<(bool, usize)>,
    observer: RunObserver,
    log: PathBuf,
}

impl Lake {
    /// A run's (or a node task's) state, its log appended to `parts.log`.
    fn run_ctx(&self, parts: CtxParts, remote: Option<Arc<dyn NodeDispatch>>) -> Result<RunCtx> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&parts.log)
            .map_err(|e| Error::io(parts.log.display(), e))?;
        let uv = EnvManager::locate_uv().map_err(|e| e.to_string());
        // Read again where each function runs (its machine's); checked here so that a bad
        // value stops the run before anything runs.
        FunctionLimits::from_env()?;
        Ok(RunCtx {
            scope: RunScope {
                job_id: parts.job_id.clone(),
                commit: parts.commit,
                namespace: parts.namespace,
                project_dir: parts.project_dir,
            },
            files: RunFiles {
                shm: parts.shm,
                pysrc: crate::pysrc::install(&self.root)?,
                extra_ro: Vec::new(),
            },
            log: RunLog {
                observer: parts.observer,
                file: Mutex::new(log),
                live: Mutex::new(String::new()),
                writer: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
                parts: std::sync::atomic::AtomicU64::new(0),
                jobs: self.jobs()?,
            },
            cache: NodeCaching {
                store: NodeCache::new(
                    self.root.join("cache").join("nodes"),
                    self.shared_node_cache.then(|| SharedCache {
                        store: self.catalog.store().clone(),
                        file_io: self.warehouse.file_io().clone(),
                        base: format!("{}/.lakeplan/node-cache", self.warehouse.url()),
                    }),
                    Retention::from_env()?,
                ),
                off: parts.no_cache,
                keys: Mutex::new(HashMap::new()),
            },
            envs: NodeEnvs {
                manager: EnvManager::new(
                    env_cache_dir(&self.root),
                    uv.clone().unwrap_or_else(|_| PathBuf::from("uv")),
                ),
                strict_python: parts.strict_python,
                uv_missing: uv.as_ref().err().cloned(),
            },
            outputs: Outputs {
                local: Mutex::new(HashMap::new()),
                dispatch: remote,
                remote: Mutex::new(HashMap::new()),
                fetching: tokio::sync::Mutex::new(()),
                recomputing: tokio::sync::Mutex::new(()),
            },
            schedule: ScheduleState {
                progress: tokio::sync::watch::Sender::new(RunProgress::default()),
                preview: parts.preview,
                plan_nodes: std::sync::OnceLock::new(),
                code_hash: std::sync::OnceLock::new(),
            },
            objects: RunObjects {
                at_commit: std::sync::OnceLock::new(),
                saved: Mutex::new(BTreeMap::new()),
            },
        })
    }

    /// Runs a pipeline project; see the module docs. Returns the finished job (its status says
    /// whether the run succeeded); planning errors are returned before any job exists.
    pub async fn run_pipeline(
        &self,
        opts: &RunOptions,
        observer: RunObserver,
    ) -> Result<JobRecord> {
        let planned = self.plan_run(opts)?;
        let job = self.start_job(opts, &planned)?;
        let shm = ShmJobDir::create(&job.rec.id).map_err(|e| Error::Internal(e.to_string()))?;
        let ctx = self.run_ctx(
            CtxParts {
                job_id: job.rec.id.clone(),
                commit: planned.input_commit.clone(),
                namespace: planned.plan.namespace.clone(),
                shm,
                project_dir: planned.project.dir.clone(),
                strict_python: opts.strict_python,
                no_cache: opts.no_cache,
                preview: opts.preview,
                observer,
                log: job.log.clone(),
            },
            opts.nodes.as_ref().map(|n| n.0.clone()),
        )?;
        ctx.emit(RunEvent::Started {
            job_id: job.rec.id.clone(),
            log: job.log.clone(),
        });
        ctx.emit(RunEvent::Planned {
            rendered: planned.plan.render_ascii(),
            nodes: planned.plan.nodes.len(),
        });
        let needs_python = planned
            .plan
            .nodes
            .iter()
            .any(|n| n.kind != NodeKind::SqlModel);
        let outcome = async {
            if needs_python {
                if let Err(e) = lakeplan_runtime::bwrap_available() {
                    return Err((vec![], Error::InvalidInput(e.to_string())));
                }
            }
            ctx.live_while(self.execute(&ctx, &planned, &job, opts))
                .await
        }
        .await;
        let ended = match outcome {
            Ok((nodes, commit)) => RunOutcome {
                nodes,
                result: Ok(commit),
            },
            Err((nodes, e)) => RunOutcome {
                nodes,
                result: Err(e),
            },
        };
        // The outputs other workers hold for this run are done with.
        ctx.release_all_remote();
        self.end_run(&ctx, job, &planned.target, ended, opts)
    }

    /// The stages between the job's start and its end: the temporary branch made, the nodes
    /// scheduled, the run published; returns each node's outcome and the published commit.
    async fn execute(
        &self,
        ctx: &RunCtx,
        planned: &Planned,
        job: &StartedJob,
        opts: &RunOptions,
    ) -> std::result::Result<(Vec<NodeOutcome>, Option<CommitId>), (Vec<NodeOutcome>, Error)> {
        let plan = &planned.plan;
        let code_hash = job.rec.code_hash.as_str();
        let tx_branch = job.rec.tx_branch.as_deref();
        let _ = ctx.schedule.plan_nodes.set(
            plan.nodes
                .iter()
                .map(|n| (n.name.clone(), n.clone()))
                .collect(),
        );
        let _ = ctx.schedule.code_hash.set(code_hash.to_string());
        ctx.emit(RunEvent::Info(format!(
            "namespace '{}' ({})",
            plan.namespace,
            plan.namespace_from.describe()
        )));
        if let Some(tx) = tx_branch {
            if let Err(e) = self.open_tx_branch(ctx, tx, &planned.target) {
                return Err((Vec::new(), e));
            }
        }
        let scheduled = self.schedule(ctx, plan, opts, code_hash).await;
        self.publish(ctx, planned, opts, tx_branch, code_hash, scheduled)
            .await
    }
}
