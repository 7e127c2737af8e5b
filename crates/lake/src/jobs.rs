//! The job store: one record per pipeline run (`lakeplan job ls/get/logs/stop`, `rerun`), kept
//! as settings of the lake's metastore (SQLite, or the PostgreSQL that several servers share), so
//! every server and worker on one metastore sees the same jobs. Operational records, not
//! versioned state: no commit is made for them. A run writes its log and code snapshot to
//! `<lake>/jobs/<id>/` on its machine, and copies of both to the metastore (the code when the
//! run starts, the log when it ends), from which other machines serve them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lakeplan_catalog::records::Text;
use lakeplan_catalog::{Index, Metastore, Records, Slot};
use lakeplan_core::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        self != JobStatus::Running
    }
}

/// What a job ran and how it ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub status: JobStatus,
    pub actor: String,
    pub project_dir: String,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    /// The branch the run publishes to (or the ref it reads, for a dry run).
    pub target: String,
    /// The commit the run read its inputs at.
    pub input_commit: String,
    pub namespace: String,
    pub parameters: BTreeMap<String, String>,
    pub dry_run: bool,
    pub transactional: bool,
    /// Whether failed expectations and contracts failed the run (`--no-strict` clears it).
    #[serde(default = "yes")]
    pub strict: bool,
    #[serde(default)]
    pub strict_python: bool,
    /// The temporary branch the run materialized into.
    pub tx_branch: Option<String>,
    /// The commit the run published, if any.
    pub result_commit: Option<String>,
    pub code_hash: String,
    pub error: Option<String>,
    pub pid: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Per-node outcome, as the run recorded it.
    pub nodes: serde_json::Value,
    /// The job this one re-ran, for `lakeplan rerun`.
    pub rerun_of: Option<String>,
    /// Bauplan's `-a/--arg KEY=VALUE` flags the run was given (recorded; see `RunOptions::args`).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Bauplan's `--priority` (1 to 10) the run was given (recorded; see `RunOptions::priority`).
    #[serde(default)]
    pub priority: Option<u8>,
}

fn yes() -> bool {
    true
}

#[derive(Clone)]
pub struct JobStore {
    records: Records<JobRecord>,
    by_time: Index,
    by_time_built: Slot<String, Text>,
    code: Records<String, Text>,
    kept_logs: Records<String, Text>,
    live: Records<String, Text>,
    dir: PathBuf,
}

/// Settings of the lake's metastore that hold jobs: `job/<id>` the record (JSON),
/// `job-code/<id>` the code snapshot (base64 zip), `job-live/<id>/<time>-<writer>-<seq>` the
/// log as it is written, in parts (whole lines) from each process that runs part of the job
/// (the coordinator, the workers of its nodes), and `job-log/<id>` the log of an ended job
/// that has no parts (a job from before parts, or whose parts could not be written).
const RECORD: &str = "job/";
/// `job-time/<created at, UTC, fixed width>/<id>` → `<id>`: the jobs by time, for listing the
/// newest without reading every record.
const BY_TIME: &str = "job-time/";
/// Set once every record has its [`BY_TIME`] entry (lakes made before the index get theirs
/// on open).
const BY_TIME_BUILT: &str = "job-time-index";
const CODE: &str = "job-code/";
const LOG: &str = "job-log/";
const LIVE: &str = "job-live/";

/// A job's place in the [`BY_TIME`] index.
fn time_order(rec: &JobRecord) -> String {
    rec.created_at.format("%Y%m%dT%H%M%S%.6fZ").to_string()
}

