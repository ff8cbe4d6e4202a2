//! The core's engine with the Docker driver, the dump backup engine and a SQLite journal
//! against a real specimen deployment: a clean upgrade with three replicas, automatic
//! rollbacks of a broken and an unhealthy release, and a missing tag.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Deployment, image};
use cutover_core::backup::{Database, DatabaseEngine, ToolSite};
use cutover_core::testkit::dump_engine;
use cutover_core::{BackupMode, Engine, ErrorKind, Finished, Outcome, Plan};
use cutover_tests::docker;

const HEALTHY: Duration = Duration::from_secs(60);

struct Run {
    engine: Engine,
    database: Database,
    dir: tempfile::TempDir,
}

fn database(d: &Deployment) -> Database {
    let url = d.db.url();
    let rest = url.trim_start_matches("mysql://");
    let (user_info, host_path) = rest.rsplit_once('@').unwrap();
    let user = user_info.split(':').next().unwrap();
    Database::new(
        DatabaseEngine::Mariadb,
        &format!("mysql://{user}@{host_path}"),
        Some(d.password.clone()),
        ToolSite::Local,
    )
    .unwrap()
}

async fn run(d: &Deployment, timeout: Duration) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let database = database(d);
    let driver = Arc::new(d.driver.clone());
    let engine = dump_engine(driver, database.clone(), &d.base, timeout, dir.path())
        .await
        .unwrap();
    Run {
        engine,
        database,
        dir,
    }
}

impl Run {
    async fn upgrade(&self, version: &str) -> Finished {
        self.engine
            .start(Plan::Upgrade {
                to: image(version),
                backup: BackupMode::Offline,
                replicas: None,
                allow_downgrade: true,
            })
            .await
            .expect("the journal works")
    }

    async fn fingerprint(&self) -> cutover_core::backup::Fingerprint {
        self.database
            .connect()
            .await
            .unwrap()
            .fingerprint()
            .await
            .unwrap()
    }

    /// No file cutover wrote (journal, manifests) holds the database password.
    fn assert_no_secret(&self, password: &str) {
        cutover_tests::assert_no_file_contains(self.dir.path(), password);
    }
}

/// `docker inspect` of every instance, without what differs between two containers of
/// the same configuration (ids, timestamps, state, the id-derived hostname).
fn inspect_all(d: &Deployment) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in d.all_containers() {
        if name.contains("cutover") || name == d.toolbox {
            continue;
        }
        let format = "{{json .Config.Image}} {{json .Config.Env}} {{json .Config.Cmd}} \
                      {{json .Config.Entrypoint}} {{json .Config.Labels}} {{json .Config.Healthcheck}} \
                      {{json .HostConfig}} {{json .Mounts}} {{.State.Running}}";
        out.insert(
            name.clone(),
            docker(&["inspect", "--format", format, &name]),
        );
    }
    out
}

fn container_ids(d: &Deployment) -> String {
    docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Names}} {{.Status}}",
        "--filter",
        &format!("name={}", d.base),
    ])
    .lines()
    .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
    .collect::<Vec<_>>()
    .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_with_three_replicas_migrates_once_with_the_leader_alone() {
    let d = Deployment::start("1.0.0", 3, &[("SPECIMEN_MIGRATION_SECONDS", "2")]).await;
    d.wait_healthy("1.0.0", 3, HEALTHY).await;
    d.db.seed_items(50).await;
    let items = d.db.count("items").await;
    let r = run(&d, HEALTHY).await;

    let done = r.upgrade("1.1.0").await;
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);

    let runs: Vec<_> =
        d.db.migration_runs()
            .await
            .into_iter()
            .filter(|m| m.version == "1.1.0")
            .collect();
    assert_eq!(
        runs.len(),
        1,
        "exactly one migration run of 1.1.0: {runs:?}"
    );
    assert_eq!(runs[0].outcome, "ok");
    // The fixture started its three 1.0.0 replicas at once; cutover's run must overlap none.
    for other in d.db.migration_runs().await {
        if other.run_id != runs[0].run_id {
            assert!(
                !runs[0].overlaps(&other),
                "{:?} overlaps {other:?}",
                runs[0]
            );
        }
    }
    d.wait_healthy("1.1.0", 3, HEALTHY).await;
    assert_eq!(d.healthy_of("1.1.0").len(), 3);
    assert_leader_was_alone(&d);
    assert!(d.healthy_of("1.0.0").is_empty());
    assert_eq!(d.db.count("items").await, items, "items intact");
    let left: Vec<_> = d
        .all_containers()
        .into_iter()
        .filter(|n| n.ends_with("-cutover-kept"))
        .collect();
    assert!(left.is_empty(), "release left kept containers: {left:?}");
    r.assert_no_secret(&d.password);
}

