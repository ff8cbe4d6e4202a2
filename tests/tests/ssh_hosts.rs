//! The SSH test hosts of `scripts/testenv up`: reachable with the recorded key and
//! known_hosts under strict checking, and each with a Docker engine no other host shares.

use cutover_tests::{SshHost, TestEnv, docker_command, unique_name};

fn ssh(host: &SshHost, remote: &str) -> String {
    let output = host
        .ssh_command()
        .arg(remote)
        .output()
        .expect("running ssh");
    assert!(
        output.status.success(),
        "ssh -p {} {remote}: {}",
        host.port,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn each_ssh_host_has_a_docker_engine_of_its_own() {
    let env = TestEnv::get();
    let hosts = env.ssh_hosts();
    assert!(
        hosts.len() >= 2,
        "the default environment has two SSH hosts"
    );

    let roots: Vec<String> = hosts
        .iter()
        .map(|h| ssh(h, "docker info --format '{{.DockerRootDir}}'"))
        .collect();
    for (i, root) in roots.iter().enumerate() {
        assert!(!roots[..i].contains(root), "two hosts share {root}");
    }

    // A container created through host 1 is visible there and nowhere else.
    let name = unique_name("ctssh");
    let image = env.specimen_tag("1.0.0");
    ssh(
        &hosts[0],
        &format!("docker create --name {name} --label cutover-test=1 {image} >/dev/null"),
    );
    let listed = |host: &SshHost| ssh(host, &format!("docker ps -a -q --filter name=^{name}$"));
    let on_first = listed(&hosts[0]);
    let on_second = listed(&hosts[1]);
    let local = docker_command()
        .args(["ps", "-a", "-q", "--filter", &format!("name=^{name}$")])
        .output()
        .expect("running docker");
    ssh(&hosts[0], &format!("docker rm -f {name} >/dev/null"));
    assert!(
        !on_first.is_empty(),
        "host 1 does not list its own container"
    );
    assert!(on_second.is_empty(), "host 2 sees host 1's container");
    assert!(
        local.stdout.is_empty(),
        "the main engine sees host 1's container"
    );
}

#[test]
fn an_unknown_host_key_is_refused() {
    let host = &TestEnv::get().ssh_hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let refused = SshHost {
        known_hosts: empty,
        ..host.clone()
    }
    .ssh_command()
    .arg("true")
    .output()
    .expect("running ssh");
    assert!(
        !refused.status.success(),
        "strict checking accepted an unknown host key"
    );
}
