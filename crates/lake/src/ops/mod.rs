//! The operation boundary: every operation on a lake is one typed request, defined once with its
//! defaults and the access it needs, and one typed output. Every surface (the CLI in both
//! modes, `/api/v1`, MCP in both modes, ...) maps its own shape onto these requests and calls
//! [`Service::call`]; none of them checks rights or fills defaults itself.
//!
//! ```text
//! surface (CLI args, HTTP path+query+body, MCP tool arguments)
//!    └─ a request, e.g. CreateRef { name, kind, from, if_not_exists }
//!         └─ Service::call(request)              off the async runtime's threads
//!              ├─ request.bind(lake)               defaults the lake owns (the active branch)
//!              ├─ policy.allow(a) for a in request.access()   Open (embedded) or a key's rights
//!              └─ request.execute(lake)            the lake's method: audit, commit, answer
//! ```
//!
//! # The operations
//!
//! [`OPERATIONS`] is the table, in this order (request type: what it needs):
//!
//! | request | access | output |
//! |---|---|---|
//! | [`ListRefs`] | read | branches or tags |
//! | [`GetRef`] | read | one ref and its head |
//! | [`CreateRef`] | write the new ref | the ref |
//! | [`DeleteRef`] | write the ref | whether it was there |
//! | [`RenameRef`] | write the old and the new name | the renamed ref |
//! | [`Merge`] | merge into the target (default: the active branch) | the merge |
//! | [`Diff`] | read | changed tables and objects |
//! | [`Commits`] | read | a ref's log |
//! | [`ListNamespaces`], [`GetNamespace`] | read | namespaces at a ref |
//! | [`CreateNamespace`], [`DropNamespace`] | write the branch | the commit |
//! | [`ListTables`], [`GetTable`] | read | tables at a ref |
//! | [`DropTable`], [`RevertTable`] | write the branch | the commit |
//! | [`Settings`] | read | the lake's settings |
//! | [`SetSetting`] | admin | the settings after the change |
//! | [`AuditLog`] | read | the operations log, newest first |
//! | [`SealSecret`] | write | a sealed secret parameter |
//! | [`PlanTable`] | write the branch, read the source | a new table's plan |
//! | [`ApplyPlan`] | write the plan's branch, read its files | the commit |
//! | [`CreateTable`] | write the branch, read the source | the commit |
//! | [`Import`] | write the branch, read the source | the report and the commit |
//! | [`StartRun`], [`Rerun`] | run code; write the target unless dry | the job's id |
//! | [`ListJobs`], [`GetJob`], [`JobLog`] | read | job records, a log |
//! | [`CancelJob`] | write the job's target | the job as it ended |
//! | [`IcebergLoadTable`], [`IcebergTableExists`] | read | a table's Iceberg metadata |
//! | [`IcebergCreateTable`], [`IcebergCommit`], [`IcebergRenameTable`] | write the branch | the commit's tables |
//! | [`IcebergRegisterTable`] | write the branch, read the metadata's files | the table |
//!
//! Adding an operation: a request type with its [`Operation`] impl in this folder (the compiler
//! asks for its access), a row in [`OPERATIONS`], and each surface's mapping onto it.
//!
//! The operations that read source files or run code ([`data`]) do that half on the service's
//! [`DataPlane`]: this process ([`InProcess`]) or a server's workers.
//!
//! # Not here yet
//! Queries still go their own ways on each surface (their rows stream from where they run); the
//! CLI's embedded `run` and `rerun` drive the run in its own process (with its progress) rather
//! than through [`StartRun`]; the CLI's remote client maps each call onto HTTP by hand rather
//! than implementing [`Service`]'s calls.

mod access;
mod catalog;
pub mod data;
pub mod http;
mod iceberg;

use std::future::Future;
use std::sync::Arc;

use lakeplan_core::{Error, Result};

use crate::Lake;

pub use access::{Access, Open, Policy, ReadOnly};
pub use catalog::*;
pub use data::{
    ApplyPlan, CancelJob, CreateTable, DataPlane, GetJob, Import, Imported, InProcess, JobLog,
    JobLogText, ListJobs, PlanTable, Rerun, RunProject, RunTask, StartRun,
};
pub use http::{HttpCall, Method, OverHttp};
pub use iceberg::*;

/// One operation on a lake: a typed request and its typed answer.
pub trait Operation: Send + 'static {
    /// What the operation answers.
    type Output: Send + 'static;
    /// Its name in [`OPERATIONS`] (and in errors about it).
    const NAME: &'static str;

    /// Fills what the request left to the lake (a branch left out means the active one), so
    /// that [`Operation::access`] names the refs the operation will really touch.
    fn bind(&mut self, _lake: &Lake) -> Result<()> {
        Ok(())
    }

    /// What the caller must be allowed. Required: an operation that does not say does not
    /// compile.
    fn access(&self) -> Vec<Access>;

    /// Does it (the checks have passed), on `on`'s lake and data plane.
    fn execute(self, on: &Service) -> impl Future<Output = Result<Self::Output>>;
}

/// A row of [`OPERATIONS`].
#[derive(Clone, Copy, Debug)]
pub struct OperationDoc {
    pub name: &'static str,
    pub summary: &'static str,
}

/// The table of operations: each request type, once (its `NAME` is taken from the type, so a
/// row cannot name a type that is not an operation).
macro_rules! operations {
    ($( $ty:ident => $summary:literal ),* $(,)?) => {
        /// Every operation of the service, in the order of the module's table.
        pub const OPERATIONS: &[OperationDoc] = &[
            $( OperationDoc { name: <$ty as Operation>::NAME, summary: $summary } ),*
        ];
    };
}

