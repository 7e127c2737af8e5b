use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lakeplan_catalog::sqlite::SqliteMetastore;
use lakeplan_catalog::{AuditRecord, Catalog, CommitMeta, Metastore};
use lakeplan_core::{CommitId, Error, RefKind, Result, MAIN_BRANCH};
use lakeplan_storage::{Reach, StagedCatalog, Warehouse};
use serde::{Deserialize, Serialize};

use crate::view::CommitView;

const SETTING_WAREHOUSE: &str = "warehouse";
const SETTING_ACTIVE_BRANCH: &str = "active_branch";

/// Who acts on the lake and through what, for commits and the audit log.
#[derive(Clone, Debug)]
pub struct LakeConfig {
    pub actor: String,
    pub client: String,
}

impl Default for LakeConfig {
    fn default() -> Self {
        let actor = std::env::var("LAKEPLAN_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "local".into());
        LakeConfig {
            actor,
            client: "cli".into(),
        }
    }
}

/// What a caller adds to the commits its writes make (Bauplan's `commit_body` and
/// `commit_properties`): a body under the operation's message, git style (`subject\n\nbody`),
/// and properties beside the `lakeplan.*` ones, which are reserved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommitExtras {
    #[serde(
        default,
        rename = "commit_body",
        skip_serializing_if = "Option::is_none"
    )]
    pub body: Option<String>,
    #[serde(
        default,
        rename = "commit_properties",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub properties: BTreeMap<String, String>,
}

impl CommitExtras {
    /// Parses `k=v` pairs (the CLI's `--commit-property`).
    pub fn new(body: Option<String>, properties: &[String]) -> Result<CommitExtras> {
        let mut props = BTreeMap::new();
        for p in properties {
            let (k, v) = p.split_once('=').ok_or_else(|| {
                Error::InvalidInput(format!("commit property '{p}': expected KEY=VALUE"))
            })?;
            props.insert(k.to_string(), v.to_string());
        }
        let extras = CommitExtras {
            body,
            properties: props,
        };
        extras.validate()?;
        Ok(extras)
    }

    /// Keys are non-empty, without control characters, and not in the reserved `lakeplan.`
    /// space (the operation, client and job ids that `commit --property` filters on).
    pub fn validate(&self) -> Result<()> {
        for k in self.properties.keys() {
            if k.trim().is_empty() || k.chars().any(char::is_control) || k.contains('=') {
                return Err(Error::InvalidInput(format!(
                    "commit property key {k:?}: a key is a non-empty name without '=' or control characters"
                )));
            }
            if k.starts_with("lakeplan.") {
                return Err(Error::InvalidInput(format!(
                    "commit property '{k}': keys starting with 'lakeplan.' are reserved"
                )));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.body.as_deref().is_none_or(|b| b.trim().is_empty()) && self.properties.is_empty()
    }

    /// `message`, with the body under it.
    pub(crate) fn message(&self, message: String) -> String {
        match self.body.as_deref().map(str::trim) {
            Some(body) if !body.is_empty() => format!("{message}\n\n{body}"),
            _ => message,
        }
    }
}

/// An open lake: metastore + warehouse. A clone is another handle on the same lake.
#[derive(Clone)]
pub struct Lake {
    pub(crate) root: PathBuf,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) warehouse: Warehouse,
    pub(crate) config: LakeConfig,
    /// Added to the commits of this handle's writes.
    pub(crate) extras: CommitExtras,
    /// Whether pipeline runs also keep their node cache in the lake itself (metastore and
    /// warehouse), for the other machines of the lake ([`Lake::sharing_node_cache`]).
    pub(crate) shared_node_cache: bool,
    /// Where its imports may read source files ([`Lake::within`]).
    pub(crate) reach: Arc<Reach>,
}

impl Lake {
    /// Opens the lake in folder `root`, creating it (with branch `main` and namespace
    /// `default`, data in `root/warehouse`) on first use.
    pub fn open(root: &Path, config: LakeConfig) -> Result<Lake> {
        Self::open_with(root, None, config)
    }

    /// `lake init --warehouse URL`: creates the lake with its data at `warehouse` (a folder or
    /// `s3://bucket/prefix`). Changing the warehouse of a lake that holds tables is refused:
    /// their files live in the current one.
    pub fn init(root: &Path, warehouse: Option<&str>, config: LakeConfig) -> Result<Lake> {
        Self::open_with(root, warehouse, config)
    }

    fn open_with(root: &Path, warehouse: Option<&str>, config: LakeConfig) -> Result<Lake> {
        // Absolute: sandboxes, job records and the default warehouse hold paths into the lake.
        let root = &std::path::absolute(root).map_err(|e| Error::io(root.display(), e))?;
        std::fs::create_dir_all(root).map_err(|e| Error::io(root.display(), e))?;
        let store = SqliteMetastore::open(&root.join("catalog.db"))?;
        Self::open_on(root, Arc::new(store), warehouse, config)
    }

