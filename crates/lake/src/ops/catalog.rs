//! The catalog's operations: refs, merges, logs, namespaces, tables, settings, the audit log and
//! secrets. Each is a request struct whose [`Operation`] impl says what it needs and calls the
//! lake's method that does it (which audits it).

use lakeplan_catalog::{AuditRecord, LogFilter};
use lakeplan_core::{Error, RefKind, Result};
use lakeplan_pipeline::SealedSecret;

use super::{Access, Operation, Service};
use crate::{
    CommitExtras, CommitInfo, DiffInfo, Lake, MergeInfo, RefInfo, SettingValue, TableInfo,
    TableSummary, WriteInfo,
};

/// `lake` with a request's commit extras, when it has any (otherwise the handle's own, which a
/// CLI invocation sets once for all its writes).
pub(super) fn with_extras(lake: &Lake, extras: CommitExtras) -> Result<Lake> {
    if extras.is_empty() {
        Ok(lake.clone())
    } else {
        lake.with_commit_extras(extras)
    }
}

/// `r`, or the lake's active branch when the request left it out.
pub(super) fn bind_branch(lake: &Lake, r: &mut Option<String>) -> Result<()> {
    if r.is_none() {
        *r = Some(lake.active_branch()?);
    }
    Ok(())
}

/// A bound branch as `access` and `execute` see it (`bind` has run).
pub(super) fn bound(r: &Option<String>) -> &str {
    r.as_deref().unwrap_or_default()
}

/// Branches or tags.
#[derive(Clone, Debug)]
pub struct ListRefs {
    pub kind: RefKind,
}

impl Operation for ListRefs {
    type Output = Vec<RefInfo>;
    const NAME: &'static str = "list_refs";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.list_refs(self.kind)
    }
}

/// One branch or tag.
#[derive(Clone, Debug)]
pub struct GetRef {
    pub name: String,
    pub kind: RefKind,
}

impl Operation for GetRef {
    type Output = RefInfo;
    const NAME: &'static str = "get_ref";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.get_ref(&self.name, self.kind)
    }
}

/// A new branch or tag at `from` (a ref expression; the lake's active branch when left out).
#[derive(Clone, Debug)]
pub struct CreateRef {
    pub name: String,
    pub kind: RefKind,
    pub from: Option<String>,
    /// An existing ref of that name is the answer instead of an error.
    pub if_not_exists: bool,
}

impl Operation for CreateRef {
    type Output = RefInfo;
    const NAME: &'static str = "create_ref";
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(self.name.clone())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.create_ref(
            &self.name,
            self.kind,
            self.from.as_deref(),
            self.if_not_exists,
        )
    }
}

/// Deletes a branch or tag; answers it as it was (none when it was not there).
#[derive(Clone, Debug)]
pub struct DeleteRef {
    pub name: String,
    pub kind: RefKind,
    /// A missing ref answers `false` instead of an error.
    pub if_exists: bool,
}

impl Operation for DeleteRef {
    type Output = Option<RefInfo>;
    const NAME: &'static str = "delete_ref";
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(self.name.clone())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        let was = match lake.get_ref(&self.name, self.kind) {
            Ok(r) => Some(r),
            Err(Error::RefNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let deleted = lake.delete_ref(&self.name, self.kind, self.if_exists)?;
        Ok(was.filter(|_| deleted))
    }
}

/// Renames a branch or tag.
#[derive(Clone, Debug)]
pub struct RenameRef {
    pub name: String,
    pub new_name: String,
    pub kind: RefKind,
}

impl Operation for RenameRef {
    type Output = RefInfo;
    const NAME: &'static str = "rename_ref";
    fn access(&self) -> Vec<Access> {
        vec![
            Access::WriteRef(self.name.clone()),
            Access::WriteRef(self.new_name.clone()),
        ]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.rename_ref(&self.name, &self.new_name, self.kind)
    }
}

/// Merges `source` into branch `into` (the active branch when left out).
#[derive(Clone, Debug, Default)]
pub struct Merge {
    pub source: String,
    pub into: Option<String>,
    pub message: Option<String>,
    pub commit: CommitExtras,
}

impl Operation for Merge {
    type Output = MergeInfo;
    const NAME: &'static str = "merge";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        bind_branch(lake, &mut self.into)
    }
    fn access(&self) -> Vec<Access> {
        vec![Access::MergeInto(bound(&self.into).into())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        with_extras(lake, self.commit)?.merge(
            &self.source,
            self.into.as_deref(),
            self.message.as_deref(),
        )
    }
}

/// What differs from `from` to `to` (the active branch when left out).
#[derive(Clone, Debug)]
pub struct Diff {
    pub from: String,
    pub to: Option<String>,
}

impl Operation for Diff {
    type Output = Vec<DiffInfo>;
    const NAME: &'static str = "diff";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.diff(&self.from, self.to.as_deref())
    }
}

