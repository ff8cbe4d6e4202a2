//! Container image references and the version ordering of their tags.
//!
//! [`ImageRef`] follows the reference grammar of Docker's `distribution/reference`
//! (`[registry[:port]/]path[:tag][@sha256:digest]`) and keeps the text exactly as written:
//! no `docker.io/library/` is added, so printing a parsed reference gives back the input.
//! Nothing that parses contains whitespace, quotes or shell metacharacters; only the glob
//! characters `[` and `]` of an IPv6 registry can appear, so callers must still quote references
//! they put into a shell command.
//!
//! [`Version`] is a lenient reading of tags such as `v2.7.81`, used to detect downgrades.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// Longest `registry/path` Docker accepts.
const NAME_MAX: usize = 255;
/// Longest tag Docker accepts.
const TAG_MAX: usize = 128;
/// How much of a rejected input an error message quotes.
const QUOTE_MAX: usize = 80;

/// A container image reference: `[registry[:port]/]path[:tag][@sha256:digest]`.
///
/// Parsing follows Docker's grammar: the first `/`-separated component is the registry only
/// if it contains `.` or `:` or is `localhost`; path components are lowercase letters and
/// digits joined by `.`, `_`, `__` or runs of `-`; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`;
/// the digest must be `sha256:` and 64 lowercase hex digits; `registry/path` is at most 255
/// characters. The printed form is the parsed text, unchanged:
///
/// ```
/// use cutover_core::image::ImageRef;
/// let image: ImageRef = "registry.example.com/apidog/server:v2.7.81".parse()?;
/// assert_eq!(image.registry(), Some("registry.example.com"));
/// assert_eq!(image.path(), "apidog/server");
/// assert_eq!(image.tag(), Some("v2.7.81"));
/// assert_eq!(image.to_string(), "registry.example.com/apidog/server:v2.7.81");
/// # Ok::<(), cutover_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference, rejecting anything Docker's grammar does not accept.
    ///
    /// Every failure is [`crate::ErrorKind::InvalidInput`] with a message naming the part
    /// that is wrong, e.g. `image reference "a b": whitespace is not allowed (character 2)`.
    pub fn parse(input: &str) -> Result<ImageRef> {
        parse_reference(input).map_err(|problem| {
            Error::invalid(format!("image reference {}: {problem}", quote(input)))
        })
    }

    /// The registry host with its port, if the reference names one (e.g. `localhost:5000`).
    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// The repository path within the registry (e.g. `library/nginx`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any (e.g. `v2.7.81`).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest with its algorithm, if any (`sha256:` and 64 hex digits).
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The repository: `registry/path`, or `path` alone, without tag or digest.
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(registry) => format!("{registry}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The same repository with `tag` and no digest, since a digest pins the old image.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef> {
        check_tag(tag).map_err(|problem| {
            Error::invalid(format!(
                "cannot tag image {}: {problem}",
                quote(&self.repository())
            ))
        })?;
        Ok(ImageRef {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same reference without a digest: what a tag names, whatever it names now.
    pub fn without_digest(&self) -> ImageRef {
        ImageRef {
            digest: None,
            ..self.clone()
        }
    }

    /// The same reference pinned to `digest` (`sha256:` and 64 lowercase hex digits).
    ///
    /// The tag, if any, is kept: `name:tag@digest` is valid and the digest decides what is
    /// pulled.
    pub fn with_digest(&self, digest: &str) -> Result<ImageRef> {
        check_digest(digest).map_err(|problem| {
            Error::invalid(format!(
                "cannot pin image {} to a digest: {problem}",
                quote(&self.repository())
            ))
        })?;
        Ok(ImageRef {
            digest: Some(digest.to_owned()),
            ..self.clone()
        })
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = &self.registry {
            write!(f, "{registry}/")?;
        }
        f.write_str(&self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ImageRef::parse(&text).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

/// What is wrong with a part of the input; the caller adds which input it was.
type Problem = String;

fn parse_reference(input: &str) -> std::result::Result<ImageRef, Problem> {
    if input.is_empty() {
        return Err("is empty".into());
    }
    if let Some((position, c)) = input
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "._-:/@[]".contains(c)))
    {
        return Err(format!(
            "{} is not allowed (character {})",
            describe(c),
            position + 1
        ));
    }
    // Docker reads a bare 64-hex string as an image ID, never as a repository name.
    if input.len() == 64
        && input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err("a 64-digit hex string is an image ID, not a reference".into());
    }

    let (name_and_tag, digest) = match input.split_once('@') {
        Some((rest, digest)) => {
            check_digest(digest)?;
            (rest, Some(digest))
        }
        None => (input, None),
    };
    // The tag is the `:` part of the last `/` component; earlier colons belong to a port.
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].find(':') {
        Some(i) => {
            let tag = &name_and_tag[last_slash + i + 1..];
            check_tag(tag)?;
            (&name_and_tag[..last_slash + i], Some(tag))
        }
        None => (name_and_tag, None),
    };

    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if is_registry(first) => {
            check_registry(first)?;
            (Some(first), rest)
        }
        _ => (None, name),
    };
    if path.is_empty() {
        return Err("the repository path is empty".into());
    }
    for component in path.split('/') {
        check_path_component(component).map_err(|problem| {
            if component.is_empty() {
                format!("{problem} in {}", quote(path))
            } else {
                problem
            }
        })?;
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "the name {} is {} characters long; at most {NAME_MAX} are allowed",
            quote(name),
            name.len()
        ));
    }

    Ok(ImageRef {
        registry: registry.map(str::to_owned),
        path: path.to_owned(),
        tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
    })
}