/// No other 1.1.0 container was created before the leader (the one that migrated)
/// served: its `serving` log line precedes every other 1.1.0 container's creation.
fn assert_leader_was_alone(d: &Deployment) {
    let parse = |t: &str| humantime::parse_rfc3339_weak(t.trim()).unwrap();
    let new: Vec<String> = d
        .healthy_of("1.1.0")
        .into_iter()
        .filter(|n| !n.contains("cutover"))
        .collect();
    let logs = |n: &str| {
        let out = cutover_tests::docker_command()
            .args(["logs", n])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let leaders: Vec<&String> = new
        .iter()
        .filter(|n| logs(n).contains("event=migration_start"))
        .collect();
    assert_eq!(
        leaders.len(),
        1,
        "exactly one 1.1.0 container migrated: {leaders:?}"
    );
    let leader_logs = logs(leaders[0]);
    let serving = leader_logs
        .lines()
        .find(|l| l.contains("event=serving"))
        .and_then(|l| l.split(' ').next())
        .map(parse)
        .expect("the leader logged event=serving");
    for other in new.iter().filter(|n| *n != leaders[0]) {
        let created = parse(&docker(&["inspect", "--format", "{{.Created}}", other]));
        assert!(
            created > serving,
            "{other} was created before the leader {} served",
            leaders[0]
        );
    }
}

async fn rolls_back(version: &str, timeout: Duration) -> Finished {
    let d = Deployment::start("1.0.0", 2, &[]).await;
    d.wait_healthy("1.0.0", 2, HEALTHY).await;
    d.db.seed_items(20).await;
    let r = run(&d, timeout).await;
    let fingerprint = r.fingerprint().await;
    let before = inspect_all(&d);

    let done = r.upgrade(version).await;
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);

    assert_eq!(
        r.fingerprint().await,
        fingerprint,
        "database restored exactly"
    );
    assert_eq!(inspect_all(&d), before, "containers configured as before");
    d.wait_healthy("1.0.0", 2, HEALTHY).await;
    r.assert_no_secret(&d.password);
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_release_rolls_back_data_and_containers() {
    let done = rolls_back("1.1.0-broken", HEALTHY).await;
    // The containers run under `--restart unless-stopped`: the crash loop must be seen as
    // a crash, not waited out until the health deadline.
    let cause = done.report.cause.expect("a rollback has a cause");
    assert_ne!(cause.kind, ErrorKind::Timeout, "{}", cause.message);
    assert!(cause.message.contains("stopped"), "{}", cause.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_release_rolls_back_after_the_deadline() {
    let done = rolls_back("1.1.0-unhealthy", Duration::from_secs(15)).await;
    let cause = done.report.cause.expect("a rollback has a cause");
    assert_eq!(cause.kind, ErrorKind::Timeout, "{}", cause.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_aborts_without_touching_a_container() {
    let d = Deployment::start("1.0.0", 2, &[]).await;
    d.wait_healthy("1.0.0", 2, HEALTHY).await;
    let before = container_ids(&d);
    let r = run(&d, HEALTHY).await;

    let done = r.upgrade("9.9.9").await;
    assert_eq!(done.report.outcome, Outcome::Aborted, "{}", done.message);
    assert_eq!(
        container_ids(&d),
        before,
        "a container was created, removed or renamed"
    );
    assert_eq!(d.healthy_of("1.0.0").len(), 2);
}
