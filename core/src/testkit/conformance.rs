//! The Driver conformance suite: one public async function per contract.
//!
//! Each case takes the driver under test and a [`Fixture`] describing the deployment it
//! manages, checks one part of the [`Driver`] contract, and panics with a message naming
//! the broken promise. Every case leaves the deployment as it found it (the old image ×
//! the fixture's replicas), so the cases can run in any order on one deployment.
//! [`crate::conformance_tests!`] expands to one `#[tokio::test]` per case.

use tokio::io::AsyncReadExt;

use crate::driver::{ByteStream, Driver, DriverExt, ExecIo, ExecTarget, Holder, Observed};
use crate::event::EventSink;
use crate::{ErrorKind, ImageRef};

/// What the suite needs to know about the deployment a driver manages.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The image the deployment runs at the start of each case.
    pub old: ImageRef,
    /// Another image that exists and can be pulled and run.
    pub new: ImageRef,
    /// A tag of `old`'s repository that does not exist anywhere.
    pub missing: ImageRef,
    /// The replicas the deployment has at the start of each case.
    pub replicas: u32,
    /// Where exec can run (for drivers with `exec`).
    pub exec_at: ExecTarget,
    /// A command that prints `conformance` and exits 0 there (for drivers with `exec`).
    pub echo: Vec<String>,
    /// Where the archive case may replace a directory's content (for drivers with
    /// `archive`).
    pub archive: ArchiveSpot,
}

