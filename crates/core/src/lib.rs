//! Types shared by every lakeplan crate: commit ids, ref names and ref expressions, table names,
//! tree entries and the one error type that every interface maps to a message or a status.
//!
//! Nothing in this crate does I/O.

mod error;
mod error_kinds;
mod ids;
mod names;
mod refs;
pub mod sql_limits;
mod tree;

pub use error::{Error, Result};
pub use error_kinds::{
    error_kind, ErrorKind, ERROR_KINDS, EXIT_CONFLICT, EXIT_DATA, EXIT_DENIED, EXIT_INTERNAL,
    EXIT_INVALID, EXIT_NOT_FOUND, EXIT_PLAN, EXIT_SQL, EXIT_UNAVAILABLE, EXIT_USAGE,
};
pub use ids::{sha256_hex, CommitId};
pub use names::{validate_identifier, TableName, BAUPLAN_NAMESPACE, DEFAULT_NAMESPACE};
pub use refs::{validate_ref_name, RefExpr, RefKind, RefPoint, MAIN_BRANCH};
pub use tree::{
    object_key, validate_object_key, Entry, ObjectEntry, TableEntry, TreeView, MAX_OBJECT_KEY,
    OBJECT_KEY_PREFIX,
};
