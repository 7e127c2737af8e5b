//! Pipeline nodes as tasks of their own, for a run on several data-plane workers (server mode).
//!
//! ```text
//! coordinator (the worker holding the run task)      node worker (any worker, this one too)
//!   plan · temporary branch · cache lookups
//!   NodeTask {node, inputs' locations} ── dispatch ──▶ inputs: same worker → its file as is,
//!                                                       other worker → Arrow Flight DoGet
//!                                                      sandbox (its own environment)
//!   NodeTaskResult {output's location} ◀────────────── output kept in its shared memory,
//!   SQL models, contracts, materialize:                 served over Flight by ticket until
//!   outputs fetched only when needed here               released (or expired)
//! ```
//!
//! The lake crate knows nothing of HTTP or Flight: the server implements [`NodeDispatch`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use lakeplan_core::{CommitId, Error, Result};
use lakeplan_pipeline::{NodeKind, PlanNode};
use lakeplan_runtime::ShmJobDir;
use serde::{Deserialize, Serialize};

use super::{node_err, PyRun, RunCtx, RunEvent, Skip};
use crate::Lake;

/// Where a node's output can be read: the worker process that holds it (`instance`), the
/// Flight endpoint that serves it under `ticket`, and its file on that worker's machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteOutput {
    pub endpoint: String,
    pub ticket: String,
    pub instance: String,
    pub path: PathBuf,
}

/// One pipeline node to run on a worker: everything it needs besides the lake itself (the
/// code comes from the job's snapshot in the metastore).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeTask {
    pub job_id: String,
    pub node: PlanNode,
    /// The commit its scans read.
    pub commit: CommitId,
    pub namespace: String,
    pub strict_python: bool,
    /// The hash of the job's code snapshot (names the unpacked copy on the node's worker).
    pub code_hash: String,
    /// The project's folder on the coordinator (the node's file is rebased from it onto the
    /// unpacked copy).
    pub project_dir: PathBuf,
    /// The node's effective cache key, when its output is to be cached (on the worker that
    /// ran it, which shares the cache folder with the coordinator on one machine).
    pub cache_key: Option<String>,
    /// Where each upstream node's output is.
    pub upstream: BTreeMap<String, RemoteOutput>,
    /// The objects (`bauplan.store`) the node may load: the run's commit's and those its
    /// upstream nodes saved in this run.
    #[serde(default)]
    pub objects: BTreeMap<String, lakeplan_core::ObjectEntry>,
}

/// What a node's worker answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeTaskResult {
    /// The function's result (`rows`, an expectation's `value` and `message`), when it ran.
    pub result: Option<serde_json::Value>,
    /// Why the node failed (the worker ran it, and it raised, timed out or broke its sandbox).
    pub error: Option<String>,
    /// Its output, for a model.
    pub output: Option<RemoteOutput>,
    /// What it printed and what its worker logged, in order: (stderr, line).
    pub lines: Vec<(bool, String)>,
    /// The worker that ran it.
    pub worker: String,
    /// Why earlier attempts ended without an answer (their worker was lost): the node was
    /// queued again.
    #[serde(default)]
    pub retried: Vec<String>,
    /// The upstream nodes whose outputs the worker could not read (their worker was lost, or
    /// no longer holds them): the node did not run, and runs again once they are recomputed.
    #[serde(default)]
    pub lost_inputs: Vec<String>,
}

/// How a coordinator reaches the other workers (implemented by the data plane's worker:
/// `lakeplan_dataplane::nodes`).
pub trait NodeDispatch: Send + Sync {
    /// Runs a node on some worker; an `Err` is the transport's (no worker, worker lost), a
    /// node's own failure is [`NodeTaskResult::error`].
    fn run(&self, task: NodeTask) -> BoxFuture<'static, Result<NodeTaskResult>>;
    /// Copies an output into `dest` (an Arrow IPC file) over Arrow Flight; returns its rows.
    fn fetch(&self, output: RemoteOutput, dest: PathBuf) -> BoxFuture<'static, Result<u64>>;
    /// Serves a file of this worker's to the others (an output the coordinator computed or
    /// found in its cache).
    fn share(&self, path: &Path) -> Result<RemoteOutput>;
    /// The outputs are no longer needed.
    fn release(&self, outputs: Vec<RemoteOutput>);
    /// This worker process (outputs it holds are read from their files).
    fn instance(&self) -> String;
}

