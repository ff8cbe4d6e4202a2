//! `Driver::logs`: the last lines a container printed, through the engine's logs API.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use cutover_core::Result;
use futures_util::StreamExt;

use crate::error;

/// The last `lines` lines container `name` wrote to stdout and stderr, as the engine
/// interleaves them (json-file, local and journald log drivers; with another log driver
/// the engine refuses, and so does this). No timestamps: the application's own lines
/// carry what it printed.
pub(crate) async fn tail(docker: &Docker, name: &str, lines: usize) -> Result<String> {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: lines.to_string(),
        ..LogsOptions::default()
    };
    let mut stream = docker.logs(name, Some(options));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk.map_err(|e| error::docker("logs", name, e))? {
            LogOutput::StdOut { message }
            | LogOutput::StdErr { message }
            | LogOutput::Console { message }
            | LogOutput::StdIn { message } => out.extend_from_slice(&message),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