    /// Opens a lake whose catalog lives in `store` (the server gives each tenant its own) and
    /// whose local state (job records, run folders, the default warehouse) lives in `root`.
    /// `warehouse` is set on first use as in [`Lake::init`].
    pub fn open_on(
        root: &Path,
        store: Arc<dyn Metastore>,
        warehouse: Option<&str>,
        config: LakeConfig,
    ) -> Result<Lake> {
        let root = &std::path::absolute(root).map_err(|e| Error::io(root.display(), e))?;
        std::fs::create_dir_all(root).map_err(|e| Error::io(root.display(), e))?;
        let catalog = Arc::new(Catalog::new(store));
        catalog.init()?;
        let current = catalog.store().get_setting(SETTING_WAREHOUSE)?;
        let url = match (warehouse, current) {
            (None, Some(c)) => c,
            (None, None) => root.join("warehouse").display().to_string(),
            (Some(w), Some(c)) if w.trim_end_matches('/') == c.trim_end_matches('/') => c,
            (Some(w), current) => {
                if let Some(c) = current {
                    if Self::has_tables(&catalog)? {
                        return Err(Error::InvalidOperation {
                            op: "change the warehouse".into(),
                            reason: format!(
                                "the lake at {} already holds tables in {c}",
                                root.display()
                            ),
                        });
                    }
                }
                w.to_string()
            }
        };
        let warehouse = Warehouse::open(&url)?;
        catalog.store().set_setting(SETTING_WAREHOUSE, &url)?;
        Ok(Lake {
            root: root.to_path_buf(),
            catalog,
            warehouse,
            config,
            extras: CommitExtras::default(),
            shared_node_cache: false,
            reach: Arc::new(Reach::everywhere()),
        })
    }

    /// This lake, with the node cache of its runs shared by every machine that opens it: an
    /// entry a run stores is also published to the metastore and the warehouse, and a run that
    /// finds no entry on its machine looks there (server mode, where workers on several
    /// machines run one lake's nodes).
    pub fn sharing_node_cache(mut self) -> Lake {
        self.shared_node_cache = true;
        self
    }

