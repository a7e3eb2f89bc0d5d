//! The hive layout of log partitions: `date=YYYY-MM-DD/hour=HH` folders
//! and the hours (UTC) they stand for. Simulated logs are written in it
//! (`simulate --hive-logs`) and `ingest` reads it, so both name and parse
//! partitions here.

use std::path::{Path, PathBuf};

/// An hour since the Unix epoch (UTC): days * 24 + hour.
pub type HourIndex = i64;

pub const HOUR_US: i64 = 3_600_000_000;

/// `ROOT/date=YYYY-MM-DD/hour=HH` for an hour.
pub fn partition_dir(root: &Path, hour: HourIndex) -> PathBuf {
    let (y, m, d) = civil_from_days(hour.div_euclid(24));
    root.join(format!("date={y:04}-{m:02}-{d:02}"))
        .join(format!("hour={:02}", hour.rem_euclid(24)))
}

/// `YYYY-MM-DD` (from the first hour of the day) or `YYYY-MM-DDTHH`.
pub fn parse_bound(text: &str, end_of_day: bool) -> Option<HourIndex> {
    let (date, hour) = match text.split_once('T') {
        Some((date, hour)) => (date, Some(parse_hour(hour)?)),
        None => (text, None),
    };
    let days = parse_date(date)?;
    let hour = hour.unwrap_or(if end_of_day { 23 } else { 0 });
    Some(days * 24 + hour)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `2026-12-01T03:00:00Z` for an hour index.
pub fn format_hour(hour: HourIndex) -> String {
    let (y, m, d) = civil_from_days(hour.div_euclid(24));
    format!("{y:04}-{m:02}-{d:02}T{:02}:00:00Z", hour.rem_euclid(24))
}

pub fn parse_hour(text: &str) -> Option<i64> {
    let hour: i64 = text.parse().ok()?;
    (text.len() <= 2 && (0..24).contains(&hour)).then_some(hour)
}

// Howard Hinnant's civil-calendar algorithms (public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_day_numbers() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-01",
            "26-01-01",
            "2026-01-01-x",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let hour = parse_bound("2026-12-01T03", false).unwrap();
        assert_eq!(format_hour(hour), "2026-12-01T03:00:00Z");
        assert_eq!(
            format_hour(parse_bound("2026-12-31", true).unwrap()),
            "2026-12-31T23:00:00Z"
        );
        assert_eq!(parse_bound("2026-12-01T24", false), None);
    }

    #[test]
    fn partition_folders_are_named_by_the_hour() {
        let hour = parse_bound("2026-11-01T23", false).unwrap();
        let root = Path::new("logs");
        assert_eq!(
            partition_dir(root, hour),
            Path::new("logs/date=2026-11-01/hour=23")
        );
        assert_eq!(
            partition_dir(root, hour + 1),
            Path::new("logs/date=2026-11-02/hour=00")
        );
    }
}
