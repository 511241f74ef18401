//! Exact good/total counts of one SLO in time buckets, in bounded memory.
//!
//! Events are counted in two rings at once: fine buckets (default 10 s,
//! kept for 7 h) for the short windows, and coarse buckets (default 1 h,
//! kept for 31 days) for the long ones and the SLO period. Every event goes
//! into both, so a coarse bucket is always the exact sum of its fine
//! buckets and no roll-up step can lose or double-count anything. The
//! footprint is fixed when the [`Buckets`] is built: 16 bytes a bucket,
//! (2,520 + 744) × 16 bytes ≈ 51 KiB per SLO with the default [`Layout`].
//!
//! **Which events a window counts.** Time is cut into buckets of width `w`
//! starting at multiples of `w` (since the clock's epoch). A window
//! `[end − len, end)` counts every bucket whose *start* lies in it. Fine
//! buckets are used as far back as they are kept; when the window reaches
//! further, the part older than the fine horizon `H` (the first coarse
//! boundary at or after the oldest kept fine bucket) is counted in whole
//! coarse buckets, again those whose start lies in the window. So:
//!
//! - a window that starts no earlier than the oldest fine bucket kept is
//!   exact to the fine bucket: with time fed up to the present, that is
//!   any window up to `fine_span` long that ends at or after the end of the
//!   newest bucket;
//! - a longer one is exact to the fine bucket at its recent edge and to the
//!   coarse bucket at its old edge, which moves forward to the next coarse
//!   boundary (a 1 d window covers more than 23 h and at most 24 h);
//! - what is older than `coarse_span` is gone, and counts as nothing.
//!
//! **Feeding.** The owner (one SLO evaluation loop, not the request path)
//! drains the proxy's counters and calls [`Buckets::add`] with the time the
//! events belong to. Time only moves forward: the newest bucket ever added
//! sets what is kept; an event older than what is kept is dropped, and an
//! event older than the fine horizon lands only in its coarse bucket. The
//! crate takes no lock: `add` takes `&mut self`, and readers get `&self`.

use crate::nanos;
use levee_core::Nanos;
use std::fmt;
use std::time::Duration;

/// Good and total events: the numerator and denominator of an SLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events that met the objective (a non-5xx answer, a fast enough one).
    pub good: u64,
    /// Every eligible event.
    pub total: u64,
}

impl Counts {
    /// `good` of `total` events.
    pub const fn new(good: u64, total: u64) -> Self {
        Self { good, total }
    }

    /// Events that missed the objective. A drain that caught `good` ahead
    /// of `total` may leave `good > total` in one bucket; that reads as no
    /// bad events rather than wrapping.
    pub const fn bad(self) -> u64 {
        self.total.saturating_sub(self.good)
    }

    fn add(&mut self, other: Counts) {
        self.good = self.good.saturating_add(other.good);
        self.total = self.total.saturating_add(other.total);
    }
}

/// Bucket widths and how long each granularity is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Width of a fine bucket: the precision of short windows and of alert
    /// timing.
    pub fine: Duration,
    /// How far back fine buckets are kept (rounded up to whole buckets).
    pub fine_span: Duration,
    /// Width of a coarse bucket: a whole number of fine buckets.
    pub coarse: Duration,
    /// How far back coarse buckets are kept (rounded up to whole buckets);
    /// at least `fine_span + coarse`.
    pub coarse_span: Duration,
}

impl Default for Layout {
    /// 10 s fine buckets for 7 h, so every window up to 6 h (all the short
    /// and page windows of the SRE Workbook policy) is exact to 10 s even
    /// when evaluated late, and an incident can be traced 7 h back; 1 h
    /// coarse buckets for 31 days, enough for a 30-day SLO period.
    fn default() -> Self {
        Self {
            fine: Duration::from_secs(10),
            fine_span: Duration::from_secs(7 * 3600),
            coarse: Duration::from_secs(3600),
            coarse_span: Duration::from_secs(31 * 86_400),
        }
    }
}

/// The most buckets one ring may hold, so a typo in a layout cannot take
/// gigabytes (a million buckets is 16 MB).
const MAX_BUCKETS: u64 = 1 << 20;

