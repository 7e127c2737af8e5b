//! Pipeline projects (see docs/pipelines-internals.md).
