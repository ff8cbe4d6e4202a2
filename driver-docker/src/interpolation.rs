//! Compose's `$` interpolation in an `image:` value, as far as cutover can edit it.
//!
//! Compose substitutes `${VAR}`, `$VAR`, `${VAR:-default}` (default when unset or empty)
//! and `${VAR-default}` (default when unset) from the process environment, then the
//! project's `.env` file. cutover accepts exactly one variable, at the end of the value
//! (`repo:${TAG}`, `${IMAGE}`), so that a new image is the literal part followed by the
//! variable's new value. Everything else is refused with the reason: several variables,
//! a literal after the variable, nesting (`${A:-${B}}`), `$$`, and the `?`/`+` forms.

use std::ops::Range;

/// An image value split around its one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// The literal text before the variable (`repo:` in `repo:${TAG}`).
    pub prefix: String,
    /// The variable's name.
    pub name: String,
    /// Its default, if the reference has one.
    pub default: Option<Default>,
}

/// The default of `${VAR:-default}` or `${VAR-default}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Default {
    /// `:-` (used when the variable is unset or empty) rather than `-` (unset only).
    pub if_empty: bool,
    /// The default as written.
    pub value: String,
    /// Where the default sits in the value that was parsed.
    pub range: Range<usize>,
}

impl Pattern {
    /// The image for the variable's value `value` (`None`: unset).
    pub(crate) fn image(&self, value: Option<&str>) -> Option<String> {
        let used = match (value, &self.default) {
            (Some(v), Some(d)) if v.is_empty() && d.if_empty => &d.value,
            (Some(v), _) => v,
            (None, Some(d)) => &d.value,
            (None, None) => return None,
        };
        Some(format!("{}{used}", self.prefix))
    }

    /// The variable's value that makes the image `image`, or why there is none.
    pub(crate) fn value_for<'a>(&self, image: &'a str) -> std::result::Result<&'a str, String> {
        let value = image.strip_prefix(self.prefix.as_str()).ok_or_else(|| {
            format!(
                "the new image {image} does not start with {:?}, the part of the image before ${{{}}}",
                self.prefix, self.name
            )
        })?;
        if value.is_empty() || !value.bytes().all(safe_byte) {
            return Err(format!(
                "{:?} cannot be written as the value of {}",
                value, self.name
            ));
        }
        Ok(value)
    }
}

/// Bytes an image reference is made of; none needs quoting or escaping anywhere.
pub(crate) fn safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-:/@+".contains(&b)
}

