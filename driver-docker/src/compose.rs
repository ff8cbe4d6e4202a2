//! The compose file: the target service's `image:` line, edited in place.
//!
//! cutover does not parse and re-serialise the file (that would lose comments, quoting and
//! layout). It finds the one line `image: …` of the service by indentation, under the
//! top-level `services:` key, and replaces only the value on that line, keeping its quoting
//! style, an anchor on it and a trailing comment. Every other byte stays as it was.
//!
//! What it cannot edit safely it refuses, naming the reason, before anything changes: a
//! service without its own `image:` line (built, or inheriting it through `<<: *anchor` or
//! `extends`), an image given by an alias (`*name`), by `${VARIABLE}` interpolation or as
//! a block scalar, an anchored value that other services alias, flow-style mappings, tab
//! indentation, and duplicate `image:` keys.
//!
//! Writes are atomic: a temporary file beside the original (same directory, same mode and
//! owner), fsynced, renamed over it, then the directory fsynced. A symlinked compose file
//! is written through to its target.
//!
//! Snapshots do not copy the file: compose files often hold passwords, and snapshots are
//! journaled. A `ComposeRecord` holds the path, the service's image value as written and
//! the SHA-256 of the whole file; `restore` writes the recorded value back, which makes the
//! file byte-identical to the snapshot (checked against the hash) unless someone else has
//! edited it since — their edits are then kept, and only the image line is put back.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cutover_core::{ErrorKind, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error;

/// Where the service's image value sits in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageLine {
    /// Byte range of the value token as written (quotes included, anchor excluded).
    pub range: std::ops::Range<usize>,
    /// How the value is quoted.
    pub quote: Quote,
    /// The value without quotes.
    pub value: String,
}

/// The quoting style of a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quote {
    /// `image: repo:tag`
    Plain,
    /// `image: 'repo:tag'`
    Single,
    /// `image: "repo:tag"`
    Double,
}

/// One line of the file: its byte offset, its text without the line break.
struct Line<'a> {
    start: usize,
    text: &'a str,
}

impl Line<'_> {
    fn indent(&self) -> usize {
        self.text.len() - self.text.trim_start_matches(' ').len()
    }
    /// A key or value: not blank, a comment or a document marker.
    fn is_content(&self) -> bool {
        !self.is_filler() && self.text.trim() != "---"
    }
    /// Blank or comment only.
    fn is_filler(&self) -> bool {
        let t = self.text.trim();
        t.is_empty() || t.starts_with('#')
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for piece in text.split_inclusive('\n') {
        let body = piece.trim_end_matches('\n').trim_end_matches('\r');
        out.push(Line { start, text: body });
        start += piece.len();
    }
    out
}

/// The key of a block-mapping line (`key:` or `key: value`), unquoted, and the byte offset
/// (within the line) just after the colon.
fn key_of(text: &str) -> Option<(String, usize)> {
    let t = text.trim_start_matches(' ');
    let lead = text.len() - t.len();
    let (key, after) = if let Some(rest) = t.strip_prefix('"') {
        let end = rest.find('"')?;
        (rest[..end].to_string(), 1 + end + 1)
    } else if let Some(rest) = t.strip_prefix('\'') {
        let end = rest.find('\'')?;
        (rest[..end].to_string(), 1 + end + 1)
    } else {
        let end = t.find(':')?;
        (t[..end].trim_end().to_string(), end)
    };
    let rest = &t[after..];
    let colon = rest.len() - rest.trim_start_matches(' ').len();
    let rest = &rest[colon..];
    if !rest.starts_with(':') {
        return None;
    }
    let tail = &rest[1..];
    if !(tail.is_empty() || tail.starts_with(' ') || tail.starts_with('\t')) {
        return None;
    }
    Some((key, lead + after + colon + 1))
}

