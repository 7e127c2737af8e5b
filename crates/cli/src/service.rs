//! What a command talks to: the lake in this process (embedded mode) or a server (remote mode).
//! Both return the service layer's records, so every command prints the same either way.

use lakeplan_catalog::AuditRecord;
use lakeplan_core::{RefKind, Result};
use lakeplan_lake::ops;
use lakeplan_lake::{
    CommitExtras, CommitInfo, CreatePlan, DiffInfo, ImportOptions, ImportReport, JobRecord, Lake,
    LogFilter, MergeInfo, ProgressFn, QueryResult, RefInfo, SettingValue, TableInfo, TableSummary,
    WriteInfo,
};

use crate::remote::{CommitFilter, Remote};

pub enum Service {
    Local(Lake),
    Remote(Remote),
}

/// The local lake's service: every operation allowed (the user's own lake).
fn open(l: &Lake) -> ops::Service {
    ops::Service::open(l.clone())
}

/// Dispatches a call to the local lake or the server.
macro_rules! dispatch {
    ($self:ident, $local:pat => $l:expr, $remote:pat => $r:expr) => {
        match $self {
            Service::Local($local) => $l,
            Service::Remote($remote) => $r,
        }
    };
}

impl Service {
    /// The same service, adding `extras` to the commits its writes make.
    pub fn with_commit(&self, extras: CommitExtras) -> Result<Service> {
        extras.validate()?;
        Ok(match self {
            Service::Local(l) => Service::Local(l.with_commit_extras(extras)?),
            Service::Remote(r) => Service::Remote(r.with_commit(extras)),
        })
    }

    pub async fn set_active_branch(&self, branch: &str) -> Result<()> {
        dispatch!(self, l => l.set_active_branch(branch), r => r.set_active_branch(branch).await)
    }

    pub async fn list_refs(&self, kind: RefKind) -> Result<Vec<RefInfo>> {
        dispatch!(self, l => open(l).call(ops::ListRefs { kind }).await, r => r.list_refs(kind).await)
    }

    pub async fn get_ref(&self, name: &str, kind: RefKind) -> Result<RefInfo> {
        dispatch!(self,
            l => open(l).call(ops::GetRef { name: name.into(), kind }).await,
            r => r.get_ref(name, kind).await)
    }

    pub async fn create_ref(
        &self,
        name: &str,
        kind: RefKind,
        from: Option<&str>,
        if_not_exists: bool,
    ) -> Result<RefInfo> {
        dispatch!(self,
            l => open(l).call(ops::CreateRef {
                name: name.into(),
                kind,
                from: from.map(Into::into),
                if_not_exists,
            }).await,
            r => r.create_ref(name, kind, from, if_not_exists).await)
    }

    pub async fn delete_ref(&self, name: &str, kind: RefKind, if_exists: bool) -> Result<bool> {
        dispatch!(self,
            l => Ok(open(l)
                .call(ops::DeleteRef { name: name.into(), kind, if_exists })
                .await?
                .is_some()),
            r => r.delete_ref(name, kind, if_exists).await)
    }

    pub async fn rename_ref(&self, old: &str, new: &str, kind: RefKind) -> Result<RefInfo> {
        dispatch!(self,
            l => open(l).call(ops::RenameRef { name: old.into(), new_name: new.into(), kind }).await,
            r => r.rename_ref(old, new, kind).await)
    }

    pub async fn diff(&self, a: &str, b: Option<&str>) -> Result<Vec<DiffInfo>> {
        dispatch!(self,
            l => open(l).call(ops::Diff { from: a.into(), to: b.map(Into::into) }).await,
            r => r.diff(a, b).await)
    }

    pub async fn merge(
        &self,
        source: &str,
        into: Option<&str>,
        message: Option<&str>,
    ) -> Result<MergeInfo> {
        dispatch!(self,
            l => open(l).call(ops::Merge {
                source: source.into(),
                into: into.map(Into::into),
                message: message.map(Into::into),
                ..Default::default()
            }).await,
            r => r.merge(source, into, message).await)
    }

