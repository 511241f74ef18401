//! Time as the control algorithms see it: a monotonic count of nanoseconds
//! from a clock that can be real or virtual, so that every algorithm can be
//! tested on exact, instant virtual time.

use crate::time::{self, Instant};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Nanoseconds since the clock's own epoch. Only differences are meaningful.
pub type Nanos = u64;

/// A monotonic time source.
pub trait Clock: Send + Sync + 'static {
    /// The current time in nanoseconds since this clock's epoch.
    fn now(&self) -> Nanos;
}

/// The real monotonic clock (paused and advanced with tokio's test time),
/// counting from its creation.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    epoch: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self { epoch: time::now() }
    }

    /// Nanoseconds between the epoch and `instant` (zero if before).
    pub fn nanos_at(&self, instant: Instant) -> Nanos {
        instant.saturating_duration_since(self.epoch).as_nanos() as Nanos
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Nanos {
        time::now().saturating_duration_since(self.epoch).as_nanos() as Nanos
    }
}

/// A virtual clock that moves only when told to; clones share one time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A virtual clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let other = clock.clone();
        assert_eq!(clock.now(), 0);
        other.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), 5_000_000);
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let clock = MonotonicClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }
}
