//! Thresholds in k6's language, their parsing with positioned errors, and
//! their evaluation over the whole run and over every sliding window.
//!
//! ```text
//! METRIC: AGGREGATE OP VALUE [, abortOnFail] [, delayAbortEval=DURATION]
//! http_req_duration: p(99)<250          (ms; also avg, med, min, max, p(N))
//! http_req_failed: rate<0.01            (share of requests failed)
//! http_reqs: rate>100                   (requests per second; also count)
//! dropped_iterations: count<1           (requests not sent; also rate)
//! ```
//!
//! `OP` is one of `<`, `<=`, `>`, `>=`, `==`. With `abortOnFail` the run
//! stops as soon as the threshold fails, checked once a second on the run
//! so far (after `delayAbortEval`, default none) and on each closed window.

use crate::record::{Recorder, Span};
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Latency of answered requests, from their scheduled time, in ms.
    HttpReqDuration,
    /// Requests failed (status ≥ 400 or no answer) over requests finished.
    HttpReqFailed,
    /// Requests finished.
    HttpReqs,
    /// Requests not sent because too many were in flight.
    DroppedIterations,
}

impl Metric {
    /// Its name in the language.
    pub fn name(self) -> &'static str {
        match self {
            Metric::HttpReqDuration => "http_req_duration",
            Metric::HttpReqFailed => "http_req_failed",
            Metric::HttpReqs => "http_reqs",
            Metric::DroppedIterations => "dropped_iterations",
        }
    }

    const ALL: [Metric; 4] = [
        Metric::HttpReqDuration,
        Metric::HttpReqFailed,
        Metric::HttpReqs,
        Metric::DroppedIterations,
    ];

    fn allows(self, agg: Aggregate) -> bool {
        use Aggregate as A;
        match self {
            Metric::HttpReqDuration => {
                matches!(agg, A::Avg | A::Med | A::Min | A::Max | A::Percentile(_))
            }
            Metric::HttpReqFailed => agg == A::Rate,
            Metric::HttpReqs | Metric::DroppedIterations => matches!(agg, A::Rate | A::Count),
        }
    }

    fn aggregates(self) -> &'static str {
        match self {
            Metric::HttpReqDuration => "avg, med, min, max or p(N)",
            Metric::HttpReqFailed => "rate",
            Metric::HttpReqs | Metric::DroppedIterations => "rate or count",
        }
    }
}

/// How a metric is summed up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Avg,
    Med,
    Min,
    Max,
    /// `p(N)`, N in 0..=100.
    Percentile(f64),
    /// A share (`http_req_failed`) or per second (counts).
    Rate,
    Count,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => observed == limit,
        }
    }
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// The text it was parsed from (or built as).
    pub source: String,
    pub metric: Metric,
    pub aggregate: Aggregate,
    pub op: Op,
    pub value: f64,
    /// Stop the run as soon as it fails.
    pub abort_on_fail: bool,
    /// With `abort_on_fail`: do not judge the run so far before this.
    #[serde(serialize_with = "ser_secs")]
    pub delay_abort_eval: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A threshold that does not parse: what, where (a 1-based column) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("threshold `{source_text}`: column {column}: {message}\n  {source_text}\n  {caret}^")]
pub struct ParseError {
    pub source_text: String,
    pub column: usize,
    pub message: String,
    caret: String,
}

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }
    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> &'a str {
        let r = self.rest();
        let n = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(r.len());
        self.pos += n;
        &r[..n]
    }
    fn number(&mut self) -> Option<f64> {
        let r = self.rest();
        let n = r
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
            .unwrap_or(r.len());
        let v = r[..n].parse::<f64>().ok().filter(|v| v.is_finite())?;
        self.pos += n;
        Some(v)
    }
    fn error(&self, at: usize, message: impl Into<String>) -> ParseError {
        let column = self.src[..at].chars().count() + 1;
        ParseError {
            source_text: self.src.to_string(),
            column,
            message: message.into(),
            caret: " ".repeat(column - 1),
        }
    }
}

impl std::str::FromStr for Threshold {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse(s)
    }
}

