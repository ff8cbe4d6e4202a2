use proptest::prelude::*;

use super::*;

fn img(tag: &str) -> ImageRef {
    format!("registry.test/app:{tag}").parse().unwrap()
}

fn upgrade(backup: BackupMode) -> Plan {
    Plan::Upgrade {
        to: img("1.1.0"),
        backup,
        replicas: Some(3),
        allow_downgrade: false,
        hooks: HookPoints::default(),
    }
}

fn seen() -> Baseline {
    Baseline {
        image: img("1.0.0"),
        replicas: 3,
        instances: Vec::new(),
        digest: None,
    }
}

/// A plausible successful output for an action.
fn success(action: &Action) -> Output {
    match action {
        Action::Preflight => Output::Observed(seen()),
        Action::Pull(image) => Output::Pulled(Pulled {
            image: image.clone(),
            digest: None,
        }),
        Action::Snapshot => Output::Snapshot(Snapshot {
            driver: "test".into(),
            image: img("1.0.0"),
            replicas: 3,
            data: serde_json::Value::Null,
        }),
        Action::Backup { .. } => Output::Backup(BackupRef {
            id: "b-1".parse().unwrap(),
            bytes: 1,
        }),
        Action::Prune { .. } => Output::Pruned {
            deleted: Vec::new(),
            swept: Vec::new(),
            kept: Vec::new(),
        },
        _ => Output::Done,
    }
}

fn fail() -> Failure {
    Failure {
        kind: ErrorKind::Other,
        message: "boom".into(),
        subject: None,
        evidence: Vec::new(),
        nothing_changed: false,
    }
}

#[test]
fn preview_lists_the_offline_upgrade_in_order() {
    let steps: Vec<Step> = Run::new(upgrade(BackupMode::Offline))
        .preview(&seen())
        .into_iter()
        .map(|e| e.step)
        .collect();
    use Step::*;
    assert_eq!(
        steps,
        [
            Preflight,
            Lock,
            Pull,
            Snapshot,
            Stop,
            Backup,
            SetImage,
            StartLeader,
            AwaitLeader,
            ScaleOut,
            AwaitAll,
            Release,
            Prune,
            Unlock
        ]
    );
}

const ALL_HOOKS: HookPoints = HookPoints {
    before_stop: true,
    after_leader: true,
    on_rollback: true,
    after_run: true,
};

fn with_hooks(plan: Plan, points: HookPoints) -> Plan {
    match plan {
        Plan::Upgrade {
            to,
            backup,
            replicas,
            allow_downgrade,
            ..
        } => Plan::Upgrade {
            to,
            backup,
            replicas,
            allow_downgrade,
            hooks: points,
        },
        other => other,
    }
}

/// The steps a run performs when `failing` fails (the first time) and every other step
/// succeeds, and its report.
fn run_failing(plan: Plan, failing: &[Step], error: Failure) -> (Vec<Effect>, Report) {
    let mut run = Run::new(plan);
    let mut performed = Vec::new();
    loop {
        match run.next() {
            Next::Stop(report) => return (performed, report),
            Next::Perform(effect) => {
                let result = if failing.contains(&effect.step)
                    && !performed.iter().any(|e: &Effect| e.step == effect.step)
                {
                    Err(error.clone())
                } else {
                    Ok(success(&effect.action))
                };
                performed.push(effect);
                run = step(run, Input::Completed(result)).0;
            }
        }
    }
}

fn steps_of(effects: &[Effect]) -> Vec<Step> {
    effects.iter().map(|e| e.step).collect()
}

