//! The core's engine with the SSH driver, the dump backup engine and a SQLite journal
//! against a real fleet of three hosts (each an sshd with its own Docker engine): a clean
//! upgrade that migrates once on the leader (its instances without a restart policy until
//! the commit gives them the definition's), a broken release that brings every host back,
//! and a host whose sshd goes away after the leader migrated.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Fleet, OwnSshd, host_docker, image, test_hosts};
use cutover_backup::testkit::EngineRun;
use cutover_backup::{Database, DatabaseEngine, DumpBackups, LocalStore, ToolSite};
use cutover_core::{
    ByteStream, Capabilities, Driver, DriverInfo, EventSink, ExecIo, ExecTarget, ExitStatus,
    Holder, ImageRef, Observed, Outcome, Pulled, Snapshot, Step,
};

const HEALTHY: Duration = Duration::from_secs(90);

fn database(f: &Fleet) -> Database {
    let (url, password) = f.db.credentials();
    Database::new(
        DatabaseEngine::Mariadb,
        &url,
        Some(password),
        ToolSite::Local,
    )
    .unwrap()
}

async fn run_with(f: &Fleet, driver: Arc<dyn Driver>, timeout: Duration) -> EngineRun {
    EngineRun::new(driver, database(f), &f.base, timeout)
        .await
        .unwrap()
}

