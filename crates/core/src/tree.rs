use serde::{Deserialize, Serialize};

/// What a commit's tree maps a key to. Namespace keys are `ns`; table keys are `ns.table`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Namespace,
    Table(TableEntry),
}

impl Entry {
    pub fn as_table(&self) -> Option<&TableEntry> {
        match self {
            Entry::Table(t) => Some(t),
            Entry::Namespace => None,
        }
    }
}

/// A table as one commit sees it: a pointer to one immutable Iceberg metadata file plus the few
/// facts that diff and listing need without opening it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    pub metadata_location: String,
    pub table_uuid: String,
    pub snapshot_id: Option<i64>,
    pub schema_id: i32,
    pub records: u64,
}

/// A read-only view of one commit's tree: what the storage and SQL layers see of the catalog.
/// The versioned catalog implements it for a resolved commit; neither reader needs to know refs.
pub trait TreeView: Send + Sync {
    /// The entry under `key`, if any.
    fn entry(&self, key: &str) -> crate::Result<Option<Entry>>;
    /// Every entry, sorted by key.
    fn entries(&self) -> crate::Result<std::collections::BTreeMap<String, Entry>>;
    /// Where this view points, for messages (`main`, `main@1a2b…`).
    fn label(&self) -> String;
}
