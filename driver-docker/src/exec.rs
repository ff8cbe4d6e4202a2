//! `exec`, `archive` and `unarchive` through the engine's exec and archive APIs.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use cutover_core::{ByteStream, ErrorKind, ExecIo, ExecTarget, ExitStatus, Result};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
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

/// `path` in container `name` (running or not) as a tar stream of its content relative to
/// it (`./`, `./name`, …), as `tar -C path -c .` writes it and the other drivers do.
pub(crate) async fn archive(docker: &Docker, name: &str, path: &str) -> Result<ByteStream> {
    let info = ContainerArchiveInfoOptions {
        path: path.to_string(),
    };
    docker
        .get_container_archive_info(name, Some(info))
        .await
        .map_err(|e| error::docker("archive", &format!("{name}:{path}"), e))?;
    // `/.` asks the archive API for the directory's content rather than the directory
    // under its own name.
    let options = DownloadFromContainerOptions {
        path: format!("{}/.", path.trim_end_matches('/')),
    };
    let stream = docker
        .download_from_container(name, Some(options))
        .map_err(std::io::Error::other);
    Ok(Box::pin(StreamReader::new(stream)))
}

/// Extracts an archive of `path`'s content into `path`.
///
/// An archive made before archives were relative (its first entry the directory under its
/// own name, e.g. `data/` for `/srv/data`, as Docker's archive API writes a path) is
/// extracted into `path`'s parent instead, so backups taken then restore where they were.
///
/// Docker's archive API only adds and overwrites: files under `path` that the archive does
/// not have stay (it has no delete, and the container may have no shell to delete with).
pub(crate) async fn unarchive(
    docker: &Docker,
    name: &str,
    path: &str,
    mut tar: ByteStream,
) -> Result<()> {
    let trimmed = path.trim_end_matches('/');
    let (parent, base) = match trimmed.rsplit_once('/') {
        Some(("", base)) => ("/", base),
        Some((parent, base)) => (parent, base),
        None => ("/", trimmed),
    };
    let (head, first) = first_entry(&mut tar)
        .await
        .map_err(|e| io_failure("unarchive", name, path, e))?;
    let legacy = first.is_some_and(|(entry, dir)| dir && entry.trim_end_matches('/') == base);
    let into = if legacy || trimmed.is_empty() {
        parent
    } else {
        trimmed
    };
    let options = UploadToContainerOptions {
        path: into.to_string(),
        ..Default::default()
    };
    let whole = std::io::Cursor::new(head).chain(tar);
    let body = bollard::body_try_stream(ReaderStream::new(BufReader::new(whole)));
    docker
        .upload_to_container(name, Some(options), body)
        .await
        .map_err(|e| error::docker("unarchive", &format!("{name}:{path}"), e))
}

/// Reads the headers of `tar` up to its first entry (past pax and GNU long-name headers):
/// the bytes read, and that entry's name with whether it is a directory (`None` for an
/// empty archive).
async fn first_entry(tar: &mut ByteStream) -> std::io::Result<(Vec<u8>, Option<(String, bool)>)> {
    let mut read = Vec::new();
    // Extended headers before the first entry are small; past this, assume a new archive.
    while read.len() < 64 * 1024 {
        let at = read.len();
        read.resize(at + 512, 0);
        let got = read_full(tar, &mut read[at..]).await?;
        read.truncate(at + got);
        if got < 512 {
            return Ok((read, None));
        }
        let header = &read[at..];
        if header.iter().all(|&b| b == 0) {
            return Ok((read, None));
        }
        let kind = header[156];
        if !matches!(kind, b'x' | b'g' | b'L' | b'K') {
            let end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
            let entry = String::from_utf8_lossy(&header[..end]).into_owned();
            return Ok((read, Some((entry, kind == b'5'))));
        }
        let size = std::str::from_utf8(&header[124..136])
            .ok()
            .and_then(|t| {
                u64::from_str_radix(t.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()
            })
            .unwrap_or(0) as usize;
        let data = size.div_ceil(512) * 512;
        let at = read.len();
        read.resize(at + data, 0);
        let got = read_full(tar, &mut read[at..]).await?;
        read.truncate(at + got);
        if got < data {
            return Ok((read, None));
        }
    }
    Ok((read, None))
}

/// Fills `buf` unless the stream ends first; the bytes read.
async fn read_full(tar: &mut ByteStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match tar.read(&mut buf[got..]).await? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn io_failure(op: &str, name: &str, path: &str, e: std::io::Error) -> cutover_core::Error {
    error::driver(
        ErrorKind::Other,
        op,
        &format!("{name}:{path}"),
        format!("reading the archive: {e}"),
    )
    .with_source(e)
}
