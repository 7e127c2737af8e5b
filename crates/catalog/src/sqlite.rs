//! The SQLite [`Metastore`]: one file (`catalog.db`) in WAL mode. Several instances, in threads or
//! processes, may open the same file; every multi-statement write runs in a `BEGIN IMMEDIATE`
//! transaction so that the check and the write happen under the one write lock.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lakeplan_core::{CommitId, Error, RefKind, Result};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use crate::metastore::{format_timestamp, AuditRecord, CommitRow, Metastore, RefRow};
use crate::rows::{
    decode_audit, decode_commit, encode_audit_details, encode_commit, kind_label, kind_str,
    parse_commit_id, parse_kind, AuditColumns,
};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS refs (
    name      TEXT PRIMARY KEY NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('BRANCH', 'TAG')),
    commit_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commits (
    seq        INTEGER PRIMARY KEY, -- insertion order
    id         TEXT NOT NULL UNIQUE,
    parents    TEXT NOT NULL,
    tree       TEXT NOT NULL,
    author     TEXT NOT NULL,
    message    TEXT NOT NULL,
    timestamp  TEXT NOT NULL,
    properties TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    hash TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    actor     TEXT NOT NULL,
    client    TEXT NOT NULL,
    operation TEXT NOT NULL,
    target    TEXT NOT NULL,
    details   TEXT NOT NULL,
    result    TEXT NOT NULL,
    error     TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: records cannot be updated');
END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: records cannot be deleted');
END;
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
";

/// A [`Metastore`] in one SQLite database.
pub struct SqliteMetastore {
    conn: Mutex<Connection>,
    location: String,
}

impl std::fmt::Debug for SqliteMetastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMetastore")
            .field("location", &self.location)
            .finish()
    }
}

/// Maps a rusqlite error to `Error::Metastore`, saying what was being done.
fn db_err(ctx: impl std::fmt::Display) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::Metastore(format!("{ctx}: {e}"))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked)
    )
}

