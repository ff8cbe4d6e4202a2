//! `pull`: Kubernetes has no pull API (each node's kubelet pulls), so the driver checks
//! that the registry has the manifest, as `docker manifest inspect` would: a `HEAD` of
//! `/v2/<path>/manifests/<tag>`, with an anonymous bearer token when the registry asks
//! for one. Loopback registries are spoken to over plain HTTP, others over HTTPS.
//!
//! A registry that wants credentials the driver does not have cannot be checked: the
//! pull is reported as a warning and left to the kubelet (with the cluster's
//! `imagePullSecrets`), which reports `ErrImagePull` during the rollout instead.

use cutover_core::{ErrorKind, EventSink, ImageRef, Pulled, Result};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

fn client() -> Result<Client<Https, Empty<bytes::Bytes>>> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            error::driver(
                ErrorKind::Other,
                "pull",
                "",
                format!("cannot load the system's TLS roots: {e}"),
            )
        })?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Where the image's manifest is: (base URL, repository path, tag or digest).
fn manifest_url(image: &ImageRef) -> (String, String, String) {
    let (host, path) = match image.registry() {
        Some(r) if r != "docker.io" && r != "index.docker.io" => {
            (r.to_string(), image.path().to_string())
        }
        _ => {
            let path = if image.path().contains('/') {
                image.path().to_string()
            } else {
                format!("library/{}", image.path())
            };
            ("registry-1.docker.io".to_string(), path)
        }
    };
    let loopback =
        host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
    let scheme = if loopback { "http" } else { "https" };
    let reference = image
        .digest()
        .map(str::to_string)
        .or_else(|| image.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".to_string());
    (format!("{scheme}://{host}"), path, reference)
}

/// `Bearer realm="…",service="…",scope="…"` → the token URL.
fn token_url(challenge: &str, path: &str) -> Option<String> {
    let rest = challenge.strip_prefix("Bearer ")?;
    let mut realm = None;
    let mut query = Vec::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let v = v.trim_matches('"');
        match k {
            "realm" => realm = Some(v.to_string()),
            "service" | "scope" => query.push(format!("{k}={v}")),
            _ => {}
        }
    }
    if !query.iter().any(|q| q.starts_with("scope=")) {
        query.push(format!("scope=repository:{path}:pull"));
    }
    Some(format!("{}?{}", realm?, query.join("&")))
}

/// Checks that `image` exists in its registry.
pub(crate) async fn check(image: &ImageRef, events: &EventSink) -> Result<Pulled> {
    let subject = image.to_string();
    let (base, path, reference) = manifest_url(image);
    let url = format!("{base}/v2/{path}/manifests/{reference}");
    let client = client()?;
    let unreachable = |e: String| {
        error::driver(
            ErrorKind::Unavailable,
            "pull",
            &subject,
            format!("cannot reach the registry at {base}: {e}"),
        )
    };
    let head = |token: Option<String>| {
        let mut request = Request::head(&url).header(header::ACCEPT, ACCEPT);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        request.body(Empty::new())
    };
    let request = head(None).map_err(|e| unreachable(e.to_string()))?;
    let mut response = client
        .request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if response.status() == StatusCode::UNAUTHORIZED {
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if let Some(token_url) = token_url(&challenge, &path) {
            let token_request = Request::get(&token_url)
                .body(Empty::new())
                .map_err(|e| unreachable(e.to_string()))?;
            let token_response = client
                .request(token_request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let body = token_response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            let token = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v["token"]
                        .as_str()
                        .or_else(|| v["access_token"].as_str())
                        .map(str::to_string)
                });
            let request = head(token).map_err(|e| unreachable(e.to_string()))?;
            response = client
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        }
    }
    match response.status() {
        s if s.is_success() => Ok(Pulled {
            image: image.clone(),
            digest: response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }),
        StatusCode::NOT_FOUND => Err(error::driver(
            ErrorKind::NotFound,
            "pull",
            &subject,
            format!("the registry {base} has no manifest {path}:{reference}; nothing was changed"),
        )),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            events.warn(format!(
                "cannot check that {subject} exists: the registry wants credentials cutover does not have; \
                 the cluster's nodes pull it with their imagePullSecrets during the rollout"
            ));
            Ok(Pulled {
                image: image.clone(),
                digest: None,
            })
        }
        other => Err(error::driver(
            ErrorKind::Unavailable,
            "pull",
            &subject,
            format!("the registry {base} answered {other} for {path}:{reference}"),
        )),
    }
}
