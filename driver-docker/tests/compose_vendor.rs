//! A vendor-style Compose project on the real engine with Debian's docker-compose 1.29:
//! the tag comes from `${APP_TAG:-1.0.0}` with `APP_TAG=1.0.0` in `.env`, the file uses
//! YAML anchors and merge keys, comments, vendor `MYSQL_*` names, a named storage volume
//! and a second service that cutover must leave alone. The driver is configured with the
//! project directory only: file and project name come from it.
//!
//! Through the engine: an upgrade, a broken upgrade rolled back, a manual rollback. After
//! each, both files are as expected byte for byte (only `.env`'s `APP_TAG` line differs),
//! the second service's container is the same (id and start time), and
//! `docker-compose up -d --force-recreate` runs the release cutover left without starting
//! or counting cutover's definition container. `docker-compose down -v` leaves nothing of
//! cutover's behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::image;
use cutover_backup::{Database, DatabaseEngine, DumpBackups, LocalStore, ToolSite};
use cutover_core::{
    BackupMode, Driver, Engine, EventKind, EventSink, ExecTarget, HealthCheck, Outcome, Plan,
    Settings, SqliteJournal,
};
use cutover_driver_docker::{ComposeTarget, DockerConfig, connect};
use cutover_tests::{Engine as DbEngine, ScratchDatabase, TestEnv, UP_HINT, docker, unique_name};

const HEALTHY: Duration = Duration::from_secs(60);

fn compose_file(repository: &str) -> String {
    format!(
        "\
# Vendor compose file, shipped with the release. Do not edit: set APP_TAG in .env.
x-common: &common
  restart: unless-stopped
  network_mode: none
  logging:
    driver: json-file   # the vendor's default

x-mysql: &mysql
  MYSQL_HOST: localhost
  MYSQL_PORT: \"3306\"
  MYSQL_USER_NAME: ${{MYSQL_USER_NAME}}
  MYSQL_PASSWORD: ${{MYSQL_PASSWORD}}

services:
  server:
    <<: *common
    image: \"{repository}:${{APP_TAG:-1.0.0}}\"   # the release, from .env
    volumes:
      - /run/mysqld:/run/mysqld
      - storage:/data/storage
    environment:
      <<: *mysql
      MYSQL_DATABASE: ${{MYSQL_DATABASE}}
      DATABASE_URL: \"mysql://${{MYSQL_USER_NAME}}:${{MYSQL_PASSWORD}}@localhost/${{MYSQL_DATABASE}}?socket=/run/mysqld/mysqld.sock\"

  # A sidecar of the same vendor: never touched by an upgrade of the server.
  sidecar:
    <<: *common
    image: {repository}:1.0.0
    stop_grace_period: 1s
    environment:
      SPECIMEN_DATABASE_WAIT_SECONDS: \"86400\"
      DATABASE_URL: \"mysql://nobody:x@localhost/none?socket=/nonexistent.sock\"

volumes:
  storage: {{}}
"
    )
}

struct Project {
    name: String,
    dir: tempfile::TempDir,
    db: ScratchDatabase,
    password: String,
}

impl Project {
    /// The project running, with `APP_TAG` in `.env` if `tag_in_env`.
    async fn up(tag_in_env: bool) -> Project {
        let env = TestEnv::get();
        let db = ScratchDatabase::create(DbEngine::MariaDb).await;
        let server = env.mysql_url().trim_start_matches("mysql://");
        let (user_info, _) = server.rsplit_once('@').unwrap();
        let (user, password) = user_info.split_once(':').unwrap();
        let project = Project {
            name: unique_name("ctvendor").replace('-', "_").to_lowercase(),
            dir: tempfile::tempdir().unwrap(),
            db,
            password: password.to_string(),
        };
        let repository = image("1.0.0").repository();
        std::fs::write(project.file(), compose_file(&repository)).unwrap();
        let mut dotenv = project.dotenv(user);
        if !tag_in_env {
            dotenv = dotenv.replace("APP_TAG=1.0.0   # vendor release tag\n", "");
        }
        std::fs::write(project.env_file(), dotenv).unwrap();
        docker(&["pull", "-q", &image("1.0.0").to_string()]);
        project.compose(&["up", "-d", "--scale", "server=2"]);
        project
    }

    fn dotenv(&self, user: &str) -> String {
        format!(
            "\
# Settings of this installation. Keep this file secret: it holds the password.
COMPOSE_PROJECT_NAME={}
MYSQL_USER_NAME={user}
MYSQL_PASSWORD='{}'
MYSQL_DATABASE={}

# The release. To upgrade by hand, change it and run docker-compose up -d.
APP_TAG=1.0.0   # vendor release tag
",
            self.name,
            self.password,
            self.db.name()
        )
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("docker-compose.yml")
    }

    fn env_file(&self) -> PathBuf {
        self.dir.path().join(".env")
    }

