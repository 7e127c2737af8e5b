//! The behaviour every [`Metastore`] implementation must have, written once.
//!
//! Call [`run_contract_suite`] from a test with a factory that returns a fresh, empty metastore on
//! every call (the suite calls it once per group of checks). It panics, naming the check, on the
//! first deviation. The SQLite metastore runs it in memory and on a file; a PostgreSQL metastore
//! should run it against a fresh schema per call.
//!
//! Checks that need raw access to the backing database (for example that the audit table refuses
//! `UPDATE` and `DELETE` even from outside the API) belong to the implementation's own tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use chrono::{TimeZone, Utc};
use lakeplan_core::{sha256_hex, CommitId, Error, RefKind};

use crate::metastore::{AuditRecord, CommitRow, Metastore, RefRow};

/// Runs every contract check against metastores made by `make`.
pub fn run_contract_suite(make: &dyn Fn() -> Arc<dyn Metastore>) {
    refs_crud(make().as_ref());
    ref_names_unique_across_kinds(make().as_ref());
    cas(make().as_ref());
    cas_is_atomic_under_threads(make());
    commits_roundtrip(make().as_ref());
    commit_prefix_lookup(make().as_ref());
    nodes(make().as_ref());
    commit_and_cas_atomicity(make().as_ref());
    audit_append_only(make().as_ref());
    settings(make().as_ref());
    setting_cas(make().as_ref());
    setting_cas_is_atomic_under_threads(make());
}

fn cid(seed: &str) -> CommitId {
    CommitId::from_hash(sha256_hex(seed.as_bytes()))
}

fn branch(name: &str, commit: &CommitId) -> RefRow {
    RefRow {
        name: name.into(),
        kind: RefKind::Branch,
        commit: commit.clone(),
    }
}

fn tag(name: &str, commit: &CommitId) -> RefRow {
    RefRow {
        name: name.into(),
        kind: RefKind::Tag,
        commit: commit.clone(),
    }
}

fn commit(n: u32, parents: Vec<CommitId>) -> CommitRow {
    let mut props = BTreeMap::new();
    props.insert("n".to_string(), n.to_string());
    props.insert("job_id".to_string(), "j-1".to_string());
    CommitRow::new(
        parents,
        sha256_hex(format!("tree{n}").as_bytes()),
        format!("author{n}"),
        format!("message {n}\nwith a second line and 'quotes' \"and\" unicode é"),
        Utc.timestamp_opt(1_700_000_000 + i64::from(n), 123_456_789 + n)
            .single()
            .expect("valid timestamp"),
        props,
    )
}

fn refs_crud(m: &dyn Metastore) {
    let c1 = cid("c1");
    let c2 = cid("c2");
    assert_eq!(
        m.get_ref("main").expect("get_ref"),
        None,
        "empty store has no refs"
    );
    assert!(m.list_refs().expect("list_refs").is_empty());

    m.create_ref(&branch("main", &c1)).expect("create main");
    m.create_ref(&tag("v1", &c1)).expect("create tag");
    m.create_ref(&branch("alice.dev", &c2))
        .expect("create branch");
    assert_eq!(
        m.get_ref("main").expect("get_ref"),
        Some(branch("main", &c1))
    );
    assert_eq!(m.get_ref("v1").expect("get_ref"), Some(tag("v1", &c1)));
    let mut all = m.list_refs().expect("list_refs");
    all.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        all,
        vec![
            branch("alice.dev", &c2),
            branch("main", &c1),
            tag("v1", &c1)
        ]
    );

    // rename keeps kind and commit
    m.rename_ref("alice.dev", "alice.feature").expect("rename");
    assert_eq!(m.get_ref("alice.dev").expect("get_ref"), None);
    assert_eq!(
        m.get_ref("alice.feature").expect("get_ref"),
        Some(branch("alice.feature", &c2))
    );
    m.rename_ref("v1", "v1.0").expect("rename tag");
    assert_eq!(m.get_ref("v1.0").expect("get_ref"), Some(tag("v1.0", &c1)));
    match m.rename_ref("nope", "other") {
        Err(Error::RefNotFound(n)) => assert_eq!(n, "nope"),
        other => panic!("rename of a missing ref must be RefNotFound, got {other:?}"),
    }
    match m.rename_ref("alice.feature", "main") {
        Err(Error::RefExists { kind, name }) => {
            assert_eq!(name, "main");
            assert_eq!(kind, "branch");
        }
        other => panic!("rename onto an existing ref must be RefExists, got {other:?}"),
    }
    assert_eq!(
        m.get_ref("alice.feature").expect("get_ref"),
        Some(branch("alice.feature", &c2)),
        "a failed rename changes nothing"
    );

    assert!(m.delete_ref("alice.feature").expect("delete"));
    assert!(!m.delete_ref("alice.feature").expect("delete twice"));
    assert!(m.delete_ref("v1.0").expect("delete tag"));
    assert_eq!(m.get_ref("v1.0").expect("get_ref"), None);
    assert_eq!(m.list_refs().expect("list_refs"), vec![branch("main", &c1)]);
}

