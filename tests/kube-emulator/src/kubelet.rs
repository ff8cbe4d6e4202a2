//! Pods that really run: one task per pod plays the kubelet for its single (first)
//! container.
//!
//! A specimen image runs the specimen binary as a local process with the pod's literal env,
//! `SPECIMEN_VERSION` from the tag, its own free port (`PORT`, `BIND_ADDRESS=127.0.0.1`),
//! its own `STORAGE_DIR` and `SPECIMEN_INSTANCE` = the pod name; it is Ready while its
//! `/health` answers 200, probed every 250 ms. An exited process is restarted after a
//! back-off (1 s, doubling, at most 10 s), with the pod Running and not Ready meanwhile,
//! as in CrashLoopBackOff. Any other image runs nothing and is Ready after
//! [`crate::EmulatorConfig::ready_delay`].

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::store::now_rfc3339;
use crate::{HistoryEvent, PodHandle, Shared};

/// Splits `repo:tag` (a registry port is not a tag; a pinned `@digest` is dropped).
pub(crate) fn split_image(image: &str) -> (&str, &str) {
    let image = image.split_once('@').map_or(image, |(named, _)| named);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Starts the task that runs `pod`.
pub(crate) fn start(shared: Arc<Shared>, namespace: &str, pod: &Value) {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let container = &pod["spec"]["containers"][0];
    let image = container["image"].as_str().unwrap_or("").to_string();
    let (repo, tag) = split_image(&image);
    let specimen = shared.config.specimen_repository.as_deref() == Some(repo);
    let mut env: Vec<(String, String)> = container["env"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| {
                    Some((
                        e["name"].as_str()?.to_string(),
                        e["value"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    env.push(("HOSTNAME".into(), name.clone()));
    env.push((
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    ));
    let dir = shared.dir.path().join(&name);
    let _ = std::fs::create_dir_all(dir.join("storage"));
    if specimen {
        let port = free_port();
        env.retain(|(k, _)| !matches!(k.as_str(), "PORT" | "BIND_ADDRESS" | "STORAGE_DIR"));
        env.push(("PORT".into(), port.to_string()));
        env.push(("BIND_ADDRESS".into(), "127.0.0.1".into()));
        env.push(("SPECIMEN_VERSION".into(), tag.to_string()));
        env.push((
            "STORAGE_DIR".into(),
            dir.join("storage").display().to_string(),
        ));
        env.push(("SPECIMEN_INSTANCE".into(), name.clone()));
    }
    let pullable = !specimen || shared.config.specimen_tags.iter().any(|t| t == tag);
    let (stop, stopped) = watch::channel(false);
    shared.pods().insert(
        (namespace.to_string(), name.clone()),
        PodHandle {
            stop,
            env: env.clone(),
            specimen,
        },
    );
    let pod = Pod {
        shared,
        namespace: namespace.to_string(),
        name,
        image,
        container: container["name"].as_str().unwrap_or("").to_string(),
        env,
        dir,
        stopped,
    };
    tokio::spawn(async move {
        if !pullable {
            pod.set_waiting(
                "ErrImagePull",
                "manifest unknown: the emulated registry has no such tag",
            );
            pod.wait_stop().await;
        } else if specimen {
            pod.run_specimen().await;
        } else {
            pod.run_idle().await;
        }
        pod.remove();
    });
}

struct Pod {
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    image: String,
    container: String,
    env: Vec<(String, String)>,
    dir: std::path::PathBuf,
    stopped: watch::Receiver<bool>,
}

impl Pod {
    fn status(&self, phase: &str, state: Value, ready: bool, restarts: u32) -> Value {
        let flag = if ready { "True" } else { "False" };
        json!({
            "phase": phase,
            "podIP": "127.0.0.1",
            "hostIP": "127.0.0.1",
            "conditions": [
                {"type": "Ready", "status": flag},
                {"type": "ContainersReady", "status": flag},
            ],
            "containerStatuses": [{
                "name": self.container, "image": self.image,
                "imageID": format!("emulated://{}", self.image),
                "ready": ready, "restartCount": restarts, "started": state.get("running").is_some(),
                "state": state,
            }],
        })
    }

    fn write_status(&self, status: Value) {
        self.shared
            .write(|s| s.set_status("pods", &self.namespace, &self.name, status));
    }

    fn set_waiting(&self, reason: &str, message: &str) {
        let state = json!({"waiting": {"reason": reason, "message": message}});
        self.write_status(self.status("Pending", state, false, 0));
    }

    fn set_running(&self, ready: bool, restarts: u32) {
        let state = json!({"running": {"startedAt": now_rfc3339()}});
        let was_ready = self
            .shared
            .read()
            .get("pods", &self.namespace, &self.name)
            .is_some_and(crate::controller::is_ready);
        let mut status = self.status("Running", state, ready, restarts);
        // Keep the first startedAt while nothing else changes.
        if let Some(old) = self.shared.read().get("pods", &self.namespace, &self.name) {
            let old_state = &old["status"]["containerStatuses"][0]["state"];
            if old_state.get("running").is_some() {
                status["containerStatuses"][0]["state"] = old_state.clone();
            }
        }
        self.write_status(status);
        if ready && !was_ready {
            self.shared.write(|s| {
                s.record(HistoryEvent::PodReady {
                    pod: self.name.clone(),
                    image: self.image.clone(),
                })
            });
        }
    }

    async fn wait_stop(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }

    fn remove(&self) {
        self.shared
            .pods()
            .remove(&(self.namespace.clone(), self.name.clone()));
        self.shared
            .write(|s| s.remove("pods", &self.namespace, &self.name));
    }

    async fn run_idle(&self) {
        self.set_running(false, 0);
        tokio::select! {
            _ = self.wait_stop() => return,
            _ = tokio::time::sleep(self.shared.config.ready_delay) => {}
        }
        self.set_running(true, 0);
        self.wait_stop().await;
    }

    async fn run_specimen(&self) {
        let Some(bin) = self.shared.config.specimen_bin.clone() else {
            self.set_waiting(
                "CreateContainerError",
                "the emulator has no specimen binary",
            );
            return self.wait_stop().await;
        };
        let port: u16 = self
            .env
            .iter()
            .find(|(k, _)| k == "PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut restarts = 0u32;
        let mut backoff = Duration::from_secs(1);
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("log"));
            let (out, err) = match log.and_then(|l| Ok((l.try_clone()?, l))) {
                Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
                Err(_) => (Stdio::null(), Stdio::null()),
            };
            let child = tokio::process::Command::new(&bin)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .kill_on_drop(true)
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    self.set_waiting("CreateContainerError", &e.to_string());
                    return self.wait_stop().await;
                }
            };
            self.set_running(false, restarts);
            let mut ready = false;
            let code = loop {
                tokio::select! {
                    _ = self.wait_stop() => {
                        terminate(&mut child).await;
                        return;
                    }
                    exit = child.wait() => break exit.ok().and_then(|s| s.code()),
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {
                        let healthy = probe(port).await;
                        if healthy != ready {
                            ready = healthy;
                            self.set_running(ready, restarts);
                        }
                    }
                }
            };
            self.shared.write(|s| {
                s.record(HistoryEvent::PodExited {
                    pod: self.name.clone(),
                    code,
                })
            });
            restarts += 1;
            let state = json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off restarting failed container (exit code {code:?})")}});
            self.write_status(self.status("Running", state, false, restarts));
            tokio::select! {
                _ = self.wait_stop() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// SIGTERM, then SIGKILL after 10 s (std has no SIGTERM and unsafe is forbidden: `kill`).
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// `GET /health` over plain HTTP/1.0; true on a 200.
async fn probe(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(&head[9..12] == b"200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}