impl SqliteMetastore {
    /// Opens (creating if needed) the catalog database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let location = path.display().to_string();
        let conn = Connection::open(path).map_err(db_err(format!("opening {location}")))?;
        Self::setup(conn, location, true)
    }

    /// A private, in-memory catalog database (tests, scratch lakes).
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(db_err("opening an in-memory database"))?;
        Self::setup(conn, ":memory:".to_string(), false)
    }

    fn setup(mut conn: Connection, location: String, wal: bool) -> Result<Self> {
        let ctx = |what: &str| format!("{what} ({location})");
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err(ctx("setting busy_timeout")))?;
        conn.set_prepared_statement_cache_capacity(64);
        if wal {
            // Switching to WAL needs a moment of exclusive access; when several processes open a
            // fresh file at once, retry until the busy timeout would have passed.
            let started = std::time::Instant::now();
            loop {
                match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
                    Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
                    Ok(mode) => {
                        return Err(Error::Metastore(format!(
                            "{location}: cannot switch to WAL journal mode (got '{mode}')"
                        )))
                    }
                    Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(db_err(ctx("enabling WAL"))(e)),
                }
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err(ctx("setting synchronous=NORMAL")))?;
        {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err(ctx("locking the database to create the schema")))?;
            let version: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(db_err(ctx("reading the schema version")))?;
            if version > SCHEMA_VERSION {
                return Err(Error::Metastore(format!(
                    "{location} has catalog schema version {version}, newer than this lakeplan \
                     understands ({SCHEMA_VERSION}); upgrade lakeplan"
                )));
            }
            tx.execute_batch(SCHEMA)
                .map_err(db_err(ctx("creating the catalog schema")))?;
            if version < SCHEMA_VERSION {
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(db_err(ctx("writing the schema version")))?;
            }
            tx.commit()
                .map_err(db_err(ctx("committing the catalog schema")))?;
        }
        Ok(SqliteMetastore {
            conn: Mutex::new(conn),
            location,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (rusqlite rolls back on
        // drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_ref(conn: &Connection, name: &str) -> Result<Option<RefRow>> {
        let mut st = conn
            .prepare_cached("SELECT kind, commit_id FROM refs WHERE name = ?1")
            .map_err(db_err("preparing ref lookup"))?;
        let row = st
            .query_row(params![name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
            .map_err(db_err(format!("reading ref '{name}'")))?;
        match row {
            None => Ok(None),
            Some((kind, commit)) => Ok(Some(RefRow {
                name: name.to_string(),
                kind: parse_kind(&kind)?,
                commit: parse_commit_id(&commit)?,
            })),
        }
    }

    fn insert_nodes(conn: &Connection, nodes: &[(String, Vec<u8>)]) -> Result<()> {
        let mut st = conn
            .prepare_cached("INSERT OR IGNORE INTO nodes (hash, body) VALUES (?1, ?2)")
            .map_err(db_err("preparing node insert"))?;
        for (hash, body) in nodes {
            st.execute(params![hash, body])
                .map_err(db_err(format!("storing tree node {hash}")))?;
        }
        Ok(())
    }

    fn insert_commit(conn: &Connection, c: &CommitRow) -> Result<()> {
        let cols = encode_commit(c)?;
        let mut st = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO commits \
                 (id, parents, tree, author, message, timestamp, properties) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(db_err("preparing commit insert"))?;
        st.execute(params![
            c.id.as_str(),
            cols.parents,
            c.tree,
            c.author,
            c.message,
            cols.timestamp,
            cols.properties
        ])
        .map_err(db_err(format!("storing commit {}", c.id)))?;
        Ok(())
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committing if it returns `Ok`.
    fn immediate<T>(&self, what: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err(format!("{what}: beginning a transaction")))?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err(format!("{what}: committing")))?;
        Ok(out)
    }

    #[cfg(test)]
    pub(crate) fn raw_execute(&self, sql: &str) -> rusqlite::Result<usize> {
        self.conn().execute(sql, [])
    }
}

impl Metastore for SqliteMetastore {
    fn get_ref(&self, name: &str) -> Result<Option<RefRow>> {
        Self::read_ref(&self.conn(), name)
    }

    fn list_refs(&self) -> Result<Vec<RefRow>> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT name, kind, commit_id FROM refs ORDER BY name")
            .map_err(db_err("preparing ref listing"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(db_err("listing refs"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, kind, commit) = row.map_err(db_err("listing refs"))?;
            out.push(RefRow {
                name,
                kind: parse_kind(&kind)?,
                commit: parse_commit_id(&commit)?,
            });
        }
        Ok(out)
    }

    fn create_ref(&self, row: &RefRow) -> Result<()> {
        let what = format!("creating {} '{}'", kind_label(row.kind), row.name);
        self.immediate(&what, |conn| {
            if let Some(existing) = Self::read_ref(conn, &row.name)? {
                return Err(Error::RefExists {
                    kind: kind_label(existing.kind),
                    name: row.name.clone(),
                });
            }
            let mut st = conn
                .prepare_cached("INSERT INTO refs (name, kind, commit_id) VALUES (?1, ?2, ?3)")
                .map_err(db_err("preparing ref insert"))?;
            st.execute(params![row.name, kind_str(row.kind), row.commit.as_str()])
                .map_err(db_err(&what))?;
            Ok(())
        })
    }

    fn cas_ref(&self, name: &str, expected: &CommitId, new: &CommitId) -> Result<bool> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "UPDATE refs SET commit_id = ?3 \
                 WHERE name = ?1 AND commit_id = ?2 AND kind = 'BRANCH'",
            )
            .map_err(db_err("preparing ref update"))?;
        let n = st
            .execute(params![name, expected.as_str(), new.as_str()])
            .map_err(db_err(format!("moving branch '{name}'")))?;
        Ok(n == 1)
    }

    fn delete_ref(&self, name: &str) -> Result<bool> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("DELETE FROM refs WHERE name = ?1")
            .map_err(db_err("preparing ref delete"))?;
        let n = st
            .execute(params![name])
            .map_err(db_err(format!("deleting ref '{name}'")))?;
        Ok(n > 0)
    }

    fn rename_ref(&self, old: &str, new: &str) -> Result<()> {
        let what = format!("renaming ref '{old}' to '{new}'");
        self.immediate(&what, |conn| {
            if Self::read_ref(conn, old)?.is_none() {
                return Err(Error::RefNotFound(old.to_string()));
            }
            if let Some(existing) = Self::read_ref(conn, new)? {
                return Err(Error::RefExists {
                    kind: kind_label(existing.kind),
                    name: new.to_string(),
                });
            }
            let mut st = conn
                .prepare_cached("UPDATE refs SET name = ?2 WHERE name = ?1")
                .map_err(db_err("preparing ref rename"))?;
            st.execute(params![old, new]).map_err(db_err(&what))?;
            Ok(())
        })
    }

    fn put_commit(&self, c: &CommitRow) -> Result<()> {
        Self::insert_commit(&self.conn(), c)
    }

    fn get_commit(&self, id: &CommitId) -> Result<Option<CommitRow>> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT parents, tree, author, message, timestamp, properties \
                 FROM commits WHERE id = ?1",
            )
            .map_err(db_err("preparing commit lookup"))?;
        let row = st
            .query_row(params![id.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .optional()
            .map_err(db_err(format!("reading commit {id}")))?;
        let Some((parents, tree, author, message, ts, props)) = row else {
            return Ok(None);
        };
        decode_commit(id, &parents, tree, author, message, &ts, &props).map(Some)
    }

    fn commits_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<CommitId>> {
        let prefix = prefix.to_ascii_lowercase();
        // Every id starting with `prefix` sorts between `prefix` and `prefix` + U+10FFFF.
        let upper = format!("{prefix}\u{10FFFF}");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT id FROM commits WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(db_err("preparing commit prefix lookup"))?;
        let rows = st
            .query_map(params![prefix, upper, limit], |r| r.get::<_, String>(0))
            .map_err(db_err(format!(
                "looking up commits starting with '{prefix}'"
            )))?;
        let mut out = Vec::new();
        for row in rows {
            let id = row.map_err(db_err("reading commit ids"))?;
            out.push(parse_commit_id(&id)?);
        }
        Ok(out)
    }

    fn put_nodes(&self, nodes: &[(String, Vec<u8>)]) -> Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        self.immediate("storing tree nodes", |conn| Self::insert_nodes(conn, nodes))
    }

    fn get_node(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT body FROM nodes WHERE hash = ?1")
            .map_err(db_err("preparing node lookup"))?;
        st.query_row(params![hash], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(db_err(format!("reading tree node {hash}")))
    }

    fn commit_and_cas(
        &self,
        nodes: &[(String, Vec<u8>)],
        commit: &CommitRow,
        branch: &str,
        expected: &CommitId,
    ) -> Result<bool> {
        let what = format!("committing to branch '{branch}'");
        self.immediate(&what, |conn| {
            match Self::read_ref(conn, branch)? {
                Some(r) if r.kind == RefKind::Branch && &r.commit == expected => {}
                _ => return Ok(false),
            }
            Self::insert_nodes(conn, nodes)?;
            Self::insert_commit(conn, commit)?;
            let mut st = conn
                .prepare_cached("UPDATE refs SET commit_id = ?2 WHERE name = ?1")
                .map_err(db_err("preparing ref update"))?;
            st.execute(params![branch, commit.id.as_str()])
                .map_err(db_err(&what))?;
            Ok(true)
        })
    }

    fn append_audit(&self, rec: &AuditRecord) -> Result<i64> {
        let details = encode_audit_details(rec)?;
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "INSERT INTO audit \
                 (timestamp, actor, client, operation, target, details, result, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(db_err("preparing audit insert"))?;
        st.execute(params![
            format_timestamp(&rec.timestamp),
            rec.actor,
            rec.client,
            rec.operation,
            rec.target,
            details,
            rec.result,
            rec.error
        ])
        .map_err(db_err("appending to the audit log"))?;
        Ok(conn.last_insert_rowid())
    }

    fn list_audit(&self, limit: Option<usize>) -> Result<Vec<AuditRecord>> {
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT seq, timestamp, actor, client, operation, target, details, result, error \
                 FROM audit ORDER BY seq DESC LIMIT ?1",
            )
            .map_err(db_err("preparing audit listing"))?;
        let rows = st
            .query_map(params![limit], |r| {
                Ok(AuditColumns {
                    seq: r.get(0)?,
                    timestamp: r.get(1)?,
                    actor: r.get(2)?,
                    client: r.get(3)?,
                    operation: r.get(4)?,
                    target: r.get(5)?,
                    details: r.get(6)?,
                    result: r.get(7)?,
                    error: r.get(8)?,
                })
            })
            .map_err(db_err("reading the audit log"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(decode_audit(row.map_err(db_err("reading the audit log"))?)?);
        }
        Ok(out)
    }

    fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")
            .map_err(db_err("preparing setting lookup"))?;
        st.query_row(params![key], |r| r.get::<_, String>(0))
            .optional()
            .map_err(db_err(format!("reading setting '{key}'")))
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .map_err(db_err("preparing setting update"))?;
        st.execute(params![key, value])
            .map_err(db_err(format!("writing setting '{key}'")))?;
        Ok(())
    }

    fn insert_setting(&self, key: &str, value: &str) -> Result<bool> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            )
            .map_err(db_err("preparing setting insert"))?;
        let n = st
            .execute(params![key, value])
            .map_err(db_err(format!("inserting setting '{key}'")))?;
        Ok(n > 0)
    }

    fn cas_setting(&self, key: &str, expected: &str, new: &str) -> Result<bool> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("UPDATE settings SET value = ?3 WHERE key = ?1 AND value = ?2")
            .map_err(db_err("preparing setting compare-and-set"))?;
        let n = st
            .execute(params![key, expected, new])
            .map_err(db_err(format!("replacing setting '{key}'")))?;
        Ok(n > 0)
    }

    fn delete_setting(&self, key: &str) -> Result<bool> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("DELETE FROM settings WHERE key = ?1")
            .map_err(db_err("preparing setting removal"))?;
        let n = st
            .execute(params![key])
            .map_err(db_err(format!("removing setting '{key}'")))?;
        Ok(n > 0)
    }

    fn list_settings(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        // substr comparison, not LIKE: the prefix is literal.
        let mut st = conn
            .prepare_cached(
                "SELECT key, value FROM settings WHERE substr(key, 1, length(?1)) = ?1 \
                 ORDER BY key",
            )
            .map_err(db_err("preparing settings listing"))?;
        let rows = st
            .query_map(params![prefix], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db_err(format!("listing settings '{prefix}*'")))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(format!("listing settings '{prefix}*'")))
    }

    fn last_settings(&self, prefix: &str, limit: usize) -> Result<Vec<(String, String)>> {
        let Some(end) = crate::metastore::prefix_end(prefix) else {
            let mut all = self.list_settings(prefix)?;
            all.reverse();
            all.truncate(limit);
            return Ok(all);
        };
        let conn = self.conn();
        // A range on the primary key: read from its top down, `limit` rows.
        let mut st = conn
            .prepare_cached(
                "SELECT key, value FROM settings WHERE key >= ?1 AND key < ?2 \
                 ORDER BY key DESC LIMIT ?3",
            )
            .map_err(db_err("preparing settings listing"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st
            .query_map(params![prefix, end, limit], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db_err(format!("listing settings '{prefix}*'")))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(format!("listing settings '{prefix}*'")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;
    use crate::contract::run_contract_suite;

    #[test]
    fn contract_in_memory() {
        run_contract_suite(&|| {
            Arc::new(SqliteMetastore::open_in_memory().expect("open in-memory"))
                as Arc<dyn Metastore>
        });
    }

    #[test]
    fn contract_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = AtomicUsize::new(0);
        run_contract_suite(&|| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let path = dir.path().join(format!("catalog{i}.db"));
            Arc::new(SqliteMetastore::open(&path).expect("open file")) as Arc<dyn Metastore>
        });
    }

    fn audit_rec() -> AuditRecord {
        AuditRecord {
            seq: 0,
            timestamp: Utc::now(),
            actor: "alice".into(),
            client: "cli".into(),
            operation: "commit".into(),
            target: "main".into(),
            details: serde_json::json!({"tables": 1}),
            result: "ok".into(),
            error: None,
        }
    }

    #[test]
    fn audit_rows_cannot_be_updated_or_deleted() {
        let m = SqliteMetastore::open_in_memory().unwrap();
        m.append_audit(&audit_rec()).unwrap();
        let e = m
            .raw_execute("UPDATE audit SET actor = 'mallory'")
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let e = m.raw_execute("DELETE FROM audit").unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let rows = m.list_audit(None).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].actor, "alice");
    }

    #[test]
    fn audit_is_append_only_for_other_connections_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let m = SqliteMetastore::open(&path).unwrap();
        m.append_audit(&audit_rec()).unwrap();
        let raw = Connection::open(&path).unwrap();
        assert!(raw
            .execute("UPDATE audit SET result = 'error'", [])
            .is_err());
        assert!(raw.execute("DELETE FROM audit WHERE seq = 1", []).is_err());
        let n: i64 = raw
            .query_row("SELECT count(*) FROM audit WHERE result = 'ok'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn reopen_keeps_data_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let m = SqliteMetastore::open(&path).unwrap();
            m.set_setting("k", "v").unwrap();
        }
        let m = SqliteMetastore::open(&path).unwrap();
        assert_eq!(m.get_setting("k").unwrap().as_deref(), Some("v"));
        let mode: String = m
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = m
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        drop(SqliteMetastore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = SqliteMetastore::open(&path).unwrap_err();
        assert!(matches!(e, Error::Metastore(_)), "{e}");
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn missing_directory_is_a_metastore_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = SqliteMetastore::open(&dir.path().join("no/such/dir/catalog.db")).unwrap_err();
        assert!(matches!(e, Error::Metastore(_)), "{e}");
        assert!(e.to_string().contains("catalog.db"), "{e}");
    }
}
