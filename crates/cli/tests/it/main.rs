//! CLI integration tests: the built `lakeplan` binary on temporary lakes and real files.

/// Each of these runs twice: on a local lake, and in remote mode through a `lakeplan serve`
/// (the same commands, the same assertions), so that remote mode keeps embedded mode's
/// behaviour, not only its output.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $name() { super::$name(&crate::util::Lake::new()) } )*
        }
        mod remote {
            $( #[test] fn $name() {
                let (lake, _server) = crate::server::remote_lake(&[]);
                super::$name(&lake)
            } )*
        }
    };
}

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
