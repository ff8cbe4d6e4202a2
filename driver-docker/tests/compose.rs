//! A real Compose v1 deployment (Debian's docker-compose 1.29, `project_service_N` names)
//! upgraded, rolled back by hand and through a broken release by the engine with the
//! Docker driver, which edits the service's `image:` line in a commented compose file with
//! several services.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::image;
use cutover_backup::{Database, DatabaseEngine, DumpBackups, LocalStore, ToolSite};
use cutover_core::{
    BackupMode, Engine, ExecTarget, HealthCheck, Outcome, Plan, Settings, SqliteJournal,
};
use cutover_driver_docker::{ComposeTarget, DockerConfig, connect};
use cutover_tests::{Engine as DbEngine, ScratchDatabase, TestEnv, UP_HINT, docker, unique_name};

const HEALTHY: Duration = Duration::from_secs(60);

/// A compose project of the specimen (service `app`, 2 replicas) beside services it does
/// not start, in a file full of comments; `docker-compose down` on drop.
struct Project {
    name: String,
    dir: tempfile::TempDir,
    db: ScratchDatabase,
    password: String,
}

fn compose_file(app_image: &str, url: &str) -> String {
    format!(
        "\
# The vendor's compose file, as an operator keeps it: comments everywhere.
version: \"2.4\"

services:
  # Not started by the test: only its image line must stay as it is.
  db:
    image: \"mariadb:10.11\"   # pinned by the vendor
    restart: unless-stopped

  app:   # the application cutover upgrades
    image: {app_image}   # bumped by cutover
    restart: unless-stopped
    network_mode: none
    volumes:
      - /run/mysqld:/run/mysqld
    environment:
      DATABASE_URL: \"{url}\"

  worker:
    # Same image, different service: cutover must leave it alone.
    image: '{app_image}'
    command: [\"/specimen\", \"--help\"]
"
    )
}

impl Project {
    async fn up(version: &str, replicas: u32) -> Project {
        let env = TestEnv::get();
        let db = ScratchDatabase::create(DbEngine::MariaDb).await;
        let server = env.mysql_url().trim_start_matches("mysql://");
        let (user_info, _) = server.rsplit_once('@').unwrap();
        let (user, password) = user_info.split_once(':').unwrap();
        let password = password.to_string();
        let url = format!(
            "mysql://{user}:{password}@localhost/{}?socket=/run/mysqld/mysqld.sock",
            db.name()
        );
        let project = Project {
            name: unique_name("ctcv1").replace('-', "_").to_lowercase(),
            dir: tempfile::tempdir().unwrap(),
            db,
            password,
        };
        std::fs::write(
            project.file(),
            compose_file(&image(version).to_string(), &url),
        )
        .unwrap();
        docker(&["pull", "-q", &image(version).to_string()]);
        project.compose(&["up", "-d", "--scale", &format!("app={replicas}"), "app"]);
        project
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("docker-compose.yml")
    }

    /// Runs `docker-compose -p NAME -f FILE ARGS…` and returns its stdout.
    fn compose(&self, args: &[&str]) -> String {
        let output = Command::new("docker-compose")
            .env("DOCKER_HOST", TestEnv::get().docker_host())
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.file())
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run docker-compose: {e}; it is installed by {UP_HINT}")
            });
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Names of the service's containers `docker-compose ps` shows, with their state.
    fn ps(&self) -> Vec<String> {
        self.compose(&["ps", "app"])
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect()
    }

    fn healthy_of(&self, version: &str) -> Vec<String> {
        let want = image(version).to_string();
        let ids = docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            "label=com.docker.compose.service=app",
        ]);
        ids.lines()
            .filter(|n| !n.contains("cutover"))
            .filter(|n| {
                docker(&[
                    "inspect",
                    "--format",
                    "{{.Config.Image}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                    n,
                ])
                .strip_suffix(" healthy")
                .is_some_and(|configured| cutover_tests::is_image(configured, &want))
            })
            .map(str::to_string)
            .collect()
    }

    async fn wait_healthy(&self, version: &str, n: usize) {
        let deadline = Instant::now() + HEALTHY;
        loop {
            let healthy = self.healthy_of(version);
            if healthy.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {healthy:?} healthy on {version}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn engine(&self, state: &Path) -> (Engine, Database) {
        let (url, _) = self.db.credentials();
        let database = Database::new(
            DatabaseEngine::Mariadb,
            &url,
            Some(self.password.clone()),
            ToolSite::Local,
        )
        .unwrap();
        let driver = connect(DockerConfig {
            host: Some(TestEnv::get().docker_host().to_string()),
            compose: Some(ComposeTarget {
                project: Some(self.name.clone()),
                service: "app".into(),
                file: Some(self.file()),
                ..ComposeTarget::default()
            }),
            ..DockerConfig::default()
        })
        .await
        .expect("connecting to the test engine");
        let backups = DumpBackups::new(
            database.clone(),
            Arc::new(LocalStore::new(state.join("backups"))),
            vec![],
            ExecTarget::AnyInstance,
        );
        let journal = SqliteJournal::open(state.join("journal.db")).await.unwrap();
        let mut settings = Settings::new(self.name.clone());
        settings.health = HealthCheck {
            timeout: HEALTHY,
            ..HealthCheck::default()
        };
        let engine = Engine::new(
            Arc::new(driver),
            Arc::new(backups),
            Arc::new(journal),
            settings,
        );
        (engine, database)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .env("DOCKER_HOST", TestEnv::get().docker_host())
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.file())
            .args(["down", "-v", "--remove-orphans"])
            .output();
        let leftovers = docker(&["ps", "-aq", "--filter", &format!("name={}", self.name)]);
        for id in leftovers.lines() {
            let _ = docker(&["rm", "-f", id]);
        }
    }
}

