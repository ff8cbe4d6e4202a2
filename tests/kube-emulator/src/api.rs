//! The HTTP surface: Kubernetes REST paths parsed by hand into (resource, namespace,
//! name, subresource) and served from the store.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::store::{ApiError, kind_of};
use crate::{exec, kubelet, patch};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A parsed request path.
#[derive(Debug)]
struct Target {
    resource: String,
    namespace: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    match rest {
        ["namespaces", ns, resource] => Some(Target {
            resource: resource.to_string(),
            namespace: ns.to_string(),
            name: None,
            sub: None,
        }),
        ["namespaces", ns, resource, name] => Some(Target {
            resource: resource.to_string(),
            namespace: ns.to_string(),
            name: Some(name.to_string()),
            sub: None,
        }),
        ["namespaces", ns, resource, name, sub] => Some(Target {
            resource: resource.to_string(),
            namespace: ns.to_string(),
            name: Some(name.to_string()),
            sub: Some(sub.to_string()),
        }),
        _ => None,
    }
}

/// `key=value` pairs of a query string, percent-decoded, repeated keys kept.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn json_response(code: u16, value: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(e: ApiError) -> Response {
    json_response(e.code, &e.status())
}

/// Whether `labels` satisfy a label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-joined).
pub(crate) fn matches_selector(labels: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .all(|req| {
            if let Some((k, v)) = req.split_once("!=") {
                labels[k.trim()].as_str() != Some(v.trim())
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                labels[k.trim()].as_str() == Some(v.trim())
            } else if let Some(k) = req.strip_prefix('!') {
                labels[k.trim()].is_null()
            } else {
                !labels[req].is_null()
            }
        })
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(target) = parse_path(parts.uri.path()) else {
        return error(ApiError::new(
            404,
            "NotFound",
            format!("the emulator does not serve {}", parts.uri.path()),
        ));
    };
    if kind_of(&target.resource).is_none() {
        return error(ApiError::new(
            404,
            "NotFound",
            format!(
                "the emulator does not serve the resource {:?} (see its crate docs)",
                target.resource
            ),
        ));
    }
    let query = query_pairs(parts.uri.query().unwrap_or(""));
    if target.sub.as_deref() == Some("exec") {
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(u) => u,
            Err(rejection) => return rejection.into_response(),
        };
        return exec::serve(
            shared,
            &target.namespace,
            target.name.as_deref().unwrap_or(""),
            &query,
            upgrade,
        );
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(e) => return error(ApiError::new(400, "BadRequest", e.to_string())),
    };
    let result = match (&parts.method, &target.name, target.sub.as_deref()) {
        (&Method::GET, None, None) => {
            if matches!(param(&query, "watch"), Some("true" | "1")) {
                return watch(shared, target, &query);
            }
            Ok((200, list(&shared, &target, &query)))
        }
        (&Method::POST, None, None) => parse_body(&body)
            .and_then(|obj| create(&shared, &target.resource, &target.namespace, obj))
            .map(|o| (201, o)),
        (&Method::GET, Some(name), None) => shared
            .read()
            .get(&target.resource, &target.namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&target.resource, name))
            .map(|o| (200, o)),
        (&Method::PUT, Some(name), None) => parse_body(&body)
            .and_then(|obj| {
                shared.write(|s| s.replace(&target.resource, &target.namespace, name, obj, false))
            })
            .map(|o| (200, o)),
        (&Method::PATCH, Some(name), None) => {
            patch_object(&shared, &target, name, &content_type, &body).map(|o| (200, o))
        }
        (&Method::DELETE, Some(name), None) => delete(&shared, &target, name).map(|o| (200, o)),
        (&Method::GET, Some(name), Some("log")) if target.resource == "pods" => {
            return pod_log(&shared, &target.namespace, name, &query);
        }
        (method, Some(name), Some("scale"))
            if matches!(target.resource.as_str(), "deployments" | "statefulsets") =>
        {
            scale(&shared, &target, name, method, &content_type, &body).map(|o| (200, o))
        }
        (method, _, sub) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the emulator does not implement {method} on {}{}",
                target.resource,
                sub.map(|s| format!("/{s}")).unwrap_or_default()
            ),
        )),
    };
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(e) => error(e),
    }
}