    pub async fn commits(
        &self,
        at: Option<&str>,
        filter: &CommitFilter,
        limit: usize,
    ) -> Result<Vec<CommitInfo>> {
        match self {
            Service::Local(l) => {
                let f = LogFilter {
                    message: LogFilter::optional("--message", filter.message.as_deref())?,
                    author: LogFilter::optional("--author", filter.author.as_deref())?,
                    properties: filter.properties.clone(),
                };
                let op = ops::Commits {
                    at: at.map(Into::into),
                    filter: f,
                    limit: Some(limit),
                };
                open(l).call(op).await
            }
            Service::Remote(r) => r.commits(at, filter, limit).await,
        }
    }

    /// The lake's settings (`lakeplan lake config`).
    pub async fn settings(&self) -> Result<Vec<SettingValue>> {
        dispatch!(self, l => open(l).call(ops::Settings).await, r => r.settings().await)
    }

    /// Seals a secret parameter's value with the lake's (or the tenant's) key.
    pub async fn seal_secret(
        &self,
        project_id: Option<&str>,
        name: &str,
        value: &str,
    ) -> Result<lakeplan_lake::pipeline::SealedSecret> {
        dispatch!(self,
            l => open(l).call(ops::SealSecret {
                project_id: project_id.map(Into::into),
                name: name.into(),
                value: value.into(),
            }).await,
            r => r.seal_secret(project_id, name, value).await)
    }

    /// Sets or (with None) unsets a lake setting; returns every setting after the change.
    pub async fn set_setting(&self, name: &str, value: Option<&str>) -> Result<Vec<SettingValue>> {
        dispatch!(self,
            l => open(l).call(ops::SetSetting {
                name: name.into(),
                value: value.map(Into::into),
            }).await,
            r => r.set_setting(name, value).await)
    }

    pub async fn list_namespaces(&self, at: Option<&str>) -> Result<Vec<String>> {
        dispatch!(self,
            l => open(l).call(ops::ListNamespaces { at: at.map(Into::into) }).await,
            r => r.list_namespaces(at).await)
    }

    pub async fn create_namespace(&self, ns: &str, branch: Option<&str>) -> Result<WriteInfo> {
        dispatch!(self,
            l => open(l).call(ops::CreateNamespace {
                name: ns.into(),
                branch: branch.map(Into::into),
                ..Default::default()
            }).await,
            r => r.create_namespace(ns, branch).await)
    }

    pub async fn drop_namespace(&self, ns: &str, branch: Option<&str>) -> Result<WriteInfo> {
        dispatch!(self,
            l => open(l).call(ops::DropNamespace {
                name: ns.into(),
                branch: branch.map(Into::into),
                ..Default::default()
            }).await,
            r => r.drop_namespace(ns, branch).await)
    }

    pub async fn list_tables(
        &self,
        at: Option<&str>,
        ns: Option<&str>,
    ) -> Result<Vec<TableSummary>> {
        dispatch!(self,
            l => open(l).call(ops::ListTables {
                at: at.map(Into::into),
                namespace: ns.map(Into::into),
            }).await,
            r => r.list_tables(at, ns).await)
    }

    pub async fn get_table(
        &self,
        table: &str,
        ns: Option<&str>,
        at: Option<&str>,
    ) -> Result<TableInfo> {
        dispatch!(self,
            l => open(l).call(ops::GetTable {
                table: table.into(),
                namespace: ns.map(Into::into),
                at: at.map(Into::into),
            }).await,
            r => r.get_table(table, ns, at).await)
    }

    pub async fn drop_table(
        &self,
        table: &str,
        ns: Option<&str>,
        branch: Option<&str>,
        if_exists: bool,
    ) -> Result<WriteInfo> {
        dispatch!(self,
            l => open(l).call(ops::DropTable {
                table: table.into(),
                namespace: ns.map(Into::into),
                branch: branch.map(Into::into),
                if_exists,
                ..Default::default()
            }).await,
            r => r.drop_table(table, ns, branch, if_exists).await)
    }