#[test]
fn preview_lists_the_hooks_where_they_run() {
    use Step::*;
    let steps = |mode| -> Vec<Step> {
        steps_of(&Run::new(with_hooks(upgrade(mode), ALL_HOOKS)).preview(&seen()))
    };
    assert_eq!(
        steps(BackupMode::Offline),
        [
            Preflight,
            Lock,
            Pull,
            Snapshot,
            HookBeforeStop,
            Stop,
            Backup,
            SetImage,
            StartLeader,
            AwaitLeader,
            HookAfterLeader,
            ScaleOut,
            AwaitAll,
            Release,
            Prune,
            HookAfterRun,
            Unlock
        ]
    );
    let online = steps(BackupMode::Online);
    assert_eq!(online[4..7], [Backup, HookBeforeStop, Stop]);
    let skip = steps(BackupMode::Skip);
    assert_eq!(skip[4..6], [HookBeforeStop, Stop]);
    // Only the configured points.
    let only_after_run = steps_of(
        &Run::new(with_hooks(
            upgrade(BackupMode::Offline),
            HookPoints {
                after_run: true,
                ..HookPoints::default()
            },
        ))
        .preview(&seen()),
    );
    assert_eq!(
        only_after_run
            .iter()
            .filter(|s| s.as_str().starts_with("hook_"))
            .collect::<Vec<_>>(),
        [&HookAfterRun]
    );
}

#[test]
fn a_failed_before_stop_aborts_with_nothing_stopped() {
    for mode in [BackupMode::Offline, BackupMode::Online, BackupMode::Skip] {
        let (effects, report) = run_failing(
            with_hooks(upgrade(mode), ALL_HOOKS),
            &[Step::HookBeforeStop],
            fail(),
        );
        let steps = steps_of(&effects);
        assert_eq!(report.outcome, Outcome::Aborted, "{mode:?}: {steps:?}");
        assert_eq!(report.cause, Some(fail()));
        let after = &steps[steps
            .iter()
            .position(|s| *s == Step::HookBeforeStop)
            .unwrap()..];
        assert_eq!(
            after,
            [Step::HookBeforeStop, Step::HookAfterRun, Step::Unlock],
            "{mode:?}"
        );
        let outcome = effects.iter().find_map(|e| match &e.action {
            Action::Hook(call) if call.hook == Hook::AfterRun => Some(call.outcome),
            _ => None,
        });
        assert_eq!(outcome, Some(Some(Outcome::Aborted)));
        // The online backup was taken: the report keeps it.
        assert_eq!(
            report.backup.is_some(),
            mode == BackupMode::Online,
            "{mode:?}"
        );
    }
}

