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

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use lakeplan_core::{CommitId, Error, RefKind, Result};
use lakeplan_pipeline::{CacheStrategy, InputSource, NodeKind, PlanNode};
use lakeplan_runtime::{EnvManager, ShmJobDir};
use serde::Serialize;
use serde_json::json;

use crate::jobs::{JobRecord, JobStatus, JobStore};
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

use job::{param_text, LIVE_FLUSH};
use node::{env_cache_dir, node_err, Inputs, PyRun, Skip};

use limits::{FunctionLimits, PROCESSES_VAR, TIMEOUT_VAR};
pub use remote::{NodeDispatch, NodeRun, NodeTask, NodeTaskResult, Nodes, RemoteOutput};

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

/// Where a run's files and helpers live.
struct RunCtx {
    job_id: String,
    commit: CommitId,
    namespace: String,
    shm: ShmJobDir,
    pysrc: PathBuf,
    project_dir: PathBuf,
    cache: NodeCache,
    envs: EnvManager,
    strict_python: bool,
    /// Why uv could not be found: only an error if an environment must be built.
    uv_missing: Option<String>,
    no_cache: bool,
    preview: Option<(bool, usize)>,
    /// Node name → its effective cache key: the planner's key with the environment actually
    /// used and the upstream nodes' effective keys.
    keys: Mutex<HashMap<String, String>>,
    /// Node name → its output file (in shared memory, or in the cache).
    outputs: Mutex<HashMap<String, PathBuf>>,
    observer: RunObserver,
    log: Mutex<std::fs::File>,
    /// What the scheduler and the nodes tell each other while the run goes on: which nodes
    /// execute (missed the cache), which finished, whether the run stopped. A node started
    /// ahead of its inputs waits on it.
    progress: tokio::sync::watch::Sender<RunProgress>,
    /// Where Python nodes run, when not here.
    remote: Option<Arc<dyn NodeDispatch>>,
    /// Node name → its output on another worker (or this one's, shared with the others).
    remote_outputs: Mutex<HashMap<String, RemoteOutput>>,
    /// Outputs are fetched one at a time (two consumers of one output fetch it once).
    fetching: tokio::sync::Mutex<()>,
    /// Lost outputs are computed again one at a time (two readers finding one lost compute it
    /// once).
    recomputing: tokio::sync::Mutex<()>,
    /// The plan's nodes by name (set when it executes), for computing a lost output again.
    plan_nodes: std::sync::OnceLock<HashMap<String, PlanNode>>,
    /// The hash of the run's code snapshot (set when it executes).
    code_hash: std::sync::OnceLock<String>,
    /// More folders bound read-only into sandboxes (inputs held by other tasks of this worker).
    extra_ro: Vec<PathBuf>,
    /// The objects (`bauplan.store`) of the commit the run reads, loaded on first use (handed
    /// over with a node task on a worker).
    objects: std::sync::OnceLock<objects::Objects>,
    /// The objects saved by the run's nodes so far.
    saved: Mutex<objects::Saved>,
    /// Log lines not yet written as a part of the job's log in the metastore.
    live: Mutex<String>,
    /// This process's name in the parts' keys, and how many it wrote.
    writer: String,
    parts: std::sync::atomic::AtomicU64,
    jobs: JobStore,
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

#[derive(Default)]
struct RunProgress {
    executing: std::collections::HashSet<String>,
    done: std::collections::HashSet<String>,
    stopped: bool,
}

/// A cache hit found for a node: what its outcome reports.
struct CacheHit {
    rows: Option<u64>,
    passed: Option<bool>,
    snapshot: Option<i64>,
    key: String,
    /// The cached output the run reads (pinned for the run); none for an expectation.
    output: Option<PathBuf>,
}

impl RunCtx {
    /// Waits until the nodes `node` reads are all done (or, with `computing`, each done or
    /// computing), or the run stops.
    async fn inputs_of(&self, node: &PlanNode, computing: bool) -> Result<Inputs> {
        let mut rx = self.progress.subscribe();
        let p = rx
            .wait_for(|p| {
                p.stopped
                    || node
                        .upstream()
                        .all(|u| p.done.contains(u) || (computing && p.executing.contains(u)))
            })
            .await
            .map_err(|_| Error::Internal("run progress closed".into()))?;
        Ok(if p.stopped {
            Inputs::Stopped
        } else if node.upstream().all(|u| p.done.contains(u)) {
            Inputs::Done
        } else {
            Inputs::Computing
        })
    }