/// Parses one threshold (see the module documentation for the language).
pub fn parse(text: &str) -> Result<Threshold, ParseError> {
    let src = text.trim();
    let mut c = Cursor { src, pos: 0 };
    let at = c.pos;
    let name = c.word();
    let metric = Metric::ALL
        .into_iter()
        .find(|m| m.name() == name)
        .ok_or_else(|| {
            let known: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
            c.error(
                at,
                format!(
                    "unknown metric `{name}`; expected one of {}",
                    known.join(", ")
                ),
            )
        })?;
    c.skip_ws();
    if !c.eat(":") {
        return Err(c.error(c.pos, "expected `:` after the metric"));
    }
    c.skip_ws();
    let at = c.pos;
    let aggregate = match c.word() {
        "avg" => Aggregate::Avg,
        "med" => Aggregate::Med,
        "min" => Aggregate::Min,
        "max" => Aggregate::Max,
        "rate" => Aggregate::Rate,
        "count" => Aggregate::Count,
        "p" => {
            if !c.eat("(") {
                return Err(c.error(c.pos, "expected `(` after `p`, as in p(99)"));
            }
            let n_at = c.pos;
            let n = c
                .number()
                .filter(|n| (0.0..=100.0).contains(n))
                .ok_or_else(|| c.error(n_at, "expected a percentile from 0 to 100"))?;
            if !c.eat(")") {
                return Err(c.error(c.pos, "expected `)`"));
            }
            Aggregate::Percentile(n)
        }
        w => {
            return Err(c.error(
                at,
                format!(
                    "unknown aggregate `{w}`; {} takes {}",
                    metric.name(),
                    metric.aggregates()
                ),
            ))
        }
    };
    if !metric.allows(aggregate) {
        return Err(c.error(
            at,
            format!("{} takes {}", metric.name(), metric.aggregates()),
        ));
    }
    c.skip_ws();
    let at = c.pos;
    let op = if c.eat("<=") {
        Op::Le
    } else if c.eat(">=") {
        Op::Ge
    } else if c.eat("==") {
        Op::Eq
    } else if c.eat("<") {
        Op::Lt
    } else if c.eat(">") {
        Op::Gt
    } else {
        return Err(c.error(at, "expected an operator: <, <=, >, >= or =="));
    };
    c.skip_ws();
    let at = c.pos;
    let value = c.number().ok_or_else(|| c.error(at, "expected a number"))?;
    if c.rest().starts_with(|ch: char| ch.is_alphabetic()) {
        let unit_at = c.pos;
        let unit = c.word();
        let unit_of = match metric {
            Metric::HttpReqDuration => "milliseconds",
            Metric::HttpReqFailed => "a share from 0 to 1",
            _ if aggregate == Aggregate::Rate => "per second",
            _ => "a count",
        };
        return Err(c.error(
            unit_at,
            format!("`{unit}`: the value is a plain number ({unit_of}), without a unit"),
        ));
    }
    let mut t = Threshold {
        source: src.to_string(),
        metric,
        aggregate,
        op,
        value,
        abort_on_fail: false,
        delay_abort_eval: Duration::ZERO,
    };
    loop {
        c.skip_ws();
        if c.rest().is_empty() {
            break;
        }
        if !c.eat(",") {
            return Err(c.error(c.pos, "expected `,` and an option, or the end"));
        }
        c.skip_ws();
        let at = c.pos;
        match c.word() {
            "abortOnFail" => t.abort_on_fail = true,
            "delayAbortEval" => {
                c.skip_ws();
                if !c.eat("=") {
                    return Err(c.error(
                        c.pos,
                        "expected `=` and a duration, as in delayAbortEval=10s",
                    ));
                }
                c.skip_ws();
                let d_at = c.pos;
                let end = c.rest().find(',').map_or(c.src.len(), |n| c.pos + n);
                let text = c.src[c.pos..end].trim();
                t.delay_abort_eval =
                    levee_config::parse_duration(text).map_err(|e| c.error(d_at, e))?;
                c.pos = end;
            }
            w => {
                return Err(c.error(
                    at,
                    format!(
                        "unknown option `{w}`; expected abortOnFail or delayAbortEval=DURATION"
                    ),
                ))
            }
        }
    }
    Ok(t)
}

