//! The runtime's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while preparing or running a worker.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A requested Python version that is not of the form `3`, `3.11` or `3.11.7`.
    #[error("invalid python version {requested:?}: expected a version like \"3.11\"")]
    InvalidPythonVersion { requested: String },

    /// No installed interpreter fits the request (or, when strict, none matches exactly).
    #[error("python {requested} is not installed (installed: {installed})")]
    PythonNotFound {
        requested: String,
        installed: String,
    },

    /// A declared pip package whose name or version is not acceptable.
    #[error("invalid package {name:?} (version {version:?}): {reason}")]
    InvalidPackage {
        name: String,
        version: String,
        reason: String,
    },

    /// The `uv` binary could not be located.
    #[error("uv not found: run scripts/setup.sh or set LAKEPLAN_UV")]
    UvNotFound,

    /// `uv venv` failed.
    #[error("creating a virtual environment with {python} failed: {message}")]
    Venv { python: PathBuf, message: String },

    /// `uv pip install` failed; `message` is uv's own stderr, trimmed.
    #[error("installing {packages} failed: {message}")]
    Install { packages: String, message: String },

    /// `bwrap` is not installed.
    #[error("bubblewrap (bwrap) not found: run scripts/setup.sh (apt-get install bubblewrap)")]
    BwrapNotFound,

    /// `prlimit` (util-linux) is not installed but a memory limit was asked for.
    #[error("prlimit not found (util-linux): it is needed to apply a memory limit")]
    PrlimitNotFound,

    /// A sandbox option that cannot be honoured (relative path, missing source...).
    #[error("sandbox: {0}")]
    Sandbox(String),

    /// A job id that cannot be used as a folder name.
    #[error("invalid job id {0:?}: use letters, digits, '.', '_' and '-'")]
    InvalidJobId(String),

    /// The worker process could not be started.
    #[error("node {node}: cannot start the worker: {source}")]
    Spawn {
        node: String,
        #[source]
        source: io::Error,
    },

    /// Any other I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// `Result` with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Wraps an I/O error with a description of what was being done.
pub(crate) fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}
