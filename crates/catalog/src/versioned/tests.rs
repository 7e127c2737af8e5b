use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use lakeplan_core::{sha256_hex, TableEntry};

use super::*;
use crate::sqlite::SqliteMetastore;

fn table(loc: &str) -> Entry {
    Entry::Table(TableEntry {
        metadata_location: format!("file:///w/{loc}.metadata.json"),
        table_uuid: format!("uuid-{loc}"),
        snapshot_id: Some(7),
        schema_id: 0,
        records: 3,
    })
}

fn meta(msg: &str) -> CommitMeta {
    CommitMeta {
        author: "alice".into(),
        message: msg.into(),
        properties: BTreeMap::new(),
    }
}

fn put(key: &str, loc: &str) -> (String, Option<Entry>) {
    (key.to_string(), Some(table(loc)))
}

fn del(key: &str) -> (String, Option<Entry>) {
    (key.to_string(), None)
}

fn lake() -> Catalog {
    let store: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().unwrap());
    let c = Catalog::new(store);
    c.init().unwrap();
    c
}

/// Commits `changes` on top of the branch's current head.
fn commit_on(c: &Catalog, branch: &str, changes: &[(String, Option<Entry>)]) -> CommitId {
    let head = c.branch_head(branch).unwrap();
    c.commit(branch, &head, changes, &meta("change")).unwrap()
}

/// A metastore that counts the tree nodes written through it.
struct Counting {
    inner: Arc<dyn Metastore>,
    nodes_written: AtomicUsize,
}

impl Metastore for Counting {
    fn get_ref(&self, name: &str) -> Result<Option<RefRow>> {
        self.inner.get_ref(name)
    }
    fn list_refs(&self) -> Result<Vec<RefRow>> {
        self.inner.list_refs()
    }
    fn create_ref(&self, row: &RefRow) -> Result<()> {
        self.inner.create_ref(row)
    }
    fn cas_ref(&self, name: &str, expected: &CommitId, new: &CommitId) -> Result<bool> {
        self.inner.cas_ref(name, expected, new)
    }
    fn delete_ref(&self, name: &str) -> Result<bool> {
        self.inner.delete_ref(name)
    }
    fn rename_ref(&self, old: &str, new: &str) -> Result<()> {
        self.inner.rename_ref(old, new)
    }
    fn put_commit(&self, c: &CommitRow) -> Result<()> {
        self.inner.put_commit(c)
    }
    fn get_commit(&self, id: &CommitId) -> Result<Option<CommitRow>> {
        self.inner.get_commit(id)
    }
    fn commits_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<CommitId>> {
        self.inner.commits_with_prefix(prefix, limit)
    }
    fn put_nodes(&self, nodes: &[(String, Vec<u8>)]) -> Result<()> {
        self.nodes_written.fetch_add(nodes.len(), Ordering::SeqCst);
        self.inner.put_nodes(nodes)
    }
    fn get_node(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_node(hash)
    }
    fn commit_and_cas(
        &self,
        nodes: &[(String, Vec<u8>)],
        commit: &CommitRow,
        branch: &str,
        expected: &CommitId,
    ) -> Result<bool> {
        self.nodes_written.fetch_add(nodes.len(), Ordering::SeqCst);
        self.inner.commit_and_cas(nodes, commit, branch, expected)
    }
    fn append_audit(&self, rec: &AuditRecord) -> Result<i64> {
        self.inner.append_audit(rec)
    }
    fn list_audit(&self, limit: Option<usize>) -> Result<Vec<AuditRecord>> {
        self.inner.list_audit(limit)
    }
    fn get_setting(&self, key: &str) -> Result<Option<String>> {
        self.inner.get_setting(key)
    }
    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.inner.set_setting(key, value)
    }
    fn insert_setting(&self, key: &str, value: &str) -> Result<bool> {
        self.inner.insert_setting(key, value)
    }
    fn cas_setting(&self, key: &str, expected: &str, new: &str) -> Result<bool> {
        self.inner.cas_setting(key, expected, new)
    }
    fn delete_setting(&self, key: &str) -> Result<bool> {
        self.inner.delete_setting(key)
    }
    fn list_settings(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.inner.list_settings(prefix)
    }
}

// ----- init, commit ------------------------------------------------------------------------

#[test]
fn init_is_idempotent_and_writes_the_root_commit() {
    let c = lake();
    let head = c.branch_head("main").unwrap();
    c.init().unwrap();
    assert_eq!(
        c.branch_head("main").unwrap(),
        head,
        "second init changes nothing"
    );
    let root = c.get_commit(&head).unwrap();
    assert!(root.parents.is_empty());
    assert_eq!(root.author, "lakeplan");
    assert_eq!(root.message, "Initialize lake");
    let entries = c.entries(&head).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries.get("default"), Some(&Entry::Namespace));
    assert_eq!(c.list_refs(None).unwrap().len(), 1);
    // A second catalog over the same store sees the lake as initialized.
    let c2 = Catalog::new(Arc::clone(c.store()));
    c2.init().unwrap();
    assert_eq!(c2.branch_head("main").unwrap(), head);
}

