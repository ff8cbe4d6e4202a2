//! Running the operator's hook commands ([`Hooks`]) at an upgrade's hook points.
//!
//! # Guarantees
//! - A hook runs without a shell, in a cleared environment: only `PATH`, `HOME` and `LANG`
//!   (when set) are passed on, plus the run's context (`CUTOVER_RUN`, `CUTOVER_APP`,
//!   `CUTOVER_HOOK`, `CUTOVER_FROM`, `CUTOVER_TO`, and when known `CUTOVER_TO_DIGEST`,
//!   `CUTOVER_BACKUP`, `CUTOVER_OUTCOME`). No secret of cutover's environment reaches it.
//! - A hook that outlives its timeout, or whose step is cancelled, is killed. It ends when
//!   its process exits, whatever it left running in the background. Its stdout is
//!   discarded.
//! - A failure names the hook, its exit status and the last lines of its stderr.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::machine::{Hook, HookCall, HookPoints};
use crate::{Error, ErrorKind, Output, Result};

/// The default [`HookCommand::timeout`].
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// How many lines of a failed hook's stderr its failure keeps.
const STDERR_LINES: usize = 10;

/// How long a failed hook's stderr is still read after it exited.
const STDERR_GRACE: Duration = Duration::from_secs(1);

/// The stderr reader, stopped when the hook's step ends.
struct AbortOnDrop(tokio::task::JoinHandle<Vec<u8>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One hook's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    /// The program and its arguments; run directly, not through a shell.
    pub argv: Vec<String>,
    /// The working directory; `None`: cutover's own.
    pub dir: Option<PathBuf>,
    /// How long it may run before it is killed and counts as failed.
    pub timeout: Duration,
}

impl HookCommand {
    /// `argv` with no working directory and the default timeout.
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            dir: None,
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }
}

/// The commands at an upgrade's hook points (see [`Hook`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Right before the stop; a failure aborts the upgrade with nothing changed.
    pub before_stop: Option<HookCommand>,
    /// Once the new leader is healthy; a failure is a warning.
    pub after_leader: Option<HookCommand>,
    /// When the upgrade ends rolled back; a failure is a warning.
    pub on_rollback: Option<HookCommand>,
    /// At the end of the upgrade, whatever the outcome; a failure is a warning.
    pub after_run: Option<HookCommand>,
}

impl Hooks {
    /// The command at `hook`, if any.
    pub fn get(&self, hook: Hook) -> Option<&HookCommand> {
        match hook {
            Hook::BeforeStop => self.before_stop.as_ref(),
            Hook::AfterLeader => self.after_leader.as_ref(),
            Hook::OnRollback => self.on_rollback.as_ref(),
            Hook::AfterRun => self.after_run.as_ref(),
        }
    }

    /// Which points have a command: what an upgrade's plan records.
    pub fn points(&self) -> HookPoints {
        HookPoints {
            before_stop: self.before_stop.is_some(),
            after_leader: self.after_leader.is_some(),
            on_rollback: self.on_rollback.is_some(),
            after_run: self.after_run.is_some(),
        }
    }
}

/// Whether every hook point of `points` has a command that can start: its program exists
/// and is executable (on `PATH` when named without a `/`) and its directory exists. A
/// preflight check, so that a mistyped hook stops the upgrade before any downtime instead
/// of failing (or warning) in the middle of it.
pub(super) fn check(hooks: &Hooks, points: HookPoints) -> Result<String> {
    let mut ready = Vec::new();
    for hook in [
        Hook::BeforeStop,
        Hook::AfterLeader,
        Hook::OnRollback,
        Hook::AfterRun,
    ] {
        if !points.has(hook) {
            continue;
        }
        let command = hooks.get(hook).ok_or_else(|| {
            Error::invalid(format!(
                "the plan has a {hook} hook but [hooks] configures none"
            ))
        })?;
        let program = command
            .argv
            .first()
            .ok_or_else(|| Error::invalid(format!("hook {hook} has an empty command")))?;
        if let Some(dir) = &command.dir
            && !dir.is_dir()
        {
            return Err(Error::invalid(format!(
                "hook {hook}: its directory {} does not exist",
                dir.display()
            )));
        }
        if find_program(program, command.dir.as_deref()).is_none() {
            return Err(Error::invalid(format!(
                "hook {hook}: {program:?} is not an executable file{}",
                if program.contains('/') {
                    ""
                } else {
                    " on PATH"
                }
            )));
        }
        ready.push(hook.as_str());
    }
    Ok(format!("{} can start", ready.join(", ")))
}

