//! `pods/exec` over WebSocket, the minimum kube's client speaks: binary frames whose first
//! byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 status), `[255, 0]` closing stdin
//! (v5), and a `Status` object on channel 3 when the process has exited.

use std::process::Stdio;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Shared;
use crate::api::json_response;
use crate::store::ApiError;

pub(crate) fn serve(
    shared: Arc<Shared>,
    namespace: &str,
    pod: &str,
    query: &[(String, String)],
    upgrade: WebSocketUpgrade,
) -> Response {
    let argv: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let stdin = query
        .iter()
        .any(|(k, v)| k == "stdin" && (v == "true" || v == "1"));
    let found = shared
        .pods()
        .get(&(namespace.to_string(), pod.to_string()))
        .map(|h| (h.env.clone(), h.specimen));
    let Some((env, specimen)) = found else {
        let e = ApiError::not_found("pods", pod);
        return json_response(404, &e.status());
    };
    shared.write(|s| {
        s.record(crate::HistoryEvent::Exec {
            pod: pod.to_string(),
            command: argv.clone(),
        })
    });
    let specimen_bin = shared.config.specimen_bin.clone();
    upgrade
        .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            let program = match argv.first() {
                // The specimen image is FROM scratch: /specimen is all there is.
                Some(p) if specimen => match (p.as_str(), specimen_bin) {
                    ("/specimen", Some(bin)) => Some(bin.display().to_string()),
                    _ => None,
                },
                Some(p) => Some(p.clone()),
                None => None,
            };
            run(socket, program, argv, env, stdin).await;
        })
}

fn status_frame(status: &Value) -> Message {
    let mut frame = vec![3u8];
    frame.extend(status.to_string().bytes());
    Message::Binary(Bytes::from(frame))
}

async fn run(
    socket: WebSocket,
    program: Option<String>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    want_stdin: bool,
) {
    let (mut sink, mut source) = socket.split();
    let first = argv.first().cloned().unwrap_or_default();
    let spawned = program
        .ok_or_else(|| "not found".to_string())
        .and_then(|p| {
            tokio::process::Command::new(p)
                .args(argv.iter().skip(1))
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(if want_stdin {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| e.to_string())
        });
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("OCI runtime exec failed: exec failed: unable to start container process: exec: {first:?}: executable file not found in $PATH ({e})"),
                "details": {"causes": [{"reason": "ExitCode", "message": "127"}]}});
            let _ = sink.send(status_frame(&status)).await;
            let _ = sink.close().await;
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let feeder = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(data) if data.first() == Some(&0) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(&data[1..]).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Message::Binary(data) if data.as_ref() == [255, 0] => stdin = None,
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (mut out_open, mut err_open) = (true, true);
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut err_buf = vec![0u8; 8 * 1024];
    while out_open || err_open {
        let frame = tokio::select! {
            n = stdout.read(&mut out_buf[..]), if out_open => match n {
                Ok(0) | Err(_) => { out_open = false; None }
                Ok(n) => Some([&[1u8][..], &out_buf[..n]].concat()),
            },
            n = stderr.read(&mut err_buf[..]), if err_open => match n {
                Ok(0) | Err(_) => { err_open = false; None }
                Ok(n) => Some([&[2u8][..], &err_buf[..n]].concat()),
            },
        };
        if let Some(frame) = frame
            && sink
                .send(Message::Binary(Bytes::from(frame)))
                .await
                .is_err()
        {
            let _ = child.kill().await;
            feeder.abort();
            return;
        }
    }
    let code = child.wait().await.ok().and_then(|s| s.code());
    feeder.abort();
    let status = match code {
        Some(0) => json!({"metadata": {}, "status": "Success"}),
        other => json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": format!("command terminated with non-zero exit code: {other:?}"),
            "details": {"causes": [{"reason": "ExitCode",
                "message": other.map(|c| c.to_string()).unwrap_or_else(|| "137".into())}]}}),
    };
    let _ = sink.send(status_frame(&status)).await;
    let _ = sink.close().await;
}
