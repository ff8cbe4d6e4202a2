//! The compose file: the target service's image, edited in place — on its `image:` line,
//! or in the `.env` file when the tag comes from a variable.
//!
//! cutover does not parse and re-serialise the file (that would lose comments, quoting and
//! layout). It finds the one line `image: …` of the service by indentation, under the
//! top-level `services:` key, and replaces only the value on that line, keeping its quoting
//! style, an anchor on it and a trailing comment. Every other byte stays as it was.
//!
//! **Interpolation.** An image written `repo:${TAG}`, `repo:$TAG`, `repo:${TAG:-1.0.0}` or
//! `repo:${TAG-1.0.0}` is resolved like Compose does (the forms are those of
//! `interpolation.rs`): Compose takes `TAG` from its process environment first, then from
//! the project's `.env` file (beside the compose file, or `compose.env_file`). An upgrade
//! edits the value on `TAG`'s line of `.env` in place (`envfile.rs`; quoting and comments
//! kept, every other byte of both files unchanged), with whatever part of the image the
//! variable covers (the tag, or the whole reference for `image: ${IMAGE}`). When `.env`
//! does not set `TAG`, Compose uses the default, so the default on the `image:` line is
//! edited; cutover does not add a line to `.env` (nor create one). Refused before anything
//! changes, naming the variable, the file and the line: `TAG` set in cutover's own
//! environment (it overrides `.env`, and cutover cannot change it there), defined more
//! than once in `.env`, listed there without a value, empty with a `:-` default, no
//! default and unset, interpolation inside `.env`'s value, several variables, a literal
//! after the variable, nesting and the `?`/`+` forms.
//!
//! What else it cannot edit safely it refuses, naming the reason, before anything changes:
//! a service without its own `image:` line (built, or inheriting it through `<<: *anchor`
//! or `extends`), an image given by an alias (`*name`) or as a block scalar, an anchored
//! value that other services alias, flow-style mappings, tab indentation, duplicate
//! `image:` keys, and an override file beside it (`compose.override.yaml`,
//! `docker-compose.override.yml`, …) that sets the service's image, since Compose run
//! without `-f` applies it over the file. These errors name the file and line; they are
//! configuration errors, not failed engine requests.
//!
//! **Files and projects.** `compose.file` may name the project directory: the first of
//! `compose.yaml`, `compose.yml`, `docker-compose.yaml`, `docker-compose.yml` in it is
//! used, as Compose does. Without `compose.project`, the project name is Compose's:
//! `COMPOSE_PROJECT_NAME` from the environment, else from `.env`, else the file's
//! top-level `name:`, else the directory's name normalised (lowercase, only `a-z0-9_-`).
//!
//! Writes are atomic: a temporary file beside the original (same directory, same mode and
//! owner), fsynced, renamed over it, then the directory fsynced. A symlinked file is
//! written through to its target.
//!
//! Snapshots do not copy the files: compose files and `.env` files hold passwords, and
//! snapshots are journaled. A `ComposeRecord` holds the path, the service's image value as
//! written and the SHA-256 of the whole file, and for a variable from `.env` that file's
//! path, the variable, its value as written and the file's SHA-256; `restore` writes the
//! recorded values back, which makes the files byte-identical to the snapshot (checked
//! against the hashes) unless someone else has edited them since — their edits are then
//! kept, and only the image value is put back.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::ops::Range;

use cutover_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ComposeTarget;
use crate::envfile::{self, EnvLine};
use crate::error::KIND;
use crate::interpolation::{self, Pattern};

/// Where the service's image value sits in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageLine {
    /// Byte range of the value token as written (quotes included, anchor excluded).
    pub range: std::ops::Range<usize>,
    /// How the value is quoted.
    pub quote: Quote,
    /// The value without quotes, `$` interpolation unresolved.
    pub value: String,
    /// Its line number, 1-based.
    pub line: usize,
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
    if inner.contains(['\\', '"', '\'']) || inner.trim() != inner {
        return Err(format!(
            "service `{service}`'s image (line {line_no}) has escapes or quotes cutover does not edit"
        ));
    }
    Ok(ImageLine {
        range: offset..offset + token.len(),
        quote,
        value: inner.to_string(),
        line: line_no,
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

/// File names Compose looks for in a project directory, in its order.
pub(crate) const FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The compose file `path` names: itself, or for a directory the first of
/// [`FILE_NAMES`] in it.
pub(crate) fn file_in(path: &Path) -> std::result::Result<PathBuf, String> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    FILE_NAMES
        .iter()
        .map(|n| path.join(n))
        .find(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "driver.docker.compose.file = {:?} is a directory without {}",
                path.display(),
                FILE_NAMES.join(", ")
            )
        })
}

