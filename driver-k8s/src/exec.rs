//! `exec`, `archive` and `unarchive` through the API server's `pods/exec` (WebSocket).
//!
//! Kubernetes' exec has no environment: when `io.env` is not empty, the command runs under
//! `/bin/sh`, which reads `NAME=value` lines from stdin up to an empty line, exports them
//! and execs the argv, so values (passwords) travel on stdin, never in the request's
//! command (which the API server may log). That needs a shell in the image.

use cutover_core::{ByteStream, ErrorKind, ExecIo, ExecTarget, ExitStatus, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::driver::KubernetesDriver;
use crate::{error, workload};

/// How much of stderr an [`ExitStatus`] keeps.
const STDERR_TAIL: usize = 4096;

const ENV_PRELUDE: &str =
    "while IFS= read -r line && [ -n \"$line\" ]; do export \"$line\"; done; exec \"$@\"";

impl KubernetesDriver {
    /// The pod and container an [`ExecTarget`] names: `Named` is any pod of the namespace
    /// (its first container), `Instance` a pod of the workload, `AnyInstance` the first
    /// ready pod of the workload, else the first running one.
    pub(crate) async fn resolve(
        &self,
        at: &ExecTarget,
        op: &str,
    ) -> Result<(String, Option<String>)> {
        let not_found = |what: &str| {
            error::driver(
                ErrorKind::NotFound,
                op,
                what,
                format!("no pod for {at} in namespace {}", self.namespace),
            )
        };
        match at {
            ExecTarget::Named(name) => Ok((name.clone(), None)),
            ExecTarget::Host(host) => Err(error::driver(
                ErrorKind::InvalidInput,
                op,
                host,
                "the kubernetes driver runs commands in pods, not on hosts".into(),
            )),
            ExecTarget::Instance(id) => Ok((id.clone(), Some(self.container.clone()))),
            ExecTarget::AnyInstance => {
                let (_, workload) = self.get(op).await?;
                let pods: Vec<Pod> = self
                    .list_pods(&workload, op)
                    .await?
                    .into_iter()
                    .filter(|p| !workload::terminating(p))
                    .collect();
                pods.iter()
                    .find(|p| workload::pod_ready(p))
                    .or_else(|| pods.iter().find(|p| workload::phase(p) == "Running"))
                    .and_then(|p| p.metadata.name.clone())
                    .map(|n| (n, Some(self.container.clone())))
                    .ok_or_else(|| not_found(""))
            }
            _ => Err(not_found("")),
        }
    }
}

pub(crate) async fn exec(
    d: &KubernetesDriver,
    at: &ExecTarget,
    argv: &[String],
    io: ExecIo,
) -> Result<ExitStatus> {
    let (pod, container) = d.resolve(at, "exec").await?;
    run(d, &pod, container, argv, io).await
}

/// Runs `argv` in `pod`, feeding stdin (after the env prelude) and streaming stdout.
async fn run(
    d: &KubernetesDriver,
    pod: &str,
    container: Option<String>,
    argv: &[String],
    io: ExecIo,
) -> Result<ExitStatus> {
    let ExecIo { env, stdin, stdout } = io;
    let subject = format!("pod {}/{pod}", d.namespace);
    let mut command: Vec<String> = Vec::new();
    let mut prelude = Vec::new();
    if !env.is_empty() {
        for (k, v) in &env {
            if v.contains('\n') || k.contains(['\n', '=']) || k.is_empty() {
                return Err(error::driver(
                    ErrorKind::InvalidInput,
                    "exec",
                    &subject,
                    format!(
                        "environment variable {k:?} cannot be passed through exec (a newline or '=' in it)"
                    ),
                ));
            }
            prelude.extend_from_slice(format!("{k}={v}\n").as_bytes());
        }
        prelude.push(b'\n');
        command.extend([
            "/bin/sh".into(),
            "-c".into(),
            ENV_PRELUDE.into(),
            "sh".into(),
        ]);
    }
    command.extend(argv.iter().cloned());
    let want_stdin = stdin.is_some() || !prelude.is_empty();
    let mut params = AttachParams::default()
        .stdin(want_stdin)
        .stdout(true)
        .stderr(true);
    if let Some(c) = container {
        params = params.container(c);
    }
    let mut process = d
        .pods()
        .exec(pod, command, &params)
        .await
        .map_err(|e| error::kube("exec", &subject, e))?;
    let status = process.take_status();
    let writer = process.stdin();
    let reader = process.stdout();
    let errors = process.stderr();
    let feed = async move {
        if let Some(mut w) = writer {
            let _ = w.write_all(&prelude).await;
            if let Some(mut input) = stdin {
                // A process that exits without reading all its input is judged by its code.
                let _ = tokio::io::copy(&mut input, &mut w).await;
            }
            let _ = w.shutdown().await;
        }
    };
    let drain = async move {
        let mut sink = stdout;
        if let Some(mut r) = reader {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(s) = sink.as_mut()
                            && s.write_all(&buf[..n]).await.is_err()
                        {
                            sink = None;
                        }
                    }
                }
            }
        }
        if let Some(mut s) = sink {
            let _ = s.shutdown().await;
        }
    };
    let tail = async move {
        let mut tail = Vec::new();
        if let Some(mut r) = errors {
            let _ = r.read_to_end(&mut tail).await;
        }
        let start = tail.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&tail[start..]).into_owned()
    };
    let status_fut = async move {
        match status {
            Some(s) => s.await,
            None => None,
        }
    };
    let ((), (), stderr_tail, status) = tokio::join!(feed, drain, tail, status_fut);
    let _ = process.join().await;
    let Some(status) = status else {
        return Err(error::driver(
            ErrorKind::Unavailable,
            "exec",
            &subject,
            "the exec stream ended without an exit status".into(),
        ));
    };
    if status.status.as_deref() == Some("Success") {
        return Ok(ExitStatus {
            code: Some(0),
            stderr_tail,
        });
    }
    let code = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.parse::<i32>().ok());
    match code {
        Some(code) if status.reason.as_deref() == Some("NonZeroExitCode") => Ok(ExitStatus {
            code: Some(code),
            stderr_tail,
        }),
        _ => Err(error::driver(
            ErrorKind::Other,
            "exec",
            &subject,
            format!(
                "the command could not run: {}",
                status.message.as_deref().unwrap_or("no message")
            ),
        )),
    }
}

