//! The node stage: one node run, from the cache when its key is known, else SQL in DataFusion
//! or a Python function in a sandboxed worker with its environment and inputs. A node task on
//! a data-plane worker (`remote.rs`) runs its function through the same code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use lakeplan_core::{Error, Result};
use lakeplan_pipeline::{CacheStrategy, InputSource, NodeKind, ParamValue, PlanNode};
use lakeplan_runtime::{
    run_worker, EnvManager, EnvSpec, PreparedEnv, SandboxOptions, ShmJobDir, Stream, WorkerSpec,
};
use serde_json::json;

use super::limits::{FunctionLimits, PROCESSES_VAR, TIMEOUT_VAR};
use super::remote::{NodeDispatch, RemoteOutput};
use super::{objects, NodeOutcome, RunCtx, RunEvent};
use crate::node_cache::{write_atomic, Found, NodeCache};
use crate::pipeline_io::{scan_sql, sql_to_ipc, sql_to_ipc_parts};
use crate::Lake;

/// The status of a node started ahead of its inputs when the run stopped before they were
/// done: it never ran, and is not reported.
pub(super) const CANCELLED: &str = "cancelled";

/// Why a worker started ahead of its inputs is given no task once they are done.
pub(super) enum Skip {
    Hit(CacheHit),
    Cancelled,
}

/// Waits for a worker's inputs: `None` once the worker is to run.
type GateFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Skip>>> + 'a>>;

/// A Python node's run: the worker's result, or why no task was given to it.
pub(super) enum PyRun {
    Ran(serde_json::Value),
    Skipped(Skip),
}

