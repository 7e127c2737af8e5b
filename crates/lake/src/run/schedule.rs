//! The schedule stage: the plan's nodes started as their inputs finish, at most `workers` at
//! once; after a failure nothing new starts.

use std::collections::HashMap;
use std::path::PathBuf;

use futures::StreamExt;
use lakeplan_core::{CommitId, Error, RefKind};
use lakeplan_pipeline::{NodeKind, Plan, PlanNode, Project};
use serde_json::json;

use super::materialize::materialize_props;
use super::node::CANCELLED;
use super::*;
use crate::pipeline_io::{check_contract, ContractField};
use crate::Lake;

impl Lake {
    /// Executes the plan; returns each node's outcome and the published commit.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn execute(
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