/// Where [`unarchive_holds_exactly_the_archive_s_entries`] may work, or why it cannot.
#[derive(Debug, Clone)]
pub enum ArchiveSpot {
    /// An existing directory `path` at `at` that the case may empty and fill; nothing else
    /// may use it.
    Dir {
        /// Where `archive`/`unarchive` act.
        at: ExecTarget,
        /// The directory.
        path: String,
        /// `None`: `unarchive` leaves exactly the archive's entries, as the contract asks.
        /// `Some(why)`: a documented gap of the driver: entries the archive lacks survive
        /// `unarchive`. The case then checks that they do, so that fixing the gap fails
        /// the case until the fixture (and the driver's docs) stop claiming it.
        stale_entries_survive: Option<&'static str>,
    },
    /// The fixture has no such directory, for the reason given. The case then checks
    /// that `archive` of a path that does not exist fails with an error instead of an
    /// empty archive.
    Unavailable(&'static str),
}

/// The instances as (id, image, running), sorted: what "unchanged" compares.
fn shape(o: &Observed) -> Vec<(String, String, bool)> {
    let mut v: Vec<_> = o
        .instances
        .iter()
        .map(|i| (i.id.clone(), i.image.to_string(), i.running))
        .collect();
    v.sort();
    v
}

fn images(o: &Observed) -> Vec<String> {
    let mut v: Vec<_> = o
        .instances
        .iter()
        .filter(|i| i.running)
        .map(|i| i.image.to_string())
        .collect();
    v.sort();
    v
}

async fn observe(d: &dyn Driver) -> Observed {
    d.observe()
        .await
        .expect("observe must succeed on the fixture")
}

/// The running instances' images once they are `want`, or as last seen after 30 s.
/// Starting is the backend's and readiness the core's to wait for (see `Driver::scale`):
/// an instance may still start, or restart once, when `scale` or `restore` returns.
async fn running_images(d: &dyn Driver, want: &[String]) -> Vec<String> {
    let mut seen = images(&observe(d).await);
    for _ in 0..60 {
        if seen == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        seen = images(&observe(d).await);
    }
    seen
}

fn holder(run: &str) -> Holder {
    Holder {
        run: run.into(),
        host: "conformance".into(),
        pid: 1,
    }
}

/// Puts the deployment back to the fixture's starting point.
async fn reset(d: &dyn Driver, f: &Fixture) {
    d.set_image(&f.old).await.expect("set_image(old) to reset");
    d.scale(f.replicas).await.expect("scale to reset");
}

/// `observe` changes nothing: two observations agree, and agree with the fixture.
pub async fn observe_is_side_effect_free(d: &dyn Driver, f: &Fixture) {
    let a = observe(d).await;
    let b = observe(d).await;
    assert_eq!(shape(&a), shape(&b), "two observations differ");
    assert_eq!(
        a.image, f.old,
        "definition image is not the fixture's old image"
    );
    assert_eq!(
        a.replicas, f.replicas,
        "definition replicas differ from the fixture"
    );
    assert_eq!(
        a.instances.iter().filter(|i| i.running).count(),
        f.replicas as usize,
        "running instances differ from the definition's replicas"
    );
}

/// `scale` converges exactly and is idempotent; `scale(0)` stops everything.
pub async fn scale_is_idempotent_and_exact(d: &dyn Driver, f: &Fixture) {
    for n in [f.replicas + 1, f.replicas + 1, 1, 0, 0, f.replicas] {
        d.scale(n)
            .await
            .unwrap_or_else(|e| panic!("scale({n}): {}", e.report()));
        let o = observe(d).await;
        assert_eq!(
            o.replicas, n,
            "after scale({n}) the definition asks for {}",
            o.replicas
        );
        assert_eq!(
            o.running(),
            n as usize,
            "after scale({n}) {} instances run",
            o.running()
        );
        assert!(
            o.instances
                .iter()
                .filter(|i| i.running)
                .all(|i| i.image == f.old),
            "after scale({n}) an instance runs another image"
        );
    }
}

/// `set_image` changes only the definition: no instance restarts, appears or goes.
pub async fn set_image_restarts_nothing(d: &dyn Driver, f: &Fixture) {
    d.pull(&f.new, &EventSink::discard())
        .await
        .expect("pull(new)");
    let before = observe(d).await;
    d.set_image(&f.new).await.expect("set_image(new)");
    d.set_image(&f.new)
        .await
        .expect("set_image(new) again must succeed");
    let after = observe(d).await;
    assert_eq!(
        after.image, f.new,
        "the definition does not name the new image"
    );
    assert_eq!(shape(&before), shape(&after), "set_image changed instances");
    reset(d, f).await;
}

/// `restore(snapshot)` brings back the definition and instances, also after `release`.
pub async fn snapshot_restore_round_trips(d: &dyn Driver, f: &Fixture) {
    let before = observe(d).await;
    let snap = d.snapshot().await.expect("snapshot");
    assert_eq!(snap.image, f.old, "snapshot image");
    assert_eq!(snap.replicas, f.replicas, "snapshot replicas");
    assert_eq!(
        shape(&before),
        shape(&observe(d).await),
        "snapshot changed instances"
    );

    // Upgrade-like changes, then restore.
    d.pull(&f.new, &EventSink::discard())
        .await
        .expect("pull(new)");
    d.scale(0).await.expect("scale(0)");
    d.set_image(&f.new).await.expect("set_image(new)");
    d.scale(f.replicas + 1).await.expect("scale(n+1)");
    d.restore(&snap).await.expect("restore");
    let restored = observe(d).await;
    assert_eq!(
        restored.image, f.old,
        "restore did not bring back the image"
    );
    assert_eq!(
        restored.replicas, f.replicas,
        "restore did not bring back the replicas"
    );
    assert_eq!(
        running_images(d, &images(&before)).await,
        images(&before),
        "restore did not bring back the instances"
    );
    d.restore(&snap).await.expect("restore again must succeed");
    assert_eq!(
        running_images(d, &images(&before)).await,
        images(&before),
        "a second restore changed instances"
    );

    // After release, restore still works from the snapshot alone.
    d.scale(0).await.expect("scale(0)");
    d.set_image(&f.new).await.expect("set_image(new)");
    d.scale(1).await.expect("scale(1)");
    d.release(&snap).await.expect("release");
    d.release(&snap).await.expect("release again must succeed");
    let o = observe(d).await;
    assert_eq!(
        images(&o),
        vec![f.new.to_string()],
        "release touched current instances"
    );
    d.restore(&snap).await.expect("restore after release");
    assert_eq!(
        running_images(d, &images(&before)).await,
        images(&before),
        "restore after release did not bring back the instances"
    );
    d.release(&snap).await.expect("release");
}

/// `pull` touches no instance, is idempotent, and reports a missing tag as not found.
pub async fn pull_touches_no_instance(d: &dyn Driver, f: &Fixture) {
    let before = observe(d).await;
    let pulled = d
        .pull(&f.new, &EventSink::discard())
        .await
        .expect("pull(new)");
    assert_eq!(pulled.image, f.new, "pull reports another image");
    d.pull(&f.new, &EventSink::discard())
        .await
        .expect("pull(new) again");
    assert_eq!(
        shape(&before),
        shape(&observe(d).await),
        "pull changed instances"
    );
    assert_eq!(observe(d).await.image, f.old, "pull changed the definition");
    let err = d
        .pull(&f.missing, &EventSink::discard())
        .await
        .expect_err("pulling a tag that does not exist must fail");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "missing tag: {}",
        err.report()
    );
}