/// Why a [`Layout`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// A bucket width is zero.
    ZeroWidth,
    /// The coarse width is not a whole multiple of the fine width.
    CoarseNotMultipleOfFine,
    /// Coarse buckets are not kept at least `fine_span + coarse`, so a
    /// window could reach past the fine horizon into lost coarse buckets.
    CoarseSpanTooShort,
    /// A ring would hold more than 2^20 buckets.
    TooManyBuckets,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutError::ZeroWidth => "bucket widths must be above zero",
            LayoutError::CoarseNotMultipleOfFine => {
                "the coarse bucket width must be a whole multiple of the fine one"
            }
            LayoutError::CoarseSpanTooShort => {
                "coarse buckets must be kept at least as long as fine ones plus one coarse bucket"
            }
            LayoutError::TooManyBuckets => "a bucket ring may hold at most 1,048,576 buckets",
        })
    }
}

impl std::error::Error for LayoutError {}

/// A ring of equal buckets indexed by `time / width`; it holds the indices
/// `(head − len, head]`, and slots are cleared as the head moves onto them.
#[derive(Debug, Clone)]
struct Ring {
    slots: Vec<Counts>,
    head: u64,
}

impl Ring {
    fn new(len: u64) -> Self {
        Self {
            slots: vec![Counts::default(); len as usize],
            head: 0,
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    fn advance(&mut self, index: u64) {
        if index <= self.head {
            return;
        }
        // Clear the slots that now hold newer buckets; at most the whole
        // ring, so a long silence costs one pass, not one step per bucket.
        let len = self.len();
        let steps = (index - self.head).min(len);
        for i in index - steps + 1..=index {
            self.slots[(i % len) as usize] = Counts::default();
        }
        self.head = index;
    }

    fn holds(&self, index: u64) -> bool {
        index <= self.head && index + self.len() > self.head
    }

    fn add(&mut self, index: u64, counts: Counts) -> bool {
        if !self.holds(index) {
            return false;
        }
        let len = self.len();
        self.slots[(index % len) as usize].add(counts);
        true
    }

    fn set(&mut self, index: u64, counts: Counts) -> bool {
        self.advance(index);
        if !self.holds(index) {
            return false;
        }
        let len = self.len();
        self.slots[(index % len) as usize] = counts;
        true
    }

    fn get(&self, index: u64) -> Counts {
        if self.holds(index) {
            self.slots[(index % self.len()) as usize]
        } else {
            Counts::default()
        }
    }

    /// The sum over the indices `[from, to)`; only those held are read, so
    /// a window reaching far into the past costs no more than the ring.
    fn sum(&self, from: u64, to: u64) -> Counts {
        let from = from.max((self.head + 1).saturating_sub(self.len()));
        let to = to.min(self.head + 1);
        let mut sum = Counts::default();
        for index in from..to {
            sum.add(self.get(index));
        }
        sum
    }
}

/// The event history of one SLO: fine and coarse buckets of good/total
/// counts. See the module docs for exactly which events a window counts.
#[derive(Debug, Clone)]
pub struct Buckets {
    layout: Layout,
    fine_ns: u64,
    coarse_ns: u64,
    /// Fine buckets per coarse bucket.
    per_coarse: u64,
    fine: Ring,
    coarse: Ring,
    seen: bool,
}

impl Buckets {
    /// Empty buckets shaped by `layout`, allocated in full now.
    pub fn new(layout: Layout) -> Result<Self, LayoutError> {
        let fine_ns = nanos(layout.fine);
        let coarse_ns = nanos(layout.coarse);
        if fine_ns == 0 || coarse_ns == 0 {
            return Err(LayoutError::ZeroWidth);
        }
        if !coarse_ns.is_multiple_of(fine_ns) {
            return Err(LayoutError::CoarseNotMultipleOfFine);
        }
        let fine_len = nanos(layout.fine_span).div_ceil(fine_ns).max(1);
        let coarse_len = nanos(layout.coarse_span).div_ceil(coarse_ns).max(1);
        if fine_len > MAX_BUCKETS || coarse_len > MAX_BUCKETS {
            return Err(LayoutError::TooManyBuckets);
        }
        let per_coarse = coarse_ns / fine_ns;
        // Every fine bucket kept must lie in a coarse bucket kept, with one
        // coarse bucket to spare for the horizon's rounding.
        if coarse_len < fine_len.div_ceil(per_coarse) + 1 {
            return Err(LayoutError::CoarseSpanTooShort);
        }
        Ok(Self {
            layout,
            fine_ns,
            coarse_ns,
            per_coarse,
            fine: Ring::new(fine_len),
            coarse: Ring::new(coarse_len),
            seen: false,
        })
    }

    /// The layout these buckets were built with.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Adds `good` of `total` events that happened at `at` (any time inside
    /// their bucket; the bucket's start is simplest). Returns false when the
    /// events were older than everything kept and were dropped.
    pub fn add(&mut self, at: Nanos, good: u64, total: u64) -> bool {
        let counts = Counts::new(good, total);
        let fine = at / self.fine_ns;
        let coarse = fine / self.per_coarse;
        self.fine.advance(fine);
        self.coarse.advance(coarse);
        self.seen = true;
        // An event past the fine ring's reach still counts in its coarse
        // bucket, and only coarse buckets answer for those times.
        self.fine.add(fine, counts);
        self.coarse.add(coarse, counts)
    }

    /// The events counted by the window `[end − len, end)`, exact at bucket
    /// granularity as the module docs say.
    pub fn counts(&self, end: Nanos, len: Duration) -> Counts {
        let start = end.saturating_sub(nanos(len));
        if start >= end {
            return Counts::default();
        }
        let mut sum = Counts::default();
        let mut fine_from = start;
        let oldest_fine = self.fine_start();
        if start < oldest_fine {
            let horizon = oldest_fine.next_multiple_of(self.coarse_ns);
            sum.add(self.coarse.sum(
                start.div_ceil(self.coarse_ns),
                end.min(horizon).div_ceil(self.coarse_ns),
            ));
            fine_from = horizon;
        }
        sum.add(self.fine_sum(fine_from.div_ceil(self.fine_ns), end.div_ceil(self.fine_ns)));
        sum
    }

    /// Sum of the fine buckets `[from, to)`; whole coarse buckets inside the
    /// range are read from the coarse ring, which holds the same sums, so a
    /// 6 h window costs about 6 + 2 × 360 reads rather than 2,160.
    fn fine_sum(&self, from: u64, to: u64) -> Counts {
        if from >= to {
            return Counts::default();
        }
        let first = from.div_ceil(self.per_coarse);
        let last = to / self.per_coarse;
        if first >= last {
            return self.fine.sum(from, to);
        }
        let mut sum = self.fine.sum(from, first * self.per_coarse);
        sum.add(self.coarse.sum(first, last));
        sum.add(self.fine.sum(last * self.per_coarse, to));
        sum
    }

    /// The start and counts of the fine bucket holding `at` (zero counts
    /// when it is not kept): what a store persists after an [`add`](Self::add).
    pub fn fine_bucket(&self, at: Nanos) -> (Nanos, Counts) {
        let index = at / self.fine_ns;
        (index * self.fine_ns, self.fine.get(index))
    }

    /// The start and counts of the coarse bucket holding `at`.
    pub fn coarse_bucket(&self, at: Nanos) -> (Nanos, Counts) {
        let index = at / self.coarse_ns;
        (index * self.coarse_ns, self.coarse.get(index))
    }

    /// Every non-empty bucket kept, fine ones then coarse ones, as
    /// `(coarse, start, counts)`: a full snapshot for a store.
    pub fn non_empty(&self) -> Vec<(bool, Nanos, Counts)> {
        let mut out = Vec::new();
        for (coarse, ring, width) in [
            (false, &self.fine, self.fine_ns),
            (true, &self.coarse, self.coarse_ns),
        ] {
            let from = (ring.head + 1).saturating_sub(ring.len());
            for index in from..=ring.head {
                let c = ring.get(index);
                if c.total > 0 || c.good > 0 {
                    out.push((coarse, index * width, c));
                }
            }
        }
        out
    }

    /// Puts back a persisted bucket: sets (does not add to) the counts of
    /// the fine or coarse bucket starting at `start`. Restore every bucket
    /// of a snapshot, in any order, before the next [`add`](Self::add).
    /// Returns false when the bucket is older than everything kept.
    pub fn restore(&mut self, coarse: bool, start: Nanos, counts: Counts) -> bool {
        self.seen = true;
        if coarse {
            // Time moves on for both rings together, as in `add`, so fine
            // buckets never claim to hold times only coarse ones cover.
            self.fine.advance(start / self.fine_ns);
            self.coarse.set(start / self.coarse_ns, counts)
        } else {
            self.fine.set(start / self.fine_ns, counts)
        }
    }

    /// The oldest time still counted in fine buckets: windows that start
    /// at or after it are exact to the fine bucket.
    pub fn fine_start(&self) -> Nanos {
        (self.fine.head + 1).saturating_sub(self.fine.len()) * self.fine_ns
    }

    /// The start of the newest bucket added, or `None` before the first add.
    pub fn newest(&self) -> Option<Nanos> {
        self.seen.then_some(self.fine.head * self.fine_ns)
    }

    /// The width of a fine bucket in nanoseconds.
    pub fn fine_ns(&self) -> u64 {
        self.fine_ns
    }

    /// The width of a coarse bucket in nanoseconds.
    pub fn coarse_ns(&self) -> u64 {
        self.coarse_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A snapshot of the non-empty buckets, restored into empty
        /// buckets, answers every window as the original does.
        #[test]
        fn a_restored_snapshot_counts_like_the_original(
            events in proptest::collection::vec((0u64..40 * 3600, 0u64..5, 0u64..5), 1..200),
            ends in proptest::collection::vec((0u64..40 * 3600, 1u64..30 * 3600), 1..20),
        ) {
            let s = 1_000_000_000u64;
            let layout = Layout {
                fine: Duration::from_secs(10),
                fine_span: Duration::from_secs(3600),
                coarse: Duration::from_secs(600),
                coarse_span: Duration::from_secs(48 * 3600),
            };
            let mut events = events;
            events.sort();
            let mut original = Buckets::new(layout).unwrap();
            for &(t, good, bad) in &events {
                original.add(t * s, good, good + bad);
            }
            let mut restored = Buckets::new(layout).unwrap();
            for (coarse, start, counts) in original.non_empty() {
                restored.restore(coarse, start, counts);
            }
            let newest = original.newest().unwrap();
            // Windows ending at or after the newest bucket, as an evaluator
            // asks them.
            for &(end, len) in &ends {
                let end = newest + end * s % (3600 * s);
                prop_assert_eq!(
                    restored.counts(end, Duration::from_secs(len)),
                    original.counts(end, Duration::from_secs(len))
                );
            }
        }
    }

    const S: u64 = 1_000_000_000;
    const MIN: u64 = 60 * S;
    const HOUR: u64 = 3600 * S;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn layouts_are_checked() {
        let ok = Layout::default();
        assert!(Buckets::new(ok).is_ok());
        let zero = Layout {
            fine: Duration::ZERO,
            ..ok
        };
        assert_eq!(Buckets::new(zero).unwrap_err(), LayoutError::ZeroWidth);
        let ragged = Layout {
            coarse: secs(25),
            ..ok
        };
        assert_eq!(
            Buckets::new(ragged).unwrap_err(),
            LayoutError::CoarseNotMultipleOfFine
        );
        let short = Layout {
            coarse_span: secs(7 * 3600),
            ..ok
        };
        assert_eq!(
            Buckets::new(short).unwrap_err(),
            LayoutError::CoarseSpanTooShort
        );
        let huge = Layout {
            fine: Duration::from_millis(1),
            ..ok
        };
        assert_eq!(Buckets::new(huge).unwrap_err(), LayoutError::TooManyBuckets);
    }

    #[test]
    fn short_windows_are_exact_to_the_fine_bucket() {
        let mut b = Buckets::new(Layout::default()).unwrap();
        // One minute of traffic: 10 events a second, one bad in each 10 s.
        for i in 0..6 {
            b.add(HOUR + i * 10 * S, 99, 100);
        }
        let end = HOUR + MIN;
        assert_eq!(b.counts(end, secs(60)), Counts::new(594, 600));
        assert_eq!(b.counts(end, secs(30)), Counts::new(297, 300));
        // A window ending inside a bucket counts that bucket whole.
        assert_eq!(b.counts(HOUR + 5 * S, secs(5)), Counts::new(99, 100));
        assert_eq!(b.counts(end, secs(3600)).total, 600);
        assert_eq!(b.counts(end, Duration::ZERO), Counts::default());
    }

    #[test]
    fn long_windows_round_their_old_edge_to_the_coarse_bucket() {
        let mut b = Buckets::new(Layout::default()).unwrap();
        // One event per minute for two days.
        for m in 0..2 * 24 * 60 {
            b.add(m * MIN, 1, 1);
        }
        let end = 2 * 24 * HOUR;
        assert_eq!(b.counts(end, secs(86_400)).total, 24 * 60);
        // 30 min past the hour: the day's window starts at the next hour,
        // so it covers 23 h 30 min.
        let end = 2 * 24 * HOUR - 30 * MIN;
        assert_eq!(b.counts(end, secs(86_400)).total, 23 * 60 + 30);
        // The same window within the fine span stays exact.
        assert_eq!(b.counts(end, secs(6 * 3600)).total, 6 * 60);
    }

    #[test]
    fn old_events_fall_out_and_late_ones_land_where_they_can() {
        let layout = Layout {
            fine: secs(10),
            fine_span: secs(60),
            coarse: secs(60),
            coarse_span: secs(180),
        };
        let mut b = Buckets::new(layout).unwrap();
        assert_eq!(b.newest(), None);
        assert!(b.add(1000 * S, 1, 1));
        assert_eq!(b.newest(), Some(1000 * S));
        // Older than the fine ring but inside the coarse one: kept there.
        assert!(b.add(900 * S, 1, 1));
        // Older than everything kept.
        assert!(!b.add(800 * S, 1, 1));
        assert_eq!(b.counts(1010 * S, secs(1000)).total, 2);
        // Three minutes later both are gone.
        b.add(1200 * S, 0, 0);
        assert_eq!(b.counts(1210 * S, secs(1000)).total, 0);
    }

    /// The naive model: every event kept, and the module docs' rule applied
    /// to each one.
    struct Model {
        fine_ns: u64,
        coarse_ns: u64,
        fine_len: u64,
        coarse_len: u64,
        head: u64,
        events: Vec<(Nanos, u64, u64)>,
    }

    impl Model {
        fn counts(&self, end: Nanos, len: u64) -> Counts {
            let start = end.saturating_sub(len);
            let oldest_fine = (self.head + 1).saturating_sub(self.fine_len) * self.fine_ns;
            let horizon = oldest_fine.next_multiple_of(self.coarse_ns);
            let head_coarse = self.head * self.fine_ns / self.coarse_ns;
            let mut sum = Counts::default();
            for &(at, good, total) in &self.events {
                let counted = if start < oldest_fine && at < horizon {
                    let bucket = at / self.coarse_ns;
                    let bucket_start = bucket * self.coarse_ns;
                    bucket + self.coarse_len > head_coarse
                        && bucket_start >= start
                        && bucket_start < end
                } else {
                    let bucket_start = at / self.fine_ns * self.fine_ns;
                    bucket_start >= start && bucket_start < end
                };
                if counted {
                    sum.add(Counts::new(good, total));
                }
            }
            sum
        }
    }

    proptest! {
        /// Against the naive model, for any feed (in order or late) and any
        /// window, with small rings so that both horizons are crossed.
        #[test]
        fn matches_a_naive_model(
            fine_s in 1u64..4,
            per_coarse in 1u64..5,
            fine_len in 1u64..12,
            extra_coarse in 1u64..6,
            events in prop::collection::vec((0u64..400, 0u64..5, 0u64..5), 1..120),
            queries in prop::collection::vec((0u64..450, 0u64..300), 1..20),
        ) {
            let fine_ns = fine_s * S;
            let coarse_ns = fine_ns * per_coarse;
            let coarse_len = fine_len.div_ceil(per_coarse) + extra_coarse;
            let layout = Layout {
                fine: Duration::from_nanos(fine_ns),
                fine_span: Duration::from_nanos(fine_ns * fine_len),
                coarse: Duration::from_nanos(coarse_ns),
                coarse_span: Duration::from_nanos(coarse_ns * coarse_len),
            };
            let mut b = Buckets::new(layout).unwrap();
            let mut model = Model { fine_ns, coarse_ns, fine_len, coarse_len, head: 0, events: Vec::new() };
            for (t, good, bad) in events {
                // Mostly forward, sometimes late: time wanders by ±20 s.
                let at = t * S / 2;
                b.add(at, good, good + bad);
                model.head = model.head.max(at / fine_ns);
                model.events.push((at, good, good + bad));
                for &(end, len) in &queries {
                    prop_assert_eq!(
                        b.counts(end * S / 2, Duration::from_secs(len)),
                        model.counts(end * S / 2, len * S),
                        "end {}s len {}s", end / 2, len
                    );
                }
            }
        }

        /// Windows up to `fine_span` that end at or after the end of the
        /// newest bucket count exactly the events whose fine bucket starts
        /// in the window: no coarse rounding.
        #[test]
        fn short_windows_need_no_coarse_rounding(
            events in prop::collection::vec((0u64..2000, 0u64..3, 0u64..3), 1..200),
            after in 0u64..20,
            len in 0u64..=3600,
        ) {
            let layout = Layout {
                fine: secs(10),
                fine_span: secs(3600),
                coarse: secs(600),
                coarse_span: secs(7200),
            };
            let mut b = Buckets::new(layout).unwrap();
            let mut events = events;
            events.sort();
            for &(t, good, bad) in &events {
                b.add(t * 10 * S, good, good + bad);
            }
            let newest_end = b.newest().unwrap() + 10 * S;
            let end = newest_end + after * S;
            let start = end.saturating_sub(len * S);
            let mut expected = Counts::default();
            for &(t, good, bad) in &events {
                if t * 10 * S >= start && t * 10 * S < end {
                    expected.add(Counts::new(good, good + bad));
                }
            }
            prop_assert_eq!(b.counts(end, secs(len)), expected);
        }
    }
}
