//! The core's engine with the Docker driver, the dump backup engine and a SQLite journal
//! against a real specimen deployment: a clean upgrade with three replicas, automatic
//! rollbacks of a broken and an unhealthy release, a missing tag, and a tag moved between
//! pull and start.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Deployment, image};
use cutover_backup::testkit::EngineRun;
use cutover_backup::{Database, DatabaseEngine, ToolSite};
use cutover_core::journal::Entry;
use cutover_core::{
    BackupMode, ErrorKind, EventKind, EventSink, Finished, ImageRef, Outcome, Output, Plan,
};
use cutover_tests::{docker, docker_command, unique_name};

const HEALTHY: Duration = Duration::from_secs(60);

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

async fn run(d: &Deployment, timeout: Duration) -> EngineRun {
    EngineRun::new(Arc::new(d.driver.clone()), database(d), &d.base, timeout)
        .await
        .unwrap()
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

    let done = r.upgrade(image("1.1.0")).await;
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
    cutover_tests::assert_no_file_contains(r.dir(), &d.password);
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

    let done = r.upgrade(image(version)).await;
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);

    assert_eq!(
        r.fingerprint().await,
        fingerprint,
        "database restored exactly"
    );
    assert_eq!(inspect_all(&d), before, "containers configured as before");
    d.wait_healthy("1.0.0", 2, HEALTHY).await;
    cutover_tests::assert_no_file_contains(r.dir(), &d.password);
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
    // The leader's last lines, read before the rollback removed it.
    assert_eq!(cause.evidence.len(), 1, "{:#?}", cause.evidence);
    let kept = &cause.evidence[0];
    assert!(
        kept.tail.contains("error=\"broken release\""),
        "{}",
        kept.tail
    );
    // (The run's directory went with the helper's; the CLI test reads the file.)
    let file = kept.file.as_deref().expect("kept in a file");
    assert!(file.contains("/runs/"), "{file}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_release_rolls_back_after_the_deadline() {
    let done = rolls_back("1.1.0-unhealthy", Duration::from_secs(15)).await;
    let cause = done.report.cause.expect("a rollback has a cause");
    assert_eq!(cause.kind, ErrorKind::Timeout, "{}", cause.message);
    assert!(
        cause
            .evidence
            .iter()
            .any(|e| e.tail.contains("health=unhealthy")),
        "{:#?}",
        cause.evidence
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_aborts_without_touching_a_container() {
    let d = Deployment::start("1.0.0", 2, &[]).await;
    d.wait_healthy("1.0.0", 2, HEALTHY).await;
    let before = container_ids(&d);
    let r = run(&d, HEALTHY).await;

    let done = r.upgrade(image("9.9.9")).await;
    assert_eq!(done.report.outcome, Outcome::Aborted, "{}", done.message);
    assert_eq!(
        container_ids(&d),
        before,
        "a container was created, removed or renamed"
    );
    assert_eq!(d.healthy_of("1.0.0").len(), 2);
}

/// A repository of the test registry of this test's own, holding the specimen's 1.0.0
/// and 1.1.0 (whose version is baked into the image, not read from the tag): moving its
/// tags disturbs no other test on the shared engine. Its local references are removed
/// on drop.
struct PrivateRepository {
    name: String,
}

impl PrivateRepository {
    fn push(versions: &[&str]) -> Self {
        let registry = image("1.0.0").registry().unwrap().to_string();
        let unique = unique_name("ctdigest").replace('_', "-").to_lowercase();
        let repo = Self {
            name: format!("{registry}/{unique}"),
        };
        for version in versions {
            docker(&["tag", &image(version).to_string(), &repo.tag(version)]);
            docker(&["push", "--quiet", &repo.tag(version)]);
        }
        repo
    }

    fn tag(&self, version: &str) -> String {
        format!("{}:{version}", self.name)
    }

    fn image(&self, version: &str) -> ImageRef {
        self.tag(version).parse().unwrap()
    }

    /// The registry digest of `reference`'s image in this repository (from its
    /// RepoDigests, which the push recorded).
    fn digest_of(&self, reference: &str) -> String {
        let listed = docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            reference,
        ]);
        let listed: Vec<String> = serde_json::from_str(&listed).unwrap();
        listed
            .iter()
            .find_map(|d| d.strip_prefix(&format!("{}@", self.name)))
            .unwrap_or_else(|| panic!("{reference} has no digest in {}: {listed:?}", self.name))
            .to_string()
    }
}