async fn run(f: &Fleet, timeout: Duration) -> EngineRun {
    run_with(f, Arc::new(f.driver.clone()), timeout).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_host_upgrade_migrates_once_on_the_leader() {
    let f = Fleet::start("1.0.0", 1, &[("SPECIMEN_MIGRATION_SECONDS", "2")]).await;
    f.wait_healthy("1.0.0", HEALTHY).await;
    f.db.seed_items(50).await;
    let items = f.db.count("items").await;
    assert_eq!(restart_policies(&f), ["unless-stopped"; 3]);
    let mut watched = Watched::new(f.driver.clone());
    let before_release = Arc::new(RestartProbe {
        hosts: f.hosts.clone(),
        base: f.base.clone(),
        seen: Default::default(),
    });
    watched.before_release = Some(before_release.clone());
    let r = run_with(&f, Arc::new(watched), HEALTHY).await;

    let done = r.upgrade(image("1.1.0")).await;
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    assert_eq!(
        *before_release.seen.lock().unwrap(),
        Some(vec!["no".to_string(); 3]),
        "before the commit no new instance has a restart policy"
    );
    assert_eq!(
        restart_policies(&f),
        ["unless-stopped"; 3],
        "at commit every host's instance gets the definition's restart policy"
    );

    let runs: Vec<_> =
        f.db.migration_runs()
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
    for other in f.db.migration_runs().await {
        if other.run_id != runs[0].run_id {
            assert!(
                !runs[0].overlaps(&other),
                "{:?} overlaps {other:?}",
                runs[0]
            );
        }
    }
    // The one migrating instance was the leader's: the specimen records its hostname
    // (the container's), which is h1's container.
    let leader = common::host_docker(
        &f.hosts[0],
        &["inspect", "--format", "{{.Config.Hostname}}", &f.base],
    );
    assert!(
        runs[0].instance.starts_with(&format!("{leader}-")),
        "1.1.0 migrated in {}, not in the leader's container {leader}",
        runs[0].instance
    );
    f.wait_healthy("1.1.0", HEALTHY).await;
    for i in 0..3 {
        assert_eq!(f.healthy_on(i, "1.1.0").len(), 1, "h{} on 1.1.0", i + 1);
        assert!(
            f.healthy_on(i, "1.0.0").is_empty(),
            "h{} still on 1.0.0",
            i + 1
        );
        let kept: Vec<_> = f
            .containers_on(i)
            .into_iter()
            .filter(|n| n.ends_with("-cutover-kept"))
            .collect();
        assert!(
            kept.is_empty(),
            "release left kept containers on h{}: {kept:?}",
            i + 1
        );
    }
    assert_eq!(f.db.count("items").await, items, "items intact");
    cutover_tests::assert_no_file_contains(r.dir(), &f.password);
    f.driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_release_brings_every_host_back_with_its_data() {
    let f = Fleet::start("1.0.0", 1, &[]).await;
    f.wait_healthy("1.0.0", HEALTHY).await;
    f.db.seed_items(20).await;
    // A short deadline, but ample for 1.0.0 to come back: the broken leader, started
    // without a restart policy, stays down and is detected as crashed well before it.
    let watched = Arc::new(Watched::new(f.driver.clone()));
    let r = run_with(&f, watched.clone(), Duration::from_secs(30)).await;
    let fingerprint = r.fingerprint().await;
    let before = f.inspect_all();
    assert_eq!(before.len(), 3);

    let done = r.upgrade(image("1.1.0-broken")).await;
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);

    assert_eq!(
        r.fingerprint().await,
        fingerprint,
        "database restored exactly"
    );
    assert_eq!(
        f.inspect_all(),
        before,
        "every host's containers configured as before"
    );
    f.wait_healthy("1.0.0", HEALTHY).await;
    // The broken release only ever existed on the leader, as far as the engine saw.
    let seen = watched.seen.lock().unwrap().clone();
    let broken: Vec<_> = seen
        .iter()
        .filter(|i| i.image.tag() == Some("1.1.0-broken"))
        .collect();
    assert!(!broken.is_empty(), "the engine never saw the broken leader");
    assert!(
        broken.iter().all(|i| i.location == "h1"),
        "the broken release ran beside the leader: {broken:?}"
    );
    // What the leader printed before it died was read from h1's engine before the
    // rollback removed it, and kept beside the journal.
    let kept = &done.report.cause.as_ref().unwrap().evidence;
    assert_eq!(kept.len(), 1, "{kept:#?}");
    assert_eq!(kept[0].instance, format!("h1/{}", f.base));
    assert!(kept[0].tail.contains("broken release"), "{}", kept[0].tail);
    let file = kept[0].file.as_deref().expect("kept in a file");
    assert!(file.ends_with(&format!("/h1_{}.log", f.base)), "{file}");
    assert!(
        std::fs::read_to_string(file)
            .unwrap()
            .contains("event=exit")
    );
    cutover_tests::assert_no_file_contains(r.dir(), &f.password);
    f.driver.close().await;
}

/// The restart policy of every host's instance `<base>`, in host order.
fn restart_policies(f: &Fleet) -> Vec<String> {
    read_restart_policies(&f.hosts, &f.base)
}

fn read_restart_policies(hosts: &[cutover_tests::SshHost], base: &str) -> Vec<String> {
    hosts
        .iter()
        .map(|h| {
            host_docker(
                h,
                &[
                    "inspect",
                    "--format",
                    "{{.HostConfig.RestartPolicy.Name}}",
                    base,
                ],
            )
        })
        .collect()
}

/// The SSH driver as the engine uses it, recording every instance it observes and, when
/// `scale_out` is set, holding the fleet's scale-out (after the leader migrated and became
/// healthy) until the test lets it go on; with `before_release`, reading the instances'
/// restart policies when the engine calls `release`.
#[derive(Debug)]
struct Watched {
    inner: cutover_driver_ssh::SshDriver,
    scale_out: Option<Arc<Gate>>,
    seen: Arc<std::sync::Mutex<Vec<cutover_core::Instance>>>,
    before_release: Option<Arc<RestartProbe>>,
}

impl Watched {
    fn new(inner: cutover_driver_ssh::SshDriver) -> Self {
        Watched {
            inner,
            scale_out: None,
            seen: Arc::default(),
            before_release: None,
        }
    }
}

/// What [`Watched`] reads just before `release`: every host's instance's restart policy.
#[derive(Debug)]
struct RestartProbe {
    hosts: Vec<cutover_tests::SshHost>,
    base: String,
    seen: std::sync::Mutex<Option<Vec<String>>>,
}

#[async_trait]
impl Driver for Watched {
    fn info(&self) -> DriverInfo {
        self.inner.info()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn observe(&self) -> cutover_core::Result<Observed> {
        let o = self.inner.observe().await?;
        self.seen
            .lock()
            .unwrap()
            .extend(o.instances.iter().cloned());
        Ok(o)
    }
    async fn pull(&self, image: &ImageRef, events: &EventSink) -> cutover_core::Result<Pulled> {
        self.inner.pull(image, events).await
    }
    async fn snapshot(&self) -> cutover_core::Result<Snapshot> {
        self.inner.snapshot().await
    }
    async fn set_image(&self, image: &ImageRef) -> cutover_core::Result<()> {
        self.inner.set_image(image).await
    }
    async fn scale(&self, replicas: u32) -> cutover_core::Result<()> {
        if let Some(gate) = &self.scale_out
            && replicas > 1
        {
            gate.reached.notify_one();
            gate.proceed.notified().await;
        }
        self.inner.scale(replicas).await
    }
    async fn restore(&self, snapshot: &Snapshot) -> cutover_core::Result<()> {
        self.inner.restore(snapshot).await
    }
    async fn release(&self, snapshot: &Snapshot) -> cutover_core::Result<()> {
        if let Some(probe) = &self.before_release {
            let policies = read_restart_policies(&probe.hosts, &probe.base);
            *probe.seen.lock().unwrap() = Some(policies);
        }
        self.inner.release(snapshot).await
    }
    async fn exec(
        &self,
        at: &ExecTarget,
        argv: &[String],
        io: ExecIo,
    ) -> cutover_core::Result<ExitStatus> {
        self.inner.exec(at, argv, io).await
    }
    async fn archive(&self, at: &ExecTarget, path: &str) -> cutover_core::Result<ByteStream> {
        self.inner.archive(at, path).await
    }
    async fn unarchive(
        &self,
        at: &ExecTarget,
        path: &str,
        tar: ByteStream,
    ) -> cutover_core::Result<()> {
        self.inner.unarchive(at, path, tar).await
    }
    async fn logs(&self, instance: &str, lines: usize) -> cutover_core::Result<String> {
        self.inner.logs(instance, lines).await
    }
    async fn lock(&self, holder: &Holder) -> cutover_core::Result<()> {
        self.inner.lock(holder).await
    }
    async fn unlock(&self, holder: &Holder) -> cutover_core::Result<()> {
        self.inner.unlock(holder).await
    }
}

/// Where [`Watched`] holds a scale-out until the test lets it go on.
#[derive(Debug, Default)]
struct Gate {
    reached: tokio::sync::Notify,
    proceed: tokio::sync::Notify,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_sshd_stops_after_the_leader_migrated_converges_the_fleet_back() {
    let hosts = test_hosts();
    // h3 is reached through an sshd this test owns, in front of test host 3's engine, so
    // stopping it disturbs no one else.
    let own = OwnSshd::start(&hosts[2], "");
    let fleet_hosts = vec![hosts[0].clone(), hosts[1].clone(), own.host.clone()];
    let f = Fleet::start_on(fleet_hosts, "1.0.0", 1, &[]).await;
    f.wait_healthy("1.0.0", HEALTHY).await;
    f.db.seed_items(20).await;
    let mut sshd = own;
    let gate = Arc::new(Gate::default());
    let driver = Arc::new(Watched {
        scale_out: Some(gate.clone()),
        ..Watched::new(f.driver.clone())
    });
    let r = run_with(&f, driver, HEALTHY).await;
    let fingerprint = r.fingerprint().await;
    let before = f.inspect_all();

    // Once the leader has migrated and the fleet is about to scale out, h3's sshd stops.
    let (done, runs) = tokio::join!(r.upgrade(image("1.1.0")), async {
        gate.reached.notified().await;
        let runs = f.db.migration_runs().await;
        sshd.stop();
        gate.proceed.notify_one();
        runs
    });
    eprintln!("outcome: {}", done.message);
    // h3 was stopped by this run and sent nothing since, so the fleet can still be stopped,
    // its data restored and h1 and h2 brought back in this run. h3 itself cannot be
    // restored: the run stops with the lock held, naming it and every host's state.
    assert_eq!(done.report.outcome, Outcome::Failed, "{}", done.message);
    assert_eq!(
        done.report.stuck_at,
        Some(Step::RestoreDefinition),
        "{}",
        done.message
    );
    assert!(
        done.message.contains("h3") && done.message.contains("unreachable"),
        "the error names the unreachable host: {}",
        done.message
    );
    assert!(
        done.message.contains("h1: ") && done.message.contains("h2: "),
        "the error gives every host's state: {}",
        done.message
    );
    assert!(
        done.message.contains("The data was restored from backup"),
        "the error says the data is back: {}",
        done.message
    );
    let runs: Vec<_> = runs.into_iter().filter(|m| m.version == "1.1.0").collect();
    assert_eq!(runs.len(), 1, "the leader migrated once: {runs:?}");
    assert_eq!(
        r.fingerprint().await,
        fingerprint,
        "database restored in the run itself"
    );
    assert!(
        f.running_on(2).is_empty(),
        "h3 runs nothing, of either version: {:?}",
        f.running_on(2)
    );
    for i in 0..2 {
        let deadline = std::time::Instant::now() + HEALTHY;
        while f.healthy_on(i, "1.0.0").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "h{} serves 1.0.0 again before h3 is back",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            f.running_on(i).len(),
            1,
            "only the old instance runs on h{}",
            i + 1
        );
    }

    // The host comes back; resuming converges the whole fleet back, data included.
    sshd.run();
    let resumed = r.engine.resume(None).await.expect("the journal works");
    assert_eq!(
        resumed.report.outcome,
        Outcome::RolledBack,
        "{}",
        resumed.message
    );
    assert_eq!(
        r.fingerprint().await,
        fingerprint,
        "database restored exactly"
    );
    assert_eq!(
        f.inspect_all(),
        before,
        "every host's containers configured as before"
    );
    f.wait_healthy("1.0.0", HEALTHY).await;
    f.driver.close().await;
}

/// An sshd in front of test host 1 that logs every command line its shell receives.
fn logging_sshd(dir: &std::path::Path) -> (OwnSshd, std::path::PathBuf) {
    let log = dir.join("commands.log");
    let wrapper = dir.join("log-and-run");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {}\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
            log.display()
        ),
    )
    .unwrap();
    let status = std::process::Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .unwrap();
    assert!(status.success());
    let sshd = OwnSshd::start(
        &test_hosts()[0],
        &format!("ForceCommand {}", wrapper.display()),
    );
    (sshd, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dump_tools_and_storage_archives_run_on_a_host_over_ssh() {
    let scratch = tempfile::tempdir().unwrap();
    let (sshd, log) = logging_sshd(scratch.path());
    let f = Fleet::start_on(vec![sshd.host.clone()], "1.0.0", 1, &[]).await;
    f.wait_healthy("1.0.0", HEALTHY).await;
    f.db.seed_items(30).await;
    let storage = scratch.path().join("storage");
    std::fs::create_dir_all(storage.join("avatars")).unwrap();
    std::fs::write(storage.join("avatars/1.png"), "picture").unwrap();

    let (url, password) = f.db.credentials();
    let host = ExecTarget::Host("h1".into());
    let database = Database::new(
        DatabaseEngine::Mariadb,
        &url,
        Some(password.clone()),
        ToolSite::Exec(host.clone()),
    )
    .unwrap();
    let backups = DumpBackups::new(
        database.clone(),
        Arc::new(LocalStore::new(scratch.path().join("backups"))),
        vec![storage.to_str().unwrap().to_string()],
        host,
    );
    use cutover_core::Backups;
    let driver: &dyn Driver = &f.driver;
    backups
        .preflight(driver)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    let fingerprint = database
        .connect()
        .await
        .unwrap()
        .fingerprint()
        .await
        .unwrap();
    let taken = backups
        .backup(
            cutover_core::BackupScope {
                app: &f.base,
                image: &image("1.0.0"),
                snapshot: None,
                driver,
            },
            &EventSink::discard(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));

    f.db.execute("DELETE FROM items").await;
    std::fs::write(storage.join("avatars/1.png"), "overwritten").unwrap();
    std::fs::write(storage.join("stray.txt"), "not in the backup").unwrap();
    backups
        .restore(
            &taken.id,
            &f.base,
            &cutover_core::journal::new_run_id(),
            driver,
            &EventSink::discard(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));

    assert_eq!(
        database
            .connect()
            .await
            .unwrap()
            .fingerprint()
            .await
            .unwrap(),
        fingerprint,
        "database restored exactly"
    );
    assert_eq!(
        std::fs::read_to_string(storage.join("avatars/1.png")).unwrap(),
        "picture"
    );
    assert!(
        !storage.join("stray.txt").exists(),
        "storage not restored exactly"
    );
    let commands = std::fs::read_to_string(&log).unwrap();
    assert!(
        commands.contains("mariadb-dump") || commands.contains("mysqldump"),
        "the dump did not run over SSH: {commands}"
    );
    assert!(
        !commands.contains(&password),
        "the password reached a remote command line: {commands}"
    );
    f.driver.close().await;
    drop(sshd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_upgrade_is_rolled_back_by_hand_on_every_host() {
    let f = Fleet::start("1.0.0", 1, &[]).await;
    f.wait_healthy("1.0.0", HEALTHY).await;
    f.db.seed_items(20).await;
    let r = run(&f, HEALTHY).await;
    let fingerprint = r.fingerprint().await;
    let done = r.upgrade(image("1.1.0")).await;
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    f.wait_healthy("1.1.0", HEALTHY).await;

    // After commit nothing is kept aside: the 1.0.0 containers come back from the
    // snapshot alone, never by reviving the 1.1.0 ones on the restored data.
    let plan = r.engine.rollback_plan(None).await.unwrap();
    let back = r.engine.start(plan).await.expect("the journal works");
    assert_eq!(back.report.outcome, Outcome::RolledBack, "{}", back.message);
    assert_eq!(
        r.fingerprint().await,
        fingerprint,
        "data as before the upgrade"
    );
    f.wait_healthy("1.0.0", HEALTHY).await;
    assert_eq!(
        restart_policies(&f),
        ["unless-stopped"; 3],
        "1.0.0 back with its definition's restart policy"
    );
    for i in 0..3 {
        assert!(
            f.healthy_on(i, "1.1.0").is_empty(),
            "h{} still runs 1.1.0",
            i + 1
        );
    }
    f.driver.close().await;
}