/// Where `program` is, as the hook's process would find it.
fn find_program(program: &str, dir: Option<&std::path::Path>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        // A relative path is the hook's directory's.
        let path = match dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// Runs `call`'s hook of `hooks` for run `run` of application `app`.
pub(super) async fn run_hook(
    hooks: &Hooks,
    call: &HookCall,
    run: &str,
    app: &str,
) -> Result<Output> {
    let hook = call.hook;
    let command = hooks.get(hook).ok_or_else(|| {
        Error::invalid(format!(
            "the run's plan has a {hook} hook but [hooks] configures none; configure it again, or resume with the configuration the run started with"
        ))
    })?;
    let Some((program, args)) = command.argv.split_first() else {
        return Err(Error::invalid(format!("hook {hook} has an empty command")));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    for (name, value) in context(call, run, app) {
        cmd.env(name, value);
    }
    if let Some(dir) = &command.dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("hook {hook} could not start {program:?}: {e}"),
        )
    })?;
    // Read stderr beside the wait, not until its end: a process the hook leaves running
    // in the background may keep it open for ever.
    let mut pipe = child.stderr.take();
    let mut reader = AbortOnDrop(tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(pipe) = &mut pipe {
            let _ = pipe.read_to_end(&mut buf).await;
        }
        buf
    }));
    // Dropping the child (timeout, cancel) kills it.
    let status = match tokio::time::timeout(command.timeout, child.wait()).await {
        Ok(waited) => waited
            .map_err(|e| Error::new(ErrorKind::Other, format!("hook {hook} ({program:?}): {e}")))?,
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "hook {hook} ({program:?}) did not finish within {} and was killed",
                    humantime::format_duration(command.timeout)
                ),
            ));
        }
    };
    if status.success() {
        return Ok(Output::Done);
    }
    let stderr = match tokio::time::timeout(STDERR_GRACE, &mut reader.0).await {
        Ok(Ok(bytes)) => bytes,
        _ => Vec::new(),
    };
    let stderr = String::from_utf8_lossy(&stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join("\n");
    let status = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => format!("{status}"),
    };
    let said = if tail.is_empty() {
        " (no stderr)".to_string()
    } else {
        format!("; stderr ends:\n{tail}")
    };
    Err(Error::new(
        ErrorKind::Other,
        format!("hook {hook} ({program:?}) failed with {status}{said}"),
    ))
}

/// The environment variables that tell a hook about the run.
fn context(call: &HookCall, run: &str, app: &str) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("CUTOVER_RUN", run.to_string()),
        ("CUTOVER_APP", app.to_string()),
        ("CUTOVER_HOOK", call.hook.as_str().to_string()),
        ("CUTOVER_FROM", call.from.to_string()),
        ("CUTOVER_TO", call.to.to_string()),
    ];
    if let Some(digest) = &call.to_digest {
        vars.push(("CUTOVER_TO_DIGEST", digest.clone()));
    }
    if let Some(backup) = &call.backup {
        vars.push(("CUTOVER_BACKUP", backup.to_string()));
    }
    if let Some(outcome) = call.outcome {
        vars.push(("CUTOVER_OUTCOME", outcome.as_str().to_string()));
    }
    vars
}
