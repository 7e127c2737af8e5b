//! Git-like semantics over a [`Metastore`]: resolving ref expressions, committing with
//! compare-and-swap and rebase, branches and tags, three-way merge, diff and log.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lakeplan_core::{
    validate_ref_name, CommitId, Entry, Error, RefExpr, RefKind, RefPoint, Result,
    DEFAULT_NAMESPACE, MAIN_BRANCH,
};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::metastore::{AuditRecord, CommitRow, Metastore, RefRow};
use crate::tree::{self, Trees};

/// How many times a commit or merge re-reads a moved head before giving up.
const MAX_RETRIES: usize = 1000;

/// How many decoded commits a catalog keeps in memory.
const COMMIT_CACHE_ENTRIES: usize = 16 * 1024;

/// What a ref expression points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The branch or tag named by the expression; `None` for a detached `@hash`.
    pub name: Option<String>,
    /// The kind of that ref; `None` when detached.
    pub kind: Option<RefKind>,
    pub commit: CommitId,
    /// True when the expression was a plain branch name: the only form that can be written to.
    pub is_head: bool,
}

/// Who makes a commit and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMeta {
    pub author: String,
    pub message: String,
    pub properties: BTreeMap<String, String>,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MergeOutcome {
    /// The source is already contained in the target: nothing was written.
    UpToDate,
    /// The target was an ancestor of the source and now points at `commit`.
    FastForward { commit: CommitId },
    /// A new two-parent merge commit `commit` was made on the target.
    Merged { commit: CommitId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffChange {
    Added,
    Removed,
    Changed,
}

/// One key that differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffItem {
    pub key: String,
    pub change: DiffChange,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

/// Which commits [`Catalog::log`] returns: all given conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Matched (anywhere) against the commit message.
    pub message: Option<Regex>,
    /// Matched (anywhere) against the author.
    pub author: Option<Regex>,
    /// Each `(key, value)` must be a property of the commit.
    pub properties: Vec<(String, String)>,
}

impl LogFilter {
    /// A message or author condition: a regular expression, compiled with a bounded size since
    /// it may come from a request; `what` names it in the error.
    pub fn pattern(what: &str, pattern: &str) -> lakeplan_core::Result<Regex> {
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| Error::InvalidInput(format!("bad {what} regex '{pattern}': {e}")))
    }

    /// [`LogFilter::pattern`] of an optional condition.
    pub fn optional(what: &str, pattern: Option<&str>) -> lakeplan_core::Result<Option<Regex>> {
        pattern.map(|p| Self::pattern(what, p)).transpose()
    }

    fn matches(&self, c: &CommitRow) -> bool {
        self.message.as_ref().is_none_or(|r| r.is_match(&c.message))
            && self.author.as_ref().is_none_or(|r| r.is_match(&c.author))
            && self
                .properties
                .iter()
                .all(|(k, v)| c.properties.get(k) == Some(v))
    }
}

/// The versioned catalog of one lake.
pub struct Catalog {
    store: Arc<dyn Metastore>,
    trees: Trees,
    commits: Mutex<Cache<CommitId, Arc<CommitRow>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

fn kind_label(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Branch => "branch",
        RefKind::Tag => "tag",
    }
}

/// Checks a commit hash prefix as written in a ref expression: 8 to 64 hex characters.
fn check_prefix(expr: &RefExpr, prefix: &str) -> Result<String> {
    if (8..=64).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(prefix.to_ascii_lowercase())
    } else {
        Err(Error::InvalidRef {
            expr: expr.to_string(),
            reason: "a commit hash (prefix) has 8 to 64 hex characters".into(),
        })
    }
}

impl Catalog {
    pub fn new(store: Arc<dyn Metastore>) -> Self {
        Catalog {
            trees: Trees::new(Arc::clone(&store)),
            store,
            commits: Mutex::new(Cache::new(COMMIT_CACHE_ENTRIES)),
        }
    }

    pub fn store(&self) -> &Arc<dyn Metastore> {
        &self.store
    }

