//! `exec`, `archive` and `unarchive` through the engine's exec and archive APIs.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use cutover_core::{ByteStream, ErrorKind, ExecIo, ExecTarget, ExitStatus, Result};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::driver::DockerDriver;
use crate::error;
use crate::target::{self, KEPT_SUFFIX};

/// How much of stderr an [`ExitStatus`] keeps.
const STDERR_TAIL: usize = 4096;

impl DockerDriver {
    /// The container an [`ExecTarget`] names.
    ///
    /// `Instance(id)` is an instance's name (a kept instance is found under its kept name);
    /// `AnyInstance` is the first ready instance, else the first instance, else the first
    /// kept one (so that an offline backup, taken while every instance is stopped and kept,
    /// can still archive their volumes); `Named(name)` is any container; `Host` does not
    /// apply to one engine.
    pub(crate) async fn resolve(&self, at: &ExecTarget, op: &str) -> Result<String> {
        let not_found = |what: String| {
            error::driver(
                ErrorKind::NotFound,
                op,
                &what,
                format!("no container for {at}"),
            )
        };
        match at {
            ExecTarget::Named(name) => Ok(name.clone()),
            ExecTarget::Host(host) => Err(error::driver(
                ErrorKind::InvalidInput,
                op,
                host,
                "the docker driver manages one engine and has no hosts".into(),
            )),
            ExecTarget::Instance(id) => {
                let seen = self.seen(op).await?;
                let kept = format!("{id}{KEPT_SUFFIX}");
                seen.instances
                    .iter()
                    .chain(&seen.kept)
                    .map(target::name_of)
                    .find(|n| *n == id || *n == kept)
                    .map(str::to_string)
                    .ok_or_else(|| not_found(id.clone()))
            }
            ExecTarget::AnyInstance => {
                let seen = self.seen(op).await?;
                seen.instances
                    .iter()
                    .find(|c| target::is_ready(c))
                    .or_else(|| seen.instances.first())
                    .or_else(|| seen.kept.first())
                    .map(|c| target::name_of(c).to_string())
                    .ok_or_else(|| not_found(String::new()))
            }
            _ => Err(not_found(String::new())),
        }
    }
}

/// Runs `argv` in the running container `name`, feeding `io.stdin` and streaming stdout.
///
/// Environment values go in the exec's own environment, never into argv or messages.
pub(crate) async fn exec(
    docker: &Docker,
    name: &str,
    argv: &[String],
    io: ExecIo,
) -> Result<ExitStatus> {
    let ExecIo { env, stdin, stdout } = io;
    let options = CreateExecOptions {
        attach_stdin: Some(stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: Some(argv.to_vec()),
        ..Default::default()
    };
    let created = docker
        .create_exec(name, options)
        .await
        .map_err(|e| error::docker("exec", name, e))?;
    let started = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| error::docker("exec", name, e))?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(error::driver(
            ErrorKind::Other,
            "exec",
            name,
            "exec did not attach".into(),
        ));
    };
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A process that exits without reading all its input is judged by its exit code.
            let _ = tokio::io::copy(&mut stdin, &mut input).await;
        }
        let _ = input.shutdown().await;
    };
    let drain = async move {
        let mut stdout = stdout;
        let mut tail: Vec<u8> = Vec::new();
        while let Some(frame) = output.next().await {
            match frame.map_err(|e| error::docker("exec", name, e))? {
                LogOutput::StdOut { message } => {
                    if let Some(out) = stdout.as_mut() {
                        out.write_all(&message)
                            .await
                            .map_err(|e| io_error(name, e))?;
                    }
                }
                LogOutput::StdErr { message } => {
                    tail.extend_from_slice(&message);
                    let excess = tail.len().saturating_sub(STDERR_TAIL);
                    tail.drain(..excess);
                }
                _ => {}
            }
        }
        if let Some(mut out) = stdout {
            out.shutdown().await.map_err(|e| io_error(name, e))?;
        }
        Ok::<_, cutover_core::Error>(tail)
    };
    let ((), tail) = tokio::join!(feed, drain);
    let tail = tail?;
    // The stream ends when the process closes its output; its exit code may lag a little.
    for _ in 0..50 {
        let inspect = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| error::docker("exec", name, e))?;
        if inspect.running != Some(true) {
            return Ok(ExitStatus {
                code: inspect.exit_code.map(|c| c as i32),
                stderr_tail: String::from_utf8_lossy(&tail).into_owned(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(error::driver(
        ErrorKind::Timeout,
        "exec",
        name,
        "the process closed its output but did not exit".into(),
    ))
}

fn io_error(name: &str, e: std::io::Error) -> cutover_core::Error {
    error::driver(
        ErrorKind::Other,
        "exec",
        name,
        format!("writing output: {e}"),
    )
    .with_source(e)
}

/// `path` in container `name` (running or not) as a tar stream whose top entry is the
/// path's last component, as Docker's archive API produces it.
pub(crate) async fn archive(docker: &Docker, name: &str, path: &str) -> Result<ByteStream> {
    let info = ContainerArchiveInfoOptions {
        path: path.to_string(),
    };
    docker
        .get_container_archive_info(name, Some(info))
        .await
        .map_err(|e| error::docker("archive", &format!("{name}:{path}"), e))?;
    let options = DownloadFromContainerOptions {
        path: path.to_string(),
    };
    let stream = docker
        .download_from_container(name, Some(options))
        .map_err(std::io::Error::other);
    Ok(Box::pin(StreamReader::new(stream)))
}

/// Extracts an archive made by [`archive`] of `path` into `path`'s parent, so the files
/// come back where they were.
///
/// Docker's archive API only adds and overwrites: files under `path` that the archive does
/// not have stay (it has no delete, and the container may have no shell to delete with).
pub(crate) async fn unarchive(
    docker: &Docker,
    name: &str,
    path: &str,
    tar: ByteStream,
) -> Result<()> {
    let trimmed = path.trim_end_matches('/');
    let parent = match trimmed.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((parent, _)) => parent,
    };
    let options = UploadToContainerOptions {
        path: parent.to_string(),
        ..Default::default()
    };
    let body = bollard::body_try_stream(ReaderStream::new(BufReader::new(tar)));
    docker
        .upload_to_container(name, Some(options), body)
        .await
        .map_err(|e| error::docker("unarchive", &format!("{name}:{path}"), e))
}