/// [`RunOptions::nodes`](super::RunOptions::nodes): a run's nodes go to workers through it.
#[derive(Clone)]
pub struct Nodes(pub Arc<dyn NodeDispatch>);

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nodes(..)")
    }
}

/// A node run on this worker: its answer, and the folder holding its output (kept while the
/// output is served).
pub struct NodeRun {
    pub result: NodeTaskResult,
    pub output: Option<PathBuf>,
    pub dir: ShmJobDir,
}

/// Why the dispatcher queued a node's task again, into the run's log.
fn relay_retries(ctx: &RunCtx, node: &PlanNode, answer: &NodeTaskResult) {
    for why in &answer.retried {
        ctx.emit(RunEvent::Warning(format!(
            "[{}] queued again after an attempt failed: {why}",
            node.name
        )));
    }
}

/// What a node's worker logged (written to the job's live log there already), into this
/// run's log file and observer.
fn relay_lines(ctx: &RunCtx, node: &PlanNode, answer: &mut NodeTaskResult) {
    for (stderr, line) in std::mem::take(&mut answer.lines) {
        ctx.emit_relayed(RunEvent::Line {
            node: node.name.clone(),
            stderr,
            line,
        });
    }
}

/// How many times a node's lost inputs are computed again before its run fails.
const LOST_INPUT_RECOMPUTES: usize = 2;

impl RunCtx {
    /// The node of this run's plan called `name`.
    fn plan_node(&self, name: &str) -> Option<PlanNode> {
        self.schedule.plan_nodes.get()?.get(name).cloned()
    }

    /// The node's output as a file here: its own, or a remote one fetched once.
    pub(super) async fn local_output(&self, node: &str) -> Result<PathBuf> {
        if let Ok(p) = self.output_of(node) {
            return Ok(p);
        }
        let remote = self
            .remote_lock()?
            .get(node)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("node '{node}' has no output yet")))?;
        let Some(dispatch) = &self.outputs.dispatch else {
            return Err(Error::Internal(format!("node '{node}' ran remotely")));
        };
        let _one_at_a_time = self.outputs.fetching.lock().await;
        if let Ok(p) = self.output_of(node) {
            return Ok(p);
        }
        if remote.instance == dispatch.instance() && remote.path.is_file() {
            self.set_output(node, remote.path.clone())?;
            return Ok(remote.path);
        }
        let dest = self.node_dir(node)?.join("fetched.arrow");
        let started = std::time::Instant::now();
        let rows = dispatch.fetch(remote.clone(), dest.clone()).await?;
        let bytes = std::fs::metadata(&dest).map_or(0, |m| m.len());
        self.emit(RunEvent::Line {
            node: node.to_string(),
            stderr: false,
            line: format!(
                "output fetched over Arrow Flight from {}: {rows} rows, {bytes} bytes in {:.3} s",
                remote.endpoint,
                started.elapsed().as_secs_f64()
            ),
        });
        self.set_output(node, dest.clone())?;
        Ok(dest)
    }

    /// Where other workers read the node's output: where it ran, or (computed or cached
    /// here) this worker, which starts serving it.
    fn location_of(&self, dispatch: &dyn NodeDispatch, node: &str) -> Result<RemoteOutput> {
        if let Some(r) = self.remote_lock()?.get(node) {
            return Ok(r.clone());
        }
        let path = self.output_of(node)?;
        let loc = dispatch.share(&path)?;
        self.remote_lock()?.insert(node.to_string(), loc.clone());
        Ok(loc)
    }

    pub(super) fn set_remote(&self, node: &str, output: RemoteOutput) -> Result<()> {
        self.remote_lock()?.insert(node.to_string(), output);
        Ok(())
    }

    fn remote_lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, RemoteOutput>>> {
        self.outputs
            .remote
            .lock()
            .map_err(|_| Error::Internal("run state lock poisoned".into()))
    }

    /// Tells the workers that hold them that these nodes' outputs are no longer needed.
    pub(super) fn release_remote(&self, nodes: &[&str]) {
        let (Some(dispatch), Ok(mut remote)) = (&self.outputs.dispatch, self.outputs.remote.lock())
        else {
            return;
        };
        let gone: Vec<RemoteOutput> = nodes.iter().filter_map(|n| remote.remove(*n)).collect();
        if !gone.is_empty() {
            dispatch.release(gone);
        }
    }

    /// Every output still held for this run, released at its end.
    pub(super) fn release_all_remote(&self) {
        let (Some(dispatch), Ok(mut remote)) = (&self.outputs.dispatch, self.outputs.remote.lock())
        else {
            return;
        };
        let gone: Vec<RemoteOutput> = remote.drain().map(|(_, r)| r).collect();
        if !gone.is_empty() {
            dispatch.release(gone);
        }
    }
}