fn ref_names_unique_across_kinds(m: &dyn Metastore) {
    let c1 = cid("c1");
    let c2 = cid("c2");
    m.create_ref(&branch("x", &c1)).expect("create branch");
    match m.create_ref(&tag("x", &c2)) {
        Err(Error::RefExists { kind, name }) => {
            assert_eq!(name, "x");
            assert_eq!(kind, "branch", "RefExists names the existing ref's kind");
        }
        other => panic!("a tag named like a branch must be RefExists, got {other:?}"),
    }
    match m.create_ref(&branch("x", &c2)) {
        Err(Error::RefExists { .. }) => {}
        other => panic!("duplicate branch must be RefExists, got {other:?}"),
    }
    m.create_ref(&tag("t", &c1)).expect("create tag");
    match m.create_ref(&branch("t", &c2)) {
        Err(Error::RefExists { kind, .. }) => assert_eq!(kind, "tag"),
        other => panic!("a branch named like a tag must be RefExists, got {other:?}"),
    }
    assert_eq!(m.get_ref("x").expect("get_ref"), Some(branch("x", &c1)));
    assert_eq!(m.get_ref("t").expect("get_ref"), Some(tag("t", &c1)));
    m.create_ref(&branch("y", &c1)).expect("create");
    match m.rename_ref("y", "t") {
        Err(Error::RefExists { kind, .. }) => assert_eq!(kind, "tag"),
        other => panic!("rename onto a tag's name must be RefExists, got {other:?}"),
    }
}

fn cas(m: &dyn Metastore) {
    let (c1, c2, c3) = (cid("c1"), cid("c2"), cid("c3"));
    m.create_ref(&branch("main", &c1)).expect("create");
    assert!(
        m.cas_ref("main", &c1, &c2).expect("cas"),
        "cas from the head succeeds"
    );
    assert_eq!(
        m.get_ref("main").expect("get").map(|r| r.commit),
        Some(c2.clone())
    );
    assert!(
        !m.cas_ref("main", &c1, &c3).expect("cas"),
        "cas from a stale head fails"
    );
    assert_eq!(
        m.get_ref("main").expect("get").map(|r| r.commit),
        Some(c2.clone()),
        "a failed cas leaves the ref alone"
    );
    assert!(
        !m.cas_ref("gone", &c1, &c2).expect("cas"),
        "cas of a missing ref fails"
    );
    assert_eq!(
        m.get_ref("gone").expect("get"),
        None,
        "cas never creates a ref"
    );
    m.create_ref(&tag("v1", &c1)).expect("create tag");
    assert!(!m.cas_ref("v1", &c1, &c2).expect("cas"), "tags never move");
    assert_eq!(m.get_ref("v1").expect("get"), Some(tag("v1", &c1)));
}

fn cas_is_atomic_under_threads(m: Arc<dyn Metastore>) {
    let start = cid("start");
    m.create_ref(&branch("main", &start)).expect("create");
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let m = Arc::clone(&m);
            let barrier = Arc::clone(&barrier);
            let start = start.clone();
            std::thread::spawn(move || {
                barrier.wait();
                m.cas_ref("main", &start, &cid(&format!("t{i}")))
                    .expect("cas")
            })
        })
        .collect();
    let wins: Vec<usize> = handles
        .into_iter()
        .enumerate()
        .filter_map(|(i, h)| h.join().expect("thread").then_some(i))
        .collect();
    assert_eq!(
        wins.len(),
        1,
        "exactly one concurrent cas wins, got {wins:?}"
    );
    assert_eq!(
        m.get_ref("main").expect("get").map(|r| r.commit),
        Some(cid(&format!("t{}", wins[0])))
    );
}

