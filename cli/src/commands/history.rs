//! `cutover history`: past runs, one in detail with the lines its failed instances left.

use std::time::Duration;

use cutover_core::journal::{Entry, RunHeader, RunRecord, RunStatus};
use cutover_core::{Engine, Output};
use serde_json::json;

use super::Outcome;
use crate::exit;
use crate::render::{Renderer, seconds};

pub(crate) fn status_name(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running or interrupted",
        RunStatus::Stopped(o) => o.as_str(),
    }
}

pub(super) async fn history(
    engine: &Engine,
    limit: u32,
    run: Option<&str>,
    r: &Renderer,
) -> Outcome {
    let target = &engine.settings().target;
    let mut rows = Vec::new();
    let headers = match run {
        Some(id) => {
            match engine.run(id).await? {
                Some(record) if record.header.target == *target => vec![record.header],
                _ => {
                    return Err(cutover_core::Error::new(
                    cutover_core::ErrorKind::NotFound,
                    format!("no run {id:?} of {target} in the journal (`cutover history` lists runs)"),
                )
                .into());
                }
            }
        }
        None => engine.runs(limit).await?,
    };
    for header in headers {
        let Some(record) = engine.run(&header.id).await? else {
            continue;
        };
        rows.push(history_row(&header, &record));
    }
    let detailed = run.is_some();
    let human = || {
        let mut out = String::new();
        for row in &rows {
            out.push_str(&format!(
                "{}  {:<8} {:<22} {:>7}  backup {}\n",
                row["id"].as_str().unwrap_or(""),
                row["kind"].as_str().unwrap_or(""),
                row["status"].as_str().unwrap_or(""),
                row["millis"].as_u64().map_or("-".into(), seconds),
                row["backup"].as_str().unwrap_or("-"),
            ));
            if let Some(image) = row["pulled"]["image"].as_str() {
                let digest = row["pulled"]["digest"]
                    .as_str()
                    .unwrap_or("no digest reported");
                out.push_str(&format!("    pulled: {image} ({digest})\n"));
            }
            if detailed && let Some(steps) = row["steps"].as_array() {
                for step in steps {
                    out.push_str(&format!(
                        "    {} {:<18} {:>7}\n",
                        if step["failed"].as_bool() == Some(true) {
                            "✗"
                        } else {
                            "✓"
                        },
                        step["step"].as_str().unwrap_or(""),
                        step["millis"].as_u64().map_or("-".into(), seconds),
                    ));
                }
            }
            if let Some(c) = row["cause"].as_str() {
                out.push_str(&format!("    cause: {c}\n"));
            }
            let kept: Vec<cutover_core::InstanceLogs> =
                serde_json::from_value(row["evidence"].clone()).unwrap_or_default();
            for e in &kept {
                if detailed {
                    out.push_str(&crate::render::evidence(e, usize::MAX));
                } else {
                    let at = e.file.clone().unwrap_or_else(|| {
                        format!(
                            "the journal (`cutover history --run {}`)",
                            row["id"].as_str().unwrap_or("")
                        )
                    });
                    out.push_str(&format!("    logs of {}: {at}\n", e.instance));
                }
            }
        }
        if out.is_empty() {
            out.push_str("no runs recorded\n");
        }
        out
    };
    r.document(json!({ "command": "history", "runs": rows }), human);
    Ok(exit::SUCCESS)
}

/// One run as `history` shows it.
fn history_row(header: &RunHeader, record: &RunRecord) -> serde_json::Value {
    let total = header.ended_ms.map(|e| e.saturating_sub(header.started_ms));
    let backup = header
        .report
        .as_ref()
        .and_then(|rep| rep.backup.as_ref())
        .map(|b| b.id.to_string());
    // What `pull` resolved the target to: the digest the run pinned the definition to.
    let pulled = record.records.iter().find_map(|r| match &r.entry {
        Entry::Finished {
            output: Output::Pulled(p),
            ..
        } => Some(json!({ "image": p.image.to_string(), "digest": p.digest })),
        _ => None,
    });
    let steps: Vec<_> = record
        .step_durations()
        .into_iter()
        .map(|(s, ms, failed)| json!({ "step": s.as_str(), "millis": ms, "failed": failed }))
        .collect();
    json!({
        "id": header.id,
        "kind": header.kind().as_str(),
        "status": status_name(header.status),
        "started": cutover_core::event::timestamp(std::time::UNIX_EPOCH + Duration::from_millis(header.started_ms)),
        "millis": total,
        "backup": backup,
        "cause": header.report.as_ref().and_then(|rep| rep.cause.as_ref()).map(|c| c.message.clone()),
        "pulled": pulled,
        "steps": steps,
        "evidence": evidence_of(record),
    })
}

/// The logs of failed instances that a run's failed steps kept (the latest capture of
/// each instance, e.g. after a resumed step failed again).
pub(crate) fn evidence_of(record: &RunRecord) -> Vec<cutover_core::InstanceLogs> {
    let mut kept: Vec<cutover_core::InstanceLogs> = Vec::new();
    for r in &record.records {
        if let Entry::Failed { error, .. } = &r.entry {
            for e in &error.evidence {
                kept.retain(|k| k.instance != e.instance);
                kept.push(e.clone());
            }
        }
    }
    kept
}
