//! The publish stage: the temporary branch merged into the target, or on failure kept with
//! what finished.

use std::collections::BTreeMap;

use lakeplan_core::{CommitId, Error, RefKind, Result};
use lakeplan_pipeline::Plan;
use serde_json::json;

use super::materialize::materialize_props;
use super::plan::Planned;
use super::schedule::Scheduled;
use super::{NodeOutcome, RunCtx, RunEvent, RunOptions};
use crate::Lake;

impl Lake {
    /// The publish stage: with the run scheduled, its checks gate publishing; the outputs are
    /// materialized on the temporary branch (or the target, without one) and the temporary
    /// branch merged into the target. A failed run keeps what finished on the temporary branch.
    pub(super) async fn publish(
        &self,
        ctx: &RunCtx,
        planned: &Planned,
        opts: &RunOptions,
        tx_branch: Option<&str>,
        code_hash: &str,
        scheduled: Scheduled,
    ) -> std::result::Result<(Vec<NodeOutcome>, Option<CommitId>), (Vec<NodeOutcome>, Error)> {
        let Planned {
            target,
            project,
            plan,
            ..
        } = planned;
        let target = target.as_str();
        let Scheduled {
            mut outcomes,
            failure,
            contract_failures,
            expectation_failures,
        } = scheduled;
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
                ctx.scope.job_id
            ),
        );
        meta.properties.extend(props);
        let merged = self.audited(
            "branch.merge",
            target,
            json!({"source": tx, "job_id": ctx.scope.job_id}),
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

    /// The temporary branch `tx` a transactional run materializes on, made from `target`.
    pub(super) fn open_tx_branch(&self, ctx: &RunCtx, tx: &str, target: &str) -> Result<()> {
        self.create_ref(tx, RefKind::Branch, Some(target), false)?;
        ctx.emit(RunEvent::Info(format!(
            "created temporary branch '{tx}' from '{target}'"
        )));
        Ok(())
    }

    /// A published run's temporary branch has done its job.
    pub(super) fn close_tx_branch(&self, tx: &str) {
        let _ = self.delete_ref(tx, RefKind::Branch, true);
    }

    /// What a failed run's message says of its target and temporary branch `tx`.
    pub(super) fn unpublished_note(&self, tx: &str, target: &str) -> String {
        if self.catalog.resolve_str(tx).is_ok() {
            format!("; '{target}' is unchanged; the temporary branch '{tx}' is kept")
        } else {
            format!("; '{target}' is unchanged")
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
}
