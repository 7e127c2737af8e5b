//! The PostgreSQL [`Metastore`]: the catalog of a lake in one schema of a PostgreSQL database, so
//! that many servers and processes can share it (DESIGN.md §9) and one database can hold a catalog
//! per tenant, each in its own schema (§8).
//!
//! # Why a background thread
//!
//! [`Metastore`] is synchronous, and it is called both from plain threads and from async code
//! running on tokio worker threads (which call it directly, as they call the SQLite metastore).
//! The `postgres` crate's blocking client cannot serve the second case: it runs
//! `Runtime::block_on` inside, which panics on a thread that is already driving a tokio runtime.
//! So each [`PostgresMetastore`] owns one thread that runs its own single-threaded tokio runtime
//! and a small pool of `tokio-postgres` connections. A trait call spawns its work onto that
//! runtime (a [`tokio::runtime::Handle::spawn`], which is allowed from any thread, inside a
//! runtime or not) and waits for the answer on a `std::sync::mpsc` channel, which blocks the
//! calling thread like a SQLite call does and needs no runtime at all. Nothing on the calling side
//! ever enters a runtime, so no call can panic for being made in the wrong context; and the runtime
//! is only ever dropped on its own thread, never in async code.
//!
//! Up to [`POOL_SIZE`] calls run at once, each on a connection of its own (opened when first
//! needed, kept while healthy). Every write that checks and writes is one statement, so several
//! metastores, in threads or processes, on one schema are correct together, and no lock is ever
//! held while waiting for a client:
//! - `cas_ref` is a single `UPDATE ... WHERE commit_id = expected AND kind = 'BRANCH'`: concurrent
//!   updates of the row queue on its lock and each re-checks the condition on the newest version.
//! - `commit_and_cas` is that same `UPDATE` with the inserts of the nodes and the commit chained
//!   to it (data-modifying `WITH` clauses that insert only if it moved the branch): all or nothing,
//!   in one round trip.
//! - `put_commit` and `put_nodes` are `INSERT ... ON CONFLICT DO NOTHING`; nodes are inserted in
//!   hash order so that two writers storing overlapping nodes cannot deadlock.
//! - The audit table refuses `UPDATE`, `DELETE` and `TRUNCATE` through triggers, from any client;
//!   its `seq` is an identity column. (A role that owns the table can still drop the trigger:
//!   give the servers a role that does not own the schema where that matters.)
//! - Commit and audit timestamps are stored as text in [`format_timestamp`] form, so nanoseconds
//!   round-trip exactly and commit ids keep verifying. Keys that are sorted or compared by prefix
//!   (ref names, commit ids, setting keys) use the `"C"` collation: byte order, as in SQLite,
//!   whatever the database's locale.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use lakeplan_core::{CommitId, Error, Result};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSqlOwned, ToSql};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::metastore::{format_timestamp, AuditRecord, CommitRow, Metastore, RefRow};
use crate::rows::{
    decode_audit, decode_commit, encode_audit_details, encode_commit, kind_label, kind_str,
    parse_commit_id, parse_kind, AuditColumns,
};

/// The schema version this code writes (the row of `schema_version`).
const SCHEMA_VERSION: i32 = 1;

/// How many calls of one metastore run at once, each on its own connection.
pub const POOL_SIZE: usize = 4;

/// The time allowed to open a connection (socket and handshake), unless the URL sets
/// `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The time one call may take once it has a connection. A call that takes longer fails and its
/// connection is dropped (the server then rolls back whatever it had open).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often `create_ref` and `rename_ref` try again when the ref that made them fail is deleted
/// before they can say what kind it was.
const RACE_ATTEMPTS: usize = 5;

/// The longest schema name PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_SCHEMA_LEN: usize = 63;

