//! An S3-compatible server for the object store's tests: moto's server mode (from PyPI,
//! installed by `scripts/testenv up`) on a free loopback port, one per test, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestEnv, UP_HINT, free_port, unique_name};

/// A running moto server with one empty bucket.
pub struct S3Server {
    child: Child,
    endpoint: String,
    bucket: String,
}

impl S3Server {
    /// Starts the server and creates a uniquely named bucket.
    ///
    /// # Panics
    /// If moto is not installed or does not answer, naming `scripts/testenv up`.
    pub async fn start() -> Self {
        let python = TestEnv::get()
            .require("CUTOVER_TEST_MOTO_PYTHON")
            .to_string();
        let port = free_port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto with {python}: {e}; {UP_HINT}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let bucket = unique_name("cutover").replace('_', "-").to_lowercase();
        let server = S3Server {
            child,
            endpoint,
            bucket,
        };
        // Creating the bucket is also the readiness probe (moto accepts unsigned requests).
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!("{}/{}", server.endpoint, server.bucket);
            match client.put(&url).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => panic!(
                    "moto refused to create bucket {}: {}",
                    server.bucket,
                    r.status()
                ),
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "moto on {} does not answer: {e}; {UP_HINT}",
                        server.endpoint
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket created for this test.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Replaces (or creates) object `key` with `body`, as someone with access to the
    /// bucket could, for corruption tests.
    pub async fn put_object(&self, key: &str, body: Vec<u8>) {
        let url = format!("{}/{}/{key}", self.endpoint, self.bucket);
        let r = reqwest::Client::new()
            .put(&url)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT {key}: {}", r.status());
    }

    /// The keys in the bucket.
    pub async fn keys(&self) -> Vec<String> {
        let url = format!("{}/{}?list-type=2", self.endpoint, self.bucket);
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
