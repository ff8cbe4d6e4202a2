//! Waiting for instances to be ready: the backend's own signal plus an optional check.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::driver::{Driver, Instance};
use crate::event::{EventSink, Unit};
use crate::{Error, ErrorKind, ImageRef, Result};

/// An application-level health check, on top of the backend's readiness.
///
/// Every configured probe must pass. None configured: the backend's readiness alone
/// decides (Docker's healthcheck status, pod Ready).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// An `http://` URL that must answer 2xx.
    #[serde(default)]
    pub http: Option<String>,
    /// A `host:port` that must accept a TCP connection.
    #[serde(default)]
    pub tcp: Option<String>,
    /// A command (argv, run on this machine, no shell) that must exit 0.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How long the leader may take to migrate and become healthy, and the rest to follow.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// How often to look.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// How long one probe may take.
    #[serde(default = "default_probe_timeout", with = "duration")]
    pub probe_timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            http: None,
            tcp: None,
            command: None,
            timeout: default_timeout(),
            interval: default_interval(),
            probe_timeout: default_probe_timeout(),
        }
    }
}

/// Durations as humantime strings (`"10m"`, `"500ms"`) in config and JSON: the one
/// duration format of every setting (`#[serde(with = "cutover_core::health::duration")]`).
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes `d` as `"1m 30s"`.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads `"90s"`, `"10m"`, `"1h 30m"`, `"500ms"`.
    ///
    /// # Errors
    /// A value that is not such a duration, quoted in the message.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            D::Error::custom(format!(
                "{s:?} is not a duration like \"90s\" or \"10m\": {e}"
            ))
        })
    }
}

impl HealthCheck {
    /// Checks the configuration without probing anything.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.http {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                Error::invalid(format!("[health] http = {url:?} is not a URL: {e}"))
            })?;
            if parsed.scheme() != "http" {
                return Err(Error::invalid(format!(
                    "[health] http = {url:?}: only http:// URLs are supported"
                )));
            }
        }
        if let Some(addr) = &self.tcp
            && !addr.contains(':')
        {
            return Err(Error::invalid(format!(
                "[health] tcp = {addr:?} must be host:port"
            )));
        }
        if let Some(cmd) = &self.command
            && cmd.is_empty()
        {
            return Err(Error::invalid("[health] command must not be empty"));
        }
        if self.interval.is_zero() {
            return Err(Error::invalid("[health] interval must be above zero"));
        }
        Ok(())
    }

    /// Runs every configured probe once; `Err` says which failed and why.
    pub async fn probe(&self) -> std::result::Result<(), String> {
        if let Some(url) = &self.http {
            let client = reqwest::Client::builder()
                .timeout(self.probe_timeout)
                .build()
                .map_err(|e| format!("http client: {e}"))?;
            let response = client
                .get(url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("GET {url}: status {}", response.status()));
            }
        }
        if let Some(addr) = &self.tcp {
            tokio::time::timeout(self.probe_timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| format!("tcp {addr}: timed out"))?
                .map_err(|e| format!("tcp {addr}: {e}"))?;
        }
        if let Some(argv) = &self.command {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let status = tokio::time::timeout(self.probe_timeout, cmd.status())
                .await
                .map_err(|_| format!("command {:?}: timed out", argv[0]))?
                .map_err(|e| format!("command {:?}: {e}", argv[0]))?;
            if !status.success() {
                return Err(format!("command {:?}: {status}", argv[0]));
            }
        }
        Ok(())
    }
}