/// Docker's rule for telling `registry/path` from `path/path`.
fn is_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// `host[:port]` where host is a domain name, an IPv4 address or `[IPv6]`.
fn check_registry(registry: &str) -> std::result::Result<(), Problem> {
    let in_registry = |problem: String| format!("registry {}: {problem}", quote(registry));
    let port =
        if let Some(bracketed) = registry.strip_prefix('[') {
            let (address, after) = bracketed
                .split_once(']')
                .ok_or_else(|| in_registry("IPv6 address has no closing ']'".into()))?;
            if address.is_empty() {
                return Err(in_registry("IPv6 address is empty".into()));
            }
            if let Some(c) = address
                .chars()
                .find(|&c| !(c.is_ascii_hexdigit() || c == ':'))
            {
                return Err(in_registry(format!(
                    "{} is not allowed in an IPv6 address",
                    describe(c)
                )));
            }
            match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    in_registry("only ':port' may follow the IPv6 address".into())
                })?),
            }
        } else {
            let (host, port) = match registry.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (registry, None),
            };
            for component in host.split('.') {
                check_domain_component(component).map_err(in_registry)?;
            }
            port
        };
    match port {
        Some("") => Err(in_registry("the port is empty".into())),
        Some(port) if !port.bytes().all(|b| b.is_ascii_digit()) => Err(in_registry(format!(
            "port {} must be digits only",
            quote(port)
        ))),
        _ => Ok(()),
    }
}