    /// Makes sure the lake has a `main` branch. The first call writes a root commit (no parents,
    /// author `lakeplan`, message `Initialize lake`) whose tree holds the namespace `default`, and
    /// points `main` at it. Later calls, and racing calls, do nothing.
    pub fn init(&self) -> Result<()> {
        if self.store.get_ref(MAIN_BRANCH)?.is_some() {
            return Ok(());
        }
        let empty = self.empty_tree()?;
        let t = self.trees.apply(
            &empty,
            &[(DEFAULT_NAMESPACE.to_string(), Some(Entry::Namespace))],
        )?;
        let row = CommitRow::new(
            Vec::new(),
            t.root,
            "lakeplan".into(),
            "Initialize lake".into(),
            Utc::now(),
            BTreeMap::new(),
        );
        self.store.put_nodes(&t.nodes)?;
        self.store.put_commit(&row)?;
        match self.store.create_ref(&RefRow {
            name: MAIN_BRANCH.to_string(),
            kind: RefKind::Branch,
            commit: row.id,
        }) {
            Ok(()) | Err(Error::RefExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stores (idempotently) and returns the empty tree's root hash.
    fn empty_tree(&self) -> Result<String> {
        let (hash, body) = tree::empty_root()?;
        self.store.put_nodes(&[(hash.clone(), body)])?;
        Ok(hash)
    }

    // ----- reading -------------------------------------------------------------------------

    fn commit_row(&self, id: &CommitId) -> Result<Arc<CommitRow>> {
        let cached = self
            .commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id);
        if let Some(c) = cached {
            return Ok(c);
        }
        let row = self
            .store
            .get_commit(id)?
            .ok_or_else(|| Error::CommitNotFound(id.to_string()))?;
        if row.compute_id() != *id {
            return Err(Error::Metastore(format!(
                "commit {id} is corrupt: its content does not hash to its id"
            )));
        }
        let row = Arc::new(row);
        self.remember(Arc::clone(&row));
        Ok(row)
    }

    fn remember(&self, row: Arc<CommitRow>) {
        self.commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(row.id.clone(), row, 1);
    }

    pub fn get_commit(&self, id: &CommitId) -> Result<CommitRow> {
        Ok((*self.commit_row(id)?).clone())
    }

    /// Every key of the commit's tree and its entry.
    pub fn entries(&self, commit: &CommitId) -> Result<BTreeMap<String, Entry>> {
        let c = self.commit_row(commit)?;
        self.trees.entries(&c.tree)
    }

    /// The entry at `key` in the commit's tree. Reads the root node and one bucket node.
    pub fn entry(&self, commit: &CommitId, key: &str) -> Result<Option<Entry>> {
        let c = self.commit_row(commit)?;
        self.trees.get(&c.tree, key)
    }

    /// The one commit whose id starts with `prefix`.
    fn find_commit(&self, expr: &RefExpr, prefix: &str) -> Result<CommitId> {
        let prefix = check_prefix(expr, prefix)?;
        let mut found = self.store.commits_with_prefix(&prefix, 2)?;
        match found.len() {
            0 => Err(Error::CommitNotFound(prefix)),
            1 => Ok(found.remove(0)),
            _ => Err(Error::AmbiguousCommit(prefix)),
        }
    }

    /// What a ref expression points at. See [`RefExpr`] for the forms.
    pub fn resolve(&self, expr: &RefExpr) -> Result<Resolved> {
        let (name, at) = match expr {
            RefExpr::Detached(prefix) => {
                return Ok(Resolved {
                    name: None,
                    kind: None,
                    commit: self.find_commit(expr, prefix)?,
                    is_head: false,
                })
            }
            RefExpr::Named { name, at } => (name, at),
        };
        let r = self
            .store
            .get_ref(name)?
            .ok_or_else(|| Error::RefNotFound(name.clone()))?;
        let resolved = |commit: CommitId, is_head: bool| Resolved {
            name: Some(name.clone()),
            kind: Some(r.kind),
            commit,
            is_head,
        };
        match at {
            RefPoint::Head => Ok(resolved(r.commit.clone(), r.kind == RefKind::Branch)),
            RefPoint::Commit(prefix) => {
                let c = self.find_commit(expr, prefix)?;
                if self.is_ancestor(&c, &r.commit)? {
                    Ok(resolved(c, false))
                } else {
                    Err(Error::InvalidRef {
                        expr: expr.to_string(),
                        reason: format!(
                            "commit {} is not on {} '{}'",
                            c.short(),
                            kind_label(r.kind),
                            name
                        ),
                    })
                }
            }
            RefPoint::AsOf(ts) => {
                let mut cur = Some(r.commit.clone());
                while let Some(id) = cur {
                    let c = self.commit_row(&id)?;
                    if c.timestamp <= *ts {
                        return Ok(resolved(id, false));
                    }
                    cur = c.parents.first().cloned();
                }
                Err(Error::InvalidRef {
                    expr: expr.to_string(),
                    reason: format!(
                        "no commit at or before {} on {} '{}'",
                        ts.to_rfc3339(),
                        kind_label(r.kind),
                        name
                    ),
                })
            }
        }
    }

    /// Parses and resolves a ref expression.
    pub fn resolve_str(&self, s: &str) -> Result<Resolved> {
        self.resolve(&RefExpr::parse(s)?)
    }

    /// The head of a branch: `RefNotFound` if there is no such ref, `NotAWriteBranch` for a tag.
    pub fn branch_head(&self, branch: &str) -> Result<CommitId> {
        match self.store.get_ref(branch)? {
            None => Err(Error::RefNotFound(branch.to_string())),
            Some(r) if r.kind == RefKind::Tag => Err(Error::NotAWriteBranch(branch.to_string())),
            Some(r) => Ok(r.commit),
        }
    }

    /// True if `ancestor` is `descendant` or reachable from it through parents.
    pub fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> Result<bool> {
        if ancestor == descendant {
            return Ok(true);
        }
        // Commit timestamps never decrease from parent to child (see `next_timestamp`), so no
        // commit older than `ancestor` can lead to it.
        let floor = self.commit_row(ancestor)?.timestamp;
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([descendant.clone()]);
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let c = self.commit_row(&id)?;
            for p in &c.parents {
                if p == ancestor {
                    return Ok(true);
                }
                if !seen.contains(p) && self.commit_row(p)?.timestamp >= floor {
                    queue.push_back(p.clone());
                }
            }
        }
        Ok(false)
    }

    // ----- refs ----------------------------------------------------------------------------

    /// Branches and/or tags, sorted by name.
    pub fn list_refs(&self, kind: Option<RefKind>) -> Result<Vec<RefRow>> {
        let mut refs: Vec<RefRow> = self
            .store
            .list_refs()?
            .into_iter()
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .collect();
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(refs)
    }

    /// Creates a branch or tag at the commit `from` (a ref expression) points at. Writes one row.
    /// With `if_not_exists`, an existing ref of the same kind is returned unchanged.
    pub fn create_ref(
        &self,
        name: &str,
        kind: RefKind,
        from: &str,
        if_not_exists: bool,
    ) -> Result<RefRow> {
        validate_ref_name(name)?;
        let existing_or_err = |existing: RefRow| {
            if if_not_exists && existing.kind == kind {
                Ok(existing)
            } else {
                Err(Error::RefExists {
                    kind: kind_label(existing.kind),
                    name: name.to_string(),
                })
            }
        };
        if let Some(existing) = self.store.get_ref(name)? {
            return existing_or_err(existing);
        }
        let row = RefRow {
            name: name.to_string(),
            kind,
            commit: self.resolve_str(from)?.commit,
        };
        match self.store.create_ref(&row) {
            Ok(()) => Ok(row),
            Err(e @ Error::RefExists { .. }) => match self.store.get_ref(name)? {
                Some(existing) => existing_or_err(existing),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn check_kind(op: &str, existing: &RefRow, kind: RefKind) -> Result<()> {
        if existing.kind == kind {
            return Ok(());
        }
        Err(Error::InvalidOperation {
            op: format!("{op} {} '{}'", kind_label(kind), existing.name),
            reason: format!(
                "'{}' is a {}, not a {}",
                existing.name,
                kind_label(existing.kind),
                kind_label(kind)
            ),
        })
    }

    /// Deletes a branch or tag. `main` cannot be deleted. Returns false only with `if_exists`
    /// when there was no such ref.
    pub fn delete_ref(&self, name: &str, kind: RefKind, if_exists: bool) -> Result<bool> {
        if name == MAIN_BRANCH {
            return Err(Error::InvalidOperation {
                op: format!("delete {} '{name}'", kind_label(kind)),
                reason: "the main branch always exists".into(),
            });
        }
        let Some(existing) = self.store.get_ref(name)? else {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::RefNotFound(name.to_string()))
            };
        };
        Self::check_kind("delete", &existing, kind)?;
        if self.store.delete_ref(name)? {
            Ok(true)
        } else if if_exists {
            Ok(false)
        } else {
            Err(Error::RefNotFound(name.to_string()))
        }
    }

    /// Renames a branch or tag, keeping what it points at. `main` cannot be renamed.
    pub fn rename_ref(&self, old: &str, new: &str, kind: RefKind) -> Result<RefRow> {
        if old == MAIN_BRANCH {
            return Err(Error::InvalidOperation {
                op: format!("rename {} '{old}'", kind_label(kind)),
                reason: "the main branch cannot be renamed".into(),
            });
        }
        validate_ref_name(new)?;
        let existing = self
            .store
            .get_ref(old)?
            .ok_or_else(|| Error::RefNotFound(old.to_string()))?;
        Self::check_kind("rename", &existing, kind)?;
        self.store.rename_ref(old, new)?;
        self.store
            .get_ref(new)?
            .ok_or_else(|| Error::RefNotFound(new.to_string()))
    }

    // ----- writing -------------------------------------------------------------------------

    /// A timestamp for a new commit: now, but never earlier than any parent's, so that
    /// timestamps never decrease along history (time travel and ancestry walks rely on it).
    fn next_timestamp(parents: &[&CommitRow]) -> DateTime<Utc> {
        parents
            .iter()
            .map(|p| p.timestamp)
            .fold(Utc::now(), |a, b| a.max(b))
    }

    /// The one write path: applies `changes` (key → `Some(entry)` to put, `None` to delete) on top
    /// of `base`, the head of `branch` the writer started from, and moves `branch` to the new
    /// commit by compare-and-swap.
    ///
    /// If the head has moved since `base`, the keys changed between `base` and the current head
    /// are compared with the keys of `changes`: any overlap is `Error::Conflict` (nothing is
    /// written); otherwise the changes are re-applied on the current head and the swap retried.
    pub fn commit(
        &self,
        branch: &str,
        base: &CommitId,
        changes: &[(String, Option<Entry>)],
        meta: &CommitMeta,
    ) -> Result<CommitId> {
        if changes.is_empty() {
            return Err(Error::InvalidOperation {
                op: format!("commit to '{branch}'"),
                reason: "nothing to commit".into(),
            });
        }
        if changes.iter().any(|(k, _)| k.is_empty()) {
            return Err(Error::InvalidInput("a catalog key cannot be empty".into()));
        }
        let keys: BTreeSet<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
        let mut head = self.branch_head(branch)?;
        let base_row = self.commit_row(base)?;
        for _ in 0..MAX_RETRIES {
            let head_row = self.commit_row(&head)?;
            if head != *base {
                let conflicts: Vec<String> = self
                    .trees
                    .diff(&base_row.tree, &head_row.tree)?
                    .into_iter()
                    .map(|(k, _, _)| k)
                    .filter(|k| keys.contains(k.as_str()))
                    .collect();
                if !conflicts.is_empty() {
                    return Err(Error::Conflict {
                        branch: branch.to_string(),
                        tables: conflicts,
                    });
                }
            }
            let t = self.trees.apply(&head_row.tree, changes)?;
            let row = CommitRow::new(
                vec![head.clone()],
                t.root,
                meta.author.clone(),
                meta.message.clone(),
                Self::next_timestamp(&[&head_row]),
                meta.properties.clone(),
            );
            if self.store.commit_and_cas(&t.nodes, &row, branch, &head)? {
                let id = row.id.clone();
                self.remember(Arc::new(row));
                return Ok(id);
            }
            head = self.branch_head(branch)?;
        }
        Err(Error::InvalidOperation {
            op: format!("commit to '{branch}'"),
            reason: format!(
                "the branch moved {MAX_RETRIES} times while retrying; nothing was written, try again"
            ),
        })
    }

    /// The best common ancestor of `a` and `b` (following all parents), or `None` if their
    /// histories are unrelated. When several are equally good (criss-cross merges), the newest.
    pub fn merge_base(&self, a: &CommitId, b: &CommitId) -> Result<Option<CommitId>> {
        const P1: u8 = 1;
        const P2: u8 = 2;
        const STALE: u8 = 4;
        const RESULT: u8 = 8;
        if a == b {
            return Ok(Some(a.clone()));
        }
        // Paint down from both sides, newest first; a commit reached from both is a candidate,
        // and everything below a candidate is stale.
        let mut flags: HashMap<CommitId, u8> = HashMap::new();
        let mut heap: BinaryHeap<(DateTime<Utc>, CommitId)> = BinaryHeap::new();
        flags.insert(a.clone(), P1);
        flags.insert(b.clone(), P2);
        heap.push((self.commit_row(a)?.timestamp, a.clone()));
        heap.push((self.commit_row(b)?.timestamp, b.clone()));
        let mut candidates = Vec::new();
        while heap
            .iter()
            .any(|(_, id)| flags.get(id).copied().unwrap_or(0) & STALE == 0)
        {
            let Some((_, id)) = heap.pop() else { break };
            let own = flags.get(&id).copied().unwrap_or(0);
            let mut f = own & (P1 | P2 | STALE);
            if f & (P1 | P2) == (P1 | P2) {
                if own & RESULT == 0 {
                    flags.insert(id.clone(), own | RESULT);
                    candidates.push(id.clone());
                }
                f |= STALE;
            }
            let c = self.commit_row(&id)?;
            for p in &c.parents {
                let pf = flags.entry(p.clone()).or_insert(0);
                if *pf & f == f {
                    continue;
                }
                *pf |= f;
                heap.push((self.commit_row(p)?.timestamp, p.clone()));
            }
        }
        let mut best: Vec<CommitId> = candidates
            .into_iter()
            .filter(|c| flags.get(c).copied().unwrap_or(0) & STALE == 0)
            .collect();
        if best.len() > 1 {
            let all = best.clone();
            let mut keep = Vec::new();
            for c in &best {
                let mut redundant = false;
                for other in &all {
                    if other != c && self.is_ancestor(c, other)? {
                        redundant = true;
                        break;
                    }
                }
                if !redundant {
                    keep.push(c.clone());
                }
            }
            best = keep;
        }
        let mut best_with_ts = Vec::with_capacity(best.len());
        for c in best {
            best_with_ts.push((self.commit_row(&c)?.timestamp, c));
        }
        Ok(best_with_ts.into_iter().max().map(|(_, c)| c))
    }

    /// Merges `source` (any ref expression) into the branch `into`, three-way at key level
    /// against their merge base. See [`MergeOutcome`]. A key changed on both sides to different
    /// entries is a conflict: `Error::MergeConflict` naming all of them, and nothing is written.
    /// An empty `meta.message` becomes "Merge '<source>' into '<into>'".
    pub fn merge(&self, source: &str, into: &str, meta: &CommitMeta) -> Result<MergeOutcome> {
        match RefExpr::parse(into)? {
            RefExpr::Named {
                at: RefPoint::Head, ..
            } => {}
            _ => return Err(Error::NotAWriteBranch(into.to_string())),
        }
        for _ in 0..MAX_RETRIES {
            let into_head = self.branch_head(into)?;
            let src = self.resolve_str(source)?.commit;
            if self.is_ancestor(&src, &into_head)? {
                return Ok(MergeOutcome::UpToDate);
            }
            let base = self.merge_base(&into_head, &src)?;
            if base.as_ref() == Some(&into_head) {
                if self.store.cas_ref(into, &into_head, &src)? {
                    return Ok(MergeOutcome::FastForward { commit: src });
                }
                continue;
            }
            let base_tree = match &base {
                Some(b) => self.commit_row(b)?.tree.clone(),
                None => self.empty_tree()?,
            };
            let ours_row = self.commit_row(&into_head)?;
            let theirs_row = self.commit_row(&src)?;
            let ours: HashMap<String, Option<Entry>> = self
                .trees
                .diff(&base_tree, &ours_row.tree)?
                .into_iter()
                .map(|(k, _, after)| (k, after))
                .collect();
            let mut conflicts = Vec::new();
            let mut changes = Vec::new();
            for (key, _, after) in self.trees.diff(&base_tree, &theirs_row.tree)? {
                match ours.get(&key) {
                    Some(our_after) if *our_after == after => {}
                    Some(_) => conflicts.push(key),
                    None => changes.push((key, after)),
                }
            }
            if !conflicts.is_empty() {
                return Err(Error::MergeConflict {
                    source_ref: source.to_string(),
                    into: into.to_string(),
                    tables: conflicts,
                });
            }
            let t = self.trees.apply(&ours_row.tree, &changes)?;
            let message = if meta.message.is_empty() {
                format!("Merge '{source}' into '{into}'")
            } else {
                meta.message.clone()
            };
            let row = CommitRow::new(
                vec![into_head.clone(), src.clone()],
                t.root,
                meta.author.clone(),
                message,
                Self::next_timestamp(&[&ours_row, &theirs_row]),
                meta.properties.clone(),
            );
            if self
                .store
                .commit_and_cas(&t.nodes, &row, into, &into_head)?
            {
                let id = row.id.clone();
                self.remember(Arc::new(row));
                return Ok(MergeOutcome::Merged { commit: id });
            }
        }
        Err(Error::InvalidOperation {
            op: format!("merge '{source}' into '{into}'"),
            reason: format!(
                "the branch moved {MAX_RETRIES} times while retrying; nothing was written, try again"
            ),
        })
    }

    // ----- history -------------------------------------------------------------------------

    /// Keys that differ from commit `a` to commit `b`, sorted by key.
    pub fn diff(&self, a: &CommitId, b: &CommitId) -> Result<Vec<DiffItem>> {
        let ta = self.commit_row(a)?.tree.clone();
        let tb = self.commit_row(b)?.tree.clone();
        Ok(self
            .trees
            .diff(&ta, &tb)?
            .into_iter()
            .map(|(key, before, after)| {
                let change = match (&before, &after) {
                    (None, _) => DiffChange::Added,
                    (_, None) => DiffChange::Removed,
                    _ => DiffChange::Changed,
                };
                DiffItem {
                    key,
                    change,
                    before,
                    after,
                }
            })
            .collect())
    }

    /// Commits from `from` following first parents, newest first, that match `filter`; at most
    /// `limit` of them.
    pub fn log(
        &self,
        from: &CommitId,
        filter: &LogFilter,
        limit: Option<usize>,
    ) -> Result<Vec<CommitRow>> {
        let mut out = Vec::new();
        let mut cur = Some(from.clone());
        while let Some(id) = cur {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let c = self.commit_row(&id)?;
            if filter.matches(&c) {
                out.push((*c).clone());
            }
            cur = c.parents.first().cloned();
        }
        Ok(out)
    }

    /// Appends to the audit log; returns the record's sequence number.
    pub fn audit(&self, rec: AuditRecord) -> Result<i64> {
        self.store.append_audit(&rec)
    }
}

#[cfg(test)]
mod tests;
