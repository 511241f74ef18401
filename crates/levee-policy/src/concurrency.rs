//! The adaptive concurrency limit of one cluster: how many requests may be
//! in flight to it at once, learned from the latency and the failures of the
//! requests that finished. Three algorithms share the same frame:
//!
//! - **Gradient**, Envoy's formula: `gradient = baseline × (1 + buffer) /
//!   sample`, clamped to `[0.5, 2]`, and `limit ← limit × gradient +
//!   √(limit × gradient)`; the square root is the headroom that keeps the
//!   limit probing upward while latency is near the baseline.
//! - **AIMD**: one more request per round trip while nothing fails, times
//!   the backoff ratio when something does.
//! - **Vegas**: the requests queued upstream, estimated as `limit × (1 −
//!   baseline / sample)`, are kept between alpha and beta (both scaled by
//!   `log10(limit)`, as Netflix's concurrency-limits does).
//!
//! Samples are gathered into windows (`sample_window` long, and at least
//! `min_window_samples`); the limit moves once per window. A window's
//! latency is a percentile of its successful samples (the median by
//! default), computed from a bounded buffer that is thinned evenly when a
//! busy window overflows it.
//!
//! **Failures are congestion.** A window in which more than
//! `drop_tolerance` of the samples were dropped (timed out, or refused by an
//! overloaded upstream) cuts the limit by the backoff ratio, whatever the
//! latency says, and so does a window whose p99 (over every sample, drops
//! included) is above `latency_target`. Netflix's Gradient2 looked only at
//! how latency moves, so a steady stream of timeouts, all at the same
//! latency, looked like a calm upstream and the limit climbed to the
//! maximum (concurrency-limits#137). Here such a stream cuts the limit every
//! window until it reaches `min_limit`. After a cut, growth is cautious, as
//! TCP's after a loss: free only up to the backoff ratio times the limit
//! the cutting began from, then one request (or 1% of the limit) per window
//! until it passes that limit. Otherwise the gradient's headroom would jump
//! straight back over a latency target it has just been cut under.
//!
//! **The baseline (the upstream's latency without queueing) is learned from
//! live traffic, never by pinning concurrency down to measure it.** Envoy
//! measures its minRTT by holding the limit at a few requests for a while,
//! and the requests that arrive meanwhile are refused: the stray 503s of
//! Envoy #18152. Here nothing is ever refused to take a measurement:
//!
//! - Any window faster than the baseline lowers it at once: a window's
//!   latency is an upper bound on the latency without queueing.
//! - Raising it needs evidence that no queue of ours is in it, because the
//!   controllers sit a little above the upstream's knee by design (the
//!   gradient's headroom and buffer, Vegas's alpha): every request at the
//!   limit waits in that standing queue. Re-learning from such requests
//!   would raise the baseline by the queue each time, and the limit with it,
//!   up to the maximum (the climb Envoy #11579 describes). So the baseline
//!   is a windowed minimum over *low-load* samples: successes sent while no
//!   more than half the limit was in flight. That is below the knee as long
//!   as the limit is under twice the knee, which is where the controllers
//!   keep it, and traffic has lulls, so these come for free. (Until the
//!   first such evidence, the first window's latency stands in.) The
//!   minimum is kept per re-learn period: at the end of a period the older
//!   one is forgotten, so the baseline can rise to what the last one or two
//!   periods saw. Periods last `relearn_period` ± `relearn_jitter`, with
//!   the jitter drawn from the random seed, so that gateway instances do
//!   not move in step.
//! - A baseline that is much too low (the upstream became slower) makes the
//!   controller cut the limit; if the latency then stays where it is while
//!   the concurrency in use halves, the latency is not a queue of ours, and
//!   the window's latency becomes the baseline at once. The same happens
//!   after five windows at `min_limit` (Envoy's trigger for re-measuring),
//!   since the limit cannot go lower to tell.
//!
//! No growth without demand: a window in which fewer than half the limit
//! were ever in flight may lower the limit but not raise it, or a quiet
//! night would leave it at the maximum when load returns.
//!
//! Plain struct: time and randomness are passed in; the proxy wraps one per
//! cluster in a mutex and feeds it every finished attempt.

use crate::hash::mix64;
use levee_core::Nanos;
use std::time::Duration;

/// Which controller moves the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitAlgorithm {
    /// Envoy's gradient controller, with the baseline learned from live
    /// traffic.
    Gradient,
    /// Additive increase, multiplicative decrease, driven by drops (and the
    /// latency target) alone.
    Aimd,
    /// TCP Vegas: keeps a small estimated queue at the upstream.
    Vegas,
}

/// How an adaptive limit behaves. Out-of-range values are brought into
/// range by [`AdaptiveLimit::new`], as each field says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitConfig {
    /// The controller.
    pub algorithm: LimitAlgorithm,
    /// The limit never goes below this (at least 1).
    pub min_limit: u32,
    /// The limit never goes above this (raised to `min_limit` if below).
    pub max_limit: u32,
    /// The limit to start from (clamped to the bounds).
    pub initial_limit: u32,
    /// A p99 latency to hold: a window whose p99 is above it cuts the limit
    /// by `backoff_ratio`, whatever the algorithm.
    pub latency_target: Option<Duration>,
    /// The shortest window the limit is updated over.
    pub sample_window: Duration,
    /// Samples a window needs before it closes (at least 1); a quiet window
    /// stays open until it has them.
    pub min_window_samples: u32,
    /// The percentile of a window's successful latencies that stands for it
    /// (0.5: the median, as Envoy's default; clamped to `(0, 1]`).
    pub rtt_percentile: f64,
    /// How far above the baseline a window's latency may sit before it
    /// counts as queueing (Envoy's buffer: 0.25 is 25%; negative: 0).
    pub latency_buffer: f64,
    /// What a congested window multiplies the limit by (clamped to
    /// `[0.5, 0.99]`: 1 would let steady timeouts hold the limit up).
    pub backoff_ratio: f64,
    /// The share of a window's samples that may be dropped before the
    /// window counts as congested (clamped to `[0, 0.5]`), so a trickle of
    /// unrelated failures does not pin the limit down.
    pub drop_tolerance: f64,
    /// Vegas grows while fewer than `alpha × log10(limit)` requests queue.
    pub vegas_alpha: f64,
    /// Vegas shrinks while more than `beta × log10(limit)` requests queue
    /// (raised to `vegas_alpha` if below).
    pub vegas_beta: f64,
    /// How long the low-load minimum is kept before it is re-learned.
    pub relearn_period: Duration,
    /// Each period is `relearn_period` times a random factor in
    /// `[1 − jitter, 1 + jitter]` (clamped to `[0, 0.9]`).
    pub relearn_jitter: f64,
}