/// The project name Compose gives the project of `file`: `COMPOSE_PROJECT_NAME` from
/// the process environment, else from the `.env` file (`env_text`), else the file's
/// top-level `name:`, else its directory's name, normalised like Compose (lowercase,
/// only `a-z0-9_-`, not starting with `_` or `-`).
pub(crate) fn project_name(
    file: &Path,
    text: &str,
    env_text: Option<&str>,
) -> std::result::Result<String, String> {
    const VAR: &str = "COMPOSE_PROJECT_NAME";
    if let Ok(v) = std::env::var(VAR)
        && !v.is_empty()
    {
        return Ok(normalise_project(&v));
    }
    if let Some(env) = env_text
        && let Some(l) = envfile::find(env, VAR)?
        && !l.value.is_empty()
    {
        return Ok(normalise_project(&l.value));
    }
    let top = lines(text).into_iter().find(|l| {
        l.is_content() && l.indent() == 0 && key_of(l.text).is_some_and(|(k, _)| k == "name")
    });
    if let Some(l) = top {
        let (_, after) = key_of(l.text).expect("matched");
        let v = value_part(&l.text[after..]);
        let v = v.trim_matches(['"', '\'']);
        if v.contains('$') || v.is_empty() {
            return Err(format!(
                "its top-level `name:` ({v:?}) is interpolated or empty; set driver.docker.compose.project"
            ));
        }
        return Ok(normalise_project(v));
    }
    let dir = std::fs::canonicalize(file)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name = normalise_project(&dir);
    if name.is_empty() {
        return Err(format!(
            "its directory's name {dir:?} gives no Compose project name; set driver.docker.compose.project"
        ));
    }
    Ok(name)
}

/// Compose's normalisation of a project name.
pub(crate) fn normalise_project(name: &str) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// The compose file of `target`, checked, with `target.project` filled in from it when not
/// configured; `None` without `compose.file`.
pub(crate) fn open(target: &mut ComposeTarget) -> Result<Option<ComposeFile>> {
    let Some(configured) = &target.file else {
        return Ok(None);
    };
    let path = file_in(configured).map_err(Error::invalid)?;
    if let Some(env) = &target.env_file
        && !env.is_file()
    {
        // Compose's `--env-file` fails on it too; a missing `.env` beside the file is normal.
        return Err(Error::invalid(format!(
            "driver.docker.compose.env_file = {:?} is not a file",
            env.display()
        )));
    }
    let env_file = target.env_file.clone().unwrap_or_else(|| {
        path.parent()
            .map_or_else(|| PathBuf::from(".env"), |d| d.join(".env"))
    });
    let file = ComposeFile {
        path,
        service: target.service.clone(),
        env_file,
    };
    file.check("connect")?;
    file.check_overrides()?;
    if target.project.is_none() {
        let text = file.read("connect")?;
        let env = file.read_file(&file.env_file, "connect")?;
        let project = project_name(&file.path, &text, env.as_deref()).map_err(|why| {
            file.err(
                "connect",
                ErrorKind::InvalidInput,
                None,
                format!("driver.docker.compose.project is not set, and Compose's project name cannot be found: {why}"),
            )
        })?;
        target.project = Some(project);
    }
    target.file = Some(file.path.clone());
    Ok(Some(file))
}

/// Override files Compose merges over the file it finds in a directory.
const OVERRIDE_NAMES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// The compose file of a target.
#[derive(Debug, Clone)]
pub(crate) struct ComposeFile {
    /// The file (a directory in the config is resolved to its file).
    pub path: PathBuf,
    /// The service whose image line is edited.
    pub service: String,
    /// The `.env` file interpolation reads: `compose.env_file`, else `.env` beside the file.
    pub env_file: PathBuf,
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
    /// The `.env` variable the image's tag comes from, when it comes from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvRecord>,
}