    fn emit(&self, ev: RunEvent) {
        self.emit_to(ev, true);
    }

    /// Writes lines another process logged already (a node's worker): to the file and the
    /// observer, not again to the job's live log.
    fn emit_relayed(&self, ev: RunEvent) {
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
        if let Ok(mut f) = self.log.lock() {
            let _ = f.write_all(line.as_bytes());
        }
        if live {
            if let Ok(mut l) = self.live.lock() {
                l.push_str(&line);
            }
        }
        (self.observer)(&ev);
    }

    /// Writes the lines logged since the last call as a part of the job's log.
    fn flush_live(&self) {
        let text = match self.live.lock() {
            Ok(mut l) if !l.is_empty() => std::mem::take(&mut *l),
            _ => return,
        };
        let seq = self
            .parts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self
            .jobs
            .append_log_part(&self.job_id, &self.writer, seq, &text)
        {
            eprintln!("warning: job {}: a part of its log: {e}", self.job_id);
        }
    }

    /// Runs `fut`, writing what it logs to the job's live log every few hundred milliseconds
    /// and once more at its end.
    async fn live_while<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
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

    fn node_dir(&self, node: &str) -> Result<PathBuf> {
        let d = self.shm.output_dir().join(node);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(d.display(), e))?;
        Ok(d)
    }

