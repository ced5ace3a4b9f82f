//! Plain log lines on stderr: `2025-01-31T12:00:00.123Z [tag] message`. No logging framework:
//! the agent writes a few lines a minute and the binary has to stay small.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static SINK: OnceLock<fn(&str)> = OnceLock::new();

/// Sends every log line to `sink` instead of stderr (tests route lines through `eprintln!`,
/// which the test harness captures per test). The first call wins.
pub fn set_sink(sink: fn(&str)) {
    let _ = SINK.set(sink);
}

/// Writes one log line to stderr. `tag` names the machine in the simulator, else is empty.
pub fn line(tag: &str, message: std::fmt::Arguments<'_>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = format_utc(now.as_secs(), now.subsec_millis());
    let text = if tag.is_empty() {
        format!("{stamp} {message}")
    } else {
        format!("{stamp} [{tag}] {message}")
    };
    match SINK.get() {
        Some(sink) => sink(&text),
        None => {
            // Not eprintln!, which panics when stderr is gone: a failed write to stderr has
            // nowhere else to go, and the agent must keep running.
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }
}

/// `2025-01-31T12:00:00.123Z` from seconds since the Unix epoch (the machine's clock may be
/// wrong in a fresh netboot; the stamp still orders the lines).
pub fn format_utc(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `log!("registered as {id}")` or `log!(tag: "sim-3", "...")`.
#[macro_export]
macro_rules! log {
    (tag: $tag:expr, $($arg:tt)+) => {
        $crate::log::line($tag, format_args!($($arg)+))
    };
    ($($arg:tt)+) => {
        $crate::log::line("", format_args!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_are_calendar_dates() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(format_utc(1_735_689_599, 999), "2024-12-31T23:59:59.999Z");
    }
}