/// The one `.env` value a snapshot records (never the rest of the file: it holds secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EnvRecord {
    /// The `.env` file.
    pub path: PathBuf,
    /// The variable.
    pub variable: String,
    /// Its value as written, quotes included.
    pub value_token: String,
    /// SHA-256 of the whole `.env` file, hex.
    pub sha256: String,
}

/// Where the service's image comes from.
#[derive(Debug)]
enum Source {
    /// Written out on the `image:` line.
    Literal,
    /// A variable set in the `.env` file.
    EnvFile {
        pattern: Pattern,
        line: EnvLine,
        text: String,
    },
    /// A variable set nowhere: the default on the `image:` line, at `range` of the file.
    Default {
        pattern: Pattern,
        range: Range<usize>,
    },
}

/// The service's image line, what it resolves to and from where.
#[derive(Debug)]
struct Resolved {
    line: ImageLine,
    image: String,
    source: Source,
}

impl ComposeFile {
    /// An error about the file, at `line` if known. At `connect` it is a configuration
    /// error, not a failed engine request, so it carries no operation.
    fn err(&self, op: &str, kind: ErrorKind, line: Option<usize>, message: String) -> Error {
        self.err_in(&self.path, op, kind, line, message)
    }

    fn err_in(
        &self,
        path: &Path,
        op: &str,
        kind: ErrorKind,
        line: Option<usize>,
        message: String,
    ) -> Error {
        let subject = match line {
            Some(n) => format!("{} line {n}", path.display()),
            None => path.display().to_string(),
        };
        let e = Error::new(kind, message)
            .with_driver(KIND)
            .with_subject(subject);
        if op == "connect" {
            e
        } else {
            e.with_operation(op)
        }
    }

