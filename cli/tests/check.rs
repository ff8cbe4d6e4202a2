//! `cutover check` against the real Docker engine and MariaDB: the database settings come
//! from the application's own `.env` (the vendor's `MYSQL_*` names, the password
//! included), so nothing is typed twice. A good config passes every check and changes
//! nothing; a broken one names each failed check (an unreachable socket, a wrong password,
//! an unwritable store; a missing tag); the commands that change things refuse an
//! unreachable socket with exit 2 while `status` and `history` still answer; and the
//! checked config upgrades with no password in cutover's environment. Without
//! `[database]`, the backup commands say there is nothing instead of answering "none".

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cutover_tests::{
    Engine, ScratchDatabase, SpecimenClient, TestEnv, docker, docker_command, free_port,
    unique_name,
};
use serde_json::Value;

use common::{cutover_unaided as cutover, text};

/// The specimen started from its `.env`, as a vendor's `docker run --env-file` would.
struct App {
    name: String,
    port: u16,
}

impl Drop for App {
    fn drop(&mut self) {
        let ids = docker(&["ps", "-aq", "--filter", &format!("name={}", self.name)]);
        for id in ids.lines() {
            let _ = docker_command().args(["rm", "-f", id]).output();
        }
    }
}

/// `check … --output json`: the exit code and the document.
fn check(config: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["--output", "json", "check"];
    all.extend_from_slice(args);
    let out = cutover(config, &all);
    let doc = common::json_line(&out.stdout, "result");
    (out.status.code(), doc, text(&out))
}

