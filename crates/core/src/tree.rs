use serde::{Deserialize, Serialize};

/// What a commit's tree maps a key to. Namespace keys are `ns`; table keys are `ns.table`;
/// object keys are `object:<key>` ([`object_key`]), which no namespace or table key can be
/// (identifiers have no `:`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Namespace,
    Table(TableEntry),
    Object(ObjectEntry),
}

impl Entry {
    pub fn as_table(&self) -> Option<&TableEntry> {
        match self {
            Entry::Table(t) => Some(t),
            Entry::Namespace | Entry::Object(_) => None,
        }
    }

    pub fn as_object(&self) -> Option<&ObjectEntry> {
        match self {
            Entry::Object(o) => Some(o),
            Entry::Namespace | Entry::Table(_) => None,
        }
    }
}

/// A Python object saved by a pipeline function (`bauplan.store.save_obj`): a pointer to one
/// immutable file in the warehouse, named by the SHA-256 of its bytes (its pickle).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub location: String,
    pub sha256: String,
    pub size: u64,
}

/// Where the tree keeps the object saved under `key`.
pub const OBJECT_KEY_PREFIX: &str = "object:";

/// The tree key of the object saved under `key`.
pub fn object_key(key: &str) -> String {
    format!("{OBJECT_KEY_PREFIX}{key}")
}

/// The longest object key, in bytes.
pub const MAX_OBJECT_KEY: usize = 255;

/// Checks a `save_obj`/`load_obj` key: 1 to 255 bytes, no control characters.
pub fn validate_object_key(key: &str) -> crate::Result<()> {
    let reason = if key.is_empty() {
        Some("an object key cannot be empty")
    } else if key.len() > MAX_OBJECT_KEY {
        Some("an object key is at most 255 bytes")
    } else if key.chars().any(char::is_control) {
        Some("an object key cannot contain control characters")
    } else {
        None
    };
    match reason {
        Some(r) => Err(crate::Error::InvalidInput(format!(
            "object key {key:?}: {r}"
        ))),
        None => Ok(()),
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