impl JobStore {
    /// The job store of the lake at `lake_root` whose catalog is `store`. Records live in the
    /// metastore (shared by every server and worker on it); a job's log and code snapshot are
    /// files in `<lake>/jobs/<id>/` while it runs, and copies of them go to the metastore too.
    /// A lake whose jobs were in the old `<lake>/jobs.db` gets them moved over on open.
    pub fn open(lake_root: &Path, store: Arc<dyn Metastore>) -> Result<JobStore> {
        let dir = lake_root.join("jobs");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let jobs = JobStore {
            records: Records::new(store.clone(), RECORD),
            by_time: Index::new(store.clone(), BY_TIME),
            by_time_built: Slot::new(store.clone(), BY_TIME_BUILT),
            code: Records::new(store.clone(), CODE),
            kept_logs: Records::new(store.clone(), LOG),
            live: Records::new(store, LIVE),
            dir,
        };
        jobs.migrate(&lake_root.join("jobs.db"))?;
        jobs.index_by_time()?;
        Ok(jobs)
    }

    /// Gives every record its [`BY_TIME`] entry, once per metastore.
    fn index_by_time(&self) -> Result<()> {
        if self.by_time_built.get()?.is_some() {
            return Ok(());
        }
        for (_, rec) in self.records.list()? {
            self.by_time.add(&time_order(&rec), &rec.id)?;
        }
        self.by_time_built.set(&"1".to_string())
    }

    /// Moves the records of a `jobs.db` (lakes made before jobs moved to the metastore) into
    /// the metastore, then renames the file `jobs.db.migrated`.
    fn migrate(&self, db: &Path) -> Result<()> {
        if !db.exists() {
            return Ok(());
        }
        let err = |e: rusqlite::Error| Error::Metastore(format!("{}: {e}", db.display()));
        let conn = rusqlite::Connection::open(db).map_err(err)?;
        let mut stmt = conn.prepare("SELECT id, record FROM jobs").map_err(err)?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(err)?;
        for (id, record) in rows {
            let rec: JobRecord = serde_json::from_str(&record)
                .map_err(|e| Error::Metastore(format!("{}: job {id}: {e}", db.display())))?;
            // A record the metastore has already (a migration cut short) is kept.
            self.records.insert(&id, &rec)?;
        }
        drop(stmt);
        drop(conn);
        let done = db.with_extension("db.migrated");
        std::fs::rename(db, &done).map_err(|e| Error::io(db.display(), e))?;
        for ext in ["db-wal", "db-shm"] {
            let _ = std::fs::remove_file(db.with_extension(ext));
        }
        Ok(())
    }

