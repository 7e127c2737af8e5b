//! The raw storage behind the versioned catalog: refs, commits, content-addressed tree nodes, the
//! audit log and settings.
//!
//! A [`Metastore`] knows nothing about merge, diff or ref expressions; those live in
//! [`crate::Catalog`]. Every method is a small, self-contained operation so that a PostgreSQL
//! implementation can follow the SQLite one; [`crate::contract::run_contract_suite`] checks any
//! implementation against the behaviour described here.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use lakeplan_core::{sha256_hex, CommitId, RefKind, Result};
use serde::{Deserialize, Serialize};

/// Raw storage of the catalog. Implementations must be safe to use from many threads, and several
/// instances (threads or processes) may share one underlying database.
///
/// Every stored value must round-trip exactly: in particular a commit's timestamp keeps its
/// nanoseconds, because the commit id is a hash over it.
pub trait Metastore: Send + Sync {
    /// The ref called `name` (branch or tag), if any.
    fn get_ref(&self, name: &str) -> Result<Option<RefRow>>;
    /// Every ref, branches and tags, in no particular order.
    fn list_refs(&self) -> Result<Vec<RefRow>>;
    /// Creates a ref. Names are unique across branches and tags: `Error::RefExists` (naming the
    /// kind of the existing ref) if any ref has this name.
    fn create_ref(&self, row: &RefRow) -> Result<()>;
    /// Moves branch `name` from `expected` to `new`. Returns false if the head is no longer
    /// `expected`, the ref is gone, or it is a tag (tags never move).
    fn cas_ref(&self, name: &str, expected: &CommitId, new: &CommitId) -> Result<bool>;
    /// Deletes a ref of either kind; false if there was none.
    fn delete_ref(&self, name: &str) -> Result<bool>;
    /// Renames a ref, keeping its kind and commit. `Error::RefNotFound(old)` if `old` does not
    /// exist, `Error::RefExists` if `new` does.
    fn rename_ref(&self, old: &str, new: &str) -> Result<()>;
    /// Stores a commit. Idempotent: storing a commit id that exists already does nothing.
    fn put_commit(&self, c: &CommitRow) -> Result<()>;
    fn get_commit(&self, id: &CommitId) -> Result<Option<CommitRow>>;
    /// Up to `limit` commit ids starting with `prefix` (lowercase hex), sorted.
    fn commits_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<CommitId>>;
    /// Stores content-addressed tree nodes `(hash, body)`. Idempotent.
    fn put_nodes(&self, nodes: &[(String, Vec<u8>)]) -> Result<()>;
    fn get_node(&self, hash: &str) -> Result<Option<Vec<u8>>>;
    /// Atomically: checks that `branch` is a branch whose head is `expected`, stores `nodes` and
    /// `commit`, and moves the branch to `commit.id`. Returns false, and writes nothing, if the
    /// head moved, the branch is gone, or it is a tag.
    fn commit_and_cas(
        &self,
        nodes: &[(String, Vec<u8>)],
        commit: &CommitRow,
        branch: &str,
        expected: &CommitId,
    ) -> Result<bool>;
    /// Appends a record to the append-only audit log; `rec.seq` is ignored. Returns the record's
    /// sequence number, which increases with every append.
    fn append_audit(&self, rec: &AuditRecord) -> Result<i64>;
    /// Audit records, newest first, at most `limit` of them.
    fn list_audit(&self, limit: Option<usize>) -> Result<Vec<AuditRecord>>;
    fn get_setting(&self, key: &str) -> Result<Option<String>>;
    /// Sets (inserts or replaces) a setting.
    fn set_setting(&self, key: &str, value: &str) -> Result<()>;
    /// Inserts a setting unless the key has one, in one step (servers sharing a metastore may
    /// race to create the same key: one wins); true if it was inserted.
    fn insert_setting(&self, key: &str, value: &str) -> Result<bool>;
    /// Replaces a setting's value with `new` if it is exactly `expected`, in one step (what
    /// makes a read-modify-write of a stored record safe among writers); false, writing
    /// nothing, if the value differs or the setting is gone.
    fn cas_setting(&self, key: &str, expected: &str, new: &str) -> Result<bool>;
    /// Removes a setting; true if there was one.
    fn delete_setting(&self, key: &str) -> Result<bool>;
    /// Every setting whose key starts with `prefix` (taken literally: `%` and `_` are not
    /// wildcards), sorted by key.
    fn list_settings(&self, prefix: &str) -> Result<Vec<(String, String)>>;
    /// The `limit` settings with the greatest keys that start with `prefix`, greatest first
    /// (what a listing of the newest of many time-keyed entries reads, and no more).
    fn last_settings(&self, prefix: &str, limit: usize) -> Result<Vec<(String, String)>> {
        let mut all = self.list_settings(prefix)?;
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }
}

/// The least key greater than every key that starts with `prefix` (for a range scan on an
/// index), when one is simple to say: the prefix with its last byte, ASCII below `~`, raised.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if !(b' '..b'~').contains(&last) {
        return None;
    }
    let mut end = prefix[..prefix.len() - 1].to_string();
    end.push(char::from(last + 1));
    Some(end)
}

/// A branch or a tag and the commit it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRow {
    pub name: String,
    pub kind: RefKind,
    pub commit: CommitId,
}