impl Lake {
    /// The coordinator's side of a Python node: sends it to a worker and waits; returns the
    /// function's result, its output recorded as remote.
    pub(super) async fn run_python_remote(
        &self,
        ctx: &RunCtx,
        dispatch: &dyn NodeDispatch,
        node: &PlanNode,
        code_hash: &str,
    ) -> Result<serde_json::Value> {
        let mut recomputed = 0;
        loop {
            let mut upstream = BTreeMap::new();
            for up in node.upstream() {
                upstream.insert(up.to_string(), ctx.location_of(dispatch, up)?);
            }
            let answer = self
                .run_node_once(ctx, dispatch, node, code_hash, upstream.clone())
                .await?;
            if answer.lost_inputs.is_empty() || recomputed == LOST_INPUT_RECOMPUTES {
                return self.node_answer(ctx, node, answer);
            }
            recomputed += 1;
            let mut answer = answer;
            relay_retries(ctx, node, &answer);
            relay_lines(ctx, node, &mut answer);
            let why = answer.error.unwrap_or_default();
            for up in &answer.lost_inputs {
                let Some(lost) = upstream.get(up) else {
                    return Err(node_err(
                        &node.name,
                        format!("its worker names an input '{up}' it does not read"),
                    ));
                };
                ctx.emit(RunEvent::Warning(format!(
                    "[{}] {why}: computing '{up}' again",
                    node.name
                )));
                Box::pin(self.recompute_lost(ctx, dispatch, up, lost, code_hash)).await?;
            }
        }
    }

    /// The node's output as a file here ([`RunCtx::local_output`]); one that could not be
    /// fetched because its worker is lost is computed again, once.
    pub(super) async fn output_here(&self, ctx: &RunCtx, node: &str) -> Result<PathBuf> {
        let first = ctx.local_output(node).await;
        let (Err(e), Some(dispatch), Some(code_hash)) =
            (&first, &ctx.outputs.dispatch, ctx.schedule.code_hash.get())
        else {
            return first;
        };
        let Some(lost) = ctx.remote_lock()?.get(node).cloned() else {
            return first;
        };
        if lost.instance == dispatch.instance() || ctx.plan_node(node).is_none() {
            return first;
        }
        ctx.emit(RunEvent::Warning(format!(
            "[{node}] its output could not be fetched ({e}): computing it again"
        )));
        self.recompute_lost(ctx, dispatch.as_ref(), node, &lost, code_hash)
            .await?;
        ctx.local_output(node).await
    }