impl Threshold {
    /// The value the threshold compares over `span`, which lasted `secs`
    /// seconds; `None` when the span has no data for it (no answered
    /// request for latency, no finished request for the failure rate).
    pub fn observe(&self, span: &Span, secs: f64) -> Option<f64> {
        let h = &span.latency;
        match (self.metric, self.aggregate) {
            (Metric::HttpReqDuration, _) if h.is_empty() => None,
            (Metric::HttpReqDuration, Aggregate::Avg) => Some(h.mean() / 1000.0),
            (Metric::HttpReqDuration, Aggregate::Med) => Some(span.quantile_ms(0.5)),
            (Metric::HttpReqDuration, Aggregate::Min) => Some(h.min() as f64 / 1000.0),
            (Metric::HttpReqDuration, Aggregate::Max) => Some(h.max() as f64 / 1000.0),
            (Metric::HttpReqDuration, Aggregate::Percentile(p)) => {
                Some(span.quantile_ms(p / 100.0))
            }
            // Refused by the parser.
            (Metric::HttpReqDuration, Aggregate::Rate | Aggregate::Count) => None,
            (Metric::HttpReqFailed, _) if span.completed == 0 => None,
            (Metric::HttpReqFailed, _) => Some(span.failed_rate()),
            (Metric::HttpReqs, Aggregate::Count) => Some(span.completed as f64),
            (Metric::HttpReqs, _) => (secs > 0.0).then(|| span.completed as f64 / secs),
            (Metric::DroppedIterations, Aggregate::Count) => Some(span.dropped as f64),
            (Metric::DroppedIterations, _) => (secs > 0.0).then(|| span.dropped as f64 / secs),
        }
    }

    /// Whether `observed` passes; no data passes only in windows (see
    /// [`Evaluator`]), never for the whole run.
    pub fn passes(&self, observed: f64) -> bool {
        self.op.holds(observed, self.value)
    }
}

/// The thresholds a Levee config's SLOs imply, each with where it came
/// from: a latency objective `p%` within `T` becomes
/// `http_req_duration: p(p)<T`, an availability objective `a` becomes
/// `http_req_failed: rate<(1−a)`.
pub fn from_slos(config: &levee_config::Config) -> Vec<(Threshold, String)> {
    let mut out = Vec::new();
    for slo in &config.slos {
        for o in &slo.objectives {
            let pct = f64::from(o.objective_ppm) / 10_000.0;
            let text = match (slo.sli, o.threshold) {
                (levee_config::Sli::Latency, Some(t)) => format!(
                    "http_req_duration: p({})<{}",
                    trim_float(pct),
                    trim_float(t.as_secs_f64() * 1000.0)
                ),
                (levee_config::Sli::Latency, None) | (levee_config::Sli::JobCompletion, _) => {
                    continue
                }
                (levee_config::Sli::Availability { .. }, _) => format!(
                    "http_req_failed: rate<{}",
                    trim_float(f64::from(1_000_000 - o.objective_ppm) / 1_000_000.0)
                ),
            };
            if let Ok(t) = parse(&text) {
                out.push((t, format!("SLO {} objective {}", slo.name, o.id)));
            }
        }
    }
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A window in which a threshold failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowFailure {
    /// Seconds from the start of the run: the window is `[from, to)`.
    pub from: u64,
    pub to: u64,
    pub observed: f64,
}

/// A threshold's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub threshold: Threshold,
    /// Over the whole run (`None`: no data, which fails).
    pub observed: Option<f64>,
    /// Whether the whole run passed.
    pub whole_run_passed: bool,
    /// The first sliding window that failed, if any.
    pub first_failed_window: Option<WindowFailure>,
    /// Windows that failed, of those judged.
    pub windows_failed: u64,
    pub windows_judged: u64,
    /// Whole run and every window passed.
    pub passed: bool,
}