    fn read_file(&self, path: &Path, op: &str) -> Result<Option<String>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(self.err_in(
                    path,
                    op,
                    ErrorKind::Other,
                    None,
                    format!("cannot read it: {e}"),
                ));
            }
        };
        String::from_utf8(bytes).map(Some).map_err(|_| {
            self.err_in(
                path,
                op,
                ErrorKind::InvalidInput,
                None,
                "it is not UTF-8 text".into(),
            )
        })
    }

    fn read(&self, op: &str) -> Result<String> {
        self.read_file(&self.path, op)?.ok_or_else(|| {
            self.err(
                op,
                ErrorKind::NotFound,
                None,
                "the compose file does not exist".into(),
            )
        })
    }

    fn refuse(&self, op: &str, line: Option<usize>, why: String) -> Error {
        self.err(
            op,
            ErrorKind::InvalidInput,
            line,
            format!(
                "cutover cannot edit the image of this compose file safely: {why}. Nothing was \
                 changed; fix the file or remove `compose.file` from [driver.docker] to leave the \
                 file alone"
            ),
        )
    }

    fn locate(&self, text: &str, op: &str) -> Result<ImageLine> {
        find_image(text, &self.service).map_err(|why| self.refuse(op, None, why))
    }

    /// The image line, resolved like Compose does, or why cutover cannot edit it.
    fn resolve(&self, text: &str, op: &str) -> Result<Resolved> {
        let line = self.locate(text, op)?;
        let at = Some(line.line);
        let pattern = match interpolation::parse(&line.value) {
            Ok(None) => {
                return Ok(Resolved {
                    image: line.value.clone(),
                    line,
                    source: Source::Literal,
                });
            }
            Ok(Some(p)) => p,
            Err(why) => {
                return Err(self.refuse(
                    op,
                    at,
                    format!("service `{}`'s image {why}", self.service),
                ));
            }
        };
        let name = pattern.name.clone();
        let env_path = self.env_file.display().to_string();
        if std::env::var_os(&name).is_some() {
            return Err(self.refuse(
                op,
                at,
                format!(
                    "the image's ${{{name}}} is set in cutover's own environment, which overrides \
                     {env_path} for Compose, and cutover cannot change a value there. Unset {name} \
                     where cutover runs and set it in {env_path} instead"
                ),
            ));
        }
        let env_text = self.read_file(&self.env_file, op)?;
        let found = match &env_text {
            Some(t) => envfile::find(t, &name).map_err(|why| {
                self.err_in(
                    &self.env_file,
                    op,
                    ErrorKind::InvalidInput,
                    None,
                    format!(
                        "cutover cannot edit variable {name}, which service `{}`'s image in {} \
                         (line {}) takes its tag from: {why}. Nothing was changed",
                        self.service,
                        self.path.display(),
                        line.line
                    ),
                )
            })?,
            None => None,
        };
        let source = match (found, &pattern.default) {
            (Some(l), Some(d)) if l.value.is_empty() && d.if_empty => {
                return Err(self.refuse(
                    op,
                    at,
                    format!(
                        "{name} is empty in {env_path} (line {}), so Compose uses the image's \
                         default; give {name} its value in {env_path}",
                        l.line
                    ),
                ));
            }
            (Some(l), _) => Source::EnvFile {
                pattern: pattern.clone(),
                line: l,
                text: env_text.unwrap_or_default(),
            },
            (None, Some(d)) => {
                let quote = usize::from(line.quote != Quote::Plain);
                let start = line.range.start + quote + d.range.start;
                Source::Default {
                    pattern: pattern.clone(),
                    range: start..start + d.range.len(),
                }
            }
            (None, None) => {
                return Err(self.refuse(
                    op,
                    at,
                    format!(
                        "the image's ${{{name}}} has no default and {name} is not set in \
                         {env_path}: Compose would use an empty tag. Set {name} in {env_path}"
                    ),
                ));
            }
        };
        let value = match &source {
            Source::EnvFile { line, .. } => Some(line.value.as_str()),
            _ => None,
        };
        let image = pattern.image(value).unwrap_or_default();
        Ok(Resolved {
            line,
            image,
            source,
        })
    }

    /// Refuses an override file beside the file that sets the service's image: Compose run
    /// without `-f` applies it over the file, so editing the file would change nothing.
    fn check_overrides(&self) -> Result<()> {
        let Some(dir) = self.path.parent() else {
            return Ok(());
        };
        for name in OVERRIDE_NAMES {
            let path = dir.join(name);
            if path == self.path {
                continue;
            }
            let Some(text) = self.read_file(&path, "connect")? else {
                continue;
            };
            if let Ok(line) = find_image(&text, &self.service) {
                return Err(self.err_in(
                    &path,
                    "connect",
                    ErrorKind::InvalidInput,
                    Some(line.line),
                    format!(
                        "this override file sets service `{}`'s image too, and Compose applies it \
                         over {} when run without `-f`, so cutover's edit of that file would not \
                         take effect. Nothing was changed; move the image line into {} or point \
                         compose.file at the file that sets it",
                        self.service,
                        self.path.display(),
                        self.path.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks that the file exists and its image can be edited; returns the image.
    pub(crate) fn check(&self, op: &str) -> Result<String> {
        let text = self.read(op)?;
        self.resolve(&text, op).map(|r| r.image)
    }

    /// Sets the service's image; does nothing when it is already `image`. With the tag in
    /// a variable, edits the variable's value in `.env`, or the default on the image line
    /// when `.env` does not set it.
    pub(crate) fn set_image(&self, image: &str, op: &str) -> Result<()> {
        let text = self.read(op)?;
        let r = self.resolve(&text, op)?;
        if r.image == image {
            return Ok(());
        }
        let value_for = |p: &Pattern| {
            p.value_for(image)
                .map_err(|why| self.refuse(op, Some(r.line.line), why))
        };
        match &r.source {
            Source::Literal => {
                self.write(&self.path, replace(&text, &r.line, image).as_bytes(), op)
            }
            Source::EnvFile {
                pattern,
                line,
                text: env,
            } => {
                let value = value_for(pattern)?;
                let out = splice(env, &line.range, &line.token(value));
                self.write(&self.env_file, out.as_bytes(), op)
            }
            Source::Default { pattern, range } => {
                let value = value_for(pattern)?;
                self.write(&self.path, splice(&text, range, value).as_bytes(), op)
            }
        }
    }

    /// What a snapshot keeps.
    pub(crate) fn record(&self, op: &str) -> Result<ComposeRecord> {
        let text = self.read(op)?;
        let r = self.resolve(&text, op)?;
        let env = match &r.source {
            Source::EnvFile {
                pattern,
                line,
                text: env,
            } => Some(EnvRecord {
                path: self.env_file.clone(),
                variable: pattern.name.clone(),
                value_token: env[line.range.clone()].to_string(),
                sha256: sha256(env.as_bytes()),
            }),
            _ => None,
        };
        Ok(ComposeRecord {
            path: self.path.clone(),
            image_token: text[r.line.range].to_string(),
            sha256: sha256(text.as_bytes()),
            env,
        })
    }

    /// Puts the recorded image value (and `.env` value) back; the files are then
    /// byte-identical to the snapshot unless they were edited elsewhere since.
    pub(crate) fn restore(&self, record: &ComposeRecord, op: &str) -> Result<()> {
        let text = self.read(op)?;
        if sha256(text.as_bytes()) != record.sha256 {
            let line = self.locate(&text, op)?;
            if text[line.range.clone()] != record.image_token {
                let out = splice(&text, &line.range, &record.image_token);
                self.write(&self.path, out.as_bytes(), op)?;
            }
        }
        if let Some(env) = &record.env {
            let (text, line) = self.env_line(env, op)?;
            if sha256(text.as_bytes()) != env.sha256 && text[line.range.clone()] != env.value_token
            {
                let out = splice(&text, &line.range, &env.value_token);
                self.write(&env.path, out.as_bytes(), op)?;
            }
        }
        Ok(())
    }

    /// The recorded variable's line in the `.env` file now.
    fn env_line(&self, env: &EnvRecord, op: &str) -> Result<(String, EnvLine)> {
        let refuse = |why: String| {
            self.err_in(
                &env.path,
                op,
                ErrorKind::InvalidInput,
                None,
                format!("cannot put {}'s value back: {why}", env.variable),
            )
        };
        let text = self
            .read_file(&env.path, op)?
            .ok_or_else(|| refuse("the file is gone".into()))?;
        let line = envfile::find(&text, &env.variable)
            .map_err(refuse)?
            .ok_or_else(|| refuse(format!("{} is no longer set in it", env.variable)))?;
        Ok((text, line))
    }

    /// Checks a restore could proceed (the files are readable and editable).
    pub(crate) fn check_restore(&self, record: &ComposeRecord, op: &str) -> Result<()> {
        if record.path != self.path {
            return Err(self.err(
                op,
                ErrorKind::InvalidInput,
                None,
                format!(
                    "the snapshot recorded the compose file {}, but this target's is {}",
                    record.path.display(),
                    self.path.display()
                ),
            ));
        }
        let text = self.read(op)?;
        self.locate(&text, op)?;
        if let Some(env) = &record.env {
            self.env_line(env, op)?;
        }
        Ok(())
    }

    /// Replaces `path` atomically, keeping its mode and owner; follows a symlink.
    fn write(&self, path: &Path, bytes: &[u8], op: &str) -> Result<()> {
        let io = |what: &str, e: std::io::Error| {
            self.err_in(
                path,
                op,
                ErrorKind::Other,
                None,
                format!("cannot {what}: {e}; the file is unchanged"),
            )
        };
        let target = std::fs::canonicalize(path).map_err(|e| io("resolve the file", e))?;
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

/// `text` with `range` replaced by `with`.
fn splice(text: &str, range: &Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
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
            env_file: dir.path().join(".env"),
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
            env_file: dir.path().join(".env"),
        };
        let e = file.set_image("x:1", "set_image").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.report().contains("docker-compose.yml"), "{}", e.report());
        assert!(e.report().contains("Nothing was changed"), "{}", e.report());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);
    }

    const VENDOR: &str = "\
x-common: &common
  restart: unless-stopped
services:
  server:
    <<: *common
    image: \"vendor/server:${APP_TAG:-1.0.0}\"   # set APP_TAG in .env
  db:
    image: mariadb:10.11
";
    const DOTENV: &str = "\
# Secrets and the release.
MYSQL_PASSWORD=hunter2
APP_TAG=1.0.0   # the release
";

    fn project(compose: &str, env: Option<&str>) -> (tempfile::TempDir, ComposeFile) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("docker-compose.yml"), compose).unwrap();
        if let Some(env) = env {
            std::fs::write(dir.path().join(".env"), env).unwrap();
        }
        let file = ComposeFile {
            path: dir.path().join("docker-compose.yml"),
            service: "server".into(),
            env_file: dir.path().join(".env"),
        };
        (dir, file)
    }

    fn read(dir: &tempfile::TempDir, name: &str) -> String {
        std::fs::read_to_string(dir.path().join(name)).unwrap()
    }

    #[test]
    fn a_tag_from_the_env_file_is_edited_there_and_put_back() {
        let (dir, file) = project(VENDOR, Some(DOTENV));
        assert_eq!(file.check("connect").unwrap(), "vendor/server:1.0.0");
        let record = file.record("snapshot").unwrap();
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert_eq!(record.env.as_ref().unwrap().value_token, "1.0.0");
        let pinned = format!("vendor/server:1.1.0@sha256:{}", "0".repeat(64));
        file.set_image(&pinned, "set_image").unwrap();
        assert_eq!(read(&dir, "docker-compose.yml"), VENDOR);
        let env = read(&dir, ".env");
        only_line_changed(DOTENV, &env, 3);
        assert!(env.contains(&format!(
            "APP_TAG=1.1.0@sha256:{}   # the release\n",
            "0".repeat(64)
        )));
        assert_eq!(file.check("connect").unwrap(), pinned);
        file.set_image(&pinned, "set_image").unwrap();
        file.check_restore(&record, "restore").unwrap();
        file.restore(&record, "restore").unwrap();
        assert_eq!(read(&dir, ".env"), DOTENV);
        assert_eq!(read(&dir, "docker-compose.yml"), VENDOR);
        let e = file.set_image("other/server:2", "set_image").unwrap_err();
        assert!(e.report().contains("does not start with"), "{}", e.report());
        assert_eq!(read(&dir, ".env"), DOTENV);
    }

    #[test]
    fn without_the_variable_in_the_env_file_its_default_is_edited() {
        let (dir, file) = project(VENDOR, Some("MYSQL_PASSWORD=hunter2\n"));
        let record = file.record("snapshot").unwrap();
        assert_eq!(record.env, None);
        file.set_image("vendor/server:1.1.0", "set_image").unwrap();
        let out = read(&dir, "docker-compose.yml");
        only_line_changed(VENDOR, &out, 6);
        assert!(
            out.contains(
                "    image: \"vendor/server:${APP_TAG:-1.1.0}\"   # set APP_TAG in .env\n"
            )
        );
        assert_eq!(read(&dir, ".env"), "MYSQL_PASSWORD=hunter2\n");
        file.restore(&record, "restore").unwrap();
        assert_eq!(read(&dir, "docker-compose.yml"), VENDOR);
        // No .env at all: the same.
        let (dir, file) = project(VENDOR, None);
        file.set_image("vendor/server:1.1.0", "set_image").unwrap();
        only_line_changed(VENDOR, &read(&dir, "docker-compose.yml"), 6);
        assert!(!dir.path().join(".env").exists());
    }

    #[test]
    fn every_source_cutover_cannot_edit_is_refused_before_a_change_naming_it() {
        let with = |image: &str| VENDOR.replace("vendor/server:${APP_TAG:-1.0.0}", image);
        // PATH is set in every test process: Compose would take it from there.
        let cases: Vec<(String, Option<String>, &str)> = vec![
            (
                with("vendor/server:${PATH}"),
                Some(DOTENV.into()),
                "cutover's own environment",
            ),
            (
                VENDOR.into(),
                Some(format!("{DOTENV}APP_TAG=2.0\n")),
                "defined 2 times (lines 3, 4)",
            ),
            (
                with("vendor/server:${APP_TAG:-${DEFAULT_TAG}}"),
                Some(DOTENV.into()),
                "nests",
            ),
            (
                with("${REGISTRY}/server:${APP_TAG}"),
                Some(DOTENV.into()),
                "more than one variable",
            ),
            (
                with("vendor/server:${APP_TAG}-alpine"),
                Some(DOTENV.into()),
                "after ${APP_TAG}",
            ),
            (
                with("vendor/server:${NEW_TAG}"),
                Some(DOTENV.into()),
                "no default and NEW_TAG is not set",
            ),
            (
                VENDOR.into(),
                Some("APP_TAG=${BASE_TAG}\n".into()),
                "line 1",
            ),
            (VENDOR.into(), Some("APP_TAG=\n".into()), "is empty"),
        ];
        for (compose, env, why) in cases {
            let (dir, file) = project(&compose, env.as_deref());
            let e = file.check("connect").unwrap_err();
            let report = e.report();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{report}");
            assert!(report.contains(why), "{why}: {report}");
            assert!(
                !report.contains("connect"),
                "not an engine connection: {report}"
            );
            assert!(!report.contains("hunter2"), "{report}");
            assert!(file.set_image("vendor/server:1.1.0", "set_image").is_err());
            assert_eq!(read(&dir, "docker-compose.yml"), compose);
            if let Some(env) = env {
                assert_eq!(read(&dir, ".env"), env);
            }
        }
        let (_dir, file) = project(&with("vendor/server:${PATH}"), None);
        let report = file.check("connect").unwrap_err().report();
        assert!(report.contains("docker-compose.yml line 6"), "{report}");
        assert!(report.contains("${PATH}"), "{report}");
    }

    #[test]
    fn a_directory_names_its_compose_file_and_the_project_comes_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let project_dir = dir.path().join("My App.v2");
        std::fs::create_dir(&project_dir).unwrap();
        assert!(file_in(&project_dir).unwrap_err().contains("compose.yaml"));
        std::fs::write(project_dir.join("docker-compose.yml"), VENDOR).unwrap();
        std::fs::write(project_dir.join("compose.yml"), VENDOR).unwrap();
        let file = file_in(&project_dir).unwrap();
        assert_eq!(file, project_dir.join("compose.yml"));
        assert_eq!(project_name(&file, VENDOR, None).unwrap(), "myappv2");
        let env = "COMPOSE_PROJECT_NAME=Vendor_App\n";
        assert_eq!(
            project_name(&file, VENDOR, Some(env)).unwrap(),
            "vendor_app"
        );
        let named = format!("name: \"apidog\"\n{VENDOR}");
        assert_eq!(project_name(&file, &named, None).unwrap(), "apidog");
        assert_eq!(
            project_name(&file, &named, Some(env)).unwrap(),
            "vendor_app"
        );
        assert_eq!(normalise_project("-_Foo.Bar-1"), "foobar-1");
        let mut target = ComposeTarget {
            service: "server".into(),
            file: Some(project_dir.clone()),
            ..ComposeTarget::default()
        };
        let opened = open(&mut target).unwrap().unwrap();
        assert_eq!(opened.env_file, project_dir.join(".env"));
        assert_eq!(target.project.as_deref(), Some("myappv2"));
        assert_eq!(target.file.as_deref(), Some(file.as_path()));
        // An env file of its own is used for the project name too, and must exist.
        std::fs::write(dir.path().join("prod.env"), env).unwrap();
        let mut target = ComposeTarget {
            service: "server".into(),
            file: Some(project_dir.clone()),
            env_file: Some(dir.path().join("prod.env")),
            ..ComposeTarget::default()
        };
        open(&mut target).unwrap();
        assert_eq!(target.project.as_deref(), Some("vendor_app"));
        target.env_file = Some(dir.path().join("missing.env"));
        let e = open(&mut target).unwrap_err();
        assert!(e.report().contains("missing.env"), "{}", e.report());
    }

    #[test]
    fn an_override_file_that_sets_the_image_is_refused() {
        let (dir, _) = project(VENDOR, Some(DOTENV));
        let over = "services:\n  server:\n    image: vendor/server:0.9 # pinned\n";
        std::fs::write(dir.path().join("docker-compose.override.yml"), over).unwrap();
        let mut target = ComposeTarget {
            project: Some("p".into()),
            service: "server".into(),
            file: Some(dir.path().to_path_buf()),
            ..ComposeTarget::default()
        };
        let report = open(&mut target).unwrap_err().report();
        assert!(
            report.contains("docker-compose.override.yml line 3"),
            "{report}"
        );
        assert!(
            report.contains("override file sets service `server`'s image"),
            "{report}"
        );
        // One that sets other things is what overrides are for.
        let over = "services:\n  server:\n    ports: [\"80:80\"]\n";
        std::fs::write(dir.path().join("docker-compose.override.yml"), over).unwrap();
        assert!(open(&mut target).unwrap().is_some());
    }
}