/// The log of `at` (the active branch when left out): at most `limit` commits.
#[derive(Clone, Debug, Default)]
pub struct Commits {
    pub at: Option<String>,
    pub filter: LogFilter,
    pub limit: Option<usize>,
}

impl Operation for Commits {
    type Output = Vec<CommitInfo>;
    const NAME: &'static str = "commits";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.commits(self.at.as_deref(), &self.filter, self.limit)
    }
}

/// The namespaces at `at` (the active branch when left out).
#[derive(Clone, Debug, Default)]
pub struct ListNamespaces {
    pub at: Option<String>,
}

impl Operation for ListNamespaces {
    type Output = Vec<String>;
    const NAME: &'static str = "list_namespaces";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.list_namespaces(self.at.as_deref())
    }
}

/// One namespace at `at` (the active branch when left out): its name, or
/// [`Error::NamespaceNotFound`].
#[derive(Clone, Debug, Default)]
pub struct GetNamespace {
    pub name: String,
    pub at: Option<String>,
}

impl Operation for GetNamespace {
    type Output = String;
    const NAME: &'static str = "get_namespace";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        on.lake()
            .require_namespace(&self.name, self.at.as_deref())?;
        Ok(self.name)
    }
}

/// A new namespace on `branch` (the active branch when left out).
#[derive(Clone, Debug, Default)]
pub struct CreateNamespace {
    pub name: String,
    pub branch: Option<String>,
    pub commit: CommitExtras,
}

impl Operation for CreateNamespace {
    type Output = WriteInfo;
    const NAME: &'static str = "create_namespace";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        bind_branch(lake, &mut self.branch)
    }
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(bound(&self.branch).into())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        with_extras(lake, self.commit)?
            .create_namespace(&self.name, self.branch.as_deref())
            .await
    }
}

/// Removes an empty namespace from `branch` (the active branch when left out).
#[derive(Clone, Debug, Default)]
pub struct DropNamespace {
    pub name: String,
    pub branch: Option<String>,
    pub commit: CommitExtras,
}

impl Operation for DropNamespace {
    type Output = WriteInfo;
    const NAME: &'static str = "drop_namespace";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        bind_branch(lake, &mut self.branch)
    }
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(bound(&self.branch).into())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        with_extras(lake, self.commit)?
            .drop_namespace(&self.name, self.branch.as_deref())
            .await
    }
}

/// The tables at `at` (the active branch when left out), of one namespace or all.
#[derive(Clone, Debug, Default)]
pub struct ListTables {
    pub at: Option<String>,
    pub namespace: Option<String>,
}

impl Operation for ListTables {
    type Output = Vec<TableSummary>;
    const NAME: &'static str = "list_tables";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.list_tables(self.at.as_deref(), self.namespace.as_deref())
    }
}

/// One table at `at` (the active branch when left out); a bare name is in the lake's default
/// namespace unless `namespace` says.
#[derive(Clone, Debug, Default)]
pub struct GetTable {
    pub table: String,
    pub namespace: Option<String>,
    pub at: Option<String>,
}

impl Operation for GetTable {
    type Output = TableInfo;
    const NAME: &'static str = "get_table";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.get_table(&self.table, self.namespace.as_deref(), self.at.as_deref())
            .await
    }
}

/// Removes a table from `branch` (the active branch when left out).
#[derive(Clone, Debug, Default)]
pub struct DropTable {
    pub table: String,
    pub namespace: Option<String>,
    pub branch: Option<String>,
    /// A missing table is a no-op instead of an error.
    pub if_exists: bool,
    pub commit: CommitExtras,
}