    /// The folder holding a job's log and code snapshot on this machine.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.job_dir(id).join("log.txt")
    }

    pub fn snapshot_path(&self, id: &str) -> PathBuf {
        self.job_dir(id).join("code.zip")
    }

    /// Records a new job; of inserts of one id (from any server on the metastore), one wins and
    /// the others are refused.
    pub fn insert(&self, rec: &JobRecord) -> Result<()> {
        let dir = self.job_dir(&rec.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        if !self.records.insert(&rec.id, rec)? {
            return Err(Error::InvalidInput(format!(
                "job '{}' exists already",
                rec.id
            )));
        }
        self.by_time.add(&time_order(rec), &rec.id)
    }

    /// Replaces a job's record (status, result, nodes...).
    pub fn update(&self, rec: &JobRecord) -> Result<()> {
        self.records
            .update(&rec.id, |stored| {
                stored.clone_from(rec);
                Ok(())
            })?
            .map(|_| ())
            .ok_or_else(|| Error::InvalidInput(format!("job '{}' not found", rec.id)))
    }

    /// Changes job `id`'s record with `change`, atomically: `change` sees the record as stored
    /// and its result is written only if no one changed the record meanwhile (else `change`
    /// runs again on the new record). An error from `change` writes nothing.
    pub fn update_with(
        &self,
        id: &str,
        change: impl FnMut(&mut JobRecord) -> Result<()>,
    ) -> Result<JobRecord> {
        self.records
            .update(id, change)?
            .ok_or_else(|| Error::JobNotFound(id.to_string()))
    }

    /// A job by id or unique id prefix (at least 6 characters).
    pub fn get(&self, id: &str) -> Result<JobRecord> {
        let not_found = || Error::JobNotFound(id.to_string());
        if lakeplan_catalog::records::validate_id(id).is_err() {
            return Err(not_found());
        }
        if let Some(rec) = self.records.get(id)? {
            return Ok(rec);
        }
        if id.len() < 6 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(not_found());
        }
        let mut found = self.records.starting_with(id)?;
        match found.len() {
            0 => Err(not_found()),
            1 => found.pop().map(|(_, rec)| rec).ok_or_else(not_found),
            _ => Err(Error::InvalidInput(format!(
                "job prefix '{id}' is ambiguous: give more characters"
            ))),
        }
    }

    /// The newest jobs first.
    /// (Reads the newest `limit` entries of the time index and their records, not every
    /// record.)
    pub fn list(&self, limit: usize) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for id in self.by_time.last(limit)? {
            out.extend(self.records.get(&id)?);
        }
        Ok(out)
    }

    /// Keeps a copy of the job's code snapshot in the metastore, so that any server can rerun
    /// it.
    pub fn keep_code(&self, id: &str) -> Result<()> {
        use base64::Engine;
        let path = self.snapshot_path(id);
        let zip = std::fs::read(&path).map_err(|e| Error::io(path.display(), e))?;
        let text = base64::engine::general_purpose::STANDARD.encode(zip);
        self.code.put(id, &text)
    }

    /// The job's code snapshot on this machine: its file, restored from the metastore's copy
    /// when the job ran elsewhere.
    pub fn snapshot_file(&self, id: &str) -> Result<PathBuf> {
        use base64::Engine;
        let path = self.snapshot_path(id);
        if path.exists() {
            return Ok(path);
        }
        let text = self.code.get(id)?.ok_or_else(|| Error::InvalidOperation {
            op: format!("rerun job {id}"),
            reason: "its code snapshot is not stored".into(),
        })?;
        let zip = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| Error::Metastore(format!("job {id}'s code snapshot: {e}")))?;
        let dir = self.job_dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        std::fs::write(&path, zip).map_err(|e| Error::io(path.display(), e))?;
        Ok(path)
    }

    /// Adds whole lines to a job's log as it runs, as the `seq`-th part from `writer` (a
    /// process's random name): any server on the metastore reads them while the job runs.
    pub fn append_log_part(&self, id: &str, writer: &str, seq: u64, text: &str) -> Result<()> {
        let micros = Utc::now().timestamp_micros().max(0);
        self.live.within(id)?.put(
            &format!("{micros:020}-{writer}-{seq:010}"),
            &text.to_string(),
        )
    }

    /// The parts of a job's log written so far, in time order: (part name, text).
    pub fn log_parts(&self, id: &str) -> Result<Vec<(String, String)>> {
        self.live.within(id)?.list()
    }

    /// Keeps a copy of an ended job's log in the metastore, unless its parts are there
    /// already (a warning, not an error, if that fails: the job's outcome is recorded already).
    pub fn keep_log(&self, id: &str) {
        if self.log_parts(id).is_ok_and(|p| !p.is_empty()) {
            return;
        }
        let path = self.log_path(id);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        if let Err(e) = self.kept_logs.put(id, &text) {
            eprintln!("warning: could not keep job {id}'s log in the metastore: {e}");
        }
    }

    /// The log of an ended job that ran on another machine (the metastore's copy).
    pub fn kept_log(&self, id: &str) -> Result<Option<String>> {
        self.kept_logs.get(id)
    }

    /// A job's log: its parts, else its file here, else the metastore's copy, else nothing yet.
    pub fn log_text(&self, id: &str) -> Result<String> {
        let parts = self.log_parts(id)?;
        if !parts.is_empty() {
            return Ok(parts.into_iter().map(|(_, t)| t).collect());
        }
        let path = self.log_path(id);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(self.kept_log(id)?.unwrap_or_default())
            }
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            status: JobStatus::Running,
            actor: "me".into(),
            project_dir: "/p".into(),
            project_id: None,
            project_name: Some("demo".into()),
            target: "main".into(),
            input_commit: "ab".repeat(32),
            namespace: "default".into(),
            parameters: BTreeMap::new(),
            dry_run: false,
            transactional: true,
            strict: true,
            strict_python: false,
            tx_branch: Some("main.run-x".into()),
            result_commit: None,
            code_hash: "00".into(),
            error: None,
            pid: Some(1),
            created_at: Utc::now(),
            finished_at: None,
            nodes: serde_json::json!([]),
            rerun_of: None,
            args: BTreeMap::new(),
            priority: None,
        }
    }

    #[test]
    fn insert_get_update_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path(), metastore()).unwrap();
        store.insert(&rec("aaaaaa11")).unwrap();
        store.insert(&rec("aaaaaa22")).unwrap();
        store.insert(&rec("bbbbbb33")).unwrap();
        assert_eq!(store.get("bbbbbb").unwrap().id, "bbbbbb33");
        let err = store.get("aaaaaa").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(store.get("zzzzzzzz").is_err());
        let mut r = store.get("aaaaaa22").unwrap();
        r.status = JobStatus::Failed;
        r.error = Some("boom".into());
        store.update(&r).unwrap();
        let back = store.get("aaaaaa22").unwrap();
        assert_eq!(back.status, JobStatus::Failed);
        assert_eq!(back.error.as_deref(), Some("boom"));
        let all = store.list(10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(store.list(1).unwrap().len(), 1);
        assert!(store.job_dir("aaaaaa22").is_dir());
    }

    /// Newest first, through the time index: records of a lake made before the index get
    /// their entries on open, and a listing reads no record beyond its limit.
    #[test]
    fn list_is_newest_first_through_the_time_index() {
        let shared = metastore();
        let at = |id: &str, secs: i64| {
            let mut r = rec(id);
            r.created_at = chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
            r
        };
        // Written as an older lakeplan did: a record with no index entry.
        let old = at("old00001", 5);
        shared
            .set_setting("job/old00001", &serde_json::to_string(&old).unwrap())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path(), shared.clone()).unwrap();
        for (id, secs) in [("new00003", 30), ("mid00002", 10), ("new00004", 40)] {
            store.insert(&at(id, secs)).unwrap();
        }
        let ids = |l: Vec<JobRecord>| l.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.list(10).unwrap()),
            ["new00004", "new00003", "mid00002", "old00001"]
        );
        assert_eq!(ids(store.list(2).unwrap()), ["new00004", "new00003"]);
        // Reopening does not index again, and an update keeps the job's place.
        let again = JobStore::open(dir.path(), shared).unwrap();
        let mut r = again.get("mid00002").unwrap();
        r.status = JobStatus::Succeeded;
        again.update(&r).unwrap();
        assert_eq!(ids(again.list(10).unwrap())[2], "mid00002");
        assert_eq!(again.list(10).unwrap().len(), 4);
    }

    /// The settings a job is kept in are the ones every earlier lakeplan wrote, byte for byte:
    /// a lake written before the typed stores reads the same, and a job written now lands at
    /// the same keys.
    #[test]
    fn the_stored_layout_is_unchanged() {
        use base64::Engine;
        let shared = metastore();
        let mut old = rec("0ld0000000000000000000000000000a");
        old.created_at = chrono::DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap();
        old.status = JobStatus::Succeeded;
        // As an earlier lakeplan wrote them.
        let zip = base64::engine::general_purpose::STANDARD.encode(b"PK-old");
        for (key, value) in [
            (
                format!("job/{}", old.id),
                serde_json::to_string(&old).unwrap(),
            ),
            (
                format!("job-time/20270115T080000.123456Z/{}", old.id),
                old.id.clone(),
            ),
            ("job-time-index".to_string(), "1".to_string()),
            (format!("job-code/{}", old.id), zip),
            (
                format!("job-live/{}/00000000000000000001-coord-0000000000", old.id),
                "one\n".to_string(),
            ),
            (
                format!("job-live/{}/00000000000000000002-node-0000000000", old.id),
                "two\n".to_string(),
            ),
            ("job-log/ended0001".to_string(), "kept\n".to_string()),
        ] {
            shared.set_setting(&key, &value).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path(), shared.clone()).unwrap();
        assert_eq!(store.get(&old.id).unwrap(), old);
        assert_eq!(store.get("0ld000").unwrap(), old, "by prefix");
        assert_eq!(store.list(5).unwrap(), [old.clone()]);
        assert_eq!(store.log_text(&old.id).unwrap(), "one\ntwo\n");
        assert_eq!(
            store.kept_log("ended0001").unwrap().as_deref(),
            Some("kept\n")
        );
        let snapshot = store.snapshot_file(&old.id).unwrap();
        assert_eq!(std::fs::read(snapshot).unwrap(), b"PK-old");

        // Written now: the same keys and values.
        let mut new = rec("new0000000000000000000000000000b");
        new.created_at = chrono::DateTime::from_timestamp(1_800_000_100, 5_000).unwrap();
        store.insert(&new).unwrap();
        std::fs::write(store.snapshot_path(&new.id), b"PK-new").unwrap();
        store.keep_code(&new.id).unwrap();
        std::fs::write(store.log_path(&new.id), "whole\n").unwrap();
        store.keep_log(&new.id);
        store.append_log_part(&new.id, "w1", 7, "part\n").unwrap();
        let raw = |key: &str| shared.get_setting(key).unwrap();
        assert_eq!(
            raw(&format!("job/{}", new.id)),
            Some(serde_json::to_string(&new).unwrap())
        );
        assert_eq!(
            raw(&format!("job-time/20270115T080140.000005Z/{}", new.id)),
            Some(new.id.clone())
        );
        assert_eq!(
            raw(&format!("job-code/{}", new.id)),
            Some(base64::engine::general_purpose::STANDARD.encode(b"PK-new"))
        );
        assert_eq!(
            raw(&format!("job-log/{}", new.id)).as_deref(),
            Some("whole\n")
        );
        let parts = shared
            .list_settings(&format!("job-live/{}/", new.id))
            .unwrap();
        assert_eq!(parts.len(), 1);
        let (key, text) = &parts[0];
        let part = key.rsplit('/').next().unwrap();
        assert!(
            part.len() == 20 + 1 + 2 + 1 + 10 && part.ends_with("-w1-0000000007"),
            "{key}"
        );
        assert_eq!(text, "part\n");
        assert_eq!(store.list(5).unwrap(), [new.clone(), old]);
    }

    /// A job id is one key segment: one that could reach another job's keys is not found,
    /// and is refused when inserted.
    #[test]
    fn ids_with_slashes_do_not_reach_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let shared = metastore();
        let store = JobStore::open(dir.path(), shared.clone()).unwrap();
        store.insert(&rec("victim01")).unwrap();
        store
            .append_log_part("victim01", "w", 0, "secret\n")
            .unwrap();
        for bad in ["victim01/", "x/../victim01", "/victim01"] {
            assert!(
                matches!(store.get(bad), Err(Error::JobNotFound(_))),
                "{bad}"
            );
        }
        assert!(store.log_parts("victim01/x").is_err());
        assert!(store.insert(&rec("a/b")).is_err());
        assert!(shared.list_settings("job/a").unwrap().is_empty());
    }

    /// Changes from racing writers (a run ending while it is stopped) are each made on the
    /// record as the other left it.
    #[test]
    fn update_with_sees_the_stored_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path(), metastore()).unwrap();
        store.insert(&rec("race0001")).unwrap();
        std::thread::scope(|s| {
            for i in 0..4u8 {
                let store = store.clone();
                s.spawn(move || {
                    store
                        .update_with("race0001", |r| {
                            r.parameters.insert(format!("w{i}"), i.to_string());
                            Ok(())
                        })
                        .unwrap()
                });
            }
        });
        assert_eq!(store.get("race0001").unwrap().parameters.len(), 4);
        assert!(matches!(
            store.update_with("nope0001", |_| Ok(())),
            Err(Error::JobNotFound(_))
        ));
        let mut ghost = rec("nope0001");
        ghost.status = JobStatus::Failed;
        assert!(store.update(&ghost).is_err(), "update does not create");
        assert!(store.get("nope0001").is_err());
    }

    fn metastore() -> Arc<dyn Metastore> {
        Arc::new(lakeplan_catalog::sqlite::SqliteMetastore::open_in_memory().unwrap())
    }

    /// Two machines (two lake folders) on one metastore: records, logs and code snapshots
    /// written by one are read by the other.
    #[test]
    fn jobs_are_shared_through_the_metastore() {
        let shared = metastore();
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = JobStore::open(a_dir.path(), shared.clone()).unwrap();
        let b = JobStore::open(b_dir.path(), shared).unwrap();
        a.insert(&rec("cccccc44")).unwrap();
        std::fs::write(a.log_path("cccccc44"), "line 1\nline 2\n").unwrap();
        std::fs::write(a.snapshot_path("cccccc44"), b"PK-zip-bytes").unwrap();
        a.keep_code("cccccc44").unwrap();
        assert_eq!(b.get("cccccc").unwrap().id, "cccccc44");
        assert_eq!(b.list(5).unwrap().len(), 1);
        assert_eq!(
            b.log_text("cccccc44").unwrap(),
            "",
            "no log until the job ends"
        );
        a.keep_log("cccccc44");
        assert_eq!(b.log_text("cccccc44").unwrap(), "line 1\nline 2\n");
        let zip = b.snapshot_file("cccccc44").unwrap();
        assert!(zip.starts_with(b_dir.path()));
        assert_eq!(std::fs::read(zip).unwrap(), b"PK-zip-bytes");
        assert!(b.snapshot_file("dddddd55").is_err());
        assert!(a.insert(&rec("cccccc44")).is_err(), "ids are unique");
    }

    /// A lake from before jobs moved to the metastore keeps its jobs.
    /// The log's parts, from any process on the metastore, are the log: in time order, read
    /// by another machine's job store, and an ended job's file is not copied beside them.
    #[test]
    fn log_parts_are_the_log_wherever_they_were_written() {
        let shared = metastore();
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = JobStore::open(a_dir.path(), shared.clone()).unwrap();
        let b = JobStore::open(b_dir.path(), shared).unwrap();
        a.insert(&rec("j1")).unwrap();
        std::fs::write(a.log_path("j1"), "the file\n").unwrap();
        assert_eq!(
            a.log_text("j1").unwrap(),
            "the file\n",
            "no parts yet: the file"
        );
        a.append_log_part("j1", "coord", 0, "one\n").unwrap();
        b.append_log_part("j1", "node", 0, "two\n").unwrap();
        a.append_log_part("j1", "coord", 1, "three\n").unwrap();
        for store in [&a, &b] {
            assert_eq!(store.log_text("j1").unwrap(), "one\ntwo\nthree\n");
        }
        assert_eq!(b.log_parts("j1").unwrap().len(), 3);
        assert!(b.log_parts("j").unwrap().is_empty(), "another job's prefix");
        a.keep_log("j1");
        assert_eq!(
            a.kept_log("j1").unwrap(),
            None,
            "the parts are kept already"
        );
    }

    #[test]
    fn an_old_jobs_db_is_moved_into_the_metastore() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jobs.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, status TEXT NOT NULL, record TEXT NOT NULL);",
        )
        .unwrap();
        let r = rec("eeeeee66");
        conn.execute(
            "INSERT INTO jobs VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                r.id,
                r.created_at.to_rfc3339(),
                "running",
                serde_json::to_string(&r).unwrap()
            ],
        )
        .unwrap();
        drop(conn);
        let store = JobStore::open(dir.path(), metastore()).unwrap();
        assert_eq!(store.get("eeeeee66").unwrap(), r);
        assert!(!db.exists() && dir.path().join("jobs.db.migrated").exists());
    }

    #[test]
    fn status_column_matches_the_record() {
        // The `status` column (as_str) and the JSON record (serde) must name a status alike.
        for s in [
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
