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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use lakeplan_core::{CommitId, Entry, Error, RefKind, Result, TableName, OBJECT_KEY_PREFIX};
use lakeplan_pipeline::{
    CacheStrategy, CatalogView, InputSource, Materialization, NodeKind, ParamType, ParamValue,
    Plan, PlanNode, Project, TableInfo,
};
use lakeplan_runtime::{
    run_worker, EnvManager, EnvSpec, PreparedEnv, SandboxOptions, ShmJobDir, Stream, WorkerSpec,
};
use lakeplan_storage::ingest::{self, ImportOptions, SourceFile};
use lakeplan_storage::schema::{parse_partitioning, partition_spec, schema_from_columns};
use serde::Serialize;
use serde_json::json;

use crate::jobs::{JobRecord, JobStatus, JobStore};
use crate::node_cache::{write_atomic, Found, NodeCache, Retention, SharedCache};
use crate::pipeline_io::{
    check_contract, quote_ident, scan_sql, sql_to_ipc, sql_to_ipc_parts, ContractField,
};
use crate::Lake;

mod limits;
mod objects;
mod remote;

use limits::{FunctionLimits, PROCESSES_VAR, TIMEOUT_VAR};
pub use remote::{NodeDispatch, NodeRun, NodeTask, NodeTaskResult, Nodes, RemoteOutput};

/// How often a run's new log lines go to the metastore, where every server reads them.
const LIVE_FLUSH: Duration = Duration::from_millis(300);

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

/// The lake as the planner sees it at one commit: table columns and snapshot ids, read from
/// the tables' metadata on demand.
struct PlanView<'a> {
    lake: &'a Lake,
    commit: CommitId,
    label: String,
    handle: tokio::runtime::Handle,
}

