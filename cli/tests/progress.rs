//! Without a terminal (here stdout is a pipe), the steps that move bytes still say how
//! many and how fast: progress lines while they run, totals and average rates when done.

mod common;

use std::process::Output;

use common::{cutover, fake_config};
use cutover_tests::{Engine, ScratchDatabase};

/// The line of `out` for finished step `step`.
fn finished_line<'a>(out: &'a str, step: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.strip_prefix("✓ ")
                .is_some_and(|rest| rest.split_whitespace().next() == Some(step))
        })
        .unwrap_or_else(|| panic!("no finished {step} line in:\n{out}"))
}

/// Whether `line` names a byte count and a rate, as `1.2 MiB at 40.1 MiB/s`.
fn has_bytes_and_rate(line: &str) -> bool {
    let units = ["B", "KiB", "MiB", "GiB"];
    let words: Vec<&str> = line.split_whitespace().collect();
    let bytes = words
        .windows(2)
        .any(|w| w[0].parse::<f64>().is_ok() && units.contains(&w[1]));
    let rate = words.windows(2).any(|w| {
        w[0].parse::<f64>().is_ok()
            && w[1]
                .trim_end_matches(')')
                .strip_suffix("/s")
                .is_some_and(|u| units.contains(&u))
    });
    bytes && rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_print_bytes_and_rates_when_stdout_is_not_a_terminal() {
    let scratch = ScratchDatabase::create(Engine::Postgres).await;
    scratch.seed_varied().await;
    let (url, password) = scratch.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = fake_config(
        dir.path(),
        Engine::Postgres,
        &url,
        "replicas = 1\nready_after = \"10ms\"",
        "",
    );
    let run = |args: &[&str]| -> Output { cutover(&config, &password, args).output().unwrap() };

    let out = run(&["backup"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = finished_line(&text, "backup");
    assert!(has_bytes_and_rate(line), "{line}");
    assert!(line.contains("stored"), "{line}");
    // No terminal: no progress bar drawing on either stream.
    assert!(!text.contains('\r'), "{text:?}");
    assert!(!out.stderr.contains(&b'\r'), "{:?}", out.stderr);
    let id = line
        .split_whitespace()
        .nth(3)
        .expect("the backup id follows the duration")
        .to_string();

    let out = run(&["restore", &id, "--yes"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = finished_line(&text, "restore_data");
    assert!(has_bytes_and_rate(line), "{line}");

    let out = run(&["backups", "verify", &id]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let line = finished_line(&text, "verify");
    assert!(has_bytes_and_rate(line), "{line}");
}
