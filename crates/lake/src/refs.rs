use lakeplan_catalog::{CommitRow, DiffChange, LogFilter, MergeOutcome, RefRow};
use lakeplan_core::{Entry, RefKind, Result};
use serde_json::json;

use crate::{CommitInfo, DiffInfo, Lake, MergeInfo, RefInfo};

fn ref_info(r: &RefRow) -> RefInfo {
    RefInfo {
        name: r.name.clone(),
        kind: r.kind.to_string(),
        hash: r.commit.to_string(),
    }
}

pub(crate) fn commit_info(c: &CommitRow) -> CommitInfo {
    CommitInfo {
        hash: c.id.to_string(),
        parent_hashes: c.parents.iter().map(|p| p.to_string()).collect(),
        author: c.author.clone(),
        date: c
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        message: c.message.clone(),
        properties: c.properties.clone(),
    }
}

impl Lake {
    pub fn list_refs(&self, kind: RefKind) -> Result<Vec<RefInfo>> {
        Ok(self
            .catalog
            .list_refs(Some(kind))?
            .iter()
            .map(ref_info)
            .collect())
    }

    pub fn get_ref(&self, name: &str, kind: RefKind) -> Result<RefInfo> {
        let r = self
            .catalog
            .list_refs(Some(kind))?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| lakeplan_core::Error::RefNotFound(name.to_string()))?;
        Ok(ref_info(&r))
    }

    pub fn create_ref(
        &self,
        name: &str,
        kind: RefKind,
        from: Option<&str>,
        if_not_exists: bool,
    ) -> Result<RefInfo> {
        let from = self.ref_or_active(from)?;
        self.audited(
            &format!("{kind}.create"),
            name,
            json!({"from_ref": from, "if_not_exists": if_not_exists}),
            || {
                Ok(ref_info(&self.catalog.create_ref(
                    name,
                    kind,
                    &from,
                    if_not_exists,
                )?))
            },
        )
    }

    pub fn delete_ref(&self, name: &str, kind: RefKind, if_exists: bool) -> Result<bool> {
        self.audited(
            &format!("{kind}.delete"),
            name,
            json!({"if_exists": if_exists}),
            || {
                let deleted = self.catalog.delete_ref(name, kind, if_exists)?;
                if deleted && kind == RefKind::Branch && self.active_branch()? == name {
                    self.catalog
                        .store()
                        .set_setting("active_branch", lakeplan_core::MAIN_BRANCH)?;
                }
                Ok(deleted)
            },
        )
    }

    pub fn rename_ref(&self, old: &str, new: &str, kind: RefKind) -> Result<RefInfo> {
        self.audited(
            &format!("{kind}.rename"),
            old,
            json!({"new_name": new}),
            || {
                let r = self.catalog.rename_ref(old, new, kind)?;
                if kind == RefKind::Branch && self.active_branch()? == old {
                    self.catalog.store().set_setting("active_branch", new)?;
                }
                Ok(ref_info(&r))
            },
        )
    }

    /// Tables added, removed and changed from `a` to `b` (`b` defaults to the active branch).
    pub fn diff(&self, a: &str, b: Option<&str>) -> Result<Vec<DiffInfo>> {
        let b = self.ref_or_active(b)?;
        let ca = self.catalog.resolve_str(a)?.commit;
        let cb = self.catalog.resolve_str(&b)?.commit;
        Ok(self
            .catalog
            .diff(&ca, &cb)?
            .into_iter()
            .map(|d| {
                let before = d.before.as_ref().and_then(Entry::as_table);
                let after = d.after.as_ref().and_then(Entry::as_table);
                // The kind of what changed: a key holds one kind in every commit.
                let kind = match d.before.as_ref().or(d.after.as_ref()) {
                    Some(Entry::Namespace) => "namespace_",
                    Some(Entry::Object(_)) => "object_",
                    _ => "",
                };
                let change = match (d.change, kind) {
                    (DiffChange::Changed, "namespace_") | (DiffChange::Changed, "") => {
                        "changed".to_string()
                    }
                    (DiffChange::Added, k) => format!("{k}added"),
                    (DiffChange::Removed, k) => format!("{k}removed"),
                    (DiffChange::Changed, k) => format!("{k}changed"),
                };
                let rb = before.map(|t| t.records);
                let ra = after.map(|t| t.records);
                DiffInfo {
                    table: d.key,
                    change,
                    schema_changed: match (before, after) {
                        (Some(x), Some(y)) => {
                            x.schema_id != y.schema_id || x.table_uuid != y.table_uuid
                        }
                        _ => false,
                    },
                    snapshot_before: before.and_then(|t| t.snapshot_id),
                    snapshot_after: after.and_then(|t| t.snapshot_id),
                    records_before: rb,
                    records_after: ra,
                    records_delta: ra.unwrap_or(0) as i64 - rb.unwrap_or(0) as i64,
                }
            })
            .collect())
    }

    /// Merges `source` into `into` (default: the active branch).
    pub fn merge(
        &self,
        source: &str,
        into: Option<&str>,
        message: Option<&str>,
    ) -> Result<MergeInfo> {
        let into = self.ref_or_active(into)?;
        self.audited(
            "branch.merge",
            &into,
            json!({"source": source, "message": message}),
            || {
                let msg = message
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("Merge '{source}' into '{into}'"));
                let outcome = self
                    .catalog
                    .merge(source, &into, &self.meta("branch.merge", msg))?;
                let (kind, hash) = match outcome {
                    MergeOutcome::UpToDate => ("up_to_date", self.catalog.branch_head(&into)?),
                    MergeOutcome::FastForward { commit } => ("fast_forward", commit),
                    MergeOutcome::Merged { commit } => ("merged", commit),
                };
                Ok(MergeInfo {
                    outcome: kind.to_string(),
                    source: source.to_string(),
                    into: into.clone(),
                    hash: hash.to_string(),
                })
            },
        )
    }

    /// The log of `r` (default: the active branch): first parents, newest first.
    pub fn commits(
        &self,
        r: Option<&str>,
        filter: &LogFilter,
        limit: Option<usize>,
    ) -> Result<Vec<CommitInfo>> {
        let r = self.ref_or_active(r)?;
        let head = self.catalog.resolve_str(&r)?.commit;
        Ok(self
            .catalog
            .log(&head, filter, limit)?
            .iter()
            .map(commit_info)
            .collect())
    }
}
