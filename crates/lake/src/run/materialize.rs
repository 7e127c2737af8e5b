//! The materialize stage: every materialized model (and the objects the run saved) written to
//! a branch in one commit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use lakeplan_core::{CommitId, Entry, Error, Result, TableName, OBJECT_KEY_PREFIX};
use lakeplan_pipeline::{Materialization, Plan, PlanNode, Project};
use lakeplan_storage::ingest::{self, ImportOptions, SourceFile};
use lakeplan_storage::schema::{parse_partitioning, partition_spec, schema_from_columns};

use super::node::node_err;
use super::{NodeOutcome, RunCtx, RunEvent};
use crate::pipeline_io::{quote_ident, sql_to_ipc};
use crate::Lake;

impl Lake {
    /// Writes every materialized model to `branch` in one commit; returns the commit, or None
    /// when nothing needed writing.
    /// `only`: just these nodes (those that finished, when the run failed); None: every
    /// materialized model.
    pub(super) async fn materialize(
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
            let name = TableName::new(&ctx.scope.namespace, &node.name)?;
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
                    .files
                    .shm
                    .output_dir()
                    .join(format!("{}.kept.arrow", node.name));
                let session = self.run_session(&head, &ctx.scope.namespace, &[]).await?;
                let sql = format!(
                    "SELECT * FROM {}.{} WHERE NOT COALESCE(({filter}), false)",
                    quote_ident(&ctx.scope.namespace),
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
            ctx.scope.job_id
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
                        if !work.is_empty() && s.current(&ctx.scope.namespace)?.is_none() {
                            s.create_namespace_(&ctx.scope.namespace)?;
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
pub(super) fn materialize_props(
    ctx: &RunCtx,
    project: &Project,
    code_hash: &str,
) -> BTreeMap<String, String> {
    [
        ("lakeplan.job-id", ctx.scope.job_id.clone()),
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
        ("bpln_job_id", ctx.scope.job_id.clone()),
        ("bpln_project_id", project.id.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
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