impl Default for LimitConfig {
    /// The gradient controller with Envoy's and Netflix's defaults where
    /// they exist: 100 ms windows of at least 10 samples, the median, a 25%
    /// buffer, a 0.9 backoff, Vegas alpha 3 and beta 6, a 30 s re-learn
    /// period with 15% jitter; limits from 3 (Envoy's minimum) to 1000,
    /// starting at 20.
    fn default() -> Self {
        Self {
            algorithm: LimitAlgorithm::Gradient,
            min_limit: 3,
            max_limit: 1_000,
            initial_limit: 20,
            latency_target: None,
            sample_window: Duration::from_millis(100),
            min_window_samples: 10,
            rtt_percentile: 0.5,
            latency_buffer: 0.25,
            backoff_ratio: 0.9,
            drop_tolerance: 0.01,
            vegas_alpha: 3.0,
            vegas_beta: 6.0,
            relearn_period: Duration::from_secs(30),
            relearn_jitter: 0.15,
        }
    }
}

impl LimitConfig {
    /// The same configuration with every field in range.
    fn normalized(mut self) -> Self {
        self.min_limit = self.min_limit.max(1);
        self.max_limit = self.max_limit.max(self.min_limit);
        self.initial_limit = self.initial_limit.clamp(self.min_limit, self.max_limit);
        self.min_window_samples = self.min_window_samples.max(1);
        self.rtt_percentile = finite_or(self.rtt_percentile, 0.5).clamp(f64::MIN_POSITIVE, 1.0);
        self.latency_buffer = finite_or(self.latency_buffer, 0.25).max(0.0);
        self.backoff_ratio = finite_or(self.backoff_ratio, 0.9).clamp(0.5, 0.99);
        self.drop_tolerance = finite_or(self.drop_tolerance, 0.01).clamp(0.0, 0.5);
        self.vegas_alpha = finite_or(self.vegas_alpha, 3.0).max(0.0);
        self.vegas_beta = finite_or(self.vegas_beta, 6.0).max(self.vegas_alpha);
        self.relearn_jitter = finite_or(self.relearn_jitter, 0.15).clamp(0.0, 0.9);
        self
    }
}

fn finite_or(value: f64, default: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        default
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How a request that was let through ended, as far as the limit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleOutcome {
    /// An answer came back in the normal way; its latency is a measurement.
    Success,
    /// The upstream could not cope: the attempt timed out, or the upstream
    /// refused it as overloaded (503, 429, a reset under load). Congestion,
    /// whatever its latency.
    Dropped,
}

/// One finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// From sending the request to its answer (or to giving up on it).
    pub rtt_ns: u64,
    /// Requests in flight to the cluster when this one was sent, counting
    /// itself.
    pub in_flight: u32,
    /// How it ended.
    pub outcome: SampleOutcome,
}

/// What the last closed window saw, for metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    /// Samples in the window.
    pub samples: u64,
    /// Of those, dropped.
    pub dropped: u64,
    /// The window's latency (the configured percentile of its successes),
    /// if any succeeded.
    pub sample_rtt_ns: Option<u64>,
    /// The p99 over every sample, drops included.
    pub p99_ns: u64,
    /// The mean of the samples' in-flight counts.
    pub mean_in_flight: f64,
    /// The largest in-flight count a sample was sent at.
    pub max_in_flight: u32,
}

/// Latencies a window keeps for its percentiles. Beyond this, the buffer is
/// thinned to every other sample, so a busy window costs no more memory and
/// its percentiles stay those of an even spread of it.
const KEPT_SAMPLES: usize = 512;

/// Low-load successes a window needs before their percentile is evidence
/// for the baseline: a single fast answer is not a latency distribution.
const MIN_LOW_LOAD_SAMPLES: usize = 5;

/// How far a window's latency may move and still count as unchanged when
/// checking whether latency follows the concurrency in use.
const FLAT: f64 = 0.1;

/// Windows at `min_limit` with latency above the baseline after which the
/// baseline is re-learned from them (Envoy re-measures after five).
const WINDOWS_AT_MIN: u32 = 5;

#[derive(Debug, Clone, Copy)]
struct Kept {
    rtt_ns: u64,
    low_load: bool,
    dropped: bool,
}

/// The window being filled.
#[derive(Debug, Clone)]
struct Window {
    start: Nanos,
    samples: u64,
    dropped: u64,
    in_flight_sum: u64,
    max_in_flight: u32,
    /// Keep sample number `i` (from 0) when `i % stride == 0`.
    stride: u64,
    kept: Vec<Kept>,
}

impl Window {
    fn new(start: Nanos) -> Self {
        Self {
            start,
            samples: 0,
            dropped: 0,
            in_flight_sum: 0,
            max_in_flight: 0,
            stride: 1,
            kept: Vec::with_capacity(KEPT_SAMPLES),
        }
    }

    fn reset(&mut self, start: Nanos) {
        self.start = start;
        self.samples = 0;
        self.dropped = 0;
        self.in_flight_sum = 0;
        self.max_in_flight = 0;
        self.stride = 1;
        self.kept.clear();
    }

    fn record(&mut self, sample: &Sample, low_load: bool) {
        let index = self.samples;
        let dropped = sample.outcome == SampleOutcome::Dropped;
        self.samples += 1;
        self.dropped += u64::from(dropped);
        self.in_flight_sum = self
            .in_flight_sum
            .saturating_add(u64::from(sample.in_flight));
        self.max_in_flight = self.max_in_flight.max(sample.in_flight);
        if !index.is_multiple_of(self.stride) {
            return;
        }
        if self.kept.len() == KEPT_SAMPLES {
            // Entries hold samples 0, s, 2s, …; keeping every other one
            // leaves 0, 2s, 4s, …, the same spread at twice the stride.
            let mut position = 0;
            self.kept.retain(|_| {
                position += 1;
                position % 2 == 1
            });
            self.stride *= 2;
            if !index.is_multiple_of(self.stride) {
                return;
            }
        }
        self.kept.push(Kept {
            rtt_ns: sample.rtt_ns,
            low_load,
            dropped,
        });
    }

