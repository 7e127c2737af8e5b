//! The service layer: a lake is a versioned catalog (refs, commits, trees in a metastore) plus
//! a warehouse (Iceberg tables on the user's storage). Every interface — the CLI today, the
//! server, SDK and MCP later — calls these methods, so each behaviour is written once, and each
//! mutation is recorded in the audit log with its result.
//!
//! ```text
//! Lake::import("default.trips", "main", "data/*.csv")
//!   ├─ resolve branch head (base)        lakeplan-catalog
//!   ├─ StagedCatalog over base's tree    lakeplan-storage: write Parquet + metadata.json
//!   └─ Catalog::commit(branch, base, changes)  CAS of the branch head (rebase if disjoint)
//! ```

mod audit;
mod env_vars;
mod iceberg_rest;
mod info;
pub mod jobs;
mod lake;
mod node_cache;
pub mod ops;
mod pipeline_io;
mod pysrc;
mod query;
mod refs;
mod run;
mod secrets;
mod settings;
mod snapshot;
mod tables;
mod view;

pub use iceberg_rest::{IcebergChange, IcebergTable};
pub use info::*;
pub use jobs::{JobRecord, JobStatus, JobStore};
pub use lake::{CommitExtras, Lake, LakeConfig};
pub use lakeplan_catalog::{LogFilter, MergeOutcome};
pub use lakeplan_pipeline as pipeline;
pub use lakeplan_runtime::ShmJobDir;
pub use lakeplan_storage::ingest::{CreatePlan, ImportOptions, ImportReport, Progress, ProgressFn};
pub use lakeplan_storage::Reach;
pub use query::QueryResult;
pub use query::{columns, json_rows};
pub use run::{
    check_run_flags, parse_preview, parse_run_arg, NodeDispatch, NodeOutcome, NodeRun, NodeTask,
    NodeTaskResult, Nodes, RemoteOutput, RunEvent, RunObserver, RunOptions,
};
pub use settings::{set_values, Setting, SettingValue};
pub use snapshot::{write_snapshot, zip_files};
