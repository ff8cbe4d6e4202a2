//! `cutover status`: what runs, set against what the definition asks for, the lock, the
//! last run and the evidence of the last failed release.
//!
//! What runs is told as it is: instances are grouped by image and digest, a digest is
//! shown only with the image it belongs to, and when the instances disagree with the
//! definition (another version running, instances exited or restarting, fewer running
//! than asked for) the output says so, naming each version and how many run it.

use cutover_core::journal::{RunHeader, RunStatus};
use cutover_core::{Engine, ImageRef, InstanceLogs, Observed, Outcome as RunOutcome};
use serde::Serialize;
use serde_json::json;

use crate::commands::{Outcome, evidence_of, status_name};
use crate::exit;
use crate::render::{Renderer, evidence};

/// How many of a failed instance's last lines `status` shows.
const STATUS_LINES: usize = 10;

/// The instances that run one image: its reference without digest, the digest they run
/// and how many are running (of those, ready) or stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Version {
    pub image: String,
    pub digest: Option<String>,
    pub running: usize,
    pub ready: usize,
    pub stopped: usize,
}

impl Version {
    fn describe(&self) -> String {
        let digest = self
            .digest
            .as_deref()
            .map_or(String::new(), |d| format!(" ({d})"));
        let mut counts = Vec::new();
        if self.running > 0 {
            counts.push(format!("{} running, {} ready", self.running, self.ready));
        }
        if self.stopped > 0 {
            counts.push(format!("{} exited or restarting", self.stopped));
        }
        format!("{}{digest}: {}", self.image, counts.join(", "))
    }
}

/// The instances grouped by image (without digest) and the digest they run, in the order
/// first seen.
pub(crate) fn versions(seen: &Observed) -> Vec<Version> {
    let mut out: Vec<Version> = Vec::new();
    for i in &seen.instances {
        let image = i.image.without_digest().to_string();
        let digest = i.running_digest().map(str::to_owned);
        let at = match out
            .iter()
            .position(|v| v.image == image && v.digest == digest)
        {
            Some(at) => at,
            None => {
                out.push(Version {
                    image,
                    digest,
                    running: 0,
                    ready: 0,
                    stopped: 0,
                });
                out.len() - 1
            }
        };
        let v = &mut out[at];
        if i.running {
            v.running += 1;
            v.ready += usize::from(i.ready);
        } else {
            v.stopped += 1;
        }
    }
    out
}

/// The digest that belongs to the definition's image: the one it pins, else the one every
/// instance of its repository and tag runs (none when they disagree or none reports one).
pub(crate) fn definition_digest(seen: &Observed) -> Option<String> {
    if let Some(d) = seen.image.digest() {
        return Some(d.to_owned());
    }
    let def = &seen.image;
    let mut digests = seen
        .instances
        .iter()
        .filter(|i| i.image.repository() == def.repository() && i.image.tag() == def.tag())
        .map(|i| i.running_digest());
    let first = digests.next()??;
    digests.all(|d| d == Some(first)).then(|| first.to_owned())
}

/// How what runs differs from the definition; empty when it runs as defined.
pub(crate) fn differences(seen: &Observed) -> Vec<String> {
    let def = &seen.image;
    let of_definition =
        |image: &ImageRef| image.repository() == def.repository() && image.tag() == def.tag();
    let mut out = Vec::new();
    let running_def = seen
        .instances
        .iter()
        .filter(|i| i.running && i.runs(def))
        .count();
    for v in versions(seen) {
        let image: ImageRef = match v.image.parse() {
            Ok(i) => i,
            Err(_) => continue,
        };
        let same_tag = of_definition(&image);
        let other_digest = same_tag
            && def
                .digest()
                .is_some_and(|want| v.digest.as_deref() != Some(want));
        if v.running > 0 && (!same_tag || other_digest) {
            out.push(format!(
                "{} instance(s) run {}{} while the definition says {def}",
                v.running,
                v.image,
                v.digest
                    .as_deref()
                    .map_or(String::new(), |d| format!(" ({d})")),
            ));
        }
        if v.stopped > 0 {
            out.push(format!(
                "{} instance(s) of {} exited or are restarting (crash loop?)",
                v.stopped, v.image
            ));
        }
    }
    if (running_def as u32) < seen.replicas {
        out.push(format!(
            "{running_def} of the {} instance(s) the definition asks for run {def}",
            seen.replicas
        ));
    }
    out
}