/// `GET pods/NAME/log`: what the pod's process wrote to stdout and stderr (every run of
/// it, restarts included: the emulator keeps one file per pod), as `text/plain`; with
/// `tailLines=N` its last N lines. A pod without a process (not the specimen) has an
/// empty log. `container`, `previous`, `timestamps` and `follow` are not implemented.
fn pod_log(shared: &Shared, namespace: &str, name: &str, query: &[(String, String)]) -> Response {
    if shared.read().get("pods", namespace, name).is_none() {
        return error(ApiError::not_found("pods", name));
    }
    let text = std::fs::read(shared.dir.path().join(name).join("log")).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let tail = match param(query, "tailLines").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            lines[lines.len().saturating_sub(n)..].concat()
        }
        None => text.into_owned(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], tail).into_response()
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "BadRequest", format!("the body is not JSON: {e}")))
}

fn list(shared: &Shared, target: &Target, query: &[(String, String)]) -> Value {
    let store = shared.read();
    let selector = param(query, "labelSelector").unwrap_or("");
    let items: Vec<Value> = store
        .list(&target.resource, &target.namespace)
        .into_iter()
        .filter(|o| matches_selector(&o["metadata"]["labels"], selector))
        .collect();
    let (kind, api_version) = kind_of(&target.resource).unwrap_or(("", ""));
    json!({
        "kind": format!("{kind}List"), "apiVersion": api_version,
        "metadata": {"resourceVersion": store.rv().to_string()},
        "items": items,
    })
}

/// Creates an object; pods start running.
pub(crate) fn create(
    shared: &Arc<Shared>,
    resource: &str,
    namespace: &str,
    object: Value,
) -> Result<Value, ApiError> {
    let created = shared.write(|s| s.create(resource, namespace, object))?;
    if resource == "pods" {
        kubelet::start(shared.clone(), namespace, &created);
    }
    Ok(created)
}

fn patch_object(
    shared: &Shared,
    target: &Target,
    name: &str,
    content_type: &str,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let patch_doc = parse_body(body)?;
    shared.write(|s| {
        let mut object = s
            .get(&target.resource, &target.namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&target.resource, name))?;
        // The stored version, unless the patch itself names one to check.
        object["metadata"]["resourceVersion"] = Value::Null;
        apply_patch(&mut object, &patch_doc, content_type)?;
        s.replace(&target.resource, &target.namespace, name, object, false)
    })
}

fn apply_patch(object: &mut Value, patch_doc: &Value, content_type: &str) -> Result<(), ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/merge-patch+json" => {
            patch::merge(object, patch_doc);
            Ok(())
        }
        "application/strategic-merge-patch+json" => {
            patch::strategic(object, patch_doc).map_err(|m| ApiError::new(422, "Invalid", m))
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the emulator does not implement {other:?} patches (only merge and strategic merge)"
            ),
        )),
    }
}

fn scale_of(deployment: &Value) -> Value {
    let labels = deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let meta = &deployment["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
            "generation": meta["generation"],
        },
        "spec": {"replicas": crate::store::replicas_of(deployment)},
        "status": {"replicas": deployment["status"]["replicas"].as_u64().unwrap_or(0), "selector": labels},
    })
}

fn scale(
    shared: &Shared,
    target: &Target,
    name: &str,
    method: &Method,
    content_type: &str,
    body: &Bytes,
) -> Result<Value, ApiError> {
    shared.write(|s| {
        let deployment = s
            .get(&target.resource, &target.namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&target.resource, name))?;
        let mut wanted = scale_of(&deployment);
        match *method {
            Method::GET => return Ok(wanted),
            Method::PUT => wanted = parse_body(body)?,
            Method::PATCH => {
                wanted["metadata"]["resourceVersion"] = Value::Null;
                apply_patch(&mut wanted, &parse_body(body)?, content_type)?;
            }
            _ => {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "scale: GET, PUT or PATCH",
                ));
            }
        }
        let replicas = wanted["spec"]["replicas"]
            .as_u64()
            .ok_or_else(|| ApiError::new(422, "Invalid", "spec.replicas: Required value"))?;
        let mut updated = deployment;
        updated["spec"]["replicas"] = replicas.into();
        updated["metadata"]["resourceVersion"] = wanted["metadata"]["resourceVersion"].clone();
        let updated = s.replace(&target.resource, &target.namespace, name, updated, false)?;
        Ok(scale_of(&updated))
    })
}