impl CatalogView for PlanView<'_> {
    fn table(&self, namespace: &str, name: &str) -> Option<TableInfo> {
        let tn = TableName::new(namespace, name).ok()?;
        let entry = match self.lake.catalog.entry(&self.commit, &tn.key()).ok()?? {
            Entry::Table(t) => t,
            Entry::Namespace | Entry::Object(_) => return None,
        };
        let file_io = self.lake.warehouse.file_io().clone();
        let table = self
            .handle
            .block_on(lakeplan_storage::load_table(&file_io, &tn, &entry))
            .ok()?;
        let schema =
            iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema()).ok()?;
        Some(TableInfo {
            columns: schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string()))
                .collect(),
            snapshot_id: entry.snapshot_id,
        })
    }

    fn namespaces(&self) -> Vec<String> {
        self.lake
            .catalog
            .entries(&self.commit)
            .map(|all| {
                all.into_iter()
                    .filter(|(_, e)| matches!(e, Entry::Namespace))
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn table_names(&self, namespace: &str) -> Vec<String> {
        let prefix = format!("{namespace}.");
        self.lake
            .catalog
            .entries(&self.commit)
            .map(|all| {
                all.into_iter()
                    .filter(|(_, e)| matches!(e, Entry::Table(_)))
                    .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn ref_label(&self) -> String {
        self.label.clone()
    }
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

/// The status of a node started ahead of its inputs when the run stopped before they were
/// done: it never ran, and is not reported.
const CANCELLED: &str = "cancelled";

/// Why a worker started ahead of its inputs is given no task once they are done.
enum Skip {
    Hit(CacheHit),
    Cancelled,
}

/// Waits for a worker's inputs: `None` once the worker is to run.
type GateFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Skip>>> + 'a>>;

/// A Python node's run: the worker's result, or why no task was given to it.
enum PyRun {
    Ran(serde_json::Value),
    Skipped(Skip),
}

/// How far the nodes a node reads have got.
enum Inputs {
    /// The run stopped first.
    Stopped,
    Done,
    /// Each is done or computing (missed the cache), not all done.
    Computing,
}

/// A node starts (for its log line and its reported seconds): at once, or for a node started
/// ahead of its inputs, when they are done.
fn node_started(ctx: &RunCtx, node: &PlanNode, started: &Mutex<Instant>) {
    if let Ok(mut t) = started.lock() {
        *t = Instant::now();
    }
    ctx.emit(RunEvent::NodeStarted {
        node: node.name.clone(),
    });
}

/// Reports a cache hit in the node's outcome and hands its cached output on.
fn apply_hit(ctx: &RunCtx, node: &PlanNode, o: &mut NodeOutcome, hit: CacheHit) {
    o.status = "cached".into();
    o.rows = hit.rows;
    o.passed = hit.passed;
    o.cached_snapshot = hit.snapshot;
    if let Some(output) = hit.output {
        if let Err(e) = ctx.set_output(&node.name, output) {
            ctx.emit(RunEvent::Warning(format!("[{}] {e}", node.name)));
        }
    }
    ctx.emit(RunEvent::Line {
        node: node.name.clone(),
        stderr: false,
        line: format!("cache hit ({}): not re-executed", &hit.key[..12]),
    });
}

/// A node's failure, with the node named.
fn node_err(node: &str, msg: impl std::fmt::Display) -> Error {
    Error::InvalidOperation {
        op: format!("run node '{node}'"),
        reason: msg.to_string(),
    }
}

/// The environment a Python node declares.
fn node_env_spec(node: &PlanNode) -> EnvSpec {
    EnvSpec {
        python: node.python.clone(),
        pip: node.pip.clone(),
    }
}

/// What choosing a node's interpreter warned of (a substituted version), in the log.
fn env_warnings(ctx: &RunCtx, node: &PlanNode, warnings: &[String]) {
    for w in warnings {
        ctx.emit(RunEvent::Warning(format!("[{}] {w}", node.name)));
    }
}

fn param_text(v: &ParamValue) -> String {
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

    #[allow(clippy::too_many_arguments)]
    fn plan_at(
        &self,
        project_dir: &Path,
        shown: Option<&str>,
        commit: &CommitId,
        label: &str,
        ns: Option<&str>,
        params: &[(String, String)],
    ) -> Result<(Project, Plan)> {
        let handle = tokio::runtime::Handle::current();
        let view = PlanView {
            lake: self,
            commit: commit.clone(),
            label: label.to_string(),
            handle,
        };
        let lake_ns = self.configured_namespace()?;
        let rule = lakeplan_pipeline::NamespaceRule {
            explicit: ns,
            lake: lake_ns.as_deref(),
        };
        // The planner is synchronous and reads table metadata through the async storage
        // layer: it runs on a plain thread that may block on the runtime.
        std::thread::scope(|s| {
            s.spawn(|| {
                let python = self.analyzer_python(&view.handle);
                lakeplan_pipeline::load_and_plan_with(project_dir, &view, params, &rule, &python)
            })
            .join()
            .map_err(|_| Error::Internal("the planner panicked".into()))
        })?
        .map_err(|e| {
            let shown = shown.map_or_else(|| project_dir.display().to_string(), str::to_string);
            let e = match lakeplan_pipeline::project::absolute(project_dir) {
                Ok(dir) => e.shown_as(&dir, &shown),
                Err(_) => e,
            };
            e.into_plan_error()
        })
    }

    /// The interpreter that runs the static analyzer: `$LAKEPLAN_PYTHON`, else the real binary
    /// of the default interpreter the runtime discovered (cached; a pyenv shim on `PATH` costs
    /// a tenth of a second per start), else `python3`.
    fn analyzer_python(&self, handle: &tokio::runtime::Handle) -> String {
        if let Some(p) = std::env::var_os(lakeplan_pipeline::analyze::PYTHON_ENV) {
            if !p.is_empty() {
                return p.to_string_lossy().to_string();
            }
        }
        let cache = env_cache_dir(&self.root).join("interpreters.json");
        let installed = handle.block_on(lakeplan_runtime::python::discover_cached(&cache));
        lakeplan_runtime::python::select(&installed, None, false)
            .map(|r| r.path.display().to_string())
            .unwrap_or_else(|_| "python3".to_string())
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

    /// Executes the plan; returns each node's outcome and the published commit.
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        ctx: &RunCtx,
        plan: &Plan,
        opts: &RunOptions,
        target: &str,
        tx_branch: Option<&str>,
        project: &Project,
        code_hash: &str,
    ) -> std::result::Result<(Vec<NodeOutcome>, Option<CommitId>), (Vec<NodeOutcome>, Error)> {
        let mut outcomes: Vec<NodeOutcome> = Vec::new();
        let _ = ctx.plan_nodes.set(
            plan.nodes
                .iter()
                .map(|n| (n.name.clone(), n.clone()))
                .collect(),
        );
        let _ = ctx.code_hash.set(code_hash.to_string());
        ctx.emit(RunEvent::Info(format!(
            "namespace '{}' ({})",
            plan.namespace,
            plan.namespace_from.describe()
        )));
        if let Some(tx) = tx_branch {
            if let Err(e) = self.create_ref(tx, RefKind::Branch, Some(target), false) {
                return Err((outcomes, e));
            }
            ctx.emit(RunEvent::Info(format!(
                "created temporary branch '{tx}' from '{target}'"
            )));
        }
        let workers = if opts.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            opts.workers
        };
        let mut failure: Option<Error> = None;
        let mut expectation_failures = Vec::new();
        let mut contract_failures = Vec::new();
        // A node starts as soon as every node it reads has finished (not level by level), at
        // most `workers` at once; after a failure nothing new starts and the run ends when the
        // running nodes do.
        let mut waiting: Vec<usize> = (0..plan.nodes.len()).collect();
        // How many nodes still read each node's output: at zero, an output that is not
        // materialized leaves shared memory (freeing it while the run goes on).
        let mut consumers: HashMap<&str, usize> = HashMap::new();
        for n in &plan.nodes {
            for u in n.upstream() {
                *consumers.entry(u).or_default() += 1;
            }
        }
        let mut done: std::collections::HashSet<&str> = std::collections::HashSet::new();
        // Nodes started because their inputs were ready (not ahead of them).
        let mut started: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut running = futures::stream::FuturesUnordered::new();
        let start = |i: usize, ahead: bool| {
            let node = &plan.nodes[i];
            async move { (node, self.run_node(ctx, node, ahead, code_hash).await) }
        };
        loop {
            if failure.is_none() {
                let mut k = 0;
                while k < waiting.len() && running.len() < workers {
                    let node = &plan.nodes[waiting[k]];
                    if node.upstream().all(|u| done.contains(u)) {
                        started.insert(node.name.as_str());
                        running.push(start(waiting.remove(k), false));
                    } else {
                        k += 1;
                    }
                }
                // Free slots go to Python nodes one step ahead: every node they read has
                // started. Such a node builds its environment and, once its inputs are known
                // to be computed rather than cached, starts its worker (interpreter, imports)
                // while they are, instead of after.
                let mut k = 0;
                while ctx.remote.is_none() && k < waiting.len() && running.len() < workers {
                    let node = &plan.nodes[waiting[k]];
                    if node.kind != NodeKind::SqlModel
                        && node
                            .upstream()
                            .all(|u| done.contains(u) || started.contains(u))
                    {
                        running.push(start(waiting.remove(k), true));
                    } else {
                        k += 1;
                    }
                }
            }
            let Some((node, r)) = running.next().await else {
                break;
            };
            match r {
                Ok(o) if o.status == CANCELLED => {
                    // Started ahead of its inputs, then the run stopped: it never ran.
                    continue;
                }
                Ok(mut o) => {
                    if let Some(contract) = &node.output_schema {
                        if o.status != "skipped" {
                            if let Err(msg) = self.contract_check(ctx, node, contract).await {
                                o.error = Some(msg.clone());
                                contract_failures.push(format!("{}: {msg}", node.name));
                            }
                        }
                    }
                    if o.passed == Some(false) {
                        expectation_failures.push(node.name.clone());
                    }
                    if let (Some((head, n)), true) =
                        (ctx.preview, node.kind != NodeKind::Expectation)
                    {
                        if let Ok(path) = self.output_here(ctx, &node.name).await {
                            match crate::pipeline_io::preview(&path, head, n) {
                                Ok(text) => ctx.emit(RunEvent::Preview {
                                    node: node.name.clone(),
                                    text,
                                }),
                                Err(e) => ctx.emit(RunEvent::Warning(format!(
                                    "[{}] no preview: {e}",
                                    node.name
                                ))),
                            }
                        }
                    }
                    ctx.emit(RunEvent::NodeFinished {
                        node: node.name.clone(),
                        outcome: o.clone(),
                    });
                    outcomes.push(o);
                }
                Err((o, e)) => {
                    ctx.emit(RunEvent::NodeFinished {
                        node: node.name.clone(),
                        outcome: o.clone(),
                    });
                    outcomes.push(o);
                    if failure.is_none() {
                        failure = Some(e);
                        ctx.progress.send_modify(|p| p.stopped = true);
                    }
                }
            }
            done.insert(node.name.as_str());
            ctx.progress
                .send_modify(|p| _ = p.done.insert(node.name.clone()));
            release_inputs(ctx, plan, node, &mut consumers);
        }
        if failure.is_none() && !waiting.is_empty() {
            failure = Some(Error::Internal(format!(
                "{} node(s) never became ready: the plan's dependencies are inconsistent",
                waiting.len()
            )));
        }
        let props = materialize_props(ctx, project, code_hash);
        if let Some(e) = failure {
            if let (Some(tx), false) = (tx_branch, opts.dry_run) {
                self.keep_finished(ctx, plan, &mut outcomes, tx, target, &props)
                    .await;
            }
            return Err((outcomes, e));
        }
        let mut checks = Vec::new();
        if !contract_failures.is_empty() {
            checks.push(format!(
                "output contract violated: {}",
                contract_failures.join("; ")
            ));
        }
        if !expectation_failures.is_empty() {
            checks.push(format!(
                "expectation(s) failed: {}",
                expectation_failures.join(", ")
            ));
        }
        // Strict checks gate publishing. On a temporary branch the outputs are materialized
        // first, so a failed run leaves them there to inspect; without one nothing is written.
        let gate = |checks: &[String]| -> Option<Error> {
            (opts.strict && !checks.is_empty()).then(|| Error::InvalidOperation {
                op: "publish the run".into(),
                reason: checks.join("; "),
            })
        };
        if !opts.strict {
            for msg in &checks {
                ctx.emit(RunEvent::Warning(format!(
                    "{msg} (--no-strict: publishing anyway)"
                )));
            }
        }
        if opts.dry_run || tx_branch.is_none() {
            if let Some(e) = gate(&checks) {
                return Err((outcomes, e));
            }
        }
        if opts.dry_run {
            ctx.emit(RunEvent::Info("dry run: nothing materialized".into()));
            return Ok((outcomes, None));
        }
        let branch = tx_branch.unwrap_or(target);
        let written = match self
            .materialize(ctx, plan, &mut outcomes, branch, &props, None)
            .await
        {
            Ok(w) => w,
            Err(e) => return Err((outcomes, e)),
        };
        let Some(tx) = tx_branch else {
            return Ok((outcomes, written));
        };
        if let Some(e) = gate(&checks) {
            let e = match written {
                Some(_) => Error::InvalidOperation {
                    op: "publish the run".into(),
                    reason: format!(
                        "{}; the outputs are on '{tx}' for inspection",
                        checks.join("; ")
                    ),
                },
                None => e,
            };
            return Err((outcomes, e));
        }
        if written.is_none() {
            return Ok((outcomes, None));
        }
        let mut meta = self.meta(
            "pipeline.run",
            format!(
                "Run {} (job {}) into '{target}'",
                project.name.as_deref().unwrap_or("pipeline"),
                ctx.job_id
            ),
        );
        meta.properties.extend(props);
        let merged = self.audited(
            "branch.merge",
            target,
            json!({"source": tx, "job_id": ctx.job_id}),
            || self.catalog.merge(tx, target, &meta),
        );
        match merged {
            Ok(lakeplan_catalog::MergeOutcome::FastForward { commit })
            | Ok(lakeplan_catalog::MergeOutcome::Merged { commit }) => {
                ctx.emit(RunEvent::Info(format!("merged '{tx}' into '{target}'")));
                Ok((outcomes, Some(commit)))
            }
            Ok(lakeplan_catalog::MergeOutcome::UpToDate) => Ok((outcomes, None)),
            Err(e) => Err((outcomes, e)),
        }
    }

    /// A run that failed on its temporary branch `tx` keeps what it computed there: the
    /// materialized models that finished (computed or cached) are written to `tx` (never to
    /// `target`) in one commit, and the log says which, for debugging from them. A failure to
    /// write them is a warning: the run's own error stays the one reported.
    async fn keep_finished(
        &self,
        ctx: &RunCtx,
        plan: &Plan,
        outcomes: &mut [NodeOutcome],
        tx: &str,
        target: &str,
        props: &BTreeMap<String, String>,
    ) {
        let finished: std::collections::HashSet<String> = outcomes
            .iter()
            .filter(|o| matches!(o.status.as_str(), "succeeded" | "cached"))
            .map(|o| o.node.clone())
            .collect();
        let kept: Vec<&str> = plan
            .nodes
            .iter()
            .filter(|n| n.materializes() && finished.contains(&n.name))
            .map(|n| n.name.as_str())
            .collect();
        if kept.is_empty() {
            return;
        }
        match self
            .materialize(ctx, plan, outcomes, tx, props, Some(&finished))
            .await
        {
            Ok(_) => ctx.emit(RunEvent::Info(format!(
                "the run failed: the model(s) that finished ({}) are on the temporary branch '{tx}' for inspection; '{target}' is unchanged",
                kept.join(", ")
            ))),
            Err(e) => ctx.emit(RunEvent::Warning(format!(
                "the run failed, and the model(s) that finished ({}) could not be kept on '{tx}': {e}",
                kept.join(", ")
            ))),
        }
    }

    async fn contract_check(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        contract: &[lakeplan_pipeline::Field],
    ) -> std::result::Result<(), String> {
        let path = self
            .output_here(ctx, &node.name)
            .await
            .map_err(|e| e.to_string())?;
        let fields: Vec<ContractField> = contract
            .iter()
            .map(|f| ContractField {
                name: f.name.clone(),
                ty: f.ty.clone(),
                nullable: f.nullable,
            })
            .collect();
        match check_contract(&path, &fields) {
            Ok(v) if v.is_empty() => Ok(()),
            Ok(v) => Err(v.join("; ")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs one node: from cache when its key is known, else in a sandbox or DataFusion.
    /// `ahead`: started before its inputs finished (see `execute`); it waits
    /// for them, and returns status [`CANCELLED`] if the run stops first.
    async fn run_node(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        ahead: bool,
        code_hash: &str,
    ) -> std::result::Result<NodeOutcome, (NodeOutcome, Error)> {
        let started = Mutex::new(Instant::now());
        let mut o = NodeOutcome {
            node: node.name.clone(),
            kind: node.kind.label().to_string(),
            status: "succeeded".into(),
            rows: None,
            passed: None,
            seconds: 0.0,
            error: None,
            table: None,
            cached_snapshot: None,
        };
        let r = self
            .run_node_inner(ctx, node, &mut o, ahead, &started, code_hash)
            .await;
        o.seconds = started.lock().map_or(0.0, |t| t.elapsed().as_secs_f64());
        match r {
            Ok(()) => Ok(o),
            Err(e) => {
                o.status = "failed".into();
                o.error = Some(e.to_string());
                Err((o, e))
            }
        }
    }

    async fn run_node_inner(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        o: &mut NodeOutcome,
        ahead: bool,
        started: &Mutex<Instant>,
        code_hash: &str,
    ) -> Result<()> {
        if !ahead {
            node_started(ctx, node, started);
        }
        // The environment first: its key is part of the node's cache key (a declared 3.12 that
        // runs on 3.11 must not reuse an output made on another interpreter), and strict
        // interpreter matching applies to cache hits too. A node that a worker runs needs only
        // the key here; its worker builds the environment.
        let (env, env_key) = match node.kind {
            NodeKind::SqlModel => (None, None),
            _ if ctx.remote.is_some() => (None, Some(self.env_key_of(ctx, node).await?)),
            _ => {
                let env = self.prepare_env(ctx, node).await?;
                let key = env.key.clone();
                (Some(env), Some(key))
            }
        };
        let mut early_worker = false;
        if ahead {
            // Start early only once every input is known to be computed (a cached input is
            // done at once, and then this node may well be a cache hit itself).
            match ctx.inputs_of(node, true).await? {
                Inputs::Stopped => {
                    o.status = CANCELLED.into();
                    return Ok(());
                }
                Inputs::Done => node_started(ctx, node, started),
                Inputs::Computing => early_worker = true,
            }
        }
        let dir = ctx.node_dir(&node.name)?;
        let out = dir.join("output.arrow");
        let mut saved_objects = false;
        if !early_worker {
            if let Some(hit) = self
                .cache_hit_or_execute(ctx, node, env_key.as_deref())
                .await?
            {
                apply_hit(ctx, node, o, hit);
                return Ok(());
            }
        }
        match node.kind {
            NodeKind::SqlModel => {
                let sql = node.sql.as_deref().ok_or_else(|| {
                    Error::Internal(format!("SQL model '{}' has no SQL", node.name))
                })?;
                let mut overlay = Vec::new();
                for i in &node.inputs {
                    if let InputSource::Upstream { node: up, .. } = &i.source {
                        overlay.push((
                            format!("{}.{up}", ctx.namespace),
                            self.output_here(ctx, up).await?,
                        ));
                    }
                }
                let session = self
                    .run_session(&ctx.commit, &ctx.namespace, &overlay)
                    .await?;
                let (rows, _) =
                    sql_to_ipc(&session, sql, &out, &format!("SQL model '{}'", node.name)).await?;
                o.rows = Some(rows);
            }
            NodeKind::PythonModel | NodeKind::Expectation => {
                let remote = ctx.remote.clone();
                if let Some(dispatch) = remote {
                    // Run by a worker (this one or another): it builds the environment and
                    // caches what it computed; the output stays there until something here or
                    // downstream reads it.
                    let result = self
                        .run_python_remote(ctx, dispatch.as_ref(), node, code_hash)
                        .await?;
                    self.python_outcome(node, &result, o)?;
                    self.note_saved_objects(ctx, node, &result)?;
                    return Ok(());
                }
                let env = env.ok_or_else(|| {
                    Error::Internal(format!("node '{}' has no environment", node.name))
                })?;
                if early_worker {
                    ctx.emit(RunEvent::Line {
                        node: node.name.clone(),
                        stderr: false,
                        line: "worker starting while its inputs are computed".into(),
                    });
                }
                let gate = early_worker.then(|| {
                    Box::pin(self.await_inputs(ctx, node, env_key.as_deref(), started))
                        as GateFuture<'_>
                });
                let result = match self.run_python(ctx, node, env, &dir, &out, gate).await? {
                    PyRun::Ran(result) => result,
                    PyRun::Skipped(Skip::Cancelled) => {
                        o.status = CANCELLED.into();
                        return Ok(());
                    }
                    PyRun::Skipped(Skip::Hit(hit)) => {
                        apply_hit(ctx, node, o, hit);
                        return Ok(());
                    }
                };
                self.python_outcome(node, &result, o)?;
                saved_objects = self.note_saved_objects(ctx, node, &result)?;
            }
        }
        let output = (node.kind != NodeKind::Expectation).then_some(out);
        // A node that saved objects runs every time: a cache hit would not save them.
        if ctx.cacheable(node) && !saved_objects {
            let key = ctx
                .key_of(&node.name)
                .ok_or_else(|| Error::Internal(format!("node '{}' has no cache key", node.name)))?;
            let meta = json!({"node": node.name, "rows": o.rows, "passed": o.passed,
                              "job_id": ctx.job_id, "created_at": Utc::now().to_rfc3339()});
            ctx.cache.store(&key, output.as_deref(), &meta, &ctx.job_id);
            ctx.cache.publish(&key, output.as_deref(), &meta).await;
        }
        if let Some(out) = output {
            ctx.set_output(&node.name, out)?;
        }
        Ok(())
    }

    /// A Python node's outcome from its worker's result: an expectation's verdict, a model's
    /// row count.
    fn python_outcome(
        &self,
        node: &PlanNode,
        result: &serde_json::Value,
        o: &mut NodeOutcome,
    ) -> Result<()> {
        match node.kind {
            NodeKind::Expectation => {
                let passed = result
                    .get("value")
                    .and_then(|v| v.as_bool())
                    .ok_or_else(|| node_err(&node.name, "the expectation returned no bool"))?;
                o.passed = Some(passed);
                if !passed {
                    o.status = "failed".into();
                    let why = result
                        .get("message")
                        .and_then(|m| m.as_str())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    o.error = Some(format!("expectation returned False{why}"));
                }
            }
            _ => o.rows = result.get("rows").and_then(|v| v.as_u64()),
        }
        Ok(())
    }

    /// Computes the node's effective cache key (its inputs must be done) and looks it up; on
    /// a miss the node is marked executing (what a node started ahead of it waits for).
    async fn cache_hit_or_execute(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        env_key: Option<&str>,
    ) -> Result<Option<CacheHit>> {
        let objects = match node.kind {
            NodeKind::SqlModel => None,
            _ => objects::objects_digest(&self.visible_objects(ctx, node)?),
        };
        let key = ctx.effective_key(node, env_key, objects.as_deref())?;
        if ctx.cacheable(node) && ctx.cache.pull(&key, &ctx.job_id).await == Found::Shared {
            ctx.emit(RunEvent::Line {
                node: node.name.clone(),
                stderr: false,
                line: format!(
                    "cache entry {} copied from the lake's shared node cache",
                    &key[..12]
                ),
            });
        }
        let meta = ctx.cacheable(node).then(|| ctx.cache.meta(&key)).flatten();
        let hit = meta.and_then(|meta| {
            let output = match node.kind {
                NodeKind::Expectation => {
                    meta.get("passed").and_then(|v| v.as_bool())?;
                    ctx.cache.touch(&key);
                    None
                }
                _ => Some(ctx.cache.use_output(&key)?),
            };
            Some(CacheHit {
                rows: meta.get("rows").and_then(|v| v.as_u64()),
                passed: meta.get("passed").and_then(|v| v.as_bool()),
                snapshot: meta.get("snapshot_id").and_then(|v| v.as_i64()),
                key,
                output,
            })
        });
        if hit.is_none() {
            ctx.progress
                .send_modify(|p| _ = p.executing.insert(node.name.clone()));
        }
        Ok(hit)
    }

    /// For a node whose worker started ahead of its inputs: waits until they are done, then
    /// does what a node does on start (event, cache lookup, marked executing).
    async fn await_inputs(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        env_key: Option<&str>,
        started: &Mutex<Instant>,
    ) -> Result<Option<Skip>> {
        if let Inputs::Stopped = ctx.inputs_of(node, false).await? {
            return Ok(Some(Skip::Cancelled));
        }
        node_started(ctx, node, started);
        Ok(self
            .cache_hit_or_execute(ctx, node, env_key)
            .await?
            .map(Skip::Hit))
    }

    /// Records in a node's cache entry the snapshot its output was materialized as.
    fn note_cache_snapshot(&self, ctx: &RunCtx, node: &PlanNode, snapshot: Option<i64>) {
        if let (true, Some(key)) = (ctx.cacheable(node), ctx.key_of(&node.name)) {
            ctx.cache
                .annotate(&key, "snapshot_id", json!(snapshot), &ctx.job_id);
        }
    }

    /// The key of the environment a Python node declares, without building it; its warnings
    /// go to the log.
    async fn env_key_of(&self, ctx: &RunCtx, node: &PlanNode) -> Result<String> {
        let key = ctx
            .envs
            .key(&node_env_spec(node), ctx.strict_python)
            .await
            .map_err(|e| node_err(&node.name, e))?;
        env_warnings(ctx, node, &key.warnings);
        Ok(key.key)
    }

    /// The node's environment, built on first use; its warnings go to the log.
    async fn prepare_env(&self, ctx: &RunCtx, node: &PlanNode) -> Result<PreparedEnv> {
        let env = ctx
            .envs
            .ensure(&node_env_spec(node), ctx.strict_python)
            .await
            .map_err(|e| match (&ctx.uv_missing, e) {
                (Some(why), lakeplan_runtime::RuntimeError::Io { .. })
                | (Some(why), lakeplan_runtime::RuntimeError::Venv { .. }) => node_err(
                    &node.name,
                    format!("its environment must be built, but {why}"),
                ),
                (_, e) => node_err(&node.name, e),
            })?;
        env_warnings(ctx, node, &env.warnings);
        if env.installed {
            ctx.emit(RunEvent::Line {
                node: node.name.clone(),
                stderr: false,
                line: format!(
                    "built environment {} (asked {}; installed {})",
                    &env.key[..12],
                    env.requirements.join(" "),
                    env.resolved.join(" ")
                ),
            });
            for note in &env.resolution_notes {
                ctx.emit(RunEvent::Line {
                    node: node.name.clone(),
                    stderr: false,
                    line: format!("environment {}: resolved with {note}", &env.key[..12]),
                });
            }
        }
        Ok(env)
    }

    /// A Python node's inputs for its task file: scans written to shared memory (projection
    /// and filter pushed into the Iceberg scan), upstream outputs, parameter values. A secret
    /// is opened here and written to a file of `secrets`, the node's own folder (mounted in its
    /// sandbox only; the job's shared folder, which every node mounts, and the task file never
    /// hold it).
    async fn python_inputs(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        secrets: Option<&Path>,
    ) -> Result<Vec<serde_json::Value>> {
        let mut inputs = Vec::new();
        for i in &node.inputs {
            match &i.source {
                InputSource::Scan {
                    namespace,
                    table,
                    columns,
                    filter,
                    ..
                } => {
                    let stem = ctx
                        .shm
                        .input_dir()
                        .join(format!("{}.{}", node.name, i.param));
                    let sql = scan_sql(namespace, table, columns.as_deref(), filter.as_deref());
                    let session = self.run_session(&ctx.commit, &ctx.namespace, &[]).await?;
                    let (rows, paths) = sql_to_ipc_parts(
                        &session,
                        &sql,
                        &stem,
                        &format!(
                            "input '{}' of '{}' ({namespace}.{table})",
                            i.param, node.name
                        ),
                    )
                    .await?;
                    ctx.emit(RunEvent::Line {
                        node: node.name.clone(),
                        stderr: false,
                        line: format!("input '{}': {rows} rows from {namespace}.{table}", i.param),
                    });
                    // One file per scan partition; the worker maps each and concatenates
                    // them without copying.
                    inputs.push(json!({"param": i.param, "kind": "table", "paths": paths}));
                }
                InputSource::Upstream {
                    node: up,
                    columns,
                    filter,
                } => {
                    let src = ctx.local_output(up).await?;
                    let path = if columns.is_none() && filter.is_none() {
                        // Handed over as is: the consumer maps the producer's file.
                        src
                    } else {
                        let path = ctx
                            .shm
                            .input_dir()
                            .join(format!("{}.{}.arrow", node.name, i.param));
                        let key = format!("{}.{up}", ctx.namespace);
                        let session = self
                            .run_session(&ctx.commit, &ctx.namespace, &[(key, src)])
                            .await?;
                        let sql =
                            scan_sql(&ctx.namespace, up, columns.as_deref(), filter.as_deref());
                        sql_to_ipc(
                            &session,
                            &sql,
                            &path,
                            &format!("input '{}' of '{}'", i.param, node.name),
                        )
                        .await?;
                        path
                    };
                    inputs.push(json!({"param": i.param, "kind": "table", "path": path}));
                }
                InputSource::Param {
                    value: ParamValue::Secret(sealed),
                    ..
                } => {
                    let dir = secrets.ok_or_else(|| {
                        Error::Internal(format!(
                            "node '{}' declares a secret but has no folder for it",
                            node.name
                        ))
                    })?;
                    let value = crate::secrets::open(&self.root, sealed)
                        .map_err(|e| node_err(&node.name, e))?;
                    let path = dir.join(format!("{}.secret", i.param));
                    crate::secrets::write_private(&path, &value)?;
                    inputs.push(json!({"param": i.param, "kind": "secret", "path": path}));
                }
                InputSource::Param { value, .. } => {
                    inputs.push(json!({"param": i.param, "kind": "parameter", "value": value}));
                }
            }
        }
        Ok(inputs)
    }

    /// Prepares a Python node's inputs and runs it in a sandboxed worker; returns the worker's
    /// result JSON (ok = true).
    async fn run_python(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        env: PreparedEnv,
        dir: &Path,
        out: &Path,
        gate: Option<GateFuture<'_>>,
    ) -> Result<PyRun> {
        let function = node
            .function
            .as_deref()
            .ok_or_else(|| Error::Internal(format!("node '{}' names no function", node.name)))?;
        let result_path = dir.join("result.json");
        let task_path = dir.join("task.json");
        let mut sandbox = SandboxOptions::new()
            .ro(ctx.pysrc.clone())
            .ro(ctx.project_dir.clone())
            .ro(ctx.shm.path().to_path_buf())
            .rw(dir.to_path_buf());
        // The node's secrets, in a folder of its own (0700, removed when it ends): writable so
        // the worker deletes each file once read.
        let has_secret = node.inputs.iter().any(|i| {
            matches!(
                i.source,
                InputSource::Param {
                    value: ParamValue::Secret(_),
                    ..
                }
            )
        });
        let secrets = if has_secret {
            let d = ShmJobDir::create(&format!("secret-{}", uuid::Uuid::new_v4().simple()))
                .map_err(|e| node_err(&node.name, e))?;
            sandbox = sandbox.rw(d.path().to_path_buf());
            Some(d)
        } else {
            None
        };
        if ctx.cache.dir().is_dir() {
            sandbox = sandbox.ro(ctx.cache.dir().to_path_buf());
        }
        for dir in &ctx.extra_ro {
            sandbox = sandbox.ro(dir.clone());
        }
        sandbox.network = node.internet_access;
        sandbox.pythonpath = vec![ctx.pysrc.clone(), ctx.project_dir.clone()];
        let mut spec = WorkerSpec::new(
            node.name.clone(),
            env,
            vec![
                "-m".into(),
                "lakeplan._worker".into(),
                "--wait".into(),
                task_path.display().to_string(),
            ],
        );
        spec.sandbox = sandbox;
        // What the function declared, else this machine's defaults (run/limits.rs).
        let limits = FunctionLimits::from_env()?;
        spec.timeout = Some(
            node.resources
                .timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(limits.timeout),
        );
        spec.memory_bytes = Some(node.resources.memory_bytes.unwrap_or(limits.memory_bytes));
        spec.max_processes = Some(limits.max_processes);
        spec.cpus = node.resources.cpus;
        spec.cwd = Some(ctx.project_dir.clone());
        spec.result_file = Some(result_path.clone());
        // The worker starts (interpreter, pyarrow) while the inputs are scanned, and waits for
        // its task file; if preparing the inputs fails, dropping it kills the sandbox.
        // The last lines of its stderr: a worker that dies before it writes a result (an
        // import that fails at its start) is reported with the Python error they hold.
        let stderr_tail = std::sync::Mutex::new(std::collections::VecDeque::new());
        let worker = run_worker(&spec, |n, stream, line| {
            if matches!(stream, Stream::Stderr) {
                if let Ok(mut tail) = stderr_tail.lock() {
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.to_string());
                }
            }
            ctx.emit(RunEvent::Line {
                node: n.to_string(),
                stderr: matches!(stream, Stream::Stderr),
                line: line.to_string(),
            })
        });
        tokio::pin!(worker);
        let prepare = async {
            if let Some(gate) = gate {
                if let Some(skip) = gate.await? {
                    return Ok(Some(skip));
                }
            }
            let inputs = self
                .python_inputs(ctx, node, secrets.as_ref().map(ShmJobDir::path))
                .await?;
            let store = self.store_task(ctx, node, dir).await?;
            let task = json!({
                "node": node.name,
                "kind": if node.kind == NodeKind::Expectation { "expectation" } else { "model" },
                "module_file": node.file,
                "function": function,
                "project_dir": ctx.project_dir,
                "inputs": inputs,
                "output": out,
                "result": result_path,
                "memory_bytes": spec.memory_bytes,
                "store": store,
            });
            write_atomic(&task_path, "task", task.to_string().as_bytes())
                .map_err(|e| Error::io(task_path.display(), e))?;
            Ok(None)
        };
        tokio::pin!(prepare);
        let mut ended_early = None;
        let skip = tokio::select! {
            r = &mut prepare => r?,
            w = &mut worker => {
                ended_early = Some(w);
                prepare.await?
            }
        };
        if let Some(skip) = skip {
            // Not to be run after all: dropping the worker kills its sandbox.
            return Ok(PyRun::Skipped(skip));
        }
        let outcome = match ended_early {
            Some(w) => w,
            None => worker.await,
        }
        .map_err(|e| node_err(&node.name, e))?;
        if outcome.process_limit_unenforced {
            ctx.emit(RunEvent::Line {
                node: node.name.clone(),
                stderr: true,
                line: format!(
                    "warning: the limit of {} processes ({PROCESSES_VAR}) is not enforced on this machine: no writable pids cgroup, and root is not bound by RLIMIT_NPROC",
                    limits.max_processes
                ),
            });
        }
        if outcome.timed_out {
            return Err(node_err(
                &node.name,
                format!(
                    "exceeded its time limit of {}s and was killed (@resources(timeout=...), or {TIMEOUT_VAR} on the machine that runs it)",
                    spec.timeout.map_or(0, |t| t.as_secs())
                ),
            ));
        }
        let ran_ok = outcome
            .result
            .as_ref()
            .is_some_and(|r| r.get("ok").and_then(|v| v.as_bool()) == Some(true));
        if outcome.process_limit_hit && !ran_ok {
            return Err(node_err(
                &node.name,
                format!(
                    "failed after it reached its limit of {} processes and threads, past which a fork is refused ({PROCESSES_VAR} on the machine that runs it; traceback in the log)",
                    limits.max_processes
                ),
            ));
        }
        match outcome.result {
            Some(mut r) if ran_ok => {
                self.keep_saved_objects(node, dir, &mut r).await?;
                Ok(PyRun::Ran(r))
            }
            Some(r) => {
                let error = r.get("error").and_then(|v| v.as_str()).unwrap_or("failed");
                let kind = r
                    .get("error_kind")
                    .and_then(|v| v.as_str())
                    .unwrap_or("exception");
                Err(node_err(
                    &node.name,
                    match kind {
                        "memory" | "bad_return" => error.to_string(),
                        _ => format!("raised {error} (traceback in the log)"),
                    },
                ))
            }
            None => Err(node_err(
                &node.name,
                match (outcome.exit_code, outcome.signal) {
                    (_, Some(sig)) => format!("the worker was killed by signal {sig}"),
                    (Some(c), _) if c != 0 => {
                        let tail: Vec<String> = stderr_tail
                            .lock()
                            .map(|t| t.iter().cloned().collect())
                            .unwrap_or_default();
                        match python_exception(&tail) {
                            Some((exception, true)) => format!(
                                "the worker failed to start: {exception} (exit code {c}; traceback in the log)"
                            ),
                            Some((exception, false)) => format!(
                                "the worker exited with code {c} without a result: {exception} (traceback in the log)"
                            ),
                            None => match memory_hint(&spec) {
                                Some(hint) => format!(
                                    "the worker exited with code {c} without a result ({hint})"
                                ),
                                None => format!("the worker exited with code {c} without a result"),
                            },
                        }
                    }
                    (Some(c), _) => format!("the worker exited with code {c} without a result"),
                    (None, None) => "the worker ended without a result".to_string(),
                },
            )),
        }
    }

    /// Writes every materialized model to `branch` in one commit; returns the commit, or None
    /// when nothing needed writing.
    /// `only`: just these nodes (those that finished, when the run failed); None: every
    /// materialized model.
    async fn materialize(
        &self,
        ctx: &RunCtx,
        plan: &Plan,
        outcomes: &mut [NodeOutcome],
        branch: &str,
        props: &BTreeMap<String, String>,
        only: Option<&std::collections::HashSet<String>>,
    ) -> Result<Option<CommitId>> {
        let mut work = Vec::new();
        let head = self.catalog.branch_head(branch)?;
        let wanted = |n: &&PlanNode| n.materializes() && only.is_none_or(|o| o.contains(&n.name));
        for node in plan.nodes.iter().filter(wanted) {
            let name = TableName::new(&ctx.namespace, &node.name)?;
            let path = self.output_here(ctx, &node.name).await?;
            // A cached output that the table already holds (same snapshot as when it was
            // materialized from this cache entry) is not written again.
            let cached = outcomes
                .iter()
                .find(|o| o.node == node.name)
                .and_then(|o| o.cached_snapshot);
            // (For APPEND this also keeps an unchanged run from appending the same rows again.)
            if let (
                Some(snap),
                Materialization::Replace
                | Materialization::OverwritePartitions
                | Materialization::Append,
            ) = (cached, node.materialization)
            {
                if let Some(Entry::Table(t)) = self.catalog.entry(&head, &name.key())? {
                    if t.snapshot_id == Some(snap) {
                        ctx.emit(RunEvent::Line {
                            node: node.name.clone(),
                            stderr: false,
                            line: format!("{name} already holds this output: not rewritten"),
                        });
                        if let Some(o) = outcomes.iter_mut().find(|o| o.node == node.name) {
                            o.table = Some(name.to_string());
                        }
                        continue;
                    }
                }
            }
            // OVERWRITE_PARTITIONS keeps the rows outside the filter: read them first.
            let mut keep = None;
            if node.materialization == Materialization::OverwritePartitions
                && self.catalog.entry(&head, &name.key())?.is_some()
            {
                let filter = node.overwrite_filter.as_deref().unwrap_or("false");
                let p = ctx
                    .shm
                    .output_dir()
                    .join(format!("{}.kept.arrow", node.name));
                let session = self.run_session(&head, &ctx.namespace, &[]).await?;
                let sql = format!(
                    "SELECT * FROM {}.{} WHERE NOT COALESCE(({filter}), false)",
                    quote_ident(&ctx.namespace),
                    quote_ident(&node.name)
                );
                let (rows, _) = sql_to_ipc(
                    &session,
                    &sql,
                    &p,
                    &format!("model '{}': rows outside the overwrite filter", node.name),
                )
                .await?;
                if rows > 0 {
                    keep = Some(p);
                }
            }
            let rows = outcomes
                .iter()
                .find(|o| o.node == node.name)
                .and_then(|o| o.rows);
            work.push((node, name, path, keep, rows));
        }
        // Objects saved by the run's functions (`bauplan.store`), in the same commit.
        let objects = Self::saved_object_changes(ctx)?;
        if work.is_empty() && objects.is_empty() {
            return Ok(None);
        }
        let message = format!(
            "Materialize {} (job {})",
            work.iter()
                .map(|(n, ..)| format!("{} [{}]", n.name, n.materialization.as_str()))
                .chain(
                    objects
                        .iter()
                        .map(|(k, _)| format!("object '{}'", &k[OBJECT_KEY_PREFIX.len()..]))
                )
                .collect::<Vec<_>>()
                .join(", "),
            ctx.job_id
        );
        let mut snapshot_props: HashMap<String, String> = props.clone().into_iter().collect();
        snapshot_props.retain(|k, _| k.starts_with("lakeplan."));
        let (_, id) = self
            .write_with(
                branch,
                "pipeline.materialize",
                message,
                props.clone(),
                |s| {
                    let work = &work;
                    let objects = &objects;
                    let snapshot_props = snapshot_props.clone();
                    async move {
                        for (key, entry) in objects {
                            s.put_object(key, entry.clone())?;
                        }
                        // The run's namespace (Bauplan's `bauplan`, say) is made on first use,
                        // in the same commit as the tables it receives.
                        if !work.is_empty() && s.current(&ctx.namespace)?.is_none() {
                            s.create_namespace_(&ctx.namespace)?;
                        }
                        for (node, name, path, keep, rows) in work {
                            let mut files = vec![arrow_source(path)?];
                            if let Some(k) = keep {
                                files.push(arrow_source(k)?);
                            }
                            let exists = s.current(&name.key())?.is_some();
                            let create = match node.materialization {
                                Materialization::Append => !exists,
                                _ => true,
                            };
                            if create {
                                let (cols, conflicts) = ingest::plan_columns(&files).await?;
                                if let Some(c) = conflicts.first() {
                                    return Err(node_err(
                                        &node.name,
                                        format!(
                                            "cannot materialize: column '{}' has conflicting types",
                                            c.column
                                        ),
                                    ));
                                }
                                let schema = schema_from_columns(&cols)?;
                                let parts = parse_partitioning(&node.partitioned_by.join(", "))?;
                                let spec = partition_spec(&schema, &parts)?;
                                s.create(name, schema, spec, HashMap::new(), exists).await?;
                            }
                            let opts = ImportOptions {
                                untracked_sources: true,
                                snapshot_properties: snapshot_props.clone(),
                                ..Default::default()
                            };
                            if *rows == Some(0) {
                                // An empty output still defines (or empties) the table.
                                files.remove(0);
                            }
                            if !files.is_empty() {
                                let noop: ingest::ProgressFn = Arc::new(|_| {});
                                ingest::import(&s, name, files, &opts, noop).await?;
                            }
                        }
                        Ok(())
                    }
                },
            )
            .await?;
        for (node, name, ..) in &work {
            let name: &TableName = name;
            if let Some(o) = outcomes.iter_mut().find(|o| o.node == node.name) {
                o.table = Some(name.to_string());
            }
        }
        if let Some(c) = &id {
            for (node, name, ..) in &work {
                if let Some(Entry::Table(t)) = self.catalog.entry(c, &name.key())? {
                    self.note_cache_snapshot(ctx, node, t.snapshot_id);
                }
            }
            let saved = if objects.is_empty() {
                String::new()
            } else {
                format!(" and {} object(s)", objects.len())
            };
            ctx.emit(RunEvent::Info(format!(
                "materialized {} table(s){saved} on '{branch}' in commit {}",
                work.len(),
                c.short()
            )));
        }
        Ok(id)
    }
}

/// The properties of a run's materialize commit (and its merge): job, code and project, under
/// lakeplan's names and Bauplan's.
fn materialize_props(ctx: &RunCtx, project: &Project, code_hash: &str) -> BTreeMap<String, String> {
    [
        ("lakeplan.job-id", ctx.job_id.clone()),
        ("lakeplan.code-hash", code_hash.to_string()),
        (
            "lakeplan.project-id",
            project.id.clone().unwrap_or_default(),
        ),
        (
            "lakeplan.project-name",
            project.name.clone().unwrap_or_default(),
        ),
        // Bauplan's names, so tools written for it find them.
        ("bpln_job_id", ctx.job_id.clone()),
        ("bpln_project_id", project.id.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Where Python environments are cached: `<lake>/envs`, or the folder named by
/// `LAKEPLAN_ENV_CACHE` (lets several lakes, e.g. test lakes, share built environments).
fn env_cache_dir(lake_root: &Path) -> PathBuf {
    match std::env::var_os("LAKEPLAN_ENV_CACHE") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => lake_root.join("envs"),
    }
}

/// After `node` ended: removes the scan files written for it, and the shared-memory outputs
/// of its upstream nodes that nothing else reads and nothing materializes. Removal (freeing
/// tmpfs pages) runs on a blocking thread, beside the nodes still running.
fn release_inputs<'p>(
    ctx: &RunCtx,
    plan: &'p Plan,
    node: &'p PlanNode,
    consumers: &mut HashMap<&'p str, usize>,
) {
    let mut doomed: Vec<PathBuf> = Vec::new();
    let prefix = format!("{}.", node.name);
    if let Ok(entries) = std::fs::read_dir(ctx.shm.input_dir()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                doomed.push(e.path());
            }
        }
    }
    let mut unread = Vec::new();
    for up in node.upstream() {
        let Some(left) = consumers.get_mut(up) else {
            continue;
        };
        *left = left.saturating_sub(1);
        let keep = plan.node(up).is_none_or(|n| n.materializes());
        if *left == 0 && !keep {
            unread.push(up);
            if let Ok(path) = ctx.output_of(up) {
                if path.starts_with(ctx.shm.path()) {
                    doomed.push(path);
                }
            }
        }
    }
    ctx.release_remote(&unread);
    if !doomed.is_empty() {
        tokio::task::spawn_blocking(move || {
            for p in doomed {
                let _ = std::fs::remove_file(p);
            }
        });
    }
}

/// How many of a worker's last stderr lines are kept to explain a death without a result.
const STDERR_TAIL_LINES: usize = 200;

/// The exception line of the last Python traceback in a worker's stderr, and whether it ended
/// the worker before it ran the function (no frame of the worker's `main`: the failure was in
/// the imports of `lakeplan._worker` itself, e.g. a pyarrow that does not import).
fn python_exception(stderr: &[String]) -> Option<(String, bool)> {
    let start = stderr
        .iter()
        .rposition(|l| l.trim_end() == "Traceback (most recent call last):")?;
    let trace = &stderr[start + 1..];
    let exception = trace
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with(' ') && !l.starts_with('\t'))?
        .trim()
        .to_string();
    let in_main = trace
        .iter()
        .any(|l| l.contains("_worker.py\", line") && l.trim_end().ends_with(", in main"));
    Some((exception, !in_main))
}

fn memory_hint(spec: &WorkerSpec) -> Option<String> {
    spec.memory_bytes
        .map(|m| format!("it may have hit its memory limit of {m} bytes"))
}

fn arrow_source(path: &Path) -> Result<SourceFile> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path.display(), e))?
        .len();
    Ok(SourceFile {
        path: path.display().to_string(),
        size,
        format: ingest::Format::Arrow,
    })
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

#[cfg(test)]
mod tests {
    use super::python_exception;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn the_exception_of_a_worker_that_died_without_a_result() {
        // An import that fails at the worker's start (no frame of its main).
        let start = lines(
            "some user noise\n\
             Traceback (most recent call last):\n  \
             File \"<frozen runpy>\", line 198, in _run_module_as_main\n  \
             File \"/py/lakeplan/_worker.py\", line 28, in <module>\n    \
             import pyarrow as pa\n  \
             File \"pyarrow/lib.pyx\", line 42, in init pyarrow.lib\n\
             ImportError: pyarrow requires NumPy 2.0 or newer, found 1.26.4\n",
        );
        assert_eq!(
            python_exception(&start),
            Some((
                "ImportError: pyarrow requires NumPy 2.0 or newer, found 1.26.4".to_string(),
                true
            ))
        );
        // A failure after the function ran (writing the result), with a chained exception:
        // the last exception line, and not a start failure.
        let later = lines(
            "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nValueError: a\n\n\
             During handling of the above exception, another exception occurred:\n\n\
             Traceback (most recent call last):\n  \
             File \"/py/lakeplan/_worker.py\", line 340, in main\n    \
             write_result(task[\"result\"], result)\n\
             OSError: [Errno 28] No space left on device\n",
        );
        assert_eq!(
            python_exception(&later),
            Some((
                "OSError: [Errno 28] No space left on device".to_string(),
                false
            ))
        );
        assert_eq!(python_exception(&lines("Killed\n")), None);
    }
}
