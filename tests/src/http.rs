//! The specimen's HTTP API as typed calls.

use std::time::Duration;

use serde::Deserialize;

/// One item as the specimen lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredItem {
    /// Database id.
    pub id: i64,
    /// Title.
    pub name: String,
    /// Text.
    pub body: String,
}

/// `GET /items`: every item and a checksum over all of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Items {
    /// Number of items.
    pub count: usize,
    /// SHA-256 over ids, names and bodies; equal across releases for equal data.
    pub checksum: String,
    /// The items in id order.
    pub items: Vec<StoredItem>,
}

/// A client of one specimen instance.
#[derive(Debug, Clone)]
pub struct SpecimenClient {
    base: String,
    http: reqwest::Client,
}

impl SpecimenClient {
    /// A client for `http://127.0.0.1:PORT`-style `base`.
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .expect("building an HTTP client");
        Self {
            base: base.into(),
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Status of `GET /health`, or `None` if nothing answers.
    pub async fn health(&self) -> Option<u16> {
        let response = self.http.get(format!("{}/health", self.base)).send().await;
        response.ok().map(|r| r.status().as_u16())
    }

    /// `GET /version` as JSON (`version`, `schema`, `instance`).
    pub async fn version(&self) -> serde_json::Value {
        self.get_json("/version").await
    }

    /// `POST /items`; returns the new id.
    pub async fn create_item(&self, name: &str, body: &str) -> i64 {
        let response = self
            .http
            .post(format!("{}/items", self.base))
            .json(&serde_json::json!({ "name": name, "body": body }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}/items: {e}", self.base));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(
            status.as_u16(),
            201,
            "POST {}/items answered {status}: {text}",
            self.base
        );
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON from POST /items");
        value["id"].as_i64().expect("an integer id")
    }

    /// `GET /items`.
    pub async fn items(&self) -> Items {
        serde_json::from_value(self.get_json("/items").await).expect("the /items shape")
    }

    /// `PUT /files/NAME`.
    pub async fn put_file(&self, name: &str, bytes: Vec<u8>) {
        let response = self
            .http
            .put(format!("{}/files/{name}", self.base))
            .body(bytes)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {}/files/{name}: {e}", self.base));
        assert!(
            response.status().is_success(),
            "PUT {}/files/{name} answered {}",
            self.base,
            response.status()
        );
    }

    /// `GET /files/NAME`, or `None` on 404.
    pub async fn get_file(&self, name: &str) -> Option<Vec<u8>> {
        let response = self
            .http
            .get(format!("{}/files/{name}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {}/files/{name}: {e}", self.base));
        match response.status().as_u16() {
            404 => None,
            200 => Some(response.bytes().await.expect("file body").to_vec()),
            other => panic!("GET {}/files/{name} answered {other}", self.base),
        }
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {url} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
    }
}
