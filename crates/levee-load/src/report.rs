//! What a run shows: the summary table, the JSON document (`--out
//! json=FILE`: everything, the per-second series included), JUnit XML
//! (`--out junit=FILE`: one test case per threshold) and the progress line.

use crate::record::LATE_AFTER;
use crate::run::{Progress, RunResult};
use crate::schedule::Model;
use crate::threshold::{Aggregate, Metric, Verdict};
use serde_json::json;
use std::fmt::Write as _;
use std::time::Duration;

/// The quantiles the summary and the JSON show.
const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
];

/// Requests per second the schedule asked for (open model only).
pub fn requested_rate(r: &RunResult) -> Option<f64> {
    match &r.model {
        Model::Open(s) => Some(s.len() as f64 / s.duration().as_secs_f64().max(1e-9)),
        Model::Closed { .. } => None,
    }
}

/// Requests finished per second of sending.
pub fn achieved_rate(r: &RunResult) -> f64 {
    r.recorder.total().completed as f64 / r.sending.as_secs_f64().max(1e-9)
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.1}ms")
    } else {
        format!("{v:.2}ms")
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The observed value as the threshold's language states it.
fn observed(v: &Verdict, value: f64) -> String {
    let t = &v.threshold;
    let agg = match t.aggregate {
        Aggregate::Avg => "avg".to_string(),
        Aggregate::Med => "med".to_string(),
        Aggregate::Min => "min".to_string(),
        Aggregate::Max => "max".to_string(),
        Aggregate::Percentile(p) => format!("p({p})"),
        Aggregate::Rate => "rate".to_string(),
        Aggregate::Count => "count".to_string(),
    };
    let shown = match (t.metric, t.aggregate) {
        (Metric::HttpReqDuration, _) => ms(value),
        (Metric::HttpReqFailed, _) => format!("{value:.4}"),
        (_, Aggregate::Count) => format!("{value:.0}"),
        _ => format!("{value:.1}/s"),
    };
    format!("{agg}={shown}")
}

/// Why a verdict failed, in words; empty when it passed.
fn failure_text(v: &Verdict, window_secs: usize) -> String {
    let mut parts = Vec::new();
    match v.observed {
        None => parts.push("no data over the whole run".to_string()),
        Some(o) if !v.whole_run_passed => parts.push(format!("whole run {}", observed(v, o))),
        Some(_) => {}
    }
    if let Some(w) = &v.first_failed_window {
        parts.push(format!(
            "{} of {} {}s windows failed, first {}s..{}s with {}",
            v.windows_failed,
            v.windows_judged,
            window_secs,
            w.from,
            w.to,
            observed(v, w.observed)
        ));
    }
    parts.join("; ")
}

/// The summary table printed at the end of a run; `notes` are printed
/// under the thresholds (where they came from, e.g. `--slo`).
pub fn summary(r: &RunResult, notes: &[String]) -> String {
    let rec = &r.recorder;
    let t = rec.total();
    let mut s = String::new();
    let model = match &r.model {
        Model::Open(sch) => format!(
            "open model, {} requests scheduled over {}",
            sch.len(),
            secs(sch.duration())
        ),
        Model::Closed { vus, duration } => {
            format!("closed model, {vus} virtual users for {}", secs(*duration))
        }
    };
    let _ = writeln!(s, "levee load: {model}");
    if let Some(by) = &r.aborted_by {
        let _ = writeln!(
            s,
            "  ABORTED after {} by `{by}` (abortOnFail)",
            secs(r.sending)
        );
    }
    if r.interrupted {
        let _ = writeln!(s, "  INTERRUPTED after {}", secs(r.sending));
    }
    let rate = match requested_rate(r) {
        Some(q) => format!("{:.1}/s achieved of {q:.1}/s requested", achieved_rate(r)),
        None => format!("{:.1}/s achieved", achieved_rate(r)),
    };
    let _ = writeln!(
        s,
        "  requests   {} sent, {} finished in {}: {rate}",
        rec.sent_count(),
        t.completed,
        secs(r.elapsed)
    );
    let lat: Vec<String> = QUANTILES
        .iter()
        .map(|(n, q)| format!("{n} {}", ms(t.quantile_ms(*q))))
        .collect();
    let _ = writeln!(
        s,
        "  latency    {}  (from each request's scheduled send time)",
        lat.join("  ")
    );
    let _ = writeln!(s, "  ok         {}", t.ok);
    let _ = writeln!(
        s,
        "  failed     {} ({:.2}%)",
        t.failed,
        t.failed_rate() * 100.0
    );
    for (kind, n) in rec.failures() {
        let _ = writeln!(s, "               {kind}: {n}");
    }
    let _ = writeln!(
        s,
        "  late       {} (sent more than {}ms after their scheduled time)",
        rec.late(),
        LATE_AFTER.as_millis()
    );
    let _ = writeln!(
        s,
        "  dropped    {} (not sent: max in flight reached)",
        t.dropped
    );
    if !r.verdicts.is_empty() {
        let window = if r.window_secs > 0 {
            format!(" (whole run and every {}s window)", r.window_secs)
        } else {
            String::new()
        };
        let _ = writeln!(s, "thresholds{window}");
        for v in &r.verdicts {
            let mark = if v.passed { "✓" } else { "✗" };
            let value = v.observed.map_or("no data".to_string(), |o| observed(v, o));
            let _ = write!(s, "  {mark} {}  {value}", v.threshold);
            if !v.passed {
                let _ = write!(s, "  FAILED: {}", failure_text(v, r.window_secs));
            }
            s.push('\n');
        }
    }
    for note in notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}

/// Every number of the run, the per-second series included.
pub fn json(r: &RunResult) -> serde_json::Value {
    let rec = &r.recorder;
    let t = rec.total();
    let latency: serde_json::Map<String, serde_json::Value> = QUANTILES
        .iter()
        .map(|(n, q)| (format!("{n}_ms"), json!(t.quantile_ms(*q))))
        .chain([
            ("min_ms".to_string(), json!(t.latency.min() as f64 / 1000.0)),
            ("mean_ms".to_string(), json!(t.latency.mean() / 1000.0)),
            ("count".to_string(), json!(t.latency.len())),
        ])
        .collect();
    let model = match &r.model {
        Model::Open(s) => json!({
            "kind": "open",
            "scheduled": s.len(),
            "duration_s": s.duration().as_secs_f64(),
        }),
        Model::Closed { vus, duration } => json!({
            "kind": "closed",
            "vus": vus,
            "duration_s": duration.as_secs_f64(),
        }),
    };
    json!({
        "model": model,
        "requested_rate": requested_rate(r),
        "achieved_rate": achieved_rate(r),
        "elapsed_s": r.elapsed.as_secs_f64(),
        "sending_s": r.sending.as_secs_f64(),
        "aborted_by": r.aborted_by,
        "interrupted": r.interrupted,
        "requests": {
            "sent": rec.sent_count(),
            "completed": t.completed,
            "ok": t.ok,
            "failed": t.failed,
            "failed_rate": t.failed_rate(),
            "late": rec.late(),
            "late_after_ms": LATE_AFTER.as_secs_f64() * 1000.0,
            "dropped": t.dropped,
        },
        "failures": rec.failures(),
        "latency": latency,
        "threshold_window_s": r.window_secs,
        "thresholds": r.verdicts,
        "passed": r.verdicts.iter().all(|v| v.passed),
        "series": rec.series(),
    })
}

/// JUnit XML: one test suite, one test case per threshold, failing ones
/// with a `<failure>` saying why.
pub fn junit(r: &RunResult) -> String {
    let failures = r.verdicts.iter().filter(|v| !v.passed).count();
    let time = format!("{:.3}", r.elapsed.as_secs_f64());
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"levee load\" tests=\"{}\" failures=\"{failures}\" time=\"{time}\">",
        r.verdicts.len()
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"thresholds\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time}\">",
        r.verdicts.len()
    );
    for v in &r.verdicts {
        let name = levee_core::markup::escape(&v.threshold.source);
        let class = format!("levee.load.{}", v.threshold.metric.name());
        if v.passed {
            let _ = writeln!(
                s,
                "    <testcase classname=\"{class}\" name=\"{name}\" time=\"{time}\"/>"
            );
        } else {
            let why = levee_core::markup::escape(&failure_text(v, r.window_secs));
            let _ = writeln!(
                s,
                "    <testcase classname=\"{class}\" name=\"{name}\" time=\"{time}\">\n      <failure message=\"{why}\" type=\"threshold\">{why}</failure>\n    </testcase>"
            );
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

/// One line of progress.
pub fn progress_line(p: &Progress) -> String {
    format!(
        "{:>5.1}s/{:.0}s  sent {}  done {}  failed {}  dropped {}  late {}  p99 {}",
        p.elapsed.as_secs_f64(),
        p.duration.as_secs_f64(),
        p.sent,
        p.completed,
        p.failed,
        p.dropped,
        p.late,
        ms(p.p99_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Outcome, Recorder};
    use crate::schedule::Schedule;
    use crate::threshold::{parse, Evaluator};

    fn result() -> RunResult {
        let t = levee_core::time::now();
        let mut rec = Recorder::new(t, 0);
        for i in 0..10u64 {
            rec.sent(t, t);
            let status = if i == 0 { 503 } else { 200 };
            rec.finished(
                t,
                t + Duration::from_millis(10 + i),
                Outcome::Status(status),
            );
        }
        rec.roll();
        let ev = Evaluator::new(
            vec![
                parse("http_req_duration: p(99)<250").unwrap(),
                parse("http_req_failed: rate<0.01").unwrap(),
            ],
            Duration::ZERO,
        );
        let verdicts = ev.finish(&rec, Duration::from_secs(1));
        RunResult {
            recorder: rec,
            verdicts,
            elapsed: Duration::from_secs(1),
            sending: Duration::from_secs(1),
            aborted_by: None,
            interrupted: false,
            model: Model::Open(Schedule::constant(10.0, Duration::from_secs(1)).unwrap()),
            window_secs: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn json_has_everything() {
        let v = json(&result());
        assert_eq!(v["requests"]["completed"], 10);
        assert_eq!(v["requests"]["failed"], 1);
        assert_eq!(v["failures"]["http 503"], 1);
        assert_eq!(v["requested_rate"], 10.0);
        assert_eq!(v["passed"], false);
        assert_eq!(v["thresholds"][0]["passed"], true);
        assert_eq!(v["thresholds"][1]["threshold"]["metric"], "http_req_failed");
        assert_eq!(v["thresholds"][1]["threshold"]["op"], "<");
        assert_eq!(v["series"][0]["completed"], 10);
        assert!(v["latency"]["p99_ms"].as_f64().unwrap() >= 19.0);
    }

    #[tokio::test(start_paused = true)]
    async fn junit_has_one_case_per_threshold() {
        let x = junit(&result());
        assert!(x.starts_with("<?xml"));
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert_eq!(x.matches("<testcase ").count(), 2);
        assert!(
            x.contains("name=\"http_req_duration: p(99)&lt;250\" time=\"1.000\"/>"),
            "{x}"
        );
        assert!(
            x.contains("<failure message=\"whole run rate=0.1000\" type=\"threshold\">"),
            "{x}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn summary_marks_thresholds() {
        let s = summary(&result(), &["from --slo".into()]);
        assert!(s.contains("10.0/s achieved of 10.0/s requested"), "{s}");
        assert!(s.contains("✓ http_req_duration: p(99)<250"), "{s}");
        assert!(
            s.contains("✗ http_req_failed: rate<0.01  rate=0.1000  FAILED"),
            "{s}"
        );
        assert!(s.contains("http 503: 1"), "{s}");
        assert!(s.ends_with("note: from --slo\n"), "{s}");
    }
}