/// Deletes an object: a pod is marked terminating and stopped by its kubelet task; a
/// Deployment takes its ReplicaSets and their pods with it.
fn delete(shared: &Shared, target: &Target, name: &str) -> Result<Value, ApiError> {
    match target.resource.as_str() {
        "pods" => delete_pod(shared, &target.namespace, name),
        "statefulsets" => {
            let removed = shared
                .write(|s| s.remove("statefulsets", &target.namespace, name))
                .ok_or_else(|| ApiError::not_found("statefulsets", name))?;
            let uid = removed["metadata"]["uid"].clone();
            let pods: Vec<String> = shared
                .read()
                .list("pods", &target.namespace)
                .into_iter()
                .filter(|p| crate::controller::owned_by(p, &uid))
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                .collect();
            for pod in pods {
                let _ = delete_pod(shared, &target.namespace, &pod);
            }
            Ok(removed)
        }
        "deployments" => {
            let removed = shared
                .write(|s| s.remove("deployments", &target.namespace, name))
                .ok_or_else(|| ApiError::not_found("deployments", name))?;
            let uid = removed["metadata"]["uid"].clone();
            let owned = |o: &Value| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            };
            let sets: Vec<Value> = shared
                .read()
                .list("replicasets", &target.namespace)
                .into_iter()
                .filter(owned)
                .collect();
            for set in sets {
                let set_uid = set["metadata"]["uid"].clone();
                let pods: Vec<String> = shared
                    .read()
                    .list("pods", &target.namespace)
                    .into_iter()
                    .filter(|p| {
                        p["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == set_uid))
                    })
                    .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                    .collect();
                for pod in pods {
                    let _ = delete_pod(shared, &target.namespace, &pod);
                }
                let set_name = set["metadata"]["name"].as_str().unwrap_or("").to_string();
                shared.write(|s| s.remove("replicasets", &target.namespace, &set_name));
            }
            Ok(removed)
        }
        resource => shared
            .write(|s| s.remove(resource, &target.namespace, name))
            .ok_or_else(|| ApiError::not_found(resource, name)),
    }
}

/// Marks a pod terminating and tells its task to stop the process; the task removes it.
pub(crate) fn delete_pod(shared: &Shared, namespace: &str, name: &str) -> Result<Value, ApiError> {
    let marked = shared.write(|s| s.mark_deleting("pods", namespace, name))?;
    let stopped = shared
        .pods()
        .get(&(namespace.to_string(), name.to_string()))
        .map(|h| h.stop.send_replace(true))
        .is_some();
    if !stopped {
        shared.write(|s| s.remove("pods", namespace, name));
    }
    Ok(marked)
}

/// A watch: changes after `resourceVersion` (all current objects as ADDED first when it is
/// absent or "0"), one JSON object per line, until `timeoutSeconds` (default 30 min).
fn watch(shared: Arc<Shared>, target: Target, query: &[(String, String)]) -> Response {
    let selector = param(query, "labelSelector").unwrap_or("").to_string();
    let timeout = param(query, "timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800u64);
    let since = param(query, "resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0);
    let mut first: Vec<u8> = Vec::new();
    let start = {
        let store = shared.read();
        match since {
            Some(v) if v < store.oldest_watchable() => {
                let gone = ApiError::new(410, "Expired", format!("too old resource version: {v}"));
                let line = json!({"type": "ERROR", "object": gone.status()});
                return Response::new(Body::from(format!("{line}\n")));
            }
            Some(v) => v,
            None => {
                for o in store.list(&target.resource, &target.namespace) {
                    if matches_selector(&o["metadata"]["labels"], &selector) {
                        first.extend(json!({"type": "ADDED", "object": o}).to_string().bytes());
                        first.push(b'\n');
                    }
                }
                store.rv()
            }
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let rx = shared.changed.subscribe();
    let state = (shared, rx, start, Some(first), target, selector);
    let stream = futures_util::stream::unfold(
        state,
        move |(shared, mut rx, mut last, first, target, selector)| async move {
            if let Some(first) = first.filter(|f| !f.is_empty()) {
                return Some((
                    Ok::<_, std::io::Error>(Bytes::from(first)),
                    (shared, rx, last, None, target, selector),
                ));
            }
            loop {
                let mut out = Vec::new();
                {
                    let store = shared.read();
                    let from = last;
                    for c in store.changes.iter().filter(|c| c.rv > from) {
                        last = c.rv;
                        if c.resource == target.resource
                            && c.namespace == target.namespace
                            && matches_selector(&c.object["metadata"]["labels"], &selector)
                        {
                            out.extend(
                                json!({"type": c.kind, "object": c.object})
                                    .to_string()
                                    .bytes(),
                            );
                            out.push(b'\n');
                        }
                    }
                }
                if !out.is_empty() {
                    return Some((
                        Ok(Bytes::from(out)),
                        (shared, rx, last, None, target, selector),
                    ));
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => continue,
                    _ => return None,
                }
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
