//! `cutover plan`: the preview of an upgrade, rendered.

use cutover_core::preview::{PREFLIGHT_STOP, Preview};
use cutover_core::{BackupMode, Engine, Error, Plan};
use serde_json::json;

use super::Outcome;
use crate::args::{BackupChoice, UpgradeArgs};
use crate::config::Config;
use crate::exit;
use crate::render::{Renderer, seconds};

pub(super) fn upgrade_plan(config: &Config, args: &UpgradeArgs) -> Outcome<Plan> {
    let to = config
        .image_with_tag(&args.to)
        .map_err(|e| Error::invalid(format!("--to {:?}: {}", args.to, e.message())))?;
    Ok(Plan::Upgrade {
        to,
        backup: match args.backup {
            BackupChoice::Offline => BackupMode::Offline,
            BackupChoice::Online => BackupMode::Online,
            BackupChoice::Skip => BackupMode::Skip,
        },
        replicas: args.replicas.or(config.app.replicas),
        allow_downgrade: args.allow_downgrade,
        hooks: config.hook_commands().points(),
    })
}

pub(super) async fn plan(
    config: &Config,
    engine: &Engine,
    args: &UpgradeArgs,
    r: &Renderer,
) -> Outcome {
    let plan = upgrade_plan(config, args)?;
    let Plan::Upgrade { to, replicas, .. } = &plan else {
        unreachable!("upgrade_plan builds an upgrade")
    };
    let Preview {
        seen,
        checks,
        steps,
        downtime_estimate_ms: estimate_ms,
        warnings,
    } = engine.preview(&plan).await?;
    let step_docs: Vec<_> = steps
        .iter()
        .map(|e| {
            json!({
                "step": e.step.as_str(),
                "about": cutover_core::engine::about(e),
                "downtime": Preview::is_downtime(e.step),
            })
        })
        .collect();
    r.document(
        json!({
            "command": "plan",
            "from": seen.image.to_string(),
            "to": to.to_string(),
            "replicas": replicas.unwrap_or(seen.replicas),
            "steps": step_docs,
            "downtime_estimate_ms": estimate_ms,
            "checks": checks.iter().map(|c| match &c.result {
                Ok(detail) => json!({ "check": c.name, "passed": true, "detail": detail }),
                Err(e) => json!({ "check": c.name, "passed": false, "error": e.report() }),
            }).collect::<Vec<_>>(),
            "warnings": warnings,
        }),
        || {
            let mut out = format!(
                "upgrade {} from {} ({} replicas) to {to}\n\n",
                config.app.name, seen.image, seen.replicas
            );
            for (i, e) in steps.iter().enumerate() {
                let mark = if Preview::is_downtime(e.step) {
                    "▼"
                } else {
                    " "
                };
                out.push_str(&format!(
                    "{:>3}. {mark} {:<17} {}\n",
                    i + 1,
                    e.step.as_str(),
                    cutover_core::engine::about(e)
                ));
            }
            out.push_str(
                "\npreflight checks (what the upgrade checks before it changes anything):\n",
            );
            for c in &checks {
                let (mark, text) = match &c.result {
                    Ok(detail) => ("ok", detail.clone()),
                    Err(e) => ("FAILED", e.report()),
                };
                out.push_str(&format!("  {mark:<6} {:<22} {text}\n", c.name));
            }
            out.push_str(&format!(
                "\ndowntime (▼, from stop until the leader is healthy): {}\n",
                estimate_ms.map_or(
                    "unknown until a first upgrade is recorded".to_string(),
                    |ms| { format!("about {} (from the last upgrade)", seconds(ms)) }
                )
            ));
            // A failed check is shown above; the warnings repeat it only for JSON readers.
            let stops = checks.iter().filter(|c| !c.is_ok()).count();
            if stops > 0 {
                out.push_str(&format!(
                    "warning: the upgrade would stop in preflight: {stops} check(s) FAILED above\n"
                ));
            }
            for w in warnings.iter().filter(|w| !w.starts_with(PREFLIGHT_STOP)) {
                out.push_str(&format!("warning: {w}\n"));
            }
            out
        },
    );
    Ok(exit::SUCCESS)
}