    /// Runs `up` again on some worker, whose output (at `lost`) its worker no longer serves;
    /// once, however many nodes found it lost.
    async fn recompute_lost(
        &self,
        ctx: &RunCtx,
        dispatch: &dyn NodeDispatch,
        up: &str,
        lost: &RemoteOutput,
        code_hash: &str,
    ) -> Result<()> {
        let _one_at_a_time = ctx.outputs.recomputing.lock().await;
        {
            let mut remote = ctx.remote_lock()?;
            match remote.get(up) {
                Some(now) if now != lost => return Ok(()), // done by another reader
                _ => {
                    remote.remove(up);
                }
            }
        }
        let node = ctx
            .plan_node(up)
            .filter(|n| n.kind == NodeKind::PythonModel)
            .ok_or_else(|| {
                node_err(
                    up,
                    format!(
                        "its output was lost with the worker at {} and only a Python \
                         model's is computed again",
                        lost.endpoint
                    ),
                )
            })?;
        self.run_python_remote(ctx, dispatch, &node, code_hash)
            .await
            .map(|_| ())
    }

    /// One attempt at a node on some worker (the dispatcher retries lost workers itself).
    async fn run_node_once(
        &self,
        ctx: &RunCtx,
        dispatch: &dyn NodeDispatch,
        node: &PlanNode,
        code_hash: &str,
        upstream: BTreeMap<String, RemoteOutput>,
    ) -> Result<NodeTaskResult> {
        let task = NodeTask {
            job_id: ctx.scope.job_id.clone(),
            node: node.clone(),
            commit: ctx.scope.commit.clone(),
            namespace: ctx.scope.namespace.clone(),
            strict_python: ctx.envs.strict_python,
            code_hash: code_hash.to_string(),
            project_dir: ctx.scope.project_dir.clone(),
            cache_key: ctx
                .cacheable(node)
                .then(|| ctx.key_of(&node.name))
                .flatten(),
            upstream,
            objects: self.visible_objects(ctx, node)?,
        };
        dispatch
            .run(task)
            .await
            .map_err(|e| node_err(&node.name, e))
    }

    /// What a node's worker answered, into the run's log and outputs; the function's result.
    fn node_answer(
        &self,
        ctx: &RunCtx,
        node: &PlanNode,
        mut answer: NodeTaskResult,
    ) -> Result<serde_json::Value> {
        relay_retries(ctx, node, &answer);
        ctx.emit(RunEvent::Line {
            node: node.name.clone(),
            stderr: false,
            line: format!("ran on worker {}", answer.worker),
        });
        relay_lines(ctx, node, &mut answer);
        if let Some(e) = answer.error {
            return Err(node_err(&node.name, e));
        }
        if let Some(out) = answer.output {
            ctx.set_remote(&node.name, out)?;
        } else if node.kind != NodeKind::Expectation {
            return Err(node_err(&node.name, "its worker returned no output"));
        }
        answer
            .result
            .ok_or_else(|| node_err(&node.name, "its worker returned no result"))
    }

