//! Rendering events: progress bars on a terminal, plain lines otherwise, or JSON lines.
//!
//! Without a terminal (CI logs, pipes) a step that moves bytes prints a line with the bytes
//! so far and the rate at most every [`PROGRESS_LINE_EVERY`]; its finished line carries the
//! total and the average rate (the engine's step detail).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use cutover_core::event::{human_bytes, human_rate};
use cutover_core::{EVENT_SCHEMA, Event, EventKind, EventSink, Unit};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

// Output that cannot be written (a closed terminal after SIGHUP, a closed pipe) is
// dropped, never a panic: the renderer runs inside the engine's event sink, and a run
// must reach its end state whether or not anyone still reads it.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! esay {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people: progress bars on a terminal, lines otherwise.
    Human,
    /// One JSON event object per line (schema `cutover.event.v1`).
    Json,
}

/// Turns events into output.
#[derive(Debug, Clone)]
pub struct Renderer {
    output: Output,
    /// Human output without the run's start and its steps' lines and progress.
    quiet: bool,
    state: Arc<Mutex<State>>,
}

/// How often a step's progress is printed as a line when there is no terminal.
pub const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct State {
    bar: Option<ProgressBar>,
    /// Without a terminal: when the last progress line (or the step's start) was, and the
    /// bytes done then.
    last_line: Option<(Instant, u64)>,
    /// Warnings already shown: a driver may say the same thing when it connects and
    /// again in the run (JSON output keeps every event).
    warned: std::collections::HashSet<String>,
}

impl State {
    /// Whether warning `message` has not been shown yet (and remember it).
    fn first_time(&mut self, message: &str) -> bool {
        self.warned.insert(message.to_string())
    }

    /// The progress line to print now, if one is due: `  backup  412.0 MiB of 1.3 GiB  97.3 MiB/s`
    /// (the rate since the previous line).
    fn progress_line(&mut self, step: &str, done: u64, total: Option<u64>) -> Option<String> {
        let now = Instant::now();
        let (since, before) = *self.last_line.get_or_insert((now, 0));
        let elapsed = now.duration_since(since);
        if elapsed < PROGRESS_LINE_EVERY {
            return None;
        }
        self.last_line = Some((now, done));
        let of = total.map_or(String::new(), |t| format!(" of {}", human_bytes(t)));
        let rate = human_rate(done.saturating_sub(before), elapsed.as_millis() as u64);
        Some(format!("  {step:<18} {}{of}  {rate}", human_bytes(done)))
    }
}

