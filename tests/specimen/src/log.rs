//! Log lines on stdout, one event per line, each starting with an RFC 3339 UTC timestamp
//! with microseconds, so that a benchmark can measure the time between, say,
//! `event=migration_start` and `event=serving` from `docker logs` alone.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, the unit every timestamp in the specimen's tables uses
/// (it compares across database engines and server time zones without conversion).
pub fn now_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// Writes one line per event with the fields that identify this process.
#[derive(Debug, Clone)]
pub struct Log {
    version: String,
    instance: String,
}

impl Log {
    /// A log for this application version and instance id.
    pub fn new(version: &str, instance: &str) -> Self {
        Self {
            version: version.to_owned(),
            instance: instance.to_owned(),
        }
    }

    /// Prints `<timestamp> specimen event=<event> version=… instance=… key=value…`.
    pub fn event(&self, event: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        let mut line = format!(
            "{} specimen event={event} version={} instance={}",
            rfc3339(now_micros()),
            self.version,
            self.instance
        );
        for (key, value) in fields {
            let value = value.to_string();
            // Quoted only when needed, so the common case stays easy to grep.
            if value.is_empty() || value.contains([' ', '"', '=']) {
                let _ = write!(line, " {key}={value:?}");
            } else {
                let _ = write!(line, " {key}={value}");
            }
        }
        println!("{line}");
    }
}

/// Formats microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (the well-known era-based
/// conversion; a date crate would be the only dependency needing it).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(
            rfc3339(1_764_100_000_123_456),
            "2025-11-25T19:46:40.123456Z"
        );
    }
}