    fn summarize(&self, percentile: f64, scratch: &mut Vec<u64>) -> Summary {
        let mut select = |keep: fn(&Kept) -> bool, p: f64| {
            scratch.clear();
            scratch.extend(self.kept.iter().filter(|k| keep(k)).map(|k| k.rtt_ns));
            let n = scratch.len();
            (n, percentile_of(scratch, p))
        };
        let (_, sample_rtt_ns) = select(|k| !k.dropped, percentile);
        let (low_load_n, low_load) = select(|k| k.low_load, percentile);
        let (_, p99) = select(|_| true, 0.99);
        Summary {
            stats: WindowStats {
                samples: self.samples,
                dropped: self.dropped,
                sample_rtt_ns,
                p99_ns: p99.unwrap_or(0),
                mean_in_flight: self.in_flight_sum as f64 / self.samples.max(1) as f64,
                max_in_flight: self.max_in_flight,
            },
            low_load_rtt_ns: low_load.filter(|_| low_load_n >= MIN_LOW_LOAD_SAMPLES),
        }
    }
}

/// The nearest-rank percentile `p` of `values` (reordered in place).
fn percentile_of(values: &mut [u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
    Some(*values.select_nth_unstable(rank).1)
}

struct Summary {
    stats: WindowStats,
    low_load_rtt_ns: Option<u64>,
}

/// The upstream's latency without queueing, as learned so far.
#[derive(Debug, Clone)]
struct Baseline {
    value: Option<u64>,
    /// The lowest evidence in the current re-learn period.
    current: Option<u64>,
    /// The lowest evidence in the one before.
    previous: Option<u64>,
    period_end: Nanos,
    periods: u64,
    seed: u64,
    /// While windows run above the baseline: the concurrency and latency
    /// of the window where the latency last changed.
    run: Option<(f64, u64)>,
    windows_at_min: u32,
}

impl Baseline {
    fn new(now: Nanos, seed: u64, config: &LimitConfig) -> Self {
        let mut b = Self {
            value: None,
            current: None,
            previous: None,
            period_end: now,
            periods: 0,
            seed,
            run: None,
            windows_at_min: 0,
        };
        b.period_end = now.saturating_add(b.next_period(config));
        b
    }

    /// The length of the next period: the configured one, jittered by the
    /// period's own random draw.
    fn next_period(&mut self, config: &LimitConfig) -> u64 {
        let draw = mix64(self.seed ^ mix64(self.periods.wrapping_add(0x9e37_79b9_7f4a_7c15)));
        self.periods += 1;
        let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 + config.relearn_jitter * (2.0 * unit - 1.0);
        (nanos(config.relearn_period) as f64 * factor) as u64
    }

    fn rotate_if_due(&mut self, now: Nanos, config: &LimitConfig) {
        if now < self.period_end {
            return;
        }
        self.previous = self.current.take();
        self.period_end = now.saturating_add(self.next_period(config));
    }

    fn observe(&mut self, window_rtt: Option<u64>, low_load_rtt: Option<u64>) {
        let mut evidence = low_load_rtt;
        // Whatever the load, a window's latency is an upper bound on the
        // latency without queueing; only a rise needs low-load evidence.
        if let Some(r) = window_rtt.filter(|r| self.value.is_none_or(|v| *r < v)) {
            evidence = Some(evidence.map_or(r, |e| e.min(r)));
        }
        if let Some(e) = evidence {
            self.current = Some(self.current.map_or(e, |c| c.min(e)));
        }
        let lowest = match (self.current, self.previous) {
            (Some(c), Some(p)) => Some(c.min(p)),
            (c, p) => c.or(p),
        };
        // With no evidence in either period, the last baseline stands.
        if lowest.is_some() {
            self.value = lowest;
        }
    }

    /// Re-learns at once when the latency stays above the baseline although
    /// the concurrency in use halved (or sat at the minimum): a queue of
    /// ours would have drained.
    fn check_stale(&mut self, window_rtt: Option<u64>, in_use: f64, at_min: bool, buffer: f64) {
        let (Some(value), Some(rtt)) = (self.value, window_rtt) else {
            return;
        };
        if (rtt as f64) <= value as f64 * (1.0 + buffer) {
            self.run = None;
            self.windows_at_min = 0;
            return;
        }
        self.windows_at_min = if at_min { self.windows_at_min + 1 } else { 0 };
        let halved = match self.run {
            Some((concurrency, since)) => {
                let moved = (rtt as f64 - since as f64).abs() > FLAT * since as f64;
                if moved {
                    self.run = Some((in_use, rtt));
                }
                !moved && in_use <= concurrency / 2.0
            }
            None => {
                self.run = Some((in_use, rtt));
                false
            }
        };
        if halved || self.windows_at_min >= WINDOWS_AT_MIN {
            self.value = Some(rtt);
            self.current = Some(rtt);
            self.previous = None;
            self.run = None;
            self.windows_at_min = 0;
        }
    }
}

/// The adaptive concurrency limit of one cluster.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    config: LimitConfig,
    window_ns: u64,
    /// Kept fractional so that small steps add up.
    limit: f64,
    window: Window,
    scratch: Vec<u64>,
    baseline: Baseline,
    last: Option<WindowStats>,
    recovery: Option<Recovery>,
    /// Whether the last window cut the limit: cuts in consecutive windows
    /// are one episode (the window after a cut still holds answers to
    /// requests sent under the old limit).
    cut_last_window: bool,
    windows: u64,
}

/// Growth after a cut (TCP's slow-start threshold).
#[derive(Debug, Clone, Copy)]
struct Recovery {
    /// The limit this episode of cuts began from.
    cut_from: f64,
    /// Growth is free up to here: `cut_from × backoff_ratio`.
    threshold: f64,
}

impl AdaptiveLimit {
    /// A limit at `config.initial_limit`, its first window starting at
    /// `now`; `random` seeds the jitter of the re-learn periods (give each
    /// instance its own).
    pub fn new(config: LimitConfig, now: Nanos, random: u64) -> Self {
        let config = config.normalized();
        Self {
            window_ns: nanos(config.sample_window),
            limit: f64::from(config.initial_limit),
            window: Window::new(now),
            scratch: Vec::with_capacity(KEPT_SAMPLES),
            baseline: Baseline::new(now, random, &config),
            last: None,
            recovery: None,
            cut_last_window: false,
            windows: 0,
            config,
        }
    }

    /// The configuration in force (normalized).
    pub fn config(&self) -> &LimitConfig {
        &self.config
    }