/// Everything a fresh schema needs. `{s}` is the quoted schema name.
const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS {s}.schema_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.refs (
    name      TEXT COLLATE "C" PRIMARY KEY,
    kind      TEXT NOT NULL CHECK (kind IN ('BRANCH', 'TAG')),
    commit_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.commits (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order
    id         TEXT COLLATE "C" PRIMARY KEY,
    parents    TEXT NOT NULL,
    tree       TEXT NOT NULL,
    author     TEXT NOT NULL,
    message    TEXT NOT NULL,
    timestamp  TEXT NOT NULL,
    properties TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.nodes (
    hash TEXT COLLATE "C" PRIMARY KEY,
    body BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.audit (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    timestamp TEXT NOT NULL,
    actor     TEXT NOT NULL,
    client    TEXT NOT NULL,
    operation TEXT NOT NULL,
    target    TEXT NOT NULL,
    details   TEXT NOT NULL,
    result    TEXT NOT NULL,
    error     TEXT
);
CREATE OR REPLACE FUNCTION {s}.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: records cannot be %',
        CASE TG_OP WHEN 'UPDATE' THEN 'updated' WHEN 'DELETE' THEN 'deleted' ELSE 'truncated' END;
END
$$;
DROP TRIGGER IF EXISTS audit_no_update_or_delete ON {s}.audit;
CREATE TRIGGER audit_no_update_or_delete BEFORE UPDATE OR DELETE ON {s}.audit
    FOR EACH ROW EXECUTE FUNCTION {s}.audit_append_only();
DROP TRIGGER IF EXISTS audit_no_truncate ON {s}.audit;
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON {s}.audit
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.audit_append_only();
CREATE TABLE IF NOT EXISTS {s}.settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// The statements of every call, with the schema filled in.
struct Sql {
    get_ref: String,
    list_refs: String,
    insert_ref: String,
    cas_ref: String,
    delete_ref: String,
    rename_ref: String,
    insert_commit: String,
    get_commit: String,
    commits_in_range: String,
    commits_from: String,
    insert_nodes: String,
    get_node: String,
    commit_and_cas: String,
    append_audit: String,
    list_audit: String,
    get_setting: String,
    set_setting: String,
    insert_setting: String,
    cas_setting: String,
    delete_setting: String,
    list_settings: String,
    last_settings: String,
}

impl Sql {
    fn new(s: &str) -> Sql {
        let commit_cols = "id, parents, tree, author, message, timestamp, properties";
        Sql {
            get_ref: format!("SELECT kind, commit_id FROM {s}.refs WHERE name = $1"),
            list_refs: format!("SELECT name, kind, commit_id FROM {s}.refs ORDER BY name"),
            insert_ref: format!(
                "INSERT INTO {s}.refs (name, kind, commit_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING"
            ),
            cas_ref: format!(
                "UPDATE {s}.refs SET commit_id = $3 \
                 WHERE name = $1 AND commit_id = $2 AND kind = 'BRANCH'"
            ),
            delete_ref: format!("DELETE FROM {s}.refs WHERE name = $1"),
            rename_ref: format!("UPDATE {s}.refs SET name = $2 WHERE name = $1"),
            insert_commit: format!(
                "INSERT INTO {s}.commits ({commit_cols}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO NOTHING"
            ),
            get_commit: format!(
                "SELECT parents, tree, author, message, timestamp, properties \
                 FROM {s}.commits WHERE id = $1"
            ),
            commits_in_range: format!(
                "SELECT id FROM {s}.commits WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3"
            ),
            commits_from: format!("SELECT id FROM {s}.commits WHERE id >= $1 ORDER BY id LIMIT $2"),
            // In hash order: concurrent writers of overlapping nodes take the key locks in one
            // order, so they queue instead of deadlocking.
            insert_nodes: format!(
                "INSERT INTO {s}.nodes (hash, body) \
                 SELECT n.hash, n.body FROM unnest($1::text[], $2::bytea[]) AS n(hash, body) \
                 ORDER BY n.hash COLLATE \"C\" \
                 ON CONFLICT (hash) DO NOTHING"
            ),
            get_node: format!("SELECT body FROM {s}.nodes WHERE hash = $1"),
            // One statement, so one round trip and atomic by itself. The conditional move runs
            // first (both inserts read its result): it waits for, then re-checks, any concurrent
            // move of the branch, and holds the row lock until the statement ends; if it moved
            // nothing, the inserts select no rows and nothing at all is written.
            commit_and_cas: format!(
                "WITH moved AS ( \
                     UPDATE {s}.refs SET commit_id = $3 \
                     WHERE name = $1 AND commit_id = $2 AND kind = 'BRANCH' RETURNING 1 \
                 ), new_nodes AS ( \
                     INSERT INTO {s}.nodes (hash, body) \
                     SELECT n.hash, n.body FROM unnest($4::text[], $5::bytea[]) AS n(hash, body) \
                     WHERE EXISTS (SELECT 1 FROM moved) \
                     ORDER BY n.hash COLLATE \"C\" \
                     ON CONFLICT (hash) DO NOTHING \
                 ), new_commit AS ( \
                     INSERT INTO {s}.commits ({commit_cols}) \
                     SELECT $3, $6, $7, $8, $9, $10, $11 WHERE EXISTS (SELECT 1 FROM moved) \
                     ON CONFLICT (id) DO NOTHING \
                 ) \
                 SELECT count(*) FROM moved"
            ),
            append_audit: format!(
                "INSERT INTO {s}.audit \
                 (timestamp, actor, client, operation, target, details, result, error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq"
            ),
            // LIMIT NULL is no limit.
            list_audit: format!(
                "SELECT seq, timestamp, actor, client, operation, target, details, result, error \
                 FROM {s}.audit ORDER BY seq DESC LIMIT $1"
            ),
            get_setting: format!("SELECT value FROM {s}.settings WHERE key = $1"),
            set_setting: format!(
                "INSERT INTO {s}.settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            insert_setting: format!(
                "INSERT INTO {s}.settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO NOTHING"
            ),
            cas_setting: format!(
                "UPDATE {s}.settings SET value = $3 WHERE key = $1 AND value = $2"
            ),
            delete_setting: format!("DELETE FROM {s}.settings WHERE key = $1"),
            // starts_with, not LIKE: the prefix is literal.
            list_settings: format!(
                "SELECT key, value FROM {s}.settings WHERE starts_with(key, $1) ORDER BY key"
            ),
            // The key's collation is "C": a range on its primary key, read from the top down.
            last_settings: format!(
                "SELECT key, value FROM {s}.settings WHERE key >= $1 AND key < $2 \
                 ORDER BY key DESC LIMIT $3"
            ),
        }
    }
}

type PgError = tokio_postgres::Error;

/// One line about a driver error: the server's message (with its detail, hint and SQLSTATE) for
/// errors the server sent, otherwise the driver's message and its causes (the driver's own
/// `Display` leaves the causes out).
fn describe(e: &PgError) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = db.message().to_string();
        if let Some(detail) = db.detail() {
            s.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!(" (hint: {hint})"));
        }
        s.push_str(&format!(" [SQLSTATE {}]", db.code().code()));
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// Maps a driver error to `Error::Metastore`, saying what was being done.
fn db_err(ctx: impl fmt::Display) -> impl FnOnce(PgError) -> Error {
    move |e| Error::Metastore(format!("{ctx}: {}", describe(&e)))
}

/// Reads column `idx` of a row, as a typed metastore error if its type is not the expected one.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T> {
    row.try_get(idx)
        .map_err(|e| Error::Metastore(format!("reading column {idx}: {}", describe(&e))))
}

/// Checks that `name` can be a schema name as is: ASCII letters, digits and underscores, not
/// starting with a digit, at most 63 bytes, and not one of PostgreSQL's own schemas. The name is
/// also quoted wherever it is used, so it keeps its case.
fn validate_schema_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::Metastore(format!(
            "invalid PostgreSQL schema name '{}': {reason}",
            name.escape_debug()
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_SCHEMA_LEN {
        return bad("it is longer than 63 bytes");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return bad("use only ASCII letters, digits and '_'");
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return bad("it must not start with a digit");
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("pg_") || lower == "information_schema" {
        return bad("pg_* and information_schema are PostgreSQL's own schemas");
    }
    Ok(())
}

/// Where a config points, for messages: never the password.
fn describe_target(config: &Config, schema: &str) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgres://{}@{}:{}/{} schema '{schema}'",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// A connection with the statements it has prepared (a prepared statement belongs to one
/// connection; preparing once saves a round trip on every later call).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    async fn prepare(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .client
            .prepare(sql)
            .await
            .map_err(db_err("preparing a statement"))?;
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let st = self.prepare(sql).await?;
        self.client
            .execute(&st, params)
            .await
            .map_err(db_err("executing"))
    }

    async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let st = self.prepare(sql).await?;
        self.client
            .query(&st, params)
            .await
            .map_err(db_err("querying"))
    }

    async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let st = self.prepare(sql).await?;
        self.client
            .query_opt(&st, params)
            .await
            .map_err(db_err("querying"))
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The connections of one metastore. Lives on the worker thread's runtime.
struct Pool {
    config: Config,
    target: String,
    /// One permit per connection that may be in use.
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
    /// The tasks that drive each connection's socket.
    drivers: Mutex<JoinSet<()>>,
}

impl Pool {
    fn idle(&self) -> MutexGuard<'_, Vec<Conn>> {
        // The lock is only held to push or pop; a panic cannot leave the vector inconsistent.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drivers(&self) -> MutexGuard<'_, JoinSet<()>> {
        self.drivers.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn connect(&self) -> Result<Conn> {
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        let connecting = self.config.connect(NoTls);
        let (client, connection) = match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                return Err(Error::Metastore(format!(
                    "connecting to PostgreSQL ({}): {}",
                    self.target,
                    describe(&e)
                )))
            }
            Err(_) => {
                return Err(Error::Metastore(format!(
                    "connecting to PostgreSQL ({}): no answer within {}s",
                    self.target,
                    limit.as_secs_f32()
                )))
            }
        };
        // The connection ends, sending the server a goodbye, once its client is dropped; an error
        // (the server went away) shows on the client as `is_closed`.
        self.drivers().spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Runs `op` on a connection: an idle healthy one, or a new one.
    async fn run<T>(
        &self,
        what: &str,
        op: impl for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T>>,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Metastore(format!("{what}: the metastore is shutting down")))?;
        let idle = {
            let mut idle = self.idle();
            idle.retain(|c| !c.client.is_closed());
            idle.pop()
        };
        let mut conn = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        match tokio::time::timeout(CALL_TIMEOUT, op(&mut conn)).await {
            Ok(out) => {
                if !conn.client.is_closed() {
                    self.idle().push(conn);
                }
                out.map_err(|e| match e {
                    Error::Metastore(m) => Error::Metastore(format!("{what}: {m}")),
                    other => other,
                })
            }
            // Dropping `conn` closes it: the server rolls back anything left open.
            Err(_) => Err(Error::Metastore(format!(
                "{what}: PostgreSQL ({}) did not answer within {}s",
                self.target,
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Closes every connection, waiting briefly for the goodbyes to go out.
    async fn close(&self) {
        self.permits.close();
        self.idle().clear();
        let mut drivers = std::mem::take(&mut *self.drivers());
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while drivers.join_next().await.is_some() {}
        })
        .await;
    }
}

/// The thread that owns the runtime the connections live on.
struct Worker {
    handle: tokio::runtime::Handle,
    pool: Arc<Pool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(pool: Arc<Pool>) -> Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::Metastore(format!("starting the PostgreSQL client runtime: {e}"))
            })?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let closing = Arc::clone(&pool);
        let thread = std::thread::Builder::new()
            .name("lakeplan-pg".into())
            .spawn(move || {
                // Drives every spawned call and connection until the metastore is dropped (the
                // sender dropped counts too), then closes the connections; the runtime is dropped
                // here, on its own thread, outside any async context.
                runtime.block_on(async move {
                    let _ = stopped.await;
                    closing.close().await;
                });
            })
            .map_err(|e| Error::Metastore(format!("starting the PostgreSQL client thread: {e}")))?;
        Ok(Worker {
            handle,
            pool,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `op` on the worker's runtime and blocks the calling thread (any thread, inside a
    /// tokio runtime or not) until it is done.
    fn call<T: Send + 'static>(
        &self,
        what: String,
        op: impl for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let pool = Arc::clone(&self.pool);
        let gone = format!("{what}: the PostgreSQL metastore's worker thread has stopped");
        self.handle.spawn(async move {
            let _ = reply.send(pool.run(&what, op).await);
        });
        // A task that never answers was dropped (its runtime stopped): the sender is gone too.
        answer.recv().unwrap_or(Err(Error::Metastore(gone)))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // No call is in flight (they all borrow the metastore), so this only waits for the
        // connections to close.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A [`Metastore`] in one schema of a PostgreSQL database. See the module docs for how calls run.
pub struct PostgresMetastore {
    worker: Worker,
    sql: Arc<Sql>,
    schema: String,
    target: String,
}

impl fmt::Debug for PostgresMetastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresMetastore")
            .field("target", &self.target)
            .finish()
    }
}

impl PostgresMetastore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, or libpq's
    /// `key=value` form; no TLS) and opens the catalog in `schema`, creating the schema and its
    /// tables if they are missing. Fails with `Error::Metastore` if the URL or the schema name is
    /// invalid, the server cannot be reached within the connect timeout (10 s unless the URL sets
    /// `connect_timeout`), or the schema was written by a newer lakeplan.
    pub fn connect(url: &str, schema: &str) -> Result<Self> {
        validate_schema_name(schema)?;
        // The driver's parse errors never repeat the URL, so no password leaks into the message.
        let mut config = Config::from_str(url)
            .map_err(|e| Error::Metastore(format!("invalid PostgreSQL URL: {}", describe(&e))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("lakeplan");
        }
        let target = describe_target(&config, schema);
        let quoted = format!("\"{schema}\"");
        let pool = Arc::new(Pool {
            config,
            target: target.clone(),
            permits: Semaphore::new(POOL_SIZE),
            idle: Mutex::new(Vec::new()),
            drivers: Mutex::new(JoinSet::new()),
        });
        let worker = Worker::start(pool)?;
        let store = PostgresMetastore {
            worker,
            sql: Arc::new(Sql::new(&quoted)),
            schema: schema.to_string(),
            target,
        };
        let name = schema.to_string();
        store.worker.call(
            format!("opening the catalog ({})", store.target),
            move |conn| Box::pin(async move { setup_schema(conn, &name, &quoted).await }),
        )?;
        Ok(store)
    }

    /// Where this metastore lives (`postgres://user@host:port/db schema 'name'`, no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema the catalog is in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn call<T: Send + 'static>(
        &self,
        what: String,
        op: impl for<'c> FnOnce(&'c mut Conn, Arc<Sql>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    ) -> Result<T> {
        let sql = Arc::clone(&self.sql);
        self.worker.call(what, move |conn| op(conn, sql))
    }

    /// The one column of the row that statement `pick` selects for `key`, if there is one.
    fn lookup<T: FromSqlOwned + Send + 'static>(
        &self,
        what: String,
        pick: fn(&Sql) -> &String,
        key: &str,
    ) -> Result<Option<T>> {
        let key = key.to_string();
        self.call(what, move |conn, sql| {
            Box::pin(async move {
                match conn.query_opt(pick(&sql), &[&key]).await? {
                    Some(row) => col(&row, 0).map(Some),
                    None => Ok(None),
                }
            })
        })
    }

    /// Runs one raw SQL statement on one of this metastore's connections and returns the number
    /// of rows it changed. For tests that check what the database itself allows (e.g. that the
    /// audit table refuses `UPDATE` from any client).
    #[cfg(feature = "test-support")]
    pub fn execute_raw(&self, statement: &str) -> Result<u64> {
        let statement = statement.to_string();
        self.worker.call("running raw SQL".into(), move |conn| {
            Box::pin(async move {
                conn.client
                    .execute(statement.as_str(), &[])
                    .await
                    .map_err(db_err("executing"))
            })
        })
    }
}

