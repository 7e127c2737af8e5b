//! CLI integration tests: the built `lakeplan` binary on temporary lakes and real files.

mod crash;
mod errors;
mod ingest;
mod pipeline;
mod query;
mod refs;
mod s3;
mod server;
mod slt;
mod util;
