//! The arrival schedule: when each request of a run is due, as a plain
//! value with no clock and no I/O.
//!
//! The open model ([`Schedule`]) gives the exact send time of request `i`
//! from the start of the run, in closed form: the rate is integrated from
//! the start and the integral inverted, so nothing drifts however long the
//! run. A constant rate `r` sends request `i` at `i / r`; a linear ramp
//! from `r0` to `r1` over `d` has sent `r0·t + (r1 − r0)·t²/(2d)` requests
//! by `t`, which is solved for `t` (k6's `ramping-arrival-rate`). Request
//! `i` is due when `i` requests' worth of rate has passed, so request 0
//! goes out at the start and the number due in any window is the integral
//! of the rate over it, give or take one.
//!
//! The closed model ([`Model::Closed`]) is a fixed number of virtual users
//! sending back to back; it has no schedule.

use std::time::Duration;

/// One stage of a ramping schedule: move linearly to `target` requests per
/// second over `duration` (a stage with the rate it starts at holds it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// The rate at the end of the stage, in requests per second.
    pub target: f64,
    /// How long the stage lasts.
    pub duration: Duration,
}

/// How a run sends its requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// Requests at scheduled times, whether or not earlier ones answered.
    Open(Schedule),
    /// `vus` virtual users, each sending its next request when the last
    /// one answered, for `duration`.
    Closed {
        /// The number of virtual users.
        vus: u32,
        /// How long they send.
        duration: Duration,
    },
}

impl Model {
    /// How long requests are sent for.
    pub fn duration(&self) -> Duration {
        match self {
            Model::Open(s) => s.duration(),
            Model::Closed { duration, .. } => *duration,
        }
    }
}

/// Why a schedule cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// A rate that is negative, not finite, or too high.
    #[error("rate {0} is not a rate: give a number of requests per second from 0 to 10,000,000")]
    Rate(f64),
    /// A schedule that never sends.
    #[error("the schedule sends no request (every rate is 0 or every stage is empty)")]
    Empty,
    /// No stages.
    #[error("a ramping schedule needs at least one stage")]
    NoStages,
}

/// The highest rate accepted, in requests per second.
pub const MAX_RATE: f64 = 10_000_000.0;

/// One linear piece of the rate curve.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    /// Seconds from the start of the run to the start of this piece.
    start: f64,
    /// Its length in seconds.
    length: f64,
    /// Rate at its start and end.
    from: f64,
    to: f64,
    /// Requests due before it starts (the integral so far).
    before: f64,
}

impl Segment {
    fn count(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.length
    }

    /// Seconds into the piece at which `n` of its requests are due (the
    /// inverse of `from·t + (to − from)·t²/(2·length)`), in the form that
    /// stays exact when the ramp is flat or starts at zero.
    fn invert(&self, n: f64) -> f64 {
        if n <= 0.0 {
            return 0.0;
        }
        let a = (self.to - self.from) / (2.0 * self.length);
        let disc = (self.from * self.from + 4.0 * a * n).max(0.0);
        let denom = self.from + disc.sqrt();
        if denom <= 0.0 {
            return self.length;
        }
        (2.0 * n / denom).min(self.length)
    }
}

/// An open model's arrival schedule: piecewise-linear rate over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// The integral of the rate over the whole schedule.
    total: f64,
    duration: f64,
}

