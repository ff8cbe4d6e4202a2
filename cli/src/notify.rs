//! `[notify]`: webhooks that are told how runs end (or every step).
//!
//! Each `[[notify.webhooks]]` receives `cutover.event.v1` objects as JSON `POST` bodies,
//! with two fields added: `target` (the application) and `text`, a one-line summary, so
//! a Slack-compatible incoming webhook shows it as is. By default only the `outcome`
//! event is sent; `events = "all"` sends every event but progress. The URL (which often
//! holds a token, as Slack's do) may come from the environment (`url_env`), and so do
//! header values (`headers_env`: header name → variable name); neither is ever printed.
//!
//! Delivery never holds up a run: events are queued without waiting and sent by a task
//! of their own, each attempt bounded by `timeout`, failed ones retried `retries` times
//! with a doubling pause. When the command ends, what is still queued gets at most one
//! more `timeout`; whatever was not delivered is a warning naming the webhook's host.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_core::{Event, EventKind, EventSink};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// `[notify]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The webhooks.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

/// One `[[notify.webhooks]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The URL to `POST` to.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable that holds the URL instead.
    #[serde(default)]
    pub url_env: Option<String>,
    /// `outcome` (default) or `all`.
    #[serde(default)]
    pub events: Which,
    /// How long one attempt may take (default 5s).
    #[serde(default = "default_timeout", with = "cutover_core::health::duration")]
    pub timeout: Duration,
    /// Further attempts after a failed one (default 2).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Header name → the environment variable holding its value (e.g. a bearer token).
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
}

/// Which events a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    /// How each run ended.
    #[default]
    Outcome,
    /// Every event but progress.
    All,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    2
}

/// A webhook ready to send: its URL and headers read from the environment.
#[derive(Debug, Clone)]
struct Endpoint {
    url: reqwest::Url,
    which: Which,
    timeout: Duration,
    retries: u32,
    headers: Vec<(String, String)>,
}

impl Endpoint {
    /// Where it goes, without path, query or credentials (which may hold a token).
    fn shown(&self) -> String {
        format!(
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or("?")
        )
    }
}

/// What the delivering task is handed.
enum Message {
    Event(Box<Event>),
    /// Everything queued before has been handled.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The running notifier: a sink to tee events into, and the task that delivers them.
pub struct Notifier {
    queue: Option<mpsc::UnboundedSender<Message>>,
    task: Option<tokio::task::JoinHandle<()>>,
    drain: Duration,
}

impl Notifier {
    /// Starts delivering to `config`'s webhooks on behalf of `target`; `env` reads
    /// cutover's environment.
    ///
    /// # Errors
    /// `InvalidInput` naming the webhook whose URL or header is missing or malformed.
    pub fn start(
        config: &NotifyConfig,
        target: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> cutover_core::Result<Notifier> {
        let endpoints = config
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| endpoint(i, w, &env))
            .collect::<cutover_core::Result<Vec<_>>>()?;
        if endpoints.is_empty() {
            return Ok(Notifier {
                queue: None,
                task: None,
                drain: Duration::ZERO,
            });
        }
        let drain = endpoints
            .iter()
            .map(|e| e.timeout)
            .max()
            .unwrap_or_default();
        let (queue, mut messages) = mpsc::unbounded_channel::<Message>();
        let target = target.to_string();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            while let Some(message) = messages.recv().await {
                let event = match message {
                    Message::Event(event) => event,
                    Message::Flush(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                let body = body(&event, &target);
                for endpoint in &endpoints {
                    if wanted(endpoint.which, &event.kind) {
                        deliver(&client, endpoint, &body).await;
                    }
                }
            }
        });
        Ok(Notifier {
            queue: Some(queue),
            task: Some(task),
            drain,
        })
    }

    /// `inner` with every event also queued for the webhooks (without waiting).
    pub fn tee(&self, inner: EventSink) -> EventSink {
        match &self.queue {
            None => inner,
            Some(queue) => {
                let queue = queue.clone();
                inner.tapped(move |e| {
                    let _ = queue.send(Message::Event(Box::new(e.clone())));
                })
            }
        }
    }

