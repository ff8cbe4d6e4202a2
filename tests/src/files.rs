//! Assertions over the files a run left behind.

use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Panics naming the first file under `dir` (journal, manifests, backups) whose bytes
/// contain `secret`.
pub fn assert_no_file_contains(dir: &Path, secret: &str) {
    assert!(!secret.is_empty(), "an empty secret is in every file");
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).unwrap();
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{} contains the secret", file.display());
    }
}
