//! `backup.store = "s3://…"` through the binary: backups into moto's S3-compatible server
//! with credentials from the environment, listed, restored by id, verified with a restore
//! test and pruned (both journaled runs), never printing the secret.

mod common;

use common::{cutover, fake_config};
use cutover_tests::{Engine, S3Server, ScratchDatabase};
const SECRET: &str = "s3-secret-that-must-not-leak";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_list_and_restore_through_an_s3_store() {
    let server = S3Server::start().await;
    let scratch = ScratchDatabase::create(Engine::Postgres).await;
    scratch
        .execute("CREATE TABLE items (id INT PRIMARY KEY, name TEXT)")
        .await;
    scratch
        .execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g")
        .await;
    let (url, password) = scratch.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = fake_config(
        dir.path(),
        Engine::Postgres,
        &url,
        "replicas = 1",
        &format!(
            "[backup]\nstore = \"s3://{}/cutover\"\n[backup.s3]\nendpoint = \"{}\"\nallow_http = true",
            server.bucket(),
            server.endpoint()
        ),
    );
    let run = |args: &[&str]| {
        let out = cutover(&config, &password, args)
            .env("AWS_ACCESS_KEY_ID", "cutover-test")
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains(SECRET),
            "{args:?} printed the secret: {text}"
        );
        (out.status.code(), text)
    };

    let (code, text) = run(&["backup", "--output", "json"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["backups", "list", "--output", "json"]);
    assert_eq!(code, Some(0), "{text}");
    let keys = server.keys().await;
    let id = keys
        .iter()
        .find_map(|k| k.strip_prefix("cutover/")?.strip_suffix("/manifest.json"))
        .unwrap_or_else(|| panic!("no manifest in the bucket: {keys:?}"))
        .to_string();
    assert!(text.contains(&id), "{text}");

    scratch.execute("DELETE FROM items WHERE id > 10").await;
    let (code, text) = run(&["restore", &id, "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("safety backup"), "{text}");
    assert_eq!(scratch.count("items").await, 1000);

    // Verify (with a restore into a scratch database) and prune are runs in the journal.
    let (code, text) = run(&["backups", "verify", &id, "--restore-test"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("scratch database"), "{text}");
    let (code, text) = run(&["backup"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["backups", "prune", "--keep", "1", "--output", "json"]);
    assert_eq!(code, Some(0), "{text}");
    // The backup and the restore's safety backup; the newest is kept.
    let deleted = text
        .lines()
        .find_map(|l| l.split_once("\"detail\":\"deleted ").map(|(_, d)| d))
        .unwrap_or_else(|| panic!("no deletion in: {text}"));
    assert!(deleted.contains(&id) && deleted.contains(", "), "{deleted}");
    assert!(!server.keys().await.iter().any(|k| k.contains(&id)));
    let (code, text) = run(&["history", "--output", "json"]);
    assert_eq!(code, Some(0), "{text}");
    for kind in ["\"verify\"", "\"prune\"", "\"restore\"", "\"backup\""] {
        assert!(text.contains(kind), "{kind} missing from history: {text}");
    }

    // A store URL of another scheme is refused with the key named.
    let bad = std::fs::read_to_string(&config)
        .unwrap()
        .replace("s3://", "gs://");
    std::fs::write(&config, bad).unwrap();
    let (code, text) = run(&["backups", "list"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("backup.store"), "{text}");
}