fn commits_roundtrip(m: &dyn Metastore) {
    let root = commit(0, vec![]);
    let child = commit(1, vec![root.id.clone()]);
    let merge = commit(2, vec![child.id.clone(), root.id.clone()]);
    assert_eq!(m.get_commit(&root.id).expect("get"), None);
    for c in [&root, &child, &merge] {
        m.put_commit(c).expect("put_commit");
    }
    m.put_commit(&child).expect("put_commit is idempotent");
    for c in [&root, &child, &merge] {
        let got = m.get_commit(&c.id).expect("get").expect("stored commit");
        assert_eq!(&got, c, "commit round-trips exactly (incl. nanoseconds)");
        assert_eq!(
            got.compute_id(),
            c.id,
            "stored commit still hashes to its id"
        );
    }
    assert_eq!(m.get_commit(&cid("missing")).expect("get"), None);
}

fn commit_prefix_lookup(m: &dyn Metastore) {
    let mut ids: Vec<CommitId> = (0..40).map(|n| commit(n, vec![]).id).collect();
    for n in 0..40 {
        m.put_commit(&commit(n, vec![])).expect("put");
    }
    ids.sort();
    let one = &ids[7];
    assert_eq!(
        m.commits_with_prefix(&one.as_str()[..8], 10)
            .expect("prefix"),
        vec![one.clone()]
    );
    assert_eq!(
        m.commits_with_prefix(one.as_str(), 10).expect("full id"),
        vec![one.clone()]
    );
    assert_eq!(
        m.commits_with_prefix(&one.as_str()[..8].to_ascii_uppercase(), 10)
            .expect("upper-case prefix"),
        vec![one.clone()]
    );
    // 40 ids over 16 leading hex digits: some digit is shared (pigeonhole).
    let first = ids
        .iter()
        .map(|i| &i.as_str()[..1])
        .find(|d| ids.iter().filter(|i| i.as_str().starts_with(*d)).count() >= 2)
        .expect("a shared leading digit");
    let expected: Vec<CommitId> = ids
        .iter()
        .filter(|i| i.as_str().starts_with(first))
        .cloned()
        .collect();
    assert_eq!(m.commits_with_prefix(first, 100).expect("prefix"), expected);
    assert_eq!(
        m.commits_with_prefix(first, 1).expect("prefix"),
        expected[..1].to_vec(),
        "limit is honoured"
    );
    let absent = (0..16u8)
        .map(|d| format!("{d:x}{}", "0".repeat(7)))
        .chain(std::iter::once("ffffffffffff".to_string()))
        .find(|p| !ids.iter().any(|i| i.as_str().starts_with(p.as_str())))
        .expect("some prefix matches nothing");
    assert!(m
        .commits_with_prefix(&absent, 10)
        .expect("prefix")
        .is_empty());
}

fn nodes(m: &dyn Metastore) {
    let a = (sha256_hex(b"node a"), b"node a".to_vec());
    let b = (sha256_hex(b"node b"), vec![0u8, 255, 1, 2, 3]);
    assert_eq!(m.get_node(&a.0).expect("get"), None);
    m.put_nodes(&[a.clone(), b.clone()]).expect("put");
    m.put_nodes(std::slice::from_ref(&a))
        .expect("put is idempotent");
    m.put_nodes(&[]).expect("put of nothing");
    assert_eq!(m.get_node(&a.0).expect("get"), Some(a.1.clone()));
    assert_eq!(
        m.get_node(&b.0).expect("get"),
        Some(b.1.clone()),
        "bodies are binary-safe"
    );
}

