//! `cutover backups prune` sweeps what unfinished backups left in the local store, but
//! only once untouched for a day: one being written now is never deleted.

mod common;

use std::time::{Duration, SystemTime};

use common::{cutover, fake_config};
use cutover_tests::{Engine, ScratchDatabase};

/// A staging directory with one part, both last written `age` ago.
fn staging(store: &std::path::Path, name: &str, age: Duration) -> std::path::PathBuf {
    let dir = store.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let part = dir.join(".database.zst.partial");
    std::fs::write(&part, vec![1u8; 2048]).unwrap();
    let when = SystemTime::now() - age;
    for path in [&part, &dir] {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_sweeps_only_old_unfinished_backups_and_says_which() {
    let scratch = ScratchDatabase::create(Engine::Postgres).await;
    scratch
        .execute("CREATE TABLE items (id INT PRIMARY KEY, name TEXT)")
        .await;
    let (url, password) = scratch.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = fake_config(dir.path(), Engine::Postgres, &url, "replicas = 1", "");
    let run = |args: &[&str]| {
        let out = cutover(&config, &password, args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    run(&["backup"]);
    let store = dir.path().join(".cutover/backups");
    let killed = staging(
        &store,
        ".staging-20260101T000000Z-apidog-dead01-4000001",
        Duration::from_secs(2 * 24 * 3600),
    );
    let writing = staging(
        &store,
        ".staging-20260101T000000Z-apidog-busy01-4000002",
        Duration::ZERO,
    );

    let text = run(&["backups", "prune", "--keep", "1"]);
    assert!(
        text.contains("swept unfinished .staging-20260101T000000Z-apidog-dead01-4000001 (2.0 KiB)"),
        "{text}"
    );
    assert!(!killed.exists(), "the old leftover is gone");
    assert!(writing.exists(), "a backup being written is never swept");
    let list = run(&["backups", "list"]);
    assert_eq!(
        list.lines().filter(|l| l.contains("apidog")).count(),
        1,
        "{list}"
    );
}
