//! The schedule stage: the plan's nodes started as their inputs finish, at most `workers` at
//! once; after a failure nothing new starts.

use std::collections::HashMap;
use std::path::PathBuf;

use futures::StreamExt;
use lakeplan_core::{Error, Result};
use lakeplan_pipeline::{NodeKind, Plan, PlanNode};

use super::node::{Inputs, CANCELLED};
use super::{NodeOutcome, RunCtx, RunEvent, RunOptions};
use crate::pipeline_io::{check_contract, ContractField};
use crate::Lake;

/// What the schedule stage hands on to publishing: each node's outcome, the failure that
/// stopped the run (if any), and the checks that failed.
pub(super) struct Scheduled {
    pub(super) outcomes: Vec<NodeOutcome>,
    pub(super) failure: Option<Error>,
    /// "node: violation" for each output that broke its contract.
    pub(super) contract_failures: Vec<String>,
    /// The expectations that returned False.
    pub(super) expectation_failures: Vec<String>,
}

impl Lake {
    /// The schedule stage: runs the plan's nodes, each once every node it reads has finished,
    /// and checks their outputs; returns what each did and what failed.
    pub(super) async fn schedule(
        &self,
        ctx: &RunCtx,
        plan: &Plan,
        opts: &RunOptions,
        code_hash: &str,
    ) -> Scheduled {
        let mut outcomes: Vec<NodeOutcome> = Vec::new();
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
                while ctx.outputs.dispatch.is_none() && k < waiting.len() && running.len() < workers
                {
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
                        (ctx.schedule.preview, node.kind != NodeKind::Expectation)
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
                        ctx.schedule.progress.send_modify(|p| p.stopped = true);
                    }
                }
            }
            done.insert(node.name.as_str());
            ctx.schedule
                .progress
                .send_modify(|p| _ = p.done.insert(node.name.clone()));
            release_inputs(ctx, plan, node, &mut consumers);
        }
        if failure.is_none() && !waiting.is_empty() {
            failure = Some(Error::Internal(format!(
                "{} node(s) never became ready: the plan's dependencies are inconsistent",
                waiting.len()
            )));
        }
        Scheduled {
            outcomes,
            failure,
            contract_failures,
            expectation_failures,
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
    if let Ok(entries) = std::fs::read_dir(ctx.files.shm.input_dir()) {
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
                if path.starts_with(ctx.files.shm.path()) {
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

/// What the scheduler shares with the nodes it starts.
pub(super) struct ScheduleState {
    /// What the scheduler and the nodes tell each other while the run goes on: which nodes
    /// execute (missed the cache), which finished, whether the run stopped. A node started
    /// ahead of its inputs waits on it.
    pub(super) progress: tokio::sync::watch::Sender<RunProgress>,
    /// Each model's first (true) or last (false) N rows, shown after it ran.
    pub(super) preview: Option<(bool, usize)>,
    /// The plan's nodes by name (set when it executes), for computing a lost output again.
    pub(super) plan_nodes: std::sync::OnceLock<HashMap<String, PlanNode>>,
    /// The hash of the run's code snapshot (set when it executes).
    pub(super) code_hash: std::sync::OnceLock<String>,
}

#[derive(Default)]
pub(super) struct RunProgress {
    pub(super) executing: std::collections::HashSet<String>,
    pub(super) done: std::collections::HashSet<String>,
    pub(super) stopped: bool,
}

impl RunCtx {
    /// Waits until the nodes `node` reads are all done (or, with `computing`, each done or
    /// computing), or the run stops.
    pub(super) async fn inputs_of(&self, node: &PlanNode, computing: bool) -> Result<Inputs> {
        let mut rx = self.schedule.progress.subscribe();
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
}
