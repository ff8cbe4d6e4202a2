//! The driver that stands in for a backend that could not be reached.
//!
//! The read-only commands (`status`, `history`, `backups list|show`) work from the journal
//! and the backup store. When the backend cannot be reached they still run, with this
//! driver in its place: every call fails with the connection's error, so `status` says
//! what could not be observed and why, and nothing else is pretended.

use async_trait::async_trait;
use cutover_core::{
    Capabilities, Driver, DriverInfo, Error, ErrorKind, EventSink, ImageRef, Observed, Pulled,
    Result, Snapshot,
};

/// A backend that did not answer when the command started.
#[derive(Debug)]
pub struct Unreachable {
    kind: String,
    why: String,
    /// The backend answered, but its settings are wrong.
    misconfigured: bool,
}

impl Unreachable {
    /// The backend of driver `kind`, which failed with `error` when connecting.
    pub fn new(kind: &str, error: &Error) -> Self {
        Self {
            kind: kind.to_string(),
            why: error.report(),
            misconfigured: matches!(error.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound),
        }
    }

    fn fail<T>(&self) -> Result<T> {
        let what = if self.misconfigured {
            "could not be set up"
        } else {
            "could not be reached"
        };
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("the {} backend {what}: {}", self.kind, self.why),
        ))
    }
}

#[async_trait]
impl Driver for Unreachable {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: self.kind.clone(),
            target: "unreachable".into(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
    }

    async fn observe(&self) -> Result<Observed> {
        self.fail()
    }

    async fn pull(&self, _image: &ImageRef, _events: &EventSink) -> Result<Pulled> {
        self.fail()
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        self.fail()
    }

    async fn set_image(&self, _image: &ImageRef) -> Result<()> {
        self.fail()
    }

    async fn scale(&self, _replicas: u32) -> Result<()> {
        self.fail()
    }

    async fn restore(&self, _snapshot: &Snapshot) -> Result<()> {
        self.fail()
    }

    async fn release(&self, _snapshot: &Snapshot) -> Result<()> {
        self.fail()
    }
}