#[test]
fn best_effort_hooks_fail_and_the_run_goes_on() {
    let plan = with_hooks(upgrade(BackupMode::Offline), ALL_HOOKS);
    let (effects, report) = run_failing(
        plan.clone(),
        &[Step::HookAfterLeader, Step::HookAfterRun],
        fail(),
    );
    assert_eq!(
        report.outcome,
        Outcome::Upgraded,
        "{:?}",
        steps_of(&effects)
    );
    assert!(steps_of(&effects).ends_with(&[Step::HookAfterRun, Step::Unlock]));

    // A rolled-back upgrade runs on_rollback, then after_run, both told the outcome.
    let (effects, report) = run_failing(
        plan.clone(),
        &[Step::AwaitAll, Step::HookOnRollback],
        fail(),
    );
    assert_eq!(report.outcome, Outcome::RolledBack);
    let calls: Vec<(Hook, Option<Outcome>, bool)> = effects
        .iter()
        .filter_map(|e| match &e.action {
            Action::Hook(c) => Some((c.hook, c.outcome, c.backup.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        [
            (Hook::BeforeStop, None, false),
            (Hook::AfterLeader, None, true),
            (Hook::OnRollback, Some(Outcome::RolledBack), true),
            (Hook::AfterRun, Some(Outcome::RolledBack), true),
        ]
    );

    // Cancelling after_leader rolls back, as cancelling any step on the way forward.
    let cancelled = Failure {
        kind: ErrorKind::Cancelled,
        ..fail()
    };
    let (_, report) = run_failing(plan, &[Step::HookAfterLeader], cancelled);
    assert_eq!(report.outcome, Outcome::RolledBack);
}

#[test]
fn plans_journaled_before_hooks_read_none_and_hooks_round_trip() {
    let old = r#"{"kind":"upgrade","to":"registry.test/app:1.1.0","backup":"offline","replicas":3,"allow_downgrade":false}"#;
    let plan: Plan = serde_json::from_str(old).unwrap();
    assert_eq!(plan, upgrade(BackupMode::Offline));
    // Without hooks the plan is written as before.
    assert_eq!(serde_json::to_string(&plan).unwrap(), old);
    let hooked = with_hooks(upgrade(BackupMode::Offline), ALL_HOOKS);
    let json = serde_json::to_string(&hooked).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), hooked);
    let partial: Plan =
        serde_json::from_str(&old.replace('}', r#","hooks":{"after_run":true}}"#)).unwrap();
    assert_eq!(
        partial,
        with_hooks(
            upgrade(BackupMode::Offline),
            HookPoints {
                after_run: true,
                ..HookPoints::default()
            }
        )
    );
}

#[test]
fn a_failure_before_stop_aborts_and_after_set_image_rolls_back() {
    let cases = [
        (Step::Pull, Outcome::Aborted, false),
        (Step::Backup, Outcome::Aborted, true),
        (Step::AwaitLeader, Outcome::RolledBack, true),
    ];
    for (failing, outcome, restarts_or_restores) in cases {
        let mut run = Run::new(upgrade(BackupMode::Offline));
        let mut performed = Vec::new();
        let mut failed = false;
        let report = loop {
            match run.next() {
                Next::Stop(report) => break report,
                Next::Perform(effect) => {
                    performed.push(effect.step);
                    let result = if effect.step == failing && !failed {
                        failed = true;
                        Err(fail())
                    } else {
                        Ok(success(&effect.action))
                    };
                    run = step(run, Input::Completed(result)).0;
                }
            }
        };
        assert_eq!(report.outcome, outcome, "failing {failing}: {performed:?}");
        let repaired =
            performed.contains(&Step::RestartOld) || performed.contains(&Step::RestoreData);
        assert_eq!(
            repaired, restarts_or_restores,
            "failing {failing}: {performed:?}"
        );
        assert_eq!(performed.last(), Some(&Step::Unlock), "{performed:?}");
    }
}

const PULLED: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const RAN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The effects of a run in which every step succeeds, preflight observing `seen` and
/// pull reporting `digest`.
fn effects_with(plan: Plan, seen: Baseline, digest: Option<&str>) -> Vec<Effect> {
    let mut run = Run::new(plan);
    let mut effects = Vec::new();
    while let Next::Perform(effect) = run.next() {
        let output = match &effect.action {
            Action::Preflight => Output::Observed(seen.clone()),
            Action::Pull(image) => Output::Pulled(Pulled {
                image: image.clone(),
                digest: digest.map(str::to_owned),
            }),
            other => success(other),
        };
        effects.push(effect);
        run = step(run, Input::Completed(Ok(output))).0;
    }
    effects
}

#[test]
fn the_pulled_digest_pins_set_image_and_readiness_and_the_backup_names_what_ran() {
    let seen = Baseline {
        digest: Some(RAN.into()),
        ..seen()
    };
    let effects = effects_with(upgrade(BackupMode::Offline), seen, Some(PULLED));
    let pinned = img("1.1.0").with_digest(PULLED).unwrap();
    let actions: Vec<&Action> = effects.iter().map(|e| &e.action).collect();
    assert!(
        actions.contains(&&Action::SetImage(pinned.clone())),
        "{actions:?}"
    );
    let awaited: Vec<&ImageRef> = actions
        .iter()
        .filter_map(|a| match a {
            Action::AwaitReady { image, .. } => Some(image),
            _ => None,
        })
        .collect();
    assert_eq!(awaited, [&pinned, &pinned], "{actions:?}");
    let backed_up: Vec<&ImageRef> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Backup { image, .. } => Some(image),
            _ => None,
        })
        .collect();
    assert_eq!(backed_up, [&img("1.0.0").with_digest(RAN).unwrap()]);
    assert!(
        actions.contains(&&Action::Pull(img("1.1.0"))),
        "pull asks for the tag"
    );
}

#[test]
fn without_a_digest_the_tag_is_used_as_before() {
    let effects = effects_with(upgrade(BackupMode::Online), seen(), None);
    let actions: Vec<&Action> = effects.iter().map(|e| &e.action).collect();
    assert!(
        actions.contains(&&Action::SetImage(img("1.1.0"))),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::AwaitReady { image, replicas: 3 } if *image == img("1.1.0")
    )));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Backup { image, .. } if *image == img("1.0.0")
    )));
}

