//! A sliding time window of counters, kept as a ring of equal slots: the
//! shared bookkeeping of retry budgets and circuit breakers. Plain data,
//! time passed in.

use levee_core::Nanos;

/// Counts per slot: what happened in one slice of the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests (or calls) seen.
    pub total: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Of those, slow calls.
    pub slow: u64,
    /// Retries spent.
    pub retries: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.failures += other.failures;
        self.slow += other.slow;
        self.retries += other.retries;
    }
}

/// A window of `slots` slices of `slot_ns` each; the current slice is the one
/// `now` falls in, and the window covers it and the `slots - 1` before it.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    slot_ns: u64,
    slots: Vec<(u64, Counts)>,
}

impl SlidingWindow {
    /// A window of `length` split into `slots` slices (at least one).
    pub fn new(length: std::time::Duration, slots: usize) -> Self {
        let slots = slots.max(1);
        let slot_ns = (length.as_nanos() as u64 / slots as u64).max(1);
        Self {
            slot_ns,
            slots: vec![(u64::MAX, Counts::default()); slots],
        }
    }

    fn slot_mut(&mut self, now: Nanos) -> &mut Counts {
        let index = now / self.slot_ns;
        let n = self.slots.len() as u64;
        let entry = &mut self.slots[(index % n) as usize];
        if entry.0 != index {
            // The slot last held an older slice: start it afresh.
            *entry = (index, Counts::default());
        }
        &mut entry.1
    }

    /// Adds `counts` to the current slice.
    pub fn record(&mut self, now: Nanos, counts: Counts) {
        self.slot_mut(now).add(&counts);
    }

    /// The sum over the window ending at `now`.
    pub fn sum(&self, now: Nanos) -> Counts {
        let current = now / self.slot_ns;
        let oldest = current.saturating_sub(self.slots.len() as u64 - 1);
        let mut total = Counts::default();
        for (index, counts) in &self.slots {
            if *index != u64::MAX && *index >= oldest && *index <= current {
                total.add(counts);
            }
        }
        total
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        for slot in &mut self.slots {
            *slot = (u64::MAX, Counts::default());
        }
    }

    /// The slice length in nanoseconds.
    pub fn slot_ns(&self) -> u64 {
        self.slot_ns
    }

    /// Number of slices.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a window has at least one slice.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    #[test]
    fn old_slices_fall_out() {
        let mut w = SlidingWindow::new(Duration::from_secs(10), 10);
        w.record(
            0,
            Counts {
                total: 5,
                ..Default::default()
            },
        );
        w.record(
            9 * S,
            Counts {
                total: 1,
                ..Default::default()
            },
        );
        assert_eq!(w.sum(9 * S).total, 6);
        assert_eq!(w.sum(10 * S).total, 1, "the first second left the window");
        assert_eq!(w.sum(18 * S).total, 1);
        assert_eq!(
            w.sum(19 * S).total,
            0,
            "ten slices later the last event left too"
        );
    }

    proptest! {
        /// Against a naive model that keeps every event: the window sums the
        /// events whose slice is within the last `slots` slices.
        #[test]
        fn matches_a_naive_model(events in prop::collection::vec((0u64..50, 0u64..4), 1..200), slots in 1usize..12) {
            let mut events = events;
            events.sort();
            let mut w = SlidingWindow::new(Duration::from_secs(slots as u64), slots);
            let mut seen: Vec<(u64, u64)> = Vec::new();
            for (t, n) in events {
                let now = t * S / 2;
                w.record(now, Counts { total: n, ..Default::default() });
                seen.push((now, n));
                let current = now / w.slot_ns();
                let oldest = current.saturating_sub(slots as u64 - 1);
                let expected: u64 = seen.iter().filter(|(at, _)| at / w.slot_ns() >= oldest).map(|(_, n)| n).sum();
                prop_assert_eq!(w.sum(now).total, expected);
            }
        }
    }
}
