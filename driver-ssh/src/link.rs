//! The connection to one host: an OpenSSH master connection, the host's Docker socket
//! forwarded to a local Unix socket, and a [`DockerDriver`] on that local socket.
//!
//! A link is made when the driver connects and checked (`ssh -O check`) before each use;
//! a link whose master connection died is closed and made again, so a host that comes back
//! is used again without restarting cutover. Remote commands are built from argument
//! vectors with [`openssh::OwningCommand::arg`], which shell-quotes every argument for the
//! remote login shell; nothing is ever passed with `raw_arg` or as shell text.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use cutover_core::{ByteStream, ErrorKind, ExecIo, ExitStatus, Result};
use cutover_driver_docker::{DockerConfig, DockerDriver};
use futures_util::StreamExt;
use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::config::{Host, HostKeyChecking};
use crate::error;

/// How much of stderr an [`ExitStatus`] keeps.
const STDERR_TAIL: usize = 4096;

/// Reads `NAME=value` lines from stdin up to an empty line, exports them, then runs the
/// argv given as positional parameters. This constant is the only shell text cutover sends;
/// the argv follows as separately quoted arguments and is never evaluated, and the values
/// travel on stdin, so secrets are neither on a command line nor in the remote shell's
/// text. `read` consumes stdin one byte at a time, so the program gets the rest intact.
const ENV_PRELUDE: &str =
    r#"while IFS= read -r kv && [ -n "$kv" ]; do export "$kv" || exit 126; done; exec "$@""#;

/// How long a successful `ssh -O check` is trusted. The engine observes every host
/// twice a second while it waits for health; checking the master each time would spawn
/// an `ssh` process per host per look. A failed operation clears the mark (see
/// [`Connection::suspect`]), so a lost host is re-checked on the next use regardless.
const CHECK_VALID: Duration = Duration::from_secs(2);

/// The name a host's jump host has in the ssh configuration written for it.
const JUMP_ALIAS: &str = "cutover-jump";

/// A live connection to one host.
struct Link {
    session: Arc<Session>,
    docker: DockerDriver,
    socket: PathBuf,
    checked: Option<std::time::Instant>,
}