/// A reference pinned to the digest `pull` reported is what the core gives `set_image`:
/// the definition names it, and `scale` starts instances of that digest. For a driver
/// whose `pull` reports no digest the core uses the tag, as before: then the tag given to
/// `set_image` is what the definition names and the new instance runs.
pub async fn a_pinned_reference_runs_the_pulled_digest(d: &dyn Driver, f: &Fixture) {
    let pulled = d
        .pull(&f.new, &EventSink::discard())
        .await
        .expect("pull(new)");
    let wanted = match &pulled.digest {
        Some(digest) => f.new.with_digest(digest).unwrap_or_else(|e| {
            panic!(
                "pull reported {digest:?}, which cannot pin {}: {}",
                f.new,
                e.report()
            )
        }),
        None => f.new.clone(),
    };
    let snap = d.snapshot().await.expect("snapshot");
    d.scale(0).await.expect("scale(0)");
    d.set_image(&wanted)
        .await
        .unwrap_or_else(|e| panic!("set_image({wanted}): {}", e.report()));
    d.set_image(&wanted)
        .await
        .unwrap_or_else(|e| panic!("set_image({wanted}) again must succeed: {}", e.report()));
    assert_eq!(
        observe(d).await.image,
        wanted,
        "the definition does not name {wanted}"
    );
    d.scale(1)
        .await
        .unwrap_or_else(|e| panic!("scale(1) of {wanted}: {}", e.report()));
    let o = observe(d).await;
    let running: Vec<_> = o.instances.iter().filter(|i| i.running).collect();
    assert_eq!(running.len(), 1, "scale(1) of {wanted}: {running:?}");
    assert!(
        running[0].runs(&wanted),
        "the instance does not run {wanted}: {:?}",
        running[0]
    );
    if let (Some(have), Some(digest)) = (&running[0].digest, &pulled.digest) {
        assert_eq!(have, digest, "the instance runs another digest than pulled");
    }
    d.restore(&snap).await.expect("restore");
    d.release(&snap).await.expect("release");
    let old = vec![f.old.to_string(); f.replicas as usize];
    assert_eq!(
        running_images(d, &old).await.len(),
        f.replicas as usize,
        "restore did not bring back the instances"
    );
}

/// Asserts that `result` is the typed unsupported error (`what` names the call).
fn assert_unsupported<T>(what: &str, result: crate::Result<T>) {
    match result {
        Ok(_) => panic!("{what} without the capability succeeded"),
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::Unsupported,
            "{what} without the capability: {}",
            e.report()
        ),
    }
}