impl Schedule {
    /// `rate` requests per second for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Result<Self, ScheduleError> {
        Self::ramping(
            rate,
            &[Stage {
                target: rate,
                duration,
            }],
        )
    }

    /// Starting at `start_rate`, each stage ramps linearly to its target
    /// over its duration (k6's `ramping-arrival-rate` with `startRate`).
    pub fn ramping(start_rate: f64, stages: &[Stage]) -> Result<Self, ScheduleError> {
        if stages.is_empty() {
            return Err(ScheduleError::NoStages);
        }
        let check = |r: f64| {
            if r.is_finite() && (0.0..=MAX_RATE).contains(&r) {
                Ok(r)
            } else {
                Err(ScheduleError::Rate(r))
            }
        };
        let mut from = check(start_rate)?;
        let (mut start, mut before) = (0.0, 0.0);
        let mut segments = Vec::with_capacity(stages.len());
        for stage in stages {
            let to = check(stage.target)?;
            let length = stage.duration.as_secs_f64();
            if length > 0.0 {
                let seg = Segment {
                    start,
                    length,
                    from,
                    to,
                    before,
                };
                before += seg.count();
                start += length;
                segments.push(seg);
            }
            from = to;
        }
        // 0.1/s for 30 s is 3.0000000000000004 in floating point: a
        // total within rounding of a whole number is that number, or the
        // schedule would send one request too many.
        if (before - before.round()).abs() <= 1e-9 * before.max(1.0) {
            before = before.round();
        }
        if before < 1.0 {
            return Err(ScheduleError::Empty);
        }
        Ok(Self {
            segments,
            total: before,
            duration: start,
        })
    }

    /// How long the schedule lasts.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    /// How many requests the schedule sends: every `i` with
    /// `i < ∫rate`, so `⌈∫rate⌉`.
    pub fn len(&self) -> u64 {
        self.total.ceil() as u64
    }

    /// Whether it sends nothing (never true of a built schedule).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of requests due in the first `t` of the run (the
    /// integral of the rate from 0 to `t`).
    pub fn expected(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        let mut due = 0.0;
        for s in &self.segments {
            if t <= s.start {
                break;
            }
            let x = (t - s.start).min(s.length);
            due = s.before + s.from * x + (s.to - s.from) * x * x / (2.0 * s.length);
        }
        due
    }

    /// The rate at `t`, in requests per second.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        self.segments
            .iter()
            .find(|s| t < s.start + s.length)
            .map_or(0.0, |s| s.from + (s.to - s.from) * (t - s.start) / s.length)
    }

    /// When request `i` (from 0) is due, from the start of the run; `None`
    /// past the end of the schedule.
    pub fn offset(&self, i: u64) -> Option<Duration> {
        let n = i as f64;
        if n >= self.total {
            return None;
        }
        // The piece in which the integral passes n: the first whose end
        // lies beyond it (zero-rate pieces contain no request).
        let seg = self.segments.iter().find(|s| s.before + s.count() > n)?;
        let secs = seg.start + seg.invert(n - seg.before);
        Some(Duration::from_secs_f64(secs.min(self.duration)))
    }
}