fn commit_and_cas_atomicity(m: &dyn Metastore) {
    let root = commit(0, vec![]);
    m.put_commit(&root).expect("put");
    m.create_ref(&branch("main", &root.id)).expect("create");
    m.create_ref(&tag("v1", &root.id)).expect("create tag");

    let node = (sha256_hex(b"n1"), b"n1".to_vec());
    let c1 = commit(1, vec![root.id.clone()]);
    assert!(m
        .commit_and_cas(std::slice::from_ref(&node), &c1, "main", &root.id)
        .expect("commit_and_cas"));
    assert_eq!(
        m.get_ref("main").expect("get").map(|r| r.commit),
        Some(c1.id.clone())
    );
    assert_eq!(m.get_commit(&c1.id).expect("get"), Some(c1.clone()));
    assert_eq!(m.get_node(&node.0).expect("get"), Some(node.1.clone()));

    // Stale expected head: nothing is written.
    let stale_node = (sha256_hex(b"n2"), b"n2".to_vec());
    let c2 = commit(2, vec![root.id.clone()]);
    assert!(!m
        .commit_and_cas(std::slice::from_ref(&stale_node), &c2, "main", &root.id)
        .expect("commit_and_cas"));
    assert_eq!(
        m.get_ref("main").expect("get").map(|r| r.commit),
        Some(c1.id.clone()),
        "a failed commit_and_cas leaves the branch alone"
    );
    assert_eq!(
        m.get_commit(&c2.id).expect("get"),
        None,
        "and stores no commit"
    );
    assert_eq!(m.get_node(&stale_node.0).expect("get"), None, "and no node");

    // Tags and missing branches are never written.
    let c3 = commit(3, vec![root.id.clone()]);
    assert!(!m
        .commit_and_cas(&[], &c3, "v1", &root.id)
        .expect("commit_and_cas on a tag"));
    assert_eq!(m.get_ref("v1").expect("get"), Some(tag("v1", &root.id)));
    assert!(!m
        .commit_and_cas(&[], &c3, "nope", &root.id)
        .expect("commit_and_cas on a missing branch"));
    assert_eq!(m.get_ref("nope").expect("get"), None);
    assert_eq!(m.get_commit(&c3.id).expect("get"), None);

    // Committing an id that exists already (idempotent put) still moves the branch.
    let c4 = commit(4, vec![c1.id.clone()]);
    m.put_commit(&c4).expect("put");
    assert!(m
        .commit_and_cas(&[], &c4, "main", &c1.id)
        .expect("commit_and_cas"));
    assert_eq!(
        m.get_ref("main").expect("get").map(|r| r.commit),
        Some(c4.id)
    );
}

fn audit_record(i: u32, ok: bool) -> AuditRecord {
    AuditRecord {
        seq: 0,
        timestamp: Utc
            .timestamp_opt(1_700_000_000 + i64::from(i), i)
            .single()
            .expect("valid timestamp"),
        actor: format!("user{i}"),
        client: "cli/0.1".into(),
        operation: "commit".into(),
        target: "main".into(),
        details: serde_json::json!({ "i": i, "tables": ["default.t"], "nested": { "x": null } }),
        result: if ok { "ok" } else { "error" }.into(),
        error: if ok {
            None
        } else {
            Some(format!("failure {i}"))
        },
    }
}

fn audit_append_only(m: &dyn Metastore) {
    assert!(m.list_audit(None).expect("list").is_empty());
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(
            m.append_audit(&audit_record(i, i.is_multiple_of(2)))
                .expect("append"),
        );
    }
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "seq increases: {seqs:?}"
    );
    let all = m.list_audit(None).expect("list");
    assert_eq!(all.len(), 5);
    for (k, rec) in all.iter().enumerate() {
        let i = 4 - k as u32;
        let mut expected = audit_record(i, i.is_multiple_of(2));
        expected.seq = seqs[i as usize];
        assert_eq!(rec, &expected, "audit records round-trip, newest first");
    }
    let latest = m.list_audit(Some(2)).expect("list");
    assert_eq!(latest, all[..2].to_vec(), "limit keeps the newest");
    assert!(m.list_audit(Some(0)).expect("list").is_empty());
    // The record's own seq is ignored on append.
    let mut rec = audit_record(9, true);
    rec.seq = 1;
    let s = m.append_audit(&rec).expect("append");
    assert!(s > seqs[4]);
    assert_eq!(m.list_audit(None).expect("list").len(), 6);
}