    /// Requests that may be in flight now: always within
    /// `[min_limit, max_limit]`.
    pub fn limit(&self) -> u32 {
        // The float never leaves the bounds; the clamp guards the cast.
        (self.limit as u32).clamp(self.config.min_limit, self.config.max_limit)
    }

    /// The learned latency without queueing, once there is one.
    pub fn baseline_ns(&self) -> Option<u64> {
        self.baseline.value
    }

    /// What the last closed window saw.
    pub fn last_window(&self) -> Option<&WindowStats> {
        self.last.as_ref()
    }

    /// Records a finished attempt at `now`; closes the window, and moves the
    /// limit, when the window is long enough and has enough samples.
    pub fn on_sample(&mut self, now: Nanos, sample: Sample) {
        let low_load = sample.outcome == SampleOutcome::Success
            && f64::from(sample.in_flight) <= (self.limit / 2.0).max(1.0);
        self.window.record(&sample, low_load);
        if now.saturating_sub(self.window.start) >= self.window_ns
            && self.window.samples >= u64::from(self.config.min_window_samples)
        {
            self.close_window(now);
        }
    }

    fn close_window(&mut self, now: Nanos) {
        let summary = self
            .window
            .summarize(self.config.rtt_percentile, &mut self.scratch);
        self.window.reset(now);
        let stats = summary.stats;
        self.baseline.rotate_if_due(now, &self.config);
        self.baseline
            .observe(stats.sample_rtt_ns, summary.low_load_rtt_ns);
        self.baseline.check_stale(
            stats.sample_rtt_ns,
            stats.mean_in_flight,
            self.limit <= f64::from(self.config.min_limit),
            self.config.latency_buffer,
        );
        self.limit = self.next_limit(&stats);
        self.last = Some(stats);
        self.windows += 1;
    }

