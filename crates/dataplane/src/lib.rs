//! The data plane of server mode: workers (`lakeplan worker`) that connect out to the control
//! plane (`lakeplan serve`, crate `lakeplan-server`), pull tasks (queries, table plans, imports,
//! pipeline runs and their nodes), run them on tenants' lakes and serve query rows and node
//! outputs themselves over Arrow Flight, so that no table data passes through the control plane.
//! See `docs/server.md` (Workers).
//!
//! ```text
//! control plane ◀── protocol: register / next task / heartbeat / result ── worker
//!   (lakeplan-server: the queue, the registry)                              │ Directory: the
//!                                                                           │ registry's keys and
//! client ── Arrow Flight DoGet(ticket) or GET /results/{ticket} ──────────▶ │ reach, as the
//!                                                                             server implements it
//! ```
//!
//! - [`protocol`]: every message between the planes, typed once for both sides.
//! - [`worker`]: the worker process: its control loop, tasks and result port.
//! - [`nodes`]: a run's Python nodes across workers, and their outputs.
//! - [`directory`]: what a worker needs of the server's registry (a trait the server
//!   implements: this crate does not depend on the server).
//! - [`tenants`]: where tenants' lakes are, opened alike by the control plane and the workers.
//! - [`error`]: the one error table and body of both planes' HTTP routes.
//! - [`results`]: query results as JSON rows or an Arrow IPC stream.

pub mod directory;
pub mod error;
pub mod nodes;
pub mod protocol;
pub mod results;
pub mod tenants;
pub mod worker;

pub use directory::{Directory, KeyOwner, OpenDirectory};
pub use protocol::{Answer, AnswerKind, ProtocolError, Task, TaskKind, Work};
pub use tenants::{MetastoreUrl, Tenant, Tenants};

use lakeplan_core::{Error, Result};

/// Binds `addr` (`127.0.0.1:8080`), mapping failures to a clear error.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidInput(format!("cannot listen on {addr}: {e}")))
}