fn settings(m: &dyn Metastore) {
    assert_eq!(m.get_setting("warehouse").expect("get"), None);
    m.set_setting("warehouse", "file:///a").expect("set");
    m.set_setting("other", "x").expect("set");
    assert_eq!(
        m.get_setting("warehouse").expect("get").as_deref(),
        Some("file:///a")
    );
    m.set_setting("warehouse", "s3://b/c").expect("overwrite");
    assert_eq!(
        m.get_setting("warehouse").expect("get").as_deref(),
        Some("s3://b/c")
    );
    assert_eq!(m.get_setting("other").expect("get").as_deref(), Some("x"));
    m.set_setting("empty", "").expect("set empty");
    assert_eq!(m.get_setting("empty").expect("get").as_deref(), Some(""));
    m.set_setting("gone", "soon").expect("set");
    assert!(m.delete_setting("gone").expect("delete"));
    assert_eq!(m.get_setting("gone").expect("get"), None);
    assert!(!m.delete_setting("gone").expect("delete again"));
    // An insert never replaces: the first of racing creators wins.
    assert!(m.insert_setting("once", "first").expect("insert"));
    assert!(!m.insert_setting("once", "second").expect("insert again"));
    assert_eq!(
        m.get_setting("once").expect("get").as_deref(),
        Some("first")
    );

    // Prefix listing is literal (no LIKE wildcards) and sorted by key.
    m.set_setting("tenant/b", "2").expect("set");
    m.set_setting("tenant/a", "1").expect("set");
    m.set_setting("tenantX", "no").expect("set");
    m.set_setting("ten_nt/c", "no").expect("set");
    m.set_setting("t%/d", "pct").expect("set");
    let listed = m.list_settings("tenant/").expect("list");
    assert_eq!(
        listed,
        vec![
            ("tenant/a".to_string(), "1".to_string()),
            ("tenant/b".to_string(), "2".to_string())
        ]
    );
    assert_eq!(m.list_settings("ten_").expect("list").len(), 1);
    assert_eq!(m.list_settings("t%").expect("list").len(), 1);
    assert!(m.list_settings("nothing/").expect("list").is_empty());
    assert_eq!(m.list_settings("").expect("list all").len(), 9);

    // The last keys of a prefix, greatest first; neighbours on either side are not in it.
    for i in [3, 1, 4, 0, 2] {
        m.set_setting(&format!("at/{i:03}"), &i.to_string())
            .expect("set");
    }
    m.set_setting("as", "before").expect("set");
    m.set_setting("at0", "after").expect("set");
    m.set_setting("au/001", "after").expect("set");
    let last = m.last_settings("at/", 2).expect("last");
    assert_eq!(
        last,
        vec![
            ("at/004".to_string(), "4".to_string()),
            ("at/003".to_string(), "3".to_string())
        ]
    );
    assert_eq!(m.last_settings("at/", 100).expect("last").len(), 5);
    assert!(m.last_settings("at/", 0).expect("last").is_empty());
    assert!(m.last_settings("nothing/", 3).expect("last").is_empty());
    assert_eq!(
        m.last_settings("", 1).expect("last of all"),
        vec![("warehouse".to_string(), "s3://b/c".to_string())]
    );
}

fn setting_cas(m: &dyn Metastore) {
    assert!(
        !m.cas_setting("absent", "", "x").expect("cas on nothing"),
        "a compare-and-set never creates a setting"
    );
    assert_eq!(m.get_setting("absent").expect("get"), None);
    m.set_setting("job/1", "running").expect("set");
    assert!(!m.cas_setting("job/1", "runnin", "failed").expect("cas"));
    assert!(!m.cas_setting("job/1", "running ", "failed").expect("cas"));
    assert_eq!(
        m.get_setting("job/1").expect("get").as_deref(),
        Some("running"),
        "a stale expectation writes nothing"
    );
    assert!(m.cas_setting("job/1", "running", "failed").expect("cas"));
    assert_eq!(
        m.get_setting("job/1").expect("get").as_deref(),
        Some("failed")
    );
    assert!(
        m.cas_setting("job/1", "failed", "failed").expect("cas"),
        "an unchanged value is still a match"
    );
    assert!(m.delete_setting("job/1").expect("delete"));
    assert!(
        !m.cas_setting("job/1", "failed", "again").expect("cas"),
        "a deleted setting is not brought back"
    );
    assert_eq!(m.get_setting("job/1").expect("get"), None);
}

/// Writers that each read a counter and compare-and-set it one higher, retrying when they lose,
/// lose no increment.
fn setting_cas_is_atomic_under_threads(m: Arc<dyn Metastore>) {
    m.set_setting("counter", "0").expect("set");
    let (threads, rounds) = (8, 5);
    let barrier = Barrier::new(threads);
    let increment = || loop {
        let now = m.get_setting("counter").expect("get").expect("counter");
        let next = (now.parse::<u32>().expect("number") + 1).to_string();
        if m.cas_setting("counter", &now, &next).expect("cas") {
            return;
        }
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                (0..rounds).for_each(|_| increment());
            });
        }
    });
    assert_eq!(
        m.get_setting("counter").expect("get").as_deref(),
        Some((threads * rounds).to_string().as_str()),
        "every compare-and-set that won is counted, and only those"
    );
}