impl Renderer {
    /// A renderer for `output`.
    pub fn new(output: Output) -> Self {
        Self {
            output,
            quiet: false,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// With `quiet`, human output shows only warnings, failures and the outcome.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// The output mode.
    pub fn output(&self) -> Output {
        self.output
    }

    /// An event sink that renders through this renderer.
    pub fn sink(&self) -> EventSink {
        let me = self.clone();
        EventSink::new(move |e| me.event(e))
    }

    fn tty() -> bool {
        std::io::stderr().is_terminal()
    }

    /// Renders one event.
    pub fn event(&self, e: &Event) {
        match self.output {
            Output::Json => {
                let line = serde_json::to_string(e).unwrap_or_default();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Output::Human => self.human(e),
        }
    }

    fn human(&self, e: &Event) {
        if self.quiet
            && matches!(
                e.kind,
                EventKind::RunStarted { .. }
                    | EventKind::StepStarted { .. }
                    | EventKind::Progress { .. }
                    | EventKind::StepFinished { .. }
            )
        {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &e.kind {
            EventKind::RunStarted {
                kind,
                target,
                resumed,
            } => {
                let verb = if *resumed { "resuming" } else { "starting" };
                say!("{verb} {} of {target} (run {})", kind.as_str(), e.run);
            }
            EventKind::StepStarted { step, about } => {
                if Self::tty() {
                    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {prefix:<14} {msg} {wide_bar} {pos}/{len}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(step.clone());
                    bar.set_message(about.clone());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    state.bar = Some(bar);
                } else {
                    state.last_line = Some((Instant::now(), 0));
                    say!("  {step:<18} {about}");
                }
            }
            EventKind::Progress {
                step,
                done,
                total,
                unit,
            } => {
                if state.bar.is_none() && *unit == Unit::Bytes {
                    if let Some(line) = state.progress_line(step, *done, *total) {
                        say!("{line}");
                    }
                } else if let Some(bar) = &state.bar {
                    if *unit == Unit::Bytes {
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{spinner} {prefix:<14} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                    }
                    if let Some(t) = total {
                        bar.set_length(*t);
                    }
                    bar.set_position(*done);
                }
            }
            EventKind::StepFinished {
                step,
                millis,
                detail,
            } => {
                if let Some(bar) = state.bar.take() {
                    bar.finish_and_clear();
                }
                state.last_line = None;
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!("  {detail}")
                };
                say!("✓ {step:<18} {}{detail}", seconds(*millis));
            }
            EventKind::StepFailed {
                step,
                millis,
                error,
            } => {
                if let Some(bar) = state.bar.take() {
                    bar.finish_and_clear();
                }
                state.last_line = None;
                say!("✗ {step:<18} {}  {error}", seconds(*millis));
                for kept in &error.evidence {
                    say_raw!("{}", evidence(kept, EVIDENCE_LINES));
                }
            }
            EventKind::Warning { message } => {
                if !state.first_time(message) {
                    return;
                }
                if let Some(bar) = &state.bar {
                    bar.suspend(|| esay!("! {message}"));
                } else {
                    esay!("! {message}");
                }
            }
            EventKind::Outcome {
                outcome,
                message,
                next,
            } => {
                if let Some(bar) = state.bar.take() {
                    bar.finish_and_clear();
                }
                say!("{}: {message}", outcome.as_str().to_uppercase());
                if let Some(next) = next {
                    say!("next: {next}");
                }
            }
            other => say!("{other:?}"),
        }
    }

    /// Reports an error that ended the command before or outside a run.
    pub fn error(&self, kind: &str, message: &str, exit_code: u8) {
        match self.output {
            Output::Json => {
                let line = serde_json::json!({
                    "schema": EVENT_SCHEMA,
                    "at": cutover_core::event::timestamp(std::time::SystemTime::now()),
                    "run": "",
                    "type": "error",
                    "kind": kind,
                    "message": message,
                    "exit_code": exit_code,
                });
                say!("{line}");
            }
            Output::Human => esay!("error: {message}"),
        }
    }

    /// Prints a command's result document: JSON as one line, or the human text.
    pub fn document(&self, json: serde_json::Value, human: impl FnOnce() -> String) {
        match self.output {
            Output::Json => {
                let mut doc = serde_json::json!({ "schema": EVENT_SCHEMA, "type": "result" });
                if let (Some(d), Some(extra)) = (doc.as_object_mut(), json.as_object()) {
                    d.extend(extra.clone());
                }
                say!("{doc}");
            }
            Output::Human => say_raw!("{}", human()),
        }
    }
}

/// Milliseconds as "1.2s".
pub fn seconds(millis: u64) -> String {
    format!("{:.1}s", millis as f64 / 1000.0)
}

/// How many of a failed instance's last lines the human output shows (the journal and
/// the file keep more).
pub(crate) const EVIDENCE_LINES: usize = 20;

/// A failed instance's last `lines` lines and where all of them are kept, indented under
/// the failure.
pub(crate) fn evidence(kept: &cutover_core::InstanceLogs, lines: usize) -> String {
    let mut out = match &kept.file {
        Some(file) => format!(
            "    last lines of {} ({}), kept in {file}:\n",
            kept.instance, kept.image
        ),
        None => format!("    last lines of {} ({}):\n", kept.instance, kept.image),
    };
    let all: Vec<&str> = kept.tail.lines().collect();
    if all.is_empty() {
        out.push_str("      (it printed nothing)\n");
    }
    for line in &all[all.len().saturating_sub(lines)..] {
        out.push_str("      | ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_said_twice_is_shown_once() {
        let mut state = State::default();
        assert!(state.first_time("compose.file is not set"));
        assert!(state.first_time("another warning"));
        assert!(!state.first_time("compose.file is not set"));
    }

    #[test]
    fn progress_lines_come_at_most_every_interval_with_bytes_and_rate() {
        let mut state = State::default();
        // The first progress of a step only starts the clock.
        assert_eq!(state.progress_line("backup", 1 << 20, None), None);
        assert_eq!(state.progress_line("backup", 2 << 20, None), None);
        // Once an interval has passed since the last line, the next progress prints one,
        // with the rate over that interval.
        let earlier = Instant::now() - PROGRESS_LINE_EVERY * 2;
        state.last_line = Some((earlier, 0));
        let line = state
            .progress_line("backup", 100 << 20, Some(400 << 20))
            .expect("a line is due");
        assert!(
            line.starts_with("  backup ") && line.contains("100.0 MiB of 400.0 MiB  "),
            "{line}"
        );
        assert!(line.ends_with(" MiB/s"), "{line}");
        assert_eq!(state.progress_line("backup", 101 << 20, None), None);
    }
}
