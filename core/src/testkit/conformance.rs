//! The Driver conformance suite: one public async function per contract.
//!
//! Each case takes the driver under test and a [`Fixture`] describing the deployment it
//! manages, checks one part of the [`Driver`] contract, and panics with a message naming
//! the broken promise. Every case leaves the deployment as it found it (the old image ×
//! the fixture's replicas), so the cases can run in any order on one deployment.
//! [`crate::conformance_tests!`] expands to one `#[tokio::test]` per case.

use crate::driver::{Driver, DriverExt, ExecIo, ExecTarget, Holder, Observed};
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
        images(&restored),
        images(&before),
        "restore did not bring back the instances"
    );
    d.restore(&snap).await.expect("restore again must succeed");
    assert_eq!(
        images(&observe(d).await),
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
    let o = observe(d).await;
    assert_eq!(
        images(&o),
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
/// the definition names it, and `scale` starts instances of that digest. Skipped for a
/// driver whose `pull` reports no digest (the core then uses the tag, as before).
pub async fn a_pinned_reference_runs_the_pulled_digest(d: &dyn Driver, f: &Fixture) {
    let pulled = d
        .pull(&f.new, &EventSink::discard())
        .await
        .expect("pull(new)");
    let Some(digest) = pulled.digest else {
        return;
    };
    let pinned = f.new.with_digest(&digest).unwrap_or_else(|e| {
        panic!(
            "pull reported {digest:?}, which cannot pin {}: {}",
            f.new,
            e.report()
        )
    });
    let snap = d.snapshot().await.expect("snapshot");
    d.scale(0).await.expect("scale(0)");
    d.set_image(&pinned)
        .await
        .unwrap_or_else(|e| panic!("set_image({pinned}): {}", e.report()));
    d.set_image(&pinned)
        .await
        .expect("set_image(pinned) again must succeed");
    assert_eq!(
        observe(d).await.image,
        pinned,
        "the definition does not name the pinned reference"
    );
    d.scale(1)
        .await
        .unwrap_or_else(|e| panic!("scale(1) of {pinned}: {}", e.report()));
    let o = observe(d).await;
    let running: Vec<_> = o.instances.iter().filter(|i| i.running).collect();
    assert_eq!(running.len(), 1, "scale(1) of {pinned}: {running:?}");
    assert!(
        running[0].runs(&pinned),
        "the instance does not run {pinned}: {:?}",
        running[0]
    );
    if let Some(have) = &running[0].digest {
        assert_eq!(
            have, &digest,
            "the instance runs another digest than pulled"
        );
    }
    d.restore(&snap).await.expect("restore");
    d.release(&snap).await.expect("release");
    assert_eq!(
        images(&observe(d).await).len(),
        f.replicas as usize,
        "restore did not bring back the instances"
    );
}

/// Methods of missing capabilities return the typed unsupported error.
pub async fn unsupported_capabilities_are_typed(d: &dyn Driver, f: &Fixture) {
    let caps = d.capabilities();
    let at = f.exec_at.clone();
    if !caps.exec {
        let e = d
            .exec(&at, &f.echo, ExecIo::default())
            .await
            .expect_err("exec without capability");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{}", e.report());
    }
    if !caps.archive {
        let e = d
            .archive(&at, "/tmp")
            .await
            .err()
            .expect("archive without capability");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{}", e.report());
    }
    if !caps.lock {
        let e = d
            .lock(&holder("a"))
            .await
            .expect_err("lock without capability");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{}", e.report());
    }
    if !caps.logs {
        let e = d
            .logs("any", 10)
            .await
            .expect_err("logs without capability");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{}", e.report());
    }
}

/// `logs` reads at most the asked number of lines of an instance, changes nothing, and
/// refuses what is not an instance of the target with `NotFound` (capability `logs`).
pub async fn logs_read_an_instance_and_nothing_else(d: &dyn Driver, f: &Fixture) {
    if !d.capabilities().logs {
        return;
    }
    let before = observe(d).await;
    let first = before
        .instances
        .first()
        .expect("the fixture has instances")
        .id
        .clone();
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
    let _ = f;
}

/// `exec` runs an argv and streams its stdout (capability `exec`).
pub async fn exec_streams_output(d: &dyn Driver, f: &Fixture) {
    if !d.capabilities().exec {
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
/// `lock`).
pub async fn lock_excludes_other_holders(d: &dyn Driver, _f: &Fixture) {
    if !d.capabilities().lock {
        return;
    }
    let (a, b) = (holder("conformance-a"), holder("conformance-b"));
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
