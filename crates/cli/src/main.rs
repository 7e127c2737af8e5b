//! `lakeplan`: git for data over Iceberg tables, from the command line.

#[macro_use]
mod macros;
mod args;
mod output;
mod pipeline;
mod remote;
mod run;
mod server;
mod service;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verbose = cli.verbose;
    match rt.block_on(run::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string();
            // One line: the message says what and where.
            eprintln!("error: {}", msg.replace('\n', " "));
            if verbose {
                eprintln!("kind: {}", e.kind());
            }
            ExitCode::FAILURE
        }
    }
}
