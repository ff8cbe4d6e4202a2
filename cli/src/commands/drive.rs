//! A run driven under the signals that cancel it.

use std::io::Write as _;

use cutover_core::{Engine, Error, ErrorKind, Finished};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Outcome;
use crate::exit;

/// Runs `run` while the first interrupting signal — Ctrl-C (SIGINT), SIGTERM (systemd,
/// CI runners, `timeout`) or SIGHUP (a closed terminal or SSH session) — cancels it (it
/// then aborts or rolls back) and a second one exits at once with 130, leaving the journal
/// for `cutover resume`.
pub(super) async fn drive(
    engine: &Engine,
    run: impl std::future::Future<Output = cutover_core::Result<Finished>>,
) -> Outcome<Finished> {
    let cancel = engine.cancellation();
    let mut signals = Interrupts::new()?;
    let watcher = tokio::spawn(async move {
        // Cancel before telling: after a SIGHUP the terminal may be gone, and a failed
        // write must not keep the run from stopping.
        let first = signals.next().await;
        cancel.cancel();
        let _ = writeln!(
            std::io::stderr(),
            "! {first}: cancelling; the run aborts or rolls back. Press Ctrl-C (or send the signal) again to stop at once (then `cutover resume`)."
        );
        let second = signals.next().await;
        let _ = writeln!(
            std::io::stderr(),
            "! {second}: stopped at once; `cutover resume` continues from the journal"
        );
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    let result = run.await;
    watcher.abort();
    Ok(result?)
}

/// The signals that ask a run to stop.
struct Interrupts {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Interrupts {
    fn new() -> Outcome<Self> {
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    format!("cannot listen for {name}, so the run could not be cancelled: {e}"),
                )
            })
        };
        Ok(Interrupts {
            int: listen(SignalKind::interrupt(), "SIGINT")?,
            term: listen(SignalKind::terminate(), "SIGTERM")?,
            hup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
