//! What an aborted run left behind: the deployment observed after the abort, compared
//! with what preflight saw, so that "runs as before" is said only when it is true.

use crate::driver::{Instance, Observed};
use crate::machine::Baseline;

/// How the deployment `now` differs from `before`, one human line per difference; empty
/// when it is as before.
///
/// Readiness is not compared (instances started again may still be warming up); the
/// definition, the replica count and, for each instance, its incarnation (`uid`), image,
/// digest and whether it runs are. A baseline journaled without instances (older
/// journals) compares the definition only.
pub(crate) fn differences(before: &Baseline, now: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    if now.image != before.image {
        out.push(format!(
            "the definition names {} (it named {})",
            now.image, before.image
        ));
    }
    if now.replicas != before.replicas {
        out.push(format!(
            "the definition asks for {} instance(s) (it asked for {})",
            now.replicas, before.replicas
        ));
    }
    if before.instances.is_empty() && before.replicas > 0 {
        return out;
    }
    for was in &before.instances {
        match now.instances.iter().find(|i| i.id == was.id) {
            None => out.push(format!("instance {} is gone", was.id)),
            Some(is) => out.extend(instance_changes(was, is)),
        }
    }
    for is in &now.instances {
        if !before.instances.iter().any(|i| i.id == is.id) {
            out.push(format!(
                "instance {} is new ({}, {})",
                is.id,
                is.image,
                running(is.running)
            ));
        }
    }
    out
}

fn running(yes: bool) -> &'static str {
    if yes { "running" } else { "stopped" }
}

fn instance_changes(was: &Instance, is: &Instance) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (&was.uid, &is.uid)
        && a != b
    {
        out.push(format!(
            "instance {} was recreated (it is not the one that ran before)",
            is.id
        ));
    }
    if is.image != was.image {
        out.push(format!(
            "instance {} runs {} (it ran {})",
            is.id, is.image, was.image
        ));
    } else if let (Some(a), Some(b)) = (&was.digest, &is.digest)
        && a != b
    {
        out.push(format!(
            "instance {} runs image content {b} (it ran {a})",
            is.id
        ));
    }
    if is.running != was.running {
        out.push(format!(
            "instance {} is {} (it was {})",
            is.id,
            running(is.running),
            running(was.running)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageRef;

    fn img(tag: &str) -> ImageRef {
        format!("registry.test/app:{tag}").parse().unwrap()
    }

    fn instance(id: &str, uid: &str, tag: &str, running: bool) -> Instance {
        Instance {
            id: id.into(),
            uid: Some(uid.into()),
            location: String::new(),
            image: img(tag),
            digest: Some(format!("sha256:{tag}")),
            running,
            ready: running,
        }
    }

    fn before() -> Baseline {
        Baseline {
            image: img("1.0.0"),
            replicas: 2,
            instances: vec![
                instance("app-1", "a", "1.0.0", true),
                instance("app-2", "b", "1.0.0", false),
            ],
            digest: None,
        }
    }

    fn observed(instances: Vec<Instance>) -> Observed {
        Observed {
            image: img("1.0.0"),
            replicas: 2,
            instances,
        }
    }

    #[test]
    fn the_same_deployment_has_no_difference_even_while_warming_up() {
        let mut warming = before().instances;
        warming[0].ready = false;
        assert_eq!(
            differences(&before(), &observed(warming)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_kind_of_change_is_named() {
        let now = Observed {
            image: img("1.1.0"),
            replicas: 3,
            instances: vec![
                instance("app-1", "z", "1.0.0", true),
                instance("app-3", "c", "1.1.0", true),
            ],
        };
        let found = differences(&before(), &now);
        let expected = [
            "the definition names registry.test/app:1.1.0 (it named registry.test/app:1.0.0)",
            "the definition asks for 3 instance(s) (it asked for 2)",
            "instance app-1 was recreated (it is not the one that ran before)",
            "instance app-2 is gone",
            "instance app-3 is new (registry.test/app:1.1.0, running)",
        ];
        assert_eq!(found, expected);

        let mut stopped = before().instances;
        stopped[0].running = false;
        stopped[1].digest = Some("sha256:other".into());
        assert_eq!(
            differences(&before(), &observed(stopped)),
            [
                "instance app-1 is stopped (it was running)",
                "instance app-2 runs image content sha256:other (it ran sha256:1.0.0)"
            ]
        );
    }

    #[test]
    fn an_older_baseline_without_instances_compares_the_definition() {
        let mut old = before();
        old.instances.clear();
        assert!(differences(&old, &observed(vec![])).is_empty());
        let mut moved = observed(vec![]);
        moved.replicas = 1;
        assert_eq!(differences(&old, &moved).len(), 1);
    }
}
