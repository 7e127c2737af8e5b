//! CLI integration tests: the built `lakeplan` binary on temporary lakes and real files.

/// Each of these runs twice: on a local lake, and in remote mode through a `lakeplan serve`
/// (the same commands, the same assertions), so that remote mode keeps embedded mode's
/// behaviour, not only its output.
///
/// `env = EXPR;` first gives the environment of whatever runs the commands' work: the `lakeplan`
/// process in embedded mode, the server (and so its workers) in remote mode.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        in_both_modes!(env = Vec::<(&str, String)>::new(); $($name),*);
    };
    (env = $env:expr; $($name:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $name() {
                let mut lake = crate::util::Lake::new();
                let env: Vec<(&str, String)> = $env;
                lake.env.extend(env.into_iter().map(|(k, v)| (k.to_string(), v)));
                super::$name(&lake)
            } )*
        }
        mod remote {
            $( #[test] fn $name() {
                let env: Vec<(&str, String)> = $env;
                let (lake, _server) = crate::server::remote_lake(&env);
                super::$name(&lake)
            } )*
        }
    };
}

mod contract;
mod crash;
mod errors;
mod ingest;
mod mcp;
mod pipeline;
mod query;
mod refs;
mod s3;
mod server;
mod slt;
mod store;
mod util;
