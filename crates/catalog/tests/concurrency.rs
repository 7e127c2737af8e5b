//! Many writers, each with its own metastore connection and catalog, on one catalog: a SQLite
//! file, and a PostgreSQL schema (each writer with connections of its own, as separate processes
//! have).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use lakeplan_catalog::testing::TestPostgres;
use lakeplan_catalog::{
    Catalog, CommitMeta, LogFilter, Metastore, PostgresMetastore, SqliteMetastore,
};
use lakeplan_core::{CommitId, Entry, Error, TableEntry};

const THREADS: usize = 8;
const COMMITS: usize = 100;

fn table(loc: &str) -> Entry {
    Entry::Table(TableEntry {
        metadata_location: format!("file:///w/{loc}.metadata.json"),
        table_uuid: format!("uuid-{loc}"),
        snapshot_id: Some(1),
        schema_id: 0,
        records: 1,
    })
}

fn meta(thread: usize, j: usize) -> CommitMeta {
    let mut properties = BTreeMap::new();
    properties.insert("thread".to_string(), thread.to_string());
    properties.insert("j".to_string(), j.to_string());
    CommitMeta {
        author: format!("writer{thread}"),
        message: format!("commit {j} of thread {thread}"),
        properties,
    }
}

/// Opens a catalog on the one shared store, with a metastore (and connections) of its own.
type Open = Arc<dyn Fn() -> Catalog + Send + Sync>;

fn sqlite(path: &Path) -> Open {
    let path = path.to_path_buf();
    Arc::new(move || {
        let store: Arc<dyn Metastore> =
            Arc::new(SqliteMetastore::open(&path).expect("open catalog"));
        Catalog::new(store)
    })
}

/// A fresh schema of the test process's PostgreSQL server.
fn postgres() -> Open {
    let pg = TestPostgres::shared().unwrap_or_else(|e| panic!("{e}"));
    let (url, schema) = (pg.url(), pg.fresh_schema());
    Arc::new(move || {
        let store: Arc<dyn Metastore> =
            Arc::new(PostgresMetastore::connect(&url, &schema).expect("open catalog"));
        Catalog::new(store)
    })
}

/// Runs `work(thread, catalog)` on THREADS threads, each with its own connection and catalog.
fn run<T: Send + 'static>(
    open: &Open,
    work: impl Fn(usize, &Catalog) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let work = Arc::clone(&work);
            let barrier = Arc::clone(&barrier);
            let open = Arc::clone(open);
            std::thread::spawn(move || {
                let catalog = open();
                barrier.wait();
                work(i, &catalog)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("writer thread panicked"))
        .collect()
}

fn disjoint_writers_all_land_in_a_linear_history(open: Open) {
    let main = open();
    main.init().unwrap();
    let root = main.branch_head("main").unwrap();

    let started = Instant::now();
    let per_thread = run(&open, |i, c| {
        let mut ids = Vec::with_capacity(COMMITS);
        for j in 0..COMMITS {
            // Half the commits add a table, half update the thread's own table.
            let key = if j % 2 == 0 {
                format!("default.t{i}_{j}")
            } else {
                format!("default.own{i}")
            };
            let base = c.branch_head("main").expect("head");
            let id = c
                .commit(
                    "main",
                    &base,
                    &[(key, Some(table(&format!("{i}-{j}"))))],
                    &meta(i, j),
                )
                .unwrap_or_else(|e| panic!("disjoint commit must not fail: {e}"));
            ids.push(id);
        }
        ids
    });
    let elapsed = started.elapsed();
    println!(
        "disjoint: {} commits from {THREADS} writers in {:.2?}",
        THREADS * COMMITS,
        elapsed
    );

    let head = main.branch_head("main").unwrap();
    let log = main.log(&head, &LogFilter::default(), None).unwrap();
    assert_eq!(
        log.len(),
        THREADS * COMMITS + 1,
        "every commit landed, plus the root"
    );
    assert_eq!(log.last().unwrap().id, root);
    for c in &log[..log.len() - 1] {
        assert_eq!(c.parents.len(), 1, "history is linear");
    }
    let in_log: HashSet<&CommitId> = log.iter().map(|c| &c.id).collect();
    for ids in &per_thread {
        for id in ids {
            assert!(in_log.contains(id), "commit {id} is missing from the log");
        }
    }
    // Each thread's commits appear in its own order.
    for (i, ids) in per_thread.iter().enumerate() {
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| log.iter().position(|c| &c.id == id).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] > w[1]),
            "thread {i}'s commits are out of order"
        );
    }
    let entries = main.entries(&head).unwrap();
    for i in 0..THREADS {
        for j in (0..COMMITS).step_by(2) {
            assert_eq!(
                entries.get(&format!("default.t{i}_{j}")),
                Some(&table(&format!("{i}-{j}"))),
                "no write is lost"
            );
        }
        assert_eq!(
            entries.get(&format!("default.own{i}")),
            Some(&table(&format!("{i}-{}", COMMITS - 1)))
        );
    }
    assert_eq!(entries.len(), 1 + THREADS * (COMMITS / 2 + 1));
}