/// Judges thresholds as a run goes on: each closed window once a second,
/// `abortOnFail` thresholds on the run so far, and everything at the end.
#[derive(Debug, Clone)]
pub struct Evaluator {
    thresholds: Vec<Threshold>,
    window: Duration,
    first: Vec<Option<WindowFailure>>,
    failed: Vec<u64>,
    judged: Vec<u64>,
}

impl Evaluator {
    /// `window`: every window of this length (whole seconds) must pass too
    /// (zero: only the whole run).
    pub fn new(thresholds: Vec<Threshold>, window: Duration) -> Self {
        let n = thresholds.len();
        Self {
            thresholds,
            window,
            first: vec![None; n],
            failed: vec![0; n],
            judged: vec![0; n],
        }
    }

    /// The thresholds.
    pub fn thresholds(&self) -> &[Threshold] {
        &self.thresholds
    }

    /// The window length in whole seconds (0: none).
    pub fn window_secs(&self) -> usize {
        self.window.as_secs() as usize
    }

    /// After each [`Recorder::roll`]: judges the window that just closed;
    /// the first `abortOnFail` threshold failing now, window or run so far
    /// (`elapsed` long).
    pub fn on_second(&mut self, rec: &Recorder, elapsed: Duration) -> Option<&Threshold> {
        let mut abort = None;
        if let Some(span) = rec.window() {
            let to = rec.series().len() as u64;
            let secs = self.window_secs() as f64;
            for (i, t) in self.thresholds.iter().enumerate() {
                // A window with no data for a threshold is not judged.
                let Some(observed) = t.observe(&span, secs) else {
                    continue;
                };
                self.judged[i] += 1;
                if !t.passes(observed) {
                    self.failed[i] += 1;
                    if self.first[i].is_none() {
                        self.first[i] = Some(WindowFailure {
                            from: to.saturating_sub(secs as u64),
                            to,
                            observed,
                        });
                    }
                    if t.abort_on_fail {
                        abort = abort.or(Some(i));
                    }
                }
            }
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            if t.abort_on_fail && elapsed >= t.delay_abort_eval {
                let secs = elapsed.as_secs_f64();
                if let Some(observed) = t.observe(rec.total(), secs) {
                    if !t.passes(observed) {
                        abort = abort.or(Some(i));
                    }
                }
            }
        }
        abort.map(|i| &self.thresholds[i])
    }

