//! The plan stage: the project loaded and planned statically at the commit the run reads
//! (no user code runs).

use std::path::Path;

use lakeplan_core::{CommitId, Entry, Error, RefKind, Result, TableName};
use lakeplan_pipeline::{CatalogView, Plan, Project, TableInfo};

use super::node::env_cache_dir;
use super::{check_run_flags, RunOptions};
use crate::Lake;

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

/// What the plan stage hands on: the project, planned at the commit the run reads.
pub(super) struct Planned {
    /// The branch the run publishes to (or, for a dry run, the ref it reads).
    pub(super) target: String,
    /// The commit the run's inputs are read at.
    pub(super) input_commit: CommitId,
    pub(super) project: Project,
    pub(super) plan: Plan,
}

impl Lake {
    /// The plan stage: the target checked (a branch head, unless a dry run), the commit to read
    /// resolved, the run's flags checked and the project planned there. Its errors come
    /// before any job exists.
    pub(super) fn plan_run(&self, opts: &RunOptions) -> Result<Planned> {
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
        Ok(Planned {
            target,
            input_commit,
            project,
            plan,
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
}
