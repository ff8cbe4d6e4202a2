//! The `cutover` command line: configuration, the driver registry, rendering and exit
//! codes around cutover-core.
//!
//! Third-party driver crates add themselves to a [`Registry`]; a distribution that ships
//! extra drivers builds its own binary with [`main_with`].

pub mod args;
mod commands;
pub mod config;
pub mod exit;
pub mod registry;
pub mod render;

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
    let renderer = render::Renderer::new(cli.output);
    ExitCode::from(runtime.block_on(commands::run(cli, registry, &renderer)))
}