    /// Every threshold's verdict on the run, `elapsed` long, and its windows.
    pub fn finish(&self, rec: &Recorder, elapsed: Duration) -> Vec<Verdict> {
        let secs = elapsed.as_secs_f64();
        self.thresholds
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let observed = t.observe(rec.total(), secs);
                let whole = observed.is_some_and(|o| t.passes(o));
                Verdict {
                    threshold: t.clone(),
                    observed,
                    whole_run_passed: whole,
                    first_failed_window: self.first[i].clone(),
                    windows_failed: self.failed[i],
                    windows_judged: self.judged[i],
                    passed: whole && self.failed[i] == 0,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;

    #[test]
    fn parses_k6_expressions() {
        let t = parse("http_req_duration: p(99)<250").unwrap();
        assert_eq!(t.metric, Metric::HttpReqDuration);
        assert_eq!(t.aggregate, Aggregate::Percentile(99.0));
        assert_eq!((t.op, t.value), (Op::Lt, 250.0));
        assert!(!t.abort_on_fail);
        let t = parse(" http_req_failed:rate<=0.01 , abortOnFail, delayAbortEval=10s ").unwrap();
        assert_eq!(
            (t.aggregate, t.op, t.value),
            (Aggregate::Rate, Op::Le, 0.01)
        );
        assert!(t.abort_on_fail);
        assert_eq!(t.delay_abort_eval, Duration::from_secs(10));
        assert_eq!(
            t.source,
            "http_req_failed:rate<=0.01 , abortOnFail, delayAbortEval=10s"
        );
        for (s, agg, op) in [
            ("http_req_duration: avg>=1", Aggregate::Avg, Op::Ge),
            ("http_req_duration: med==2", Aggregate::Med, Op::Eq),
            ("http_req_duration: min>3", Aggregate::Min, Op::Gt),
            ("http_req_duration: max<4.5", Aggregate::Max, Op::Lt),
            (
                "http_req_duration: p(99.9)<4",
                Aggregate::Percentile(99.9),
                Op::Lt,
            ),
            ("http_reqs: rate>100", Aggregate::Rate, Op::Gt),
            ("http_reqs: count>=1000", Aggregate::Count, Op::Ge),
            ("dropped_iterations: count<1", Aggregate::Count, Op::Lt),
        ] {
            let t = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((t.aggregate, t.op), (agg, op), "{s}");
        }
    }

    #[test]
    fn errors_name_the_threshold_and_the_column() {
        let cases = [
            (
                "http_req_durations: p(99)<1",
                1,
                "unknown metric `http_req_durations`",
            ),
            ("http_req_duration p(99)<1", 19, "expected `:`"),
            ("http_req_duration: q(99)<1", 20, "unknown aggregate `q`"),
            ("http_req_duration: p99<1", 20, "unknown aggregate `p99`"),
            (
                "http_req_duration: p(101)<1",
                22,
                "percentile from 0 to 100",
            ),
            ("http_req_duration: p(99<1", 24, "expected `)`"),
            (
                "http_req_duration: rate<1",
                20,
                "http_req_duration takes avg, med, min, max or p(N)",
            ),
            ("http_req_failed: p(99)<1", 18, "http_req_failed takes rate"),
            ("http_req_duration: p(99)=<1", 25, "expected an operator"),
            ("http_req_duration: p(99)<<1", 26, "expected a number"),
            (
                "http_req_duration: p(99)<250ms",
                29,
                "`ms`: the value is a plain number (milliseconds)",
            ),
            ("http_req_duration: p(99)<1 abortOnFail", 28, "expected `,`"),
            (
                "http_req_failed: rate<0.1, abortOnFial",
                28,
                "unknown option `abortOnFial`",
            ),
            (
                "http_req_failed: rate<0.1, delayAbortEval=ten",
                43,
                "not a duration",
            ),
        ];
        for (s, col, msg) in cases {
            let e = parse(s).unwrap_err();
            assert_eq!(e.column, col, "{s}: {e}");
            assert!(e.message.contains(msg), "{s}: {e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("threshold `{s}`: column {col}: ")),
                "{shown}"
            );
            // The caret sits under the column.
            let caret = shown.lines().last().unwrap();
            assert_eq!(caret.find('^'), Some(col + 1), "{shown}");
        }
    }

    fn rec_with(latencies_ms: &[(u64, u16)], window: usize) -> Recorder {
        let t = levee_core::time::now();
        let mut r = Recorder::new(t, window);
        for (ms, status) in latencies_ms {
            r.finished(t, t + Duration::from_millis(*ms), Outcome::Status(*status));
        }
        r
    }

    #[tokio::test(start_paused = true)]
    async fn evaluates_aggregates_over_the_run() {
        let lat: Vec<(u64, u16)> = (1..=100).map(|ms| (ms, 200)).collect();
        let r = rec_with(&lat, 0);
        let span = r.total();
        let at = |s: &str| parse(s).unwrap().observe(span, 10.0).unwrap();
        assert!((at("http_req_duration: p(99)<1") - 99.0).abs() < 0.1);
        assert!((at("http_req_duration: med<1") - 50.0).abs() < 0.1);
        assert!((at("http_req_duration: avg<1") - 50.5).abs() < 0.1);
        // HDR keeps 3 significant digits.
        assert!((at("http_req_duration: max<1") - 100.0).abs() < 0.1);
        assert!((at("http_req_duration: min<1") - 1.0).abs() < 0.01);
        assert_eq!(at("http_reqs: rate>1"), 10.0);
        assert_eq!(at("http_reqs: count>1"), 100.0);
        assert_eq!(at("http_req_failed: rate<1"), 0.0);
        let ev = Evaluator::new(
            vec![
                parse("http_req_duration: p(99)<250").unwrap(),
                parse("http_req_duration: p(99)<50").unwrap(),
            ],
            Duration::ZERO,
        );
        let v = ev.finish(&r, Duration::from_secs(10));
        assert!(v[0].passed && !v[1].passed);
        assert!(v[1].observed.unwrap() > 98.0);
    }

    #[tokio::test(start_paused = true)]
    async fn no_data_fails_the_run_but_skips_a_window() {
        let r = rec_with(&[], 1);
        let mut ev = Evaluator::new(
            vec![parse("http_req_duration: p(99)<250").unwrap()],
            Duration::from_secs(1),
        );
        let mut r = r;
        r.roll();
        assert!(ev.on_second(&r, Duration::from_secs(1)).is_none());
        let v = ev.finish(&r, Duration::from_secs(1));
        assert_eq!(v[0].observed, None);
        assert!(!v[0].passed);
        assert_eq!(v[0].windows_judged, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_window_fails_a_run_that_passes_overall() {
        // 10 s of fast answers, one second half errors in the middle: the
        // whole run stays under 10% failed (5%), the 2 s windows around it
        // do not (25%).
        let t = levee_core::time::now();
        let mut r = Recorder::new(t, 2);
        let mut ev = Evaluator::new(
            vec![parse("http_req_failed: rate<0.1").unwrap()],
            Duration::from_secs(2),
        );
        let mut aborts = 0;
        for sec in 0..10u64 {
            for j in 0..10 {
                let status = if sec == 5 && j < 5 { 500 } else { 200 };
                r.finished(t, t + Duration::from_millis(5), Outcome::Status(status));
            }
            r.roll();
            aborts += usize::from(ev.on_second(&r, Duration::from_secs(sec + 1)).is_some());
        }
        assert_eq!(aborts, 0, "not abortOnFail");
        let v = &ev.finish(&r, Duration::from_secs(10))[0];
        assert!(v.whole_run_passed, "{v:?}");
        assert!(!v.passed);
        assert_eq!(v.windows_judged, 9);
        assert_eq!(v.windows_failed, 2);
        let w = v.first_failed_window.as_ref().unwrap();
        assert_eq!((w.from, w.to), (4, 6));
        assert!((w.observed - 0.25).abs() < 1e-12);
    }

    #[tokio::test(start_paused = true)]
    async fn abort_on_fail_waits_for_its_delay() {
        let t = levee_core::time::now();
        let mut r = Recorder::new(t, 0);
        let mut ev = Evaluator::new(
            vec![parse("http_req_failed: rate<0.5, abortOnFail, delayAbortEval=3s").unwrap()],
            Duration::ZERO,
        );
        r.finished(t, t, Outcome::Status(500));
        r.roll();
        assert!(
            ev.on_second(&r, Duration::from_secs(1)).is_none(),
            "before the delay"
        );
        r.roll();
        r.roll();
        let hit = ev.on_second(&r, Duration::from_secs(3)).cloned();
        assert_eq!(hit.unwrap().metric, Metric::HttpReqFailed);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = parse(&s);
        }

        #[test]
        fn parsing_never_panics_near_valid_text(
            cut in 0usize..60,
            insert in "[ -~é,=()<>]{0,3}",
        ) {
            let valid = "http_req_failed: rate<0.01, abortOnFail, delayAbortEval=1s";
            let cut = cut.min(valid.len());
            let text = format!("{}{insert}{}", &valid[..cut], &valid[cut..]);
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1);
            }
        }
    }

    #[test]
    fn slos_become_thresholds() {
        let cfg = levee_config::load_str(
            r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[[clusters]]
name = "c"
endpoints = ["127.0.0.1:1"]
[[routes]]
name = "r"
cluster = "c"
[[slos]]
name = "avail"
sli = "availability"
route = "r"
objective = "99.9%"
[[slos]]
name = "lat"
sli = "latency"
route = "r"
objectives = [{ threshold = "300ms", objective = "99%" }, { threshold = "1s", objective = "99.9%" }]
"#,
            levee_config::Format::Toml,
            "slo.toml",
        )
        .unwrap();
        let got: Vec<String> = from_slos(&cfg).into_iter().map(|(t, _)| t.source).collect();
        assert_eq!(
            got,
            [
                "http_req_failed: rate<0.001",
                "http_req_duration: p(99)<300",
                "http_req_duration: p(99.9)<1000",
            ]
        );
    }
}
