//! Iceberg tables on the user's storage, and ingestion of CSV, Parquet and JSONL into them.
//!
//! This crate does not know about refs. It sees the catalog as a [`TreeView`] (one commit's
//! tree of namespaces and tables) and records what a write changes in a [`StagedCatalog`], an
//! implementation of iceberg-rust's `Catalog` trait. The caller (the lake service) turns those
//! staged changes into one versioned commit.
//!
//! ```text
//! TreeView (commit's tree) ──▶ StagedCatalog ──▶ iceberg Transaction / DataFusion INSERT
//!                                   │ writes data files + new metadata.json (never overwrites)
//!                                   ▼
//!                       changes(): [(ns.table, Some(entry) | None)]  ──▶ versioned commit
//! ```
//!
//! [`TreeView`]: lakeplan_core::TreeView

mod convert;
pub mod ingest;
pub mod reach;
pub mod s3;
pub mod schema;
mod staged;
mod tables;
mod warehouse;
pub mod write_props;

pub use convert::{from_iceberg, to_iceberg};
pub use reach::Reach;
pub use staged::StagedCatalog;
pub use tables::{entry_for, load_table, table_ident};
pub use warehouse::Warehouse;