#[test]
fn a_digest_that_cannot_pin_the_target_aborts_before_any_change() {
    let effects = effects_with(upgrade(BackupMode::Offline), seen(), Some("md5:abc"));
    let steps: Vec<Step> = effects.iter().map(|e| e.step).collect();
    assert_eq!(
        steps,
        [Step::Preflight, Step::Lock, Step::Pull, Step::Unlock]
    );
    let mut run = Run::new(upgrade(BackupMode::Offline));
    for output in [
        Output::Observed(seen()),
        Output::Done,
        Output::Pulled(Pulled {
            image: img("1.1.0"),
            digest: Some("md5:abc".into()),
        }),
        Output::Done,
    ] {
        run = step(run, Input::Completed(Ok(output))).0;
    }
    let Next::Stop(report) = run.next() else {
        panic!("the run goes on: {run:?}");
    };
    assert_eq!(report.outcome, Outcome::Aborted);
    let cause = report.cause.unwrap().message;
    assert!(
        cause.contains("md5:abc") && cause.contains("nothing was changed"),
        "{cause}"
    );
}

/// Journals and states written before digests were recorded: a baseline without
/// `digest` and a `Prepared` without `digest` read as "no digest", and the run goes on
/// with the tag.
#[test]
fn journals_and_states_from_before_digests_still_fold() {
    let observed: Output = serde_json::from_str(
        r#"{"output":"observed","image":"registry.test/app:1.0.0","replicas":3}"#,
    )
    .unwrap();
    assert_eq!(observed, Output::Observed(seen()));
    let mut run = Run::new(upgrade(BackupMode::Offline));
    let old_journal = [
        r#"{"output":"observed","image":"registry.test/app:1.0.0","replicas":3}"#,
        r#"{"output":"done"}"#,
        r#"{"output":"pulled","image":"registry.test/app:1.1.0","digest":null}"#,
        r#"{"output":"snapshot","driver":"test","image":"registry.test/app:1.0.0","replicas":3,"data":null}"#,
        r#"{"output":"done"}"#,
        r#"{"output":"backup","id":"b-1","bytes":1}"#,
    ];
    for entry in old_journal {
        let output: Output = serde_json::from_str(entry).unwrap();
        run = step(run, Input::Completed(Ok(output))).0;
    }
    let Next::Perform(effect) = run.next() else {
        panic!("{run:?}");
    };
    assert_eq!(effect.action, Action::SetImage(img("1.1.0")));

    // A serialised state of that time (Base without `from_digest`, Prepared without
    // `digest`) reads too, and pins nothing.
    let mut json = serde_json::to_value(&run).unwrap();
    let prep = &mut json["phase"]["SetImage"]["prep"];
    prep.as_object_mut().unwrap().remove("digest").unwrap();
    prep["base"]
        .as_object_mut()
        .unwrap()
        .remove("from_digest")
        .unwrap();
    let old: Run = serde_json::from_value(json).unwrap();
    assert_eq!(old, run);
}