    /// Waits at most one more timeout for what is queued; what is left is a warning.
    pub async fn finish(mut self) {
        let (Some(queue), Some(task)) = (self.queue.take(), self.task.take()) else {
            return;
        };
        // The engine's sinks still hold the queue: ask the task to say when it got here.
        let (done, flushed) = tokio::sync::oneshot::channel();
        let _ = queue.send(Message::Flush(done));
        let delivered = tokio::time::timeout(self.drain, flushed).await;
        task.abort();
        if delivered.is_err() {
            tracing::warn!(
                "notifications still being sent after the run ended were given up after {}",
                humantime::format_duration(self.drain)
            );
        }
    }
}

fn endpoint(
    i: usize,
    w: &Webhook,
    env: &impl Fn(&str) -> Option<String>,
) -> cutover_core::Result<Endpoint> {
    let at = format!("notify.webhooks[{i}]");
    let text = match (&w.url, &w.url_env) {
        (Some(url), None) => url.clone(),
        (None, Some(var)) => env(var).ok_or_else(|| {
            cutover_core::Error::invalid(format!(
                "{at}.url_env names {var}, which is not set in cutover's environment"
            ))
        })?,
        _ => {
            return Err(cutover_core::Error::invalid(format!(
                "{at}: give url or url_env (one of them)"
            )));
        }
    };
    // The parse error only: the URL may hold a token.
    let url = reqwest::Url::parse(&text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| {
            cutover_core::Error::invalid(format!("{at}: the URL is not an http(s) URL"))
        })?;
    if w.timeout.is_zero() {
        return Err(cutover_core::Error::invalid(format!(
            "{at}.timeout must be above zero"
        )));
    }
    let headers = w
        .headers_env
        .iter()
        .map(|(name, var)| {
            env(var).map(|v| (name.clone(), v)).ok_or_else(|| {
                cutover_core::Error::invalid(format!(
                    "{at}.headers_env: {name} comes from {var}, which is not set in cutover's environment"
                ))
            })
        })
        .collect::<cutover_core::Result<Vec<_>>>()?;
    Ok(Endpoint {
        url,
        which: w.events,
        timeout: w.timeout,
        retries: w.retries,
        headers,
    })
}

fn wanted(which: Which, kind: &EventKind) -> bool {
    match which {
        Which::Outcome => matches!(kind, EventKind::Outcome { .. }),
        Which::All => !matches!(kind, EventKind::Progress { .. }),
    }
}

/// The event as JSON with `target` and a one-line `text`.
fn body(e: &Event, target: &str) -> Vec<u8> {
    let mut json = serde_json::to_value(e).unwrap_or_default();
    if let Some(o) = json.as_object_mut() {
        o.insert("target".into(), target.into());
        o.insert("text".into(), text(e, target).into());
    }
    serde_json::to_vec(&json).unwrap_or_default()
}

/// A line a person reads in a chat channel.
fn text(e: &Event, target: &str) -> String {
    match &e.kind {
        EventKind::Outcome {
            outcome, message, ..
        } => format!(
            "cutover {target}: {} — {message}",
            outcome.as_str().to_uppercase()
        ),
        EventKind::RunStarted { kind, resumed, .. } => format!(
            "cutover {target}: {} {} (run {})",
            if *resumed { "resuming" } else { "starting" },
            kind.as_str(),
            e.run
        ),
        EventKind::StepStarted { step, about } => format!("cutover {target}: {step}: {about}"),
        EventKind::StepFinished { step, .. } => format!("cutover {target}: {step} done"),
        EventKind::StepFailed { step, error, .. } => {
            format!("cutover {target}: {step} failed: {}", error.message)
        }
        EventKind::Warning { message } => format!("cutover {target}: warning: {message}"),
        _ => format!("cutover {target}: event of run {}", e.run),
    }
}

/// Sends `body` to `endpoint`, retrying; a final failure is a warning.
async fn deliver(client: &reqwest::Client, endpoint: &Endpoint, body: &[u8]) {
    let mut pause = Duration::from_millis(250);
    let mut last = String::new();
    for attempt in 0..=endpoint.retries {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        let mut request = client
            .post(endpoint.url.clone())
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in &endpoint.headers {
            request = request.header(name, value);
        }
        match tokio::time::timeout(endpoint.timeout, request.send()).await {
            Ok(Ok(response)) if response.status().is_success() => return,
            Ok(Ok(response)) => last = format!("answered {}", response.status()),
            // Without the URL, which reqwest's errors carry.
            Ok(Err(e)) => last = format!("failed ({})", kind_of(&e)),
            Err(_) => {
                last = format!(
                    "did not answer within {}",
                    humantime::format_duration(endpoint.timeout)
                );
            }
        }
    }
    tracing::warn!(
        "the notification webhook {} {last} after {} attempt(s); the run is not affected",
        endpoint.shown(),
        endpoint.retries + 1
    );
}

fn kind_of(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_request() {
        "the request failed"
    } else {
        "an error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers_come_from_the_environment_and_are_checked() {
        let env = |k: &str| match k {
            "HOOK" => Some("https://hooks.example.com/services/T0/B0/secret".to_string()),
            "TOKEN" => Some("Bearer abc".to_string()),
            _ => None,
        };
        let mut w = Webhook {
            url: None,
            url_env: Some("HOOK".into()),
            events: Which::Outcome,
            timeout: default_timeout(),
            retries: 2,
            headers_env: BTreeMap::from([("Authorization".into(), "TOKEN".into())]),
        };
        let e = endpoint(0, &w, &env).unwrap();
        assert_eq!(e.shown(), "https://hooks.example.com");
        assert_eq!(e.headers, [("Authorization".into(), "Bearer abc".into())]);
        w.url_env = Some("NOPE".into());
        let err = endpoint(0, &w, &env).unwrap_err();
        assert!(err.message().contains("NOPE"), "{}", err.message());
        w.url_env = None;
        w.url = Some("ftp://x/secret".into());
        let err = endpoint(0, &w, &env).unwrap_err();
        assert!(!err.message().contains("secret"), "{}", err.message());
    }
}