/// Creates the schema and its tables, or checks the version of existing ones. Runs under an
/// advisory lock, so that metastores opening a fresh schema at once create it once.
async fn setup_schema(conn: &mut Conn, name: &str, quoted: &str) -> Result<()> {
    let tx = conn
        .client
        .transaction()
        .await
        .map_err(db_err("beginning a transaction"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('lakeplan.metastore'), hashtext($1))",
        &[&name],
    )
    .await
    .map_err(db_err("locking the schema to create it"))?;
    let version_table = format!("{quoted}.schema_version");
    let exists = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&version_table])
        .await
        .map_err(db_err("looking for the catalog tables"))?;
    let version: i32 = if col::<bool>(&exists, 0)? {
        let row = tx
            .query_opt(&format!("SELECT version FROM {version_table}"), &[])
            .await
            .map_err(db_err("reading the schema version"))?;
        match row {
            Some(row) => col(&row, 0)?,
            None => 0,
        }
    } else {
        0
    };
    if version > SCHEMA_VERSION {
        return Err(Error::Metastore(format!(
            "schema '{name}' has catalog schema version {version}, newer than this lakeplan \
             understands ({SCHEMA_VERSION}); upgrade lakeplan"
        )));
    }
    if version < SCHEMA_VERSION {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
            .await
            .map_err(db_err(format!("creating schema '{name}'")))?;
        tx.batch_execute(&DDL.replace("{s}", quoted))
            .await
            .map_err(db_err("creating the catalog tables"))?;
        tx.execute(
            &format!(
                "INSERT INTO {version_table} (version) VALUES ($1) \
                 ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version"
            ),
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(db_err("writing the schema version"))?;
    }
    tx.commit()
        .await
        .map_err(db_err("committing the catalog schema"))
}