/// The failed checks: (name, error).
fn failed(doc: &Value) -> Vec<(String, String)> {
    doc["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("checks listed: {doc}"))
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

fn write_config(
    dir: &Path,
    app: &App,
    host: &str,
    store: &Path,
    database_extra: &str,
) -> std::path::PathBuf {
    let env = TestEnv::get();
    let path = dir.join("cutover.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[app]
name = "specimen"
image = "{repository}"

[health]
http = "http://127.0.0.1:{port}/health"
timeout = "60s"
interval = "200ms"

[driver]
kind = "docker"

[driver.docker]
host = "{host}"
containers = {{ name = "{name}" }}

[database]
engine = "mariadb"
app_env = ".env"
{database_extra}

[backup]
store = "{store}"
"#,
            repository = env.specimen_image(),
            port = app.port,
            name = app.name,
            store = store.display(),
        ),
    )
    .unwrap();
    path
}

/// `docker inspect` of the app's container: id, image and start time.
fn inspect(app: &App) -> String {
    docker(&[
        "inspect",
        "--format",
        "{{.Id}} {{.Config.Image}} {{.State.StartedAt}}",
        &app.name,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tests_a_config_whose_database_settings_come_from_the_app_s_env_file() {
    let env = TestEnv::get();
    let db = ScratchDatabase::create(Engine::MariaDb).await;
    let dir = tempfile::tempdir().unwrap();
    let app = App {
        name: unique_name("ctcheck").replace('_', "-"),
        port: free_port(),
    };
    // The vendor's .env: the app reads it (`docker run --env-file` takes values as
    // written, so unquoted), and so does cutover.
    let mut dotenv = String::from("# database settings of the application\n");
    for (k, v) in db.app_env() {
        dotenv.push_str(&format!("{k}={v}\n"));
    }
    dotenv.push_str(&format!("PORT={}\nWRONG_PASSWORD=not-it\n", app.port));
    std::fs::write(dir.path().join(".env"), &dotenv).unwrap();
    let image = env.specimen_tag("1.0.0");
    docker(&["pull", "-q", &image]);
    let out = docker_command()
        .args(["run", "-d", "--name", &app.name, "--network", "host"])
        .args(["--label", "cutover-test=1", "--env-file"])
        .arg(dir.path().join(".env"))
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = SpecimenClient::new(format!("http://127.0.0.1:{}", app.port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.health().await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the specimen never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let password = db.credentials().1;
    let store = dir.path().join("backups");
    let good = write_config(dir.path(), &app, env.docker_host(), &store, "");

    // A good config: every check passes, and nothing changed.
    let before = inspect(&app);
    let (code, doc, all) = check(&good, &["--to", "1.1.0"]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(doc["passed"], true, "{doc}");
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for want in [
        "config",
        "driver",
        "upgrade",
        "database",
        "dump tools",
        "backup store writable",
        "tag",
        "journal",
    ] {
        assert!(names.contains(&want), "check {want:?} missing: {doc}");
    }
    assert!(!all.contains(&password), "the password in check's output");
    assert_eq!(inspect(&app), before, "check changed the container");
    assert!(
        !dir.path().join(".cutover").exists(),
        "check created the journal"
    );
    assert!(
        !store.exists() || std::fs::read_dir(&store).unwrap().next().is_none(),
        "check left something in the store"
    );
    let human = cutover(&good, &["check"]);
    assert_eq!(human.status.code(), Some(0), "{}", text(&human));
    assert!(
        text(&human).contains("every check passed"),
        "{}",
        text(&human)
    );

    // A missing tag.
    let (code, doc, all) = check(&good, &["--to", "9.9.9-missing"]);
    assert_eq!(code, Some(2), "{all}");
    let failures = failed(&doc);
    assert_eq!(failures.len(), 1, "{doc}");
    assert_eq!(failures[0].0, "tag", "{doc}");
    assert!(failures[0].1.contains("9.9.9-missing"), "{doc}");

    // An unreachable socket, a wrong password and a store that is a file: each is named.
    let not_a_directory = dir.path().join("store-file");
    std::fs::write(&not_a_directory, "").unwrap();
    let socket = "unix:///nonexistent/docker.sock";
    let broken_dir = tempfile::tempdir().unwrap();
    std::fs::write(broken_dir.path().join(".env"), &dotenv).unwrap();
    let broken = write_config(
        broken_dir.path(),
        &app,
        socket,
        &not_a_directory,
        "[database.vars]\npassword = \"WRONG_PASSWORD\"",
    );
    let (code, doc, all) = check(&broken, &["--to", "1.1.0"]);
    assert_eq!(code, Some(2), "{all}");
    let failures = failed(&doc);
    let named = |check: &str, says: &str| {
        assert!(
            failures.iter().any(|(n, e)| n == check && e.contains(says)),
            "failed check {check:?} saying {says:?}: {failures:#?}"
        );
    };
    named("driver", "/nonexistent/docker.sock");
    named("database", "Access denied");
    named(
        "backup store writable",
        &not_a_directory.display().to_string(),
    );
    let human = text(&cutover(&broken, &["check"]));
    for name in ["driver", "database", "backup store writable"] {
        assert!(human.contains(&format!("FAILED  {name}")), "{human}");
    }

    // The unreachable socket is a configuration error for what would change things, and
    // does not stop what only reads the journal.
    let up = cutover(&broken, &["upgrade", "--to", "1.1.0"]);
    assert_eq!(up.status.code(), Some(2), "{}", text(&up));
    assert!(
        text(&up).contains("/nonexistent/docker.sock"),
        "{}",
        text(&up)
    );
    assert!(text(&up).contains("Nothing was done"), "{}", text(&up));
    let status = cutover(&broken, &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        text(&status).contains("could not be reached"),
        "{}",
        text(&status)
    );
    let history = cutover(&broken, &["history"]);
    assert_eq!(history.status.code(), Some(0), "{}", text(&history));
    assert_eq!(
        inspect(&app),
        before,
        "a refused command changed the container"
    );

    // The checked config upgrades; the password comes only from the app's .env.
    let up = cutover(&good, &["upgrade", "--to", "1.1.0"]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    assert!(
        !text(&up).contains(&password),
        "the password in cutover's output"
    );
    assert_eq!(client.version().await["version"], "1.1.0");
}

#[test]
fn without_a_database_the_backup_commands_say_there_is_nothing_instead_of_none() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(
        &config,
        format!(
            "[app]\nname = \"nodb\"\nimage = \"{}\"\n[driver]\nkind = \"docker\"\n[driver.docker]\nhost = \"{}\"\ncontainers = {{ name = \"{}\" }}\n",
            env.specimen_image(),
            env.docker_host(),
            unique_name("ctnodb")
        ),
    )
    .unwrap();
    for args in [
        &["backups", "list"][..],
        &["backups", "prune", "--keep", "1"],
        &["backups", "show", "20261205T063351Z-nodb-3941fc"],
        &["backup"],
    ] {
        let out = cutover(&config, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("no [database]"),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert!(
        !dir.path().join(".cutover/journal.db").exists(),
        "a refused command journaled a run"
    );
}
