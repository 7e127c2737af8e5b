use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use lakeplan_core::{Error, RefKind, Result, MAIN_BRANCH};

use super::*;
use crate::{Lake, LakeConfig};

fn lake(dir: &std::path::Path) -> Lake {
    Lake::open(
        dir,
        LakeConfig {
            actor: "tester".into(),
            client: "test".into(),
        },
    )
    .unwrap()
}

/// A new branch `name` at the active branch.
fn branch(name: &str) -> CreateRef {
    CreateRef {
        name: name.into(),
        kind: RefKind::Branch,
        from: None,
        if_not_exists: false,
    }
}

/// Records what it was asked and allows only reads and writes to `alice.*`.
#[derive(Default)]
struct Recording {
    asked: Mutex<Vec<Access>>,
}

impl Policy for Recording {
    fn allow(&self, access: &Access) -> Result<()> {
        self.asked.lock().unwrap().push(access.clone());
        match access {
            Access::Read => Ok(()),
            Access::WriteRef(r) | Access::MergeInto(r) if r.starts_with("alice.") => Ok(()),
            other => Err(Error::Forbidden(format!("not allowed: {other}"))),
        }
    }
}

#[test]
fn the_table_names_each_operation_once() {
    let names: HashSet<_> = OPERATIONS.iter().map(|o| o.name).collect();
    assert_eq!(names.len(), OPERATIONS.len(), "{OPERATIONS:?}");
    assert!(names.contains(CreateRef::NAME) && names.contains(SealSecret::NAME));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_decides_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Arc::new(Recording::default());
    let svc = Service::new(lake(dir.path()), policy.clone());

    let refused = svc
        .call(CreateRef {
            name: "bob.dev".into(),
            kind: RefKind::Branch,
            from: None,
            if_not_exists: false,
        })
        .await
        .unwrap_err();
    assert!(matches!(&refused, Error::Forbidden(m) if m.contains("write 'bob.dev'")));
    assert_eq!(refused.kind(), "Forbidden");
    let branches = svc
        .call(ListRefs {
            kind: RefKind::Branch,
        })
        .await
        .unwrap();
    assert_eq!(
        branches.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        [MAIN_BRANCH],
        "a refused create wrote nothing"
    );

    svc.call(branch("alice.dev")).await.unwrap();
    // Renaming needs both names: into another zone is refused, and the ref stays.
    let e = svc
        .call(RenameRef {
            name: "alice.dev".into(),
            new_name: "bob.dev".into(),
            kind: RefKind::Branch,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "Forbidden");
    svc.call(GetRef {
        name: "alice.dev".into(),
        kind: RefKind::Branch,
    })
    .await
    .unwrap();
    // Settings need admin.
    let e = svc
        .call(SetSetting {
            name: "default_namespace".into(),
            value: Some("x".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "Forbidden");
    let asked = policy.asked.lock().unwrap().clone();
    assert!(asked.contains(&Access::Admin), "{asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_left_out_branch_is_bound_before_the_policy_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let open = Service::open(lake(dir.path()));
    open.call(CreateRef {
        name: "alice.work".into(),
        kind: RefKind::Branch,
        from: None,
        if_not_exists: false,
    })
    .await
    .unwrap();
    open.lake().set_active_branch("alice.work").unwrap();

    let policy = Arc::new(Recording::default());
    let svc = Service::new(open.lake().clone(), policy.clone());
    // No branch named: the active one, `alice.work`, is what the policy is asked about.
    svc.call(CreateNamespace {
        name: "staging".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // A merge with no target merges into the active branch, not `main`.
    open.lake().set_active_branch(MAIN_BRANCH).unwrap();
    let e = svc
        .call(Merge {
            source: "alice.work".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "Forbidden");
    let asked = policy.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        [
            Access::WriteRef("alice.work".into()),
            Access::MergeInto(MAIN_BRANCH.into())
        ]
    );
    let at_work = svc
        .call(ListNamespaces {
            at: Some("alice.work".into()),
        })
        .await
        .unwrap();
    assert!(at_work.contains(&"staging".to_string()), "{at_work:?}");
    let at_main = svc.call(ListNamespaces::default()).await.unwrap();
    assert!(!at_main.contains(&"staging".to_string()), "{at_main:?}");
}

/// An operation that panics: the caller gets an error naming it, the process goes on.
struct Panics;

impl Operation for Panics {
    type Output = ();
    const NAME: &'static str = "panics";
    fn access(&self) -> Vec<Access> {
        vec![Access::Read]
    }
    async fn execute(self, _: &Service) -> Result<()> {
        panic!("boom")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_operation_is_an_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(lake(dir.path()));
    let e = svc.call(Panics).await.unwrap_err();
    assert!(
        matches!(&e, Error::Internal(m) if m.contains("panics")),
        "{e}"
    );
    // The service still answers.
    svc.call(Settings).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn operations_run_off_the_runtime_threads() {
    // On a current-thread runtime an operation that blocked its thread would block the only
    // one: this one blocks until the runtime, meanwhile, tells it to go on (or 30 s pass).
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(lake(dir.path()));
    struct Waits(std::sync::mpsc::Receiver<()>);
    impl Operation for Waits {
        type Output = ();
        const NAME: &'static str = "waits";
        fn access(&self) -> Vec<Access> {
            vec![Access::Read]
        }
        async fn execute(self, _: &Service) -> Result<()> {
            self.0
                .recv_timeout(std::time::Duration::from_secs(30))
                .map_err(|e| Error::Internal(format!("never told to go on: {e}")))
        }
    }
    let (go, wait) = std::sync::mpsc::channel();
    let waiting = tokio::spawn({
        let svc = svc.clone();
        async move { svc.call(Waits(wait)).await }
    });
    tokio::task::yield_now().await;
    // Other work on the runtime goes on while the operation waits: a timer, another operation.
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    svc.call(Settings).await.unwrap();
    go.send(()).unwrap();
    waiting.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_blocking_thread_an_operation_runs_right_there() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(lake(dir.path()));
    struct Where;
    impl Operation for Where {
        type Output = std::thread::ThreadId;
        const NAME: &'static str = "where";
        fn access(&self) -> Vec<Access> {
            vec![Access::Read]
        }
        async fn execute(self, _: &Service) -> Result<std::thread::ThreadId> {
            Ok(std::thread::current().id())
        }
    }
    let handle = tokio::runtime::Handle::current();
    let (caller, ran) = tokio::task::spawn_blocking(move || {
        off_the_runtime(|| {
            let here = std::thread::current().id();
            (here, handle.block_on(svc.call(Where)).unwrap())
        })
    })
    .await
    .unwrap();
    assert_eq!(caller, ran);
    // Elsewhere (a runtime thread), it hands itself to the blocking pool.
    let svc = Service::open(lake(dir.path()));
    let ran = svc.call(Where).await.unwrap();
    assert_ne!(ran, std::thread::current().id());
}

/// The data operations declare what they read and run: an import its source and its branch, a
/// run its code (and its target unless dry), a cancel the job's own target (from its record,
/// not the caller's word). Refused, they write nothing; allowed, they run in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_operations_declare_their_sources_code_and_the_jobs_target() {
    let dir = tempfile::tempdir().unwrap();
    let l = lake(dir.path());
    let src = dir.path().join("x.csv");
    std::fs::write(&src, "a,b\n1,x\n2,y\n").unwrap();
    let src = src.display().to_string();
    let open = Service::open(l.clone());
    open.call(branch("alice.dev")).await.unwrap();
    let policy = Arc::new(Recording::default());
    let svc = Service::new(l.clone(), policy.clone());
    let plan = PlanTable {
        table: "t".into(),
        search_uri: src.clone(),
        branch: Some("alice.dev".into()),
        ..Default::default()
    };

    // Reading the source is an access of its own (this policy grants none).
    let e = svc
        .call(CreateTable {
            plan: plan.clone(),
            commit: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "Forbidden");
    let asked = policy.asked.lock().unwrap().clone();
    assert!(
        asked.contains(&Access::WriteRef("alice.dev".into())),
        "{asked:?}"
    );
    assert!(
        asked.contains(&Access::ReadSource(src.clone())),
        "{asked:?}"
    );
    let tables = open
        .call(ListTables {
            at: Some("alice.dev".into()),
            namespace: None,
        })
        .await
        .unwrap();
    assert!(tables.is_empty(), "a refused create wrote nothing");

    // Allowed, the table is planned, created and imported into in this process.
    open.call(CreateTable {
        plan,
        commit: Default::default(),
    })
    .await
    .unwrap();
    let imported = open
        .call(Import {
            table: "t".into(),
            search_uri: src.clone(),
            branch: Some("alice.dev".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(imported.commit.hash.is_some(), "{imported:?}");

    // A run asks to run code, and to write its target unless it is dry (the policy stops at
    // the first refusal, so the declaration is read as well).
    for dry in [true, false] {
        policy.asked.lock().unwrap().clear();
        let mut run = RunTask::upload(b"not a zip", "main");
        run.dry_run = dry;
        let op = StartRun { run };
        let declared = op.access();
        assert_eq!(declared[0], Access::Execute, "{declared:?}");
        assert_eq!(
            declared.contains(&Access::WriteRef(MAIN_BRANCH.into())),
            !dry,
            "dry {dry}: {declared:?}"
        );
        let e = svc.call(op).await.unwrap_err();
        assert_eq!(e.kind(), "Forbidden");
        assert_eq!(policy.asked.lock().unwrap()[..], [Access::Execute]);
    }

    // Stopping a job needs its target, as its record says.
    let job: crate::JobRecord = serde_json::from_value(serde_json::json!({
        "id": "fedcba9876543210fedcba9876543210", "status": "running", "actor": "bob",
        "project_dir": "/nowhere", "project_id": null, "project_name": null,
        "target": "bob.x", "input_commit": "", "namespace": "default", "parameters": {},
        "dry_run": false, "transactional": true, "tx_branch": null, "result_commit": null,
        "code_hash": "", "error": null, "pid": null, "created_at": "2026-12-08T00:00:00Z",
        "finished_at": null, "nodes": null, "rerun_of": null
    }))
    .unwrap();
    l.jobs().unwrap().insert(&job).unwrap();
    let e = svc.call(CancelJob::new("fedcba98")).await.unwrap_err();
    assert_eq!(e.kind(), "Forbidden");
    assert!(policy
        .asked
        .lock()
        .unwrap()
        .contains(&Access::WriteRef("bob.x".into())));
    // Allowed, a job no process of its own runs and this process does not run is not stopped
    // here, and says where to stop it.
    let e = open.call(CancelJob::new(&job.id)).await.unwrap_err();
    assert_eq!(e.kind(), "InvalidOperation", "{e}");
    assert_eq!(
        open.call(GetJob { id: job.id.clone() })
            .await
            .unwrap()
            .status,
        crate::JobStatus::Running
    );
    // An id that could name a path names no job.
    for id in ["../x", "a/b", ""] {
        let e = open.call(GetJob { id: id.into() }).await.unwrap_err();
        assert_eq!(e.kind(), "JobNotFound", "{id}");
    }
}