/// Finds the `image:` value of `service`, or says why it cannot be edited safely.
pub(crate) fn find_image(text: &str, service: &str) -> std::result::Result<ImageLine, String> {
    let all = lines(text);
    if let Some(l) = all
        .iter()
        .find(|l| !l.is_filler() && l.text.starts_with('\t'))
    {
        return Err(format!(
            "line {} is indented with a tab, which YAML does not allow",
            line_no(&all, l)
        ));
    }
    // The top-level `services:` key.
    let services_at = all
        .iter()
        .position(|l| {
            l.is_content()
                && l.indent() == 0
                && key_of(l.text).is_some_and(|(k, _)| k == "services")
        })
        .ok_or(
            "it has no top-level `services:` key (the version-1 file format is not supported)",
        )?;
    if let Some((_, after)) = key_of(all[services_at].text)
        && !value_part(&all[services_at].text[after..]).is_empty()
    {
        return Err("its `services:` is not a block mapping (flow style `{…}`)".into());
    }
    let services_block = block(&all, services_at, 0);
    let service_indent = services_block
        .iter()
        .find(|l| l.is_content())
        .map(|l| l.indent())
        .ok_or("its `services:` key is empty")?;
    let service_pos = services_block
        .iter()
        .position(|l| {
            l.is_content()
                && l.indent() == service_indent
                && key_of(l.text).is_some_and(|(k, _)| k == service)
        })
        .ok_or_else(|| format!("it has no service `{service}` under `services:`"))?;
    let service_line = &services_block[service_pos];
    let (_, after) = key_of(service_line.text).expect("matched above");
    let inline = value_part(&service_line.text[after..]);
    if !inline.is_empty() && !inline.starts_with('&') {
        return Err(format!(
            "service `{service}` is written in flow style or as an alias ({inline}); give it a block mapping with its own `image:` line"
        ));
    }
    let first = all
        .iter()
        .position(|l| l.start == service_line.start)
        .expect("a line of the file");
    let body = block(&all, first, service_indent);
    let prop_indent = body.iter().find(|l| l.is_content()).map(|l| l.indent());
    let images: Vec<&Line> = body
        .iter()
        .filter(|l| l.is_content() && Some(l.indent()) == prop_indent)
        .filter(|l| key_of(l.text).is_some_and(|(k, _)| k == "image"))
        .collect();
    let merges = body.iter().any(|l| {
        l.is_content()
            && Some(l.indent()) == prop_indent
            && key_of(l.text).is_some_and(|(k, _)| k == "<<")
    });
    let line = match images.as_slice() {
        [one] => *one,
        [] if merges => {
            return Err(format!(
                "service `{service}` takes its image from a merged anchor (`<<: *…`); give it its own `image:` line"
            ));
        }
        [] => {
            return Err(format!(
                "service `{service}` has no `image:` line (built with `build:` or using `extends`)"
            ));
        }
        _ => {
            return Err(format!(
                "service `{service}` has more than one `image:` key"
            ));
        }
    };
    let (_, after) = key_of(line.text).expect("matched above");
    let raw = &line.text[after..];
    let value = value_part(raw);
    let mut offset = line.start + after + (raw.len() - raw.trim_start_matches([' ', '\t']).len());
    let mut token = value;
    if let Some(rest) = token.strip_prefix('&') {
        let name_end = rest.find(' ').ok_or_else(|| {
            format!("service `{service}`'s image is an anchor with no value on its line")
        })?;
        let name = &rest[..name_end];
        let aliased = all
            .iter()
            .filter(|l| l.start != line.start)
            .any(|l| l.text.contains(&format!("*{name}")));
        if aliased {
            return Err(format!(
                "service `{service}`'s image is the anchor `&{name}`, which other places alias (`*{name}`): editing it would change them too"
            ));
        }
        let after_name = &rest[name_end..];
        let skip = 1 + name_end + (after_name.len() - after_name.trim_start().len());
        offset += skip;
        token = &token[skip..];
    }
    let line_no = line_no(&all, line);
    let (quote, inner) = match token.as_bytes().first() {
        None => {
            return Err(format!(
                "service `{service}`'s `image:` (line {line_no}) has no value on its line"
            ));
        }
        Some(b'*') => {
            return Err(format!(
                "service `{service}`'s image is an alias ({token}, line {line_no}): the value is defined elsewhere"
            ));
        }
        Some(b'|' | b'>') => {
            return Err(format!(
                "service `{service}`'s image is a block scalar (line {line_no})"
            ));
        }
        Some(b'"') if token.len() >= 2 && token.ends_with('"') => {
            (Quote::Double, &token[1..token.len() - 1])
        }
        Some(b'\'') if token.len() >= 2 && token.ends_with('\'') => {
            (Quote::Single, &token[1..token.len() - 1])
        }
        Some(b'"' | b'\'') => {
            return Err(format!(
                "service `{service}`'s image (line {line_no}) is a quoted value cutover cannot read"
            ));
        }
        Some(b'{' | b'[') => {
            return Err(format!(
                "service `{service}`'s image (line {line_no}) is not a plain value"
            ));
        }
        Some(_) => (Quote::Plain, token),
    };
    if inner.contains('$') {
        return Err(format!(
            "service `{service}`'s image ({token}, line {line_no}) uses `$` interpolation: set the variable instead"
        ));
    }
    if inner.contains(['\\', '"', '\'']) || inner.trim() != inner {
        return Err(format!(
            "service `{service}`'s image (line {line_no}) has escapes or quotes cutover does not edit"
        ));
    }
    Ok(ImageLine {
        range: offset..offset + token.len(),
        quote,
        value: inner.to_string(),
    })
}

