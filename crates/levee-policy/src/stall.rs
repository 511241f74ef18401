//! Stall detection: an endpoint that stops answering without closing its
//! connections (a frozen process, a long GC pause, SIGSTOP) is seen first
//! by the requests waiting on it, long before timeouts, breakers or
//! outlier detection react. [`StallWatch`] keeps, per endpoint, how many
//! attempts await an answer and when it last made progress (answered, or
//! was given work while idle); the endpoint is stalled while attempts
//! wait and that moment is further back than a threshold derived from the
//! cluster's recent latency ([`stall_threshold`], [`RecentLatency`]).
//! Lock-free; time is passed in.

use levee_core::Nanos;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// One endpoint's attempts in the air and its last progress.
#[derive(Debug, Default)]
pub struct StallWatch {
    awaiting: AtomicU32,
    last_progress: AtomicU64,
    /// The last attempt that ended timed out.
    silent: AtomicBool,
}

impl StallWatch {
    /// An attempt was sent at `now`. Work given to an idle endpoint starts
    /// its clock, unless its last attempt timed out: then this attempt is
    /// a probe, and the endpoint stays stalled for others until it answers.
    pub fn started(&self, now: Nanos) {
        if self.awaiting.fetch_add(1, Ordering::Relaxed) == 0
            && !self.silent.load(Ordering::Relaxed)
        {
            self.last_progress.store(now, Ordering::Relaxed);
        }
    }

    /// An attempt ended at `now`; `answered` when a response (or a quick
    /// refusal) came back, not when it timed out.
    pub fn finished(&self, now: Nanos, answered: bool) {
        if answered {
            self.last_progress.fetch_max(now, Ordering::Relaxed);
        }
        self.silent.store(!answered, Ordering::Relaxed);
        self.awaiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// An attempt was cancelled (a lost hedge, a client gone): it says
    /// nothing of the endpoint.
    pub fn abandoned(&self) {
        self.awaiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Attempts now waiting for an answer.
    pub fn awaiting(&self) -> u32 {
        self.awaiting.load(Ordering::Relaxed)
    }

    /// Whether attempts wait and nothing has come back for longer than
    /// `threshold`.
    pub fn stalled(&self, now: Nanos, threshold: Nanos) -> bool {
        self.awaiting.load(Ordering::Relaxed) > 0
            && now.saturating_sub(self.last_progress.load(Ordering::Relaxed)) > threshold
    }
}

/// A cluster's recent response-head latency: an exponentially weighted
/// average (weight 1/8), updated without a lock (a lost update under a
/// race only delays the average by one sample).
#[derive(Debug, Default)]
pub struct RecentLatency(AtomicU64);

impl RecentLatency {
    /// Adds one observed latency.
    pub fn observe(&self, rtt_ns: u64) {
        let old = self.0.load(Ordering::Relaxed);
        let new = if old == 0 {
            rtt_ns.max(1)
        } else {
            old - old / 8 + rtt_ns / 8
        };
        self.0.store(new.max(1), Ordering::Relaxed);
    }

    /// The average, or 0 before any observation.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How long an endpoint may go without progress while attempts wait:
/// `factor` times the recent latency, never less than `min_ns`.
pub fn stall_threshold(recent_ns: u64, factor: u32, min_ns: u64) -> Nanos {
    recent_ns.saturating_mul(u64::from(factor)).max(min_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn an_endpoint_with_nothing_in_flight_is_never_stalled() {
        let w = StallWatch::default();
        assert!(!w.stalled(10_000 * MS, 50 * MS));
        w.started(0);
        w.finished(5 * MS, true);
        assert!(!w.stalled(10_000 * MS, 50 * MS));
    }

    #[test]
    fn waiting_past_the_threshold_without_an_answer_is_a_stall() {
        let w = StallWatch::default();
        w.started(100 * MS);
        assert!(!w.stalled(140 * MS, 50 * MS));
        // More work does not reset the clock while the first still waits.
        w.started(120 * MS);
        assert!(w.stalled(151 * MS, 50 * MS));
        // One answer and it is back.
        w.finished(160 * MS, true);
        assert!(!w.stalled(170 * MS, 50 * MS));
    }

    #[test]
    fn a_timeout_is_no_progress() {
        let w = StallWatch::default();
        w.started(0);
        w.started(10 * MS);
        w.finished(250 * MS, false);
        assert!(
            w.stalled(260 * MS, 50 * MS),
            "still waiting, nothing answered"
        );
        w.finished(260 * MS, false);
        assert!(!w.stalled(300 * MS, 50 * MS), "nothing waits any more");
        // The next attempt is a probe: others still see a stall until it
        // is answered.
        w.started(300 * MS);
        assert!(w.stalled(301 * MS, 50 * MS));
        w.finished(320 * MS, true);
        assert!(!w.stalled(321 * MS, 50 * MS));
        w.started(400 * MS);
        assert!(
            !w.stalled(440 * MS, 50 * MS),
            "answering again, a fresh clock"
        );
    }

    #[test]
    fn a_cancelled_attempt_says_nothing() {
        let w = StallWatch::default();
        w.started(0);
        w.abandoned();
        w.started(1_000 * MS);
        assert!(!w.stalled(1_010 * MS, 50 * MS));
    }

    #[test]
    fn the_threshold_follows_latency_above_its_floor() {
        let l = RecentLatency::default();
        assert_eq!(stall_threshold(l.get(), 8, 50 * MS), 50 * MS);
        for _ in 0..100 {
            l.observe(20 * MS);
        }
        let t = stall_threshold(l.get(), 8, 50 * MS);
        assert!((150 * MS..=170 * MS).contains(&t), "{t}");
    }

    proptest::proptest! {
        #[test]
        fn balanced_starts_and_finishes_leave_nothing_awaiting(
            events in proptest::collection::vec((0u64..1_000, proptest::bool::ANY), 0..64)
        ) {
            let w = StallWatch::default();
            let mut now = 0;
            for (dt, _) in &events {
                now += dt;
                w.started(now);
            }
            for (dt, answered) in &events {
                now += dt;
                w.finished(now, *answered);
            }
            proptest::prop_assert_eq!(w.awaiting(), 0);
            proptest::prop_assert!(!w.stalled(now + 1_000_000_000, 0));
        }
    }
}
