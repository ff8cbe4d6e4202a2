//! `cutover restore` and `cutover rollback` ask on a terminal before they throw away the
//! writes made since their backup: only `yes` goes on, anything else changes nothing and
//! exits 7. Without a terminal, or with `--output json`, they exit 2 unless `--yes`.
//!
//! The terminal is a pseudo-terminal the test owns; the data is a scratch PostgreSQL
//! database that the `fake` deployment's backups dump and restore for real.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{cutover, fake_config};
use cutover_tests::{Engine, ScratchDatabase};
use rustix::fs::{Mode, OFlags};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

/// A bound on a hung process, not a performance target: the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the question ends with.
const QUESTION: &str = "Type yes to go on, anything else to stop:";

/// A `cutover` process whose standard input, output and error are one pseudo-terminal.
struct Terminal {
    child: Child,
    /// The terminal's other end: what is written here is typed.
    keyboard: File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    fn spawn(mut command: Command) -> Terminal {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = openpt(flags).expect("open a pseudo-terminal");
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
        let terminal = File::from(rustix::fs::open(name.as_c_str(), flags, Mode::empty()).unwrap());
        command
            .stdin(terminal.try_clone().unwrap())
            .stdout(terminal.try_clone().unwrap())
            .stderr(terminal);
        let child = command.spawn().expect("start cutover");
        // The command holds this end's copies: without them, reading the other end ends
        // once the process has exited.
        drop(command);
        let keyboard = File::from(master);
        let mut screen = keyboard.try_clone().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once no process has the terminal open any more.
            while let Ok(n @ 1..) = screen.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            keyboard,
            output,
            seen: Vec::new(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Everything shown until `text` appears.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        while !self.text().contains(text) {
            match self
                .output
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(chunk) => self.seen.extend(chunk),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{text:?} not shown in time:\n{}", self.text())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the process ended without showing {text:?}:\n{}",
                        self.text()
                    )
                }
            }
        }
        self.text()
    }

    /// Types `keys`.
    fn type_in(&mut self, keys: &str) {
        self.keyboard.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits for the process to exit: its exit code and everything it showed.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            while let Ok(chunk) = self.output.try_recv() {
                self.seen.extend(chunk);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "cutover did not exit:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // What it wrote last is still on its way.
        while let Ok(chunk) = self.output.recv_timeout(Duration::from_secs(5)) {
            self.seen.extend(chunk);
        }
        (status.code(), self.text())
    }
}