/// Splits `value` (an image value without quotes) around its variable; `Ok(None)` when it
/// has no `$` at all.
pub(crate) fn parse(value: &str) -> std::result::Result<Option<Pattern>, String> {
    let Some(at) = value.find('$') else {
        return Ok(None);
    };
    let prefix = &value[..at];
    let rest = &value[at + 1..];
    let (name, default, end) = if let Some(body) = rest.strip_prefix('{') {
        let name_len = name_len(body);
        if name_len == 0 {
            return Err(format!(
                "`{value}` has a `${{` that does not start with a variable name"
            ));
        }
        let name = &body[..name_len];
        let after = &body[name_len..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{value}` has no closing `}}`"))?;
        let modifier = &after[..close];
        // Offset of `after` within `value`: `$`, `{`, the name.
        let after_at = at + 2 + name_len;
        let default = if modifier.is_empty() {
            None
        } else if let Some(d) = modifier.strip_prefix(":-") {
            Some((true, d, after_at + 2))
        } else if let Some(d) = modifier.strip_prefix('-') {
            Some((false, d, after_at + 1))
        } else if modifier.starts_with([':', '?', '+']) {
            return Err(format!(
                "`{value}` uses the `${{{name}{modifier}}}` form, which cutover does not edit; use `${{{name}}}` or `${{{name}:-default}}`"
            ));
        } else {
            return Err(format!(
                "`{value}` is not a variable reference Compose reads"
            ));
        };
        let default = match default {
            Some((_, d, _)) if d.contains('$') || d.contains('{') => {
                return Err(format!(
                    "`{value}` nests interpolation in the default of {name}; cutover edits one variable only"
                ));
            }
            Some((if_empty, d, start)) => Some(Default {
                if_empty,
                value: d.to_string(),
                range: start..start + d.len(),
            }),
            None => None,
        };
        (name, default, after_at + close + 1)
    } else {
        let name_len = name_len(rest);
        if rest.starts_with('$') {
            return Err(format!(
                "`{value}` has `$$` (a literal `$`), which no image name contains"
            ));
        }
        if name_len == 0 {
            return Err(format!(
                "`{value}` has a `$` not followed by a variable name"
            ));
        }
        (&rest[..name_len], None, at + 1 + name_len)
    };
    let suffix = &value[end..];
    if suffix.contains('$') {
        return Err(format!(
            "`{value}` uses more than one variable; cutover edits one, at the end of the image"
        ));
    }
    if !suffix.is_empty() {
        return Err(format!(
            "`{value}` has {suffix:?} after ${{{name}}}; cutover edits a variable only at the end of the image (e.g. `repo:${{TAG}}`)"
        ));
    }
    if !prefix.bytes().all(safe_byte) {
        return Err(format!("`{value}` has characters no image name contains"));
    }
    Ok(Some(Pattern {
        prefix: prefix.to_string(),
        name: name.to_string(),
        default,
    }))
}

/// Length of the variable name at the start of `s`: `[A-Za-z_][A-Za-z0-9_]*`.
fn name_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.first()
        .is_none_or(|c| !(c.is_ascii_alphabetic() || *c == b'_'))
    {
        return 0;
    }
    b.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_compose_reads_are_split_around_the_variable() {
        assert_eq!(parse("vendor/server:1.0.0").unwrap(), None);
        let p = parse("vendor/server:${APP_TAG:-1.0.0}").unwrap().unwrap();
        assert_eq!(p.prefix, "vendor/server:");
        assert_eq!(p.name, "APP_TAG");
        let d = p.default.clone().unwrap();
        assert!(d.if_empty);
        assert_eq!(d.value, "1.0.0");
        assert_eq!(&"vendor/server:${APP_TAG:-1.0.0}"[d.range.clone()], "1.0.0");
        assert_eq!(p.image(None).unwrap(), "vendor/server:1.0.0");
        assert_eq!(p.image(Some("")).unwrap(), "vendor/server:1.0.0");
        assert_eq!(p.image(Some("2.0")).unwrap(), "vendor/server:2.0");

        let p = parse("r:${TAG-1}").unwrap().unwrap();
        assert!(!p.default.as_ref().unwrap().if_empty);
        assert_eq!(p.image(Some("")).unwrap(), "r:", "`-` keeps an empty value");
        assert_eq!(&"r:${TAG-1}"[p.default.unwrap().range], "1");

        let p = parse("r:${TAG}").unwrap().unwrap();
        assert_eq!((p.prefix.as_str(), &p.default), ("r:", &None));
        assert_eq!(p.image(None), None);
        let p = parse("r:$TAG").unwrap().unwrap();
        assert_eq!((p.prefix.as_str(), p.name.as_str()), ("r:", "TAG"));
        let p = parse("${IMAGE}").unwrap().unwrap();
        assert_eq!(p.prefix, "");
        assert_eq!(p.value_for("a/b:2@sha256:00").unwrap(), "a/b:2@sha256:00");
    }

    #[test]
    fn the_new_value_is_what_follows_the_literal_part() {
        let p = parse("127.0.0.1:5000/s:${T:-1}").unwrap().unwrap();
        assert_eq!(
            p.value_for("127.0.0.1:5000/s:1.1@sha256:ab").unwrap(),
            "1.1@sha256:ab"
        );
        assert!(
            p.value_for("other/s:1.1")
                .unwrap_err()
                .contains("does not start")
        );
        assert!(p.value_for("127.0.0.1:5000/s:").is_err());
    }

    #[test]
    fn what_cutover_cannot_edit_is_refused_with_the_reason() {
        let cases = [
            ("r:${A}${B}", "more than one variable"),
            ("${REG}/r:${TAG}", "more than one variable"),
            ("r:${TAG}-alpine", "after ${TAG}"),
            ("r:${TAG:-${DEFAULT}}", "nests"),
            ("r:${TAG:?set it}", "`${TAG:?set it}` form"),
            ("r:${TAG?}", "form"),
            ("r:${TAG:+x}", "form"),
            ("r:$$TAG", "`$$`"),
            ("r:${}", "variable name"),
            ("r:${1X}", "variable name"),
            ("r:$", "variable name"),
            ("r:${TAG", "closing"),
        ];
        for (value, why) in cases {
            let e = parse(value).unwrap_err();
            assert!(e.contains(why), "{value}: {e}");
        }
    }
}