/// Whether the pod has `tar` (for the `archive` capability).
pub(crate) async fn probe_tar(d: &KubernetesDriver) -> bool {
    let argv = ["tar".to_string(), "--version".to_string()];
    matches!(
        exec(d, &ExecTarget::AnyInstance, &argv, ExecIo::default()).await,
        Ok(status) if status.success()
    )
}

pub(crate) async fn archive(
    d: &KubernetesDriver,
    at: &ExecTarget,
    path: &str,
) -> Result<ByteStream> {
    let (pod, container) = d.resolve(at, "archive").await?;
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let argv = vec![
        "tar".to_string(),
        "-C".into(),
        path.to_string(),
        "-cf".into(),
        "-".into(),
        ".".into(),
    ];
    let d = d.clone();
    let (done, outcome) = tokio::sync::oneshot::channel();
    let subject = format!("pod {}/{pod}", d.namespace);
    tokio::spawn(async move {
        let io = ExecIo {
            stdout: Some(Box::pin(writer)),
            ..ExecIo::default()
        };
        let result = match run(&d, &pod, container, &argv, io).await {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("tar in {subject} failed: {}", status.describe())),
            Err(e) => Err(e.report()),
        };
        let _ = done.send(result);
    });
    Ok(Box::pin(Checked {
        inner: reader,
        outcome: Some(outcome),
    }))
}

/// The archive's bytes, ending in an error instead of a clean end when `tar` failed, so
/// that a truncated archive is never taken for a whole one.
struct Checked {
    inner: tokio::io::DuplexStream,
    outcome: Option<tokio::sync::oneshot::Receiver<std::result::Result<(), String>>>,
}

impl tokio::io::AsyncRead for Checked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                let Some(outcome) = self.outcome.as_mut() else {
                    return Poll::Ready(Ok(()));
                };
                match std::pin::Pin::new(outcome).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(result) => {
                        self.outcome = None;
                        match result {
                            Ok(Ok(())) => Poll::Ready(Ok(())),
                            Ok(Err(m)) => Poll::Ready(Err(std::io::Error::other(m))),
                            Err(_) => Poll::Ready(Err(std::io::Error::other(
                                "the archive's exec ended without a result",
                            ))),
                        }
                    }
                }
            }
            other => other,
        }
    }
}

pub(crate) async fn unarchive(
    d: &KubernetesDriver,
    at: &ExecTarget,
    path: &str,
    tar: ByteStream,
) -> Result<()> {
    let (pod, container) = d.resolve(at, "unarchive").await?;
    let argv = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        "find \"$1\" -mindepth 1 -delete && tar -C \"$1\" -xf -".into(),
        "sh".into(),
        path.to_string(),
    ];
    let io = ExecIo {
        stdin: Some(tar),
        ..ExecIo::default()
    };
    let status = run(d, &pod, container, &argv, io).await?;
    if status.success() {
        Ok(())
    } else {
        Err(error::driver(
            ErrorKind::Other,
            "unarchive",
            &pod,
            format!("extracting into {path} failed: {}", status.describe()),
        ))
    }
}
