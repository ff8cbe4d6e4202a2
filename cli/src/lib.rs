//! The `cutover` command line: configuration, the driver registry, rendering and exit
//! codes around cutover-core.
//!
//! Third-party driver crates add themselves to a [`Registry`]; a distribution that ships
//! extra drivers builds its own binary with [`main_with`].

pub mod args;
mod check;
mod commands;
pub mod config;
mod confirm;
mod database;
pub mod exit;
mod init;
mod logging;
mod notify;
pub mod registry;
pub mod render;
mod status;
mod unreachable;

use std::process::ExitCode;

use clap::Parser;

pub use registry::{DriverContext, Registry, Target, TargetFuture};

/// Parses the command line, runs the command with the drivers in `registry`, and returns
/// the documented exit code.
pub fn main_with(registry: Registry) -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let renderer = render::Renderer::new(cli.output).quiet(cli.quiet);
    if let Err(e) = logging::install(renderer.sink(), cli.verbose) {
        eprintln!("error: {}", e.message());
        return ExitCode::from(exit::USAGE);
    }
    // The command runs on a worker thread, not this one: the workers drive the I/O, so a
    // task there is woken without a switch to another thread. A dump tool writing its
    // output 4 KiB at a time wakes the reader a quarter of a million times per GB.
    let run = runtime.spawn(async move { commands::run(cli, registry, &renderer).await });
    match runtime.block_on(run) {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => {
            eprintln!("error: the command was cancelled: {e}");
            ExitCode::from(exit::ERROR)
        }
    }
}
