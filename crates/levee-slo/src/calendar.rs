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

    proptest! {
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
