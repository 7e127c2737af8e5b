//! The publish stage: the temporary branch merged into the target, or on failure kept with
//! what finished.

use std::collections::BTreeMap;

use lakeplan_pipeline::Plan;

use super::*;
use crate::Lake;

impl Lake {
    /// A run that failed on its temporary branch `tx` keeps what it computed there: the
    /// materialized models that finished (computed or cached) are written to `tx` (never to
    /// `target`) in one commit, and the log says which, for debugging from them. A failure to
    /// write them is a warning: the run's own error stays the one reported.
    pub(super) async fn keep_finished(
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
