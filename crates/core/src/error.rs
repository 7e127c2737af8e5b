use std::fmt;

/// The one error type of lakeplan. Every variant names the thing it is about, so that the message a
/// user sees says what went wrong and where. Interfaces map the variant (not the text) to an exit
/// code or an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid ref name '{name}': {reason}")]
    InvalidRefName { name: String, reason: String },
    #[error("invalid ref expression '{expr}': {reason}")]
    InvalidRef { expr: String, reason: String },
    #[error("invalid name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
    #[error("ref '{0}' not found")]
    RefNotFound(String),
    #[error("commit '{0}' not found")]
    CommitNotFound(String),
    #[error("commit prefix '{0}' is ambiguous: it matches several commits")]
    AmbiguousCommit(String),
    #[error("{kind} '{name}' already exists")]
    RefExists { kind: &'static str, name: String },
    #[error("'{0}' is not a branch: writes go to branches only (tags and commits are read-only)")]
    NotAWriteBranch(String),
    #[error("namespace '{0}' not found")]
    NamespaceNotFound(String),
    #[error("namespace '{0}' already exists")]
    NamespaceExists(String),
    #[error("namespace '{namespace}' is not empty: it holds {tables} table(s); remove them first")]
    NamespaceNotEmpty { namespace: String, tables: usize },
    #[error("job '{0}' not found")]
    JobNotFound(String),
    /// Something else that exists already (a tenant, a user): `what` names it.
    #[error("{what} already exists")]
    Exists { what: String },
    #[error("table '{table}' not found at ref '{at}'")]
    TableNotFound { table: String, at: String },
    #[error("table '{0}' already exists (use --replace to replace it)")]
    TableExists(String),
    #[error("conflict on branch '{branch}': table(s) {} changed by a concurrent commit; nothing was written", .tables.join(", "))]
    Conflict { branch: String, tables: Vec<String> },
    #[error("merge conflict merging '{source_ref}' into '{into}': table(s) {} changed on both sides; nothing was written", .tables.join(", "))]
    MergeConflict {
        source_ref: String,
        into: String,
        tables: Vec<String>,
    },
    /// An Iceberg commit whose requirements (`assert-ref-snapshot-id`, ...) the table at the
    /// branch's head does not meet: the client's view of the table is stale.
    #[error("commit to table '{table}' refused: {reason}; nothing was written")]
    RequirementFailed { table: String, reason: String },
    #[error("cannot {op}: {reason}")]
    InvalidOperation { op: String, reason: String },
    /// A revert (with Bauplan's rules) that would change nothing: the table on `into` is
    /// already what it is at `source`.
    #[error("table '{table}' on '{into}' is already what it is at '{source_ref}'")]
    RevertUnchanged {
        table: String,
        into: String,
        source_ref: String,
    },
    #[error("{path}: {message}")]
    InvalidData { path: String, message: String },
    #[error("schema conflict in {path}: column '{column}': {message}")]
    SchemaConflict {
        path: String,
        column: String,
        message: String,
    },
    #[error("{0}")]
    InvalidInput(String),
    /// Something a request named that is not there (a tenant, a user; or not there for this
    /// caller: another tenant's files), said without naming more than the request did.
    #[error("{0}")]
    NotFound(String),
    /// A caller without the access an operation declares (a read-only key writing, a write
    /// outside its zone): the policy's reason.
    #[error("{0}")]
    Forbidden(String),
    #[error("SQL error: {}", sql_message(.0))]
    Sql(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("metastore error: {0}")]
    Metastore(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// The work cannot be taken now (no data-plane worker, or the one running it was lost):
    /// it may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// A pipeline project that does not plan: where (the file as the user named it, and the
    /// line when known) and the planner's message (which names them too).
    #[error("{message}")]
    Plan {
        file: Option<String>,
        line: Option<usize>,
        message: String,
    },
    /// An error a lakeplan server answered (remote mode): its kind and message as the server's
    /// service layer made them, so that the CLI prints what embedded mode would.
    #[error("{message}")]
    Remote {
        kind: String,
        status: u16,
        message: String,
        /// Its structured context (ref, table, file, line...), as [`Error::context`] gave it.
        context: serde_json::Value,
    },
}

impl Error {
    /// A short stable name for the kind of error, used by `-O json` output and by the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidRefName { .. } | Error::InvalidRef { .. } => "InvalidRef",
            Error::InvalidName { .. } => "InvalidName",
            Error::RefNotFound(_) => "RefNotFound",
            Error::CommitNotFound(_) => "CommitNotFound",
            Error::AmbiguousCommit(_) => "AmbiguousCommit",
            Error::RefExists { .. } => "RefExists",
            Error::NotAWriteBranch(_) => "NotAWriteBranch",
            Error::NamespaceNotFound(_) => "NamespaceNotFound",
            Error::NamespaceExists(_) => "NamespaceExists",
            Error::NamespaceNotEmpty { .. } => "NamespaceNotEmpty",
            Error::TableNotFound { .. } => "TableNotFound",
            Error::JobNotFound(_) => "JobNotFound",
            Error::Exists { .. } => "Exists",
            Error::TableExists(_) => "TableExists",
            Error::Conflict { .. } => "Conflict",
            Error::MergeConflict { .. } => "MergeConflict",
            Error::RequirementFailed { .. } => "RequirementFailed",
            Error::InvalidOperation { .. } => "InvalidOperation",
            Error::RevertUnchanged { .. } => "RevertUnchanged",
            Error::InvalidData { .. } => "InvalidData",
            Error::SchemaConflict { .. } => "SchemaConflict",
            Error::InvalidInput(_) => "InvalidInput",
            Error::NotFound(_) => "NotFound",
            Error::Forbidden(_) => "Forbidden",
            Error::Sql(_) => "Sql",
            Error::Storage(_) => "Storage",
            Error::Metastore(_) => "Metastore",
            Error::Io { .. } => "Io",
            Error::Internal(_) => "Internal",
            Error::Unavailable(_) => "ServiceUnavailable",
            Error::Plan { .. } => "PlanError",
            Error::Remote { kind, .. } => crate::error_kinds::error_kind(kind)
                .map(|k| k.kind)
                .unwrap_or("Remote"),
        }
    }

    /// Its row of the one table ([`crate::ERROR_KINDS`]): HTTP status, exit code, SDK class.
    pub fn row(&self) -> Option<&'static crate::ErrorKind> {
        crate::error_kinds::error_kind(self.kind())
    }

    /// The HTTP status the API answers it with (a relayed server's own, for a remote error).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Remote { status, .. } => *status,
            e => e.row().map_or(500, |r| r.http_status),
        }
    }

    /// The CLI's exit code for it.
    pub fn exit_code(&self) -> u8 {
        self.row()
            .map_or(crate::error_kinds::EXIT_INTERNAL, |r| r.exit_code)
    }

    /// Machine-readable details, for clients that act on them: the tables of a conflict, the
    /// file and line of a planning error.
    pub fn context(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Error::Conflict { branch, tables } => json!({"branch": branch, "tables": tables}),
            Error::MergeConflict {
                source_ref,
                into,
                tables,
            } => json!({"source_ref": source_ref, "into": into, "tables": tables}),
            Error::RefNotFound(r) | Error::CommitNotFound(r) => json!({"ref": r}),
            Error::RefExists { kind, name } => json!({"kind": kind, "ref": name}),
            Error::TableNotFound { table, at } => json!({"table": table, "ref": at}),
            Error::NamespaceNotFound(ns) => json!({"namespace": ns}),
            Error::Plan { file, line, .. } => json!({"file": file, "line": line}),
            Error::Remote { context, .. } => context.clone(),
            _ => json!({}),
        }
    }

    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A SQL error's message without the "SQL error: " its sources (DataFusion's errors, a worker's
/// answer) may start with already, so that it is said once.
fn sql_message(m: &str) -> &str {
    let mut m = m.trim_start();
    while let Some(rest) = m.strip_prefix("SQL error: ") {
        m = rest.trim_start();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sql_error_says_so_once() {
        for m in [
            "ParserError(\"Expected: an SQL statement\")",
            "SQL error: ParserError(\"Expected: an SQL statement\")",
            "SQL error: SQL error: ParserError(\"Expected: an SQL statement\")",
        ] {
            assert_eq!(
                Error::Sql(m.into()).to_string(),
                "SQL error: ParserError(\"Expected: an SQL statement\")"
            );
        }
    }
}
