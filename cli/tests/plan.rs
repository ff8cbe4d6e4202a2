//! `cutover plan` shows the checks the upgrade's preflight makes, from the same code: a
//! config that plan finds wrong makes the upgrade abort in preflight with the same
//! message, and a config it finds right lets the upgrade through.
//!
//! The deployment is the in-memory `fake` driver; the database is a scratch MariaDB
//! database on the real server, dumped by the real tools.

mod common;

use std::path::Path;

use common::{cutover, fake_config};
use cutover_tests::{Engine, ScratchDatabase};
use serde_json::Value;

/// `plan --to v2.7.81 --output json` and `upgrade --to v2.7.81 --output json` with the
/// configuration at `config`.
fn plan_and_upgrade(config: &Path, password: &str) -> (Value, Option<i32>, String) {
    let out = cutover(
        config,
        password,
        &["plan", "--to", "v2.7.81", "--output", "json"],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan changes nothing and succeeds: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = common::json_line(stdout.as_bytes(), "result");
    let out = cutover(
        config,
        password,
        &["upgrade", "--to", "v2.7.81", "--output", "json"],
    )
    .output()
    .unwrap();
    let upgrade = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (plan, out.status.code(), upgrade)
}

/// The checks plan listed as failed: (name, error).
fn failed(plan: &Value) -> Vec<(String, String)> {
    plan["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("plan lists its checks: {plan}"))
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["error"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `text` with JSON string escapes undone, enough to find a message in event output.
fn unescaped(text: &str) -> String {
    text.replace("\\\"", "\"").replace("\\\\", "\\")
}

#[tokio::test]
async fn plan_shows_the_preflight_checks_and_the_upgrade_stops_where_plan_said() {
    let scratch = ScratchDatabase::create(Engine::MariaDb).await;
    scratch
        .execute(
            "CREATE TABLE items (id INT PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'a')",
        )
        .await;
    let (url, password) = scratch.credentials();
    let dir = tempfile::tempdir().unwrap();
    let fake = "replicas = 2\nready_after = \"10ms\"\ntags = [\"v2.7.81\"]";
    let store = dir.path().join("backups");
    let with_store = |store: &Path| {
        fake_config(
            dir.path(),
            Engine::MariaDb,
            &url,
            fake,
            &format!("[backup]\nstore = \"{}\"", store.display()),
        )
    };

    // A store that is a file: nothing can be written under it.
    let not_a_directory = dir.path().join("not-a-directory");
    std::fs::write(&not_a_directory, "a file").unwrap();
    let config = with_store(&not_a_directory);
    let (plan, code, upgrade) = plan_and_upgrade(&config, &password);
    let failures = failed(&plan);
    assert_eq!(failures.len(), 1, "only the store fails: {plan}");
    let (name, error) = &failures[0];
    assert_eq!(name, "backup store writable", "{plan}");
    assert!(error.contains("cannot be written"), "{error}");
    let passed: Vec<_> = plan["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == true)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for check in [
        "settings",
        "driver",
        "upgrade",
        "database",
        "largest row",
        "dump tools",
    ] {
        assert!(passed.contains(&check), "{check} passes: {plan}");
    }
    assert!(
        plan["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("would stop in preflight (backup store writable)")),
        "{plan}"
    );
    assert_eq!(code, Some(4), "the upgrade aborts: {upgrade}");
    assert!(
        unescaped(&upgrade).contains(error.as_str()),
        "the upgrade stops with plan's message {error:?}: {upgrade}"
    );

    // A wrong password: the database check fails, and the checks that need a connection
    // are not reported as failures of their own.
    let config = with_store(&store);
    let (plan, code, upgrade) = plan_and_upgrade(&config, "not-the-password");
    let failures = failed(&plan);
    assert_eq!(failures.len(), 1, "{plan}");
    let (name, error) = &failures[0];
    assert_eq!(name, "database", "{plan}");
    assert_eq!(code, Some(4), "{upgrade}");
    assert!(
        unescaped(&upgrade).contains(error.as_str()),
        "the upgrade stops with plan's message {error:?}: {upgrade}"
    );

    // A downgrade: refused by the same check.
    let out = cutover(
        &config,
        &password,
        &["plan", "--to", "v2.7.79", "--output", "json"],
    )
    .output()
    .unwrap();
    let plan: Value = common::json_line(&out.stdout, "result");
    let failures = failed(&plan);
    assert_eq!(failures.len(), 1, "{plan}");
    assert_eq!(failures[0].0, "upgrade", "{plan}");
    assert!(failures[0].1.contains("downgrade"), "{plan}");

    // Everything right: no failed check, and the upgrade goes through.
    let (plan, code, upgrade) = plan_and_upgrade(&config, &password);
    assert!(failed(&plan).is_empty(), "{plan}");
    assert!(
        !plan["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("preflight")),
        "{plan}"
    );
    assert_eq!(code, Some(0), "{upgrade}");
    assert_eq!(
        std::fs::read_dir(&store).unwrap().count(),
        1,
        "the upgrade's backup is in the store plan checked"
    );
}
