//! `pull`: the engine pulls, cutover reports per-layer progress and records the digest.
//!
//! Registry credentials come from the Docker client's config (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`, the `auths` entries `docker login` writes; credential
//! helpers are not consulted). They go to the engine in its auth header only and are
//! never logged or put into errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use cutover_core::{ErrorKind, EventSink, ImageRef, Pulled, Result, Unit};
use futures_util::StreamExt;

use crate::error;

const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Pulls `image`, reporting downloaded bytes over all layers, and returns its digest.
pub(crate) async fn pull(docker: &Docker, image: &ImageRef, events: &EventSink) -> Result<Pulled> {
    let subject = image.to_string();
    let options = CreateImageOptions {
        from_image: Some(image.repository()),
        tag: Some(
            image
                .digest()
                .or(image.tag())
                .unwrap_or("latest")
                .to_string(),
        ),
        ..Default::default()
    };
    let credentials = credentials(image.registry().unwrap_or("docker.io"));
    let mut stream = docker.create_image(Some(options), None, credentials);
    // Per layer: (downloaded, size).
    let mut layers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut reported = Instant::now() - PROGRESS_EVERY;
    // The engine's own "Digest: sha256:…" line names the manifest it pulled; reading the
    // tag afterwards could see someone's `docker tag` made in between.
    let mut pulled_digest = None;
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| error::docker("pull", &subject, e))?;
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_default();
            let kind = if message.contains("not found") || message.contains("manifest unknown") {
                ErrorKind::NotFound
            } else {
                ErrorKind::Other
            };
            return Err(error::driver(kind, "pull", &subject, message));
        }
        if let Some(d) = info
            .status
            .as_deref()
            .and_then(|s| s.strip_prefix("Digest: "))
        {
            pulled_digest = Some(d.trim().to_string());
        }
        let (Some(id), Some(status)) = (info.id, info.status) else {
            continue;
        };
        let entry = layers.entry(id).or_default();
        match status.as_str() {
            "Downloading" => {
                if let Some(p) = info.progress_detail {
                    entry.0 = p.current.unwrap_or_default().max(0) as u64;
                    entry.1 = p.total.unwrap_or_default().max(0) as u64;
                }
            }
            "Download complete" | "Pull complete" | "Already exists" => entry.0 = entry.1,
            _ => continue,
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            report(&layers, events);
            reported = Instant::now();
        }
    }
    report(&layers, events);
    if let Some(digest) = pulled_digest {
        return Ok(Pulled {
            image: image.clone(),
            digest: Some(digest),
        });
    }
    let digest = match docker.inspect_image(&subject).await {
        Ok(i) => i
            .repo_digests
            .unwrap_or_default()
            .into_iter()
            .find_map(|d| {
                d.split_once('@')
                    .filter(|(r, _)| *r == image.repository())
                    .map(|(_, d)| d.to_string())
            }),
        Err(e) if error::is_not_found(&e) => None,
        Err(e) => return Err(error::docker("pull", &subject, e)),
    };
    Ok(Pulled {
        image: image.clone(),
        digest,
    })
}

fn report(layers: &BTreeMap<String, (u64, u64)>, events: &EventSink) {
    let done = layers.values().map(|l| l.0).sum();
    let total: u64 = layers.values().map(|l| l.1).sum();
    events.progress(done, (total > 0).then_some(total), Unit::Bytes);
}

/// Credentials for `registry` from the Docker client's config, if it has any.
fn credentials(registry: &str) -> Option<DockerCredentials> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let hub = ["docker.io", "index.docker.io", "registry-1.docker.io"].contains(&registry);
    let entry = auths.iter().find_map(|(key, value)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        let matches = host == registry || (hub && host.ends_with("docker.io"));
        matches.then_some(value)
    })?;
    let auth = entry.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(username.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    })
}