#[test]
fn the_baseline_digest_is_the_one_every_instance_of_the_tag_runs() {
    use crate::driver::Instance;
    let instance = |image: ImageRef, digest: Option<&str>| Instance {
        id: "i".into(),
        uid: None,
        location: String::new(),
        image,
        digest: digest.map(str::to_owned),
        running: true,
        ready: true,
    };
    let observed = |image: ImageRef, instances| Observed {
        image,
        replicas: 2,
        instances,
    };
    let old = img("1.0.0");
    let pinned = old.with_digest(RAN).unwrap();
    let cases = [
        (
            observed(
                old.clone(),
                vec![
                    instance(old.clone(), Some(RAN)),
                    instance(old.clone(), Some(RAN)),
                ],
            ),
            Some(RAN),
        ),
        (
            observed(
                old.clone(),
                vec![
                    instance(old.clone(), Some(RAN)),
                    instance(old.clone(), Some(PULLED)),
                ],
            ),
            None,
        ),
        (
            observed(
                old.clone(),
                vec![
                    instance(old.clone(), Some(RAN)),
                    instance(old.clone(), None),
                ],
            ),
            None,
        ),
        (
            observed(old.clone(), vec![instance(pinned.clone(), None)]),
            Some(RAN),
        ),
        (observed(pinned.clone(), vec![]), Some(RAN)),
        (observed(old.clone(), vec![]), None),
    ];
    for (seen, digest) in cases {
        assert_eq!(Baseline::of(&seen).digest.as_deref(), digest, "{seen:?}");
    }

    // Waiting for a pinned image: an instance of its tag with another digest, or with
    // none that can be known, has not started what was pulled.
    let target = img("1.1.0").with_digest(PULLED).unwrap();
    let seen = observed(
        old,
        vec![
            instance(target.clone(), None),
            instance(img("1.1.0"), Some(PULLED)),
            instance(img("1.1.0"), Some(RAN)),
            instance(img("1.1.0"), None),
        ],
    );
    assert_eq!(seen.ready_of(&target), 2);
    assert_eq!(seen.moved_from(&target).len(), 2);
    assert!(seen.moved_from(&img("1.1.0")).is_empty());
}

#[test]
fn a_pinned_definition_of_the_target_tag_is_already_running() {
    let pinned = img("1.1.0").with_digest(PULLED).unwrap();
    let refusal = refuse_upgrade(&pinned, &img("1.1.0"), false, 3).unwrap();
    assert!(refusal.message.contains("already runs"), "{refusal:?}");
    assert!(refuse_upgrade(&pinned, &img("1.2.0"), false, 3).is_none());
}

