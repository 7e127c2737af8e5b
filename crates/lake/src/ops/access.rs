//! What an operation needs ([`Access`]) and who decides whether the caller has it ([`Policy`]).
//!
//! An operation declares its accesses ([`super::Operation::access`], which has no default, so an
//! operation that forgets to say does not compile); [`super::Service::call`] asks the service's
//! one policy about each before anything runs. A surface (CLI, HTTP, MCP, ...) never checks
//! rights itself: it picks the policy once, when it makes the service for a caller.

use lakeplan_core::{Error, Result};
use lakeplan_storage::Reach;

/// One thing an operation needs to be allowed to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read the lake: refs, tables, commits, jobs, settings (any ref; a tenant sees only its own
    /// lake, so there is nothing finer to decide today).
    Read,
    /// Change ref `name` (a branch or tag): create, delete, rename it, or write tables on it.
    WriteRef(String),
    /// Merge into branch `name`.
    MergeInto(String),
    /// Write something (a caller that may write at all): sealing a secret, say.
    Write,
    /// Change the lake's own settings, which are every user's defaults.
    Admin,
    /// Read source files at a location (a path, `file://` or `s3://` URL) on the caller's behalf:
    /// an import's or a table plan's files, an Iceberg table registered by its metadata. The
    /// policy decides on the location as named; whoever resolves it (globs, folders, links)
    /// checks each file it will read against the same rules.
    ReadSource(String),
    /// Run the project's code (a pipeline run, even a dry one).
    Execute,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Read => f.write_str("read"),
            Access::WriteRef(r) => write!(f, "write '{r}'"),
            Access::MergeInto(r) => write!(f, "merge into '{r}'"),
            Access::Write => f.write_str("write"),
            Access::Admin => f.write_str("admin"),
            Access::ReadSource(l) => write!(f, "read '{l}'"),
            Access::Execute => f.write_str("run code"),
        }
    }
}

/// Decides whether a caller has an access. `Err` is the refusal, an [`Error::Forbidden`] that
/// says why (never naming more than the caller already knows).
pub trait Policy: Send + Sync {
    fn allow(&self, access: &Access) -> Result<()>;

    /// Where files read on the caller's behalf may be (each file an import, a plan or an
    /// Iceberg commit names is checked against it once resolved): everywhere, unless the
    /// policy says less.
    fn reach(&self) -> Result<Reach> {
        Ok(Reach::everywhere())
    }
}

/// Everything allowed: a lake on the user's own machine (embedded mode), whose files the user
/// could change anyway.
#[derive(Clone, Copy, Debug, Default)]
pub struct Open;

impl Policy for Open {
    fn allow(&self, _: &Access) -> Result<()> {
        Ok(())
    }
}

/// Nothing but reads: for tests and for read-only views of a lake.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOnly;

impl Policy for ReadOnly {
    fn allow(&self, access: &Access) -> Result<()> {
        match access {
            Access::Read => Ok(()),
            other => Err(Error::Forbidden(format!("read-only: cannot {other}"))),
        }
    }
}
