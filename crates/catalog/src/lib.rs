//! The versioned catalog of a lake: refs (branches and tags), content-addressed commits and trees,
//! compare-and-swap commits with rebase, three-way merge, diff, log and the append-only audit log.
//!
//! [`Catalog`] holds the git-like semantics; it stores everything through a [`Metastore`], of
//! which [`SqliteMetastore`] is the embedded implementation. Any other implementation must pass
//! [`contract::run_contract_suite`].

mod cache;
pub mod contract;
pub mod metastore;
mod rows;
pub mod sqlite;
mod tree;
mod versioned;

pub use metastore::{format_timestamp, AuditRecord, CommitRow, Metastore, RefRow};
pub use sqlite::SqliteMetastore;
pub use versioned::{Catalog, CommitMeta, DiffChange, DiffItem, LogFilter, MergeOutcome, Resolved};
