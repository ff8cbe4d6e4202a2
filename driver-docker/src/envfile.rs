//! The project's `.env` file: finding one variable's line and editing only its value.
//!
//! Lines are `NAME=value` or `export NAME=value`, blank, or comments (`#`). A value is
//! unquoted (up to a ` #` comment), `'single'` or `"double"` quoted, on one line. cutover
//! reads the whole file to find every definition of the variable, but it never keeps,
//! logs or records anything but that one value: the file usually holds passwords.
//!
//! Refused, naming the line: a variable defined more than once (which definition wins
//! differs between Compose versions), defined without `=`, a value that is quoted across
//! lines, has escapes or uses `$` interpolation itself.

use std::ops::Range;

use crate::interpolation::safe_byte;

/// How a value is quoted in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quote {
    /// `NAME=value`
    Plain,
    /// `NAME='value'`
    Single,
    /// `NAME="value"`
    Double,
}

/// The one definition of a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvLine {
    /// Line number, 1-based.
    pub line: usize,
    /// Byte range of the value token in the file, quotes included.
    pub range: Range<usize>,
    /// Its quoting.
    pub quote: Quote,
    /// The value without quotes.
    pub value: String,
}

impl EnvLine {
    /// The token that writes `value` in this line's quoting.
    pub(crate) fn token(&self, value: &str) -> String {
        match self.quote {
            Quote::Plain => value.to_string(),
            Quote::Single => format!("'{value}'"),
            Quote::Double => format!("\"{value}\""),
        }
    }
}

/// The definition of `name` in `text`, `None` when there is none, or why it cannot be
/// edited safely. Messages name lines, never values of other variables.
pub(crate) fn find(text: &str, name: &str) -> std::result::Result<Option<EnvLine>, String> {
    let mut found: Vec<(usize, usize, &str)> = Vec::new();
    let mut start = 0;
    for (i, piece) in text.split_inclusive('\n').enumerate() {
        let body = piece.trim_end_matches('\n').trim_end_matches('\r');
        let offset = start;
        start += piece.len();
        let t = body.trim_start_matches([' ', '\t']);
        let lead = body.len() - t.len();
        let (t, lead) = match t.strip_prefix("export ") {
            Some(rest) => {
                let rest_t = rest.trim_start_matches([' ', '\t']);
                (rest_t, lead + (t.len() - rest_t.len()))
            }
            None => (t, lead),
        };
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let key_end = t.find(['=', ' ', '\t']).unwrap_or(t.len());
        if &t[..key_end] != name {
            continue;
        }
        let after_key = t[key_end..].trim_start_matches([' ', '\t']);
        let Some(value) = after_key.strip_prefix('=') else {
            return Err(format!(
                "{name} is listed without `=` on line {} (Compose then takes it from the environment)",
                i + 1
            ));
        };
        let value_at = offset + lead + (t.len() - value.len());
        found.push((i + 1, value_at, value));
    }
    let (line, at, raw) = match found.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => {
            let lines: Vec<String> = many.iter().map(|(l, _, _)| l.to_string()).collect();
            return Err(format!(
                "{name} is defined {} times (lines {}); Compose versions disagree on which one wins. Keep one",
                many.len(),
                lines.join(", ")
            ));
        }
    };
    let lead = raw.len() - raw.trim_start_matches([' ', '\t']).len();
    let token = &raw[lead..];
    let at = at + lead;
    let (quote, len, value) = match token.as_bytes().first() {
        Some(q @ (b'\'' | b'"')) => {
            let close = token[1..].find(*q as char).ok_or_else(|| {
                format!("{name}'s value on line {line} is quoted across lines; cutover edits one-line values")
            })?;
            let quote = if *q == b'\'' {
                Quote::Single
            } else {
                Quote::Double
            };
            (quote, close + 2, &token[1..close + 1])
        }
        _ => {
            let end = token
                .find(" #")
                .or_else(|| token.find("\t#"))
                .unwrap_or(token.len());
            let value = token[..end].trim_end_matches([' ', '\t']);
            (Quote::Plain, value.len(), value)
        }
    };
    if !value.bytes().all(safe_byte) {
        return Err(format!(
            "{name}'s value on line {line} has characters no image name has ($, escapes, quotes or spaces)"
        ));
    }
    Ok(Some(EnvLine {
        line,
        range: at..at + len,
        quote,
        value: value.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = "\
# Vendor defaults. Change APP_TAG to upgrade.
COMPOSE_PROJECT_NAME=apidog
MYSQL_PASSWORD='s3cret # not a comment'
APP_TAG=1.0.0   # the release
export QUOTED=\"2.0\"
SINGLE = '3.0'
";

    #[test]
    fn a_value_is_found_with_its_quoting_and_only_it_is_replaced() {
        let l = find(ENV, "APP_TAG").unwrap().unwrap();
        assert_eq!(
            (l.line, l.quote, l.value.as_str()),
            (4, Quote::Plain, "1.0.0")
        );
        assert_eq!(&ENV[l.range.clone()], "1.0.0");
        let l = find(ENV, "QUOTED").unwrap().unwrap();
        assert_eq!((l.quote, &ENV[l.range.clone()]), (Quote::Double, "\"2.0\""));
        assert_eq!(l.token("2.1"), "\"2.1\"");
        let l = find(ENV, "SINGLE").unwrap().unwrap();
        assert_eq!((l.quote, l.value.as_str()), (Quote::Single, "3.0"));
        assert_eq!(find(ENV, "MISSING").unwrap(), None);
        assert_eq!(find(ENV, "APP").unwrap(), None, "a prefix is another name");
        let crlf = ENV.replace('\n', "\r\n");
        let l = find(&crlf, "APP_TAG").unwrap().unwrap();
        assert_eq!(&crlf[l.range], "1.0.0");
    }

    #[test]
    fn what_cannot_be_edited_is_refused_naming_the_line_not_other_values() {
        let cases = [
            ("T=1\nT=2\n", "defined 2 times (lines 1, 2)"),
            ("T\n", "without `=`"),
            ("T=\"1\n", "across lines"),
            ("T=${OTHER}\n", "line 1"),
            ("T=\"a\\tb\"\n", "line 1"),
        ];
        for (text, why) in cases {
            let e = find(text, "T").unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        let e = find(&format!("{ENV}APP_TAG=2\n"), "APP_TAG").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