/// `[A-Za-z0-9]` or `[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]`.
fn check_domain_component(component: &str) -> std::result::Result<(), Problem> {
    if component.is_empty() {
        return Err("empty host name component".into());
    }
    if let Some(c) = component
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(format!(
            "host name component {} contains {}; only letters, digits and '-' are allowed",
            quote(component),
            describe(c)
        ));
    }
    if component.starts_with('-') || component.ends_with('-') {
        return Err(format!(
            "host name component {} must start and end with a letter or digit",
            quote(component)
        ));
    }
    Ok(())
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-+`.
fn check_path_component(component: &str) -> std::result::Result<(), Problem> {
    if component.is_empty() {
        return Err("empty path component".into());
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "path component {} must be lowercase",
            quote(component)
        ));
    }
    if let Some(c) = component
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
    {
        return Err(format!(
            "path component {} contains {}; only lowercase letters, digits, '.', '_' and '-' are allowed",
            quote(component),
            describe(c)
        ));
    }
    let is_alnum = |c: char| c.is_ascii_alphanumeric();
    if !component.starts_with(is_alnum) || !component.ends_with(is_alnum) {
        return Err(format!(
            "path component {} must start and end with a letter or digit",
            quote(component)
        ));
    }
    for separator in component.split(is_alnum).filter(|s| !s.is_empty()) {
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(format!(
                "path component {} has separator {}; between letters and digits only '.', '_', '__' or dashes are allowed",
                quote(component),
                quote(separator)
            ));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> std::result::Result<(), Problem> {
    if tag.is_empty() {
        return Err("the tag is empty".into());
    }
    if let Some(c) = tag
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        return Err(format!(
            "tag {} contains {}; only letters, digits, '_', '.' and '-' are allowed",
            quote(tag),
            describe(c)
        ));
    }
    if tag.starts_with(['.', '-']) {
        return Err(format!(
            "tag {} must start with a letter, digit or '_'",
            quote(tag)
        ));
    }
    if tag.len() > TAG_MAX {
        return Err(format!(
            "tag is longer than {TAG_MAX} characters ({})",
            tag.len()
        ));
    }
    Ok(())
}

/// `sha256:` and 64 lowercase hex digits; Docker's other algorithms are refused.
fn check_digest(digest: &str) -> std::result::Result<(), Problem> {
    const EXPECTED: &str = "digest must be sha256:<64 hex digits>";
    if digest.is_empty() {
        return Err(format!("the digest after '@' is empty; {EXPECTED}"));
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("{EXPECTED}, got {}", quote(digest)));
    };
    if algorithm != "sha256" {
        return Err(format!(
            "digest algorithm {} is not supported; {EXPECTED}",
            quote(algorithm)
        ));
    }
    if let Some(c) = hex.chars().find(|&c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!(
            "{EXPECTED}; {} is not a lowercase hex digit",
            describe(c)
        ));
    }
    if hex.len() != 64 {
        return Err(format!("{EXPECTED}, got {} digits", hex.len()));
    }
    Ok(())
}

/// Names a character for an error message, without printing control characters.
fn describe(c: char) -> String {
    if c.is_whitespace() {
        "whitespace".into()
    } else if c.is_control() {
        format!("control character U+{:04X}", u32::from(c))
    } else {
        format!("{c:?}")
    }
}

/// Quotes untrusted text for a message: escaped, and cut short if long.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// A tag read as a version number, ordered for downgrade detection.
///
/// Accepts an optional leading `v`, one to four dot-separated numbers and an optional
/// `-suffix`: `v2.7.81`, `2.7.81`, `1.1.0-broken`, `1.2`, `10`. Missing numbers count as
/// 0, so `1.2 == 1.2.0`. As with semver pre-releases, a suffix sorts before the same
/// numbers without one, and suffixes compare by semver's pre-release rules: dot-separated
/// identifiers in turn, numbers by value and before text, so `rc.9 < rc.10` and `alpha <
/// alpha.1 < beta`. Equality and hashing use that order, while
/// [`Display`](fmt::Display) prints the tag as written.
///
/// ```
/// use cutover_core::image::Version;
/// let v = |tag| Version::from_tag(tag).unwrap();
/// assert!(v("v2.7.81") > v("v2.7.9"));
/// assert!(v("1.1.0-broken") < v("1.1.0"));
/// assert_eq!(v("1.2"), v("1.2.0"));
/// assert!(v("1.0.0-rc.9") < v("1.0.0-rc.10"));
/// assert!(Version::from_tag("latest").is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Version {
    tag: String,
    numbers: [u64; 4],
    /// Byte offset in `tag` where the suffix (after `-`) starts.
    suffix_at: Option<usize>,
}

impl Version {
    /// Reads `tag` as a version, or `None` if it is not one (`latest`, `main-abc123`).
    pub fn from_tag(tag: &str) -> Option<Version> {
        let unprefixed = tag.strip_prefix('v').unwrap_or(tag);
        let (numbers_text, suffix) = match unprefixed.split_once('-') {
            Some((numbers, suffix)) => (numbers, Some(suffix)),
            None => (unprefixed, None),
        };
        if suffix.is_some_and(|s| {
            s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        }) {
            return None;
        }
        let mut numbers = [0; 4];
        for (i, part) in numbers_text.split('.').enumerate() {
            let slot = numbers.get_mut(i)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        Some(Version {
            tag: tag.to_owned(),
            numbers,
            suffix_at: suffix.map(|s| tag.len() - s.len()),
        })
    }

    fn suffix(&self) -> Option<&str> {
        self.suffix_at.map(|at| &self.tag[at..])
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers
            .cmp(&other.numbers)
            .then_with(|| match (self.suffix(), other.suffix()) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => pre_release_order(a, b),
            })
    }
}

/// One dot-separated identifier of a suffix, as semver orders them: numbers by value,
/// before any text.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Identifier<'a> {
    Number(u64),
    Text(&'a str),
}