    fn has_tables(catalog: &Catalog) -> Result<bool> {
        for r in catalog.list_refs(None)? {
            if catalog
                .entries(&r.commit)?
                .values()
                .any(|e| e.as_table().is_some())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The same lake acting for another user or client (the server makes one per request):
    /// commits and audit records name `config.actor`. Shares the catalog and warehouse.
    pub fn acting_as(&self, config: LakeConfig) -> Lake {
        Lake {
            root: self.root.clone(),
            catalog: self.catalog.clone(),
            warehouse: self.warehouse.clone(),
            config,
            extras: CommitExtras::default(),
            shared_node_cache: self.shared_node_cache,
            reach: self.reach.clone(),
        }
    }

    /// The same lake, reading source files (imports, table plans, Iceberg REST commits) only
    /// within `reach`: a server's tenant never reads another tenant's storage. Kept by
    /// [`Lake::acting_as`].
    pub fn within(&self, reach: Reach) -> Lake {
        Lake {
            reach: Arc::new(reach),
            ..self.clone()
        }
    }

    /// The same lake, adding `extras` to the commits its writes make (checked first).
    pub fn with_commit_extras(&self, extras: CommitExtras) -> Result<Lake> {
        extras.validate()?;
        Ok(Lake {
            extras,
            ..self.acting_as(self.config.clone())
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn warehouse_url(&self) -> &str {
        self.warehouse.url()
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The branch used when a command names none (`lakeplan checkout` sets it).
    pub fn active_branch(&self) -> Result<String> {
        Ok(self
            .catalog
            .store()
            .get_setting(SETTING_ACTIVE_BRANCH)?
            .unwrap_or_else(|| MAIN_BRANCH.to_string()))
    }

    pub fn set_active_branch(&self, branch: &str) -> Result<()> {
        self.audited("checkout", branch, serde_json::json!({}), || {
            self.catalog.branch_head(branch)?;
            self.catalog
                .store()
                .set_setting(SETTING_ACTIVE_BRANCH, branch)
        })
    }

    /// `r` or the active branch.
    pub fn ref_or_active(&self, r: Option<&str>) -> Result<String> {
        match r {
            Some(r) => Ok(r.to_string()),
            None => self.active_branch(),
        }
    }

    /// Commit metadata: the acting user as author, and properties naming the operation and the
    /// client (`lakeplan.operation`, `lakeplan.client`), which `commit --property` filters on.
    /// A caller's [`CommitExtras`] add a body under the message and properties of its own.
    pub(crate) fn meta(&self, op: &str, message: String) -> CommitMeta {
        let mut properties = self.extras.properties.clone();
        properties.insert("lakeplan.operation".to_string(), op.to_string());
        properties.insert("lakeplan.client".to_string(), self.config.client.clone());
        CommitMeta {
            author: self.config.actor.clone(),
            message: self.extras.message(message),
            properties,
        }
    }

    /// The tree of a ref expression, for reads.
    pub(crate) fn view(&self, r: &str) -> Result<Arc<CommitView>> {
        let resolved = self.catalog.resolve_str(r)?;
        Ok(Arc::new(CommitView {
            catalog: self.catalog.clone(),
            commit: resolved.commit,
            label: r.to_string(),
        }))
    }

    /// The head of `branch` for a write: a plain branch name, not a tag or a commit.
    pub(crate) fn write_base(&self, branch: &str) -> Result<CommitId> {
        let r = self.catalog.resolve_str(branch)?;
        if r.kind != Some(RefKind::Branch) || !r.is_head {
            return Err(Error::NotAWriteBranch(branch.to_string()));
        }
        Ok(r.commit)
    }

    /// Runs a write on `branch`: `f` stages changes over the head's tree, then they are
    /// committed with compare-and-swap of the head (rebased over concurrent commits that touched
    /// other tables; a typed conflict if they touched the same). Nothing is committed if `f`
    /// fails or stages nothing.
    pub(crate) async fn write<T, F, Fut>(
        &self,
        branch: &str,
        op: &str,
        message: String,
        f: F,
    ) -> Result<(T, Option<CommitId>)>
    where
        F: FnOnce(Arc<StagedCatalog>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.write_with(branch, op, message, BTreeMap::new(), f)
            .await
    }

    /// [`Lake::write`] with extra commit properties (a pipeline run's job id, say).
    pub(crate) async fn write_with<T, F, Fut>(
        &self,
        branch: &str,
        op: &str,
        message: String,
        properties: BTreeMap<String, String>,
        f: F,
    ) -> Result<(T, Option<CommitId>)>
    where
        F: FnOnce(Arc<StagedCatalog>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let base = self.write_base(branch)?;
        let view = Arc::new(CommitView {
            catalog: self.catalog.clone(),
            commit: base.clone(),
            label: branch.to_string(),
        });
        let staged = Arc::new(StagedCatalog::new(view, self.warehouse.clone()));
        let out = f(staged.clone()).await?;
        let changes = staged.changes()?;
        if changes.is_empty() {
            return Ok((out, None));
        }
        let mut meta = self.meta(op, message);
        meta.properties.extend(properties);
        let id = self.catalog.commit(branch, &base, &changes, &meta)?;
        Ok((out, Some(id)))
    }

    /// Records `op` in the audit log with its outcome (failures included).
    pub(crate) fn audited<T>(
        &self,
        op: &str,
        target: &str,
        details: serde_json::Value,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let out = f();
        self.record(op, target, details, out.as_ref().err());
        out
    }

    pub(crate) async fn audited_async<T>(
        &self,
        op: &str,
        target: &str,
        details: serde_json::Value,
        f: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let out = f.await;
        self.record(op, target, details, out.as_ref().err());
        out
    }

    /// Appends one record to the audit log: `op` on `target` by this handle's actor and client,
    /// with its outcome (the MCP server records every tool call so).
    pub fn record(&self, op: &str, target: &str, details: serde_json::Value, err: Option<&Error>) {
        let rec = AuditRecord {
            seq: 0,
            timestamp: chrono::Utc::now(),
            actor: self.config.actor.clone(),
            client: self.config.client.clone(),
            operation: op.to_string(),
            target: target.to_string(),
            details,
            result: if err.is_some() { "error" } else { "ok" }.to_string(),
            error: err.map(|e| e.to_string()),
        };
        // An audit write that fails must not hide the operation's own result; it is reported
        // on stderr instead.
        if let Err(e) = self.catalog.store().append_audit(&rec) {
            eprintln!("warning: could not record '{op}' in the audit log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_extras_put_the_body_under_the_message_and_reserve_lakeplan_keys() {
        let e = CommitExtras::new(Some("  why  ".into()), &["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(e.message("Subject".into()), "Subject\n\nwhy");
        assert_eq!(e.properties["b"], "x=y", "the first '=' splits");
        assert!(!e.is_empty());
        let blank = CommitExtras::new(Some(" \n".into()), &[]).unwrap();
        assert_eq!(blank.message("Subject".into()), "Subject");
        assert!(blank.is_empty() && CommitExtras::default().is_empty());
        for bad in ["lakeplan.operation=x", "novalue", "=v", "a\u{7}b=v"] {
            assert!(
                matches!(
                    CommitExtras::new(None, &[bad.into()]),
                    Err(Error::InvalidInput(_))
                ),
                "{bad}"
            );
        }
        // The wire form is Bauplan's field names.
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["commit_body"], "  why  ");
        assert_eq!(json["commit_properties"]["a"], "1");
        assert_eq!(
            serde_json::to_value(CommitExtras::default()).unwrap(),
            serde_json::json!({})
        );
    }
}