/// A commit as stored. `id` is the hash of every other field (see [`CommitRow::compute_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRow {
    pub id: CommitId,
    pub parents: Vec<CommitId>,
    /// Hash of the root node of the commit's tree.
    pub tree: String,
    pub author: String,
    pub message: String,
    pub timestamp: DateTime<Utc>,
    pub properties: BTreeMap<String, String>,
}

/// The canonical form hashed into a commit id: fields in a fixed order, the timestamp as RFC 3339
/// UTC with nanoseconds, properties sorted by key.
#[derive(Serialize)]
struct CanonicalCommit<'a> {
    parents: Vec<&'a str>,
    tree: &'a str,
    author: &'a str,
    message: &'a str,
    timestamp: String,
    properties: &'a BTreeMap<String, String>,
}

impl CommitRow {
    /// Builds a commit and computes its id.
    pub fn new(
        parents: Vec<CommitId>,
        tree: String,
        author: String,
        message: String,
        timestamp: DateTime<Utc>,
        properties: BTreeMap<String, String>,
    ) -> Self {
        let mut row = CommitRow {
            id: CommitId::from_hash(String::new()),
            parents,
            tree,
            author,
            message,
            timestamp,
            properties,
        };
        row.id = row.compute_id();
        row
    }

    /// The id this commit's content hashes to: SHA-256 of its canonical JSON serialization.
    pub fn compute_id(&self) -> CommitId {
        let canonical = CanonicalCommit {
            parents: self.parents.iter().map(|p| p.as_str()).collect(),
            tree: &self.tree,
            author: &self.author,
            message: &self.message,
            timestamp: format_timestamp(&self.timestamp),
            properties: &self.properties,
        };
        // Serializing strings and a string map to JSON cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        CommitId::from_hash(sha256_hex(&bytes))
    }
}

/// RFC 3339 in UTC with nanoseconds and a `Z` suffix: the one textual form of a timestamp used in
/// hashes and in storage.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// One entry of the append-only operations log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Assigned by the metastore; 0 when appending.
    pub seq: i64,
    pub timestamp: DateTime<Utc>,
    pub actor: String,
    pub client: String,
    pub operation: String,
    pub target: String,
    pub details: serde_json::Value,
    /// "ok" or "error".
    pub result: String,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> CommitRow {
        let mut props = BTreeMap::new();
        props.insert("job".to_string(), "42".to_string());
        CommitRow::new(
            vec![CommitId::from_hash(sha256_hex(b"parent"))],
            sha256_hex(b"tree"),
            "alice".into(),
            "load trips".into(),
            Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap(),
            props,
        )
    }

    #[test]
    fn commit_id_is_deterministic() {
        let a = sample();
        let b = sample();
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.as_str().len(), 64);
        assert_eq!(a.compute_id(), a.id);
        // The canonical form is pinned: the id of this exact content must never change, or every
        // stored commit would stop verifying.
        let expected = {
            let json = format!(
                "{{\"parents\":[\"{}\"],\"tree\":\"{}\",\"author\":\"alice\",\"message\":\"load trips\",\"timestamp\":\"2023-11-14T22:13:20.123456789Z\",\"properties\":{{\"job\":\"42\"}}}}",
                sha256_hex(b"parent"),
                sha256_hex(b"tree")
            );
            sha256_hex(json.as_bytes())
        };
        assert_eq!(a.id.as_str(), expected);
    }

    #[test]
    fn every_field_changes_the_id() {
        let base = sample();
        let mut variants = Vec::new();
        let mut c = base.clone();
        c.parents.push(CommitId::from_hash(sha256_hex(b"other")));
        variants.push(c);
        let mut c = base.clone();
        c.parents.clear();
        variants.push(c);
        let mut c = base.clone();
        c.tree = sha256_hex(b"tree2");
        variants.push(c);
        let mut c = base.clone();
        c.author = "bob".into();
        variants.push(c);
        let mut c = base.clone();
        c.message = "load trips!".into();
        variants.push(c);
        let mut c = base.clone();
        c.timestamp += chrono::Duration::nanoseconds(1);
        variants.push(c);
        let mut c = base.clone();
        c.properties.insert("job".into(), "43".into());
        variants.push(c);
        let mut c = base.clone();
        c.properties.insert("code".into(), "x".into());
        variants.push(c);
        let mut ids = std::collections::HashSet::new();
        ids.insert(base.id.clone());
        for v in variants {
            let id = v.compute_id();
            assert_ne!(id, base.id, "changing a field must change the id: {v:?}");
            assert!(ids.insert(id), "two different commits hashed alike");
        }
    }

    #[test]
    fn parent_order_matters() {
        let p1 = CommitId::from_hash(sha256_hex(b"1"));
        let p2 = CommitId::from_hash(sha256_hex(b"2"));
        let t = Utc.timestamp_opt(1, 0).unwrap();
        let a = CommitRow::new(
            vec![p1.clone(), p2.clone()],
            "t".into(),
            "a".into(),
            "m".into(),
            t,
            BTreeMap::new(),
        );
        let b = CommitRow::new(
            vec![p2, p1],
            "t".into(),
            "a".into(),
            "m".into(),
            t,
            BTreeMap::new(),
        );
        assert_ne!(a.id, b.id);
    }
}
