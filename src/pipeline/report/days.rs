//! Calendar days as numbers (days since 1970-01-01, UTC) and back, for
//! partition names (`date=YYYY-MM-DD`), timestamps and the trailing window.
//! Howard Hinnant's civil-calendar algorithms; no time-zone data needed.

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `YYYY-MM-DD` -> days since the epoch; None if it is not a valid date.
pub fn parse(date: &str) -> Option<i32> {
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).ok()
}

/// Days since the epoch -> `YYYY-MM-DD`.
pub fn format(days: i32) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC day of a time in microseconds since the epoch.
pub fn of_micros(us: i64) -> i32 {
    us.div_euclid(MICROS_PER_DAY) as i32
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse("1970-01-01"), Some(0));
        assert_eq!(parse("2000-03-01"), Some(11_017));
        assert_eq!(format(11_017), "2000-03-01");
        for days in [-1, 0, 59, 10_000, 20_758, 2_932_896] {
            assert_eq!(parse(&format(days)), Some(days), "{days}");
        }
        assert_eq!(format(of_micros(1_793_491_200_000_000)), "2026-11-01");
        assert_eq!(of_micros(-1), -1);
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "yesterday",
            "2026-12-01x",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
