//! A journal shared on PostgreSQL (the test environment's server): two `cutover`
//! processes with configurations in different directories — two operators' machines —
//! start an upgrade at the same instant and exactly one proceeds, the other exits 3
//! naming the holder; a run killed on one machine is resumed from the other and ends;
//! `history` from either shows the same runs. The password comes from the environment.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use cutover_tests::{Engine, ScratchDatabase};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// A machine's configuration: the fake deployment, the shared journal.
fn machine(dir: &Path, journal_url: &str, ready_after: &str) -> PathBuf {
    let path = dir.join("cutover.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[app]
name = "apidog"
image = "registry.example.com/apidog/server"
[health]
timeout = "3s"
interval = "10ms"
[driver]
kind = "fake"
[driver.fake]
running = "v2.7.80"
tags = ["v2.7.81"]
ready_after = "{ready_after}"
[journal]
url = "{journal_url}"
"#
        ),
    )
    .unwrap();
    path
}

fn command(config: &Path, password: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("CUTOVER_JOURNAL__PASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `history --output json`'s runs as (id, status).
fn history(config: &Path, password: &str) -> Vec<(String, String)> {
    let out = command(config, password, &["--output", "json", "history"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = common::json_line(&out.stdout, "result");
    doc["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("runs listed: {doc}"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Waits until `child`'s JSON events show `step` started; returns the run id.
fn wait_for_step(child: &mut Child, step: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut run = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let e: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if run.is_empty() {
            run = e["run"].as_str().unwrap_or_default().to_string();
        }
        if e["type"] == "step_started" && e["step"] == step {
            return run;
        }
    }
    panic!("the run ended before {step}");
}

#[test]
fn two_machines_share_one_lock_and_one_history_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(ScratchDatabase::create(Engine::Postgres));
    let (url, password) = db.credentials();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = machine(a_dir.path(), &url, "1s");
    let b = machine(b_dir.path(), &url, "1s");

    // Both start at the same instant: one runs, the other is refused naming the holder.
    let both: Vec<Child> = [&a, &b]
        .iter()
        .map(|config| {
            command(config, &password, &["upgrade", "--to", "v2.7.81"])
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = both
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    codes.sort();
    assert_eq!(
        codes,
        [Some(0), Some(3)],
        "{}\n---\n{}",
        text(&outs[0]),
        text(&outs[1])
    );
    let refused = outs.iter().find(|o| o.status.code() == Some(3)).unwrap();
    assert!(
        text(refused).contains("pid ") && text(refused).contains("holds"),
        "names the holder: {}",
        text(refused)
    );
    for o in &outs {
        assert!(!text(o).contains(&password), "the password in the output");
    }

    // Killed on machine A while its leader starts; resumed from machine B. (Each
    // process's fake deployment and backups are its own, so this upgrade takes no backup
    // for B to restore; the journal is what is shared.)
    let slow = machine(a_dir.path(), &url, "30s");
    let mut child = command(
        &slow,
        &password,
        &[
            "--output", "json", "upgrade", "--to", "v2.7.81", "--backup", "skip",
        ],
    )
    .spawn()
    .unwrap();
    let run = wait_for_step(&mut child, "await_leader");
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = command(&b, &password, &["resume", &run]).output().unwrap();
    assert!(
        matches!(resumed.status.code(), Some(0 | 4 | 5)),
        "the resumed run ends: {}",
        text(&resumed)
    );

    // One history, whichever machine asks.
    let from_a = history(&a, &password);
    let from_b = history(&b, &password);
    assert_eq!(from_a, from_b);
    assert!(from_a.iter().any(|(id, _)| *id == run), "{from_a:?}");
    assert!(
        from_a
            .iter()
            .all(|(_, status)| !status.starts_with("running")),
        "every run ended: {from_a:?}"
    );
}