/// One host of the fleet and its (re)connectable link.
pub(crate) struct Connection {
    pub host: Host,
    index: usize,
    docker: DockerConfig,
    checking: HostKeyChecking,
    timeout: Duration,
    dir: PathBuf,
    generation: AtomicU32,
    link: Mutex<Option<Link>>,
    /// This process last left the host running no instance of the application (a
    /// `scale` to zero succeeded there) and has sent it nothing since that could start
    /// one. Unknown (`false`) in a new process.
    quiet: AtomicBool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host.describe())
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        host: Host,
        index: usize,
        docker: DockerConfig,
        checking: HostKeyChecking,
        timeout: Duration,
        dir: &Path,
    ) -> Self {
        Self {
            host,
            index,
            docker,
            checking,
            timeout,
            dir: dir.to_path_buf(),
            generation: AtomicU32::new(0),
            link: Mutex::new(None),
            quiet: AtomicBool::new(false),
        }
    }

    /// The host's Docker driver over a live link, connecting (again) when needed.
    pub(crate) async fn docker(&self, op: &str) -> Result<DockerDriver> {
        self.live(op, false).await.map(|(_, d)| d)
    }

    /// As [`Self::docker`], but the link is checked now even if it was a moment ago: an
    /// error then means nothing of the operation reached the host.
    pub(crate) async fn docker_checked(&self, op: &str) -> Result<DockerDriver> {
        self.live(op, true).await.map(|(_, d)| d)
    }

    /// Whether the host is known to run no instance (see the field).
    pub(crate) fn is_quiet(&self) -> bool {
        self.quiet.load(Ordering::SeqCst)
    }

    pub(crate) fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::SeqCst);
    }

    /// The live session and Docker driver; `recheck` checks a link even if it was checked
    /// within [`CHECK_VALID`].
    async fn live(&self, op: &str, recheck: bool) -> Result<(Arc<Session>, DockerDriver)> {
        let mut slot = self.link.lock().await;
        if let Some(link) = slot.as_mut() {
            let fresh = !recheck && link.checked.is_some_and(|t| t.elapsed() < CHECK_VALID);
            if fresh || link.session.check().await.is_ok() {
                if !fresh {
                    link.checked = Some(std::time::Instant::now());
                }
                return Ok((link.session.clone(), link.docker.clone()));
            }
            tracing::info!(host = %self.host.name, "SSH connection lost; connecting again");
            if let Some(old) = slot.take() {
                close(old).await;
            }
        }
        let link = self.connect(op).await?;
        let out = (link.session.clone(), link.docker.clone());
        *slot = Some(link);
        Ok(out)
    }

    async fn connect(&self, op: &str) -> Result<Link> {
        let host = &self.host;
        let mut b = SessionBuilder::default();
        // openssh's default is accept-new (`KnownHosts::Add`): always say which.
        b.known_hosts_check(match self.checking {
            HostKeyChecking::Strict => KnownHosts::Strict,
            HostKeyChecking::AcceptNew => KnownHosts::Add,
        })
        .connect_timeout(self.timeout)
        .server_alive_interval(Duration::from_secs(5))
        .control_directory(&self.dir)
        .port(host.port);
        if let Some(u) = &host.user {
            b.user(u.clone());
        }
        if let Some(k) = &host.key {
            b.keyfile(k);
        }
        if let Some(kh) = &host.known_hosts {
            b.user_known_hosts_file(kh);
        }
        let jump_log = match &host.jump {
            Some(j) => {
                let (config, log) = self.jump_config(j, op)?;
                b.config_file(&config);
                Some(log)
            }
            None => None,
        };
        let session = b.connect(&host.address).await.map_err(|e| {
            let jump = jump_log
                .as_ref()
                .and_then(|log| std::fs::read_to_string(log).ok())
                .unwrap_or_default();
            error::ssh(host, op, e, jump.trim())
        })?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let socket = self.dir.join(format!("h{}-{generation}.sock", self.index));
        let _ = std::fs::remove_file(&socket);
        let forwarded = session
            .request_port_forward(
                ForwardType::Local,
                socket.clone(),
                PathBuf::from(&host.docker_socket),
            )
            .await;
        if let Err(e) = forwarded {
            let err = error::driver(
                ErrorKind::Unavailable,
                op,
                &host.name,
                format!(
                    "host {}: cannot forward its Docker socket {}: {}",
                    host.describe(),
                    host.docker_socket,
                    error::chain(&e)
                ),
            );
            let _ = session.close().await;
            return Err(err);
        }
        let config = DockerConfig {
            host: Some(format!("unix://{}", socket.display())),
            ..self.docker.clone()
        };
        match cutover_driver_docker::connect(config).await {
            Ok(docker) => Ok(Link {
                session: Arc::new(session),
                docker,
                socket,
                checked: Some(std::time::Instant::now()),
            }),
            Err(e) => {
                let _ = session.close().await;
                let _ = std::fs::remove_file(&socket);
                Err(error::on_host(host, op, e))
            }
        }
    }

    /// Writes the ssh configuration through which the host is reached via its jump host
    /// `jump`, and returns it with the file the jump connection logs its errors to.
    ///
    /// ssh's own `-J` would pass neither the key nor the known_hosts file nor the key
    /// checking on to the jump connection, and its errors would be lost. So the host's
    /// connection gets a `ProxyCommand` running `ssh -W` to the jump host under a second
    /// file ([`JUMP_ALIAS`]) with the host's key, known_hosts file and checking, the jump
    /// host's user (else the host's) and port, logging to a file of its own. Every value
    /// was checked against a plain character set (no whitespace or shell syntax) when the
    /// configuration was read.
    fn jump_config(&self, jump: &str, op: &str) -> Result<(PathBuf, PathBuf)> {
        let host = &self.host;
        let (user, address, port) = crate::config::split_jump(jump);
        let mut text = format!(
            "# cutover: how host {} reaches its jump host {jump}\nHost {JUMP_ALIAS}\n  \
             HostName {address}\n  Port {}\n  BatchMode yes\n  ConnectTimeout {}\n  \
             StrictHostKeyChecking {}\n",
            host.name,
            port.unwrap_or("22"),
            self.timeout.as_secs().max(1),
            match self.checking {
                HostKeyChecking::Strict => "yes",
                HostKeyChecking::AcceptNew => "accept-new",
            }
        );
        if let Some(u) = user.or(host.user.as_deref()) {
            text.push_str(&format!("  User {u}\n"));
        }
        if let Some(k) = &host.key {
            text.push_str(&format!(
                "  IdentityFile {}\n  IdentitiesOnly yes\n",
                k.display()
            ));
        }
        if let Some(kh) = &host.known_hosts {
            text.push_str(&format!("  UserKnownHostsFile {}\n", kh.display()));
        }
        let jump_config = self.dir.join(format!("jump-h{}.conf", self.index));
        let log = self.dir.join(format!("jump-h{}.log", self.index));
        let host_config = self.dir.join(format!("host-h{}.conf", self.index));
        let proxy = format!(
            "# cutover: host {} is reached through its jump host {jump}\nHost *\n  \
             ProxyCommand ssh -F {} -E {} -W '[%h]:%p' {JUMP_ALIAS}\n",
            host.name,
            jump_config.display(),
            log.display()
        );
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|e| {
                error::driver(
                    ErrorKind::Other,
                    op,
                    &host.name,
                    format!(
                        "cannot write the ssh configuration for jump host {jump} to {}: {e}",
                        path.display()
                    ),
                )
            })
        };
        write(&jump_config, &text)?;
        write(&host_config, &proxy)?;
        // Only this attempt's errors.
        let _ = std::fs::remove_file(&log);
        Ok((host_config, log))
    }

    /// Marks the link for a check before its next use (an operation on it failed).
    pub(crate) async fn suspect(&self) {
        if let Some(link) = self.link.lock().await.as_mut() {
            link.checked = None;
        }
    }

    /// Closes the link, if any, explicitly.
    pub(crate) async fn disconnect(&self) {
        if let Some(link) = self.link.lock().await.take() {
            close(link).await;
        }
    }

    /// Runs `argv` on the host itself (not in a container).
    ///
    /// Every argument is quoted for the remote login shell; `io.env` travels on stdin
    /// (see [`ENV_PRELUDE`]), never on a command line.
    pub(crate) async fn run(&self, op: &str, argv: &[String], io: ExecIo) -> Result<ExitStatus> {
        let host = &self.host;
        let Some((program, args)) = argv.split_first() else {
            return Err(error::driver(
                ErrorKind::InvalidInput,
                op,
                &host.name,
                "an empty argv".into(),
            ));
        };
        let mut preamble = Vec::new();
        for (k, v) in &io.env {
            let name_ok = k
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok || v.contains(['\n', '\0']) {
                return Err(error::driver(
                    ErrorKind::InvalidInput,
                    op,
                    &host.name,
                    format!(
                        "environment variable {k:?}: names are [A-Za-z_][A-Za-z0-9_]* and values \
                         have no newline"
                    ),
                ));
            }
            preamble.extend_from_slice(format!("{k}={v}\n").as_bytes());
        }
        let (session, _) = self.live(op, false).await?;
        let mut command = if io.env.is_empty() {
            let mut c = session.arc_command(program.as_str());
            c.args(args);
            c
        } else {
            preamble.push(b'\n');
            let mut c = session.arc_command("sh");
            c.arg("-c")
                .arg(ENV_PRELUDE)
                .arg("sh")
                .arg(program)
                .args(args);
            c
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .await
            .map_err(|e| error::ssh(host, op, e, ""))?;
        let stdin = child.stdin().take();
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        let ExecIo {
            stdin: input,
            stdout: output,
            ..
        } = io;
        let feed = async move {
            let Some(mut stdin) = stdin else {
                return Ok(());
            };
            stdin.write_all(&preamble).await?;
            if let Some(mut input) = input {
                tokio::io::copy(&mut input, &mut stdin).await?;
            }
            stdin.shutdown().await
        };
        let pump = async move {
            let Some(mut stdout) = stdout else {
                return Ok(());
            };
            match output {
                Some(mut sink) => {
                    tokio::io::copy(&mut stdout, &mut sink).await?;
                    sink.shutdown().await
                }
                None => tokio::io::copy(&mut stdout, &mut tokio::io::sink())
                    .await
                    .map(|_| ()),
            }
        };
        let errors = async move {
            let mut tail = Vec::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.read_to_end(&mut tail).await;
            }
            let start = tail.len().saturating_sub(STDERR_TAIL);
            String::from_utf8_lossy(&tail[start..]).into_owned()
        };
        let (fed, pumped, stderr_tail) = tokio::join!(feed, pump, errors);
        let status = child.wait().await;
        let status = match status {
            Ok(s) => s.code(),
            // openssh reports the shell's "command not found" as an error; to exec it is
            // an exit status like any other.
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => Some(127),
            Err(e) => return Err(error::ssh(host, op, e, "")),
        };
        // A program that exits without reading all of stdin breaks the pipe: not an error.
        if let Err(e) = fed
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(io_error(host, op, "stdin", e));
        }
        pumped.map_err(|e| io_error(host, op, "stdout", e))?;
        Ok(ExitStatus {
            code: status,
            stderr_tail,
        })
    }

    /// Streams `tar -c -C path .` from the host. A failing `tar` ends the stream with an
    /// error carrying its stderr.
    pub(crate) async fn tar_out(&self, op: &str, path: &str) -> Result<ByteStream> {
        check_remote_path(&self.host, op, path)?;
        let (session, _) = self.live(op, false).await?;
        let mut command = session.arc_command("tar");
        command.args(["-c", "-f", "-", "-C", path, "."]);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .await
            .map_err(|e| error::ssh(&self.host, op, e, ""))?;
        let mut stdout = child.stdout().take().expect("stdout is piped");
        let mut stderr = child.stderr().take().expect("stderr is piped");
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<std::io::Cursor<Vec<u8>>>>(4);
        let name = self.host.name.clone();
        tokio::spawn(async move {
            let errors = async move {
                let mut tail = Vec::new();
                let _ = stderr.read_to_end(&mut tail).await;
                String::from_utf8_lossy(&tail).into_owned()
            };
            let forward = async {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match stdout.read(&mut buf).await {
                        Ok(0) => return true,
                        Ok(n) => {
                            if tx
                                .send(Ok(std::io::Cursor::new(buf[..n].to_vec())))
                                .await
                                .is_err()
                            {
                                return false;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return false;
                        }
                    }
                }
            };
            let (complete, tail) = tokio::join!(forward, errors);
            let status = child.wait().await;
            if complete {
                let failure = match status {
                    Ok(s) if s.success() => None,
                    Ok(s) => Some(format!(
                        "tar on host {name} exited with {s}: {}",
                        tail.trim()
                    )),
                    Err(e) => Some(format!("tar on host {name}: {}", error::chain(&e))),
                };
                if let Some(message) = failure {
                    let _ = tx.send(Err(std::io::Error::other(message))).await;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    /// Makes `path` on the host hold exactly the archive's entries.
    pub(crate) async fn tar_in(&self, op: &str, path: &str, tar: ByteStream) -> Result<()> {
        check_remote_path(&self.host, op, path)?;
        let steps: [&[&str]; 2] = [
            &["mkdir", "-p", "--", path],
            &["find", path, "-mindepth", "1", "-delete"],
        ];
        for argv in steps {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            self.checked(op, &argv, ExecIo::default()).await?;
        }
        let argv: Vec<String> = ["tar", "-x", "-f", "-", "-C", path]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let io = ExecIo {
            stdin: Some(tar),
            ..ExecIo::default()
        };
        self.checked(op, &argv, io).await
    }

    async fn checked(&self, op: &str, argv: &[String], io: ExecIo) -> Result<()> {
        let status = self.run(op, argv, io).await?;
        if status.success() {
            Ok(())
        } else {
            Err(error::driver(
                ErrorKind::Other,
                op,
                &self.host.name,
                format!(
                    "`{}` on host {} failed: {}",
                    argv.join(" "),
                    self.host.describe(),
                    status.describe()
                ),
            ))
        }
    }
}

async fn close(link: Link) {
    let Link {
        session,
        docker,
        socket,
        ..
    } = link;
    drop(docker);
    // While a stream still reads from the session (an archive being consumed) the last
    // holder's drop ends the master instead.
    if let Ok(session) = Arc::try_unwrap(session)
        && let Err(e) = session.close().await
    {
        tracing::debug!("closing an SSH session: {}", error::chain(&e));
    }
    let _ = std::fs::remove_file(socket);
}

fn io_error(host: &Host, op: &str, stream: &str, e: std::io::Error) -> cutover_core::Error {
    error::driver(
        ErrorKind::Unavailable,
        op,
        &host.name,
        format!(
            "host {}: {stream} of the remote command: {e}",
            host.describe()
        ),
    )
}

fn check_remote_path(host: &Host, op: &str, path: &str) -> Result<()> {
    if !path.starts_with('/') || path.contains(['\0', '\n']) || path.split('/').any(|c| c == "..") {
        return Err(error::driver(
            ErrorKind::InvalidInput,
            op,
            &host.name,
            format!("{path:?} is not an absolute path without `..`"),
        ));
    }
    Ok(())
}