/// One phase of every variant, with what a run in it answers today: whether it may be
/// cancelled, and whether the deployment may have been changed. The table was taken
/// from the hand-kept lists that [`Phase::stage`] replaced, so the stages keep them.
fn every_phase() -> Vec<(Phase, bool, bool)> {
    let base = Base {
        from: img("1.0.0"),
        old_replicas: 3,
        replicas: 3,
        from_digest: None,
    };
    let pulled = Pulled {
        image: img("1.1.0"),
        digest: None,
    };
    let prep = Prepared {
        base: base.clone(),
        to: img("1.1.0"),
        digest: None,
        snapshot: Snapshot {
            driver: "test".into(),
            image: img("1.0.0"),
            replicas: 3,
            data: serde_json::Value::Null,
        },
        safety: None,
    };
    let backup = BackupRef {
        id: "b-0".parse().unwrap(),
        bytes: 1,
    };
    let armed = Armed {
        prep: prep.clone(),
        protection: Protection::Backup(backup.clone()),
    };
    let safe = Prepared {
        safety: Some(backup),
        ..prep.clone()
    };
    let ending = end(Outcome::Aborted, None, None);
    let closing = Closing {
        base: base.clone(),
        digest: None,
        ending: end(Outcome::RolledBack, None, None),
    };
    let id: BackupId = "b-1".parse().unwrap();
    use Phase as P;
    vec![
        (P::Preflight, true, false),
        (P::Lock(base.clone()), true, false),
        (P::Pull(base.clone()), true, false),
        (P::Snapshot(base.clone(), pulled), true, false),
        (P::BackupOnline(prep.clone()), true, false),
        // Its stop changes the deployment, as the online and skip-mode stop does.
        (P::StopThenBackup(prep.clone()), true, true),
        (P::BackupOffline(prep.clone()), true, true),
        (P::HookBeforeStop(prep.clone()), true, false),
        (P::HookBeforeStopArmed(armed.clone()), true, false),
        (P::StopAfterBackup(armed.clone()), true, true),
        (P::SetImage(armed.clone()), true, true),
        (P::StartLeader(armed.clone()), true, true),
        (P::AwaitLeader(armed.clone()), true, true),
        (P::HookAfterLeader(armed.clone()), true, true),
        (P::ScaleOut(armed.clone()), true, true),
        (P::AwaitAll(armed.clone()), true, true),
        (P::Release(armed.clone()), false, true),
        (P::Prune(armed.clone()), false, true),
        (P::RestartOld(prep.clone(), ending.clone()), false, true),
        (P::RollbackPull(armed.clone()), true, false),
        (P::RollbackStop(armed.clone(), None), false, true),
        (P::RestoreData(armed.clone(), None), false, true),
        (P::RestoreDefinition(armed.clone(), None), false, true),
        (P::AwaitRestored(armed.clone(), None), false, true),
        (P::TakeBackup(base.clone()), true, false),
        (P::RollbackSafety(armed.clone(), None), false, true),
        (
            P::RollbackRestart(armed.clone(), ending.clone()),
            false,
            true,
        ),
        (P::RestoreSnapshot(base.clone(), id.clone()), true, false),
        (P::RestoreStop(prep.clone(), id.clone()), false, true),
        (P::RestoreSafety(prep.clone(), id.clone()), false, true),
        (P::RestoreBackup(prep.clone(), id.clone()), false, true),
        (P::PutBack(safe, fail()), false, true),
        (P::RestoreBringBack(prep.clone()), false, true),
        (P::RestoreAwait(prep.clone()), false, true),
        (P::RestoreRelease(prep.clone()), false, true),
        (P::CheckBackup(id.clone(), false), true, false),
        (P::PruneBackups(2), false, false),
        (P::HookOnRollback(closing.clone()), false, true),
        (P::HookAfterRun(closing), false, true),
        (P::Unlock(ending.clone()), false, true),
        (
            P::Failed {
                retry: Box::new(P::RollbackStop(armed, None)),
                step: Step::RollbackStop,
                error: fail(),
            },
            false,
            true,
        ),
        (P::Done(ending), false, true),
    ]
}