async fn read_ref(conn: &mut Conn, sql: &Sql, name: &str) -> Result<Option<RefRow>> {
    let Some(row) = conn.query_opt(&sql.get_ref, &[&name]).await? else {
        return Ok(None);
    };
    Ok(Some(RefRow {
        name: name.to_string(),
        kind: parse_kind(col(&row, 0)?)?,
        commit: parse_commit_id(col(&row, 1)?)?,
    }))
}

/// The `RefExists` error for `name`, or `None` if the ref is gone by now.
async fn ref_exists(conn: &mut Conn, sql: &Sql, name: &str) -> Result<Option<Error>> {
    Ok(read_ref(conn, sql, name).await?.map(|r| Error::RefExists {
        kind: kind_label(r.kind),
        name: name.to_string(),
    }))
}

/// Tree nodes as the two arrays `insert_nodes` unnests.
fn node_arrays(nodes: &[(String, Vec<u8>)]) -> (Vec<String>, Vec<Vec<u8>>) {
    nodes.iter().cloned().unzip()
}

/// The parameters of `insert_commit`, owned so that they can move to the worker thread.
struct CommitParams {
    id: String,
    parents: String,
    tree: String,
    author: String,
    message: String,
    timestamp: String,
    properties: String,
}

impl CommitParams {
    fn new(c: &CommitRow) -> Result<Self> {
        let cols = encode_commit(c)?;
        Ok(CommitParams {
            id: c.id.as_str().to_string(),
            parents: cols.parents,
            tree: c.tree.clone(),
            author: c.author.clone(),
            message: c.message.clone(),
            timestamp: cols.timestamp,
            properties: cols.properties,
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.id,
            &self.parents,
            &self.tree,
            &self.author,
            &self.message,
            &self.timestamp,
            &self.properties,
        ]
    }
}

/// The half-open range `[prefix, upper)` of commit ids that start with `prefix`, which must be
/// ASCII (hex): `upper` is the prefix with its last digit bumped (`'9'` to `':'`, `'f'` to `'g'`,
/// both above every id with that prefix). `None` for an empty prefix (every id).
fn hex_prefix_upper(prefix: &str) -> Option<String> {
    let (head, last) = prefix.split_at_checked(prefix.len().checked_sub(1)?)?;
    let bumped = last.bytes().next()?.checked_add(1)?;
    Some(format!("{head}{}", char::from(bumped)))
}

impl Metastore for PostgresMetastore {
    fn get_ref(&self, name: &str) -> Result<Option<RefRow>> {
        let name = name.to_string();
        self.call(format!("reading ref '{name}'"), move |conn, sql| {
            Box::pin(async move { read_ref(conn, &sql, &name).await })
        })
    }