impl Operation for DropTable {
    type Output = WriteInfo;
    const NAME: &'static str = "drop_table";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        bind_branch(lake, &mut self.branch)
    }
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(bound(&self.branch).into())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        with_extras(lake, self.commit)?
            .drop_table(
                &self.table,
                self.namespace.as_deref(),
                self.branch.as_deref(),
                self.if_exists,
            )
            .await
    }
}

/// Restores a table on `into` (the active branch when left out) as it is at `source_ref`.
#[derive(Clone, Debug, Default)]
pub struct RevertTable {
    pub table: String,
    pub namespace: Option<String>,
    pub source_ref: String,
    pub into: Option<String>,
    pub commit: CommitExtras,
    /// Bauplan's rules: a revert that would change nothing is an error
    /// ([`Error::RevertUnchanged`]), and so, unless `replace`, is one onto a table that exists
    /// ([`Error::TableExists`]). Without them (lakeplan's own surfaces) a revert replaces.
    pub bauplan_rules: Option<BauplanRevert>,
}

/// [`RevertTable::bauplan_rules`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BauplanRevert {
    pub replace: bool,
}

impl RevertTable {
    /// Bauplan's refusals, checked before anything is written.
    async fn check_bauplan_rules(&self, lake: &Lake, rules: BauplanRevert) -> Result<()> {
        let (ns, into) = (self.namespace.as_deref(), bound(&self.into));
        let dest = match lake.get_table(&self.table, ns, Some(into)).await {
            Ok(t) => t,
            Err(Error::TableNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let src = lake
            .get_table(&self.table, ns, Some(&self.source_ref))
            .await?;
        if src.metadata_location == dest.metadata_location {
            return Err(Error::RevertUnchanged {
                table: dest.fqn,
                into: into.to_string(),
                source_ref: self.source_ref.clone(),
            });
        }
        if !rules.replace {
            return Err(Error::TableExists(dest.fqn));
        }
        Ok(())
    }
}

impl Operation for RevertTable {
    type Output = WriteInfo;
    const NAME: &'static str = "revert_table";
    fn bind(&mut self, lake: &Lake) -> Result<()> {
        bind_branch(lake, &mut self.into)
    }
    fn access(&self) -> Vec<Access> {
        vec![Access::WriteRef(bound(&self.into).into())]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        if let Some(rules) = self.bauplan_rules {
            self.check_bauplan_rules(lake, rules).await?;
        }
        with_extras(lake, self.commit)?
            .revert_table(
                &self.table,
                self.namespace.as_deref(),
                &self.source_ref,
                self.into.as_deref(),
            )
            .await
    }
}

/// The lake's settings, each with its value (none when unset) and meaning.
#[derive(Clone, Debug, Default)]
pub struct Settings;

impl Operation for Settings {
    type Output = Vec<SettingValue>;
    const NAME: &'static str = "settings";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.settings()
    }
}

/// Sets setting `name` to `value`, or unsets it (`None`); answers every setting after.
#[derive(Clone, Debug, Default)]
pub struct SetSetting {
    pub name: String,
    pub value: Option<String>,
}

impl Operation for SetSetting {
    type Output = Vec<SettingValue>;
    const NAME: &'static str = "set_setting";
    fn access(&self) -> Vec<Access> {
        vec![Access::Admin]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.set_setting(crate::Setting::parse(&self.name)?, self.value.as_deref())?;
        lake.settings()
    }
}

/// The newest `limit` records of the audit log (all when left out).
#[derive(Clone, Debug, Default)]
pub struct AuditLog {
    pub limit: Option<usize>,
}

impl Operation for AuditLog {
    type Output = Vec<AuditRecord>;
    const NAME: &'static str = "audit_log";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.audit_log(self.limit)
    }
}

/// Seals a secret parameter's value with the lake's key. Not `Debug`: the value must not reach
/// a log by accident.
#[derive(Clone)]
pub struct SealSecret {
    pub project_id: Option<String>,
    pub name: String,
    pub value: String,
}

impl Operation for SealSecret {
    type Output = SealedSecret;
    const NAME: &'static str = "seal_secret";
    fn access(&self) -> Vec<Access> {
        vec![Access::Write]
    }
    async fn execute(self, on: &Service) -> Result<Self::Output> {
        let lake = on.lake();
        lake.seal_secret(self.project_id.as_deref(), &self.name, &self.value)
    }
}