fn line_no(all: &[Line], line: &Line) -> usize {
    all.iter()
        .position(|l| l.start == line.start)
        .map_or(0, |i| i + 1)
}

/// The value of a `key: value` tail without its trailing comment and surrounding spaces.
fn value_part(tail: &str) -> &str {
    let t = tail.trim_start_matches([' ', '\t']);
    let end = if t.starts_with('"') || t.starts_with('\'') {
        let q = t.as_bytes()[0] as char;
        t[1..].find(q).map_or(t.len(), |i| i + 2)
    } else {
        t.find(" #").or_else(|| t.find("\t#")).unwrap_or(t.len())
    };
    let end = if t.starts_with('#') { 0 } else { end };
    t[..end].trim_end()
}

/// The lines after `all[at]` that belong to it: until the next content line indented
/// `indent` or less.
fn block<'a, 'b>(all: &'b [Line<'a>], at: usize, indent: usize) -> &'b [Line<'a>] {
    let rest = &all[at + 1..];
    let end = rest
        .iter()
        .position(|l| !l.is_filler() && l.text.trim() != "---" && l.indent() <= indent)
        .unwrap_or(rest.len());
    // A trailing comment at the parent's level belongs to what follows, but keeping it in
    // the block changes nothing: only content lines are looked at.
    &rest[..end]
}

/// `text` with the service's image value replaced by `image`, in the same quoting style.
#[cfg(test)]
fn with_image(text: &str, service: &str, image: &str) -> std::result::Result<String, String> {
    let line = find_image(text, service)?;
    Ok(replace(text, &line, image))
}

fn replace(text: &str, line: &ImageLine, image: &str) -> String {
    let token = match line.quote {
        Quote::Plain => image.to_string(),
        Quote::Single => format!("'{image}'"),
        Quote::Double => format!("\"{image}\""),
    };
    let mut out = String::with_capacity(text.len() + token.len());
    out.push_str(&text[..line.range.start]);
    out.push_str(&token);
    out.push_str(&text[line.range.end..]);
    out
}

/// The compose file of a target.
#[derive(Debug, Clone)]
pub(crate) struct ComposeFile {
    /// As configured.
    pub path: PathBuf,
    /// The service whose image line is edited.
    pub service: String,
}

/// What a snapshot records of the compose file (no content: it may hold secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ComposeRecord {
    /// The file, as configured.
    pub path: PathBuf,
    /// The service's image value as written, quotes included.
    pub image_token: String,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
}

