//! The job store: one row per pipeline run (`lakeplan job ls/get/logs/stop`, `rerun`), with the
//! run's log and code snapshot in `<lake>/jobs/<id>/`.
//!
//! Jobs live in their own SQLite file (`<lake>/jobs.db`) beside the catalog: they are
//! operational records, not versioned state. (Server mode, with PostgreSQL, moves them into the
//! shared metastore.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use lakeplan_core::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
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
}

fn yes() -> bool {
    true
}

pub struct JobStore {
    conn: Mutex<Connection>,
    dir: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  status TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
";

fn db_err(e: rusqlite::Error) -> Error {
    Error::Metastore(format!("job store: {e}"))
}

impl JobStore {
    /// Opens (creating) the job store of the lake at `lake_root`.
    pub fn open(lake_root: &Path) -> Result<JobStore> {
        let dir = lake_root.join("jobs");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let path = lake_root.join("jobs.db");
        let conn = Connection::open(&path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(JobStore {
            conn: Mutex::new(conn),
            dir,
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| Error::Internal("job store lock poisoned".into()))
    }

    /// The folder holding a job's log and code snapshot.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.job_dir(id).join("log.txt")
    }

    pub fn snapshot_path(&self, id: &str) -> PathBuf {
        self.job_dir(id).join("code.zip")
    }

    pub fn insert(&self, rec: &JobRecord) -> Result<()> {
        let dir = self.job_dir(&rec.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let json = serde_json::to_string(rec).map_err(|e| Error::Internal(e.to_string()))?;
        self.conn()?
            .execute(
                "INSERT INTO jobs(id, created_at, status, record) VALUES (?1, ?2, ?3, ?4)",
                params![
                    rec.id,
                    rec.created_at.to_rfc3339(),
                    rec.status.as_str(),
                    json
                ],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Replaces a job's record (status, result, nodes...).
    pub fn update(&self, rec: &JobRecord) -> Result<()> {
        let json = serde_json::to_string(rec).map_err(|e| Error::Internal(e.to_string()))?;
        let n = self
            .conn()?
            .execute(
                "UPDATE jobs SET status = ?2, record = ?3 WHERE id = ?1",
                params![rec.id, rec.status.as_str(), json],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(Error::InvalidInput(format!("job '{}' not found", rec.id)));
        }
        Ok(())
    }

    /// A job by id or unique id prefix (at least 6 characters).
    pub fn get(&self, id: &str) -> Result<JobRecord> {
        let conn = self.conn()?;
        if let Some(json) = conn
            .query_row("SELECT record FROM jobs WHERE id = ?1", [id], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(db_err)?
        {
            return parse(&json);
        }
        if id.len() < 6 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::JobNotFound(id.to_string()));
        }
        let mut stmt = conn
            .prepare("SELECT record FROM jobs WHERE id LIKE ?1 || '%' LIMIT 2")
            .map_err(db_err)?;
        let rows: Vec<String> = stmt
            .query_map([id], |r| r.get(0))
            .map_err(db_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err)?;
        match rows.as_slice() {
            [one] => parse(one),
            [] => Err(Error::JobNotFound(id.to_string())),
            _ => Err(Error::InvalidInput(format!(
                "job prefix '{id}' is ambiguous: give more characters"
            ))),
        }
    }

    /// The newest jobs first.
    pub fn list(&self, limit: usize) -> Result<Vec<JobRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT record FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1")
            .map_err(db_err)?;
        let rows: Vec<String> = stmt
            .query_map([limit as i64], |r| r.get(0))
            .map_err(db_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err)?;
        rows.iter().map(|j| parse(j)).collect()
    }
}

fn parse(json: &str) -> Result<JobRecord> {
    serde_json::from_str(json).map_err(|e| Error::Metastore(format!("job record: {e}")))
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
        }
    }

    #[test]
    fn insert_get_update_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path()).unwrap();
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