    fn next_limit(&mut self, stats: &WindowStats) -> f64 {
        let c = &self.config;
        let limit = self.limit;
        let latencies = self.baseline.value.zip(stats.sample_rtt_ns);
        let proposal = match (c.algorithm, latencies) {
            (LimitAlgorithm::Gradient, Some((base, sample))) => {
                let gradient =
                    (base as f64 * (1.0 + c.latency_buffer) / sample.max(1) as f64).clamp(0.5, 2.0);
                let scaled = limit * gradient;
                scaled + scaled.sqrt()
            }
            (LimitAlgorithm::Vegas, Some((base, sample))) => {
                let queue = limit * (1.0 - base as f64 / sample.max(1) as f64).max(0.0);
                let step = limit.log10().max(1.0);
                let (alpha, beta) = (c.vegas_alpha * step, c.vegas_beta * step);
                if queue <= step {
                    limit + beta
                } else if queue < alpha {
                    limit + step
                } else if queue > beta {
                    // Netflix steps down by log10(limit), which takes about
                    // a hundred windows to undo a limit twice too high;
                    // half the excess queue converges geometrically.
                    limit - step.max((queue - beta) / 2.0)
                } else {
                    limit
                }
            }
            // One more request per round trip, as TCP: `limit` successes
            // take about one round trip.
            (LimitAlgorithm::Aimd, _) => limit + (stats.samples - stats.dropped) as f64 / limit,
            // No baseline or no success yet: nothing to compare.
            (_, None) => limit,
        };
        // Never more than double in a window: the gradient's own clamp,
        // and slow start's pace for the others.
        let proposal = proposal.min(limit * 2.0);
        let mut next = if f64::from(stats.max_in_flight) * 2.0 < limit {
            proposal.min(limit)
        } else {
            proposal
        };
        let congested =
            stats.dropped > 0 && stats.dropped as f64 > c.drop_tolerance * stats.samples as f64;
        let over_target = c
            .latency_target
            .is_some_and(|target| stats.p99_ns > nanos(target));
        if congested || over_target {
            next = next.min(limit * c.backoff_ratio);
            if !self.cut_last_window {
                self.recovery = Some(Recovery {
                    cut_from: limit,
                    threshold: limit * c.backoff_ratio,
                });
            }
            self.cut_last_window = true;
        } else {
            self.cut_last_window = false;
            match self.recovery {
                // Past where the cutting began without a cut: whatever
                // caused it is gone.
                Some(r) if limit > r.cut_from => self.recovery = None,
                Some(r) => next = next.min(r.threshold.max(limit + (limit / 100.0).max(1.0))),
                None => {}
            }
        }
        if !next.is_finite() {
            next = limit;
        }
        next.clamp(f64::from(c.min_limit), f64::from(c.max_limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    fn config(algorithm: LimitAlgorithm) -> LimitConfig {
        LimitConfig {
            algorithm,
            min_limit: 1,
            max_limit: 1_000,
            ..LimitConfig::default()
        }
    }

    const ALGORITHMS: [LimitAlgorithm; 3] = [
        LimitAlgorithm::Gradient,
        LimitAlgorithm::Aimd,
        LimitAlgorithm::Vegas,
    ];

    fn ok(rtt_ns: u64, in_flight: u32) -> Sample {
        Sample {
            rtt_ns,
            in_flight,
            outcome: SampleOutcome::Success,
        }
    }

    fn dropped(rtt_ns: u64, in_flight: u32) -> Sample {
        Sample {
            rtt_ns,
            in_flight,
            outcome: SampleOutcome::Dropped,
        }
    }

    /// Feeds one full window of `n` copies of `sample` ending at `*now`
    /// (advanced by 100 ms) and returns the limit after it.
    fn window(
        l: &mut AdaptiveLimit,
        now: &mut Nanos,
        n: u32,
        sample: impl Fn(u32) -> Sample,
    ) -> u32 {
        let before = l.windows;
        for i in 0..n {
            *now += 100 * MS / u64::from(n);
            l.on_sample(*now, sample(i));
        }
        assert_eq!(l.windows, before + 1, "exactly one window closed");
        l.limit()
    }

    /// An upstream that serves `capacity` requests at once in `service_ns`
    /// each; above that they share it (latency grows with the concurrency,
    /// throughput stays at capacity / service). With `queue`, more than
    /// `capacity + queue` in flight are refused at once as overloaded.
    #[derive(Debug, Clone, Copy)]
    struct Upstream {
        capacity: f64,
        service_ns: u64,
        queue: Option<u32>,
        /// Every request times out after this long.
        hung: Option<u64>,
    }

    const REFUSAL_NS: u64 = MS;

    impl Upstream {
        fn new(capacity: u32, service_ns: u64) -> Self {
            Self {
                capacity: f64::from(capacity),
                service_ns,
                queue: None,
                hung: None,
            }
        }

        fn answer(&self, in_flight: u32) -> (u64, SampleOutcome) {
            if let Some(timeout) = self.hung {
                return (timeout, SampleOutcome::Dropped);
            }
            let n = f64::from(in_flight);
            if self.queue.is_some_and(|q| n > self.capacity + f64::from(q)) {
                return (REFUSAL_NS, SampleOutcome::Dropped);
            }
            let load = (n / self.capacity).max(1.0);
            (
                (self.service_ns as f64 * load) as u64,
                SampleOutcome::Success,
            )
        }
    }

    /// A closed loop in virtual time: as many requests in flight as the
    /// limit allows (or as `offered`, if less), each sent as soon as a slot
    /// frees, one at a time (so a fresh loop starts below the knee).
    struct Sim {
        limiter: AdaptiveLimit,
        upstream: Upstream,
        offered: Option<u32>,
        now: Nanos,
        in_flight: u32,
        /// (finish, rtt, in flight at send, dropped)
        pending: BinaryHeap<Reverse<(Nanos, u64, u32, bool)>>,
        /// The limit after each window.
        trace: Vec<u32>,
        /// The lowest limit seen after any sample.
        lowest: u32,
    }

    impl Sim {
        fn new(config: LimitConfig, upstream: Upstream) -> Self {
            let limiter = AdaptiveLimit::new(config, 0, 7);
            Self {
                lowest: limiter.limit(),
                limiter,
                upstream,
                offered: None,
                now: 0,
                in_flight: 0,
                pending: BinaryHeap::new(),
                trace: Vec::new(),
            }
        }

        fn step(&mut self) {
            let room = self
                .offered
                .map_or(self.limiter.limit(), |o| o.min(self.limiter.limit()));
            while self.in_flight < room {
                self.in_flight += 1;
                let (rtt, outcome) = self.upstream.answer(self.in_flight);
                let drop = outcome == SampleOutcome::Dropped;
                self.pending
                    .push(Reverse((self.now + rtt, rtt, self.in_flight, drop)));
            }
            let Reverse((at, rtt_ns, in_flight, drop)) =
                self.pending.pop().expect("the limit is at least 1");
            self.now = at;
            self.in_flight -= 1;
            let before = self.limiter.windows;
            let outcome = if drop {
                SampleOutcome::Dropped
            } else {
                SampleOutcome::Success
            };
            self.limiter.on_sample(
                at,
                Sample {
                    rtt_ns,
                    in_flight,
                    outcome,
                },
            );
            self.lowest = self.lowest.min(self.limiter.limit());
            if self.limiter.windows != before {
                self.trace.push(self.limiter.limit());
            }
        }

        fn run_windows(&mut self, n: usize) -> &[u32] {
            let start = self.trace.len();
            while self.trace.len() < start + n {
                self.step();
            }
            &self.trace[start..]
        }

        fn run_for(&mut self, duration: Nanos) {
            let end = self.now + duration;
            while self.now < end {
                self.step();
            }
        }
    }

    fn within(limits: &[u32], low: f64, high: f64) -> bool {
        limits
            .iter()
            .all(|&l| f64::from(l) >= low && f64::from(l) <= high)
    }

    /// The upstream each algorithm is driven against. The delay-based ones
    /// see only latency (an unbounded queue); AIMD sees only failures, so
    /// its upstream refuses work beyond a queue of a quarter of capacity,
    /// as a server with a bounded accept queue does.
    fn upstream_for(algorithm: LimitAlgorithm, capacity: u32) -> Upstream {
        let mut u = Upstream::new(capacity, 10 * MS);
        if algorithm == LimitAlgorithm::Aimd {
            u.queue = Some(capacity / 4);
        }
        u
    }

    #[test]
    fn gradient_follows_envoys_formula() {
        let mut l = AdaptiveLimit::new(
            LimitConfig {
                initial_limit: 100,
                ..config(LimitAlgorithm::Gradient)
            },
            0,
            0,
        );
        let mut now = 0;
        // Ten requests at in-flight 1 set the baseline at 10 ms (low load).
        window(&mut l, &mut now, 100, |i| {
            ok(10 * MS, if i < 10 { 1 } else { 100 })
        });
        assert_eq!(l.baseline_ns(), Some(10 * MS));
        // Then 20 ms at full load: gradient = 10 × 1.25 / 20 = 0.625.
        let before = l.limit;
        let after = window(&mut l, &mut now, 100, |_| ok(20 * MS, 100));
        let scaled = before * 0.625;
        assert_eq!(after, (scaled + scaled.sqrt()) as u32);
        // Far slower: the gradient is clamped at 0.5.
        let before = l.limit;
        window(&mut l, &mut now, 100, |_| ok(100 * MS, 100));
        let scaled = before * 0.5;
        assert!((l.limit - (scaled + scaled.sqrt())).abs() < 1e-9);
    }

    #[test]
    fn a_window_needs_its_time_and_its_samples() {
        let mut l = AdaptiveLimit::new(config(LimitAlgorithm::Aimd), 0, 0);
        // Nine samples over a whole second: not enough to close.
        for i in 1..=9 {
            l.on_sample(i * 100 * MS, ok(MS, 20));
        }
        assert_eq!(l.windows, 0);
        l.on_sample(1_000 * MS, ok(MS, 20));
        assert_eq!(l.windows, 1);
        // A thousand samples within 50 ms: not long enough.
        for i in 0..1_000 {
            l.on_sample(1_000 * MS + i * 50_000, ok(MS, 20));
        }
        assert_eq!(l.windows, 1);
        assert_eq!(l.last_window().map(|w| w.samples), Some(10));
    }

    #[test]
    fn config_is_brought_into_range() {
        let l = AdaptiveLimit::new(
            LimitConfig {
                min_limit: 0,
                max_limit: 0,
                initial_limit: 50,
                rtt_percentile: f64::NAN,
                backoff_ratio: 1.0,
                drop_tolerance: 2.0,
                vegas_alpha: 8.0,
                vegas_beta: 2.0,
                ..LimitConfig::default()
            },
            0,
            0,
        );
        let c = l.config();
        assert_eq!((c.min_limit, c.max_limit, c.initial_limit), (1, 1, 1));
        assert_eq!(l.limit(), 1);
        assert_eq!(c.rtt_percentile, 0.5);
        assert_eq!(c.backoff_ratio, 0.99);
        assert_eq!(c.drop_tolerance, 0.5);
        assert_eq!(c.vegas_beta, 8.0);
    }

    /// Each algorithm, from a limit of 1 and from three times capacity,
    /// settles near capacity within 40 windows (4 s) and stays there for
    /// the next 150.
    ///
    /// The band is [0.7C, 1.5C]. Its top is where the algorithms sit by
    /// design, a little above the knee: the gradient at (1 + buffer)·C +
    /// √((1 + buffer)·C), 1.41C at C = 50 with Envoy's 25% buffer (a 25%
    /// rise in latency is tolerated as noise); Vegas at C + alpha..beta
    /// queued requests (1.1-1.2C); AIMD's sawtooth between the backoff and
    /// the point where the upstream starts refusing (1.25C). Its bottom
    /// is where more than 30% of the upstream would sit idle.
    #[test]
    fn every_algorithm_settles_near_capacity_from_low_and_high() {
        let capacity = 50;
        for algorithm in ALGORITHMS {
            for initial in [1, 3 * capacity] {
                let mut sim = Sim::new(
                    LimitConfig {
                        initial_limit: initial,
                        ..config(algorithm)
                    },
                    upstream_for(algorithm, capacity),
                );
                sim.run_windows(40);
                let settled = sim.run_windows(150).to_vec();
                let c = f64::from(capacity);
                assert!(
                    within(&settled, 0.7 * c, 1.5 * c),
                    "{algorithm:?} from {initial}: {:?}",
                    sim.trace
                );
            }
        }
    }

    #[test]
    fn a_larger_cluster_settles_too() {
        let capacity = 200;
        for algorithm in ALGORITHMS {
            let mut sim = Sim::new(
                LimitConfig {
                    initial_limit: 10,
                    ..config(algorithm)
                },
                upstream_for(algorithm, capacity),
            );
            sim.run_windows(40);
            let settled = sim.run_windows(60).to_vec();
            let c = f64::from(capacity);
            assert!(
                within(&settled, 0.7 * c, 1.5 * c),
                "{algorithm:?}: {:?}",
                sim.trace
            );
        }
    }

    /// concurrency-limits#137: the upstream is swamped by someone else and
    /// every request times out at the same 5 s. Latency is perfectly
    /// steady, which a purely latency-driven controller reads as calm; here
    /// the limit only goes down, to the minimum.
    #[test]
    fn steady_timeouts_drive_the_limit_down_never_up() {
        for algorithm in ALGORITHMS {
            for timeout_rtt in [5 * S, 10 * MS] {
                let mut l = AdaptiveLimit::new(
                    LimitConfig {
                        initial_limit: 100,
                        min_limit: 2,
                        ..config(algorithm)
                    },
                    0,
                    0,
                );
                let mut now = 0;
                // A healthy start, so there is a baseline of 10 ms: the
                // second kind of timeout has exactly the baseline latency.
                for _ in 0..5 {
                    window(&mut l, &mut now, 50, |i| {
                        ok(10 * MS, if i < 10 { 1 } else { 100 })
                    });
                }
                let mut previous = l.limit();
                for _ in 0..100 {
                    let limit = l.limit();
                    let next = window(&mut l, &mut now, 20, |_| dropped(timeout_rtt, limit));
                    assert!(next <= previous, "{algorithm:?}: {previous} -> {next}");
                    previous = next;
                }
                assert_eq!(l.limit(), 2, "{algorithm:?} reaches the minimum");
            }
        }
    }

    /// The same, in the closed loop: the upstream stops answering within
    /// the timeout at all. The limit falls to the minimum within 50 windows
    /// and never rises while it lasts.
    #[test]
    fn an_upstream_that_only_times_out_is_throttled_to_the_minimum() {
        for algorithm in ALGORITHMS {
            let mut sim = Sim::new(
                LimitConfig {
                    initial_limit: 40,
                    min_limit: 3,
                    ..config(algorithm)
                },
                upstream_for(algorithm, 50),
            );
            sim.run_windows(40);
            // Every request sent from now on times out after 1 s. The next
            // two windows may still hold answers sent before.
            sim.upstream.hung = Some(S);
            sim.run_windows(2);
            let trace = sim.run_windows(50).to_vec();
            assert!(
                trace.windows(2).all(|w| w[1] <= w[0]),
                "{algorithm:?}: {trace:?}"
            );
            assert_eq!(trace.last(), Some(&3), "{algorithm:?}: {trace:?}");
        }
    }

    #[test]
    fn a_share_of_timeouts_keeps_the_limit_from_climbing() {
        for algorithm in ALGORITHMS {
            let mut l = AdaptiveLimit::new(
                LimitConfig {
                    initial_limit: 100,
                    ..config(algorithm)
                },
                0,
                0,
            );
            let mut now = 0;
            window(&mut l, &mut now, 50, |i| {
                ok(10 * MS, if i < 10 { 1 } else { 100 })
            });
            let start = l.limit();
            for _ in 0..50 {
                let limit = l.limit();
                // One in five times out; the rest answer at the baseline.
                window(&mut l, &mut now, 50, |i| {
                    if i % 5 == 0 {
                        dropped(S, limit)
                    } else {
                        ok(10 * MS, limit)
                    }
                });
                assert!(l.limit() <= start, "{algorithm:?}");
            }
        }
    }

    #[test]
    fn drops_within_the_tolerance_are_not_congestion() {
        let mut l = AdaptiveLimit::new(
            LimitConfig {
                initial_limit: 10,
                drop_tolerance: 0.05,
                ..config(LimitAlgorithm::Aimd)
            },
            0,
            0,
        );
        let mut now = 0;
        // 2 in 100 dropped: under 5%, so AIMD grows (doubling at most).
        let after = window(&mut l, &mut now, 100, |i| {
            if i < 2 {
                dropped(S, 10)
            } else {
                ok(10 * MS, 10)
            }
        });
        assert_eq!(after, 19);
        // 6 in 100: congestion, 19.8 × 0.9.
        let after = window(&mut l, &mut now, 100, |i| {
            if i < 6 {
                dropped(S, 19)
            } else {
                ok(10 * MS, 19)
            }
        });
        assert_eq!(after, 17);
    }

    #[test]
    fn a_latency_target_cuts_multiplicatively_whatever_the_algorithm() {
        for algorithm in ALGORITHMS {
            let mut l = AdaptiveLimit::new(
                LimitConfig {
                    initial_limit: 100,
                    latency_target: Some(Duration::from_millis(50)),
                    ..config(algorithm)
                },
                0,
                0,
            );
            let mut now = 0;
            // Latency at the baseline, so every controller would grow; but
            // the slowest 2% take 80 ms, putting p99 over the target.
            window(&mut l, &mut now, 100, |i| {
                ok(
                    if i >= 98 { 80 * MS } else { 10 * MS },
                    if i < 10 { 1 } else { 100 },
                )
            });
            assert_eq!(l.limit(), 90, "{algorithm:?}: 100 × 0.9");
            window(&mut l, &mut now, 100, |i| {
                ok(if i >= 98 { 80 * MS } else { 10 * MS }, 90)
            });
            assert_eq!(l.limit(), 81, "{algorithm:?}: 90 × 0.9");
        }
    }

    /// With a p99 target of 1.2 × the service time, the limit holds the
    /// upstream's queue under 20%: near 1.2C rather than where the gradient
    /// alone would put it (1.41C), and AIMD, which has no other signal on
    /// this upstream, settles under the target too.
    #[test]
    fn a_latency_target_holds_the_limit_under_it() {
        let capacity = 50;
        for algorithm in ALGORITHMS {
            let mut sim = Sim::new(
                LimitConfig {
                    initial_limit: 1,
                    latency_target: Some(Duration::from_millis(12)),
                    ..config(algorithm)
                },
                Upstream::new(capacity, 10 * MS),
            );
            sim.run_windows(60);
            let settled = sim.run_windows(100).to_vec();
            let c = f64::from(capacity);
            // Above 1.2C a window's p99 is over the target; one step of
            // growth may overshoot before the cut.
            assert!(
                within(&settled, 0.7 * c, 1.32 * c),
                "{algorithm:?}: {settled:?}"
            );
            let mean = settled.iter().map(|&l| f64::from(l)).sum::<f64>() / settled.len() as f64;
            assert!(mean <= 1.2 * c, "{algorithm:?}: mean {mean}");
        }
    }

    /// Half the upstream goes away (C 100 → 50), or two thirds of it
    /// (120 → 40): every algorithm follows it down into the new band within
    /// 30 windows, and stays. Latency rises at once and comes back down as
    /// the limit falls, so it is not taken for a slower upstream: the
    /// baseline stays (a false re-learn would ratchet the limit up).
    #[test]
    fn the_limit_follows_a_capacity_drop_down() {
        for (before, after) in [(100u32, 50u32), (120, 40)] {
            for algorithm in ALGORITHMS {
                let mut sim = Sim::new(
                    LimitConfig {
                        initial_limit: 10,
                        ..config(algorithm)
                    },
                    upstream_for(algorithm, before),
                );
                let (b, a) = (f64::from(before), f64::from(after));
                let trace = sim.run_windows(80).to_vec();
                assert!(
                    within(&trace[40..], 0.7 * b, 1.5 * b),
                    "{algorithm:?}: {trace:?}"
                );
                sim.upstream = upstream_for(algorithm, after);
                sim.run_windows(30);
                let settled = sim.run_windows(100).to_vec();
                assert!(
                    within(&settled, 0.7 * a, 1.5 * a),
                    "{algorithm:?} {before} -> {after}: {:?}",
                    sim.trace
                );
                if algorithm != LimitAlgorithm::Aimd {
                    assert_eq!(sim.limiter.baseline_ns(), Some(10 * MS), "{algorithm:?}");
                }
            }
        }
    }

    /// The upstream becomes twice as slow (a deploy, a colder cache). The
    /// old baseline now says "queueing", so the limit is cut; but latency
    /// stays at 20 ms while the concurrency in use halves, so it is not a
    /// queue of ours, and the baseline is re-learned at once, without
    /// waiting for a period or holding concurrency down to measure. The
    /// limit returns to the band within 30 windows.
    #[test]
    fn a_slower_upstream_is_relearned_from_live_traffic() {
        for algorithm in [LimitAlgorithm::Gradient, LimitAlgorithm::Vegas] {
            let mut sim = Sim::new(
                LimitConfig {
                    initial_limit: 10,
                    ..config(algorithm)
                },
                Upstream::new(50, 10 * MS),
            );
            sim.run_windows(60);
            sim.upstream.service_ns = 20 * MS;
            sim.run_windows(30);
            let after = sim.run_windows(100).to_vec();
            assert!(within(&after, 35.0, 75.0), "{algorithm:?}: {:?}", sim.trace);
            assert_eq!(sim.limiter.baseline_ns(), Some(20 * MS), "{algorithm:?}");
        }
    }

    /// At equilibrium every request waits in the small standing queue the
    /// controllers keep on purpose. Re-learning from those requests would
    /// raise the baseline by that queue each period, and the limit with it
    /// (Envoy #11579's climb). Over 20 re-learn periods neither moves.
    #[test]
    fn relearning_does_not_ratchet_on_our_own_queue() {
        for algorithm in [LimitAlgorithm::Gradient, LimitAlgorithm::Vegas] {
            let mut sim = Sim::new(
                LimitConfig {
                    initial_limit: 10,
                    relearn_period: Duration::from_secs(2),
                    ..config(algorithm)
                },
                Upstream::new(50, 10 * MS),
            );
            sim.run_windows(40);
            let periods_before = sim.limiter.baseline.periods;
            let settled = sim.run_windows(400).to_vec();
            assert!(sim.limiter.baseline.periods >= periods_before + 15);
            assert!(within(&settled, 35.0, 75.0), "{algorithm:?}: {settled:?}");
            assert_eq!(sim.limiter.baseline_ns(), Some(10 * MS), "{algorithm:?}");
        }
    }

    /// Envoy #18152: stray refusals from re-measuring the minimum latency.
    /// Traffic steadily needs 30 requests in flight; across two minutes and
    /// some twenty re-learn periods the limit never once drops below 30,
    /// so no request would have been refused.
    #[test]
    fn relearning_never_dips_the_limit_under_steady_traffic() {
        for algorithm in ALGORITHMS {
            let mut sim = Sim::new(
                LimitConfig {
                    initial_limit: 40,
                    relearn_period: Duration::from_secs(5),
                    ..config(algorithm)
                },
                upstream_for(algorithm, 50),
            );
            sim.offered = Some(30);
            sim.run_for(120 * S);
            assert!(sim.limiter.baseline.periods >= 20);
            assert!(sim.lowest >= 30, "{algorithm:?}: lowest {}", sim.lowest);
        }
    }

    /// The other half of re-learning: when traffic is light enough to show
    /// the upstream without any queue, a slower upstream is learned within
    /// two periods, a faster one within the window.
    #[test]
    fn light_traffic_relearns_the_baseline_each_period() {
        let mut l = AdaptiveLimit::new(
            LimitConfig {
                initial_limit: 100,
                relearn_period: Duration::from_secs(10),
                relearn_jitter: 0.0,
                ..config(LimitAlgorithm::Gradient)
            },
            0,
            0,
        );
        let mut now = 0;
        window(&mut l, &mut now, 50, |_| ok(10 * MS, 20));
        assert_eq!(l.baseline_ns(), Some(10 * MS));
        // 10% slower: inside the buffer, so only the periods move it.
        while now < 19 * S {
            window(&mut l, &mut now, 50, |_| ok(11 * MS, 20));
        }
        assert_eq!(
            l.baseline_ns(),
            Some(10 * MS),
            "the old period still counts"
        );
        while now < 21 * S {
            window(&mut l, &mut now, 50, |_| ok(11 * MS, 20));
        }
        assert_eq!(l.baseline_ns(), Some(11 * MS));
        window(&mut l, &mut now, 50, |_| ok(9 * MS, 20));
        assert_eq!(l.baseline_ns(), Some(9 * MS));
    }

    #[test]
    fn relearn_periods_are_jittered_within_bounds() {
        let c = LimitConfig {
            relearn_period: Duration::from_secs(30),
            relearn_jitter: 0.2,
            ..LimitConfig::default()
        };
        let mut lengths = Vec::new();
        for seed in 0..50u64 {
            let mut b = Baseline::new(0, seed, &c);
            lengths.push(b.period_end);
            for _ in 0..4 {
                lengths.push(b.next_period(&c));
            }
        }
        assert!(lengths.iter().all(|&l| (24 * S..=36 * S).contains(&l)));
        let spread = lengths.iter().max().unwrap() - lengths.iter().min().unwrap();
        assert!(spread > 8 * S, "periods are spread: {spread}");
        // Another instance, another sequence.
        let first = |seed| Baseline::new(0, seed, &c).period_end;
        assert_ne!(first(1), first(2));
    }

    #[test]
    fn light_traffic_does_not_grow_the_limit() {
        for algorithm in ALGORITHMS {
            let mut l = AdaptiveLimit::new(
                LimitConfig {
                    initial_limit: 100,
                    ..config(algorithm)
                },
                0,
                0,
            );
            let mut now = 0;
            for _ in 0..50 {
                window(&mut l, &mut now, 50, |_| ok(10 * MS, 49));
            }
            assert_eq!(l.limit(), 100, "{algorithm:?}");
        }
    }

    #[test]
    fn a_busy_window_is_thinned_evenly() {
        let mut w = Window::new(0);
        for i in 0..5_000u64 {
            w.record(&ok(i, 1), false);
        }
        // 5,000 samples: stride 16 keeps 0, 16, …, 4,992.
        assert_eq!(w.stride, 16);
        let kept: Vec<u64> = w.kept.iter().map(|k| k.rtt_ns).collect();
        assert_eq!(kept, (0..5_000).step_by(16).collect::<Vec<_>>());
        let mut scratch = Vec::new();
        let s = w.summarize(0.5, &mut scratch).stats;
        assert_eq!(s.samples, 5_000);
        assert!((2_400..=2_600).contains(&s.sample_rtt_ns.unwrap()));
        assert!((4_900..5_000).contains(&s.p99_ns));
    }

    proptest! {
        /// Whatever the configuration and whatever arrives, the limit stays
        /// within its (normalized) bounds.
        #[test]
        fn bounds_always_hold(
            algorithm in 0usize..3,
            min in 0u32..50,
            max in 0u32..400,
            initial in 0u32..1_000,
            target_ms in prop::option::of(0u64..200),
            window_ms in 0u64..200,
            min_samples in 0u32..20,
            samples in prop::collection::vec(
                (0u64..50, 0u64..2_000, 0u32..2_000, any::<bool>()),
                1..600,
            ),
        ) {
            let mut l = AdaptiveLimit::new(
                LimitConfig {
                    algorithm: ALGORITHMS[algorithm],
                    min_limit: min,
                    max_limit: max,
                    initial_limit: initial,
                    latency_target: target_ms.map(Duration::from_millis),
                    sample_window: Duration::from_millis(window_ms),
                    min_window_samples: min_samples,
                    relearn_period: Duration::from_millis(500),
                    ..LimitConfig::default()
                },
                0,
                3,
            );
            let low = min.max(1);
            let high = max.max(low);
            let mut now = 0;
            for (dt, rtt_ms, in_flight, ok) in samples {
                now += dt * MS;
                let outcome = if ok { SampleOutcome::Success } else { SampleOutcome::Dropped };
                l.on_sample(now, Sample { rtt_ns: rtt_ms * MS, in_flight, outcome });
                prop_assert!((low..=high).contains(&l.limit()), "{} not in [{low}, {high}]", l.limit());
            }
        }

        /// If everything is dropped, the limit never rises, whatever the
        /// latencies and in-flight counts.
        #[test]
        fn drops_alone_never_raise_the_limit(
            algorithm in 0usize..3,
            initial in 1u32..500,
            samples in prop::collection::vec((0u64..50, 0u64..2_000, 0u32..1_000), 1..600),
        ) {
            let mut l = AdaptiveLimit::new(
                LimitConfig { initial_limit: initial, ..config(ALGORITHMS[algorithm]) },
                0,
                3,
            );
            let mut now = 0;
            let mut previous = l.limit();
            for (dt, rtt_ms, in_flight) in samples {
                now += dt * MS;
                l.on_sample(now, dropped(rtt_ms * MS, in_flight));
                prop_assert!(l.limit() <= previous);
                previous = l.limit();
            }
        }

        /// The percentile matches a naive one: sort, take the nearest rank.
        #[test]
        fn percentile_matches_sorting(values in prop::collection::vec(any::<u64>(), 1..300), p in 0.001f64..=1.0) {
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let rank = (p * sorted.len() as f64).ceil() as usize;
            let expected = sorted[rank.clamp(1, sorted.len()) - 1];
            let mut values = values;
            prop_assert_eq!(percentile_of(&mut values, p), Some(expected));
        }
    }
}
