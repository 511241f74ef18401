//! What a run measured: latency from each request's **scheduled** send
//! time in an HDR histogram, counts of sent, ok, failed (by kind), late and
//! dropped requests, and per-second windows for sliding-window thresholds.
//!
//! Latency starts at the time the schedule said the request was due, not
//! when it actually left, so a stalled server or a stalled generator shows
//! up in the latency instead of silently lowering the rate (coordinated
//! omission, as wrk2 measures it). A request whose send started more than
//! [`LATE_AFTER`] after its due time is also counted as **late**, so the
//! generator's own delays are visible too.
//!
//! Memory is constant in the run's length: one histogram for the whole
//! run (1 µs to 1 h, 3 significant digits), one for the second under way
//! and a ring of the last `window` seconds (2 significant digits), plus a
//! few numbers per second for the series.

use hdrhistogram::Histogram;
use levee_core::time::Instant;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// A request that started sending more than this after its scheduled time
/// is counted as late. Tokio's timer wakes up to about a millisecond after
/// the instant asked for, so the bound leaves room for that and for a busy
/// scheduler thread.
pub const LATE_AFTER: Duration = Duration::from_millis(2);

/// Largest latency recorded, in microseconds (one hour); longer ones are
/// recorded as one hour.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer with this status (the body read to its end).
    Status(u16),
    /// No answer.
    Error(ErrorKind),
}

impl Outcome {
    /// Failed in k6's `http_req_failed` sense: a status of 400 or more, or
    /// no answer at all.
    pub fn failed(self) -> bool {
        match self {
            Outcome::Status(s) => s >= 400,
            Outcome::Error(_) => true,
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The connection could not be made (refused, TLS handshake failed).
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection broke or the answer was not HTTP.
    Protocol,
}

impl ErrorKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
        }
    }
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_MICROS, sigfig) {
        Ok(h) => h,
        Err(e) => unreachable!("fixed, valid histogram bounds: {e:?}"),
    }
}

/// Counts and latencies over some span of a run (the whole run, one
/// second, a window).
#[derive(Debug, Clone)]
pub struct Span {
    /// Latency of answered requests, in microseconds from the scheduled time.
    pub latency: Histogram<u64>,
    /// Requests that finished (answered or not).
    pub completed: u64,
    /// Requests answered below 400.
    pub ok: u64,
    /// Requests with a status of 400 or more or no answer.
    pub failed: u64,
    /// Requests not sent because `max_in_flight` were already in flight.
    pub dropped: u64,
}

impl Span {
    fn new(sigfig: u8) -> Self {
        Self {
            latency: histogram(sigfig),
            completed: 0,
            ok: 0,
            failed: 0,
            dropped: 0,
        }
    }

    fn add(&mut self, other: &Span) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.completed += other.completed;
        self.ok += other.ok;
        self.failed += other.failed;
        self.dropped += other.dropped;
    }

    fn record(&mut self, latency: Duration, outcome: Outcome) {
        self.completed += 1;
        if outcome.failed() {
            self.failed += 1;
        } else {
            self.ok += 1;
        }
        if let Outcome::Status(_) = outcome {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
            self.latency.saturating_record(micros.clamp(1, MAX_MICROS));
        }
    }

    /// Latency at quantile `q` (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// Share of finished requests that failed (0 when none finished).
    pub fn failed_rate(&self) -> f64 {
        if self.completed == 0 {
            0.0
        } else {
            self.failed as f64 / self.completed as f64
        }
    }
}

/// One second of the run, as the JSON series shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// Seconds from the start of the run to the start of this one.
    pub t: u64,
    /// Requests that finished in it.
    pub completed: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Requests dropped in it.
    pub dropped: u64,
    /// Median, 99th percentile and largest latency in ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Everything a run measures. Shared by the engine's tasks behind a
/// mutex; every method is a few additions.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    total: Span,
    sent: u64,
    late: u64,
    /// Failures by kind: `http 503`, `timeout`, `connect`...
    failures: BTreeMap<String, u64>,
    current: Span,
    /// The last closed seconds, at most `ring_len`.
    ring: VecDeque<Span>,
    ring_len: usize,
    series: Vec<Second>,
}

