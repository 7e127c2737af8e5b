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
    /// Any operation of the service, on the lake in this process or on the server: one call,
    /// the same request either way ([`ops::OverHttp`] says how it travels to a server).
    pub async fn call<O: ops::OverHttp>(&self, op: O) -> Result<O::Output> {
        dispatch!(self, l => open(l).call(op).await, r => r.call(op).await)
    }

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
        self.call(ops::ListRefs { kind }).await
    }

    pub async fn get_ref(&self, name: &str, kind: RefKind) -> Result<RefInfo> {
        self.call(ops::GetRef {
            name: name.into(),
            kind,
        })
        .await
    }

    pub async fn create_ref(
        &self,
        name: &str,
        kind: RefKind,
        from: Option<&str>,
        if_not_exists: bool,
    ) -> Result<RefInfo> {
        self.call(ops::CreateRef {
            name: name.into(),
            kind,
            from: from.map(Into::into),
            if_not_exists,
        })
        .await
    }

    pub async fn delete_ref(&self, name: &str, kind: RefKind, if_exists: bool) -> Result<bool> {
        let op = ops::DeleteRef {
            name: name.into(),
            kind,
            if_exists,
        };
        Ok(self.call(op).await?.is_some())
    }

    pub async fn rename_ref(&self, old: &str, new: &str, kind: RefKind) -> Result<RefInfo> {
        self.call(ops::RenameRef {
            name: old.into(),
            new_name: new.into(),
            kind,
        })
        .await
    }

    pub async fn diff(&self, a: &str, b: Option<&str>) -> Result<Vec<DiffInfo>> {
        self.call(ops::Diff {
            from: a.into(),
            to: b.map(Into::into),
        })
        .await
    }

    pub async fn merge(
        &self,
        source: &str,
        into: Option<&str>,
        message: Option<&str>,
    ) -> Result<MergeInfo> {
        self.call(ops::Merge {
            source: source.into(),
            into: into.map(Into::into),
            message: message.map(Into::into),
            ..Default::default()
        })
        .await
    }

    pub async fn commits(
        &self,
        at: Option<&str>,
        filter: &CommitFilter,
        limit: usize,
    ) -> Result<Vec<CommitInfo>> {
        let filter = LogFilter {
            message: LogFilter::optional("--message", filter.message.as_deref())?,
            author: LogFilter::optional("--author", filter.author.as_deref())?,
            properties: filter.properties.clone(),
        };
        self.call(ops::Commits {
            at: at.map(Into::into),
            filter,
            limit: Some(limit),
        })
        .await
    }

    /// The lake's settings (`lakeplan lake config`).
    pub async fn settings(&self) -> Result<Vec<SettingValue>> {
        self.call(ops::Settings).await
    }

    /// Seals a secret parameter's value with the lake's (or the tenant's) key.
    pub async fn seal_secret(
        &self,
        project_id: Option<&str>,
        name: &str,
        value: &str,
    ) -> Result<lakeplan_lake::pipeline::SealedSecret> {
        self.call(ops::SealSecret {
            project_id: project_id.map(Into::into),
            name: name.into(),
            value: value.into(),
        })
        .await
    }

    /// Sets or (with None) unsets a lake setting; returns every setting after the change.
    pub async fn set_setting(&self, name: &str, value: Option<&str>) -> Result<Vec<SettingValue>> {
        self.call(ops::SetSetting {
            name: name.into(),
            value: value.map(Into::into),
        })
        .await
    }

    pub async fn list_namespaces(&self, at: Option<&str>) -> Result<Vec<String>> {
        self.call(ops::ListNamespaces {
            at: at.map(Into::into),
        })
        .await
    }

    pub async fn create_namespace(&self, ns: &str, branch: Option<&str>) -> Result<WriteInfo> {
        self.call(ops::CreateNamespace {
            name: ns.into(),
            branch: branch.map(Into::into),
            ..Default::default()
        })
        .await
    }

    pub async fn drop_namespace(&self, ns: &str, branch: Option<&str>) -> Result<WriteInfo> {
        self.call(ops::DropNamespace {
            name: ns.into(),
            branch: branch.map(Into::into),
            ..Default::default()
        })
        .await
    }

    pub async fn list_tables(
        &self,
        at: Option<&str>,
        ns: Option<&str>,
    ) -> Result<Vec<TableSummary>> {
        self.call(ops::ListTables {
            at: at.map(Into::into),
            namespace: ns.map(Into::into),
        })
        .await
    }

    pub async fn get_table(
        &self,
        table: &str,
        ns: Option<&str>,
        at: Option<&str>,
    ) -> Result<TableInfo> {
        self.call(ops::GetTable {
            table: table.into(),
            namespace: ns.map(Into::into),
            at: at.map(Into::into),
        })
        .await
    }

    pub async fn drop_table(
        &self,
        table: &str,
        ns: Option<&str>,
        branch: Option<&str>,
        if_exists: bool,
    ) -> Result<WriteInfo> {
        self.call(ops::DropTable {
            table: table.into(),
            namespace: ns.map(Into::into),
            branch: branch.map(Into::into),
            if_exists,
            ..Default::default()
        })
        .await
    }

    /// A new table's plan from files (nothing written).
    pub async fn plan_table(&self, req: ops::PlanTable) -> Result<CreatePlan> {
        self.call(req).await
    }

    /// A table created from files: planned and applied in one call.
    pub async fn create_table(&self, plan: ops::PlanTable) -> Result<WriteInfo> {
        self.call(ops::CreateTable {
            plan,
            commit: CommitExtras::default(),
        })
        .await
    }

    pub async fn apply_plan(&self, plan: &CreatePlan) -> Result<WriteInfo> {
        self.call(ops::ApplyPlan {
            plan: plan.clone(),
            commit: CommitExtras::default(),
        })
        .await
    }

    /// An import. Its progress is shown for a lake in this process (a server answers when it
    /// is done).
    pub async fn import(
        &self,
        table: &str,
        ns: Option<&str>,
        search_uri: &str,
        branch: Option<&str>,
        opts: &ImportOptions,
        progress: ProgressFn,
    ) -> Result<(ImportReport, WriteInfo)> {
        let op = ops::Import {
            table: table.into(),
            namespace: ns.map(Into::into),
            search_uri: search_uri.into(),
            branch: branch.map(Into::into),
            continue_on_error: opts.continue_on_error,
            import_duplicate_files: opts.import_duplicate_files,
            ..Default::default()
        };
        let done = match self {
            Service::Local(l) => {
                let data = std::sync::Arc::new(ops::InProcess::with_progress(progress));
                open(l).with_data_plane(data).call(op).await?
            }
            Service::Remote(r) => r.call(op).await?,
        };
        Ok((done.report, done.commit))
    }

    pub async fn revert_table(
        &self,
        table: &str,
        ns: Option<&str>,
        source_ref: &str,
        into: Option<&str>,
    ) -> Result<WriteInfo> {
        self.call(ops::RevertTable {
            table: table.into(),
            namespace: ns.map(Into::into),
            source_ref: source_ref.into(),
            into: into.map(Into::into),
            ..Default::default()
        })
        .await
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
        self.call(ops::ListJobs { limit: Some(limit) }).await
    }

    pub async fn job(&self, id: &str) -> Result<JobRecord> {
        self.call(ops::GetJob { id: id.into() }).await
    }

    pub async fn job_logs(&self, id: &str) -> Result<(String, String)> {
        match self {
            Service::Local(l) => {
                let log = open(l).call(ops::JobLog { id: id.into() }).await?;
                Ok((log.id, log.text))
            }
            // The log is text (or a stream: `follow_log`), not JSON.
            Service::Remote(r) => {
                let job = r.call(ops::GetJob { id: id.into() }).await?;
                Ok((job.id.clone(), r.job_logs(&job.id).await?))
            }
        }
    }

    pub async fn stop_job(&self, id: &str) -> Result<JobRecord> {
        self.call(ops::CancelJob::new(id)).await
    }

    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        self.call(ops::AuditLog { limit: Some(limit) }).await
    }
}
