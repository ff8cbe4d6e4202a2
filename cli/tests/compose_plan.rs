//! `cutover plan` on a Compose service configured without `compose.file`, whose containers
//! Compose's labels say came from a file that sets the service's image: plan shows the
//! Docker driver's warning that a later `docker-compose up` would start that file's image
//! on the migrated schema — as a `!` line in human output, and as a `warning` event line
//! before the `result` line in JSON.

mod common;

use std::process::Command;

use common::cutover;
use cutover_tests::{TestEnv, UP_HINT, unique_name};
use serde_json::Value;

struct Project {
    name: String,
    dir: tempfile::TempDir,
}

impl Project {
    fn compose(&self, args: &[&str]) {
        let out = Command::new("docker-compose")
            .env("DOCKER_HOST", TestEnv::get().docker_host())
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.dir.path().join("docker-compose.yml"))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker-compose: {e}; see {UP_HINT}"));
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .env("DOCKER_HOST", TestEnv::get().docker_host())
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.dir.path().join("docker-compose.yml"))
            .args(["down", "-v"])
            .output();
    }
}

#[test]
fn plan_shows_that_an_unmanaged_compose_file_sets_the_image() {
    let env = TestEnv::get();
    let image = env.specimen_tag("1.0.0");
    let p = Project {
        name: unique_name("ctplan").replace('-', "_").to_lowercase(),
        dir: tempfile::tempdir().unwrap(),
    };
    let file = p.dir.path().join("docker-compose.yml");
    // The specimen waits for a database that never comes: it runs, and nothing migrates.
    std::fs::write(
        &file,
        format!(
            "services:\n  app:\n    image: {image}   # the release\n    network_mode: none\n    \
             stop_grace_period: 1s\n    environment:\n      SPECIMEN_DATABASE_WAIT_SECONDS: \"86400\"\n      \
             DATABASE_URL: \"mysql://nobody:x@localhost/none?socket=/nonexistent.sock\"\n"
        ),
    )
    .unwrap();
    p.compose(&["up", "-d"]);
    let config = p.dir.path().join("cutover.toml");
    std::fs::write(
        &config,
        format!(
            "[app]\nname = \"{name}\"\nimage = \"{repo}\"\n\n[driver]\nkind = \"docker\"\n\n\
             [driver.docker]\nhost = \"{host}\"\ncompose = {{ project = \"{name}\", service = \"app\" }}\n\n\
             [database]\nengine = \"mariadb\"\nurl = \"mysql://nobody@127.0.0.1:3306/none\"\n",
            name = p.name,
            repo = env.specimen_image(),
            host = env.docker_host(),
        ),
    )
    .unwrap();
    let expected = format!(
        "the compose file {} names service `app`'s image on line 3 ({image})",
        file.display()
    );

    let out = cutover(&config, "", &["plan", "--to", "1.1.0"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("! ") && l.contains(&expected) && l.contains("compose.file")),
        "{text}"
    );

    let out = cutover(&config, "", &["plan", "--to", "1.1.0", "--output", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|e| e["type"] == "warning" && e["message"].as_str().unwrap().contains(&expected)),
        "{stdout}"
    );
    assert_eq!(
        lines.iter().filter(|e| e["type"] == "result").count(),
        1,
        "{stdout}"
    );
}