impl Recorder {
    /// A recorder for a run starting at `start`, keeping the last
    /// `window_secs` seconds for sliding windows (0: none).
    pub fn new(start: Instant, window_secs: usize) -> Self {
        Self {
            start,
            total: Span::new(3),
            sent: 0,
            late: 0,
            failures: BTreeMap::new(),
            current: Span::new(2),
            ring: VecDeque::with_capacity(window_secs),
            ring_len: window_secs,
            series: Vec::new(),
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// A request due at `scheduled` started sending at `sent`: counts it,
    /// and as late if it started more than [`LATE_AFTER`] after its time.
    pub fn sent(&mut self, scheduled: Instant, sent: Instant) {
        self.sent += 1;
        if sent.saturating_duration_since(scheduled) > LATE_AFTER {
            self.late += 1;
        }
    }

    /// A request due at `scheduled` finished at `done` with `outcome`; its
    /// latency is `done − scheduled`, whenever it was actually sent.
    pub fn finished(&mut self, scheduled: Instant, done: Instant, outcome: Outcome) {
        let latency = done.saturating_duration_since(scheduled);
        self.total.record(latency, outcome);
        self.current.record(latency, outcome);
        let kind = match outcome {
            Outcome::Status(s) if s >= 400 => format!("http {s}"),
            Outcome::Status(_) => return,
            Outcome::Error(k) => k.name().to_string(),
        };
        *self.failures.entry(kind).or_default() += 1;
    }

    /// A request due now was not sent: `max_in_flight` were in flight.
    pub fn dropped(&mut self) {
        self.total.dropped += 1;
        self.current.dropped += 1;
    }

    /// Closes the second under way (called once a second, and at the end):
    /// it joins the series and the ring of recent seconds.
    pub fn roll(&mut self) {
        let span = std::mem::replace(&mut self.current, Span::new(2));
        self.series.push(Second {
            t: self.series.len() as u64,
            completed: span.completed,
            failed: span.failed,
            dropped: span.dropped,
            p50_ms: span.quantile_ms(0.5),
            p99_ms: span.quantile_ms(0.99),
            max_ms: span.latency.max() as f64 / 1000.0,
        });
        if self.ring_len > 0 {
            if self.ring.len() == self.ring_len {
                self.ring.pop_front();
            }
            self.ring.push_back(span);
        }
    }

    /// The last `window_secs` closed seconds merged, once that many have
    /// closed (the window ends at the start of the second under way).
    pub fn window(&self) -> Option<Span> {
        if self.ring_len == 0 || self.ring.len() < self.ring_len {
            return None;
        }
        let mut merged = Span::new(2);
        for s in &self.ring {
            merged.add(s);
        }
        Some(merged)
    }

    /// The whole run so far.
    pub fn total(&self) -> &Span {
        &self.total
    }

    /// Requests whose send started.
    pub fn sent_count(&self) -> u64 {
        self.sent
    }

    /// Requests that started more than [`LATE_AFTER`] after their time.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Failures by kind.
    pub fn failures(&self) -> &BTreeMap<String, u64> {
        &self.failures
    }

    /// The closed seconds.
    pub fn series(&self) -> &[Second] {
        &self.series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn latency_counts_from_the_scheduled_time() {
        let t = levee_core::time::now();
        let mut r = Recorder::new(t, 0);
        // Due at t, sent 5 ms late, answered 1 ms after sending.
        r.sent(t, t + ms(5));
        r.finished(t, t + ms(6), Outcome::Status(200));
        // 6 ms, to the histogram's 3 significant digits.
        let max = r.total().latency.max();
        assert!(r.total().latency.equivalent(max, 6000), "{max}");
        assert_eq!(r.late(), 1);
        // On time (within the bound): not late.
        r.sent(t + ms(10), t + ms(11));
        assert_eq!(r.late(), 1);
        assert_eq!(r.sent_count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_follow_k6_and_are_kept_by_kind() {
        let t = levee_core::time::now();
        let mut r = Recorder::new(t, 0);
        r.finished(t, t + ms(1), Outcome::Status(200));
        r.finished(t, t + ms(1), Outcome::Status(302));
        r.finished(t, t + ms(1), Outcome::Status(404));
        r.finished(t, t + ms(1), Outcome::Status(503));
        r.finished(t, t + ms(1), Outcome::Error(ErrorKind::Timeout));
        let total = r.total();
        assert_eq!((total.completed, total.ok, total.failed), (5, 2, 3));
        assert_eq!(total.latency.len(), 4, "no latency without an answer");
        assert!((total.failed_rate() - 0.6).abs() < 1e-12);
        let kinds: Vec<_> = r.failures().iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(kinds, [("http 404", 1), ("http 503", 1), ("timeout", 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn seconds_roll_into_a_bounded_ring() {
        let t = levee_core::time::now();
        let mut r = Recorder::new(t, 2);
        r.finished(t, t + ms(10), Outcome::Status(200));
        r.roll();
        assert!(r.window().is_none(), "one second is not a 2 s window");
        r.finished(t, t + ms(20), Outcome::Status(500));
        r.dropped();
        r.roll();
        let w = r.window().unwrap();
        assert_eq!((w.completed, w.failed, w.dropped), (2, 1, 1));
        r.roll();
        let w = r.window().unwrap();
        assert_eq!(
            (w.completed, w.failed, w.dropped),
            (1, 1, 1),
            "the first second left"
        );
        assert_eq!(r.series().len(), 3);
        assert_eq!(r.series()[1].failed, 1);
        assert_eq!(r.total().dropped, 1);
    }
}