    /// A new table's plan from files (nothing written).
    pub async fn plan_table(&self, req: ops::PlanTable) -> Result<CreatePlan> {
        dispatch!(self, l => open(l).call(req).await, r => r.plan_table(&req).await)
    }

    /// A table created from files: planned and applied in one call.
    pub async fn create_table(&self, plan: ops::PlanTable) -> Result<WriteInfo> {
        dispatch!(self,
            l => open(l).call(ops::CreateTable { plan, commit: CommitExtras::default() }).await,
            r => r.create_table(&plan).await)
    }

    pub async fn apply_plan(&self, plan: &CreatePlan) -> Result<WriteInfo> {
        dispatch!(self,
            l => open(l).call(ops::ApplyPlan { plan: plan.clone(), commit: CommitExtras::default() }).await,
            r => r.apply_plan(plan).await)
    }

    /// An import; the progress display is local only (a server answers when it is done).
    pub async fn import(
        &self,
        table: &str,
        ns: Option<&str>,
        search_uri: &str,
        branch: Option<&str>,
        opts: &ImportOptions,
        progress: ProgressFn,
    ) -> Result<(ImportReport, WriteInfo)> {
        match self {
            Service::Local(l) => {
                let op = ops::Import {
                    table: table.into(),
                    namespace: ns.map(Into::into),
                    search_uri: search_uri.into(),
                    branch: branch.map(Into::into),
                    continue_on_error: opts.continue_on_error,
                    import_duplicate_files: opts.import_duplicate_files,
                    ..Default::default()
                };
                let data = std::sync::Arc::new(ops::InProcess::with_progress(progress));
                let done = open(l).with_data_plane(data).call(op).await?;
                Ok((done.report, done.commit))
            }
            Service::Remote(r) => {
                r.import(
                    table,
                    ns,
                    search_uri,
                    branch,
                    opts.continue_on_error,
                    opts.import_duplicate_files,
                )
                .await
            }
        }
    }

    pub async fn revert_table(
        &self,
        table: &str,
        ns: Option<&str>,
        source_ref: &str,
        into: Option<&str>,
    ) -> Result<WriteInfo> {
        dispatch!(self,
            l => open(l).call(ops::RevertTable {
                table: table.into(),
                namespace: ns.map(Into::into),
                source_ref: source_ref.into(),
                into: into.map(Into::into),
                ..Default::default()
            }).await,
            r => r.revert_table(table, ns, source_ref, into).await)
    }

    pub async fn query(
        &self,
        sql: &str,
        at: Option<&str>,
        ns: Option<&str>,
        max_rows: Option<usize>,
    ) -> Result<QueryResult> {
        dispatch!(self, l => l.query(sql, at, ns, max_rows).await, r => r.query(sql, at, ns, max_rows).await)
    }

    pub async fn jobs(&self, limit: usize) -> Result<Vec<JobRecord>> {
        dispatch!(self,
            l => open(l).call(ops::ListJobs { limit: Some(limit) }).await,
            r => r.jobs(limit).await)
    }

    pub async fn job(&self, id: &str) -> Result<JobRecord> {
        dispatch!(self, l => open(l).call(ops::GetJob { id: id.into() }).await, r => r.job(id).await)
    }

    pub async fn job_logs(&self, id: &str) -> Result<(String, String)> {
        match self {
            Service::Local(l) => {
                let log = open(l).call(ops::JobLog { id: id.into() }).await?;
                Ok((log.id, log.text))
            }
            Service::Remote(r) => {
                let job = r.job(id).await?;
                Ok((job.id.clone(), r.job_logs(&job.id).await?))
            }
        }
    }

    pub async fn stop_job(&self, id: &str) -> Result<JobRecord> {
        dispatch!(self, l => open(l).call(ops::CancelJob::new(id)).await, r => r.stop_job(id).await)
    }

    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        dispatch!(self,
            l => open(l).call(ops::AuditLog { limit: Some(limit) }).await,
            r => r.audit_log(limit).await)
    }
}