/// The newest of the last runs that ended rolled back or failed, with the instance logs
/// its failed steps kept.
async fn last_failure(
    engine: &Engine,
) -> cutover_core::Result<Option<(RunHeader, Vec<InstanceLogs>)>> {
    for header in engine.runs(20).await? {
        if !matches!(
            header.status,
            RunStatus::Stopped(RunOutcome::RolledBack | RunOutcome::Failed)
        ) {
            continue;
        }
        let kept = match engine.run(&header.id).await? {
            Some(record) => evidence_of(&record),
            None => Vec::new(),
        };
        return Ok(Some((header, kept)));
    }
    Ok(None)
}

pub(crate) async fn status(engine: &Engine, r: &Renderer) -> Outcome {
    let target = &engine.settings().target;
    let seen = engine.observe().await;
    let lock = engine.lock_info().await?;
    let last = engine.runs(1).await?.into_iter().next();
    let failure = last_failure(engine).await?;
    let stale = engine.settings().stale_after;
    let open = match &lock {
        Some(l) if !l.is_live(stale) => Some(l.holder.run.clone()),
        _ => None,
    };
    let json_seen = match &seen {
        Ok(o) => json!({
            "image": o.image.to_string(),
            "digest": definition_digest(o),
            "replicas_desired": o.replicas,
            "replicas_ready": o.ready_of(&o.image),
            "versions": versions(o),
            "differences": differences(o),
        }),
        Err(e) => json!({ "error": e.report() }),
    };
    let cause = |h: &RunHeader| {
        h.report
            .as_ref()
            .and_then(|rep| rep.cause.as_ref())
            .map(|c| c.message.clone())
    };
    r.document(
        json!({
            "command": "status",
            "target": target,
            "deployment": json_seen,
            "lock": lock.as_ref().map(|l| json!({
                "run": l.holder.run, "host": l.holder.host, "pid": l.holder.pid,
                "live": l.is_live(stale),
            })),
            "last_run": last.as_ref().map(|h| json!({
                "id": h.id, "kind": h.kind().as_str(), "status": status_name(h.status),
            })),
            "last_failure": failure.as_ref().map(|(h, kept)| json!({
                "id": h.id, "kind": h.kind().as_str(), "status": status_name(h.status),
                "cause": cause(h), "evidence": kept,
            })),
            "resume": open.as_ref().map(|id| format!("cutover resume {id}")),
        }),
        || {
            let mut out = format!("target {target}\n");
            match &seen {
                Ok(o) => {
                    out.push_str(&format!("  definition {} × {}\n", o.image, o.replicas));
                    if let Some(d) = definition_digest(o)
                        && o.image.digest().is_none()
                    {
                        out.push_str(&format!("  digest     {d}\n"));
                    }
                    out.push_str(&format!(
                        "  replicas   {}/{} ready\n",
                        o.ready_of(&o.image),
                        o.replicas
                    ));
                    let differences = differences(o);
                    if differences.is_empty() {
                        out.push_str("  running    as defined\n");
                    } else {
                        out.push_str(
                            "  running    NOT as defined: what runs differs from the definition\n",
                        );
                        for v in versions(o) {
                            out.push_str(&format!("    {}\n", v.describe()));
                        }
                        for d in &differences {
                            out.push_str(&format!("    ! {d}\n"));
                        }
                    }
                }
                Err(e) => out.push_str(&format!("  deployment: cannot observe: {}\n", e.report())),
            }
            match &lock {
                Some(l) if l.is_live(stale) => out.push_str(&format!("  lock       {l}\n")),
                Some(l) => out.push_str(&format!(
                    "  lock       held by an interrupted or failed run: {l}\n  next       cutover resume {}\n",
                    l.holder.run
                )),
                None => out.push_str("  lock       free\n"),
            }
            if let Some(h) = &last {
                out.push_str(&format!(
                    "  last run   {} {} {}\n",
                    h.id,
                    h.kind().as_str(),
                    status_name(h.status)
                ));
            }
            if let Some((h, kept)) = &failure {
                out.push_str(&format!(
                    "  last failure {} {} {}\n",
                    h.id,
                    h.kind().as_str(),
                    status_name(h.status)
                ));
                if let Some(c) = cause(h) {
                    out.push_str(&format!("    cause: {c}\n"));
                }
                for e in kept {
                    out.push_str(&evidence(e, STATUS_LINES));
                }
                if !kept.is_empty() {
                    out.push_str(&format!("    all of it: cutover history --run {}\n", h.id));
                }
            }
            out
        },
    );
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use cutover_core::Instance;

    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn instance(id: &str, image: &str, digest: &str, running: bool) -> Instance {
        Instance {
            id: id.into(),
            uid: None,
            location: String::new(),
            image: image.parse().unwrap(),
            digest: Some(digest.into()),
            running,
            ready: running,
        }
    }

    fn seen(image: &str, replicas: u32, instances: Vec<Instance>) -> Observed {
        Observed {
            image: image.parse().unwrap(),
            replicas,
            instances,
        }
    }

    #[test]
    fn a_deployment_as_defined_has_no_differences() {
        let o = seen(
            "r/app:1.0.0",
            2,
            vec![
                instance("a", "r/app:1.0.0", A, true),
                instance("b", "r/app:1.0.0", A, true),
            ],
        );
        assert!(differences(&o).is_empty());
        assert_eq!(definition_digest(&o).as_deref(), Some(A));
    }

    #[test]
    fn an_old_tag_restarted_beside_a_new_definition_is_named_with_its_own_digest() {
        // The definition names 1.1.0 (pinned to B); Compose restarted a 1.0.0 container.
        let o = seen(
            &format!("r/app:1.1.0@{B}"),
            1,
            vec![instance("a", "r/app:1.0.0", A, true)],
        );
        assert_eq!(definition_digest(&o).as_deref(), Some(B));
        let d = differences(&o);
        assert!(
            d.iter()
                .any(|s| s.contains("1 instance(s) run r/app:1.0.0 (sha256:aaa")),
            "{d:?}"
        );
        assert!(d.iter().any(|s| s.contains("0 of the 1")), "{d:?}");
    }

    #[test]
    fn mixed_versions_and_a_crash_loop_are_counted_per_version() {
        let o = seen(
            "r/app:1.1.0",
            3,
            vec![
                instance("a", "r/app:1.1.0", B, false),
                instance("b", "r/app:1.0.0", A, true),
                instance("c", "r/app:1.0.0", A, true),
            ],
        );
        // No digest for 1.1.0 taken from the 1.0.0 instances.
        assert_eq!(definition_digest(&o).as_deref(), Some(B));
        let v = versions(&o);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].running, v[0].stopped), (0, 1));
        assert_eq!((v[1].running, v[1].ready), (2, 2));
        let d = differences(&o);
        assert!(
            d.iter()
                .any(|s| s.contains("2 instance(s) run r/app:1.0.0")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|s| s.contains("1 instance(s) of r/app:1.1.0 exited")),
            "{d:?}"
        );
    }

    #[test]
    fn instances_of_the_definition_s_tag_that_disagree_give_no_digest() {
        let o = seen(
            "r/app:1.1.0",
            2,
            vec![
                instance("a", "r/app:1.1.0", A, true),
                instance("b", "r/app:1.1.0", B, true),
            ],
        );
        assert_eq!(definition_digest(&o), None);
    }
}