/// The failure for instances of `image`'s tag that do not run the digest it pins.
fn moved_tag(image: &ImageRef, moved: &[&Instance]) -> Error {
    let want = image.digest().unwrap_or_default();
    let tag = image.without_digest();
    let which = moved
        .iter()
        .map(|i| {
            let at = if i.location.is_empty() {
                String::new()
            } else {
                format!(" on {}", i.location)
            };
            match i.running_digest() {
                Some(have) => format!("{}{at} runs {have}", i.id),
                None => format!("{}{at} runs {tag} with no digest to check", i.id),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    Error::new(
        ErrorKind::Integrity,
        format!(
            "the tag {tag} moved: {want} was pulled and checked, but {which}. Someone re-tagged or pushed {tag} after the pull, or the driver started the tag instead of the pinned digest; cutover does not run an image it did not pull"
        ),
    )
    .with_operation("await ready")
}

/// How many consecutive looks at an image with every instance stopped count as a crash,
/// provided they span at least this many `interval`s less one.
const CRASHED_AFTER: u32 = 3;

/// The pause after the first look. Each later pause doubles it up to `interval`: what is
/// ready within moments of its start (a quick app, a restart) is seen then, not a whole
/// interval later, while a slow start-up is still looked at every `interval`.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// Waits until `replicas` instances of `image` run, are ready by the backend's signal and
/// the health check passes, or `deadline` passes.
///
/// # Behavior
/// 1. Observes the deployment at once, then after pauses that double from 50 ms up to
///    `check.interval` and stay there, and reports ready/desired as progress.
/// 2. Once enough instances are ready, runs the probes; all must pass.
/// 3. Fails early when every instance of `image` has stopped for several looks in a row
///    spanning at least two `interval`s (the process crashed, e.g. a failed migration),
///    instead of waiting for the deadline.
///    When `image` pins a digest, fails at once with [`ErrorKind::Integrity`] if an
///    instance of its tag runs another digest or one that cannot be known (the tag moved
///    between pull and start, and was started by tag), naming both digests.
/// 4. Fails with [`ErrorKind::Timeout`] at the deadline, saying what was last seen.
pub async fn await_ready(
    driver: &dyn Driver,
    image: &ImageRef,
    replicas: u32,
    check: &HealthCheck,
    deadline: Duration,
    events: &EventSink,
) -> Result<()> {
    let until = Instant::now() + deadline;
    let crashed_after = check.interval * (CRASHED_AFTER - 1);
    let mut pause = FIRST_PAUSE.min(check.interval);
    let mut stopped: Option<(u32, Instant)> = None;
    let mut last;
    loop {
        match driver.observe().await {
            Ok(seen) => {
                let ready = seen.ready_of(image) as u32;
                events.progress(u64::from(ready), Some(u64::from(replicas)), Unit::Instances);
                let moved = seen.moved_from(image);
                if !moved.is_empty() {
                    return Err(moved_tag(image, &moved));
                }
                let mine: Vec<_> = seen.instances.iter().filter(|i| i.runs(image)).collect();
                stopped = if !mine.is_empty() && mine.iter().all(|i| !i.running) {
                    let (looks, since) = stopped.unwrap_or((0, Instant::now()));
                    Some((looks + 1, since))
                } else {
                    None
                };
                if stopped.is_some_and(|(looks, since)| {
                    looks >= CRASHED_AFTER && since.elapsed() >= crashed_after
                }) {
                    return Err(Error::new(
                        ErrorKind::Other,
                        format!(
                            "every instance of {image} stopped ({}); its start-up failed",
                            mine.iter()
                                .map(|i| i.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .with_operation("await ready"));
                }
                if ready >= replicas {
                    match check.probe().await {
                        Ok(()) => return Ok(()),
                        Err(why) => {
                            last = format!("{ready}/{replicas} ready; health check failed: {why}")
                        }
                    }
                } else {
                    last = format!("{ready}/{replicas} instances of {image} ready");
                }
            }
            Err(e) if e.is_retryable() => last = format!("observe failed: {}", e.report()),
            Err(e) => return Err(e),
        }
        if Instant::now() >= until {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "not ready within {}: {last}",
                    humantime::format_duration(deadline)
                ),
            )
            .with_operation("await ready"));
        }
        tokio::time::sleep(pause.min(until.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(check.interval);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A one-route HTTP server on a free loopback port answering `status` to every request.
    async fn http_server(status: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let reply =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}/health")
    }

    fn check() -> HealthCheck {
        HealthCheck {
            probe_timeout: Duration::from_secs(2),
            ..HealthCheck::default()
        }
    }

    #[tokio::test]
    async fn http_probe_needs_a_2xx() {
        let ok = HealthCheck {
            http: Some(http_server("200 OK").await),
            ..check()
        };
        ok.probe().await.unwrap();
        let bad = HealthCheck {
            http: Some(http_server("503 Service Unavailable").await),
            ..check()
        };
        let why = bad.probe().await.unwrap_err();
        assert!(why.contains("503"), "{why}");
    }

    #[tokio::test]
    async fn tcp_probe_needs_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        HealthCheck {
            tcp: Some(addr.clone()),
            ..check()
        }
        .probe()
        .await
        .unwrap();
        drop(listener);
        let why = HealthCheck {
            tcp: Some(addr),
            ..check()
        }
        .probe()
        .await
        .unwrap_err();
        assert!(why.starts_with("tcp "), "{why}");
    }

    #[tokio::test]
    async fn command_probe_needs_exit_zero() {
        let yes = HealthCheck {
            command: Some(vec!["true".into()]),
            ..check()
        };
        yes.probe().await.unwrap();
        let no = HealthCheck {
            command: Some(vec!["false".into()]),
            ..check()
        };
        assert!(no.probe().await.unwrap_err().contains("false"));
    }

    #[test]
    fn invalid_settings_are_refused_with_the_key() {
        for bad in [
            HealthCheck {
                http: Some("ftp://x/health".into()),
                ..check()
            },
            HealthCheck {
                http: Some("not a url".into()),
                ..check()
            },
            HealthCheck {
                tcp: Some("8080".into()),
                ..check()
            },
            HealthCheck {
                command: Some(vec![]),
                ..check()
            },
            HealthCheck {
                interval: Duration::ZERO,
                ..check()
            },
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.message().contains("[health]"), "{e}");
        }
    }

    #[test]
    fn durations_read_as_humantime() {
        let c: HealthCheck =
            serde_json::from_str(r#"{"timeout":"10m","interval":"250ms"}"#).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(600));
        assert_eq!(c.interval, Duration::from_millis(250));
        let e = serde_json::from_str::<HealthCheck>(r#"{"timeout":"soon"}"#).unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
    }

    /// A driver whose one instance of `IMAGE` runs, starting, and is ready from its
    /// `ready_from`th look on, or has stopped on every look (`ready_from` = 0); it
    /// records when it was looked at (tokio's clock, paused in these tests).
    #[derive(Debug)]
    struct Looked {
        ready_from: usize,
        looks: std::sync::Mutex<Vec<Instant>>,
    }

    const IMAGE: &str = "registry.test/app:2.0.0";

    impl Looked {
        fn new(ready_from: usize) -> Self {
            Self {
                ready_from,
                looks: Default::default(),
            }
        }
        fn looks(&self) -> Vec<Instant> {
            self.looks.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Driver for Looked {
        fn info(&self) -> crate::DriverInfo {
            crate::DriverInfo {
                kind: "looked".into(),
                target: "a test".into(),
            }
        }
        fn capabilities(&self) -> crate::Capabilities {
            crate::Capabilities::default()
        }
        async fn observe(&self) -> Result<crate::Observed> {
            let mut looks = self.looks.lock().unwrap();
            looks.push(Instant::now());
            let running = self.ready_from > 0;
            let ready = running && looks.len() >= self.ready_from;
            let image: ImageRef = IMAGE.parse().unwrap();
            Ok(crate::Observed {
                image: image.clone(),
                replicas: 1,
                instances: vec![Instance {
                    id: "app-1".into(),
                    uid: None,
                    location: String::new(),
                    image,
                    digest: None,
                    running,
                    ready,
                }],
            })
        }
        async fn pull(&self, _: &ImageRef, _: &EventSink) -> Result<crate::Pulled> {
            unreachable!("await_ready only observes")
        }
        async fn snapshot(&self) -> Result<crate::Snapshot> {
            unreachable!("await_ready only observes")
        }
        async fn set_image(&self, _: &ImageRef) -> Result<()> {
            unreachable!("await_ready only observes")
        }
        async fn scale(&self, _: u32) -> Result<()> {
            unreachable!("await_ready only observes")
        }
        async fn restore(&self, _: &crate::Snapshot) -> Result<()> {
            unreachable!("await_ready only observes")
        }
        async fn release(&self, _: &crate::Snapshot) -> Result<()> {
            unreachable!("await_ready only observes")
        }
    }

    fn every(interval: Duration) -> HealthCheck {
        HealthCheck {
            interval,
            ..HealthCheck::default()
        }
    }

    /// The pauses between consecutive looks.
    fn pauses(looks: &[Instant]) -> Vec<Duration> {
        looks.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn looks_soon_after_the_start_then_every_interval() {
        let driver = Looked::new(8);
        let image = IMAGE.parse().unwrap();
        let check = every(Duration::from_secs(1));
        let (events, _rx) = EventSink::channel();
        await_ready(&driver, &image, 1, &check, Duration::from_secs(60), &events)
            .await
            .unwrap();
        let ms: Vec<u64> = pauses(&driver.looks())
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_ready_at_its_second_look_is_seen_without_waiting_an_interval() {
        let driver = Looked::new(2);
        let image = IMAGE.parse().unwrap();
        let (events, _rx) = EventSink::channel();
        let began = Instant::now();
        await_ready(
            &driver,
            &image,
            1,
            &every(Duration::from_secs(30)),
            Duration::from_secs(600),
            &events,
        )
        .await
        .unwrap();
        // Paused clock: this is the sum of the pauses, not a measured time.
        assert_eq!(began.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_is_declared_after_three_looks_spanning_two_intervals() {
        let driver = Looked::new(0);
        let image = IMAGE.parse().unwrap();
        let (events, _rx) = EventSink::channel();
        let interval = Duration::from_millis(500);
        let e = await_ready(
            &driver,
            &image,
            1,
            &every(interval),
            Duration::from_secs(600),
            &events,
        )
        .await
        .unwrap_err();
        assert!(e.message().contains("its start-up failed"), "{e}");
        let looks = driver.looks();
        let stopped_for = *looks.last().unwrap() - looks[0];
        // The quick first looks do not make a crash of a slow start: looks at 0, 50, 150,
        // 350, 750 ms then every 500 ms; the first at or beyond two intervals is 1250 ms.
        assert_eq!(stopped_for, Duration::from_millis(1250), "{looks:?}");
    }
}
