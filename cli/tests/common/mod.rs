//! What the binary's tests against a real database share: a config for the `fake` driver
//! beside a scratch database, and the binary run with its password in the environment.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cutover_tests::Engine;

pub const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// Writes `dir/cutover.toml`: app `apidog`, the `fake` driver running v2.7.80 with the
/// `fake` lines added to its table, the database `url` of `engine`, then `extra` tables.
pub fn fake_config(dir: &Path, engine: Engine, url: &str, fake: &str, extra: &str) -> PathBuf {
    let engine = match engine {
        Engine::Postgres => "postgres",
        _ => "mariadb",
    };
    let path = dir.join("cutover.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[app]
name = "apidog"
image = "registry.example.com/apidog/server"
[health]
interval = "10ms"
[driver]
kind = "fake"
[driver.fake]
running = "v2.7.80"
{fake}
[database]
engine = "{engine}"
url = "{url}"
{extra}
"#
        ),
    )
    .unwrap();
    path
}

/// The binary with `config` and `args`, the database password in its environment (never
/// on a command line) and no standard input.
pub fn cutover(config: &Path, password: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("CUTOVER_DATABASE__PASSWORD", password)
        .stdin(Stdio::null());
    command
}

/// The binary with `config` and `args`, no database password anywhere in its environment
/// (so it must come from the configuration's own sources) and no standard input.
pub fn cutover_unaided(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CUTOVER_DATABASE__PASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("run cutover")
}

/// Standard output and standard error, for assertions and their messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The line of `stdout` (one JSON object per line) whose `type` is `kind`: a document is one
/// `result` line, an error one `error` line, and warnings may come before either.
pub fn json_line(stdout: &[u8], kind: &str) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind:?} line in: {text}"))
}
