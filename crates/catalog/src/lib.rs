//! The versioned catalog of a lake: refs (branches and tags), content-addressed commits and trees,
//! compare-and-swap commits with rebase, three-way merge, diff, log and the append-only audit log.
//!
//! [`Catalog`] holds the git-like semantics; it stores everything through a [`Metastore`], of
//! which [`SqliteMetastore`] is the embedded implementation and [`PostgresMetastore`] the shared
//! one (many processes, one schema per catalog). Every implementation must pass
//! [`contract::run_contract_suite`]. With the `test-support` feature, `testing::TestPostgres`
//! starts a throw-away PostgreSQL server for tests. Operational records that are not versioned
//! (jobs, a server's tenants and keys) are kept as typed [`Records`] over a metastore's settings.

mod cache;
pub mod contract;
pub mod metastore;
pub mod postgres;
pub mod records;
mod rows;
pub mod sqlite;
#[cfg(feature = "test-support")]
pub mod testing;
mod tree;
mod versioned;

pub use metastore::{format_timestamp, AuditRecord, CommitRow, Metastore, RefRow};
pub use postgres::PostgresMetastore;
pub use records::{Index, Records, Slot};
pub use sqlite::SqliteMetastore;
pub use versioned::{Catalog, CommitMeta, DiffChange, DiffItem, LogFilter, MergeOutcome, Resolved};
