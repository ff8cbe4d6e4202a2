//! The `cutover` binary with `kind = "docker"` and `[database]` on PostgreSQL, against the
//! specimen started by a `docker run` script: `upgrade` and then a manual `rollback` that
//! brings back the previous image, the previous data and the stored files; then a broken
//! release, rolled back automatically with exit code 5.

use std::path::Path;
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
    fn run(version: &str, db: &ScratchDatabase, volume: DockerVolume) -> App {
        let app = App {
            name: unique_name("ctcli").replace('_', "-"),
            port: free_port(),
            _volume: volume,
        };
        let image = TestEnv::get().specimen_tag(version);
        docker(&["pull", "-q", &image]);
        let out = docker_command()
            .args(["run", "-d", "--name", &app.name, "--network", "host"])
            .args(["--restart", "unless-stopped", "--label", "cutover-test=1"])
            .args(["-e", "DATABASE_URL", "-e", &format!("PORT={}", app.port)])
            .args(["-v", &format!("{}:/data/storage", app._volume.name())])
            .arg(&image)
            .env("DATABASE_URL", db.url())
            .output()
            .unwrap();
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
}

impl Drop for App {
    fn drop(&mut self) {
        let names = docker(&["ps", "-aq", "--filter", &format!("name={}", self.name)]);
        for id in names.lines() {
            let _ = docker_command().args(["rm", "-f", id]).output();
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rollback_after_an_upgrade_restores_data_files_and_image() {
    let env = TestEnv::get();
    let db = ScratchDatabase::create(Engine::Postgres).await;
    let app = App::run("1.0.0", &db, DockerVolume::create());
    app.wait_healthy().await;
    let client = app.client();
    for i in 0..10 {
        client.create_item(&format!("item {i}"), "before").await;
    }
    client
        .put_file("report.txt", b"before the upgrade".to_vec())
        .await;
    let before = client.items().await;

    let (url, password) = db.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
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
