//! Deadlines carried by requests: gRPC's `grpc-timeout` header (an integer
//! of at most 8 digits and a unit: H, M, S, m, u, n) and Levee's own
//! `levee-deadline-ms` (milliseconds left). Parsing and formatting only; the
//! proxy decides what to do with them (the request's deadline is set when
//! it is admitted, and relayed upstream with each attempt).

use std::time::Duration;

/// Levee's deadline header: milliseconds the caller will still wait.
pub const LEVEE_DEADLINE_HEADER: &str = "levee-deadline-ms";

/// Parses a `grpc-timeout` value such as `250m` or `5S`.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `left` as a `grpc-timeout` value, in the finest unit that fits
/// eight digits (rounding down, so the callee never waits longer).
pub fn format_grpc_timeout(left: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = left.as_nanos();
    for (unit, per) in [
        ("n", 1u128),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
        ("H", 3_600_000_000_000),
    ] {
        let n = nanos / per;
        if n <= MAX {
            return format!("{n}{unit}");
        }
    }
    format!("{MAX}H")
}

/// Parses `levee-deadline-ms`: a non-negative integer of milliseconds.
pub fn parse_levee_deadline(value: &str) -> Option<Duration> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("100u"), Some(Duration::from_micros(100)));
        for bad in ["", "m", "5", "5s", "-5S", "123456789S", "5 S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn levee_deadline_parses() {
        assert_eq!(
            parse_levee_deadline("1500"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_levee_deadline("0"), Some(Duration::ZERO));
        assert_eq!(parse_levee_deadline("-1"), None);
        assert_eq!(parse_levee_deadline("1e3"), None);
    }

    proptest! {
        /// Formatting then parsing never lengthens a deadline, and loses at
        /// most one unit of the chosen precision.
        #[test]
        fn grpc_timeout_round_trip(nanos in 0u64..(3_600_000_000_000u64 * 1000)) {
            let d = Duration::from_nanos(nanos);
            let text = format_grpc_timeout(d);
            prop_assert!(text.len() <= 9);
            let back = parse_grpc_timeout(&text).unwrap();
            prop_assert!(back <= d);
            prop_assert!(d - back < Duration::from_secs(3600));
            if nanos < 99_999_999 {
                prop_assert_eq!(back, d);
            }
        }
    }
}