    /// The node worker's side: runs `task` with its upstream outputs at `inputs` (files on this
    /// machine: fetched into `dir`'s input folder, or another worker's on this machine), in a
    /// sandbox of its own. `notes` go to the node's log first (how its inputs came). `worker`
    /// names this worker in the answer; the output's location is the caller's to fill in.
    pub async fn run_node_task(
        &self,
        task: &NodeTask,
        inputs: HashMap<String, PathBuf>,
        dir: ShmJobDir,
        worker: &str,
        notes: &[String],
    ) -> Result<NodeRun> {
        let node = &task.node;
        if node.kind == NodeKind::SqlModel {
            return Err(Error::InvalidInput(format!(
                "node '{}' is a SQL model: its run's coordinator executes it",
                node.name
            )));
        }
        let project_dir = self.unpacked_code(&task.job_id, &task.code_hash)?;
        let mut node = node.clone();
        let rel = node
            .file
            .strip_prefix(&task.project_dir)
            .map_err(|_| {
                Error::InvalidInput(format!(
                    "node '{}': its file {} is outside the project {}",
                    node.name,
                    node.file.display(),
                    task.project_dir.display()
                ))
            })?
            .to_path_buf();
        if !rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::InvalidInput(format!(
                "node '{}': file {} is not a plain path in the project",
                node.name,
                rel.display()
            )));
        }
        node.file = project_dir.join(rel);
        let node = &node;
        let lines: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
        let seen = lines.clone();
        let observer: super::RunObserver = Arc::new(move |ev: &RunEvent| {
            let entry = match ev {
                RunEvent::Line { stderr, line, .. } => (*stderr, line.clone()),
                RunEvent::Warning(w) => (false, format!("warning: {w}")),
                _ => return,
            };
            if let Ok(mut l) = seen.lock() {
                l.push(entry);
            }
        });
        let extra_ro: Vec<PathBuf> = inputs
            .values()
            .filter(|p| !p.starts_with(dir.path()))
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        let log = dir.path().join("node.log");
        let mut ctx = self.run_ctx(
            super::CtxParts {
                job_id: task.job_id.clone(),
                commit: task.commit.clone(),
                namespace: task.namespace.clone(),
                shm: dir,
                project_dir,
                strict_python: task.strict_python,
                no_cache: task.cache_key.is_none(),
                preview: None,
                observer,
                log,
            },
            None,
        )?;
        ctx.files.extra_ro = extra_ro;
        let _ = ctx.objects.at_commit.set(task.objects.clone());
        for (up, path) in inputs {
            ctx.set_output(&up, path)?;
        }
        for note in notes {
            ctx.emit(RunEvent::Line {
                node: node.name.clone(),
                stderr: false,
                line: note.clone(),
            });
        }
        let ran = ctx
            .live_while(async {
                let env = self.prepare_env(&ctx, node).await?;
                let node_dir = ctx.node_dir(&node.name)?;
                let out = node_dir.join("output.arrow");
                match self
                    .run_python(&ctx, node, env, &node_dir, &out, None)
                    .await?
                {
                    PyRun::Ran(r) => Ok((r, out)),
                    PyRun::Skipped(Skip::Cancelled | Skip::Hit(_)) => {
                        Err(Error::Internal("a node task is never skipped".into()))
                    }
                }
            })
            .await;
        let (result, error, output) = match ran {
            Ok((r, out)) => {
                let output = (node.kind != NodeKind::Expectation).then_some(out);
                // A node that saved objects runs every time: a cache hit would not save them.
                let saved = r.get("saved_objects").is_some();
                if let (Some(key), false) = (&task.cache_key, saved) {
                    // Kept as the coordinator keeps what it computes (the same rows and
                    // verdict as its outcome reports).
                    let rows = r.get("rows").and_then(|v| v.as_u64());
                    let passed = r.get("value").and_then(|v| v.as_bool());
                    ctx.keep_in_cache(node, key, output.as_deref(), rows, passed)
                        .await;
                }
                (Some(r), None, output)
            }
            Err(Error::InvalidOperation { reason, .. }) => (None, Some(reason), None),
            Err(e) => (None, Some(e.to_string()), None),
        };
        let lines = lines.lock().map(|mut l| std::mem::take(&mut *l));
        Ok(NodeRun {
            result: NodeTaskResult {
                result,
                error,
                output: None,
                lines: lines.unwrap_or_default(),
                worker: worker.to_string(),
                retried: Vec::new(),
                lost_inputs: Vec::new(),
            },
            output,
            dir: ctx.files.shm,
        })
    }

    /// The job's code, unpacked once per worker machine from its snapshot (restored from the
    /// metastore when the job was planned elsewhere).
    fn unpacked_code(&self, job_id: &str, code_hash: &str) -> Result<PathBuf> {
        let jobs = self.jobs()?;
        let short = &code_hash[..code_hash.len().min(16)];
        if short.is_empty() || !short.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "code hash '{code_hash}': expected hex digits"
            )));
        }
        let dir = jobs.job_dir(job_id).join(format!("code-{short}"));
        if dir.is_dir() {
            return Ok(dir);
        }
        let zip = jobs.snapshot_file(job_id)?;
        let tmp = jobs
            .job_dir(job_id)
            .join(format!(".code-{short}-{}", uuid::Uuid::new_v4().simple()));
        crate::snapshot::extract_snapshot(&zip, &tmp)?;
        // Two node tasks of one job may unpack at once: the first rename wins.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.is_dir() {
                return Err(Error::Internal(format!(
                    "could not unpack job {job_id}'s code into {}",
                    dir.display()
                )));
            }
        }
        Ok(dir)
    }
}