impl Drop for PrivateRepository {
    fn drop(&mut self) {
        let listed = docker(&[
            "image",
            "ls",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}}",
            &self.name,
        ]);
        for line in listed.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if let [repo, tag, digest] = fields[..] {
                if tag != "<none>" {
                    let _ = docker_command()
                        .args(["rmi", &format!("{repo}:{tag}")])
                        .output();
                }
                if digest != "<none>" {
                    let _ = docker_command()
                        .args(["rmi", &format!("{repo}@{digest}")])
                        .output();
                }
            }
        }
    }
}

fn image_id(reference: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", reference])
}

/// Someone moves the local tag of the target to another release (`docker tag`) after
/// cutover pulled it and before it starts it: the definition is pinned to the pulled
/// digest, so the release that was pulled (1.1.0) starts and migrates, not the one the
/// tag names now (1.2.0). The digests are in the journal's pull output, the pull step's
/// detail and the backup manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_between_pull_and_start_starts_the_pulled_image() {
    let repo = PrivateRepository::push(&["1.0.0", "1.1.0"]);
    let pulled = repo.digest_of(&repo.tag("1.1.0"));
    let ran = repo.digest_of(&repo.tag("1.0.0"));
    let d = Deployment::start_image(&repo.image("1.0.0"), 2).await;
    d.wait_healthy_image(&repo.image("1.0.0"), 2, HEALTHY).await;
    d.db.seed_items(20).await;
    let r = run(&d, HEALTHY).await;

    // The engine emits events synchronously: the tag is moved after `pull` finished and
    // before the next step begins.
    let details = Arc::new(Mutex::new(Vec::new()));
    let engine = {
        let (target, other) = (repo.tag("1.1.0"), image("1.2.0").to_string());
        let details = details.clone();
        r.engine.clone().with_events(EventSink::new(move |e| {
            if let EventKind::StepFinished { step, detail, .. } = &e.kind {
                details.lock().unwrap().push(format!("{step}: {detail}"));
                if step == "pull" {
                    docker(&["tag", &other, &target]);
                }
            }
        }))
    };
    let done = engine
        .start(Plan::Upgrade {
            to: repo.image("1.1.0"),
            backup: BackupMode::Offline,
            replicas: None,
            allow_downgrade: false,
            hooks: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);

    // The tag did move, so the test acted between pull and start.
    assert_eq!(
        image_id(&repo.tag("1.1.0")),
        image_id(&image("1.2.0").to_string())
    );
    let pinned = format!("{}@{pulled}", repo.tag("1.1.0"));
    let want_id = image_id(&image("1.1.0").to_string());
    d.wait_healthy_image(&repo.image("1.1.0"), 2, HEALTHY).await;
    let instances: Vec<String> = d
        .all_containers()
        .into_iter()
        .filter(|n| !n.contains("cutover") && *n != d.toolbox)
        .collect();
    assert_eq!(instances.len(), 2, "{instances:?}");
    for name in &instances {
        let seen = docker(&["inspect", "--format", "{{.Config.Image}} {{.Image}}", name]);
        assert_eq!(seen, format!("{pinned} {want_id}"), "{name}");
    }
    let migrated: Vec<String> =
        d.db.migration_runs()
            .await
            .into_iter()
            .map(|m| m.version)
            .filter(|v| v != "1.0.0")
            .collect();
    assert_eq!(migrated, ["1.1.0"], "only the pulled release migrated");

    // Recorded: the journal's pull output, the step's detail, the backup manifest.
    let record = r.engine.journal().run(&done.run).await.unwrap().unwrap();
    let journaled = record.records.iter().find_map(|rec| match &rec.entry {
        Entry::Finished {
            output: Output::Pulled(p),
            ..
        } => Some(p.clone()),
        _ => None,
    });
    assert_eq!(journaled.and_then(|p| p.digest), Some(pulled.clone()));
    let details = details.lock().unwrap().clone();
    assert!(
        details
            .iter()
            .any(|l| l.starts_with("pull: ") && l.contains(&pulled)),
        "{details:?}"
    );
    let backup = done.report.backup.as_ref().expect("a backup was taken");
    let manifest = std::fs::read(
        r.dir()
            .join("backups")
            .join(backup.id.as_str())
            .join("manifest.json"),
    )
    .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["digest"], ran.as_str(), "{manifest:#}");
    assert_eq!(manifest["image"], repo.tag("1.0.0").as_str());
    cutover_tests::assert_no_file_contains(r.dir(), &d.password);
    drop(d);
}