fn identifiers(suffix: &str) -> impl Iterator<Item = Identifier<'_>> {
    suffix.split('.').map(|part| {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse()
                .map_or(Identifier::Text(part), Identifier::Number)
        } else {
            Identifier::Text(part)
        }
    })
}

/// Semver's pre-release precedence (`rc.9 < rc.10`, `alpha < alpha.1 < beta`): the
/// identifiers compared in turn, a shorter list first when one is a prefix of the other.
fn pre_release_order(a: &str, b: &str) -> Ordering {
    identifiers(a).cmp(identifiers(b))
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.numbers.hash(state);
        // As the order compares them: `rc.01` equals `rc.1`.
        if let Some(suffix) = self.suffix() {
            for identifier in identifiers(suffix) {
                identifier.hash(state);
            }
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use proptest::prelude::*;

    /// Input, registry, path, tag, digest.
    type Case<'a> = (
        String,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );
    /// Registry, path, tag, digest.
    type Parts = (Option<String>, String, Option<String>, Option<String>);

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn valid_references_parse_into_their_parts_and_print_unchanged() {
        let digest = format!("sha256:{HEX}");
        let (long_tag, long_path) = ("T".repeat(128), "a".repeat(250));
        let cases: Vec<Case> = vec![
            ("nginx".into(), None, "nginx", None, None),
            (
                "library/nginx:1.25".into(),
                None,
                "library/nginx",
                Some("1.25"),
                None,
            ),
            (
                "localhost:5000/a/b:1.2".into(),
                Some("localhost:5000"),
                "a/b",
                Some("1.2"),
                None,
            ),
            ("localhost/a".into(), Some("localhost"), "a", None, None),
            (
                format!("127.0.0.1:5000/x@{digest}"),
                Some("127.0.0.1:5000"),
                "x",
                None,
                Some(&digest),
            ),
            (
                "registry.example.com/apidog/server:v2.7.81".into(),
                Some("registry.example.com"),
                "apidog/server",
                Some("v2.7.81"),
                None,
            ),
            (
                "[::1]:5000/a:b".into(),
                Some("[::1]:5000"),
                "a",
                Some("b"),
                None,
            ),
            ("[fe80::1]/a".into(), Some("[fe80::1]"), "a", None, None),
            (
                "Registry.Example.COM/a".into(),
                Some("Registry.Example.COM"),
                "a",
                None,
                None,
            ),
            ("my-host:1/a".into(), Some("my-host:1"), "a", None, None),
            ("ab__c/d-e---f".into(), None, "ab__c/d-e---f", None, None),
            (
                "a_b/c.d/e__f/g--h".into(),
                None,
                "a_b/c.d/e__f/g--h",
                None,
                None,
            ),
            (
                "docker.io/library/nginx:1.25".into(),
                Some("docker.io"),
                "library/nginx",
                Some("1.25"),
                None,
            ),
            (
                format!("nginx:1.25@{digest}"),
                None,
                "nginx",
                Some("1.25"),
                Some(&digest),
            ),
            ("nginx:_".into(), None, "nginx", Some("_"), None),
            // Docker reads these the same way: no '/', so the colon starts a tag.
            (
                "localhost:5000".into(),
                None,
                "localhost",
                Some("5000"),
                None,
            ),
            (
                "example.com:v1".into(),
                None,
                "example.com",
                Some("v1"),
                None,
            ),
            (
                format!("a:{}", "T".repeat(128)),
                None,
                "a",
                Some(&long_tag),
                None,
            ),
            (
                format!("r.io/{}", "a".repeat(250)),
                Some("r.io"),
                &long_path,
                None,
                None,
            ),
        ];
        for (input, registry, path, tag, digest) in &cases {
            let image = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(image.registry(), *registry, "{input}");
            assert_eq!(image.path(), *path, "{input}");
            assert_eq!(image.tag(), *tag, "{input}");
            assert_eq!(image.digest(), *digest, "{input}");
            assert_eq!(image.to_string(), *input);
            assert_eq!(input.parse::<ImageRef>().unwrap(), image);
        }
    }

    #[test]
    fn invalid_references_are_rejected_with_the_reason() {
        let long_tag = format!("a:{}", "t".repeat(129));
        let long_name = format!("r.io/{}", "a".repeat(251));
        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            ("a b", "whitespace is not allowed"),
            ("a b", "character 2"),
            ("nginx\n", "whitespace"),
            ("nginx;rm -rf /", "';' is not allowed"),
            ("nginx$(id)", "'$' is not allowed"),
            ("nginx:`id`", "'`' is not allowed"),
            ("'nginx'", "'\\'' is not allowed"),
            ("\"nginx\"", "'\"' is not allowed"),
            ("nginx|sh", "'|' is not allowed"),
            ("nginx&", "'&' is not allowed"),
            ("ng\u{7}inx", "control character U+0007"),
            ("ngïnx", "'ï' is not allowed"),
            ("Foo", "path component \"Foo\" must be lowercase"),
            (
                "library/Nginx:1",
                "path component \"Nginx\" must be lowercase",
            ),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("/a", "empty path component"),
            ("r.io/", "repository path is empty"),
            (":tag", "repository path is empty"),
            ("@sha256:x", "digest must be sha256:<64 hex digits>"),
            ("a..b/c", "empty host name component"),
            ("-a.io/c", "must start and end with a letter or digit"),
            ("my_reg.io/c", "host name component \"my_reg\" contains '_'"),
            ("a.b__c/d", "host name component \"b__c\" contains '_'"),
            ("a/.b", "path component \".b\" must start and end"),
            ("a/b-", "path component \"b-\" must start and end"),
            ("a/b..c", "separator \"..\""),
            ("a/b___c", "separator \"___\""),
            ("a/b_-c", "separator \"_-\""),
            ("a[1]/b", "path component \"a[1]\" contains '['"),
            ("nginx:", "tag is empty"),
            (
                "nginx:-x",
                "tag \"-x\" must start with a letter, digit or '_'",
            ),
            ("nginx:.x", "must start with a letter, digit or '_'"),
            ("nginx:a:b", "tag \"a:b\" contains ':'"),
            (&long_tag, "tag is longer than 128 characters"),
            (&long_name, "at most 255 are allowed"),
            ("localhost:/a", "port is empty"),
            ("localhost:50x0/a", "port \"50x0\" must be digits only"),
            ("[::1/a", "no closing ']'"),
            ("[]:5000/a", "IPv6 address is empty"),
            ("[::g]/a", "'g' is not allowed in an IPv6 address"),
            ("[::1]x/a", "only ':port' may follow"),
            ("nginx@", "digest after '@' is empty"),
            ("nginx@sha512:abc", "algorithm \"sha512\" is not supported"),
            ("nginx@abc", "digest must be sha256:<64 hex digits>"),
            ("nginx@sha256:abc", "digest must be sha256:<64 hex digits>"),
            ("nginx@sha256:@", "digest must be sha256:<64 hex digits>"),
            (HEX, "image ID"),
        ];
        for (input, expected) in cases {
            let err = ImageRef::parse(input).expect_err(input);
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(
                err.message().contains(expected),
                "{input:?}: {:?} does not mention {expected:?}",
                err.message()
            );
            assert!(err.message().starts_with("image reference \""), "{err}");
        }

        let upper = format!("nginx@sha256:{}", HEX.to_uppercase());
        assert!(
            ImageRef::parse(&upper)
                .unwrap_err()
                .message()
                .contains("sha256:<64 hex digits>")
        );
        let short = format!("nginx@sha256:{}", &HEX[1..]);
        assert!(
            ImageRef::parse(&short)
                .unwrap_err()
                .message()
                .contains("got 63 digits")
        );
    }

    #[test]
    fn error_messages_quote_the_input_escaped_and_shortened() {
        let err = ImageRef::parse("a\u{1b}[31mb").unwrap_err();
        assert!(!err.message().contains('\u{1b}'), "{err}");
        let err = ImageRef::parse(&format!("{} ", "a".repeat(1000))).unwrap_err();
        assert!(err.message().len() < 200, "{err}");
    }

    #[test]
    fn repository_and_replacing_tag_or_digest() {
        let digest = format!("sha256:{HEX}");
        let image = ImageRef::parse(&format!("localhost:5000/a/b:1.2@{digest}")).unwrap();
        assert_eq!(image.repository(), "localhost:5000/a/b");
        assert_eq!(ImageRef::parse("nginx:1").unwrap().repository(), "nginx");

        let retagged = image.with_tag("v2.7.81").unwrap();
        assert_eq!(retagged.to_string(), "localhost:5000/a/b:v2.7.81");
        assert_eq!(retagged.digest(), None);

        let pinned = retagged.with_digest(&digest).unwrap();
        assert_eq!(
            pinned.to_string(),
            format!("localhost:5000/a/b:v2.7.81@{digest}")
        );
        assert_eq!(pinned.without_digest(), retagged);

        for bad in ["", "a b", "x;y", "-x", &"t".repeat(129)] {
            let err = image.with_tag(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(
                err.message()
                    .contains("cannot tag image \"localhost:5000/a/b\""),
                "{err}"
            );
        }
        for bad in ["", "sha256:abc", "md5:abc", HEX] {
            let err = image.with_digest(bad).unwrap_err();
            assert!(err.message().contains("sha256:<64 hex digits>"), "{err}");
        }
    }

    #[test]
    fn serde_uses_the_string_form_and_validates() {
        let image = ImageRef::parse("registry.example.com/apidog/server:v2.7.81").unwrap();
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(json, "\"registry.example.com/apidog/server:v2.7.81\"");
        assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), image);

        let err = serde_json::from_str::<ImageRef>("\"nginx;id\"").unwrap_err();
        assert!(err.to_string().contains("';' is not allowed"), "{err}");
        assert!(serde_json::from_str::<ImageRef>("42").is_err());
    }

    #[test]
    fn versions_order_numerically_with_suffixes_first() {
        let v = |tag: &str| Version::from_tag(tag).unwrap_or_else(|| panic!("{tag}"));
        assert!(v("v2.7.81") > v("v2.7.9"));
        assert!(v("2.7.81") > v("v2.7.9"));
        assert!(v("1.1.0-broken") < v("1.1.0"));
        assert!(v("1.1.0-broken") > v("1.0.9"));
        assert!(v("1.1.0-alpha") < v("1.1.0-beta"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("v1.2"), v("1.2.0.0"));
        assert!(v("10") > v("9.9.9.9"));
        assert!(v("1.2.3.4") > v("1.2.3"));
        assert!(v("1.2-rc.1") < v("1.2"));
        // Semver's pre-release precedence, not text order.
        assert!(v("1.0.0-rc.9") < v("1.0.0-rc.10"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.1") < v("1.0.0-alpha.beta"));
        assert!(v("1.0.0-beta.2") < v("1.0.0-beta.11"));
        assert!(v("1.0.0-beta.11") < v("1.0.0-rc.1"));
        assert_eq!(v("1.0.0-rc.01"), v("1.0.0-rc.1"));

        let hash = |x: &Version| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            x.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&v("1.2")), hash(&v("v1.2.0")));
        assert_eq!(hash(&v("1.0.0-rc.01")), hash(&v("1.0.0-rc.1")));

        assert_eq!(v("v2.7.81").to_string(), "v2.7.81");
        assert_eq!(v("1.1.0-broken").to_string(), "1.1.0-broken");

        for not_a_version in [
            "latest",
            "main-abc123",
            "",
            "v",
            "v-1",
            "1.",
            ".1",
            "1..2",
            "1.2.3.4.5",
            "1-",
            "1.x",
            "V1",
            "1_2",
            "99999999999999999999999",
        ] {
            assert!(
                Version::from_tag(not_a_version).is_none(),
                "{not_a_version}"
            );
        }
    }

    fn path_component() -> impl Strategy<Value = String> {
        let separator = prop_oneof![
            Just(".".to_owned()),
            Just("_".to_owned()),
            Just("__".to_owned()),
            "-{1,3}"
        ];
        (
            "[a-z0-9]{1,8}",
            prop::collection::vec((separator, "[a-z0-9]{1,8}"), 0..3),
        )
            .prop_map(|(first, rest)| rest.iter().fold(first, |acc, (sep, run)| acc + sep + run))
    }

    fn registry() -> impl Strategy<Value = String> {
        let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?";
        let port = prop::option::of("[0-9]{1,5}");
        let with_port = |(host, port): (String, Option<String>)| match port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        prop_oneof![
            (
                prop::collection::vec(label, 2..4).prop_map(|l| l.join(".")),
                port.clone()
            )
                .prop_map(with_port),
            (label, "[0-9]{1,5}").prop_map(|(host, port)| format!("{host}:{port}")),
            (Just("localhost".to_owned()), port.clone()).prop_map(with_port),
            (
                "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
                port.clone()
            )
                .prop_map(with_port),
            ("\\[[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){1,7}\\]", port).prop_map(with_port),
        ]
    }

    prop_compose! {
        fn image_parts()(
            registry in prop::option::of(registry()),
            path in prop::collection::vec(path_component(), 1..4),
            tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
            digest in prop::option::of("[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}"))),
        ) -> Parts {
            (registry, path.join("/"), tag, digest)
        }
    }

    /// Parts that Docker's grammar can express: without a registry, a first path
    /// component that looks like a host would be read as one.
    fn expressible((registry, path, _, _): &Parts) -> bool {
        registry.is_some()
            || !path
                .split_once('/')
                .is_some_and(|(first, _)| is_registry(first))
    }

    const SHELL_METACHARACTERS: &[char] = &[
        ' ', ';', '$', '\'', '"', '`', '\n', '\t', '\r', '\0', '|', '&', '<', '>', '(', ')', '{',
        '}', '*', '?', '!', '~', '#', '\\', '=', '%', '^', ',',
    ];

    proptest! {
        #[test]
        fn printing_and_parsing_round_trip(parts in image_parts().prop_filter("expressible", expressible)) {
            let (registry, path, tag, digest) = parts;
            let mut text = registry.iter().map(|r| format!("{r}/")).collect::<String>() + &path;
            if let Some(tag) = &tag { text = format!("{text}:{tag}"); }
            if let Some(digest) = &digest { text = format!("{text}@{digest}"); }

            let image = ImageRef::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(image.registry(), registry.as_deref());
            prop_assert_eq!(image.path(), &path);
            prop_assert_eq!(image.tag(), tag.as_deref());
            prop_assert_eq!(image.digest(), digest.as_deref());
            prop_assert_eq!(image.to_string(), text);
            prop_assert_eq!(ImageRef::parse(&image.to_string()).unwrap(), image);
        }

        #[test]
        fn metacharacters_never_parse_in_arbitrary_text(
            before in ".{0,20}",
            bad in prop::sample::select(SHELL_METACHARACTERS),
            after in ".{0,20}",
        ) {
            let text = format!("{before}{bad}{after}");
            prop_assert!(ImageRef::parse(&text).is_err());
        }

        #[test]
        fn metacharacters_never_parse_inside_valid_references(
            parts in image_parts(),
            at in any::<prop::sample::Index>(),
            bad in prop::sample::select(SHELL_METACHARACTERS),
        ) {
            let (registry, path, tag, digest) = parts;
            let mut text = registry.map(|r| r + "/").unwrap_or_default() + &path;
            if let Some(tag) = tag { text = text + ":" + &tag; }
            if let Some(digest) = digest { text = text + "@" + &digest; }
            text.insert(at.index(text.len() + 1), bad);
            prop_assert!(ImageRef::parse(&text).is_err());
        }

        #[test]
        fn tags_from_with_tag_round_trip(tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}") {
            let image = ImageRef::parse("localhost:5000/a/b").unwrap().with_tag(&tag).unwrap();
            prop_assert_eq!(ImageRef::parse(&image.to_string()).unwrap(), image);
        }

        #[test]
        fn version_order_follows_the_numbers(
            a in prop::collection::vec(0u64..20, 1..=4),
            b in prop::collection::vec(0u64..20, 1..=4),
        ) {
            let tag = |n: &[u64]| n.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
            let pad = |n: &[u64]| { let mut p = n.to_vec(); p.resize(4, 0); p };
            let (va, vb) = (Version::from_tag(&tag(&a)).unwrap(), Version::from_tag(&tag(&b)).unwrap());
            prop_assert_eq!(va.cmp(&vb), pad(&a).cmp(&pad(&b)));
            let pre = Version::from_tag(&format!("v{}-rc", tag(&a))).unwrap();
            prop_assert!(pre < va);
        }

        #[test]
        fn pre_releases_follow_semver_precedence(x in 0u64..1000, y in 0u64..1000) {
            let rc = |n: u64| Version::from_tag(&format!("1.0.0-rc.{n}")).unwrap();
            prop_assert_eq!(rc(x).cmp(&rc(y)), x.cmp(&y));
            prop_assert!(rc(x) < Version::from_tag("1.0.0").unwrap());
        }
    }
}
