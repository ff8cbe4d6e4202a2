//! `[notify]` webhooks, against a small HTTP server of the test's own on loopback: the
//! outcome of an upgrade and of a rollback arrive (with `text`, `target` and a header
//! read from the environment); a server that answers 500 is retried and then a warning;
//! a server that never answers is given up after the configured timeout, and neither
//! changes how the run ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// How the server answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Error500,
    Never,
}

/// One request the server received: its headers (lowercased names) and JSON body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Value,
}

/// Serves on a free loopback port; returns its URL and what it received.
async fn server(answer: Answer) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/T0/secret-path",
        listener.local_addr().unwrap()
    );
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let (head_end, length) = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while data.len() < head_end + length {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&data[..head_end]).to_string();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                    .collect();
                let body = serde_json::from_slice(&data[head_end..]).unwrap_or(Value::Null);
                record.lock().unwrap().push(Received { headers, body });
                let reply: &[u8] = match answer {
                    Answer::Ok => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    Answer::Error500 => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    Answer::Never => {
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        return;
                    }
                };
                let _ = socket.write_all(reply).await;
            });
        }
    });
    (url, seen)
}

/// A `fake` deployment with one webhook at `url_env`'s URL.
fn write_config(dir: &Path, webhook: &str) -> PathBuf {
    let path = dir.join("cutover.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[app]
name = "apidog"
image = "registry.example.com/apidog/server"
[health]
interval = "10ms"
[driver]
kind = "fake"
[driver.fake]
running = "v2.7.80"
tags = ["v2.7.81"]
broken = ["v2.7.82-broken"]
[[notify.webhooks]]
url_env = "HOOK_URL"
headers_env = {{ Authorization = "HOOK_TOKEN" }}
{webhook}
"#
        ),
    )
    .unwrap();
    path
}

/// The binary, run off the test's runtime so the server keeps answering.
async fn cutover(config: &Path, url: &str, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("HOOK_URL", url)
        .env("HOOK_TOKEN", "Bearer t0ken")
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcomes_of_an_upgrade_and_a_rollback_reach_the_webhook() {
    let (url, seen) = server(Answer::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let up = cutover(&config, &url, &["upgrade", "--to", "v2.7.81"]).await;
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    // A release that breaks is rolled back (the fake deployment lives in one process, so
    // the rollback is the automatic one).
    let back = cutover(&config, &url, &["upgrade", "--to", "v2.7.82-broken"]).await;
    assert_eq!(back.status.code(), Some(5), "{}", text(&back));

    let seen = seen.lock().unwrap().clone();
    let outcomes: Vec<&str> = seen
        .iter()
        .map(|r| r.body["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        outcomes,
        ["upgraded", "rolled_back"],
        "only the outcomes: {seen:#?}"
    );
    for r in &seen {
        assert_eq!(r.body["schema"], "cutover.event.v1", "{r:?}");
        assert_eq!(r.body["type"], "outcome", "{r:?}");
        assert_eq!(r.body["target"], "apidog", "{r:?}");
        assert!(
            r.body["text"]
                .as_str()
                .unwrap()
                .starts_with("cutover apidog: "),
            "{r:?}"
        );
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "authorization" && v == "Bearer t0ken"),
            "{r:?}"
        );
    }
    for out in [&up, &back] {
        assert!(
            !text(out).contains("secret-path"),
            "the URL's path is never printed"
        );
        assert!(!text(out).contains("t0ken"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_hanging_webhook_is_a_warning_and_the_run_ends_as_it_would() {
    // 500: every attempt is made, then a warning; the broken release still exits 5.
    let (url, seen) = server(Answer::Error500).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "retries = 2\ntimeout = \"2s\"");
    let out = cutover(&config, &url, &["upgrade", "--to", "v2.7.82-broken"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(seen.lock().unwrap().len(), 3, "one attempt and two retries");
    assert!(
        text(&out).contains("answered 500") && text(&out).contains("run is not affected"),
        "{}",
        text(&out)
    );

    // A server that never answers: given up after the timeout, a warning, exit 0.
    let (url, seen) = server(Answer::Never).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "retries = 0\ntimeout = \"1s\"\nevents = \"all\"",
    );
    let out = cutover(&config, &url, &["upgrade", "--to", "v2.7.81"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("did not answer within 1s") || text(&out).contains("given up after 1s"),
        "{}",
        text(&out)
    );
    assert!(!seen.lock().unwrap().is_empty(), "the server was reached");
}