/// Parses `--stages`: `RATE:DURATION` pairs separated by commas
/// (`100:10s,500:20s`), durations as in the config (`500ms`, `1m30s`).
pub fn parse_stages(s: &str) -> Result<Vec<Stage>, String> {
    s.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(n, part)| {
            let (rate, dur) = part.split_once(':').ok_or_else(|| {
                format!(
                    "stage {} `{part}` is not RATE:DURATION (e.g. `100:10s`)",
                    n + 1
                )
            })?;
            let target: f64 = rate
                .trim()
                .parse()
                .map_err(|_| format!("stage {}: `{rate}` is not a rate", n + 1))?;
            let duration =
                levee_config::parse_duration(dur).map_err(|e| format!("stage {}: {e}", n + 1))?;
            Ok(Stage { target, duration })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn constant_rate_is_i_over_rate() {
        let s = Schedule::constant(200.0, secs(2.0)).unwrap();
        assert_eq!(s.len(), 400);
        for i in [0u64, 1, 7, 199, 200, 399] {
            let want = i as f64 / 200.0;
            let got = s.offset(i).unwrap().as_secs_f64();
            assert!((got - want).abs() < 1e-9, "{i}: {got} vs {want}");
        }
        assert_eq!(s.offset(400), None);
    }

    #[test]
    fn rounding_adds_no_request() {
        assert_eq!(Schedule::constant(0.1, secs(30.0)).unwrap().len(), 3);
        assert_eq!(Schedule::constant(0.3, secs(10.0)).unwrap().len(), 3);
        assert_eq!(Schedule::constant(2.5, secs(1.0)).unwrap().len(), 3);
    }

    #[test]
    fn no_drift_after_millions() {
        let s = Schedule::constant(10_000.0, secs(3600.0)).unwrap();
        let i = 35_999_999;
        let got = s.offset(i).unwrap().as_secs_f64();
        assert!((got - 3599.9999).abs() < 1e-6, "{got}");
    }

    #[test]
    fn linear_ramp_inverts_the_integral() {
        // 0 → 100/s over 10 s: N(t) = 5 t², so request i is due at sqrt(i/5).
        let s = Schedule::ramping(
            0.0,
            &[Stage {
                target: 100.0,
                duration: secs(10.0),
            }],
        )
        .unwrap();
        assert_eq!(s.len(), 500);
        for i in [0u64, 1, 5, 20, 125, 499] {
            let want = (i as f64 / 5.0).sqrt();
            let got = s.offset(i).unwrap().as_secs_f64();
            assert!((got - want).abs() < 1e-9, "{i}: {got} vs {want}");
        }
        assert!((s.rate_at(secs(5.0)) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn stages_chain_and_zero_rate_pieces_send_nothing() {
        let s = Schedule::ramping(
            10.0,
            &[
                Stage {
                    target: 10.0,
                    duration: secs(1.0),
                },
                Stage {
                    target: 0.0,
                    duration: secs(0.0),
                },
                Stage {
                    target: 0.0,
                    duration: secs(5.0),
                },
                Stage {
                    target: 10.0,
                    duration: secs(1.0),
                },
            ],
        )
        .unwrap();
        // 10 in the first second; the drop to 0 is instant; nothing for
        // 5 s; 5 during the last ramp from 0 to 10, the first as it starts.
        assert_eq!(s.len(), 15);
        assert!(s.offset(9).unwrap() < secs(1.0));
        let tenth = s.offset(10).unwrap().as_secs_f64();
        assert!((tenth - 6.0).abs() < 1e-9, "{tenth}");
        assert!(s.offset(14).unwrap() < secs(7.0));
    }

    #[test]
    fn bad_rates_and_empty_schedules_are_refused() {
        assert_eq!(
            Schedule::constant(-1.0, secs(1.0)),
            Err(ScheduleError::Rate(-1.0))
        );
        assert!(Schedule::constant(f64::NAN, secs(1.0)).is_err());
        assert_eq!(
            Schedule::constant(0.0, secs(10.0)),
            Err(ScheduleError::Empty)
        );
        assert_eq!(Schedule::ramping(1.0, &[]), Err(ScheduleError::NoStages));
    }

    #[test]
    fn stages_flag_parses() {
        let st = parse_stages("100:10s, 500:1m").unwrap();
        assert_eq!(st[1].target, 500.0);
        assert_eq!(st[1].duration, secs(60.0));
        assert!(parse_stages("100").unwrap_err().contains("RATE:DURATION"));
        assert!(parse_stages("x:1s").unwrap_err().contains("not a rate"));
        assert!(parse_stages("1:1q").unwrap_err().contains("unit"));
    }

    fn stages() -> impl Strategy<Value = (f64, Vec<Stage>)> {
        let stage = (0.0f64..2000.0, 0u64..5000).prop_map(|(target, ms)| Stage {
            target,
            duration: Duration::from_millis(ms),
        });
        (1.0f64..2000.0, proptest::collection::vec(stage, 1..5))
    }

    proptest! {
        #[test]
        fn times_are_monotone_and_windows_hold_the_integral(
            (start, stages) in stages(),
            a in 0.0f64..1.0,
            b in 0.0f64..1.0,
        ) {
            let Ok(s) = Schedule::ramping(start, &stages) else { return Ok(()) };
            let n = s.len().min(20_000);
            let times: Vec<Duration> = (0..n).map(|i| s.offset(i).unwrap()).collect();
            prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(times.iter().all(|t| *t <= s.duration()));
            // Any window [lo, hi): the requests due in it are its integral ± 1.
            if n == s.len() {
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let lo = s.duration().mul_f64(lo);
                let hi = s.duration().mul_f64(hi);
                let count = times.iter().filter(|t| **t >= lo && **t < hi).count() as f64;
                let integral = s.expected(hi) - s.expected(lo);
                prop_assert!((count - integral).abs() <= 1.0 + 1e-6,
                    "count {} integral {} in {:?}..{:?}", count, integral, lo, hi);
            }
        }
    }
}