/// Lines of `after` that differ from `before` (1-based numbers).
fn changed_lines(before: &str, after: &str) -> Vec<usize> {
    let b: Vec<_> = before.split_inclusive('\n').collect();
    let a: Vec<_> = after.split_inclusive('\n').collect();
    assert_eq!(a.len(), b.len(), "line count changed:\n{after}");
    (0..a.len())
        .filter(|&i| a[i] != b[i])
        .map(|i| i + 1)
        .collect()
}

fn upgrade(to: &str) -> Plan {
    Plan::Upgrade {
        to: image(to),
        backup: BackupMode::Offline,
        replicas: None,
        allow_downgrade: true,
        hooks: Default::default(),
    }
}

async fn fingerprint(db: &Database) -> cutover_backup::Fingerprint {
    db.connect().await.unwrap().fingerprint().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_v1_service_upgrades_and_rolls_back_with_its_image_line() {
    let p = Project::up("1.0.0", 2).await;
    p.wait_healthy("1.0.0", 2).await;
    let v1 = format!("{}_app_", p.name);
    let before_ps = p.ps();
    assert_eq!(before_ps, [format!("{v1}1"), format!("{v1}2")]);
    let original = std::fs::read_to_string(p.file()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let (engine, database) = p.engine(state.path()).await;
    let data = fingerprint(&database).await;

    let done = engine.start(upgrade("1.1.0")).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    p.wait_healthy("1.1.0", 2).await;
    let upgraded = std::fs::read_to_string(p.file()).unwrap();
    assert_eq!(changed_lines(&original, &upgraded), [11], "{upgraded}");
    // The file names the release pinned to the digest that was pulled, so that the next
    // `docker-compose up` starts the same image even if the tag moves.
    let line = upgraded.lines().nth(10).unwrap();
    let pinned = line
        .strip_prefix(&format!("    image: {}@sha256:", image("1.1.0")))
        .and_then(|rest| rest.strip_suffix("   # bumped by cutover"))
        .unwrap_or_else(|| panic!("line 11 is {line:?}"));
    assert_eq!(pinned.len(), 64, "{line}");
    assert_eq!(
        p.ps(),
        before_ps,
        "docker-compose ps shows the service as before"
    );
    // docker-compose still manages the service, from the edited file.
    p.compose(&["up", "-d", "--scale", "app=2", "app"]);
    p.wait_healthy("1.1.0", 2).await;
    assert_eq!(p.ps(), before_ps);

    // A manual rollback after the successful upgrade: data and image, file byte-identical.
    let plan = engine.rollback_plan(None).await.unwrap();
    let done = engine.start(plan).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    assert_eq!(std::fs::read_to_string(p.file()).unwrap(), original);
    p.wait_healthy("1.0.0", 2).await;
    assert!(p.healthy_of("1.1.0").is_empty());
    assert_eq!(
        fingerprint(&database).await,
        data,
        "data as before the upgrade"
    );
    assert_eq!(p.ps(), before_ps);

    // A broken release: rolled back, the file byte-identical again.
    let done = engine.start(upgrade("1.1.0-broken")).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    assert_eq!(std::fs::read_to_string(p.file()).unwrap(), original);
    p.wait_healthy("1.0.0", 2).await;
    assert_eq!(fingerprint(&database).await, data);
    assert_eq!(p.ps(), before_ps);

    // A file someone made uneditable meanwhile does not stop a rollback: the containers
    // come back, the file is left as it is.
    let done = engine.start(upgrade("1.1.0")).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    let theirs = "services:\n  app:\n    build: .\n";
    std::fs::write(p.file(), theirs).unwrap();
    let plan = engine.rollback_plan(None).await.unwrap();
    let done = engine.start(plan).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    p.wait_healthy("1.0.0", 2).await;
    assert_eq!(std::fs::read_to_string(p.file()).unwrap(), theirs);
    std::fs::write(p.file(), &original).unwrap();

    // The compose file holds the password; nothing cutover wrote does.
    for file in walk(state.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(p.password.len())
                .any(|w| w == p.password.as_bytes()),
            "{} holds the password from the compose file",
            file.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_file_cutover_cannot_edit_is_refused_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    let text = "services:\n  app:\n    build: .   # built here, no image line\n";
    std::fs::write(&file, text).unwrap();
    let e = connect(DockerConfig {
        host: Some(TestEnv::get().docker_host().to_string()),
        compose: Some(ComposeTarget {
            project: Some("never".into()),
            service: "app".into(),
            file: Some(file.clone()),
            ..ComposeTarget::default()
        }),
        ..DockerConfig::default()
    })
    .await
    .unwrap_err();
    assert_eq!(
        e.kind(),
        cutover_core::ErrorKind::InvalidInput,
        "{}",
        e.report()
    );
    assert!(e.report().contains("no `image:` line"), "{}", e.report());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}
