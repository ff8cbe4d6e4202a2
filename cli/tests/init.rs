//! `cutover init` on a vendor-style Compose project (Debian's docker-compose 1.29): the
//! tag from `${APP_TAG:-…}` and the settings in `.env` with the vendor's `MYSQL_*` names,
//! anchors and merge keys, comments,
//! a named storage volume. The written config names the project, the file, the `.env` and
//! the volume and holds no secret; `cutover check` passes with it; and the upgrade
//! succeeds with no password given to cutover (it reads the app's own `.env`).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cutover_tests::{
    Engine, ScratchDatabase, SpecimenClient, TestEnv, UP_HINT, docker, free_port, unique_name,
};

use common::{cutover_unaided as cutover, text};

/// The project: `docker-compose down -v` on drop.
struct Project {
    name: String,
    dir: tempfile::TempDir,
}

impl Project {
    fn file(&self) -> PathBuf {
        self.dir.path().join("docker-compose.yml")
    }

    fn compose(&self, args: &[&str]) -> String {
        let out = Command::new("docker-compose")
            .env("DOCKER_HOST", TestEnv::get().docker_host())
            .current_dir(self.dir.path())
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
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .env("DOCKER_HOST", TestEnv::get().docker_host())
            .current_dir(self.dir.path())
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.file())
            .args(["down", "-v"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_config_that_checks_and_upgrades_a_vendor_compose_project() {
    let env = TestEnv::get();
    let db = ScratchDatabase::create(Engine::MariaDb).await;
    let port = free_port();
    let project = Project {
        name: unique_name("ctinit").replace('-', "_").to_lowercase(),
        dir: tempfile::tempdir().unwrap(),
    };
    let mut dotenv = String::from("# Vendor settings: edit these, then `docker-compose up -d`.\n");
    for (k, v) in db.app_env() {
        dotenv.push_str(&format!("{k}={v}\n"));
    }
    dotenv.push_str(&format!("PORT={port}\nAPP_TAG=1.0.0   # the release\n"));
    std::fs::write(project.dir.path().join(".env"), &dotenv).unwrap();
    let image = env.specimen_tag("1.0.0");
    std::fs::write(
        project.file(),
        format!(
            "\
# The vendor's compose file.
version: \"2.4\"

x-common: &common
  restart: unless-stopped   # both services
  env_file: .env

services:
  server:
    <<: *common
    image: \"{repository}:${{APP_TAG:-1.0.0}}\"   # the release, from .env
    network_mode: host
    volumes:
      - storage:/data/storage

  # A second service of the project, which cutover must leave alone.
  helper:
    <<: *common
    image: \"{image}\"
    network_mode: none
    command: [\"/specimen\", \"--help\"]
    restart: \"no\"

volumes:
  storage: {{}}
",
            repository = env.specimen_image(),
        ),
    )
    .unwrap();
    let compose_before = std::fs::read_to_string(project.file()).unwrap();
    docker(&["pull", "-q", &image]);
    project.compose(&["up", "-d", "server"]);
    let client = SpecimenClient::new(format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.health().await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the specimen never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let container = format!("{}_server_1", project.name);

    let config = project.dir.path().join("cutover.toml");
    let out = cutover(
        &config,
        &[
            "init",
            "--container",
            &container,
            "--docker-host",
            env.docker_host(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written = std::fs::read_to_string(&config).unwrap();
    let (_, password) = db.credentials();
    assert!(
        !written.contains(&password),
        "a secret in the config: {written}"
    );
    for want in [
        format!("project = \"{}\", service = \"server\"", project.name),
        format!("file = \"{}\"", project.file().display()),
        "app_env = \".env\"".to_string(),
        "engine = \"mariadb\"".to_string(),
        "paths = [\"/data/storage\"]".to_string(),
        format!("image = \"{}\"", env.specimen_image()),
    ] {
        assert!(written.contains(&want), "{want}: {written}");
    }
    // init never replaces a config.
    let again = cutover(
        &config,
        &[
            "init",
            "--container",
            &container,
            "--docker-host",
            env.docker_host(),
        ],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);

    let check = cutover(&config, &["check", "--to", "1.1.0"]);
    assert_eq!(check.status.code(), Some(0), "{}\n{written}", text(&check));

    let up = cutover(&config, &["upgrade", "--to", "1.1.0"]);
    assert_eq!(up.status.code(), Some(0), "{}\n{written}", text(&up));
    assert!(
        !text(&up).contains(&password),
        "the password in cutover's output"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.version().await["version"] != "1.1.0" {
        assert!(Instant::now() < deadline, "1.1.0 never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The release is in .env's APP_TAG line, the one line that changed, so Compose keeps
    // running it; the compose file is as it was.
    assert_eq!(
        std::fs::read_to_string(project.file()).unwrap(),
        compose_before
    );
    let after = std::fs::read_to_string(project.dir.path().join(".env")).unwrap();
    let changed: Vec<(&str, &str)> = dotenv
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{after}");
    assert!(changed[0].1.starts_with("APP_TAG=1.1.0"), "{after}");
    assert_eq!(dotenv.lines().count(), after.lines().count(), "{after}");
}