/// How far the nodes a node reads have got.
pub(super) enum Inputs {
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
pub(super) fn node_err(node: &str, msg: impl std::fmt::Display) -> Error {
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

impl Lake {
    /// Runs one node: from cache when its key is known, else in a sandbox or DataFusion.
    /// `ahead`: started before its inputs finished (see `execute`); it waits
    /// for them, and returns status [`CANCELLED`] if the run stops first.
    pub(super) async fn run_node(
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
            _ if ctx.outputs.dispatch.is_some() => (None, Some(self.env_key_of(ctx, node).await?)),
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
                            format!("{}.{up}", ctx.scope.namespace),
                            self.output_here(ctx, up).await?,
                        ));
                    }
                }
                let session = self
                    .run_session(&ctx.scope.commit, &ctx.scope.namespace, &overlay)
                    .await?;
                let (rows, _) =
                    sql_to_ipc(&session, sql, &out, &format!("SQL model '{}'", node.name)).await?;
                o.rows = Some(rows);
            }
            NodeKind::PythonModel | NodeKind::Expectation => {
                let remote = ctx.outputs.dispatch.clone();
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
            ctx.keep_in_cache(node, &key, output.as_deref(), o.rows, o.passed)
                .await;
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
        if ctx.cacheable(node)
            && ctx.cache.store.pull(&key, &ctx.scope.job_id).await == Found::Shared
        {
            ctx.emit(RunEvent::Line {
                node: node.name.clone(),
                stderr: false,
                line: format!(
                    "cache entry {} copied from the lake's shared node cache",
                    &key[..12]
                ),
            });
        }
        let meta = ctx
            .cacheable(node)
            .then(|| ctx.cache.store.meta(&key))
            .flatten();
        let hit = meta.and_then(|meta| {
            let output = match node.kind {
                NodeKind::Expectation => {
                    meta.get("passed").and_then(|v| v.as_bool())?;
                    ctx.cache.store.touch(&key);
                    None
                }
                _ => Some(ctx.cache.store.use_output(&key)?),
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
            ctx.schedule
                .progress
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
    pub(super) fn note_cache_snapshot(&self, ctx: &RunCtx, node: &PlanNode, snapshot: Option<i64>) {
        if let (true, Some(key)) = (ctx.cacheable(node), ctx.key_of(&node.name)) {
            ctx.cache
                .store
                .annotate(&key, "snapshot_id", json!(snapshot), &ctx.scope.job_id);
        }
    }

    /// The key of the environment a Python node declares, without building it; its warnings
    /// go to the log.
    async fn env_key_of(&self, ctx: &RunCtx, node: &PlanNode) -> Result<String> {
        let key = ctx
            .envs
            .manager
            .key(&node_env_spec(node), ctx.envs.strict_python)
            .await
            .map_err(|e| node_err(&node.name, e))?;
        env_warnings(ctx, node, &key.warnings);
        Ok(key.key)
    }

    /// The node's environment, built on first use; its warnings go to the log.
    pub(super) async fn prepare_env(&self, ctx: &RunCtx, node: &PlanNode) -> Result<PreparedEnv> {
        let env = ctx
            .envs
            .manager
            .ensure(&node_env_spec(node), ctx.envs.strict_python)
            .await
            .map_err(|e| match (&ctx.envs.uv_missing, e) {
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
                        .files
                        .shm
                        .input_dir()
                        .join(format!("{}.{}", node.name, i.param));
                    let sql = scan_sql(namespace, table, columns.as_deref(), filter.as_deref());
                    let session = self
                        .run_session(&ctx.scope.commit, &ctx.scope.namespace, &[])
                        .await?;
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
                            .files
                            .shm
                            .input_dir()
                            .join(format!("{}.{}.arrow", node.name, i.param));
                        let key = format!("{}.{up}", ctx.scope.namespace);
                        let session = self
                            .run_session(&ctx.scope.commit, &ctx.scope.namespace, &[(key, src)])
                            .await?;
                        let sql = scan_sql(
                            &ctx.scope.namespace,
                            up,
                            columns.as_deref(),
                            filter.as_deref(),
                        );
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
    pub(super) async fn run_python(
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
            .ro(ctx.files.pysrc.clone())
            .ro(ctx.scope.project_dir.clone())
            .ro(ctx.files.shm.path().to_path_buf())
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
        if ctx.cache.store.dir().is_dir() {
            sandbox = sandbox.ro(ctx.cache.store.dir().to_path_buf());
        }
        for dir in &ctx.files.extra_ro {
            sandbox = sandbox.ro(dir.clone());
        }
        sandbox.network = node.internet_access;
        sandbox.pythonpath = vec![ctx.files.pysrc.clone(), ctx.scope.project_dir.clone()];
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
        spec.cwd = Some(ctx.scope.project_dir.clone());
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
                "project_dir": ctx.scope.project_dir,
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
}

/// Where Python environments are cached: `<lake>/envs`, or the folder named by
/// `LAKEPLAN_ENV_CACHE` (lets several lakes, e.g. test lakes, share built environments).
pub(super) fn env_cache_dir(lake_root: &Path) -> PathBuf {
    match std::env::var_os("LAKEPLAN_ENV_CACHE") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => lake_root.join("envs"),
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

/// A cache hit found for a node: what its outcome reports.
pub(super) struct CacheHit {
    pub(super) rows: Option<u64>,
    pub(super) passed: Option<bool>,
    pub(super) snapshot: Option<i64>,
    pub(super) key: String,
    /// The cached output the run reads (pinned for the run); none for an expectation.
    pub(super) output: Option<PathBuf>,
}

/// A run's node cache, and the keys its nodes are cached under.
pub(super) struct NodeCaching {
    pub(super) store: NodeCache,
    /// `--no-cache`: nothing is looked up in or kept in the cache.
    pub(super) off: bool,
    /// Node name → its effective cache key: the planner's key with the environment actually
    /// used and the upstream nodes' effective keys.
    pub(super) keys: Mutex<HashMap<String, String>>,
}

/// The Python environments a run's nodes run in.
pub(super) struct NodeEnvs {
    pub(super) manager: EnvManager,
    pub(super) strict_python: bool,
    /// Why uv could not be found: only an error if an environment must be built.
    pub(super) uv_missing: Option<String>,
}

/// The nodes' outputs: files here, and outputs other workers hold.
pub(super) struct Outputs {
    /// Node name → its output file (in shared memory, or in the cache).
    pub(super) local: Mutex<HashMap<String, PathBuf>>,
    /// Where Python nodes run, when not here.
    pub(super) dispatch: Option<Arc<dyn NodeDispatch>>,
    /// Node name → its output on another worker (or this one's, shared with the others).
    pub(super) remote: Mutex<HashMap<String, RemoteOutput>>,
    /// Outputs are fetched one at a time (two consumers of one output fetch it once).
    pub(super) fetching: tokio::sync::Mutex<()>,
    /// Lost outputs are computed again one at a time (two readers finding one lost compute it
    /// once).
    pub(super) recomputing: tokio::sync::Mutex<()>,
}

impl RunCtx {
    /// Keeps a node's output (none for an expectation) in the cache under `key`, with the rows
    /// and verdict its outcome reports, here and in the lake's shared cache: what the
    /// coordinator computed, and what a node task computed on its worker.
    pub(super) async fn keep_in_cache(
        &self,
        node: &PlanNode,
        key: &str,
        output: Option<&Path>,
        rows: Option<u64>,
        passed: Option<bool>,
    ) {
        let meta = json!({"node": node.name, "rows": rows, "passed": passed,
                          "job_id": self.scope.job_id, "created_at": Utc::now().to_rfc3339()});
        self.cache
            .store
            .store(key, output, &meta, &self.scope.job_id);
        self.cache.store.publish(key, output, &meta).await;
    }

    pub(super) fn node_dir(&self, node: &str) -> Result<PathBuf> {
        let d = self.files.shm.output_dir().join(node);
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
            .cache
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

    pub(super) fn key_of(&self, node: &str) -> Option<String> {
        self.cache.keys.lock().ok()?.get(node).cloned()
    }

    /// Whether `node`'s output is looked up in and kept in the cache.
    pub(super) fn cacheable(&self, node: &PlanNode) -> bool {
        !self.cache.off && node.cache_strategy != CacheStrategy::None
    }

    pub(super) fn set_output(&self, node: &str, path: PathBuf) -> Result<()> {
        self.outputs
            .local
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))?
            .insert(node.to_string(), path);
        Ok(())
    }

    pub(super) fn output_of(&self, node: &str) -> Result<PathBuf> {
        self.outputs
            .local
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))?
            .get(node)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("node '{node}' has no output yet")))
    }
}

#[cfg(test)]
mod tests {
    use super::python_exception;

    pub(super) fn lines(text: &str) -> Vec<String> {
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