/// Asserts that `result` is not the unsupported error: a driver claiming a capability
/// implements its methods (`what` names the call). Other errors are the other cases' to
/// judge.
fn assert_supported<T>(what: &str, result: &crate::Result<T>) {
    if let Err(e) = result {
        assert_ne!(
            e.kind(),
            ErrorKind::Unsupported,
            "{what} is claimed by the capabilities but unsupported: {}",
            e.report()
        );
    }
}

/// A path no fixture has.
const NO_SUCH_PATH: &str = "/cutover-conformance/no-such-path";

/// Every optional method answers as the capabilities say: the typed unsupported error
/// without the capability, anything else with it.
pub async fn unsupported_capabilities_are_typed(d: &dyn Driver, f: &Fixture) {
    let caps = d.capabilities();
    let exec = d.exec(&f.exec_at, &f.echo, ExecIo::default()).await;
    if caps.exec {
        assert_supported("exec", &exec);
    } else {
        assert_unsupported("exec", exec);
    }

    let at = match &f.archive {
        ArchiveSpot::Dir { at, .. } => at.clone(),
        ArchiveSpot::Unavailable(_) => f.exec_at.clone(),
    };
    // A path that does not exist: nothing is read, and unarchive is left to its case.
    let archive = d.archive(&at, NO_SUCH_PATH).await;
    if caps.archive {
        assert_supported("archive", &archive);
    } else {
        assert_unsupported("archive", archive);
        let empty: ByteStream = Box::pin(std::io::Cursor::new(tar::end()));
        assert_unsupported("unarchive", d.unarchive(&at, NO_SUCH_PATH, empty).await);
    }

    let who = holder("conformance-capabilities");
    let lock = d.lock(&who).await;
    if caps.lock {
        assert_supported("lock", &lock);
        let unlock = d.unlock(&who).await;
        assert_supported("unlock", &unlock);
        lock.and(unlock)
            .unwrap_or_else(|e| panic!("lock and unlock: {}", e.report()));
    } else {
        assert_unsupported("lock", lock);
        assert_unsupported("unlock", d.unlock(&who).await);
    }

    let logs = d.logs("cutover-conformance-no-such-instance", 10).await;
    if caps.logs {
        assert_supported("logs", &logs);
    } else {
        assert_unsupported("logs", logs);
    }
}

/// `logs` reads at most the asked number of lines of an instance, changes nothing, and
/// refuses what is not an instance of the target with `NotFound` (capability `logs`;
/// without it, the typed unsupported error).
pub async fn logs_read_an_instance_and_nothing_else(d: &dyn Driver, _f: &Fixture) {
    let before = observe(d).await;
    let first = before
        .instances
        .first()
        .expect("the fixture has instances")
        .id
        .clone();
    if !d.capabilities().logs {
        assert_unsupported("logs", d.logs(&first, 5).await);
        return;
    }
    for lines in [1, 5] {
        let text = d.logs(&first, lines).await.expect("logs of an instance");
        assert!(
            text.lines().count() <= lines,
            "logs({first}, {lines}) gave {} lines: {text:?}",
            text.lines().count()
        );
    }
    let e = d
        .logs("cutover-conformance-no-such-instance", 5)
        .await
        .expect_err("logs of something that is not an instance");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{}", e.report());
    assert_eq!(
        shape(&observe(d).await),
        shape(&before),
        "logs changed the deployment"
    );
}

/// `exec` runs an argv and streams its stdout (capability `exec`; without it, the typed
/// unsupported error).
pub async fn exec_streams_output(d: &dyn Driver, f: &Fixture) {
    if !d.capabilities().exec {
        assert_unsupported("exec", d.exec_output(&f.exec_at, &f.echo).await);
        return;
    }
    let (status, out) = d.exec_output(&f.exec_at, &f.echo).await.expect("exec");
    assert!(status.success(), "echo command failed: {status:?}");
    assert!(
        String::from_utf8_lossy(&out).contains("conformance"),
        "exec stdout lacks the echo: {:?}",
        String::from_utf8_lossy(&out)
    );
}