operations! {
    ListRefs => "list branches or tags",
    GetRef => "one branch or tag and its head commit",
    CreateRef => "create a branch or tag (O(1))",
    DeleteRef => "delete a branch or tag",
    RenameRef => "rename a branch or tag",
    Merge => "merge a ref into a branch (three-way; conflicts write nothing)",
    Diff => "tables and objects that differ between two refs",
    Commits => "a ref's log: first parents, newest first, filtered",
    ListNamespaces => "namespaces at a ref",
    GetNamespace => "one namespace at a ref",
    CreateNamespace => "create a namespace (a commit)",
    DropNamespace => "remove an empty namespace (a commit)",
    ListTables => "tables at a ref",
    GetTable => "a table at a ref: schema, partitions, snapshots, size",
    DropTable => "remove a table (a commit; data files stay for other refs)",
    RevertTable => "restore a table as of another ref (a commit; no file copied)",
    Settings => "the lake's settings",
    SetSetting => "set or unset a lake setting",
    AuditLog => "the append-only operations log",
    SealSecret => "seal a secret parameter's value with the lake's key",
    PlanTable => "a new table's schema and partitioning, inferred from files",
    ApplyPlan => "create a table from a plan (a commit)",
    CreateTable => "create a table from files: plan and apply (a commit)",
    Import => "append files to a table (one commit, or nothing)",
    StartRun => "start a pipeline run; its job id once recorded",
    Rerun => "run an earlier job's code, parameters and inputs again",
    ListJobs => "jobs, newest first",
    GetJob => "a job's record",
    JobLog => "a job's log",
    CancelJob => "stop a running job (nothing is published)",
    IcebergLoadTable => "a table's Iceberg metadata at a ref",
    IcebergTableExists => "whether a table is there at a ref",
    IcebergCreateTable => "create an empty table from an Iceberg schema (a commit)",
    IcebergRegisterTable => "register a table by its metadata file (a commit)",
    IcebergCommit => "Iceberg table changes as one commit, or none",
    IcebergRenameTable => "rename a table (a commit)",
}

thread_local! {
    /// Set while this thread is a blocking-pool thread driving a request ([`off_the_runtime`]).
    static OFF_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (which drives a future to its end with `Handle::block_on`, on a thread of tokio's
/// blocking pool) with this thread known to be off the async runtime: operations called from it
/// run right there instead of handing themselves to yet another thread.
pub fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            OFF_RUNTIME.with(|o| o.set(self.0));
        }
    }
    let _reset = Reset(OFF_RUNTIME.with(|o| o.replace(true)));
    f()
}

/// Whether this thread is inside [`off_the_runtime`]: blocking work may run right here.
pub fn is_off_the_runtime() -> bool {
    OFF_RUNTIME.with(std::cell::Cell::get)
}

/// A lake as one caller sees it: the lake, and the policy that decides the caller's rights.
#[derive(Clone)]
pub struct Service {
    lake: Lake,
    policy: Arc<dyn Policy>,
    data: Arc<dyn DataPlane>,
}

impl Service {
    /// `lake` under `policy`, its files read and its code run in this process.
    pub fn new(lake: Lake, policy: Arc<dyn Policy>) -> Service {
        Service {
            lake,
            policy,
            data: Arc::new(InProcess::default()),
        }
    }

    /// The same service with its files read and its code run by `data` (a server's workers).
    pub fn with_data_plane(mut self, data: Arc<dyn DataPlane>) -> Service {
        self.data = data;
        self
    }

    /// Where files read on the caller's behalf may be ([`Policy::reach`]).
    pub fn reach(&self) -> Result<crate::Reach> {
        self.policy.reach()
    }

    /// Where the service reads source files and runs code.
    pub fn data_plane(&self) -> &dyn DataPlane {
        self.data.as_ref()
    }

    /// A lake on this machine: every operation allowed ([`Open`]).
    pub fn open(lake: Lake) -> Service {
        Service::new(lake, Arc::new(Open))
    }

    /// The lake behind the service (for what is not an operation yet).
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Checks the caller's rights to `op` and runs it.
    ///
    /// All of it runs on tokio's blocking pool (on the calling thread when that is one already,
    /// see [`off_the_runtime`]), never on an async worker thread: the metastore
    /// is synchronous, and a slow one (PostgreSQL far away, or loaded) must not stall a server's
    /// other requests, `/healthz` and worker heartbeats. A panic in an operation answers as an
    /// internal error naming the operation; it does not take the process down.
    pub async fn call<O: Operation>(&self, mut op: O) -> Result<O::Output> {
        if is_off_the_runtime() {
            // Already on a blocking-pool thread (a server's request): no second hand-off.
            authorize(&mut op, &self.lake, self.policy.as_ref())?;
            return op.execute(self).await;
        }
        let on = self.clone();
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Internal(format!("operation {}: {e}", O::NAME)))?;
        tokio::task::spawn_blocking(move || {
            authorize(&mut op, &on.lake, on.policy.as_ref())?;
            handle.block_on(op.execute(&on))
        })
        .await
        .map_err(|e| Error::Internal(format!("operation {} failed: {e}", O::NAME)))?
    }
}

/// Binds `op`'s lake-owned defaults, then asks `policy` about each access it declares.
fn authorize<O: Operation>(op: &mut O, lake: &Lake, policy: &dyn Policy) -> Result<()> {
    op.bind(lake)?;
    op.access().iter().try_for_each(|a| policy.allow(a))
}

#[cfg(test)]
mod tests;