    /// Runs `docker-compose ARGS…` in the project directory, as an operator does (file and
    /// project name found there), and returns its stdout.
    fn compose(&self, args: &[&str]) -> String {
        let output = Command::new("docker-compose")
            .current_dir(self.dir.path())
            .env("DOCKER_HOST", TestEnv::get().docker_host())
            .env_remove("APP_TAG")
            .env_remove("COMPOSE_PROJECT_NAME")
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

    /// Names of the project's containers of `service`, cutover's included.
    fn containers(&self, service: &str) -> Vec<String> {
        docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// `(image, state, health)` of every server instance (not cutover's containers).
    fn servers(&self) -> Vec<(String, String, String)> {
        self.containers("server")
            .iter()
            .filter(|n| !n.contains("cutover"))
            .map(|n| {
                let s = docker(&[
                    "inspect",
                    "--format",
                    "{{.Config.Image}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                    n,
                ]);
                let mut parts = s.split('|').map(str::to_string);
                (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until exactly `n` server instances exist and all run `version` healthy.
    async fn wait_servers(&self, version: &str, n: usize) {
        let want = image(version).to_string();
        let deadline = Instant::now() + HEALTHY;
        loop {
            let servers = self.servers();
            let ok = servers.len() == n
                && servers
                    .iter()
                    .all(|(i, _, h)| cutover_tests::is_image(i, &want) && h == "healthy");
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "servers {servers:?}, want {n} healthy on {want}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The sidecar container's id and start time.
    fn sidecar(&self) -> String {
        let names = self.containers("sidecar");
        assert_eq!(names.len(), 1, "{names:?}");
        docker(&[
            "inspect",
            "--format",
            "{{.Id}} {{.State.StartedAt}}",
            &names[0],
        ])
    }

    /// cutover's containers of this target: definition (and lock, if held).
    fn cutover_containers(&self) -> Vec<String> {
        docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.State}}",
            "--filter",
            &format!("label=cutover.target=compose:{}/server", self.name),
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    fn config(&self) -> DockerConfig {
        DockerConfig {
            host: Some(TestEnv::get().docker_host().to_string()),
            compose: Some(ComposeTarget {
                service: "server".into(),
                // The directory: the file and the project name are found as Compose does.
                file: Some(self.dir.path().to_path_buf()),
                ..ComposeTarget::default()
            }),
            ..DockerConfig::default()
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
        let driver = connect(self.config())
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

    /// `docker-compose up -d --force-recreate` of the whole project, then: the servers run
    /// `version` (exactly 2), and cutover's definition container, if `definition`, is
    /// there and was neither started nor counted.
    async fn force_recreate(&self, version: &str, definition: bool) {
        let before = self.cutover_containers();
        assert_eq!(before.len(), usize::from(definition), "{before:?}");
        self.compose(&["up", "-d", "--force-recreate", "--scale", "server=2"]);
        self.wait_servers(version, 2).await;
        assert_eq!(self.cutover_containers(), before);
        for c in before {
            assert!(
                c.ends_with(" created"),
                "{c} was started by docker-compose up"
            );
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .current_dir(self.dir.path())
            .env("DOCKER_HOST", TestEnv::get().docker_host())
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

/// The warnings `driver.pull` emits.
async fn pull_warnings(driver: &dyn Driver) -> Vec<String> {
    let (sink, mut events) = EventSink::channel();
    driver.pull(&image("1.0.0"), &sink).await.unwrap();
    drop(sink);
    let mut warnings = Vec::new();
    while let Some(e) = events.recv().await {
        if let EventKind::Warning { message } = e.kind {
            warnings.push(message);
        }
    }
    warnings
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_project_with_its_tag_in_dotenv_upgrades_and_rolls_back_through_it() {
    let p = Project::up(true).await;
    p.wait_servers("1.0.0", 2).await;
    let compose = read(p.file());
    let dotenv = read(p.env_file());
    let state = tempfile::tempdir().unwrap();
    let (engine, database) = p.engine(state.path()).await;
    let data = fingerprint(&database).await;

    // Without `compose.file`, the driver warns in pull (which every upgrade calls) that
    // the file Compose's labels name still sets the image.
    let unmanaged = connect(DockerConfig {
        host: Some(TestEnv::get().docker_host().to_string()),
        ..DockerConfig::compose(&p.name, "server")
    })
    .await
    .unwrap();
    let warnings = pull_warnings(&unmanaged).await;
    let expected = format!(
        "{} names service `server`'s image on line 17",
        p.file().display()
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&expected) && w.contains("compose.file") && !w.contains("  ")),
        "{warnings:?}"
    );

    // With compose.file naming another file than the one Compose used, it warns too;
    // with the right one (here: the directory) it does not.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(p.file(), elsewhere.path().join("compose.yaml")).unwrap();
    std::fs::copy(p.env_file(), elsewhere.path().join(".env")).unwrap();
    let mut other = p.config();
    other.compose.as_mut().unwrap().file = Some(elsewhere.path().to_path_buf());
    let copy = elsewhere.path().join("compose.yaml");
    let warnings = pull_warnings(&connect(other).await.unwrap()).await;
    assert!(
        warnings.iter().any(|w| w.contains(&format!(
            "started by Compose from {}, but compose.file is {}",
            p.file().display(),
            copy.display()
        ))),
        "{warnings:?}"
    );
    let warnings = pull_warnings(&connect(p.config()).await.unwrap()).await;
    assert_eq!(warnings, Vec::<String>::new());

    // An upgrade: only the APP_TAG line of .env changes, to the pulled digest.
    let sidecar = p.sidecar();
    let done = engine.start(upgrade("1.1.0")).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    p.wait_servers("1.1.0", 2).await;
    assert_eq!(read(p.file()), compose);
    let upgraded = read(p.env_file());
    assert_eq!(changed_lines(&dotenv, &upgraded), [8], "{upgraded}");
    let line = upgraded.lines().nth(7).unwrap();
    let digest = line
        .strip_prefix("APP_TAG=1.1.0@sha256:")
        .and_then(|rest| rest.strip_suffix("   # vendor release tag"))
        .unwrap_or_else(|| panic!("line 8 is {line:?}"));
    assert_eq!(digest.len(), 64, "{line}");
    assert_eq!(
        p.sidecar(),
        sidecar,
        "the sidecar was touched by the upgrade"
    );
    p.force_recreate("1.1.0", true).await;

    // A broken release: rolled back, the files as the upgrade left them.
    let sidecar = p.sidecar();
    let done = engine.start(upgrade("1.1.0-broken")).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    p.wait_servers("1.1.0", 2).await;
    assert_eq!(read(p.file()), compose);
    assert_eq!(read(p.env_file()), upgraded);
    assert_eq!(
        p.sidecar(),
        sidecar,
        "the sidecar was touched by the rollback"
    );
    p.force_recreate("1.1.0", true).await;

    // A manual rollback of the committed upgrade: data, image and .env as before.
    let sidecar = p.sidecar();
    let plan = engine.rollback_plan(None).await.unwrap();
    let done = engine.start(plan).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    p.wait_servers("1.0.0", 2).await;
    assert_eq!(read(p.file()), compose);
    assert_eq!(read(p.env_file()), dotenv);
    assert_eq!(
        fingerprint(&database).await,
        data,
        "data as before the upgrade"
    );
    assert_eq!(
        p.sidecar(),
        sidecar,
        "the sidecar was touched by the manual rollback"
    );
    // Back to before cutover's first change: it leaves no definition container.
    p.force_recreate("1.0.0", false).await;

    // The .env file holds the password; nothing cutover wrote does.
    for file in walk(state.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(p.password.len())
                .any(|w| w == p.password.as_bytes()),
            "{} holds the password from .env",
            file.display()
        );
    }

    // docker-compose down -v removes everything cutover made: its definition container
    // carries the project's labels as a one-off container.
    let done = engine.start(upgrade("1.1.0")).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    assert_eq!(p.cutover_containers().len(), 1, "a definition exists");
    p.compose(&["down", "-v"]);
    assert_eq!(p.cutover_containers(), Vec::<String>::new());
    let project = format!("label=com.docker.compose.project={}", p.name);
    assert_eq!(docker(&["ps", "-aq", "--filter", &project]), "");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &project]), "");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name={}", p.name)]),
        "",
        "no container of the project's name is left"
    );
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

/// Without `APP_TAG` in `.env`, Compose uses the default on the image line: that default is
/// what an upgrade edits, and a rollback puts back; `.env` is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_tag_in_dotenv_the_default_on_the_image_line_is_edited() {
    let p = Project::up(false).await;
    p.wait_servers("1.0.0", 2).await;
    let compose = read(p.file());
    let dotenv = read(p.env_file());
    assert!(!dotenv.contains("APP_TAG"));
    let state = tempfile::tempdir().unwrap();
    let (engine, _database) = p.engine(state.path()).await;

    let sidecar = p.sidecar();
    let done = engine.start(upgrade("1.1.0")).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    let upgraded = read(p.file());
    assert_eq!(changed_lines(&compose, &upgraded), [17], "{upgraded}");
    let want =
        format!("    image: \"{}@sha256:", image("1.1.0")).replace(":1.1.0@", ":${APP_TAG:-1.1.0@");
    let line = upgraded.lines().nth(16).unwrap();
    assert!(
        line.starts_with(&want) && line.ends_with("}\"   # the release, from .env"),
        "line 17 is {line:?}"
    );
    assert_eq!(read(p.env_file()), dotenv);
    assert_eq!(p.sidecar(), sidecar);
    p.force_recreate("1.1.0", true).await;

    let plan = engine.rollback_plan(None).await.unwrap();
    let done = engine.start(plan).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    assert_eq!(read(p.file()), compose);
    assert_eq!(read(p.env_file()), dotenv);
    p.force_recreate("1.0.0", false).await;
}