/// Both prunes are one action with one outcome, and an upgrade journaled before that,
/// whose prune finished `done`, still folds to upgraded.
#[test]
fn both_prunes_report_what_they_deleted_and_old_done_prunes_still_fold() {
    let prunes = |plan: Plan| -> Vec<Action> {
        effects_with(plan, seen(), None)
            .into_iter()
            .filter(|e| e.step == Step::Prune)
            .map(|e| e.action)
            .collect()
    };
    assert_eq!(
        prunes(upgrade(BackupMode::Offline)),
        [Action::Prune {
            keep: None,
            protect: Some("b-1".parse().unwrap()),
        }]
    );
    assert_eq!(
        prunes(Plan::Prune { keep: 2 }),
        [Action::Prune {
            keep: Some(2),
            protect: None,
        }]
    );

    let upgraded = |prune: &str| {
        let mut run = Run::new(upgrade(BackupMode::Offline));
        let journal = [
            r#"{"output":"observed","image":"registry.test/app:1.0.0","replicas":3}"#,
            r#"{"output":"done"}"#,
            r#"{"output":"pulled","image":"registry.test/app:1.1.0","digest":null}"#,
            r#"{"output":"snapshot","driver":"test","image":"registry.test/app:1.0.0","replicas":3,"data":null}"#,
            r#"{"output":"done"}"#,
            r#"{"output":"backup","id":"b-1","bytes":1}"#,
        ]
        .into_iter()
        .chain([r#"{"output":"done"}"#; 6])
        .chain([prune, r#"{"output":"done"}"#]);
        for entry in journal {
            let output: Output = serde_json::from_str(entry).unwrap();
            run = step(run, Input::Completed(Ok(output))).0;
        }
        match run.next() {
            Next::Stop(report) => report.outcome,
            Next::Perform(effect) => panic!("the run goes on: {effect:?}"),
        }
    };
    assert_eq!(upgraded(r#"{"output":"done"}"#), Outcome::Upgraded);
    assert_eq!(
        upgraded(r#"{"output":"pruned","deleted":["b-0"]}"#),
        Outcome::Upgraded
    );
}

/// Each kind of run's module ends its transitions with a catch-all for the phases of the
/// other kinds, which the compiler cannot check: every phase that performs a step must
/// therefore be seen to move on both a failure and a fitting success.
#[test]
fn every_phase_that_performs_a_step_moves_on_its_result() {
    let plan = with_hooks(upgrade(BackupMode::Offline), ALL_HOOKS);
    for (phase, ..) in every_phase() {
        let Next::Perform(effect) = next(&plan, &phase) else {
            continue;
        };
        let failed = advance(&plan, phase.clone(), Err(fail()));
        assert_ne!(failed, phase, "a failure of {:?}", effect.step);
        let done = advance(&plan, phase.clone(), Ok(success(&effect.action)));
        assert_ne!(done, phase, "a success of {:?}", effect.step);
    }
}

#[test]
fn cancellable_and_changed_are_what_the_hand_kept_lists_said() {
    let plan = with_hooks(upgrade(BackupMode::Offline), ALL_HOOKS);
    for (phase, cancellable, changed) in every_phase() {
        let run = Run {
            plan: plan.clone(),
            phase,
        };
        assert_eq!(run.is_cancellable(), cancellable, "{:?}", run.phase);
        assert_eq!(run.has_changed_deployment(), changed, "{:?}", run.phase);
        // What `Effect::is_best_effort` said before prune was one action: release,
        // unlock and an upgrade's prune, not a prune run's; and every hook but
        // `before_stop`.
        let best_effort = matches!(
            run.phase,
            Phase::Release(_)
                | Phase::RestoreRelease(_)
                | Phase::Prune(_)
                | Phase::Unlock(_)
                | Phase::HookAfterLeader(_)
                | Phase::HookOnRollback(_)
                | Phase::HookAfterRun(_)
        );
        assert_eq!(run.is_best_effort(), best_effort, "{:?}", run.phase);
    }
}

proptest! {
    /// Whatever the results, the machine (a) never starts the new image before a
    /// backup was recorded, unless skipped; (b) never scales up the new image between
    /// a stop and the end of the rollback; (c) stops or asks for a retry within a
    /// bounded number of steps; (d) survives a JSON round trip of its state.
    #[test]
    fn upgrade_invariants_hold_for_any_results(
        mode in prop_oneof![Just(BackupMode::Offline), Just(BackupMode::Online), Just(BackupMode::Skip)],
        failures in prop::collection::vec(any::<bool>(), 0..40),
        hooked in any::<bool>(),
    ) {
        let plan = upgrade(mode);
        let mut run = Run::new(if hooked { with_hooks(plan, ALL_HOOKS) } else { plan });
        let mut backed_up = false;
        let mut rolling_back = false;
        let mut results = failures.into_iter();
        for _ in 0..100 {
            let json = serde_json::to_string(&run).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Run>(&json).unwrap(), &run);
            match run.next() {
                Next::Stop(report) => {
                    if report.outcome == Outcome::Failed {
                        prop_assert!(report.stuck_at.is_some());
                        run = step(run, Input::Retry).0;
                        continue;
                    }
                    prop_assert!(report.outcome.is_terminal());
                    return Ok(());
                }
                Next::Perform(effect) => {
                    if matches!(effect.step, Step::StartLeader | Step::ScaleOut) {
                        prop_assert!(backed_up || mode == BackupMode::Skip, "{:?} before a backup", effect.step);
                        prop_assert!(!rolling_back, "{:?} while rolling back", effect.step);
                    }
                    if effect.step == Step::RollbackStop {
                        rolling_back = true;
                    }
                    let ok = !results.next().unwrap_or(false);
                    if ok && effect.step == Step::Backup {
                        backed_up = true;
                    }
                    let result = if ok { Ok(success(&effect.action)) } else { Err(fail()) };
                    run = step(run, Input::Completed(result)).0;
                }
            }
        }
        prop_assert!(false, "the run did not settle in 100 steps");
    }
}

#[test]
fn a_restore_refused_before_it_changed_anything_restarts_the_old_instances_without_putting_back() {
    let plan = Plan::Restore {
        backup: "b-1".parse().unwrap(),
        safety: true,
    };
    let refused = Failure {
        nothing_changed: true,
        ..fail()
    };
    let (effects, report) = run_failing(plan.clone(), &[Step::RestoreData], refused);
    let steps = steps_of(&effects);
    assert!(!steps.contains(&Step::PutBack), "{steps:?}");
    let restart = steps.iter().position(|s| *s == Step::RestartOld);
    assert!(
        restart > steps.iter().position(|s| *s == Step::RestoreData),
        "{steps:?}"
    );
    assert_eq!(report.outcome, Outcome::Aborted);
    assert!(report.safety.is_some(), "the safety backup is still named");

    // A failure that changed the data puts the safety backup back first.
    let (effects, report) = run_failing(plan, &[Step::RestoreData], fail());
    let steps = steps_of(&effects);
    let put_back = steps.iter().position(|s| *s == Step::PutBack);
    assert!(put_back.is_some(), "{steps:?}");
    assert!(steps.iter().position(|s| *s == Step::RestartOld) > put_back);
    assert_eq!(report.outcome, Outcome::Aborted);
}

#[test]
fn a_manual_rollback_that_changed_nothing_starts_the_stopped_release_again() {
    // seen() runs 1.1.0 (the release to roll back from); the snapshot is 1.0.0's.
    let plan = Plan::Rollback {
        snapshot: Snapshot {
            driver: "test".into(),
            image: img("1.0.0"),
            replicas: 3,
            data: serde_json::Value::Null,
        },
        backup: Some(BackupRef {
            id: "b-0".parse().unwrap(),
            bytes: 1,
        }),
        safety: true,
    };
    let refused = Failure {
        nothing_changed: true,
        ..fail()
    };
    // The restore refused before it touched the data, and the safety backup failing.
    for (failing, error) in [(Step::RestoreData, refused), (Step::SafetyBackup, fail())] {
        let (effects, report) = run_failing(plan.clone(), &[failing], error);
        let steps = steps_of(&effects);
        assert!(!steps.contains(&Step::RestoreDefinition), "{steps:?}");
        let restart = effects
            .iter()
            .find(|e| e.step == Step::RestartOld)
            .unwrap_or_else(|| panic!("no restart: {steps:?}"));
        assert_eq!(restart.action, Action::Scale(seen().replicas));
        assert!(
            steps.iter().position(|s| *s == Step::RestartOld)
                > steps.iter().position(|s| *s == failing)
        );
        assert_eq!(report.outcome, Outcome::Aborted, "{failing:?}");
    }

    // A restore that changed data is retried, as before: the run stops failed.
    let (_, report) = run_failing(plan, &[Step::RestoreData], fail());
    assert_eq!(report.outcome, Outcome::Failed);
}
