use std::collections::BTreeMap;
use std::sync::Arc;

use lakeplan_catalog::Catalog;
use lakeplan_core::{CommitId, Entry, Result, TreeView};
use lakeplan_sql::RefResolver;

/// One commit's tree, as the storage and SQL layers see it.
pub(crate) struct CommitView {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) commit: CommitId,
    pub(crate) label: String,
}

impl TreeView for CommitView {
    fn entry(&self, key: &str) -> Result<Option<Entry>> {
        self.catalog.entry(&self.commit, key)
    }

    fn entries(&self) -> Result<BTreeMap<String, Entry>> {
        self.catalog.entries(&self.commit)
    }

    fn label(&self) -> String {
        self.label.clone()
    }
}

/// Resolves catalog names in SQL (`"dev".default.trips`) as ref expressions.
pub(crate) struct Resolver {
    pub(crate) catalog: Arc<Catalog>,
}

impl RefResolver for Resolver {
    fn resolve(&self, expr: &str) -> Result<Arc<dyn TreeView>> {
        let r = self.catalog.resolve_str(expr)?;
        Ok(Arc::new(CommitView {
            catalog: self.catalog.clone(),
            commit: r.commit,
            label: expr.to_string(),
        }))
    }
}
