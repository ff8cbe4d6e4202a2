//! Rendering events: progress bars on a terminal, plain lines otherwise, or JSON lines.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum;
use cutover_core::{EVENT_SCHEMA, Event, EventKind, EventSink, Unit};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    bar: Option<ProgressBar>,
}

impl Renderer {
    /// A renderer for `output`.
    pub fn new(output: Output) -> Self {
        Self {
            output,
            state: Arc::new(Mutex::new(State::default())),
        }
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
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &e.kind {
            EventKind::RunStarted {
                kind,
                target,
                resumed,
            } => {
                let verb = if *resumed { "resuming" } else { "starting" };
                println!("{verb} {} of {target} (run {})", kind.as_str(), e.run);
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
                    println!("  {step:<18} {about}");
                }
            }
            EventKind::Progress {
                done, total, unit, ..
            } => {
                if let Some(bar) = &state.bar {
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
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!("  {detail}")
                };
                println!("✓ {step:<18} {}{detail}", seconds(*millis));
            }
            EventKind::StepFailed {
                step,
                millis,
                error,
            } => {
                if let Some(bar) = state.bar.take() {
                    bar.finish_and_clear();
                }
                println!("✗ {step:<18} {}  {error}", seconds(*millis));
            }
            EventKind::Warning { message } => {
                if let Some(bar) = &state.bar {
                    bar.suspend(|| eprintln!("! {message}"));
                } else {
                    eprintln!("! {message}");
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
                println!("{}: {message}", outcome.as_str().to_uppercase());
                if let Some(next) = next {
                    println!("next: {next}");
                }
            }
            other => println!("{other:?}"),
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
                println!("{line}");
            }
            Output::Human => eprintln!("error: {message}"),
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
                println!("{doc}");
            }
            Output::Human => print!("{}", human()),
        }
    }
}

/// Milliseconds as "1.2s".
pub fn seconds(millis: u64) -> String {
    format!("{:.1}s", millis as f64 / 1000.0)
}