impl Drop for Terminal {
    /// A failed test leaves no process waiting for an answer.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `fake` deployment running v2.7.80 with the scratch database's data, and an `items`
/// table of three rows.
struct Fixture {
    scratch: ScratchDatabase,
    password: String,
    url: String,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fixture {
    async fn new() -> Fixture {
        let scratch = ScratchDatabase::create(Engine::Postgres).await;
        scratch
            .execute(
                "CREATE TABLE items (id INT PRIMARY KEY, name TEXT);
                 INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            )
            .await;
        let (url, password) = scratch.credentials();
        let dir = tempfile::tempdir().unwrap();
        let config = Self::write_config(dir.path(), &url, "v2.7.80", "v2.7.81");
        Fixture {
            scratch,
            password,
            url,
            dir,
            config,
        }
    }

    /// `dir/cutover.toml` with the fake running `running` and able to pull `tag`.
    fn write_config(dir: &Path, url: &str, running: &str, tag: &str) -> PathBuf {
        let fake = format!("replicas = 1\nready_after = \"10ms\"\ntags = [\"{tag}\"]");
        let path = fake_config(dir, Engine::Postgres, url, &fake, "");
        // The shared config starts the fake at v2.7.80.
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("running = \"v2.7.80\"", &format!("running = \"{running}\""));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The in-memory deployment forgets between processes: after an upgrade the next
    /// process must start from the new version, with the old one still pullable.
    fn now_running_v2_7_81(&self) {
        Self::write_config(self.dir.path(), &self.url, "v2.7.81", "v2.7.80");
    }

    fn command(&self, args: &[&str]) -> Command {
        cutover(&self.config, &self.password, args)
    }

    /// Without a terminal: the exit code and both streams.
    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.command(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, text) = self.run(args);
        assert_eq!(code, Some(0), "{args:?}: {text}");
        text
    }

    fn on_terminal(&self, args: &[&str]) -> Terminal {
        Terminal::spawn(self.command(args))
    }

    /// The journal's runs, newest first: (kind, status).
    fn runs(&self) -> Vec<(String, String)> {
        let text = self.ok(&["history", "--output", "json"]);
        let doc = common::json_line(text.as_bytes(), "result");
        doc["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The newest backup's id.
    fn newest_backup(&self) -> String {
        let text = self.ok(&["backups", "list", "--output", "json"]);
        let doc = common::json_line(text.as_bytes(), "result");
        doc["backups"][0]["id"].as_str().unwrap().to_string()
    }

    async fn write_after_the_backup(&self) {
        self.scratch
            .execute("INSERT INTO items VALUES (100, 'written after the backup')")
            .await;
    }

    async fn items(&self) -> i64 {
        self.scratch.count("items").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_on_a_terminal_asks_and_only_yes_replaces_the_data() {
    let f = Fixture::new().await;
    f.ok(&["backup"]);
    let id = f.newest_backup();
    f.ok(&["upgrade", "--to", "v2.7.81"]);
    f.write_after_the_backup().await;
    let runs = f.runs();

    let mut term = f.on_terminal(&["restore", &id]);
    let question = term.wait_for(QUESTION);
    for says in [
        format!("replaces the data of apidog with backup {id},"),
        "taken 20".into(),
        "(while registry.example.com/apidog/server:v2.7.80 ran)".into(),
        "Runs of apidog since then:".into(),
        "upgrade  upgraded  to registry.example.com/apidog/server:v2.7.81".into(),
        "Every write made to the database since 20".into(),
        "a safety backup of the data as it is now is taken".into(),
    ] {
        assert!(question.contains(&says), "{says:?} in:\n{question}");
    }
    // Its age: seconds here, so "just now" or "N s ago".
    let age = question
        .split_once(" UTC, ")
        .and_then(|(_, rest)| rest.split_once(" (while"))
        .map(|(age, _)| age);
    assert!(
        age.is_some_and(|a| a == "just now" || a.ends_with(" s ago")),
        "{age:?} in:\n{question}"
    );
    // The backup run that took it is not a run since it.
    assert!(!question.contains("backed_up"), "{question}");
    term.type_in("no\n");
    let (code, text) = term.finish();
    assert_eq!(code, Some(7), "{text}");
    assert!(text.contains("nothing was done"), "{text}");
    assert_eq!(f.items().await, 4, "the write after the backup is kept");
    assert_eq!(f.runs(), runs, "no run was started");

    // End of input (Ctrl-D) is not a yes either.
    let mut term = f.on_terminal(&["restore", &id]);
    term.wait_for(QUESTION);
    term.type_in("\x04");
    let (code, text) = term.finish();
    assert_eq!(code, Some(7), "{text}");
    assert_eq!(f.items().await, 4);
    assert_eq!(f.runs(), runs);

    let mut term = f.on_terminal(&["restore", &id]);
    term.wait_for(QUESTION);
    term.type_in("yes\n");
    let (code, text) = term.finish();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("RESTORED"), "{text}");
    assert_eq!(f.items().await, 3, "the data is the backup's");
    let after = f.runs();
    assert_eq!(after.len(), runs.len() + 1);
    assert_eq!(after[0], ("restore".to_string(), "restored".to_string()));

    // The data it replaced was kept: the safety backup is listed, and restoring it brings
    // back the write made after the original backup.
    let safety = f.newest_backup();
    assert_ne!(safety, id);
    assert!(text.contains(&format!("safety backup {safety}")), "{text}");
    f.ok(&["restore", &safety, "--yes", "--no-safety-backup"]);
    assert_eq!(
        f.items().await,
        4,
        "the safety backup holds the later write"
    );
    assert_eq!(f.newest_backup(), safety, "--no-safety-backup took none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_on_a_terminal_names_the_upgrade_and_its_backup_and_y_rolls_back() {
    let f = Fixture::new().await;
    f.ok(&["upgrade", "--to", "v2.7.81"]);
    f.write_after_the_backup().await;
    f.now_running_v2_7_81();
    let runs = f.runs();

    let mut term = f.on_terminal(&["rollback"]);
    let question = term.wait_for(QUESTION);
    for says in [
        "undoes the upgrade of apidog to registry.example.com/apidog/server:v2.7.81 (run ",
        "it brings back registry.example.com/apidog/server:v2.7.80 with 1 replica(s) and restores backup ",
        "Runs of apidog since then:",
        "Every write made to the database since 20",
        "a safety backup of the data as it is now is taken",
        "Roll back?",
    ] {
        assert!(question.contains(says), "{says:?} in:\n{question}");
    }
    term.type_in("nope\n");
    let (code, text) = term.finish();
    assert_eq!(code, Some(7), "{text}");
    assert_eq!(f.items().await, 4);
    assert_eq!(f.runs(), runs, "no run was started");

    let mut term = f.on_terminal(&["rollback"]);
    term.wait_for(QUESTION);
    term.type_in("y\n");
    let (code, text) = term.finish();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ROLLED_BACK"), "{text}");
    assert_eq!(f.items().await, 3, "the data from before the upgrade");
    assert_eq!(
        f.runs()[0],
        ("rollback".to_string(), "rolled_back".to_string())
    );
    // The write made on the new version is in the rollback's safety backup.
    let safety = f.newest_backup();
    assert!(text.contains(&format!("safety backup {safety}")), "{text}");
    f.ok(&["restore", &safety, "--yes"]);
    assert_eq!(
        f.items().await,
        4,
        "the safety backup holds the later write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_of_an_upgrade_without_backup_says_no_data_comes_back() {
    let f = Fixture::new().await;
    f.ok(&["upgrade", "--to", "v2.7.81", "--backup", "skip"]);
    f.now_running_v2_7_81();
    let runs = f.runs();

    let mut term = f.on_terminal(&["rollback"]);
    let question = term.wait_for(QUESTION);
    assert!(
        question.contains("it brings back registry.example.com/apidog/server:v2.7.80"),
        "{question}"
    );
    assert!(
        question
            .contains("That upgrade took no backup (--backup skip), so NO DATA WILL BE RESTORED"),
        "{question}"
    );
    assert!(!question.contains("restores backup"), "{question}");
    assert!(!question.contains("Every write made"), "{question}");
    term.type_in("no\n");
    let (code, text) = term.finish();
    assert_eq!(code, Some(7), "{text}");
    assert_eq!(f.runs(), runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_or_with_json_output_yes_is_needed_and_skips_the_question() {
    let f = Fixture::new().await;
    f.ok(&["backup"]);
    let id = f.newest_backup();
    f.write_after_the_backup().await;
    let runs = f.runs();

    let (code, text) = f.run(&["restore", &id]);
    assert_eq!(code, Some(2), "{text}");
    for says in [
        "throws away every write made since it was taken, so it asks first",
        "there is no terminal to ask on",
        "Nothing was done",
        &format!("run: cutover restore {id} --yes"),
    ] {
        assert!(text.contains(says), "{says:?} in: {text}");
    }
    let (code, text) = f.run(&["rollback"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("run: cutover rollback --yes"), "{text}");

    // JSON output is for scripts: no question even on a terminal. (Were one asked, the
    // end of input typed ahead would answer it: exit 7.)
    let mut term = f.on_terminal(&["restore", &id, "--output", "json"]);
    term.type_in("\x04");
    let (code, text) = term.finish();
    assert_eq!(code, Some(2), "{text}");
    assert!(!text.contains(QUESTION), "{text}");
    let error = common::json_line(text.as_bytes(), "error");
    assert_eq!(error["type"], "error");
    assert_eq!(error["kind"], "confirmation_required");
    assert_eq!(error["exit_code"], 2);
    assert_eq!(f.items().await, 4);
    assert_eq!(f.runs(), runs, "no run was started");

    // --yes: no question, on a terminal too.
    let mut term = f.on_terminal(&["restore", &id, "--yes"]);
    term.type_in("\x04");
    let (code, text) = term.finish();
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains(QUESTION), "{text}");
    assert_eq!(f.items().await, 3);
    assert_eq!(f.runs()[0], ("restore".to_string(), "restored".to_string()));
}