/// The backend lock excludes other holders and is re-entrant for its holder (capability
/// `lock`; without it, the typed unsupported error).
pub async fn lock_excludes_other_holders(d: &dyn Driver, _f: &Fixture) {
    let (a, b) = (holder("conformance-a"), holder("conformance-b"));
    if !d.capabilities().lock {
        assert_unsupported("lock", d.lock(&a).await);
        assert_unsupported("unlock", d.unlock(&a).await);
        return;
    }
    d.lock(&a).await.expect("lock(a)");
    d.lock(&a).await.expect("lock(a) again must succeed");
    let e = d.lock(&b).await.expect_err("lock(b) while a holds it");
    assert_eq!(e.kind(), ErrorKind::Locked, "{}", e.report());
    d.unlock(&b)
        .await
        .expect("unlock(b) must succeed and not release a's lock");
    assert!(d.lock(&b).await.is_err(), "unlock(b) released a's lock");
    d.unlock(&a).await.expect("unlock(a)");
    d.lock(&b).await.expect("lock(b) after a released");
    d.unlock(&b).await.expect("unlock(b)");
}

/// Reads `path` at `at` through `archive` into its entries.
async fn read_back(d: &dyn Driver, at: &ExecTarget, path: &str) -> tar::Entries {
    let mut stream = d
        .archive(at, path)
        .await
        .unwrap_or_else(|e| panic!("archive({at}, {path}): {}", e.report()));
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .await
        .unwrap_or_else(|e| panic!("reading the archive of {path} at {at}: {e}"));
    tar::entries(&bytes).unwrap_or_else(|e| panic!("the archive of {path} at {at}: {e}"))
}

async fn put(d: &dyn Driver, at: &ExecTarget, path: &str, entries: &tar::Entries) {
    let stream: ByteStream = Box::pin(std::io::Cursor::new(tar::build(entries)));
    d.unarchive(at, path, stream)
        .await
        .unwrap_or_else(|e| panic!("unarchive({at}, {path}): {}", e.report()));
}

/// `unarchive` replaces a directory's content with exactly the archive's entries (a
/// file, a subdirectory and a file in it, each with its own mode; an entry already there
/// and not in the archive is gone), and `archive` reads them back: the same names,
/// contents and modes. Archives hold the directory's content relative to it (`./name`,
/// as `tar -C path -c .` writes them). Capability `archive`; without it, the typed
/// unsupported error.
pub async fn unarchive_holds_exactly_the_archive_s_entries(d: &dyn Driver, f: &Fixture) {
    let (at, path, stale_survives) = match &f.archive {
        _ if !d.capabilities().archive => {
            let at = f.exec_at.clone();
            assert_unsupported("archive", d.archive(&at, NO_SUCH_PATH).await);
            let empty: ByteStream = Box::pin(std::io::Cursor::new(tar::end()));
            assert_unsupported("unarchive", d.unarchive(&at, NO_SUCH_PATH, empty).await);
            return;
        }
        ArchiveSpot::Unavailable(why) => {
            // Nowhere to write; at least a missing path must not read as an empty archive.
            let failed = match d.archive(&f.exec_at, NO_SUCH_PATH).await {
                Err(e) => {
                    assert_ne!(e.kind(), ErrorKind::Unsupported, "{}", e.report());
                    true
                }
                Ok(mut s) => {
                    let mut sink = Vec::new();
                    s.read_to_end(&mut sink).await.is_err()
                }
            };
            assert!(
                failed,
                "archive of {NO_SUCH_PATH} read as an archive (fixture without a place: {why})"
            );
            return;
        }
        ArchiveSpot::Dir {
            at,
            path,
            stale_entries_survive,
        } => (at, path.as_str(), *stale_entries_survive),
    };
    let before = observe(d).await;

    let old = tar::Entries::from([
        tar::file("config.toml", 0o644, b"listen = 80\n"),
        tar::file("stale.txt", 0o644, b"not in the next archive\n"),
    ]);
    put(d, at, path, &old).await;
    assert_eq!(
        read_back(d, at, path).await,
        old,
        "archive does not read back what unarchive put into an empty directory"
    );

    let data: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    let new = tar::Entries::from([
        tar::file("config.toml", 0o600, b"listen = 8080\n"),
        tar::file("run.sh", 0o755, b"#!/bin/sh\nexit 0\n"),
        tar::dir("sub", 0o750),
        tar::file("sub/data.bin", 0o640, &data),
    ]);
    put(d, at, path, &new).await;
    let got = read_back(d, at, path).await;
    match stale_survives {
        None => assert_eq!(
            got, new,
            "after unarchive, {path} at {at} does not hold exactly the archive's entries"
        ),
        Some(why) => {
            let mut expected = new.clone();
            expected.extend(
                old.iter()
                    .filter(|(n, _)| n.as_str() == "stale.txt")
                    .map(|(n, e)| (n.clone(), e.clone())),
            );
            assert_eq!(
                got, expected,
                "unarchive into {path} at {at}: expected the archive's entries and, by the \
                 fixture's documented gap ({why}), the stale one; if it is gone, the gap is \
                 fixed: drop it from the fixture and the driver's docs"
            );
        }
    }
    assert_eq!(
        read_back(d, at, path).await,
        got,
        "a second archive differs from the first"
    );

    // Leave the directory empty, as the fixture provided it (as far as the driver can).
    put(d, at, path, &tar::Entries::new()).await;
    assert_eq!(
        shape(&observe(d).await),
        shape(&before),
        "archive or unarchive changed the deployment"
    );
}

