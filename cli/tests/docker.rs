//! The `cutover` binary with `kind = "docker"` and `[database]` on PostgreSQL, against the
//! specimen started by a `docker run` script with `--restart unless-stopped`: `upgrade` and
//! then a manual `rollback` that brings back the previous image, the previous data and the
//! stored files; then a broken release, rolled back automatically with exit code 5. And a
//! broken leader whose cutover process is killed: Docker does not restart it, so its
//! migration runs once; `resume` rolls it back, and a later upgrade's instances get the
//! restart policy at commit. And SIGTERM during the leader's migration rolls the upgrade back.

mod common;

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cutover_tests::{
    DockerVolume, Engine, ScratchDatabase, SpecimenClient, TestEnv, docker, docker_command,
    free_port, unique_name,
};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// The specimen as one container on the host network (the test PostgreSQL listens on
/// loopback), its storage on a named volume; removed on drop.
struct App {
    name: String,
    port: u16,
    _volume: DockerVolume,
}

impl App {
    fn run(
        version: &str,
        db: &ScratchDatabase,
        volume: DockerVolume,
        extra: &[(&str, &str)],
    ) -> App {
        let app = App {
            name: unique_name("ctcli").replace('_', "-"),
            port: free_port(),
            _volume: volume,
        };
        let image = TestEnv::get().specimen_tag(version);
        docker(&["pull", "-q", &image]);
        let mut command = docker_command();
        command
            .args(["run", "-d", "--name", &app.name, "--network", "host"])
            .args(["--restart", "unless-stopped", "--label", "cutover-test=1"])
            .args(["-e", "DATABASE_URL", "-e", &format!("PORT={}", app.port)])
            .args(["-v", &format!("{}:/data/storage", app._volume.name())])
            .env("DATABASE_URL", db.url());
        for (k, v) in extra {
            command.args(["-e", &format!("{k}={v}")]);
        }
        let out = command.arg(&image).output().unwrap();
        assert!(
            out.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        app
    }

    fn client(&self) -> SpecimenClient {
        SpecimenClient::new(format!("http://127.0.0.1:{}", self.port))
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.client().health().await != Some(200) {
            assert!(
                Instant::now() < deadline,
                "{} never became healthy",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn image(&self) -> String {
        docker(&["inspect", "--format", "{{.Config.Image}}", &self.name])
    }

    /// The container's id and start time: what a restart changes.
    fn container_id(&self) -> String {
        docker(&[
            "inspect",
            "--format",
            "{{.Id}} {{.State.StartedAt}}",
            &self.name,
        ])
    }

    /// The instance's restart policy, restart count and status, as `docker inspect` shows
    /// them: e.g. `unless-stopped 0 running`.
    fn supervision(&self) -> String {
        docker(&[
            "inspect",
            "--format",
            "{{.HostConfig.RestartPolicy.Name}} {{.RestartCount}} {{.State.Status}}",
            &self.name,
        ])
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let names = docker(&["ps", "-aq", "--filter", &format!("name={}", self.name)]);
        for id in names.lines() {
            let _ = docker_command().args(["rm", "-f", id]).output();
        }
    }
}

/// Writes `dir/cutover.toml` for `app` on `db`, with the storage path backed up.
fn write_config(dir: &Path, app: &App, db: &ScratchDatabase) -> PathBuf {
    let env = TestEnv::get();
    let (url, _) = db.credentials();
    let config = dir.join("cutover.toml");
    std::fs::write(
        &config,
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
engine = "postgres"
url = "{url}"

[backup]
paths = ["/data/storage"]
"#,
            repository = env.specimen_image(),
            port = app.port,
            host = env.docker_host(),
            name = app.name,
        ),
    )
    .unwrap();
    config
}

fn cutover(config: &Path, password: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("CUTOVER_DATABASE__PASSWORD", password)
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

/// `cutover --output json ARGS` started in the background, and its events, read to the
/// end on a thread of their own so that it never blocks on a full pipe.
fn spawn_json(
    config: &Path,
    password: &str,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut run = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["--output", "json"])
        .args(args)
        .env("CUTOVER_DATABASE__PASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Its few lines of stderr (a JSON run writes its events to stdout) fit the pipe.
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cutover");
    let (lines, events) = std::sync::mpsc::channel::<String>();
    let stdout = run.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (run, events)
}

/// Reads `events` until step `step` starts; the lines read.
fn wait_for_step(events: &std::sync::mpsc::Receiver<String>, step: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = events
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the run never began {step}: {seen:#?}"));
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        seen.push(line);
        if event["type"] == "step_started" && event["step"] == step {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rollback_after_an_upgrade_restores_data_files_and_image() {
    let env = TestEnv::get();
    let db = ScratchDatabase::create(Engine::Postgres).await;
    let app = App::run("1.0.0", &db, DockerVolume::create(), &[]);
    app.wait_healthy().await;
    let client = app.client();
    for i in 0..10 {
        client.create_item(&format!("item {i}"), "before").await;
    }
    client
        .put_file("report.txt", b"before the upgrade".to_vec())
        .await;
    let before = client.items().await;

    let (_, password) = db.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &app, &db);

    let up = cutover(&config, &password, &["upgrade", "--to", "1.1.0"]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    app.wait_healthy().await;
    assert_eq!(client.version().await["version"], "1.1.0");
    assert!(db.has_column("items", "name_folded").await);
    let running = app.image();
    assert!(
        cutover_tests::is_image(&running, &env.specimen_tag("1.1.0")),
        "{running}"
    );
    assert_eq!(
        app.supervision(),
        "unless-stopped 0 running",
        "the committed instance has the definition's restart policy"
    );
    // Written after the upgrade: a rollback to the upgrade's backup drops it.
    client.create_item("after", "after the upgrade").await;
    client
        .put_file("report.txt", b"after the upgrade".to_vec())
        .await;

    let back = cutover(&config, &password, &["rollback", "--yes"]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    app.wait_healthy().await;
    assert_eq!(client.version().await["version"], "1.0.0");
    assert_eq!(app.image(), env.specimen_tag("1.0.0"));
    assert_eq!(app.supervision(), "unless-stopped 0 running");
    assert!(
        !db.has_column("items", "name_folded").await,
        "schema of 1.0.0"
    );
    let after = client.items().await;
    assert_eq!(after.count, before.count);
    assert_eq!(
        after.checksum, before.checksum,
        "items as before the upgrade"
    );
    assert_eq!(
        client.get_file("report.txt").await.as_deref(),
        Some(&b"before the upgrade"[..]),
        "the stored file as before the upgrade"
    );

    // A broken release: rolled back automatically, exit code 5, data as it was.
    let broken = cutover(&config, &password, &["upgrade", "--to", "1.1.0-broken"]);
    assert_eq!(broken.status.code(), Some(5), "{}", text(&broken));
    // The failed step shows what the leader printed last, and where all of it is kept.
    assert!(
        text(&broken).contains("    last lines of")
            && text(&broken).contains("error=\"broken release\""),
        "{}",
        text(&broken)
    );
    assert!(
        text(&broken).contains("/.cutover/runs/"),
        "{}",
        text(&broken)
    );
    app.wait_healthy().await;
    assert_eq!(client.version().await["version"], "1.0.0");
    assert_eq!(app.image(), env.specimen_tag("1.0.0"));
    assert_eq!(client.items().await.checksum, before.checksum);
    assert!(
        !db.has_column("items", "name_folded").await,
        "half migration undone"
    );

    let history = cutover(&config, &password, &["history"]);
    assert!(text(&history).contains("rolled_back"), "{}", text(&history));
    // The digest the upgrade pulled and pinned is shown with its run.
    assert!(
        text(&history).contains(&format!("pulled: {} (sha256:", env.specimen_tag("1.1.0"))),
        "{}",
        text(&history)
    );
    let all = text(&up) + &text(&back) + &text(&broken) + &text(&history);
    assert!(!all.contains(&password), "the password in cutover's output");
}

/// The advice a manual rollback prints works as printed: the data it replaced belongs to
/// the release it undid, so `cutover restore S` under the old release is refused (exit 2,
/// nothing changed) naming the way — `cutover upgrade --to 1.1.0`, then `cutover restore
/// S` — and that way brings 1.1.0 back with the writes made under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advice_after_a_manual_rollback_works_as_printed() {
    let env = TestEnv::get();
    let db = ScratchDatabase::create(Engine::Postgres).await;
    let app = App::run("1.0.0", &db, DockerVolume::create(), &[]);
    app.wait_healthy().await;
    let client = app.client();
    client.create_item("first", "before").await;
    let (_, password) = db.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &app, &db);

    let up = cutover(&config, &password, &["upgrade", "--to", "1.1.0"]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    app.wait_healthy().await;
    client.create_item("written under 1.1.0", "after").await;
    let under_new = client.items().await;

    let back = cutover(&config, &password, &["rollback", "--yes"]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    let said = text(&back);
    let safety = said
        .split("safety backup ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', ':']).next())
        .unwrap_or_else(|| panic!("no safety backup named: {said}"))
        .to_string();
    let advice = format!("`cutover upgrade --to 1.1.0`, then `cutover restore {safety}`");
    assert!(said.contains(&advice), "{said}");
    app.wait_healthy().await;
    let container = app.container_id();

    // Under 1.0.0 the restore of 1.1.0's data is refused before anything happens.
    let refused = cutover(&config, &password, &["restore", &safety, "--yes"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("cutover upgrade --to 1.1.0")
            && text(&refused).contains("nothing was changed"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        app.container_id(),
        container,
        "the refusal restarted the app"
    );
    assert_eq!(client.version().await["version"], "1.0.0");

    // As printed.
    let again = cutover(&config, &password, &["upgrade", "--to", "1.1.0"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let restored = cutover(&config, &password, &["restore", &safety, "--yes"]);
    assert_eq!(restored.status.code(), Some(0), "{}", text(&restored));
    app.wait_healthy().await;
    assert_eq!(client.version().await["version"], "1.1.0");
    let now = client.items().await;
    assert_eq!(
        (now.count, now.checksum),
        (under_new.count, under_new.checksum),
        "the data written under 1.1.0 is back"
    );
    assert!(
        cutover_tests::is_image(&app.image(), &env.specimen_tag("1.1.0")),
        "{}",
        app.image()
    );
}

/// The run is killed (SIGKILL) while its broken leader migrates. Nothing watches the leader
/// then, and under the definition's `unless-stopped` Docker would restart it again and again,
/// re-applying its half-finished migration each time, until someone runs `resume`. The
/// leader must be started without a restart policy: 20 s later its migration has run once
/// and Docker has not restarted it. `resume` then rolls the upgrade back, the old instance
/// back with its own `unless-stopped`; a good release gets the policy at commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_leader_is_not_restarted_while_its_killed_run_waits_for_resume() {
    let env = TestEnv::get();
    let db = ScratchDatabase::create(Engine::Postgres).await;
    // A stretched migration: the run is killed while the leader is inside it.
    let stretch = [("SPECIMEN_MIGRATION_SECONDS", "3")];
    let app = App::run("1.0.0", &db, DockerVolume::create(), &stretch);
    app.wait_healthy().await;
    let client = app.client();
    for i in 0..10 {
        client.create_item(&format!("item {i}"), "before").await;
    }
    let before = client.items().await;
    assert_eq!(app.supervision(), "unless-stopped 0 running");
    let (_, password) = db.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &app, &db);

    let (mut run, events) = spawn_json(&config, &password, &["upgrade", "--to", "1.1.0-broken"]);
    let seen = wait_for_step(&events, "await_leader");
    let migrations = || async {
        db.migration_runs()
            .await
            .into_iter()
            .filter(|m| m.version == "1.1.0")
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while migrations().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the leader never began its migration: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.kill().expect("SIGKILL cutover");
    let status = run.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "cutover ended by {status}");

    // No cutover process watches now: only the restart policy could start the leader again.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let runs = migrations().await;
    assert_eq!(
        runs.len(),
        1,
        "the broken leader's migration ran more than once unsupervised: {runs:#?}"
    );
    assert_eq!(runs[0].outcome, "failed", "{runs:#?}");
    let running = app.image();
    assert!(
        cutover_tests::is_image(&running, &env.specimen_tag("1.1.0-broken")),
        "{running}"
    );
    assert_eq!(
        app.supervision(),
        "no 0 exited",
        "the leader runs without a restart policy and was not restarted"
    );

    let resumed = cutover(&config, &password, &["resume"]);
    assert_eq!(resumed.status.code(), Some(5), "{}", text(&resumed));
    // The resumed await_leader saw the exited leader and kept what it printed, once.
    assert!(
        text(&resumed).contains("error=\"broken release\""),
        "{}",
        text(&resumed)
    );
    app.wait_healthy().await;
    assert_eq!(client.version().await["version"], "1.0.0");
    assert_eq!(client.items().await.checksum, before.checksum);
    assert!(
        !db.has_column("items", "name_folded").await,
        "half migration undone"
    );
    assert_eq!(
        app.supervision(),
        "unless-stopped 0 running",
        "the old instance back with its own restart policy"
    );

    let up = cutover(&config, &password, &["upgrade", "--to", "1.1.0"]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    app.wait_healthy().await;
    assert_eq!(client.version().await["version"], "1.1.0");
    assert_eq!(migrations().await.len(), 1, "one migration of 1.1.0");
    assert_eq!(
        app.supervision(),
        "unless-stopped 0 running",
        "at commit the instance gets the definition's restart policy"
    );
}

/// systemd, CI runners and `timeout` stop a process with SIGTERM, not Ctrl-C: the run must
/// take it as a cancellation — the upgrade rolled back, exit 5, the lock released — not
/// die mid-step and leave the deployment to `resume`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_leader_migrates_rolls_the_upgrade_back_and_releases_the_lock() {
    let db = ScratchDatabase::create(Engine::Postgres).await;
    let stretch = [("SPECIMEN_MIGRATION_SECONDS", "3")];
    let app = App::run("1.0.0", &db, DockerVolume::create(), &stretch);
    app.wait_healthy().await;
    let client = app.client();
    for i in 0..5 {
        client.create_item(&format!("item {i}"), "before").await;
    }
    let before = client.items().await;
    let (_, password) = db.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &app, &db);

    let (run, events) = spawn_json(&config, &password, &["upgrade", "--to", "1.1.0"]);
    let mut seen = wait_for_step(&events, "await_leader");
    let pid = run.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).output().unwrap();
    assert!(kill.status.success(), "kill -TERM {pid}");
    let out = run.wait_with_output().unwrap();
    seen.extend(events.iter());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(5),
        "rolled back after SIGTERM: {stderr}{seen:#?}"
    );
    assert!(stderr.contains("SIGTERM: cancelling"), "{stderr}");
    let outcome: serde_json::Value = seen
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["type"] == "outcome")
        .unwrap_or_else(|| panic!("no outcome event: {seen:#?}"));
    assert_eq!(outcome["outcome"], "rolled_back", "{outcome}");
    assert!(
        outcome["message"].as_str().unwrap().contains("cancel"),
        "the cause is the cancellation: {outcome}"
    );

    app.wait_healthy().await;
    assert_eq!(client.version().await["version"], "1.0.0");
    assert_eq!(client.items().await.checksum, before.checksum);
    let status = cutover(&config, &password, &["--output", "json", "status"]);
    let status = common::json_line(&status.stdout, "result");
    assert!(status["lock"].is_null(), "the lock is released: {status}");
    assert!(status["resume"].is_null(), "nothing to resume: {status}");
}

/// A broken release's evidence survives its rollback: the specimen's last lines (its
/// `event=exit … error="broken release"`) are in the `step_failed` event, in a 0600 file
/// beside the journal, in `cutover history --run ID` and in `cutover status`, and the
/// outcome names the file. The failed container itself is not kept: `docker ps -a` shows
/// the restored instance alone. Then a second container of another version makes `status`
/// say that what runs is not what the definition says, naming both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_release_s_last_log_lines_outlive_its_rollback() {
    let env = TestEnv::get();
    let db = ScratchDatabase::create(Engine::Postgres).await;
    let app = App::run("1.0.0", &db, DockerVolume::create(), &[]);
    app.wait_healthy().await;
    let (_, password) = db.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &app, &db);

    let (mut run, events) = spawn_json(&config, &password, &["upgrade", "--to", "1.1.0-broken"]);
    let code = run.wait().unwrap().code();
    let lines: Vec<String> = events.iter().collect();
    assert_eq!(code, Some(5), "{lines:#?}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed = events
        .iter()
        .find(|e| e["type"] == "step_failed")
        .expect("a step_failed event");
    assert_eq!(failed["schema"], "cutover.event.v1");
    assert_eq!(failed["step"], "await_leader", "{failed}");
    let kept = &failed["error"]["evidence"][0];
    assert_eq!(kept["instance"], app.name.as_str(), "{failed}");
    let tail = kept["tail"].as_str().unwrap();
    assert!(
        tail.contains("event=exit") && tail.contains("broken release"),
        "{tail}"
    );
    let run_id = failed["run"].as_str().unwrap();
    let file = kept["file"]
        .as_str()
        .expect("the file that keeps the lines");
    let expected = dir
        .path()
        .join(".cutover/runs")
        .join(run_id)
        .join(format!("{}.log", app.name));
    assert_eq!(Path::new(file), expected);
    let meta = std::fs::metadata(file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let saved = std::fs::read_to_string(file).unwrap();
    assert!(saved.contains("broken release"), "{saved}");
    assert!(
        saved.contains("event=starting"),
        "from its first line: {saved}"
    );
    let outcome = events.iter().find(|e| e["type"] == "outcome").unwrap();
    assert!(
        outcome["message"].as_str().unwrap().contains(file),
        "{outcome}"
    );

    // The failed container went with the rollback; the instance runs 1.0.0 again.
    app.wait_healthy().await;
    let all = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}", app.name),
        "--format",
        "{{.Names}} {{.Image}} {{.State}}",
    ]);
    assert_eq!(
        all.trim(),
        format!("{} {} running", app.name, env.specimen_tag("1.0.0")),
        "docker ps -a after the rollback"
    );

    let history = cutover(&config, &password, &["history", "--run", run_id]);
    assert_eq!(history.status.code(), Some(0), "{}", text(&history));
    let shown = text(&history);
    assert!(shown.contains("✗ await_leader"), "{shown}");
    assert!(
        shown.contains("broken release") && shown.contains(file),
        "{shown}"
    );
    let listed = text(&cutover(&config, &password, &["history"]));
    assert!(
        listed.contains(&format!("logs of {}: {file}", app.name)),
        "{listed}"
    );

    let status = text(&cutover(&config, &password, &["status"]));
    assert!(status.contains("running    as defined"), "{status}");
    assert!(
        status.contains(&format!("last failure {run_id}")),
        "{status}"
    );
    assert!(status.contains("broken release"), "{status}");

    // A second instance of another version: status names both and how many run each.
    let other = format!("{}-2", app.name);
    let out = docker_command()
        .args(["run", "-d", "--name", &other, "--network", "host"])
        .args(["--restart", "always", "--label", "cutover-test=1"])
        .args(["-e", "DATABASE_URL=postgres://nobody@127.0.0.1:9/none"])
        .args(["-e", &format!("PORT={}", free_port())])
        .arg(env.specimen_tag("1.1.0"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = text(&cutover(
        &config,
        &password,
        &["--output", "json", "status"],
    ));
    let _ = docker_command().args(["rm", "-f", &other]).output();
    let status: serde_json::Value = serde_json::from_str(status.lines().next().unwrap()).unwrap();
    let deployment = &status["deployment"];
    assert_eq!(deployment["image"], env.specimen_tag("1.0.0"), "{status}");
    let versions = deployment["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{status}");
    assert!(
        versions
            .iter()
            .any(|v| v["image"] == env.specimen_tag("1.1.0")),
        "{status}"
    );
    let differences = deployment["differences"].to_string();
    assert!(differences.contains(&env.specimen_tag("1.1.0")), "{status}");
    // The digest shown is the definition's image's, never the other version's.
    let digest_of = |tag: &str| {
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            tag,
        ])
        .trim()
        .rsplit('@')
        .next()
        .unwrap()
        .to_string()
    };
    assert_eq!(
        deployment["digest"],
        digest_of(&env.specimen_tag("1.0.0")),
        "{status}"
    );
    assert!(!status.to_string().contains(&password));
    assert!(!saved.contains(&password));
}
