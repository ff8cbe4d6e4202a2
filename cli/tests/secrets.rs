//! The database password never reaches a command line, cutover's output, the journal or
//! a backup, during real runs of the binary against the test PostgreSQL and MariaDB.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{cutover, fake_config};
use cutover_tests::{Engine, ScratchDatabase};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_stays_out_of_argv_output_journal_and_backups() {
    for engine in Engine::ALL {
        let scratch = ScratchDatabase::create(engine).await;
        scratch
            .execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100))")
            .await;
        scratch
            .execute("INSERT INTO items VALUES (1, 'one'), (2, 'two')")
            .await;
        let (url, password) = scratch.credentials();
        let dir = tempfile::tempdir().unwrap();
        let config = fake_config(
            dir.path(),
            engine,
            &url,
            "replicas = 2\ntags = [\"v2.7.81\"]\nbroken = [\"v2.7.82-broken\"]\nready_after = \"10ms\"",
            "",
        );

        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (done, password) = (done.clone(), password.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                            assert!(
                                !contains(&cmdline, &password),
                                "password in argv: {}",
                                String::from_utf8_lossy(&cmdline)
                            );
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let mut output = Vec::new();
        for (args, code) in [
            (vec!["upgrade", "--to", "v2.7.81"], 0),
            (
                vec!["upgrade", "--to", "v2.7.82-broken", "--output", "json"],
                5,
            ),
            (vec!["backup"], 0),
            (vec!["backups", "list", "--output", "json"], 0),
            (vec!["history", "--output", "json"], 0),
            (vec!["status"], 0),
        ] {
            let out = cutover(&config, &password, &args).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(code),
                "{engine} {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            output.extend(out.stdout);
            output.extend(out.stderr);
        }
        done.store(true, Ordering::Relaxed);
        watcher.join().expect("no password in any command line");
        assert!(
            !contains(&output, &password),
            "{engine}: password in cutover's output"
        );

        let mut files = 0;
        let mut stack = vec![dir.path().join(".cutover")];
        while let Some(path) = stack.pop() {
            for entry in std::fs::read_dir(&path).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    files += 1;
                    let bytes = std::fs::read(entry.path()).unwrap();
                    assert!(
                        !contains(&bytes, &password),
                        "{engine}: password in {}",
                        entry.path().display()
                    );
                }
            }
        }
        assert!(
            files >= 4,
            "{engine}: expected the journal and backups, found {files} files"
        );
    }
}
