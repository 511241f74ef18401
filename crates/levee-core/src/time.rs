//! The one seam through which Levee reads the clock. Monotonic time is
//! tokio's [`Instant`], which a test can pause and advance
//! (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`); wall
//! time ([`unix_nanos`]) follows it, so under paused time the SLO loop,
//! incidents and reload timestamps move with the virtual clock too.
//! `clippy.toml` forbids `std::time::Instant::now` and `SystemTime::now`
//! everywhere else.

use crate::Nanos;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use tokio::time::Instant;

/// Now, on the monotonic clock (virtual when a test paused time).
#[inline]
pub fn now() -> Instant {
    #[allow(clippy::disallowed_methods)] // the seam itself
    Instant::now()
}

/// Now, on the wall clock. Equal to the system clock, except that time a
/// test advanced while paused is added, so wall and monotonic time move
/// together in tests. (The system clock and the monotonic one are read one
/// after the other, so under paused time the result may differ from the
/// exact sum by the nanoseconds between the two reads.)
pub fn system_time() -> SystemTime {
    #[allow(clippy::disallowed_methods)] // the seam itself
    let (wall, real) = (SystemTime::now(), std::time::Instant::now());
    let virtual_now = now().into_std();
    if virtual_now >= real {
        wall + virtual_now.duration_since(real)
    } else {
        wall - real.duration_since(virtual_now)
    }
}

/// Now, in nanoseconds since the Unix epoch (0 before it).
pub fn unix_nanos() -> Nanos {
    since_epoch().map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Now, in milliseconds since the Unix epoch (0 before it).
pub fn unix_millis() -> u64 {
    since_epoch().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Now, in whole seconds since the Unix epoch (0 before it).
pub fn unix_secs() -> u64 {
    since_epoch().map_or(0, |d| d.as_secs())
}

fn since_epoch() -> Option<Duration> {
    system_time().duration_since(UNIX_EPOCH).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_the_system_clock_when_time_runs() {
        #[allow(clippy::disallowed_methods)]
        let system = SystemTime::now();
        let seam = system_time();
        let apart = seam.duration_since(system).unwrap_or_else(|e| e.duration());
        assert!(apart < Duration::from_secs(1), "{apart:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_paused_time() {
        let (mono, wall) = (now(), unix_nanos());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(now() - mono, Duration::from_secs(3600));
        let moved = unix_nanos().abs_diff(wall);
        // Only the real time the test itself took is added, give or take
        // the nanoseconds between reading the two system clocks.
        assert!(
            (3_599_999_000_000..3_601_000_000_000).contains(&moved),
            "{moved}"
        );
    }
}
