//! Where the tracing records of core and the drivers go.
//!
//! A driver or the engine that meets something the operator must act on, but that does
//! not stop the run ("put image … back by hand", a lost lock heartbeat), logs it with
//! `tracing::warn!`. Every such record (and every error record) becomes a `warning` event
//! of the run it happened in — the engine's [`cutover_core::engine::run_span`] names it —
//! rendered like the engine's own warnings, in human and JSON output. Beside that, a log
//! on stderr shows the records `CUTOVER_LOG` selects (`info`, `cutover_driver_ssh=debug`,
//! …), or with `-v` the informational ones and with `-vv` the debugging ones; without
//! either there is none.

use std::fmt::{self, Write as _};

use cutover_core::{Error, EventSink};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that selects the stderr log.
pub const LOG_ENV: &str = "CUTOVER_LOG";

/// Installs the process's subscriber: warnings to `sink`, and the stderr log that
/// `CUTOVER_LOG`, else `verbose` (the count of `-v`), selects.
///
/// # Errors
/// `InvalidInput` when `CUTOVER_LOG` is not a filter.
pub fn install(sink: EventSink, verbose: u8) -> cutover_core::Result<()> {
    let filter = log_filter(std::env::var(LOG_ENV).ok().as_deref(), verbose)?;
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(filter);
    // Another subscriber (an embedder's, a test harness's) keeps its place.
    let _ = tracing_subscriber::registry()
        .with(WarningEvents { sink })
        .with(log)
        .try_init();
    Ok(())
}

/// The stderr log's filter: `CUTOVER_LOG` when set, else by `-v` count.
fn log_filter(env: Option<&str>, verbose: u8) -> cutover_core::Result<Targets> {
    match env.map(str::trim).filter(|s| !s.is_empty()) {
        Some(spec) => spec.parse().map_err(|e| {
            Error::invalid(format!(
                "{LOG_ENV}={spec:?} is not a log filter ({e}); write a level (error, warn, info, debug, trace) or target=level pairs separated by commas, e.g. info,cutover_driver_ssh=debug"
            ))
        }),
        None => Ok(Targets::new().with_default(match verbose {
            0 => LevelFilter::OFF,
            1 => LevelFilter::INFO,
            2 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })),
    }
}

/// Turns warning and error records into `warning` events.
struct WarningEvents {
    sink: EventSink,
}

/// The run a span belongs to, kept in the span's extensions.
struct RunOf(String);

impl<S> Layer<S> for WarningEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut run = RunField(None);
        attrs.record(&mut run);
        if let (Some(run), Some(span)) = (run.0, ctx.span(id)) {
            span.extensions_mut().insert(RunOf(run));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        // ERROR and WARN (the levels at or above WARN) of cutover's own crates: a
        // library's diagnostics (sqlx's slow statements, kube, hyper, bollard) go to the
        // `-v`/`CUTOVER_LOG` log only.
        let metadata = event.metadata();
        if *metadata.level() > Level::WARN || !metadata.target().starts_with("cutover") {
            return;
        }
        let run = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<RunOf>().map(|r| r.0.clone()))
        });
        let mut text = Text::default();
        event.record(&mut text);
        let sink = match run {
            Some(run) => self.sink.for_run(&run),
            None => self.sink.clone(),
        };
        sink.warn(text.finish());
    }
}

/// Reads the `run` field of a span.
struct RunField(Option<String>);

impl Visit for RunField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "run" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "run" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// A record as one line: its message, then its other fields as `name: value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: Vec<String>,
}

impl Text {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else {
            format!("{} ({})", self.message, self.fields.join(", "))
        }
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.push(format!("{}: {value:?}", field.name()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::{ErrorKind, EventKind};

    #[test]
    fn a_warning_in_a_run_s_span_becomes_that_run_s_warning_event() {
        let (sink, mut events) = EventSink::channel();
        let subscriber = tracing_subscriber::registry().with(WarningEvents { sink });
        tracing::subscriber::with_default(subscriber, || {
            let span = cutover_core::engine::run_span("run-7");
            let _inside = span.enter();
            tracing::info!("not a warning");
            // A library's warning is the log's, not the operator's (sqlx's, under load).
            tracing::warn!(
                target: "sqlx::query",
                "slow statement: execution time exceeded alert threshold"
            );
            tracing::warn!(host = "web-2", "unreachable; counted as stopped");
            drop(_inside);
            tracing::error!(error = %"the socket is gone", "outside any run");
        });
        let first = events.try_recv().unwrap();
        assert_eq!(first.run, "run-7");
        let EventKind::Warning { message } = first.kind else {
            panic!("{first:?}")
        };
        assert_eq!(message, "unreachable; counted as stopped (host: web-2)");
        let second = events.try_recv().unwrap();
        assert_eq!(second.run, "");
        let EventKind::Warning { message } = second.kind else {
            panic!("{second:?}")
        };
        assert_eq!(message, "outside any run (error: the socket is gone)");
        assert!(events.try_recv().is_err(), "info records are not warnings");
    }

    #[test]
    fn the_log_filter_comes_from_cutover_log_or_the_verbosity() {
        let off = log_filter(None, 0).unwrap();
        assert!(!off.would_enable("cutover_core", &Level::ERROR));
        let info = log_filter(None, 1).unwrap();
        assert!(info.would_enable("cutover_core", &Level::INFO));
        assert!(!info.would_enable("cutover_core", &Level::DEBUG));
        let env = log_filter(Some("warn,cutover_driver_ssh=debug"), 0).unwrap();
        assert!(env.would_enable("cutover_driver_ssh::link", &Level::DEBUG));
        assert!(!env.would_enable("cutover_core", &Level::INFO));
        let e = log_filter(Some("cutover_core=loud"), 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("CUTOVER_LOG"), "{}", e.message());
    }
}
