//! `cutover unlock --force`.

use cutover_core::{Engine, Error};
use serde_json::json;

use super::Outcome;
use crate::exit;
use crate::render::Renderer;

pub(super) async fn unlock(engine: &Engine, force: bool, r: &Renderer) -> Outcome {
    if !force {
        return Err(Error::invalid(
            "unlock needs --force: removing the lock of a run that is still working, or that was interrupted mid-upgrade, lets another run change a half-changed deployment. Prefer `cutover resume`",
        )
        .into());
    }
    let removed = engine.force_unlock().await?;
    r.document(
        json!({ "command": "unlock", "removed": removed.as_ref().map(|l| l.holder.run.clone()) }),
        || match &removed {
            Some(l) => format!(
                "removed the lock of {}. If that run was interrupted, the deployment may be half-changed: check `cutover status`\n",
                l.holder
            ),
            None => "no lock was held\n".into(),
        },
    );
    Ok(exit::SUCCESS)
}