#[test]
fn commit_puts_and_deletes_entries() {
    let c = lake();
    let root = c.branch_head("main").unwrap();
    let mut m = meta("load trips");
    m.properties.insert("job_id".into(), "j1".into());
    let c1 = c
        .commit(
            "main",
            &root,
            &[put("default.trips", "t1"), put("default.zones", "z1")],
            &m,
        )
        .unwrap();
    assert_eq!(c.branch_head("main").unwrap(), c1);
    let row = c.get_commit(&c1).unwrap();
    assert_eq!(row.parents, vec![root.clone()]);
    assert_eq!(row.author, "alice");
    assert_eq!(row.message, "load trips");
    assert_eq!(row.properties.get("job_id").map(String::as_str), Some("j1"));
    assert_eq!(row.compute_id(), c1);
    assert_eq!(c.entry(&c1, "default.trips").unwrap(), Some(table("t1")));
    assert_eq!(
        c.entry(&root, "default.trips").unwrap(),
        None,
        "old commits are unchanged"
    );

    let c2 = c
        .commit(
            "main",
            &c1,
            &[del("default.trips"), put("default.zones", "z2")],
            &meta("x"),
        )
        .unwrap();
    assert_eq!(c.entry(&c2, "default.trips").unwrap(), None);
    assert_eq!(c.entry(&c2, "default.zones").unwrap(), Some(table("z2")));
    let keys: Vec<String> = c.entries(&c2).unwrap().into_keys().collect();
    assert_eq!(keys, vec!["default", "default.zones"]);
    assert!(c.get_commit(&c2).unwrap().timestamp >= c.get_commit(&c1).unwrap().timestamp);
}

