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
    // Every runtime thread gets the stack that planning and running any statement within
    // lakeplan's SQL limits needs (lakeplan_core::sql_limits), and so does the thread that
    // runs the command itself (not the main thread, whose stack the system sets).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(lakeplan_core::sql_limits::PLANNER_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verbose = cli.verbose;
    let command = std::thread::Builder::new()
        .name("lakeplan".into())
        .stack_size(lakeplan_core::sql_limits::PLANNER_STACK_BYTES)
        .spawn(move || rt.block_on(run::run(cli)));
    let outcome = match command.map(|t| t.join()) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(lakeplan_core::Error::Internal(
            "the command panicked".into(),
        )),
        Err(e) => Err(lakeplan_core::Error::Internal(format!(
            "cannot start the command's thread: {e}"
        ))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string();
            // One line: the message says what and where.
            eprintln!("error: {}", msg.replace('\n', " "));
            if verbose {
                eprintln!("kind: {}", e.kind());
            }
            // By kind (lakeplan_core::ERROR_KINDS; the README lists the codes).
            ExitCode::from(e.exit_code())
        }
    }
}