    fn list_refs(&self) -> Result<Vec<RefRow>> {
        self.call("listing refs".into(), move |conn, sql| {
            Box::pin(async move {
                let rows = conn.query(&sql.list_refs, &[]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(RefRow {
                            name: col(row, 0)?,
                            kind: parse_kind(col(row, 1)?)?,
                            commit: parse_commit_id(col(row, 2)?)?,
                        })
                    })
                    .collect()
            })
        })
    }

    fn create_ref(&self, row: &RefRow) -> Result<()> {
        let row = row.clone();
        let what = format!("creating {} '{}'", kind_label(row.kind), row.name);
        self.call(what, move |conn, sql| {
            Box::pin(async move {
                let (kind, commit) = (kind_str(row.kind), row.commit.as_str());
                for _ in 0..RACE_ATTEMPTS {
                    let params: [&(dyn ToSql + Sync); 3] = [&row.name, &kind, &commit];
                    if conn.execute(&sql.insert_ref, &params).await? == 1 {
                        return Ok(());
                    }
                    if let Some(exists) = ref_exists(conn, &sql, &row.name).await? {
                        return Err(exists);
                    }
                }
                Err(Error::Metastore(
                    "the name was taken and freed again by concurrent writers; try again".into(),
                ))
            })
        })
    }

    fn cas_ref(&self, name: &str, expected: &CommitId, new: &CommitId) -> Result<bool> {
        let params = [name, expected.as_str(), new.as_str()].map(str::to_string);
        self.call(format!("moving branch '{name}'"), move |conn, sql| {
            Box::pin(async move {
                let [name, expected, new] = &params;
                let params: [&(dyn ToSql + Sync); 3] = [name, expected, new];
                Ok(conn.execute(&sql.cas_ref, &params).await? == 1)
            })
        })
    }

    fn delete_ref(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.call(format!("deleting ref '{name}'"), move |conn, sql| {
            Box::pin(async move { Ok(conn.execute(&sql.delete_ref, &[&name]).await? > 0) })
        })
    }