    /// The node's effective cache key (see `keys`), recorded for its consumers; with the
    /// digest of the objects it may load, if any.
    fn effective_key(
        &self,
        node: &PlanNode,
        env_key: Option<&str>,
        objects: Option<&str>,
    ) -> Result<String> {
        let mut text = format!("{}\0{}", node.cache_key, env_key.unwrap_or("-"));
        if let Some(digest) = objects {
            text.push_str("\0objects:");
            text.push_str(digest);
        }
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))?;
        for up in node.upstream() {
            text.push('\0');
            text.push_str(keys.get(up).map(String::as_str).unwrap_or("?"));
        }
        let key = lakeplan_core::sha256_hex(text.as_bytes());
        keys.insert(node.name.clone(), key.clone());
        Ok(key)
    }

    fn key_of(&self, node: &str) -> Option<String> {
        self.keys.lock().ok()?.get(node).cloned()
    }

    /// Whether `node`'s output is looked up in and kept in the cache.
    fn cacheable(&self, node: &PlanNode) -> bool {
        !self.no_cache && node.cache_strategy != CacheStrategy::None
    }

    fn set_output(&self, node: &str, path: PathBuf) -> Result<()> {
        self.outputs
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))?
            .insert(node.to_string(), path);
        Ok(())
    }

    fn output_of(&self, node: &str) -> Result<PathBuf> {
        self.outputs
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))?
            .get(node)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("node '{node}' has no output yet")))
    }
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
            job_id: parts.job_id,
            commit: parts.commit,
            namespace: parts.namespace,
            shm: parts.shm,
            pysrc: crate::pysrc::install(&self.root)?,
            project_dir: parts.project_dir,
            cache: NodeCache::new(
                self.root.join("cache").join("nodes"),
                self.shared_node_cache.then(|| SharedCache {
                    store: self.catalog.store().clone(),
                    file_io: self.warehouse.file_io().clone(),
                    base: format!("{}/.lakeplan/node-cache", self.warehouse.url()),
                }),
                Retention::from_env()?,
            ),
            envs: EnvManager::new(
                env_cache_dir(&self.root),
                uv.clone().unwrap_or_else(|_| PathBuf::from("uv")),
            ),
            strict_python: parts.strict_python,
            uv_missing: uv.as_ref().err().cloned(),
            no_cache: parts.no_cache,
            preview: parts.preview,
            keys: Mutex::new(HashMap::new()),
            outputs: Mutex::new(HashMap::new()),
            observer: parts.observer,
            log: Mutex::new(log),
            progress: tokio::sync::watch::Sender::new(RunProgress::default()),
            remote,
            remote_outputs: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            recomputing: tokio::sync::Mutex::new(()),
            plan_nodes: std::sync::OnceLock::new(),
            code_hash: std::sync::OnceLock::new(),
            extra_ro: Vec::new(),
            objects: std::sync::OnceLock::new(),
            saved: Mutex::new(BTreeMap::new()),
            live: Mutex::new(String::new()),
            writer: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            parts: std::sync::atomic::AtomicU64::new(0),
            jobs: self.jobs()?,
        })
    }

    /// Runs a pipeline project; see the module docs. Returns the finished job (its status says
    /// whether the run succeeded); planning errors are returned before any job exists.
    pub async fn run_pipeline(
        &self,
        opts: &RunOptions,
        observer: RunObserver,
    ) -> Result<JobRecord> {
        let target = self.ref_or_active(opts.target.as_deref())?;
        let resolved = self.catalog.resolve_str(&target)?;
        if !opts.dry_run && (resolved.kind != Some(RefKind::Branch) || !resolved.is_head) {
            return Err(Error::NotAWriteBranch(target));
        }
        let input_commit = match &opts.input_commit {
            Some(c) => self.catalog.resolve_str(&format!("@{c}"))?.commit,
            None => resolved.commit.clone(),
        };
        check_run_flags(opts.priority, &opts.args)?;
        let (project, plan) = self.plan_at(
            &opts.project_dir,
            opts.project_shown.as_deref(),
            &input_commit,
            &target,
            opts.namespace.as_deref(),
            &opts.params,
        )?;
        let ns = plan.namespace.clone();

        // The job: its record, log and code snapshot.
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
        let mut rec = JobRecord {
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
        let shm = ShmJobDir::create(&job_id).map_err(|e| Error::Internal(e.to_string()))?;
        let ctx = self.run_ctx(
            CtxParts {
                job_id: job_id.clone(),
                commit: input_commit.clone(),
                namespace: ns.clone(),
                shm,
                project_dir: project.dir.clone(),
                strict_python: opts.strict_python,
                no_cache: opts.no_cache,
                preview: opts.preview,
                observer,
                log: log_path.clone(),
            },
            opts.nodes.as_ref().map(|n| n.0.clone()),
        )?;
        ctx.emit(RunEvent::Started {
            job_id: job_id.clone(),
            log: log_path.clone(),
        });
        ctx.emit(RunEvent::Planned {
            rendered: plan.render_ascii(),
            nodes: plan.nodes.len(),
        });
        let needs_python = plan.nodes.iter().any(|n| n.kind != NodeKind::SqlModel);
        let outcome = async {
            if needs_python {
                if let Err(e) = lakeplan_runtime::bwrap_available() {
                    return Err((vec![], Error::InvalidInput(e.to_string())));
                }
            }
            ctx.live_while(self.execute(
                &ctx,
                &plan,
                opts,
                &target,
                tx_branch.as_deref(),
                &project,
                &code_hash,
            ))
            .await
        }
        .await;
        let (nodes, result) = match outcome {
            Ok((nodes, commit)) => (nodes, Ok(commit)),
            Err((nodes, e)) => (nodes, Err(e)),
        };
        // The outputs other workers hold for this run are done with.
        ctx.release_all_remote();
        rec.nodes = serde_json::to_value(&nodes).unwrap_or(json!([]));
        rec.finished_at = Some(Utc::now());
        match result {
            Ok(commit) => {
                rec.status = JobStatus::Succeeded;
                rec.result_commit = commit.map(|c| c.to_string());
                if let Some(tx) = &tx_branch {
                    // Published: the temporary branch has done its job.
                    let _ = self.delete_ref(tx, RefKind::Branch, true);
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
                    if self.catalog.resolve_str(tx).is_ok() {
                        msg.push_str(&format!(
                            "; '{target}' is unchanged; the temporary branch '{tx}' is kept"
                        ));
                    } else {
                        msg.push_str(&format!("; '{target}' is unchanged"));
                    }
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
            &target,
            json!({"job_id": job_id, "dry_run": opts.dry_run, "status": rec.status.as_str()}),
            None,
        );
        Ok(rec)
    }
}
