//! UTC calendar arithmetic on Unix nanoseconds, without a date crate:
//! calendar-month SLO periods and RFC 3339 timestamps for the API and
//! alert payloads. Days are converted with the proleptic Gregorian
//! civil-from-days algorithm (Howard Hinnant's), exact for every `u64`
//! nanosecond time (years 1970 to 2554).

use levee_core::Nanos;

const NS_PER_SEC: u64 = 1_000_000_000;
const NS_PER_DAY: u64 = 86_400 * NS_PER_SEC;

/// `(year, month 1–12, day 1–31)` of day `days` since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of `year-month-day` (year ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar month (UTC) holding `at`: its start and its length.
pub fn month_of(at: Nanos) -> (Nanos, std::time::Duration) {
    let (year, month, _) = civil_from_days(at / NS_PER_DAY);
    let start = days_from_civil(year, month, 1);
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let next = days_from_civil(ny, nm, 1);
    (
        start * NS_PER_DAY,
        std::time::Duration::from_secs((next - start) * 86_400),
    )
}

/// `at` as an RFC 3339 UTC timestamp with milliseconds
/// (`2026-11-29T02:15:57.123Z`).
pub fn rfc3339(at: Nanos) -> String {
    let (year, month, day) = civil_from_days(at / NS_PER_DAY);
    let in_day = at % NS_PER_DAY;
    let secs = in_day / NS_PER_SEC;
    let millis = (in_day % NS_PER_SEC) / 1_000_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Reads an RFC 3339 time (`2026-12-10T02:00:00Z`, with optional
/// fractional seconds and a `Z` or `±hh:mm` offset) as Unix nanoseconds;
/// `None` for anything else or a time before 1970.
pub fn parse_rfc3339(s: &str) -> Option<Nanos> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || hour > 23 || minute > 59 {
        return None;
    }
    // A leap second reads as the last second of its minute.
    if second > 60 {
        return None;
    }
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    if days_from_civil(year, month, day) >= days_from_civil(next_year, next_month, 1) {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ns = 0u64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, c) in f[..digits].bytes().enumerate().take(9) {
            frac_ns += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
        }
        rest = &f[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let o = rest.as_bytes();
            if o.len() != 6 || !matches!(o[0], b'+' | b'-') || o[3] != b':' {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            let v = h * 3600 + m * 60;
            if o[0] == b'+' {
                v
            } else {
                -v
            }
        }
    };
    let local =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59);
    let utc = i64::try_from(local).ok()?.checked_sub(offset_secs)?;
    let utc = u64::try_from(utc).ok()?;
    utc.checked_mul(NS_PER_SEC)?.checked_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = NS_PER_DAY;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-29T02:15:57.123Z
        let t = 1_795_918_557_123_000_000;
        assert_eq!(rfc3339(t), "2026-11-29T02:15:57.123Z");
        let (start, len) = month_of(t);
        assert_eq!(rfc3339(start), "2026-11-01T00:00:00.000Z");
        assert_eq!(len.as_secs(), 30 * 86_400);
        // A leap February and a plain one.
        let (start, len) = month_of(days_from_civil(2028, 2, 29) * DAY + 5);
        assert_eq!(rfc3339(start), "2028-02-01T00:00:00.000Z");
        assert_eq!(len.as_secs(), 29 * 86_400);
        let (_, len) = month_of(days_from_civil(2100, 2, 10) * DAY);
        assert_eq!(len.as_secs(), 28 * 86_400, "2100 is not a leap year");
        let (start, len) = month_of(days_from_civil(2026, 12, 31) * DAY + DAY - 1);
        assert_eq!(rfc3339(start), "2026-12-01T00:00:00.000Z");
        assert_eq!(len.as_secs(), 31 * 86_400);
    }

    #[test]
    fn rfc3339_times_are_read_back() {
        let t = 1_795_918_557_123_000_000;
        assert_eq!(parse_rfc3339("2026-11-29T02:15:57.123Z"), Some(t));
        assert_eq!(parse_rfc3339("2026-11-29T03:15:57.123+01:00"), Some(t));
        assert_eq!(parse_rfc3339("2026-11-28T23:15:57.123-03:00"), Some(t));
        assert_eq!(parse_rfc3339("2026-11-29T02:15:57Z"), Some(t - 123_000_000));
        for bad in [
            "",
            "2026-11-29",
            "2026-11-29T02:15:57",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T02:15:57.Z",
            "1969-12-31T23:59:59Z",
            "2026-11-29T02:15:57+0100",
            "+026-11-29T02:15:57Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn written_times_read_back(ms in 0u64..10_000_000_000_000) {
            let at = ms * 1_000_000;
            prop_assert_eq!(parse_rfc3339(&rfc3339(at)), Some(at));
        }

        #[test]
        fn days_round_trip_and_months_contain_their_times(days in 0u64..200_000, ns in 0u64..DAY) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
            let at = days * DAY + ns;
            let (start, len) = month_of(at);
            prop_assert!(start <= at && at < start + len.as_nanos() as u64);
            prop_assert!((28..=31).contains(&(len.as_secs() / 86_400)));
            prop_assert_eq!(civil_from_days(start / DAY).2, 1);
        }
    }
}