/// Just enough of the ustar format to build and read the case's archives: regular files
/// and directories (extended and GNU long-name headers are read, not written).
mod tar {
    use std::collections::BTreeMap;

    /// An entry's kind, mode (permission bits) and content.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Entry {
        /// A regular file.
        File { mode: u32, content: Vec<u8> },
        /// A directory.
        Dir { mode: u32 },
    }

    /// Entries by name relative to the archived directory, without `./` or a trailing
    /// `/`; the directory's own entry is left out.
    pub type Entries = BTreeMap<String, Entry>;

    pub fn file(name: &str, mode: u32, content: &[u8]) -> (String, Entry) {
        let content = content.to_vec();
        (name.to_string(), Entry::File { mode, content })
    }

    pub fn dir(name: &str, mode: u32) -> (String, Entry) {
        (name.to_string(), Entry::Dir { mode })
    }

    fn header(name: &str, mode: u32, size: usize, kind: u8) -> [u8; 512] {
        let mut h = [0u8; 512];
        assert!(name.len() < 100, "name too long for this writer: {name}");
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, width: usize, value: u64| {
            let text = format!("{value:0w$o}", w = width - 1);
            h[at..at + width - 1].copy_from_slice(text.as_bytes());
        };
        octal(&mut h, 100, 8, u64::from(mode));
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, size as u64);
        octal(&mut h, 136, 12, 1_700_000_000);
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        h
    }

    /// The two zero blocks that end an archive: alone, an empty archive.
    pub fn end() -> Vec<u8> {
        vec![0u8; 1024]
    }

    /// An archive of `entries` under `./`, the directory's own entry first (mode 0755).
    pub fn build(entries: &Entries) -> Vec<u8> {
        let mut out = header("./", 0o755, 0, b'5').to_vec();
        for (name, entry) in entries {
            match entry {
                Entry::Dir { mode } => out.extend(header(&format!("./{name}/"), *mode, 0, b'5')),
                Entry::File { mode, content } => {
                    out.extend(header(&format!("./{name}"), *mode, content.len(), b'0'));
                    out.extend(content);
                    out.resize(out.len().div_ceil(512) * 512, 0);
                }
            }
        }
        out.extend(end());
        out
    }

    fn field(h: &[u8], at: usize, width: usize) -> &[u8] {
        let f = &h[at..at + width];
        let len = f.iter().position(|&b| b == 0).unwrap_or(width);
        &f[..len]
    }

    fn octal(h: &[u8], at: usize, width: usize) -> Result<u64, String> {
        let text = String::from_utf8_lossy(field(h, at, width))
            .trim()
            .to_string();
        if text.is_empty() {
            return Ok(0);
        }
        u64::from_str_radix(&text, 8).map_err(|e| format!("bad octal field {text:?}: {e}"))
    }

    /// The `path=` record of a pax extended header, if any.
    fn pax_path(data: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(data);
        text.lines()
            .filter_map(|l| l.split_once(' ').map(|(_, kv)| kv))
            .find_map(|kv| kv.strip_prefix("path=").map(str::to_string))
    }

    /// The entries of an archive whose names are relative to the archived directory.
    pub fn entries(bytes: &[u8]) -> Result<Entries, String> {
        let mut out = Entries::new();
        let mut at = 0;
        let mut long_name: Option<String> = None;
        while at + 512 <= bytes.len() {
            let h = &bytes[at..at + 512];
            if h.iter().all(|&b| b == 0) {
                return Ok(out);
            }
            let size = octal(h, 124, 12)? as usize;
            let data_at = at + 512;
            let data = bytes
                .get(data_at..data_at + size)
                .ok_or_else(|| format!("the archive ends inside an entry of {size} bytes"))?;
            at = data_at + size.div_ceil(512) * 512;
            let kind = h[156];
            let mut name = String::from_utf8_lossy(field(h, 0, 100)).into_owned();
            let prefix = String::from_utf8_lossy(field(h, 345, 155)).into_owned();
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
            match kind {
                b'x' => {
                    long_name = pax_path(data).or(long_name);
                    continue;
                }
                b'L' => {
                    long_name = Some(
                        String::from_utf8_lossy(data)
                            .trim_end_matches('\0')
                            .to_string(),
                    );
                    continue;
                }
                b'g' => continue,
                _ => {}
            }
            let name = long_name.take().unwrap_or(name);
            let name = name.trim_start_matches("./").trim_end_matches('/');
            if name.is_empty() || name == "." {
                continue;
            }
            if name.starts_with('/') || name.split('/').any(|p| p == "..") {
                return Err(format!("entry {name:?} is not relative to the directory"));
            }
            let mode = (octal(h, 100, 8)? & 0o7777) as u32;
            let entry = match kind {
                b'0' | 0 => Entry::File {
                    mode,
                    content: data.to_vec(),
                },
                b'5' => Entry::Dir { mode },
                other => {
                    return Err(format!(
                        "entry {name:?} of unexpected type {:?}",
                        other as char
                    ));
                }
            };
            out.insert(name.to_string(), entry);
        }
        Err("the archive ends without its end blocks".into())
    }
}

/// Expands to one `#[tokio::test]` per conformance case.
///
/// `$setup` is an async expression (e.g. a call of an `async fn`) evaluating to
/// `(Arc<dyn Driver>, Fixture)` (or any `(D, Fixture)` where `D: Deref<Target = impl
/// Driver>`), evaluated afresh for each case. The calling crate needs tokio with the
/// `macros` and `rt-multi-thread` features.
///
/// ```ignore
/// cutover_core::conformance_tests!(my_driver_fixture().await);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($setup:expr) => {
        $crate::conformance_tests!(@cases $setup;
            observe_is_side_effect_free,
            scale_is_idempotent_and_exact,
            set_image_restarts_nothing,
            snapshot_restore_round_trips,
            pull_touches_no_instance,
            a_pinned_reference_runs_the_pulled_digest,
            unsupported_capabilities_are_typed,
            unarchive_holds_exactly_the_archive_s_entries,
            exec_streams_output,
            lock_excludes_other_holders,
            logs_read_an_instance_and_nothing_else,
        );
    };
    (@cases $setup:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (driver, fixture) = $setup;
                $crate::testkit::conformance::$case(&*driver, &fixture).await;
            }
        )*
    };
}