fn writers_of_one_table_conflict_but_lose_nothing(open: Open) {
    let main = open();
    main.init().unwrap();
    let root = main.branch_head("main").unwrap();

    let started = Instant::now();
    let per_thread = run(&open, |i, c| {
        let mut ok: Vec<(CommitId, (String, CommitId))> = Vec::new();
        let mut conflicts = 0usize;
        for j in 0..COMMITS {
            let base = c.branch_head("main").expect("head");
            let value = format!("{i}-{j}");
            match c.commit(
                "main",
                &base,
                &[("default.shared".to_string(), Some(table(&value)))],
                &meta(i, j),
            ) {
                Ok(id) => ok.push((id, (value, base))),
                Err(Error::Conflict { branch, tables }) => {
                    assert_eq!(branch, "main");
                    assert_eq!(tables, vec!["default.shared".to_string()]);
                    conflicts += 1;
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        (ok, conflicts)
    });
    let elapsed = started.elapsed();

    let successes: HashMap<CommitId, (String, CommitId)> = per_thread
        .iter()
        .flat_map(|(ok, _)| ok.iter().cloned())
        .collect();
    let conflicts: usize = per_thread.iter().map(|(_, c)| c).sum();
    println!(
        "same table: {} successes, {conflicts} conflicts from {THREADS} writers in {elapsed:.2?}",
        successes.len()
    );
    assert_eq!(
        successes.len() + conflicts,
        THREADS * COMMITS,
        "every attempt is accounted for"
    );
    assert!(!successes.is_empty());

    let head = main.branch_head("main").unwrap();
    let log = main.log(&head, &LogFilter::default(), None).unwrap();
    assert_eq!(
        log.len(),
        successes.len() + 1,
        "exactly the successes, plus the root"
    );
    assert_eq!(log.last().unwrap().id, root);
    for (k, c) in log[..log.len() - 1].iter().enumerate() {
        let (value, base) = successes
            .get(&c.id)
            .unwrap_or_else(|| panic!("log commit {} was not reported as a success", c.id));
        // Each successful commit holds exactly the value it wrote, and its parent is the
        // previous success: no update was lost or overwritten silently.
        assert_eq!(
            main.entry(&c.id, "default.shared").unwrap(),
            Some(table(value)),
            "commit {k} from the head holds its own write"
        );
        assert_eq!(c.parents.len(), 1);
        assert_eq!(c.parents[0], log[k + 1].id);
        // Everyone writes the same table, so a commit can only land directly on the head its
        // writer read: landing anywhere else would overwrite a write the writer never saw.
        assert_eq!(
            &c.parents[0], base,
            "commit {k} from the head was rebased over a same-table write"
        );
    }
}

fn racing_opens_and_inits_of_a_fresh_store_make_one_lake(open: Open) {
    // All threads open the (not yet existing) file or schema at once, then initialize it at once.
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let open = Arc::clone(&open);
            std::thread::spawn(move || {
                barrier.wait();
                let c = open();
                c.init().expect("init");
                c.branch_head("main").expect("main exists")
            })
        })
        .collect();
    let heads: Vec<CommitId> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        heads.windows(2).all(|w| w[0] == w[1]),
        "every writer sees the same main"
    );
    let c = open();
    let refs = c.list_refs(None).unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].commit, heads[0]);
    let root = c.get_commit(&heads[0]).unwrap();
    assert!(root.parents.is_empty());
    assert_eq!(root.message, "Initialize lake");
}

/// Each test on a SQLite file and on a PostgreSQL schema.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[test]
                fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$test(super::sqlite(&dir.path().join("catalog.db")));
                }
            )*
        }
        mod postgres_schema {
            $(
                #[test]
                fn $test() {
                    super::$test(super::postgres());
                }
            )*
        }
    };
}

on_both_stores!(
    disjoint_writers_all_land_in_a_linear_history,
    writers_of_one_table_conflict_but_lose_nothing,
    racing_opens_and_inits_of_a_fresh_store_make_one_lake,
);
