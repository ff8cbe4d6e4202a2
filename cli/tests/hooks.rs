//! `[hooks]` end to end with the in-memory driver: a failing `before_stop` aborts the
//! upgrade (exit 4) with nothing stopped, the end hook still runs with the outcome and
//! without cutover's secrets, and `plan` lists the hook steps where they run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

fn config(dir: &Path, before_stop: &str) -> PathBuf {
    let path = dir.join("cutover.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[app]
name = "apidog"
image = "registry.example.com/apidog/server"

[health]
timeout = "5s"
interval = "10ms"

[driver]
kind = "fake"

[driver.fake]
running = "v2.7.80"
replicas = 3
tags = ["v2.7.81"]
ready_after = "10ms"

[hooks.before_stop]
command = ["/bin/sh", "-c", "echo \"$CUTOVER_HOOK\" >> log; {before_stop}"]
dir = "."
timeout = "20s"

[hooks.after_leader]
command = ["/bin/sh", "-c", "echo \"$CUTOVER_HOOK\" >> log"]
dir = "."

[hooks.after_run]
command = ["/bin/sh", "-c", "echo \"$CUTOVER_HOOK\" >> log; env > after_run.env"]
dir = "."
"#
        ),
    )
    .unwrap();
    path
}

fn cutover(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("AWS_SECRET_ACCESS_KEY", "hook-must-not-see-this")
        .env("DATABASE_PASSWORD", "hook-must-not-see-this")
        .stdin(Stdio::null())
        .output()
        .expect("run cutover")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_failing_before_stop_aborts_with_exit_4_and_the_end_hook_gets_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "echo maintenance page refused >&2; exit 7");
    let out = cutover(&path, &["upgrade", "--to", "v2.7.81"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(4), "{said}");
    for part in ["before_stop", "exit status 7", "maintenance page refused"] {
        assert!(said.contains(part), "{part:?} not in {said}");
    }
    assert_eq!(log(dir.path()), ["before_stop", "after_run"], "{said}");
    let env = std::fs::read_to_string(dir.path().join("after_run.env")).unwrap();
    assert!(env.contains("CUTOVER_OUTCOME=aborted"), "{env}");
    assert!(env.contains("CUTOVER_APP=apidog"), "{env}");
    assert!(!env.contains("hook-must-not-see-this"), "{env}");

    // Nothing was stopped: the next upgrade, with a hook that passes, goes through.
    let path = config(dir.path(), "true");
    std::fs::remove_file(dir.path().join("log")).unwrap();
    let out = cutover(&path, &["upgrade", "--to", "v2.7.81"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        log(dir.path()),
        ["before_stop", "after_leader", "after_run"],
        "{}",
        text(&out)
    );
}

#[test]
fn plan_lists_the_hook_steps_where_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "true");
    let out = cutover(&path, &["plan", "--to", "v2.7.81", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = common::json_line(&out.stdout, "result");
    let steps: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let at = |name: &str| {
        steps
            .iter()
            .position(|s| *s == name)
            .unwrap_or_else(|| panic!("{name} not in {steps:?}"))
    };
    assert_eq!(at("hook_before_stop") + 1, at("stop"), "{steps:?}");
    assert_eq!(at("await_leader") + 1, at("hook_after_leader"), "{steps:?}");
    assert_eq!(at("hook_after_leader") + 1, at("scale_out"), "{steps:?}");
    assert_eq!(at("hook_after_run") + 1, at("unlock"), "{steps:?}");
    assert!(!steps.contains(&"hook_on_rollback"), "{steps:?}");
    // Nothing ran; preflight found every hook's program.
    assert!(log(dir.path()).is_empty());
    let hooks_check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "hooks")
        .unwrap_or_else(|| panic!("no hooks check: {doc}"));
    assert_eq!(hooks_check["passed"], true, "{hooks_check}");

    let out = cutover(&path, &["plan", "--to", "v2.7.81"]);
    let said = text(&out);
    assert!(said.contains("hook_before_stop"), "{said}");
    assert!(
        said.contains("the upgrade aborts with nothing changed"),
        "{said}"
    );
}

#[test]
fn a_hook_whose_program_is_missing_stops_the_upgrade_in_preflight() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "true");
    let toml = std::fs::read_to_string(&path).unwrap().replace(
        r#"command = ["/bin/sh", "-c", "echo \"$CUTOVER_HOOK\" >> log"]"#,
        r#"command = ["smoke-test-that-is-not-installed"]"#,
    );
    std::fs::write(&path, toml).unwrap();
    let out = cutover(&path, &["upgrade", "--to", "v2.7.81"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(said.contains("after_leader"), "{said}");
    assert!(said.contains("not an executable file on PATH"), "{said}");
    assert!(log(dir.path()).is_empty(), "a hook ran: {said}");
    // `cutover check --to` finds it too, as a failed `hooks` check.
    let out = cutover(&path, &["--output", "json", "check", "--to", "v2.7.81"]);
    let doc: Value = common::json_line(&out.stdout, "result");
    let hooks = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "hooks")
        .unwrap_or_else(|| panic!("no hooks check: {doc}"));
    assert_eq!(hooks["passed"], false, "{hooks}");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_hook_without_a_command_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cutover.toml");
    std::fs::write(
        &path,
        r#"
[app]
name = "apidog"
image = "registry.example.com/apidog/server"

[driver]
kind = "fake"

[hooks.before_stop]
command = []
"#,
    )
    .unwrap();
    let out = cutover(&path, &["plan", "--to", "v2.7.81"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("hooks.before_stop.command"),
        "{}",
        text(&out)
    );
}
