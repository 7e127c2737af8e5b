//! How the SQL metastores (SQLite, PostgreSQL) write catalog values into columns and read them
//! back: one encoding, so both backends store the same text and decode it with the same checks.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lakeplan_core::{CommitId, Error, RefKind, Result};

use crate::metastore::{format_timestamp, AuditRecord, CommitRow};

pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Metastore(format!("corrupt catalog row: {what}"))
}

/// The `kind` column of a ref.
pub(crate) fn kind_str(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Branch => "BRANCH",
        RefKind::Tag => "TAG",
    }
}

pub(crate) fn parse_kind(s: &str) -> Result<RefKind> {
    match s {
        "BRANCH" => Ok(RefKind::Branch),
        "TAG" => Ok(RefKind::Tag),
        other => Err(corrupt(format!("unknown ref kind '{other}'"))),
    }
}

/// The kind as `Error::RefExists` names it.
pub(crate) fn kind_label(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Branch => "branch",
        RefKind::Tag => "tag",
    }
}

pub(crate) fn parse_commit_id(s: &str) -> Result<CommitId> {
    CommitId::parse(s).map_err(|_| corrupt(format!("bad commit id '{s}'")))
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(format!("bad timestamp '{s}': {e}")))
}

/// A commit's columns as stored: parents and properties as JSON, the timestamp in
/// [`format_timestamp`] form (nanoseconds kept, so the id still verifies).
pub(crate) struct CommitColumns {
    pub parents: String,
    pub timestamp: String,
    pub properties: String,
}

pub(crate) fn encode_commit(c: &CommitRow) -> Result<CommitColumns> {
    let parents: Vec<&str> = c.parents.iter().map(|p| p.as_str()).collect();
    Ok(CommitColumns {
        parents: serde_json::to_string(&parents)
            .map_err(|e| Error::Internal(format!("encoding commit parents: {e}")))?,
        timestamp: format_timestamp(&c.timestamp),
        properties: serde_json::to_string(&c.properties)
            .map_err(|e| Error::Internal(format!("encoding commit properties: {e}")))?,
    })
}

/// Rebuilds commit `id` from its stored columns.
pub(crate) fn decode_commit(
    id: &CommitId,
    parents: &str,
    tree: String,
    author: String,
    message: String,
    timestamp: &str,
    properties: &str,
) -> Result<CommitRow> {
    let parents: Vec<String> =
        serde_json::from_str(parents).map_err(|e| corrupt(format!("commit {id}: parents: {e}")))?;
    let parents = parents
        .iter()
        .map(|p| parse_commit_id(p))
        .collect::<Result<Vec<_>>>()?;
    let properties: BTreeMap<String, String> = serde_json::from_str(properties)
        .map_err(|e| corrupt(format!("commit {id}: properties: {e}")))?;
    Ok(CommitRow {
        id: id.clone(),
        parents,
        tree,
        author,
        message,
        timestamp: parse_ts(timestamp)?,
        properties,
    })
}

pub(crate) fn encode_audit_details(rec: &AuditRecord) -> Result<String> {
    serde_json::to_string(&rec.details)
        .map_err(|e| Error::Internal(format!("encoding audit details: {e}")))
}

/// An audit record's stored columns, in table order.
pub(crate) struct AuditColumns {
    pub seq: i64,
    pub timestamp: String,
    pub actor: String,
    pub client: String,
    pub operation: String,
    pub target: String,
    pub details: String,
    pub result: String,
    pub error: Option<String>,
}

pub(crate) fn decode_audit(row: AuditColumns) -> Result<AuditRecord> {
    let seq = row.seq;
    Ok(AuditRecord {
        seq,
        timestamp: parse_ts(&row.timestamp)?,
        actor: row.actor,
        client: row.client,
        operation: row.operation,
        target: row.target,
        details: serde_json::from_str(&row.details)
            .map_err(|e| corrupt(format!("audit record {seq}: details: {e}")))?,
        result: row.result,
        error: row.error,
    })
}
