//! `cutover upgrade` with `kind = "kubernetes"` end to end: the binary against the
//! Kubernetes API emulator (whose pods run the specimen) and the test PostgreSQL. The
//! deployment says it is managed by a Helm release, so the driver warns that the chart's
//! values must follow: the warning reaches human and JSON output.

use std::time::{Duration, Instant};

use cutover_kube_emulator::{Emulator, EmulatorConfig};
use cutover_tests::{Engine, ScratchDatabase, TestEnv};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

async fn wait_ready(emulator: &Emulator, name: &str, image: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = emulator.object("deployments", "apps", name).unwrap();
        let ready = d["status"]["readyReplicas"].as_u64() == Some(3)
            && d["status"]["updatedReplicas"].as_u64() == Some(3)
            && d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .is_some_and(|configured| cutover_tests::is_image(configured, image));
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not 3 ready pods of {image}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_through_the_cli_on_the_kubernetes_emulator() {
    let env = TestEnv::get();
    let emulator = Emulator::start(EmulatorConfig {
        specimen_repository: Some(env.specimen_image().to_string()),
        specimen_bin: Some(env.specimen_bin().to_path_buf()),
        specimen_tags: env
            .specimen_versions()
            .iter()
            .map(|v| v.to_string())
            .collect(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let db = ScratchDatabase::create(Engine::Postgres).await;
    let old = env.specimen_tag("1.0.0");
    let env_list: Vec<_> = db
        .app_env()
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    emulator
        .create(
            "deployments",
            "apps",
            json!({
                "metadata": {"name": "server",
                    "annotations": {"meta.helm.sh/release-name": "server-release"}},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "server"}},
                    "template": {"metadata": {"labels": {"app": "server"}},
                        "spec": {"containers": [{"name": "app", "image": old, "env": env_list}]}}},
            }),
        )
        .unwrap();
    wait_ready(&emulator, "server", &old).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), emulator.kubeconfig("apps")).unwrap();
    let (url, password) = db.credentials();
    let config = dir.path().join("cutover.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[app]
name = "server"
image = "{repository}"
[health]
timeout = "60s"
[driver]
kind = "kubernetes"
[driver.kubernetes]
kubeconfig = "{kubeconfig}"
deployment = "server"
container = "app"
[database]
engine = "postgres"
url = "{url}"
"#,
            repository = env.specimen_image(),
            kubeconfig = dir.path().join("kubeconfig").display(),
        ),
    )
    .unwrap();

    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["upgrade", "--to", "1.1.0"])
        .env("CUTOVER_DATABASE__PASSWORD", &password)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    wait_ready(&emulator, "server", &env.specimen_tag("1.1.0")).await;
    let runs: Vec<_> = db
        .migration_runs()
        .await
        .into_iter()
        .filter(|m| m.version == "1.1.0")
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "one migration run of 1.1.0: {runs:?}\n{text}"
    );
    assert!(
        !text.contains(&password),
        "the password in cutover's output"
    );
    // The driver's tracing warning (not the one its pull sends as an event), rendered like
    // the engine's own warnings.
    const TRACED: &str = "update the chart's values after the upgrade";
    assert!(
        text.lines()
            .any(|l| l.starts_with("! ") && l.contains(TRACED)),
        "the driver's Helm warning in human output: {text}"
    );

    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--output", "json", "upgrade", "--to", "1.2.0"])
        .env("CUTOVER_DATABASE__PASSWORD", &password)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_ready(&emulator, "server", &env.specimen_tag("1.2.0")).await;
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let run = events[0]["run"].as_str().unwrap();
    assert!(!run.is_empty(), "{stdout}");
    assert!(
        events.iter().any(|e| e["type"] == "warning"
            && e["run"] == run
            && e["message"].as_str().unwrap().contains(TRACED)),
        "the driver's Helm warning as a warning event of the run: {stdout}"
    );
}
