//! What the commands ask the engine besides runs: the deployment as it is now, the lock,
//! past runs, and forcing the lock away.
//!
//! A front end (the CLI, an embedder) reaches the driver and the journal only through
//! these and the runs, so every driver call is bounded by [`Settings::call_timeout`]
//! (see [`crate::engine`]) whichever command makes it.
//!
//! [`Settings::call_timeout`]: crate::Settings::call_timeout

use super::{Bounded, Engine};
use crate::check::Check;
use crate::driver::{Observed, Pulled};
use crate::event::EventSink;
use crate::journal::{LockInfo, RunHeader, RunRecord};
use crate::{ImageRef, Result};

impl Engine {
    /// The deployment as the driver observes it now.
    ///
    /// # Errors
    /// The driver's, or `Timeout` after `call_timeout`.
    pub async fn observe(&self) -> Result<Observed> {
        Bounded {
            what: "the driver's observe",
            limit: self.settings().call_timeout,
        }
        .run(self.driver().observe())
        .await
    }

    /// The target's lock, if a run holds it.
    ///
    /// # Errors
    /// The journal's.
    pub async fn lock_info(&self) -> Result<Option<LockInfo>> {
        self.journal().lock(&self.settings().target).await
    }

    /// The target's runs, newest first, at most `limit`.
    ///
    /// # Errors
    /// The journal's.
    pub async fn runs(&self, limit: u32) -> Result<Vec<RunHeader>> {
        self.journal().runs(&self.settings().target, limit).await
    }

    /// One run with its entries, if the journal has it.
    ///
    /// # Errors
    /// The journal's.
    pub async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        self.journal().run(id).await
    }

    /// Removes the target's lock whoever holds it — in the journal and, for a driver with
    /// the `lock` capability, in the backend — and returns what was removed. A run that is
    /// still working, or was interrupted mid-upgrade, is then unprotected: prefer
    /// [`Engine::resume`].
    ///
    /// # Errors
    /// The journal's; the driver's unlock (bounded by `call_timeout`).
    pub async fn force_unlock(&self) -> Result<Option<LockInfo>> {
        let removed = self
            .journal()
            .force_release(&self.settings().target)
            .await?;
        if let Some(info) = &removed
            && self.driver().capabilities().lock
        {
            Bounded {
                what: "the driver's unlock",
                limit: self.settings().call_timeout,
            }
            .run(self.driver().unlock(&info.holder))
            .await?;
        }
        Ok(removed)
    }

    /// Whether `image` can be pulled: the registry answers and the tag resolves. The image
    /// lands in the backend's image cache (as an upgrade's pull before its stop); no
    /// instance is touched.
    pub async fn pull_check(&self, image: &ImageRef) -> Check {
        let pulled: Result<Pulled> = Bounded {
            what: "the driver's pull",
            limit: self.settings().call_timeout,
        }
        .run(self.driver().pull(image, &EventSink::discard()))
        .await;
        Check::of(
            "tag",
            pulled.map(|p| match p.digest {
                Some(d) => format!("{image} resolves to {d}"),
                None => format!("{image} was pulled"),
            }),
        )
    }
}
