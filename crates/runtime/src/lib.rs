//! Sandboxed Python workers (see docs/pipelines-internals.md).
