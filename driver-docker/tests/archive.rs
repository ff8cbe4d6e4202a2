//! Archives of a directory hold its content relative to it (`./name`), as on the other
//! drivers; an archive written before that (the directory under its own name, as
//! Docker's archive API writes a path) still restores into the directory, so backups
//! taken then stay restorable. The exact-entries contract itself is the conformance
//! suite's `unarchive_holds_exactly_the_archive_s_entries`.

use cutover_core::{ByteStream, Driver, ExecTarget};
use cutover_driver_docker::{DockerConfig, connect};
use cutover_tests::{TestEnv, docker, docker_command, unique_name};
use tokio::io::AsyncReadExt;

/// A container with the host's coreutils mounted (the specimen image has none), removed
/// on drop.
struct Toolbox(String);

impl Toolbox {
    fn start() -> Self {
        let image = TestEnv::get().specimen_tag("1.0.0");
        let name = unique_name("ctda").replace('_', "-");
        docker(&["pull", "-q", &image]);
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--label",
            "cutover-test=1",
            "-v",
            "/usr:/usr:ro",
            "-v",
            "/lib:/lib:ro",
            "-v",
            "/lib64:/lib64:ro",
            "--entrypoint",
            "/usr/bin/sleep",
            &image,
            "infinity",
        ]);
        docker(&["exec", &name, "/usr/bin/mkdir", "-p", "/srv/data"]);
        Toolbox(name)
    }

    fn files(&self) -> Vec<String> {
        let out = docker(&["exec", &self.0, "/usr/bin/find", "/srv", "-type", "f"]);
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }
}

impl Drop for Toolbox {
    fn drop(&mut self) {
        let _ = docker_command().args(["rm", "-f", "-v", &self.0]).output();
    }
}

/// `tar -c` of `names` in `dir`, by the host's tar.
fn host_tar(dir: &std::path::Path, names: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg("-")
        .args(names)
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn listing(tar: &[u8]) -> Vec<String> {
    let mut child = std::process::Command::new("tar")
        .args(["-tf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running tar");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), tar).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_relative_and_old_named_archives_still_restore_in_place() {
    let env = TestEnv::get();
    let toolbox = Toolbox::start();
    let driver = connect(DockerConfig {
        host: Some(env.docker_host().to_string()),
        ..DockerConfig::containers(&toolbox.0)
    })
    .await
    .expect("connecting to the test engine");
    let at = ExecTarget::Named(toolbox.0.clone());

    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("data/sub")).unwrap();
    std::fs::write(src.path().join("data/a.txt"), "alpha").unwrap();
    std::fs::write(src.path().join("data/sub/b.txt"), "beta").unwrap();

    // The old format: the directory under its own name.
    let named: ByteStream = Box::pin(std::io::Cursor::new(host_tar(src.path(), &["data"])));
    driver.unarchive(&at, "/srv/data", named).await.unwrap();
    assert_eq!(
        toolbox.files(),
        ["/srv/data/a.txt", "/srv/data/sub/b.txt"],
        "an archive of the directory under its own name went elsewhere"
    );

    // The format archive writes now: the content, relative.
    let mut out = Vec::new();
    driver
        .archive(&at, "/srv/data")
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    assert_eq!(
        listing(&out),
        ["./", "./a.txt", "./sub/", "./sub/b.txt"],
        "archive is not relative to the directory"
    );
    let relative: ByteStream = Box::pin(std::io::Cursor::new(host_tar(
        &src.path().join("data"),
        &["."],
    )));
    driver.unarchive(&at, "/srv/data/", relative).await.unwrap();
    assert_eq!(
        toolbox.files(),
        ["/srv/data/a.txt", "/srv/data/sub/b.txt"],
        "a relative archive went elsewhere"
    );
}
