//! What the service returns: plain serializable records, printed by the CLI as tables or JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RefInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CommitInfo {
    pub hash: String,
    pub parent_hashes: Vec<String>,
    pub author: String,
    pub date: String,
    pub message: String,
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableSummary {
    pub namespace: String,
    pub name: String,
    pub records: u64,
    pub snapshot_id: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FieldInfo {
    pub id: i32,
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub required: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PartitionInfo {
    pub name: String,
    pub source: String,
    pub transform: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableInfo {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub fqn: String,
    #[serde(rename = "ref")]
    pub at: String,
    pub metadata_location: String,
    pub current_schema_id: i32,
    pub current_snapshot_id: Option<i64>,
    pub snapshots: usize,
    pub records: u64,
    pub size: u64,
    pub data_files: u64,
    pub last_updated_ms: i64,
    pub fields: Vec<FieldInfo>,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DiffInfo {
    pub table: String,
    /// added | removed | changed (namespaces: namespace_added | namespace_removed; objects
    /// saved by pipeline functions, keyed `object:<key>`: object_added | object_removed |
    /// object_changed)
    pub change: String,
    pub schema_changed: bool,
    pub snapshot_before: Option<i64>,
    pub snapshot_after: Option<i64>,
    pub records_before: Option<u64>,
    pub records_after: Option<u64>,
    pub records_delta: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MergeInfo {
    /// up_to_date | fast_forward | merged
    pub outcome: String,
    pub source: String,
    pub into: String,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WriteInfo {
    pub branch: String,
    /// The commit the write made; none (`null`) if it changed nothing (an import of files
    /// already imported).
    pub hash: Option<String>,
}
