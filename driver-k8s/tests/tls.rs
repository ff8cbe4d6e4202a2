//! A cluster reached over https (the emulator speaks plain HTTP): the client with its TLS
//! setup is built, and a server that is down is a clear error, not a panic.

use cutover_driver_k8s::{KubernetesConfig, connect};

#[tokio::test]
async fn an_https_cluster_that_is_down_is_an_error_not_a_panic() {
    let port = cutover_tests::free_port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:{port}
contexts:
- name: x
  context:
    cluster: c
    user: u
    namespace: ns
current-context: x
users:
- name: u
  user:
    token: not-a-real-token
"
    );
    std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
    let mut config = KubernetesConfig::deployment("apidog");
    config.kubeconfig = Some(dir.path().join("kubeconfig"));
    let connecting = tokio::spawn(connect(config));
    let result = connecting.await.expect("connect must not panic");
    let Err(e) = result else {
        panic!("nothing listens on port {port}, yet connect succeeded");
    };
    assert!(e.to_string().contains("cannot reach"), "{}", e.report());
}
