//! Host keys, argument quoting and validation against real sshd's: a key known_hosts does
//! not list (or lists differently) stops the driver before anything changes; shell
//! metacharacters in host fields and image tags are refused; and an sshd that logs the
//! exact command line its shell receives shows every argument and secret quoted or absent.

mod common;

use std::path::Path;

use common::{Fleet, OwnSshd, host_config, test_hosts};
use cutover_core::{Driver, DriverExt, ErrorKind, ExecIo, ExecTarget, ImageRef};
use cutover_driver_docker::DockerConfig;
use cutover_driver_ssh::{HostKeyChecking, SshConfig, connect};
use cutover_tests::unique_name;
use tokio::io::AsyncReadExt;

/// A fresh ed25519 public key, as `type base64`.
fn other_key(dir: &Path) -> String {
    let key = dir.join("other");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_that_does_not_match_known_hosts_is_refused_before_any_change() {
    let f = Fleet::start("1.0.0", 1, &[]).await;
    let before = f.container_ids();
    let dir = tempfile::tempdir().unwrap();
    // h3's entry names a key the host does not have.
    let h3 = &f.hosts[2];
    let forged = dir.path().join("known_hosts");
    let listed = std::fs::read_to_string(&h3.known_hosts).unwrap();
    let mut text: String = listed
        .lines()
        .filter(|l| !l.starts_with(&format!("[{}]:{} ", h3.address, h3.port)))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!(
        "[{}]:{} {}\n",
        h3.address,
        h3.port,
        other_key(dir.path())
    ));
    std::fs::write(&forged, text).unwrap();

    for checking in [HostKeyChecking::Strict, HostKeyChecking::AcceptNew] {
        let mut config = f.config.clone();
        config.hosts[2].known_hosts = Some(forged.clone());
        config.host_key_checking = checking;
        let err = connect(config)
            .await
            .expect_err("a mismatching host key must be refused");
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "{checking:?}: {}",
            err.report()
        );
        assert!(
            !err.is_retryable(),
            "a refused key is permanent: {}",
            err.report()
        );
        let report = err.report();
        assert!(
            report.contains("h3") && report.contains("host key"),
            "{checking:?}: the error names the host and its key: {report}"
        );
        assert!(!report.contains("h1 ("), "only h3 is refused: {report}");
    }
    assert_eq!(f.container_ids(), before, "a container changed");

    // A host known_hosts does not list at all: refused under strict checking, added
    // under accept-new.
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut config = f.config.clone();
    config.hosts[2].known_hosts = Some(empty.clone());
    let err = connect(config.clone())
        .await
        .expect_err("an unknown host must be refused under strict checking");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}", err.report());
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "strict added a key"
    );
    config.host_key_checking = HostKeyChecking::AcceptNew;
    let d = connect(config.clone())
        .await
        .unwrap_or_else(|e| panic!("accept-new must accept an unlisted host: {}", e.report()));
    d.close().await;
    // Recorded (Debian's ssh hashes host names, so the entry is checked by use): strict
    // checking now accepts the host with that file.
    assert!(
        !std::fs::read_to_string(&empty).unwrap().is_empty(),
        "nothing recorded"
    );
    config.host_key_checking = HostKeyChecking::Strict;
    let d = connect(config)
        .await
        .unwrap_or_else(|e| panic!("the recorded key must be accepted: {}", e.report()));
    d.close().await;
    assert_eq!(f.container_ids(), before, "a container changed");
    f.driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_behind_a_jump_host_is_reached_through_it_with_the_configured_keys() {
    let hosts = test_hosts();
    // The jump host: an sshd of this test's own that logs the connections it forwards.
    let jump = OwnSshd::start(&hosts[0], "LogLevel DEBUG1");
    let dir = tempfile::tempdir().unwrap();
    // One known_hosts file for the host and its jump host, as an operator keeps it; the
    // operator's own ~/.ssh is not involved.
    let known = dir.path().join("known_hosts");
    let both = std::fs::read_to_string(&hosts[0].known_hosts).unwrap()
        + &std::fs::read_to_string(&jump.host.known_hosts).unwrap();
    std::fs::write(&known, both).unwrap();
    let mut h1 = host_config("h1", &hosts[0]);
    h1.known_hosts = Some(known.clone());
    h1.jump = Some(format!("{}@127.0.0.1:{}", hosts[0].user, jump.host.port));
    let config = SshConfig::new(vec![h1], DockerConfig::containers(unique_name("jump")));

    let d = connect(config.clone())
        .await
        .unwrap_or_else(|e| panic!("connect through the jump host: {}", e.report()));
    let status = d
        .exec(
            &ExecTarget::Host("h1".into()),
            &["true".to_string()],
            ExecIo::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("exec through the jump host: {}", e.report()));
    assert!(status.success());
    // The host's Docker engine answers over the forwarded socket (no container of this
    // name exists there, which only the engine can say).
    let answer = d.observe().await.expect_err("no such containers");
    assert_eq!(answer.kind(), ErrorKind::NotFound, "{}", answer.report());
    d.close().await;
    let log = jump.log();
    assert!(
        log.contains("direct-tcpip") && log.contains(&format!("port {}", hosts[0].port)),
        "the jump host forwarded the connection to h1: {log}"
    );

    // A jump host whose key the file does not list is refused under strict checking.
    let host_only = dir.path().join("host_only");
    std::fs::copy(&hosts[0].known_hosts, &host_only).unwrap();
    let mut unknown = config.clone();
    unknown.hosts[0].known_hosts = Some(host_only);
    let err = connect(unknown)
        .await
        .expect_err("an unlisted jump host key must be refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}", err.report());
    assert!(
        err.report().contains("jump host"),
        "the error points at the jump host: {}",
        err.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_metacharacters_in_host_fields_and_image_tags_are_refused() {
    let hosts = test_hosts();
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    let payload = format!("127.0.0.1;touch {}", canary.display());
    let mut h = host_config("h1", &hosts[0]);
    h.address = payload.clone();
    let err = connect(SshConfig::new(vec![h], DockerConfig::containers("app")))
        .await
        .expect_err("an address with shell syntax");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message().contains("driver.ssh.hosts[0].address"),
        "{}",
        err.report()
    );
    for field in ["user", "jump", "key", "docker_socket"] {
        let mut h = host_config("h1", &hosts[0]);
        let bad = format!("$(touch {})", canary.display());
        match field {
            "user" => h.user = Some(bad),
            "jump" => h.jump = Some(bad),
            "key" => h.key = Some(bad.into()),
            _ => h.docker_socket = Some(format!("/run/`touch {}`", canary.display())),
        }
        let err = connect(SshConfig::new(vec![h], DockerConfig::containers("app")))
            .await
            .expect_err(field);
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "{field}: {}",
            err.report()
        );
    }
    assert!(!canary.exists(), "a refused value reached a shell");

    // Image references: Docker's grammar has no shell syntax, and the driver refuses
    // anything else before contacting a host.
    for tag in ["1.1.0;id", "$(id)", "`id`", "1.1.0 && id", "1.1.0|id"] {
        let reference = format!("127.0.0.1:5000/specimen:{tag}");
        assert!(
            reference.parse::<ImageRef>().is_err(),
            "{reference} was accepted as an image"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_remote_shell_sees_an_argument_or_secret_unquoted() {
    let hosts = test_hosts();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("commands.log");
    // The login shell's command line, exactly as sshd hands it over, is logged before the
    // shell runs it.
    let wrapper = dir.path().join("log-and-run");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {}\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["755"])
        .arg(&wrapper)
        .status()
        .unwrap();
    let sshd = OwnSshd::start(&hosts[0], &format!("ForceCommand {}", wrapper.display()));
    let base = unique_name("ctsq").replace('_', "-");
    let config = SshConfig::new(
        vec![host_config("h1", &sshd.host)],
        DockerConfig::containers(&base),
    );
    let d = connect(config)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));

    let canary = |n: u32| dir.path().join(format!("canary{n}"));
    let hostile: Vec<String> = vec![
        format!("$(touch {})", canary(1).display()),
        format!("`touch {}`", canary(2).display()),
        format!("; touch {}", canary(3).display()),
        format!("&& touch {} ||", canary(4).display()),
        format!("| tee {}", canary(5).display()),
        format!("> {}", canary(6).display()),
        "it's \"quoted\"".into(),
        "  spaced  out  ".into(),
        "$HOME *".into(),
        String::new(),
    ];
    let mut argv = vec!["printf".to_string(), "[%s]\\n".to_string()];
    argv.extend(hostile.iter().cloned());
    let (status, out) = d
        .exec_output(&ExecTarget::Host("h1".into()), &argv)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    assert!(status.success(), "{status:?}");
    let expected: String = hostile.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(
        String::from_utf8_lossy(&out),
        expected,
        "the program got other arguments"
    );
    for n in 1..=6 {
        assert!(
            !canary(n).exists(),
            "canary {n}: a remote shell evaluated an argument"
        );
    }

    // A secret through `io.env`: the program sees it, no command line carries it.
    let secret = format!("pa$$ `touch {}` 'w0rd' $(id)", canary(7).display());
    let (w, mut r) = tokio::io::duplex(64 * 1024);
    let io = ExecIo {
        env: vec![("CUTOVER_TEST_SECRET".into(), secret.clone())],
        stdout: Some(Box::pin(w)),
        ..ExecIo::default()
    };
    let argv = vec!["printenv".to_string(), "CUTOVER_TEST_SECRET".to_string()];
    let collect = async move {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.map(|_| out)
    };
    let at = ExecTarget::Host("h1".into());
    let (status, out) = tokio::join!(d.exec(&at, &argv, io), collect);
    let status = status.unwrap_or_else(|e| panic!("{}", e.report()));
    assert!(status.success(), "{status:?}");
    assert_eq!(String::from_utf8_lossy(&out.unwrap()).trim_end(), secret);
    assert!(!canary(7).exists(), "the secret was evaluated by a shell");

    d.close().await;
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        !seen.contains("pa$$"),
        "a command line carried the secret: {seen}"
    );
    for a in &hostile[..6] {
        assert!(
            seen.contains(&format!("'{a}'")),
            "{a:?} did not reach the remote shell single-quoted: {seen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_and_unarchive_move_a_host_directory_with_tar_over_ssh() {
    let hosts = test_hosts();
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("from");
    let to = dir.path().join("to");
    std::fs::create_dir_all(from.join("sub")).unwrap();
    std::fs::write(from.join("a.txt"), "alpha").unwrap();
    std::fs::write(from.join("sub/b name.txt"), "beta").unwrap();
    std::fs::create_dir_all(&to).unwrap();
    std::fs::write(to.join("stale.txt"), "must go").unwrap();
    let base = unique_name("ctar").replace('_', "-");
    let d = connect(SshConfig::new(
        vec![host_config("h1", &hosts[0])],
        DockerConfig::containers(&base),
    ))
    .await
    .unwrap_or_else(|e| panic!("{}", e.report()));
    let at = ExecTarget::Host("h1".into());
    let tar = d
        .archive(&at, from.to_str().unwrap())
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    d.unarchive(&at, to.to_str().unwrap(), tar)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    assert_eq!(std::fs::read_to_string(to.join("a.txt")).unwrap(), "alpha");
    assert_eq!(
        std::fs::read_to_string(to.join("sub/b name.txt")).unwrap(),
        "beta"
    );
    assert!(
        !to.join("stale.txt").exists(),
        "unarchive kept an entry the archive lacks"
    );

    // A path that does not exist fails the stream with tar's own message.
    let mut tar = d
        .archive(&at, dir.path().join("missing").to_str().unwrap())
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    let mut sink = Vec::new();
    let err = tar
        .read_to_end(&mut sink)
        .await
        .expect_err("archiving a missing path must fail");
    assert!(err.to_string().contains("tar on host h1"), "{err}");
    d.close().await;
}