    fn rename_ref(&self, old: &str, new: &str) -> Result<()> {
        let (old, new) = (old.to_string(), new.to_string());
        let what = format!("renaming ref '{old}' to '{new}'");
        self.call(what, move |conn, sql| {
            Box::pin(async move {
                for _ in 0..RACE_ATTEMPTS {
                    if old == new {
                        // Renaming onto itself: the target exists if the source does.
                        return match ref_exists(conn, &sql, &new).await? {
                            Some(exists) => Err(exists),
                            None => Err(Error::RefNotFound(old)),
                        };
                    }
                    let st = conn.prepare(&sql.rename_ref).await?;
                    match conn.client.execute(&st, &[&old, &new]).await {
                        Ok(0) => return Err(Error::RefNotFound(old)),
                        Ok(_) => return Ok(()),
                        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                            if let Some(exists) = ref_exists(conn, &sql, &new).await? {
                                return Err(exists);
                            }
                        }
                        Err(e) => return Err(db_err("updating the ref")(e)),
                    }
                }
                Err(Error::Metastore(
                    "the new name was taken and freed again by concurrent writers; try again"
                        .into(),
                ))
            })
        })
    }

    fn put_commit(&self, c: &CommitRow) -> Result<()> {
        let commit = CommitParams::new(c)?;
        self.call(format!("storing commit {}", c.id), move |conn, sql| {
            Box::pin(async move {
                conn.execute(&sql.insert_commit, &commit.params()).await?;
                Ok(())
            })
        })
    }

    fn get_commit(&self, id: &CommitId) -> Result<Option<CommitRow>> {
        let id = id.clone();
        self.call(format!("reading commit {id}"), move |conn, sql| {
            Box::pin(async move {
                let Some(row) = conn.query_opt(&sql.get_commit, &[&id.as_str()]).await? else {
                    return Ok(None);
                };
                decode_commit(
                    &id,
                    col(&row, 0)?,
                    col(&row, 1)?,
                    col(&row, 2)?,
                    col(&row, 3)?,
                    col(&row, 4)?,
                    col(&row, 5)?,
                )
                .map(Some)
            })
        })
    }

    fn commits_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<CommitId>> {
        let prefix = prefix.to_ascii_lowercase();
        // Ids are lowercase hex: anything else matches nothing.
        if !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let what = format!("looking up commits starting with '{prefix}'");
        self.call(what, move |conn, sql| {
            Box::pin(async move {
                let rows = match hex_prefix_upper(&prefix) {
                    Some(upper) => {
                        conn.query(&sql.commits_in_range, &[&prefix, &upper, &limit])
                            .await?
                    }
                    None => conn.query(&sql.commits_from, &[&prefix, &limit]).await?,
                };
                rows.iter()
                    .map(|row| parse_commit_id(col(row, 0)?))
                    .collect()
            })
        })
    }

    fn put_nodes(&self, nodes: &[(String, Vec<u8>)]) -> Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        let (hashes, bodies) = node_arrays(nodes);
        self.call("storing tree nodes".into(), move |conn, sql| {
            Box::pin(async move {
                conn.execute(&sql.insert_nodes, &[&hashes, &bodies]).await?;
                Ok(())
            })
        })
    }

    fn get_node(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        self.lookup(
            format!("reading tree node {hash}"),
            |sql| &sql.get_node,
            hash,
        )
    }

    fn commit_and_cas(
        &self,
        nodes: &[(String, Vec<u8>)],
        commit: &CommitRow,
        branch: &str,
        expected: &CommitId,
    ) -> Result<bool> {
        let (hashes, bodies) = node_arrays(nodes);
        let row = CommitParams::new(commit)?;
        let (branch, expected) = (branch.to_string(), expected.as_str().to_string());
        let what = format!("committing to branch '{branch}'");
        self.call(what, move |conn, sql| {
            Box::pin(async move {
                let [id, parents, tree, author, message, timestamp, properties] = row.params();
                let params: [&(dyn ToSql + Sync); 11] = [
                    &branch, &expected, id, &hashes, &bodies, parents, tree, author, message,
                    timestamp, properties,
                ];
                let rows = conn.query(&sql.commit_and_cas, &params).await?;
                let moved: i64 = match rows.first() {
                    Some(row) => col(row, 0)?,
                    None => 0,
                };
                Ok(moved == 1)
            })
        })
    }

    fn append_audit(&self, rec: &AuditRecord) -> Result<i64> {
        let details = encode_audit_details(rec)?;
        let timestamp = format_timestamp(&rec.timestamp);
        let rec = rec.clone();
        self.call("appending to the audit log".into(), move |conn, sql| {
            Box::pin(async move {
                let params: [&(dyn ToSql + Sync); 8] = [
                    &timestamp,
                    &rec.actor,
                    &rec.client,
                    &rec.operation,
                    &rec.target,
                    &details,
                    &rec.result,
                    &rec.error,
                ];
                let rows = conn.query(&sql.append_audit, &params).await?;
                match rows.first() {
                    Some(row) => col(row, 0),
                    None => Err(Error::Metastore("the insert returned no sequence".into())),
                }
            })
        })
    }

    fn list_audit(&self, limit: Option<usize>) -> Result<Vec<AuditRecord>> {
        let limit = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        self.call("reading the audit log".into(), move |conn, sql| {
            Box::pin(async move {
                let rows = conn.query(&sql.list_audit, &[&limit]).await?;
                rows.iter()
                    .map(|row| {
                        decode_audit(AuditColumns {
                            seq: col(row, 0)?,
                            timestamp: col(row, 1)?,
                            actor: col(row, 2)?,
                            client: col(row, 3)?,
                            operation: col(row, 4)?,
                            target: col(row, 5)?,
                            details: col(row, 6)?,
                            result: col(row, 7)?,
                            error: col(row, 8)?,
                        })
                    })
                    .collect()
            })
        })
    }

    fn get_setting(&self, key: &str) -> Result<Option<String>> {
        self.lookup(
            format!("reading setting '{key}'"),
            |sql| &sql.get_setting,
            key,
        )
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.call(format!("writing setting '{key}'"), move |conn, sql| {
            Box::pin(async move {
                conn.execute(&sql.set_setting, &[&key, &value]).await?;
                Ok(())
            })
        })
    }

    fn insert_setting(&self, key: &str, value: &str) -> Result<bool> {
        let (key, value) = (key.to_string(), value.to_string());
        self.call(format!("inserting setting '{key}'"), move |conn, sql| {
            Box::pin(
                async move { Ok(conn.execute(&sql.insert_setting, &[&key, &value]).await? > 0) },
            )
        })
    }

    fn cas_setting(&self, key: &str, expected: &str, new: &str) -> Result<bool> {
        let (key, expected, new) = (key.to_string(), expected.to_string(), new.to_string());
        self.call(format!("replacing setting '{key}'"), move |conn, sql| {
            Box::pin(async move {
                Ok(conn
                    .execute(&sql.cas_setting, &[&key, &expected, &new])
                    .await?
                    > 0)
            })
        })
    }

    fn delete_setting(&self, key: &str) -> Result<bool> {
        let key = key.to_string();
        self.call(format!("removing setting '{key}'"), move |conn, sql| {
            Box::pin(async move { Ok(conn.execute(&sql.delete_setting, &[&key]).await? > 0) })
        })
    }

    fn list_settings(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let prefix = prefix.to_string();
        self.call(format!("listing settings '{prefix}*'"), move |conn, sql| {
            Box::pin(async move {
                let rows = conn.query(&sql.list_settings, &[&prefix]).await?;
                rows.iter()
                    .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
                    .collect()
            })
        })
    }

    fn last_settings(&self, prefix: &str, limit: usize) -> Result<Vec<(String, String)>> {
        let Some(end) = crate::metastore::prefix_end(prefix) else {
            let mut all = self.list_settings(prefix)?;
            all.reverse();
            all.truncate(limit);
            return Ok(all);
        };
        let prefix = prefix.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(format!("listing settings '{prefix}*'"), move |conn, sql| {
            Box::pin(async move {
                let rows = conn
                    .query(&sql.last_settings, &[&prefix, &end, &limit])
                    .await?;
                rows.iter()
                    .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
                    .collect()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use chrono::Utc;
    use lakeplan_core::{sha256_hex, RefKind};

    use super::*;
    use crate::contract::run_contract_suite;
    use crate::testing::TestPostgres;

    fn server() -> &'static TestPostgres {
        TestPostgres::shared().unwrap_or_else(|e| panic!("{e}"))
    }

    fn fresh() -> PostgresMetastore {
        server()
            .fresh_metastore()
            .expect("connect to a fresh schema")
    }

    fn cid(seed: &str) -> CommitId {
        CommitId::from_hash(sha256_hex(seed.as_bytes()))
    }

    fn audit_rec(actor: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            timestamp: Utc::now(),
            actor: actor.into(),
            client: "cli".into(),
            operation: "commit".into(),
            target: "main".into(),
            details: serde_json::json!({"tables": 1}),
            result: "ok".into(),
            error: None,
        }
    }

    fn metastore_error(r: Result<impl fmt::Debug>) -> String {
        match r {
            Err(Error::Metastore(m)) => m,
            other => panic!("expected Error::Metastore, got {other:?}"),
        }
    }

    #[test]
    fn contract() {
        let pg = server();
        run_contract_suite(&|| {
            Arc::new(pg.fresh_metastore().expect("connect")) as Arc<dyn Metastore>
        });
    }

    #[test]
    fn audit_rows_cannot_be_changed_even_with_raw_sql() {
        let m = fresh();
        m.append_audit(&audit_rec("alice")).unwrap();
        let schema = m.schema().to_string();
        // Another metastore: other connections, as another process would have.
        let other = PostgresMetastore::connect(&server().url(), &schema).unwrap();
        for raw in [&m, &other] {
            for (statement, verb) in [
                (
                    format!("UPDATE \"{schema}\".audit SET actor = 'mallory'"),
                    "updated",
                ),
                (format!("DELETE FROM \"{schema}\".audit"), "deleted"),
                (format!("TRUNCATE \"{schema}\".audit"), "truncated"),
            ] {
                let e = metastore_error(raw.execute_raw(&statement));
                assert!(
                    e.contains("append-only") && e.contains(verb),
                    "{statement}: {e}"
                );
            }
        }
        // Appends still work, and nothing was changed.
        other.append_audit(&audit_rec("bob")).unwrap();
        let rows = m.list_audit(None).unwrap();
        let actors: Vec<&str> = rows.iter().map(|r| r.actor.as_str()).collect();
        assert_eq!(actors, ["bob", "alice"]);
        assert!(rows[0].seq > rows[1].seq);
    }

    #[test]
    fn bad_schema_names_are_refused_before_anything_runs() {
        let url = server().url();
        for name in [
            "",
            "1tenant",
            "a-b",
            "a b",
            "x\"; DROP SCHEMA public CASCADE; --",
            "tenant'",
            "é",
            "pg_catalog",
            "PG_toast",
            "information_schema",
            &"a".repeat(64),
        ] {
            let e = metastore_error(PostgresMetastore::connect(&url, name));
            assert!(
                e.contains("invalid PostgreSQL schema name"),
                "{name:?}: {e}"
            );
        }
        // The longest allowed name, and case is kept (the name is quoted).
        let long = format!("t{}", "x".repeat(62));
        PostgresMetastore::connect(&url, &long).unwrap();
        let upper = PostgresMetastore::connect(&url, "Tenant_Case").unwrap();
        let lower = PostgresMetastore::connect(&url, "tenant_case").unwrap();
        upper.set_setting("k", "upper").unwrap();
        assert_eq!(lower.get_setting("k").unwrap(), None);
    }

    #[test]
    fn unreachable_or_invalid_servers_fail_fast_with_a_metastore_error() {
        // Nothing listens on a port we just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let started = Instant::now();
        let e = metastore_error(PostgresMetastore::connect(
            &format!("postgres://postgres:secret@127.0.0.1:{port}/postgres"),
            "tenant",
        ));
        assert!(e.contains("connecting to PostgreSQL"), "{e}");
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.contains("secret"), "the password never shows: {e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");

        // A socket that accepts but never answers: the connect timeout ends the wait.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = Instant::now();
        let e = metastore_error(PostgresMetastore::connect(
            &format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=1"),
            "tenant",
        ));
        assert!(e.contains("within 1s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");

        let e = metastore_error(PostgresMetastore::connect("postgres://[::1", "tenant"));
        assert!(e.contains("invalid PostgreSQL URL"), "{e}");
        // A database that does not exist: the server's own message.
        let e = metastore_error(PostgresMetastore::connect(
            &server().url().replace("/postgres", "/no_such_db"),
            "tenant",
        ));
        assert!(e.contains("no_such_db"), "{e}");
    }

    #[test]
    fn a_newer_schema_version_is_refused_and_reopening_keeps_data() {
        let pg = server();
        let schema = pg.fresh_schema();
        let m = PostgresMetastore::connect(&pg.url(), &schema).unwrap();
        m.create_ref(&RefRow {
            name: "main".into(),
            kind: RefKind::Branch,
            commit: cid("c1"),
        })
        .unwrap();
        drop(m);
        let m = PostgresMetastore::connect(&pg.url(), &schema).unwrap();
        assert_eq!(m.list_refs().unwrap().len(), 1, "reopening keeps the data");
        m.execute_raw(&format!(
            "UPDATE \"{schema}\".schema_version SET version = {}",
            SCHEMA_VERSION + 1
        ))
        .unwrap();
        let e = metastore_error(PostgresMetastore::connect(&pg.url(), &schema));
        assert!(e.contains("newer"), "{e}");
    }

    #[test]
    fn schemas_are_separate_catalogs() {
        let (a, b) = (fresh(), fresh());
        let main = |c: &str| RefRow {
            name: "main".into(),
            kind: RefKind::Branch,
            commit: cid(c),
        };
        a.create_ref(&main("a")).unwrap();
        b.create_ref(&main("b")).unwrap();
        a.set_setting("tenant/x", "1").unwrap();
        assert_eq!(a.get_ref("main").unwrap(), Some(main("a")));
        assert_eq!(b.get_ref("main").unwrap(), Some(main("b")));
        assert!(b.list_settings("").unwrap().is_empty());
    }

    #[test]
    fn connections_the_server_closed_are_replaced() {
        let pg = server();
        let schema = pg.fresh_schema();
        let url = format!("{}?application_name={schema}", pg.url());
        let m = PostgresMetastore::connect(&url, &schema).unwrap();
        m.set_setting("k", "v").unwrap();
        let killed = fresh()
            .execute_raw(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = '{schema}'"
            ))
            .unwrap();
        assert_eq!(killed, 1, "the metastore had one connection");
        // The driver notices the closed socket at once; give it a moment to run.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(m.get_setting("k").unwrap().as_deref(), Some("v"));
    }

    /// Appends from four plain threads.
    fn append_from_plain_threads(m: Arc<PostgresMetastore>) -> Vec<std::thread::JoinHandle<()>> {
        (0..4)
            .map(|i| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    m.append_audit(&audit_rec(&format!("thread{i}"))).unwrap();
                })
            })
            .collect()
    }

    /// Calls from async code, from a blocking task and from plain threads, all at once, on one
    /// metastore (the `postgres` crate's sync client would panic on the runtime's threads).
    async fn use_inside_a_runtime() {
        // Connecting inside the runtime, too.
        let m = Arc::new(fresh());
        m.set_setting("in", "async").unwrap();
        assert_eq!(m.get_setting("in").unwrap().as_deref(), Some("async"));
        let threads = append_from_plain_threads(Arc::clone(&m));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let m = Arc::clone(&m);
            tasks.spawn(async move { m.append_audit(&audit_rec(&format!("task{i}"))) });
        }
        let blocking = {
            let m = Arc::clone(&m);
            tokio::task::spawn_blocking(move || m.list_refs())
        };
        while let Some(r) = tasks.join_next().await {
            r.expect("task").expect("append from a task");
        }
        blocking.await.expect("blocking task").expect("list refs");
        for t in threads {
            t.join().expect("plain thread");
        }
        assert_eq!(m.list_audit(None).unwrap().len(), 12);
        // The last reference is dropped on a runtime thread: no runtime is dropped there.
        drop(m);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usable_inside_a_multi_thread_runtime() {
        use_inside_a_runtime().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn usable_inside_a_current_thread_runtime() {
        use_inside_a_runtime().await;
    }

    #[test]
    fn commits_with_prefix_ignores_non_hex_input() {
        let m = fresh();
        assert!(m.commits_with_prefix("%", 10).unwrap().is_empty());
        assert!(m.commits_with_prefix("zz", 10).unwrap().is_empty());
        assert_eq!(hex_prefix_upper("ab9").as_deref(), Some("ab:"));
        assert_eq!(hex_prefix_upper("f").as_deref(), Some("g"));
        assert_eq!(hex_prefix_upper(""), None);
    }
}