#[test]
fn commit_refuses_nothing_tags_and_missing_refs() {
    let c = lake();
    let root = c.branch_head("main").unwrap();
    match c.commit("main", &root, &[], &meta("x")) {
        Err(Error::InvalidOperation { reason, .. }) => assert!(reason.contains("nothing")),
        other => panic!("{other:?}"),
    }
    c.create_ref("v1", RefKind::Tag, "main", false).unwrap();
    assert!(matches!(
        c.commit("v1", &root, &[put("default.t", "1")], &meta("x")),
        Err(Error::NotAWriteBranch(n)) if n == "v1"
    ));
    assert!(matches!(
        c.commit("nope", &root, &[put("default.t", "1")], &meta("x")),
        Err(Error::RefNotFound(n)) if n == "nope"
    ));
    let bogus = CommitId::from_hash(sha256_hex(b"bogus"));
    assert!(matches!(
        c.commit("main", &bogus, &[put("default.t", "1")], &meta("x")),
        Err(Error::CommitNotFound(_))
    ));
    assert!(matches!(
        c.commit("main", &root, &[put("", "1")], &meta("x")),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(
        c.branch_head("main").unwrap(),
        root,
        "failed commits write nothing"
    );
    assert_eq!(
        c.get_commit(&c.resolve_str("v1").unwrap().commit)
            .unwrap()
            .id,
        root
    );
}

#[test]
fn commit_rebases_over_disjoint_concurrent_changes() {
    let c = lake();
    let base = commit_on(
        &c,
        "main",
        &[put("default.a", "a1"), put("default.b", "b1")],
    );
    // Someone else commits a change to `a` after we read `base`.
    let other = c
        .commit("main", &base, &[put("default.a", "a2")], &meta("other"))
        .unwrap();
    // We commit to `b` from the stale base: rebased onto `other`.
    let ours = c
        .commit("main", &base, &[put("default.b", "b2")], &meta("ours"))
        .unwrap();
    assert_eq!(c.branch_head("main").unwrap(), ours);
    assert_eq!(c.get_commit(&ours).unwrap().parents, vec![other.clone()]);
    assert_eq!(
        c.entry(&ours, "default.a").unwrap(),
        Some(table("a2")),
        "their change kept"
    );
    assert_eq!(
        c.entry(&ours, "default.b").unwrap(),
        Some(table("b2")),
        "ours applied"
    );
}

#[test]
fn commit_conflicts_on_overlapping_concurrent_changes() {
    let c = lake();
    let base = commit_on(
        &c,
        "main",
        &[put("default.a", "a1"), put("default.b", "b1")],
    );
    let other = c
        .commit(
            "main",
            &base,
            &[put("default.a", "a2"), put("default.b", "b2")],
            &meta("o"),
        )
        .unwrap();
    let err = c
        .commit(
            "main",
            &base,
            &[
                put("default.c", "c"),
                put("default.b", "x"),
                del("default.a"),
            ],
            &meta("ours"),
        )
        .unwrap_err();
    match err {
        Error::Conflict { branch, tables } => {
            assert_eq!(branch, "main");
            assert_eq!(tables, vec!["default.a", "default.b"]);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        c.branch_head("main").unwrap(),
        other,
        "a conflict writes nothing"
    );
    assert_eq!(c.entry(&other, "default.c").unwrap(), None);
}

#[test]
fn a_one_key_commit_writes_two_nodes_whatever_the_tree_size() {
    let counting = Arc::new(Counting {
        inner: Arc::new(SqliteMetastore::open_in_memory().unwrap()),
        nodes_written: AtomicUsize::new(0),
    });
    let c = Catalog::new(Arc::clone(&counting) as Arc<dyn Metastore>);
    c.init().unwrap();
    let changes: Vec<_> = (0..1000)
        .map(|i| put(&format!("default.t{i}"), &i.to_string()))
        .collect();
    let big = commit_on(&c, "main", &changes);
    let before = counting.nodes_written.load(Ordering::SeqCst);
    let next = c
        .commit("main", &big, &[put("default.t500", "new")], &meta("one"))
        .unwrap();
    assert_eq!(
        counting.nodes_written.load(Ordering::SeqCst) - before,
        2,
        "one bucket node and one root node"
    );
    // A fresh catalog (cold cache) reads the changed and unchanged keys through shared nodes.
    let cold = Catalog::new(Arc::clone(&counting) as Arc<dyn Metastore>);
    assert_eq!(
        cold.entry(&next, "default.t500").unwrap(),
        Some(table("new"))
    );
    assert_eq!(
        cold.entry(&next, "default.t499").unwrap(),
        Some(table("499"))
    );
    assert_eq!(cold.entries(&next).unwrap().len(), 1001);
    let d = cold.diff(&big, &next).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].key, "default.t500");
}

#[test]
fn commit_timestamps_never_go_backwards() {
    let c = lake();
    let root = c.branch_head("main").unwrap();
    let root_row = c.get_commit(&root).unwrap();
    // A commit from a machine whose clock is an hour ahead.
    let future = CommitRow::new(
        vec![root.clone()],
        root_row.tree.clone(),
        "skewed".into(),
        "from the future".into(),
        Utc::now() + Duration::hours(1),
        BTreeMap::new(),
    );
    assert!(c
        .store()
        .commit_and_cas(&[], &future, "main", &root)
        .unwrap());
    let next = c
        .commit("main", &future.id, &[put("default.t", "1")], &meta("x"))
        .unwrap();
    assert!(c.get_commit(&next).unwrap().timestamp >= future.timestamp);
}

// ----- diff, log -------------------------------------------------------------------------

#[test]
fn diff_reports_added_removed_changed_sorted() {
    let c = lake();
    let a = commit_on(
        &c,
        "main",
        &[put("s.keep", "k"), put("s.chg", "1"), put("s.rm", "r")],
    );
    let b = commit_on(
        &c,
        "main",
        &[put("s.chg", "2"), del("s.rm"), put("s.add", "n")],
    );
    let d = c.diff(&a, &b).unwrap();
    assert_eq!(
        d,
        vec![
            DiffItem {
                key: "s.add".into(),
                change: DiffChange::Added,
                before: None,
                after: Some(table("n"))
            },
            DiffItem {
                key: "s.chg".into(),
                change: DiffChange::Changed,
                before: Some(table("1")),
                after: Some(table("2"))
            },
            DiffItem {
                key: "s.rm".into(),
                change: DiffChange::Removed,
                before: Some(table("r")),
                after: None
            },
        ]
    );
    assert!(c.diff(&b, &b).unwrap().is_empty());
    let rev = c.diff(&b, &a).unwrap();
    assert_eq!(rev[0].change, DiffChange::Removed);
    assert_eq!(rev[2].change, DiffChange::Added);
}

#[test]
fn log_walks_first_parents_with_filters() {
    let c = lake();
    let mut ids = vec![c.branch_head("main").unwrap()];
    for i in 0..5 {
        let mut m = CommitMeta {
            author: if i % 2 == 0 { "alice" } else { "bob" }.into(),
            message: format!("step {i}"),
            properties: BTreeMap::new(),
        };
        m.properties.insert("job".into(), format!("j{}", i % 2));
        let head = c.branch_head("main").unwrap();
        ids.push(
            c.commit("main", &head, &[put(&format!("d.t{i}"), "x")], &m)
                .unwrap(),
        );
    }
    let head = ids[5].clone();
    let all = c.log(&head, &LogFilter::default(), None).unwrap();
    let got: Vec<CommitId> = all.iter().map(|r| r.id.clone()).collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(got, expected, "newest first, down to the root");
    assert_eq!(
        c.log(&head, &LogFilter::default(), Some(2)).unwrap().len(),
        2
    );

    let by_author = LogFilter {
        author: Some(Regex::new("^bob$").unwrap()),
        ..Default::default()
    };
    let msgs: Vec<String> = c
        .log(&head, &by_author, None)
        .unwrap()
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(msgs, vec!["step 3", "step 1"]);

    let by_msg_and_prop = LogFilter {
        message: Some(Regex::new("step [0-3]").unwrap()),
        properties: vec![("job".into(), "j0".into())],
        ..Default::default()
    };
    let msgs: Vec<String> = c
        .log(&head, &by_msg_and_prop, Some(1))
        .unwrap()
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(
        msgs,
        vec!["step 2"],
        "filters combine, limit counts matches"
    );

    // After a merge, the log of main does not list the merged branch's own commits.
    c.create_ref("dev", RefKind::Branch, "main", false).unwrap();
    let d1 = commit_on(&c, "dev", &[put("d.dev", "1")]);
    commit_on(&c, "main", &[put("d.main", "1")]);
    let MergeOutcome::Merged { commit } = c.merge("dev", "main", &meta("")).unwrap() else {
        panic!("expected a merge commit");
    };
    let log = c.log(&commit, &LogFilter::default(), None).unwrap();
    assert!(log.iter().all(|r| r.id != d1));
    assert_eq!(log.len(), 8);
}

// ----- resolve ---------------------------------------------------------------------------

#[test]
fn resolve_every_expression_form() {
    let c = lake();
    let root = c.branch_head("main").unwrap();
    let c1 = commit_on(&c, "main", &[put("default.a", "1")]);
    let c2 = commit_on(&c, "main", &[put("default.a", "2")]);
    c.create_ref(
        "v1",
        RefKind::Tag,
        &format!("main@{}", &c1.as_str()[..10]),
        false,
    )
    .unwrap();
    c.create_ref("dev", RefKind::Branch, "v1", false).unwrap();
    let d1 = commit_on(&c, "dev", &[put("default.b", "1")]);

    let r = c.resolve_str("main").unwrap();
    assert_eq!(
        r,
        Resolved {
            name: Some("main".into()),
            kind: Some(RefKind::Branch),
            commit: c2.clone(),
            is_head: true
        }
    );
    let r = c.resolve_str("v1").unwrap();
    assert_eq!(
        (r.kind, r.commit.clone(), r.is_head),
        (Some(RefKind::Tag), c1.clone(), false)
    );

    // name@hash: prefix or full id, must be on the ref.
    let r = c
        .resolve_str(&format!("main@{}", &c1.as_str()[..8]))
        .unwrap();
    assert_eq!(
        (r.name.as_deref(), &r.commit, r.is_head),
        (Some("main"), &c1, false)
    );
    let r = c
        .resolve_str(&format!("main@{}", c2.as_str().to_uppercase()))
        .unwrap();
    assert_eq!(r.commit, c2);
    assert_eq!(
        c.resolve_str(&format!("dev@{}", root)).unwrap().commit,
        root
    );
    match c.resolve_str(&format!("main@{}", &d1.as_str()[..12])) {
        Err(Error::InvalidRef { reason, .. }) => assert!(reason.contains("not on branch 'main'")),
        other => panic!("a commit of another branch must be InvalidRef, got {other:?}"),
    }
    match c.resolve_str(&format!("v1@{}", &c2.as_str()[..12])) {
        Err(Error::InvalidRef { reason, .. }) => assert!(reason.contains("tag 'v1'")),
        other => panic!("{other:?}"),
    }

    // @hash: any commit, detached.
    let r = c.resolve_str(&format!("@{}", &d1.as_str()[..9])).unwrap();
    assert_eq!(
        r,
        Resolved {
            name: None,
            kind: None,
            commit: d1.clone(),
            is_head: false
        }
    );

    // name*ts: head as of a time.
    let t1 = c.get_commit(&c1).unwrap().timestamp;
    let t2 = c.get_commit(&c2).unwrap().timestamp;
    let t0 = c.get_commit(&root).unwrap().timestamp;
    let at = |ts: DateTime<Utc>| {
        c.resolve(&RefExpr::Named {
            name: "main".into(),
            at: RefPoint::AsOf(ts),
        })
    };
    assert_eq!(at(t2).unwrap().commit, c2);
    assert_eq!(at(t2 + Duration::days(1)).unwrap().commit, c2);
    assert_eq!(at(t1).unwrap().commit, c1);
    if t1 < t2 {
        assert_eq!(at(t2 - Duration::nanoseconds(1)).unwrap().commit, c1);
    }
    assert_eq!(at(t0).unwrap().commit, root);
    match at(t0 - Duration::seconds(1)) {
        Err(Error::InvalidRef { reason, .. }) => assert!(reason.contains("no commit at or before")),
        other => panic!("{other:?}"),
    }
    assert!(!at(t2).unwrap().is_head);
    // The string form parses RFC 3339.
    let s = format!("main*{}", (t2 + Duration::seconds(1)).to_rfc3339());
    assert_eq!(c.resolve_str(&s).unwrap().commit, c2);

    // Unknown refs and commits.
    assert!(matches!(c.resolve_str("nope"), Err(Error::RefNotFound(n)) if n == "nope"));
    let unknown = (0..16u8)
        .map(|d| format!("{d:x}{}", "0".repeat(9)))
        .find(|p| {
            [&root, &c1, &c2, &d1]
                .iter()
                .all(|id| !id.as_str().starts_with(p.as_str()))
        })
        .unwrap();
    assert!(matches!(
        c.resolve_str(&format!("@{unknown}")),
        Err(Error::CommitNotFound(_))
    ));
    assert!(matches!(
        c.resolve_str(&format!("main@{unknown}")),
        Err(Error::CommitNotFound(_))
    ));
    assert!(matches!(
        c.resolve_str("@abc"),
        Err(Error::InvalidRef { .. })
    ));
    assert!(matches!(
        c.resolve(&RefExpr::Detached("xyz".into())),
        Err(Error::InvalidRef { .. })
    ));
}

#[test]
fn resolve_reports_ambiguous_prefixes() {
    let c = lake();
    // Two stored commits whose ids share their first 10 hex digits (ids are not checked on
    // put; the prefix lookup happens before any commit is read).
    let root = c.branch_head("main").unwrap();
    let r = c.get_commit(&root).unwrap();
    for tail in ["0", "1"] {
        let mut fake = r.clone();
        fake.id = CommitId::parse(&format!("abcdef0123{}", tail.repeat(54))).unwrap();
        c.store().put_commit(&fake).unwrap();
    }
    assert!(matches!(
        c.resolve_str("@abcdef0123"),
        Err(Error::AmbiguousCommit(p)) if p == "abcdef0123"
    ));
    assert!(matches!(
        c.resolve_str("main@abcdef01"),
        Err(Error::AmbiguousCommit(_))
    ));
    // One more digit makes it unique, but the content no longer matches the id: refused.
    assert!(matches!(
        c.resolve_str("@abcdef01231")
            .map(|r| c.get_commit(&r.commit)),
        Ok(Err(Error::Metastore(_)))
    ));
}

// ----- refs ------------------------------------------------------------------------------

#[test]
fn ref_rules() {
    let c = lake();
    let c1 = commit_on(&c, "main", &[put("default.a", "1")]);
    let tag = c.create_ref("v1.0", RefKind::Tag, "main", false).unwrap();
    assert_eq!(
        tag,
        RefRow {
            name: "v1.0".into(),
            kind: RefKind::Tag,
            commit: c1.clone()
        }
    );
    assert!(matches!(
        c.branch_head("v1.0"),
        Err(Error::NotAWriteBranch(_))
    ));
    let dev = c
        .create_ref("alice.dev", RefKind::Branch, "v1.0", false)
        .unwrap();
    assert_eq!(dev.commit, c1);

    // Names are unique across kinds.
    match c.create_ref("v1.0", RefKind::Branch, "main", false) {
        Err(Error::RefExists { kind, name }) => assert_eq!((kind, name.as_str()), ("tag", "v1.0")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.create_ref("alice.dev", RefKind::Branch, "main", false),
        Err(Error::RefExists { kind: "branch", .. })
    ));
    // if_not_exists returns the existing ref of the same kind, untouched.
    commit_on(&c, "main", &[put("default.a", "2")]);
    let again = c
        .create_ref("alice.dev", RefKind::Branch, "main", true)
        .unwrap();
    assert_eq!(again.commit, c1);
    assert!(matches!(
        c.create_ref("v1.0", RefKind::Branch, "main", true),
        Err(Error::RefExists { .. })
    ));
    assert!(matches!(
        c.create_ref("bad..name", RefKind::Branch, "main", false),
        Err(Error::InvalidRefName { .. })
    ));
    assert!(matches!(
        c.create_ref("x", RefKind::Branch, "nope", false),
        Err(Error::RefNotFound(_))
    ));
    assert!(c.store().get_ref("x").unwrap().is_none());

    let names: Vec<String> = c
        .list_refs(None)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["alice.dev", "main", "v1.0"]);
    let tags: Vec<String> = c
        .list_refs(Some(RefKind::Tag))
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(tags, vec!["v1.0"]);

    // main is permanent.
    assert!(matches!(
        c.delete_ref("main", RefKind::Branch, false),
        Err(Error::InvalidOperation { .. })
    ));
    assert!(matches!(
        c.rename_ref("main", "trunk", RefKind::Branch),
        Err(Error::InvalidOperation { .. })
    ));
    assert!(c.branch_head("main").is_ok());

    // Kind must match.
    match c.delete_ref("v1.0", RefKind::Branch, false) {
        Err(e @ Error::InvalidOperation { .. }) => {
            assert!(
                e.to_string().contains("'v1.0' is a tag, not a branch"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.rename_ref("alice.dev", "x", RefKind::Tag),
        Err(Error::InvalidOperation { .. })
    ));

    // Rename keeps the commit; the old name is gone.
    let renamed = c
        .rename_ref("alice.dev", "alice.feature", RefKind::Branch)
        .unwrap();
    assert_eq!(renamed.commit, c1);
    assert_eq!(renamed.kind, RefKind::Branch);
    assert!(matches!(
        c.branch_head("alice.dev"),
        Err(Error::RefNotFound(_))
    ));
    assert!(matches!(
        c.rename_ref("alice.feature", "main", RefKind::Branch),
        Err(Error::RefExists { .. })
    ));
    assert!(matches!(
        c.rename_ref("alice.feature", "a..b", RefKind::Branch),
        Err(Error::InvalidRefName { .. })
    ));
    assert!(matches!(
        c.rename_ref("ghost", "g2", RefKind::Branch),
        Err(Error::RefNotFound(_))
    ));

    // Delete.
    assert!(c.delete_ref("v1.0", RefKind::Tag, false).unwrap());
    assert!(!c.delete_ref("v1.0", RefKind::Tag, true).unwrap());
    assert!(matches!(
        c.delete_ref("v1.0", RefKind::Tag, false),
        Err(Error::RefNotFound(_))
    ));
    assert!(c
        .delete_ref("alice.feature", RefKind::Branch, false)
        .unwrap());
    let names: Vec<String> = c
        .list_refs(None)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["main"]);
    // Deleting a branch deletes no commit.
    assert_eq!(c.get_commit(&c1).unwrap().id, c1);
}

// ----- merge -----------------------------------------------------------------------------

#[test]
fn merge_base_on_a_branching_history() {
    let c = lake();
    let a1 = commit_on(&c, "main", &[put("m.a", "1")]);
    c.create_ref("dev", RefKind::Branch, "main", false).unwrap();
    let a2 = commit_on(&c, "main", &[put("m.a", "2")]);
    let d1 = commit_on(&c, "dev", &[put("m.d", "1")]);
    let d2 = commit_on(&c, "dev", &[put("m.d", "2")]);
    assert_eq!(c.merge_base(&a2, &d2).unwrap(), Some(a1.clone()));
    assert_eq!(c.merge_base(&d2, &a2).unwrap(), Some(a1.clone()));
    assert_eq!(
        c.merge_base(&d2, &d1).unwrap(),
        Some(d1.clone()),
        "ancestor is the base"
    );
    assert_eq!(c.merge_base(&a2, &a2).unwrap(), Some(a2.clone()));

    let MergeOutcome::Merged { commit: m } = c.merge("dev", "main", &meta("")).unwrap() else {
        panic!("expected a merge commit");
    };
    let d3 = commit_on(&c, "dev", &[put("m.d", "3")]);
    assert_eq!(
        c.merge_base(&m, &d3).unwrap(),
        Some(d2.clone()),
        "after a merge, base moves"
    );
    let a3 = commit_on(&c, "main", &[put("m.a", "3")]);
    assert_eq!(c.merge_base(&a3, &d3).unwrap(), Some(d2.clone()));

    // Criss-cross: each side merges the other; the base is one of the two best candidates.
    c.create_ref("x", RefKind::Branch, "main", false).unwrap();
    c.create_ref("y", RefKind::Branch, "main", false).unwrap();
    let x1 = commit_on(&c, "x", &[put("c.x", "1")]);
    let y1 = commit_on(&c, "y", &[put("c.y", "1")]);
    c.merge(&format!("@{}", &y1.as_str()[..12]), "x", &meta(""))
        .unwrap();
    c.merge(&format!("@{}", &x1.as_str()[..12]), "y", &meta(""))
        .unwrap();
    let xh = c.branch_head("x").unwrap();
    let yh = c.branch_head("y").unwrap();
    let base = c.merge_base(&xh, &yh).unwrap().unwrap();
    assert!(
        base == x1 || base == y1,
        "criss-cross base is x1 or y1, got {base}"
    );

    // Unrelated histories have no base.
    let lonely = CommitRow::new(
        vec![],
        c.get_commit(&a1).unwrap().tree,
        "z".into(),
        "orphan".into(),
        Utc::now(),
        BTreeMap::new(),
    );
    c.store().put_commit(&lonely).unwrap();
    assert_eq!(c.merge_base(&lonely.id, &a3).unwrap(), None);
}

#[test]
fn merge_fast_forwards() {
    let c = lake();
    c.create_ref("dev", RefKind::Branch, "main", false).unwrap();
    commit_on(&c, "dev", &[put("default.a", "1")]);
    let d2 = commit_on(&c, "dev", &[put("default.b", "1")]);
    let out = c.merge("dev", "main", &meta("")).unwrap();
    assert_eq!(out, MergeOutcome::FastForward { commit: d2.clone() });
    assert_eq!(c.branch_head("main").unwrap(), d2);
    assert_eq!(c.branch_head("dev").unwrap(), d2);
}

#[test]
fn merge_up_to_date_writes_nothing() {
    let c = lake();
    c.create_ref("dev", RefKind::Branch, "main", false).unwrap();
    let d1 = commit_on(&c, "dev", &[put("default.a", "1")]);
    let main = c.branch_head("main").unwrap();
    // main is an ancestor of dev: merging main into dev is a no-op.
    assert_eq!(
        c.merge("main", "dev", &meta("")).unwrap(),
        MergeOutcome::UpToDate
    );
    assert_eq!(
        c.merge("dev", "dev", &meta("")).unwrap(),
        MergeOutcome::UpToDate
    );
    let tag_expr = format!("dev@{}", &main.as_str()[..8]);
    assert_eq!(
        c.merge(&tag_expr, "dev", &meta("")).unwrap(),
        MergeOutcome::UpToDate
    );
    assert_eq!(c.branch_head("dev").unwrap(), d1);
    assert_eq!(c.branch_head("main").unwrap(), main);
    assert!(c.store().get_commit(&d1).unwrap().is_some());
}

#[test]
fn merge_of_disjoint_changes_makes_a_two_parent_commit() {
    let c = lake();
    commit_on(&c, "main", &[put("default.shared", "0")]);
    c.create_ref("dev", RefKind::Branch, "main", false).unwrap();
    let m1 = commit_on(&c, "main", &[put("default.t1", "main")]);
    let d1 = commit_on(
        &c,
        "dev",
        &[put("default.t2", "dev"), del("default.shared")],
    );
    let out = c.merge("dev", "main", &meta("")).unwrap();
    let MergeOutcome::Merged { commit } = out else {
        panic!("expected Merged, got {out:?}");
    };
    let row = c.get_commit(&commit).unwrap();
    assert_eq!(row.parents, vec![m1, d1.clone()]);
    assert_eq!(row.message, "Merge 'dev' into 'main'");
    assert_eq!(row.author, "alice");
    assert_eq!(c.branch_head("main").unwrap(), commit);
    assert_eq!(
        c.branch_head("dev").unwrap(),
        d1,
        "the source does not move"
    );
    let e = c.entries(&commit).unwrap();
    assert_eq!(e.get("default.t1"), Some(&table("main")));
    assert_eq!(e.get("default.t2"), Some(&table("dev")));
    assert_eq!(
        e.get("default.shared"),
        None,
        "a deletion on one side is taken"
    );
    // Now dev is contained in main.
    assert_eq!(
        c.merge("dev", "main", &meta("")).unwrap(),
        MergeOutcome::UpToDate
    );
    // And main can be merged back into dev by fast-forward.
    assert_eq!(
        c.merge("main", "dev", &meta("")).unwrap(),
        MergeOutcome::FastForward { commit }
    );
    // A custom message is kept.
    commit_on(&c, "dev", &[put("default.t3", "x")]);
    commit_on(&c, "main", &[put("default.t4", "x")]);
    let MergeOutcome::Merged { commit } = c.merge("dev", "main", &meta("sync dev")).unwrap() else {
        panic!("expected Merged");
    };
    assert_eq!(c.get_commit(&commit).unwrap().message, "sync dev");
}

#[test]
fn merge_conflict_names_every_table_and_writes_nothing() {
    let c = lake();
    commit_on(
        &c,
        "main",
        &[
            put("default.a", "0"),
            put("default.b", "0"),
            put("default.c", "0"),
        ],
    );
    c.create_ref("dev", RefKind::Branch, "main", false).unwrap();
    let m = commit_on(
        &c,
        "main",
        &[
            put("default.b", "main"),
            put("default.a", "main"),
            put("default.x", "1"),
        ],
    );
    let d = commit_on(
        &c,
        "dev",
        &[
            put("default.a", "dev"),
            del("default.b"),
            put("default.c", "dev"),
        ],
    );
    match c.merge("dev", "main", &meta("")) {
        Err(Error::MergeConflict {
            source_ref,
            into,
            tables,
        }) => {
            assert_eq!(source_ref, "dev");
            assert_eq!(into, "main");
            assert_eq!(tables, vec!["default.a", "default.b"]);
        }
        other => panic!("expected MergeConflict, got {other:?}"),
    }
    assert_eq!(c.branch_head("main").unwrap(), m);
    assert_eq!(c.branch_head("dev").unwrap(), d);
    assert_eq!(c.log(&m, &LogFilter::default(), None).unwrap().len(), 3);
}

#[test]
fn identical_change_on_both_sides_is_not_a_conflict() {
    let c = lake();
    commit_on(&c, "main", &[put("default.a", "0")]);
    c.create_ref("dev", RefKind::Branch, "main", false).unwrap();
    let m = commit_on(
        &c,
        "main",
        &[put("default.a", "same"), put("default.m", "1")],
    );
    let d = commit_on(
        &c,
        "dev",
        &[put("default.a", "same"), put("default.d", "1")],
    );
    let MergeOutcome::Merged { commit } = c.merge("dev", "main", &meta("")).unwrap() else {
        panic!("expected Merged");
    };
    assert_eq!(c.get_commit(&commit).unwrap().parents, vec![m, d]);
    let e = c.entries(&commit).unwrap();
    assert_eq!(e.get("default.a"), Some(&table("same")));
    assert_eq!(e.get("default.m"), Some(&table("1")));
    assert_eq!(e.get("default.d"), Some(&table("1")));
}

#[test]
fn merge_targets_must_be_branches() {
    let c = lake();
    c.create_ref("v1", RefKind::Tag, "main", false).unwrap();
    commit_on(&c, "main", &[put("default.a", "1")]);
    assert!(matches!(
        c.merge("main", "v1", &meta("")),
        Err(Error::NotAWriteBranch(_))
    ));
    let head = c.branch_head("main").unwrap();
    assert!(matches!(
        c.merge("v1", &format!("main@{}", &head.as_str()[..8]), &meta("")),
        Err(Error::NotAWriteBranch(_))
    ));
    assert!(matches!(
        c.merge("v1", "nope", &meta("")),
        Err(Error::RefNotFound(_))
    ));
    // A tag can be a merge source.
    c.create_ref("dev", RefKind::Branch, "v1", false).unwrap();
    assert_eq!(
        c.merge("v1", "dev", &meta("")).unwrap(),
        MergeOutcome::UpToDate
    );
}

#[test]
fn audit_wrapper_appends() {
    let c = lake();
    let rec = AuditRecord {
        seq: 0,
        timestamp: Utc::now(),
        actor: "alice".into(),
        client: "test".into(),
        operation: "branch.create".into(),
        target: "dev".into(),
        details: serde_json::json!({"from": "main"}),
        result: "ok".into(),
        error: None,
    };
    let s1 = c.audit(rec.clone()).unwrap();
    let s2 = c.audit(rec).unwrap();
    assert!(s2 > s1);
    let all = c.store().list_audit(None).unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![s2, s1]);
}

/// Informal throughput check: run with `--nocapture` to see the rate.
#[test]
fn commit_throughput_single_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Metastore> =
        Arc::new(SqliteMetastore::open(&dir.path().join("catalog.db")).unwrap());
    let c = Catalog::new(store);
    c.init().unwrap();
    let tables: Vec<_> = (0..100)
        .map(|i| put(&format!("default.t{i}"), "0"))
        .collect();
    commit_on(&c, "main", &tables);
    let n = 2000;
    let mut head = c.branch_head("main").unwrap();
    let started = std::time::Instant::now();
    for i in 0..n {
        let key = format!("default.t{}", i % 100);
        head = c
            .commit("main", &head, &[put(&key, &i.to_string())], &meta("bump"))
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "single-writer commits: {n} in {secs:.3}s = {:.0} commits/s (file-backed SQLite)",
        f64::from(n) / secs
    );
    assert_eq!(c.branch_head("main").unwrap(), head);
    assert_eq!(
        c.log(&head, &LogFilter::default(), None).unwrap().len(),
        n as usize + 2
    );
    assert_eq!(c.entry(&head, "default.t99").unwrap(), Some(table("1999")));
}
