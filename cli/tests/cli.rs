//! The `cutover` binary end to end with the in-memory driver: help, configuration errors,
//! exit codes, JSON events and the lock between two processes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

fn config(dir: &Path, ready_after: &str) -> PathBuf {
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
broken = ["v2.7.81-broken"]
unhealthy = ["v2.7.81-unhealthy"]
ready_after = "{ready_after}"
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

#[test]
fn help_of_every_command_shows_an_example() {
    let top = Command::new(BIN).arg("--help").output().unwrap();
    assert!(top.status.success());
    assert!(text(&top).contains("Example"), "{}", text(&top));
    assert!(text(&top).contains("Exit codes"), "{}", text(&top));
    for sub in [
        vec!["plan"],
        vec!["upgrade"],
        vec!["rollback"],
        vec!["resume"],
        vec!["status"],
        vec!["history"],
        vec!["backup"],
        vec!["backups"],
        vec!["backups", "list"],
        vec!["backups", "show"],
        vec!["backups", "verify"],
        vec!["backups", "prune"],
        vec!["restore"],
        vec!["unlock"],
        vec!["check"],
        vec!["completions"],
    ] {
        let out = Command::new(BIN).args(&sub).arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        assert!(text(&out).contains("Example"), "{sub:?}: {}", text(&out));
    }
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["upgrade", "rollback", "check", "no-safety-backup"] {
            assert!(script.contains(word), "{shell} completes {word}: {script}");
        }
    }
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH cutover 1"), "{page}");
    assert!(page.contains("upgrade"), "{page}");
    // Neither needs a configuration.
    let none = Command::new(BIN)
        .args([
            "--config",
            "/nonexistent/cutover.toml",
            "completions",
            "bash",
        ])
        .output()
        .unwrap();
    assert!(none.status.success(), "{}", text(&none));
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "10ms");
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, good.replace("image =", "imgae =")).unwrap();
    let out = cutover(&path, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("imgae") && text(&out).contains("cutover.toml"),
        "{}",
        text(&out)
    );

    std::fs::write(&path, good.replace("replicas = 3", "replicas = \"three\"")).unwrap();
    let out = cutover(&path, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("driver.fake.replicas") && text(&out).contains("cutover.toml"),
        "{}",
        text(&out)
    );

    std::fs::write(&path, good.replace("timeout = \"5s\"", "timeout = 5")).unwrap();
    let out = cutover(&path, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("health.timeout") && text(&out).contains("cutover.toml"),
        "{}",
        text(&out)
    );

    for bad in ["\"soon\"", "\"0s\""] {
        std::fs::write(
            &path,
            good.replace("[driver]\n", &format!("[driver]\ncall_timeout = {bad}\n")),
        )
        .unwrap();
        let out = cutover(&path, &["status"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("driver.call_timeout") && text(&out).contains("cutover.toml"),
            "{bad}: {}",
            text(&out)
        );
    }
    std::fs::write(
        &path,
        good.replace("[driver]\n", "[driver]\ncall_timeout = \"2m\"\n"),
    )
    .unwrap();
    let out = cutover(&path, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a valid call_timeout: {}",
        text(&out)
    );

    let out = cutover(&dir.path().join("nope.toml"), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nope.toml"), "{}", text(&out));
}

#[test]
fn outcomes_map_to_the_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "10ms");
    let cases = [
        (vec!["upgrade", "--to", "v2.7.81"], 0),
        (vec!["upgrade", "--to", "v2.7.81-broken"], 5),
        (vec!["upgrade", "--to", "v2.7.81-unhealthy"], 5),
        (vec!["upgrade", "--to", "v9.9.9"], 4),
        (vec!["upgrade", "--to", "v2.7.79"], 4),
        (vec!["upgrade", "--to", "bad tag;rm"], 2),
        (vec!["restore", "../../etc"], 2),
        (vec!["unlock"], 2),
        (vec!["unlock", "--force"], 0),
        (vec!["backup"], 0),
    ];
    for (args, code) in cases {
        let out = cutover(&path, &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
    }
    let history = cutover(&path, &["history"]);
    assert!(text(&history).contains("rolled_back"), "{}", text(&history));
}

#[test]
fn json_output_is_one_versioned_event_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "10ms");
    let out = cutover(&path, &["upgrade", "--to", "v2.7.81", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(lines.len() > 20);
    assert!(
        lines
            .iter()
            .all(|l| l["schema"] == "cutover.event.v1" && l["type"].is_string())
    );
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "outcome");
    assert_eq!(last["outcome"], "upgraded");

    let err = cutover(&path, &["restore", "../../etc", "--output", "json"]);
    let line = common::json_line(&err.stdout, "error");
    assert_eq!(line["type"], "error");
    assert_eq!(line["exit_code"], 2);
}

#[test]
fn a_second_process_on_the_same_target_exits_locked() {
    let dir = tempfile::tempdir().unwrap();
    // Instances take 3 s to become ready, so the first upgrade holds the lock a while.
    let path = config(dir.path(), "3s");
    let mut first = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .args(["upgrade", "--to", "v2.7.81"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // A bound on a hung start-up, not a performance target: the machine may be busy.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = cutover(&path, &["status", "--output", "json"]);
        let doc = common::json_line(&status.stdout, "result");
        if doc["lock"].is_object() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = cutover(&path, &["upgrade", "--to", "v2.7.81"]);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    assert!(
        text(&second).contains("pid"),
        "names the holder: {}",
        text(&second)
    );
    assert!(first.wait().unwrap().success());
}

/// A journal statement that waits on another process's write lock for longer than a
/// second is sqlx's "slow statement" warning: a library's diagnostic, never an operator's
/// `warning` event. `status --output json` prints its one `result` line and nothing else
/// while another connection holds the SQLite journal's write lock for 2 s (issue 25).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_journal_statement_is_no_warning_event() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "10ms");
    let up = cutover(&path, &["upgrade", "--to", "v2.7.81"]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    let journal = dir.path().join(".cutover/journal.db");
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", journal.display()))
        .await
        .unwrap();
    // In WAL mode a writer does not stop readers: the lock must be exclusive, as SQLite
    // takes it for a connection in exclusive locking mode.
    sqlx::raw_sql(
        "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE runs SET id = id WHERE 0",
    )
    .execute(&mut holder)
    .await
    .unwrap();
    let status = {
        let path = path.clone();
        std::thread::spawn(move || cutover(&path, &["status", "--output", "json"]))
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    // An exclusive locking mode keeps the lock until the connection ends.
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    let status = status.join().unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let stdout = String::from_utf8_lossy(&status.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(
        common::json_line(&status.stdout, "result")["type"],
        "result"
    );
    assert!(
        !text(&status).contains("slow statement"),
        "{}",
        text(&status)
    );
}