impl ComposeFile {
    fn err(&self, op: &str, kind: ErrorKind, message: String) -> cutover_core::Error {
        error::driver(kind, op, &self.path.display().to_string(), message)
    }

    fn read(&self, op: &str) -> Result<String> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::NotFound
            } else {
                ErrorKind::Other
            };
            self.err(op, kind, format!("cannot read the compose file: {e}"))
        })?;
        String::from_utf8(bytes).map_err(|_| {
            self.err(
                op,
                ErrorKind::InvalidInput,
                "the compose file is not UTF-8 text".into(),
            )
        })
    }

    fn locate(&self, text: &str, op: &str) -> Result<ImageLine> {
        find_image(text, &self.service).map_err(|why| {
            self.err(
                op,
                ErrorKind::InvalidInput,
                format!(
                    "cutover cannot edit the image of this compose file safely: {why}. Nothing was \
                     changed; fix the file or remove `compose.file` from [driver.docker] to leave the \
                     file alone"
                ),
            )
        })
    }

    /// Checks that the file exists and its image line can be edited.
    pub(crate) fn check(&self, op: &str) -> Result<()> {
        let text = self.read(op)?;
        self.locate(&text, op).map(|_| ())
    }

    /// Sets the service's image; does nothing when it is already `image`.
    pub(crate) fn set_image(&self, image: &str, op: &str) -> Result<()> {
        let text = self.read(op)?;
        let line = self.locate(&text, op)?;
        if line.value == image {
            return Ok(());
        }
        self.write(replace(&text, &line, image).as_bytes(), op)
    }

    /// What a snapshot keeps.
    pub(crate) fn record(&self, op: &str) -> Result<ComposeRecord> {
        let text = self.read(op)?;
        let line = self.locate(&text, op)?;
        Ok(ComposeRecord {
            path: self.path.clone(),
            image_token: text[line.range].to_string(),
            sha256: sha256(text.as_bytes()),
        })
    }

    /// Puts the recorded image value back; the file is then byte-identical to the snapshot
    /// unless it was edited elsewhere since.
    pub(crate) fn restore(&self, record: &ComposeRecord, op: &str) -> Result<()> {
        let text = self.read(op)?;
        if sha256(text.as_bytes()) == record.sha256 {
            return Ok(());
        }
        let line = self.locate(&text, op)?;
        if text[line.range.clone()] == record.image_token {
            return Ok(());
        }
        let mut out = String::with_capacity(text.len());
        out.push_str(&text[..line.range.start]);
        out.push_str(&record.image_token);
        out.push_str(&text[line.range.end..]);
        self.write(out.as_bytes(), op)
    }

    /// Checks a restore could proceed (the file is readable and editable).
    pub(crate) fn check_restore(&self, record: &ComposeRecord, op: &str) -> Result<()> {
        if record.path != self.path {
            return Err(self.err(
                op,
                ErrorKind::InvalidInput,
                format!(
                    "the snapshot recorded the compose file {}, but this target's is {}",
                    record.path.display(),
                    self.path.display()
                ),
            ));
        }
        self.check(op)
    }

    /// Replaces the file atomically, keeping its mode and owner; follows a symlink.
    fn write(&self, bytes: &[u8], op: &str) -> Result<()> {
        let io = |what: &str, e: std::io::Error| {
            self.err(
                op,
                ErrorKind::Other,
                format!("cannot {what}: {e}; the compose file is unchanged"),
            )
        };
        let target = std::fs::canonicalize(&self.path).map_err(|e| io("resolve the file", e))?;
        let meta = std::fs::metadata(&target).map_err(|e| io("read its metadata", e))?;
        let dir = target.parent().unwrap_or(Path::new("/"));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.cutover-{}", std::process::id()));
        let result = (|| {
            // A leftover of a crashed run of this pid is ours; never write through a link.
            let _ = std::fs::remove_file(&temp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(|e| io("create a temporary file", e))?;
            f.write_all(bytes).map_err(|e| io("write", e))?;
            f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| io("set the mode", e))?;
            // Only root can give a file away; otherwise it stays the writer's.
            let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
            f.sync_all().map_err(|e| io("fsync", e))?;
            std::fs::rename(&temp, &target).map_err(|e| io("rename into place", e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// SHA-256 of `bytes`, hex.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# Apidog on-premises, as the vendor ships it.
version: \"3.8\"   # ignored by Compose v2

x-common: &common
  restart: unless-stopped
  image: busybox:1.36    # a template key, not a service

services:
  # The database. Its image line must never change.
  db:
    image: \"mariadb:10.11\" # pinned
    environment:
      MYSQL_PASSWORD: hunter2

  server:   # the application
    <<: *common
    # image goes here
    image: registry.example.com/apidog/server:v2.7.80   # bumped by cutover
    environment:
      - MYSQL_HOST=db
    depends_on: [db]

  'worker':
      image: 'registry.example.com/apidog/server:v2.7.80'
      command: [\"worker\"]

  cache:
    image: &redis redis:7
  cache2:
    image: *redis
  nginx:
    build: ./nginx
";

    /// Every line but the one at `changed` (1-based) is byte-identical.
    fn only_line_changed(before: &str, after: &str, changed: usize) {
        let b: Vec<_> = before.split_inclusive('\n').collect();
        let a: Vec<_> = after.split_inclusive('\n').collect();
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in b.iter().zip(&a).enumerate() {
            if i + 1 != changed {
                assert_eq!(x, y, "line {} changed", i + 1);
            } else {
                assert_ne!(x, y, "line {} did not change", i + 1);
            }
        }
    }

    #[test]
    fn only_the_target_services_image_value_changes() {
        let out = with_image(FILE, "server", "registry.example.com/apidog/server:v2.7.81").unwrap();
        only_line_changed(FILE, &out, 18);
        assert!(out.contains(
            "    image: registry.example.com/apidog/server:v2.7.81   # bumped by cutover\n"
        ));
        assert_eq!(
            find_image(&out, "server").unwrap().value,
            "registry.example.com/apidog/server:v2.7.81"
        );
        assert_eq!(find_image(&out, "db").unwrap().value, "mariadb:10.11");
    }

    #[test]
    fn quoting_style_and_other_indentation_are_kept() {
        let out = with_image(FILE, "worker", "r/s:2").unwrap();
        only_line_changed(FILE, &out, 24);
        assert!(out.contains("      image: 'r/s:2'\n"));
        let out = with_image(FILE, "db", "mariadb:11").unwrap();
        only_line_changed(FILE, &out, 11);
        assert!(out.contains("    image: \"mariadb:11\" # pinned\n"));
    }

    /// The core pins the definition to the pulled digest; the file gets that reference.
    #[test]
    fn a_reference_pinned_to_a_digest_is_written_and_read_back() {
        let pinned = format!(
            "registry.example.com/apidog/server:v2.7.81@sha256:{}",
            "0".repeat(64)
        );
        let out = with_image(FILE, "server", &pinned).unwrap();
        only_line_changed(FILE, &out, 18);
        assert!(out.contains(&format!("    image: {pinned}   # bumped by cutover\n")));
        assert_eq!(find_image(&out, "server").unwrap().value, pinned);
        let quoted = with_image(FILE, "worker", &pinned).unwrap();
        assert!(quoted.contains(&format!("      image: '{pinned}'\n")));
        assert_eq!(find_image(&quoted, "worker").unwrap().value, pinned);
    }

    #[test]
    fn crlf_files_keep_their_line_breaks() {
        let crlf = FILE.replace('\n', "\r\n");
        let out = with_image(&crlf, "server", "x/y:2").unwrap();
        assert_eq!(out.matches("\r\n").count(), crlf.matches("\r\n").count());
        assert!(out.contains("    image: x/y:2   # bumped by cutover\r\n"));
    }

    #[test]
    fn what_cannot_be_edited_safely_is_refused_with_the_reason() {
        let cases = [
            ("cache", "alias"),
            ("cache2", "alias"),
            ("nginx", "no `image:` line"),
            ("missing", "no service `missing`"),
        ];
        for (service, why) in cases {
            let e = with_image(FILE, service, "x:1").unwrap_err();
            assert!(e.contains(why), "{service}: {e}");
        }
        let merged = "services:\n  app:\n    <<: *common\n    ports: [\"80:80\"]\n";
        assert!(
            with_image(merged, "app", "x:1")
                .unwrap_err()
                .contains("merged anchor")
        );
        let env = "services:\n  app:\n    image: \"repo:${TAG}\"\n";
        assert!(
            with_image(env, "app", "x:1")
                .unwrap_err()
                .contains("interpolation")
        );
        let flow = "services:\n  app: {image: a:1}\n";
        assert!(
            with_image(flow, "app", "x:1")
                .unwrap_err()
                .contains("flow style")
        );
        let twice = "services:\n  app:\n    image: a:1\n    image: a:2\n";
        assert!(
            with_image(twice, "app", "x:1")
                .unwrap_err()
                .contains("more than one")
        );
        let tab = "services:\n\tapp:\n\t\timage: a:1\n";
        assert!(with_image(tab, "app", "x:1").unwrap_err().contains("tab"));
        let v1 = "app:\n  image: a:1\n";
        assert!(
            with_image(v1, "app", "x:1")
                .unwrap_err()
                .contains("services")
        );
        let block = "services:\n  app:\n    image: >\n      a:1\n";
        assert!(
            with_image(block, "app", "x:1")
                .unwrap_err()
                .contains("block scalar")
        );
    }

    #[test]
    fn an_anchor_nobody_aliases_is_kept_and_its_value_edited() {
        let text = "services:\n  app:\n    image: &img a:1 # note\n";
        assert_eq!(
            with_image(text, "app", "a:2").unwrap(),
            "services:\n  app:\n    image: &img a:2 # note\n"
        );
    }

    #[test]
    fn nested_image_keys_are_not_the_services() {
        let text = "services:\n  app:\n    labels:\n      image: not-this\n    image: a:1\n";
        let out = with_image(text, "app", "a:2").unwrap();
        assert!(out.contains("      image: not-this\n"));
        assert!(out.ends_with("    image: a:2\n"));
    }

    #[test]
    fn set_restore_round_trips_bytes_mode_and_survives_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("docker-compose.yml");
        std::fs::write(&real, FILE).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("compose.yml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let file = ComposeFile {
            path: link.clone(),
            service: "server".into(),
        };
        let record = file.record("snapshot").unwrap();
        file.set_image("r/apidog:v2.7.81", "set_image").unwrap();
        file.set_image("r/apidog:v2.7.81", "set_image").unwrap();
        let edited = std::fs::read_to_string(&real).unwrap();
        only_line_changed(FILE, &edited, 18);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o7777, 0o640);
        file.restore(&record, "restore").unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), FILE);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 2, "no temporary file left");
        // Someone else's later edit is kept; only the image value goes back.
        file.set_image("r/apidog:v2.7.81", "set_image").unwrap();
        let theirs = std::fs::read_to_string(&real)
            .unwrap()
            .replace("hunter2", "hunter3");
        std::fs::write(&real, &theirs).unwrap();
        file.restore(&record, "restore").unwrap();
        assert_eq!(
            std::fs::read_to_string(&real).unwrap(),
            FILE.replace("hunter2", "hunter3")
        );
    }

    #[test]
    fn an_uneditable_file_fails_naming_the_file_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker-compose.yml");
        std::fs::write(&path, FILE).unwrap();
        let file = ComposeFile {
            path: path.clone(),
            service: "nginx".into(),
        };
        let e = file.set_image("x:1", "set_image").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.report().contains("docker-compose.yml"), "{}", e.report());
        assert!(e.report().contains("Nothing was changed"), "{}", e.report());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);
    }
}
