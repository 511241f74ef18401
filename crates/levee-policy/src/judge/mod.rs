//! The canary judge: given cumulative counts for the canary and for its
//! baseline (an equal, hash-chosen slice of stable traffic from the same
//! moments) since the rollout step began, it says Fail, Pass or
//! Inconclusive, with every check's value beside its threshold for the admin
//! API. Pure statistics: the control loop owns the counters, the clock and
//! what to do with the verdict.
//!
//! Checks, each skipped when its limit is `None`:
//!
//! * `error_rate`: the canary's error rate is above `max_error_rate`
//!   (exact sequential test; may fail before `min_samples`, since it needs
//!   no normal approximation, so a canary failing everything is stopped in
//!   a second or two).
//! * `error_increase`: the canary's error rate exceeds the baseline's by
//!   more than `max_error_increase` (absolute points).
//! * `latency_rank`: the canary is slower than baseline × (1 +
//!   `latency_tolerance`) by a one-sided Mann-Whitney test; its value is the
//!   Hodges-Lehmann shift relative to the baseline median.
//! * `latency_pNN` and `latency_pNN_ratio`: a quantile above an absolute
//!   limit, or above a multiple of the baseline's same quantile. These are
//!   point-estimate thresholds, not tests, and only apply once both sides
//!   have `min_samples`.
//!
//! The first three are sequential tests (see [`stats`]): the loop may ask
//! every second and a canary as good as its baseline is failed with
//! probability at most α = 1 − `confidence` over the whole step. α is split
//! evenly (Bonferroni) among the sequential checks configured, so each fails
//! when its log mixture likelihood ratio reaches ln(k/α) for k such checks.
//!
//! A Pass means every check ran with `min_samples` on both sides and none
//! failed so far; it is never given on less data. When to promote (how long
//! to keep passing) is the control loop's decision.

pub mod histogram;
pub mod stats;

pub use histogram::LatencyHistogram;

use std::time::Duration;

/// A limit on one latency quantile of the canary.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyLimit {
    /// Which quantile, 0..=1 (0.99: p99).
    pub quantile: f64,
    /// Fail when the canary's quantile is above this.
    pub max: Option<Duration>,
    /// Fail when the canary's quantile is above this multiple of the
    /// baseline's (1.2: 20% slower).
    pub max_ratio: Option<f64>,
}

/// What the judge tests and how sure it must be to fail a canary.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisConfig {
    /// 1 − the chance of failing a canary that is as good as its baseline
    /// over the whole step, however often the judge is asked.
    pub confidence: f64,
    /// Requests each side needs before anything passes, and before the
    /// approximate tests and thresholds may fail.
    pub min_samples: u64,
    /// Highest acceptable canary error rate (0..1), regardless of baseline.
    pub max_error_rate: Option<f64>,
    /// Highest acceptable excess of the canary's error rate over the
    /// baseline's, in absolute rate (0.01: one percentage point).
    pub max_error_increase: Option<f64>,
    /// How much slower than the baseline the canary may be, relative
    /// (0.10: 10%).
    pub latency_tolerance: Option<f64>,
    /// Quantile limits.
    pub latency_limits: Vec<LatencyLimit>,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            confidence: 0.98,
            min_samples: 50,
            max_error_rate: None,
            max_error_increase: Some(0.01),
            latency_tolerance: Some(0.10),
            latency_limits: Vec::new(),
        }
    }
}

/// One version's cumulative counts since the step began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VersionSample<'a> {
    /// Requests.
    pub total: u64,
    /// Requests that failed (availability).
    pub bad: u64,
    /// Their latencies.
    pub latency: &'a LatencyHistogram,
}

/// The judge's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// At least one check failed: roll back.
    Fail,
    /// Every check ran on enough data and none failed.
    Pass,
    /// Not enough data to pass (never a pass in disguise).
    Inconclusive,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Ran and found nothing wrong.
    Passed,
    /// The canary is worse than the threshold allows.
    Failed,
    /// Too few samples to pass (or, for thresholds, to fail).
    NotEnoughData,
}

/// One check's result. Units: rates as fractions (0.01 is 1%), latencies
/// in milliseconds, ratios and relative shifts as plain numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// `error_rate`, `error_increase`, `latency_rank`, `latency_p99`,
    /// `latency_p99_ratio`, ... (`latency_quantile[_ratio]` for quantiles
    /// without a conventional name; see `quantile`).
    pub name: &'static str,
    /// The quantile a latency limit is about.
    pub quantile: Option<f64>,
    /// What was measured.
    pub value: f64,
    /// The limit `value` is held to.
    pub threshold: f64,
    /// For sequential tests: the log mixture likelihood ratio.
    pub statistic: Option<f64>,
    /// The `statistic` at which the check fails: ln(k/α).
    pub statistic_limit: Option<f64>,
    /// The outcome.
    pub outcome: CheckOutcome,
}

/// The judge's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Fail, Pass or Inconclusive.
    pub decision: Decision,
    /// Why, in a sentence ("canary has 12 of 50 samples", ...).
    pub reason: String,
    /// Every check configured, in a stable order.
    pub checks: Vec<Check>,
}

/// Judges `canary` against `baseline` under `config`.
pub fn judge(config: &AnalysisConfig, canary: &VersionSample, baseline: &VersionSample) -> Verdict {
    let min = config.min_samples;
    let sequential_checks = [
        config.max_error_rate.is_some(),
        config.max_error_increase.is_some(),
        config.latency_tolerance.is_some(),
    ]
    .iter()
    .filter(|on| **on)
    .count()
    .max(1);
    let alpha = 1.0 - config.confidence;
    // A confidence of 1 (or nonsense) never fails anything.
    let log_lr_limit = if alpha > 0.0 && alpha.is_finite() {
        (sequential_checks as f64 / alpha.min(1.0)).ln()
    } else {
        f64::INFINITY
    };
    let sequential = |log_lr: f64, enough: bool| {
        if log_lr >= log_lr_limit {
            CheckOutcome::Failed
        } else if enough {
            CheckOutcome::Passed
        } else {
            CheckOutcome::NotEnoughData
        }
    };
    let rate = |sample: &VersionSample| {
        if sample.total == 0 {
            0.0
        } else {
            sample.bad.min(sample.total) as f64 / sample.total as f64
        }
    };
    let both_counted = canary.total >= min && baseline.total >= min;
    let canary_timed = canary.latency.count();
    let baseline_timed = baseline.latency.count();
    let both_timed = canary_timed >= min && baseline_timed >= min;

    let mut checks = Vec::new();
    if let Some(limit) = config.max_error_rate {
        let log_lr = stats::error_rate_log_lr(canary.bad, canary.total, limit);
        checks.push(Check {
            name: "error_rate",
            quantile: None,
            value: rate(canary),
            threshold: limit,
            statistic: Some(log_lr),
            statistic_limit: Some(log_lr_limit),
            outcome: sequential(log_lr, canary.total >= min),
        });
    }
    if let Some(tolerance) = config.max_error_increase {
        let comparison = stats::error_difference(
            canary.bad,
            canary.total,
            baseline.bad,
            baseline.total,
            tolerance,
        );
        checks.push(Check {
            name: "error_increase",
            quantile: None,
            value: comparison.difference,
            threshold: tolerance,
            statistic: Some(comparison.log_lr),
            statistic_limit: Some(log_lr_limit),
            // A normal approximation: shown early, but no verdict either
            // way on small samples.
            outcome: if both_counted {
                sequential(comparison.log_lr, true)
            } else {
                CheckOutcome::NotEnoughData
            },
        });
    }
    if let Some(tolerance) = config.latency_tolerance {
        let (shift, log_lr) = if both_timed {
            match stats::mann_whitney(canary.latency, baseline.latency, 1.0 + tolerance) {
                Some(rank) => (
                    rank.relative_shift,
                    stats::mixture_log_lr(rank.effect, rank.effect_variance, stats::RANK_MIXING_SD),
                ),
                // Every request in one bucket: no rank evidence, but the
                // shift is still worth showing.
                None => (
                    stats::relative_shift(canary.latency, baseline.latency).unwrap_or(0.0),
                    0.0,
                ),
            }
        } else {
            // The shift estimate costs O(B) per bisection step; skip it
            // while it could not count anyway.
            (0.0, 0.0)
        };
        checks.push(Check {
            name: "latency_rank",
            quantile: None,
            value: shift,
            threshold: tolerance,
            statistic: Some(log_lr),
            statistic_limit: Some(log_lr_limit),
            outcome: sequential(log_lr, both_timed),
        });
    }
    for limit in &config.latency_limits {
        let (absolute_name, ratio_name) = quantile_names(limit.quantile);
        let canary_ms = canary
            .latency
            .quantile_micros(limit.quantile)
            .unwrap_or(0.0)
            / 1000.0;
        let threshold_check = |name, value: f64, threshold: f64| Check {
            name,
            quantile: Some(limit.quantile),
            value,
            threshold,
            statistic: None,
            statistic_limit: None,
            outcome: if !both_timed {
                CheckOutcome::NotEnoughData
            } else if value > threshold {
                CheckOutcome::Failed
            } else {
                CheckOutcome::Passed
            },
        };
        if let Some(max) = limit.max {
            checks.push(threshold_check(
                absolute_name,
                canary_ms,
                max.as_secs_f64() * 1000.0,
            ));
        }
        if let Some(max_ratio) = limit.max_ratio {
            let baseline_ms = baseline
                .latency
                .quantile_micros(limit.quantile)
                .unwrap_or(0.0)
                / 1000.0;
            // Half a microsecond keeps an all-zero baseline from dividing by 0.
            let ratio = canary_ms / baseline_ms.max(0.0005);
            checks.push(threshold_check(ratio_name, ratio, max_ratio));
        }
    }

    let (decision, reason) = decide(&checks, canary, baseline, min);
    Verdict {
        decision,
        reason,
        checks,
    }
}

/// The decision and its one-line reason.
fn decide(
    checks: &[Check],
    canary: &VersionSample,
    baseline: &VersionSample,
    min: u64,
) -> (Decision, String) {
    let failed: Vec<String> = checks
        .iter()
        .filter(|check| check.outcome == CheckOutcome::Failed)
        .map(|check| {
            format!(
                "{} {:.4} over {:.4}",
                check.name, check.value, check.threshold
            )
        })
        .collect();
    if !failed.is_empty() {
        return (Decision::Fail, failed.join("; "));
    }
    if checks.is_empty() {
        return (Decision::Inconclusive, "no checks configured".to_string());
    }
    if checks
        .iter()
        .any(|check| check.outcome == CheckOutcome::NotEnoughData)
    {
        let mut short = Vec::new();
        for (side, sample) in [("canary", canary), ("baseline", baseline)] {
            let samples = sample.total.min(sample.latency.count());
            if samples < min {
                short.push(format!("{side} has {samples} of {min} samples"));
            }
        }
        return (Decision::Inconclusive, short.join("; "));
    }
    (
        Decision::Pass,
        format!("all {} checks passed", checks.len()),
    )
}

/// Check names for a quantile: conventional ones spelled out, since names
/// are static.
fn quantile_names(quantile: f64) -> (&'static str, &'static str) {
    const NAMED: [(f64, &str, &str); 6] = [
        (0.5, "latency_p50", "latency_p50_ratio"),
        (0.75, "latency_p75", "latency_p75_ratio"),
        (0.9, "latency_p90", "latency_p90_ratio"),
        (0.95, "latency_p95", "latency_p95_ratio"),
        (0.99, "latency_p99", "latency_p99_ratio"),
        (0.999, "latency_p999", "latency_p999_ratio"),
    ];
    NAMED
        .iter()
        .find(|(q, _, _)| (q - quantile).abs() < 1e-9)
        .map_or(
            ("latency_quantile", "latency_quantile_ratio"),
            |(_, a, r)| (a, r),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(total: u64, bad: u64, latency: &LatencyHistogram) -> VersionSample<'_> {
        VersionSample {
            total,
            bad,
            latency,
        }
    }

    fn spread(count: u64, scale: u64) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for i in 0..count {
            h.record(scale * (1000 + (i * 37) % 500));
        }
        h
    }

    #[test]
    fn too_few_samples_is_inconclusive_and_says_why() {
        let h = spread(12, 10);
        let big = spread(80, 10);
        let verdict = judge(
            &AnalysisConfig::default(),
            &sample(12, 0, &h),
            &sample(80, 0, &big),
        );
        assert_eq!(verdict.decision, Decision::Inconclusive);
        assert_eq!(verdict.reason, "canary has 12 of 50 samples");
    }

    #[test]
    fn nothing_configured_never_passes() {
        let config = AnalysisConfig {
            max_error_increase: None,
            latency_tolerance: None,
            ..AnalysisConfig::default()
        };
        let h = spread(100, 10);
        let verdict = judge(&config, &sample(100, 0, &h), &sample(100, 0, &h));
        assert_eq!(verdict.decision, Decision::Inconclusive);
    }

    #[test]
    fn a_canary_failing_everything_fails_before_min_samples() {
        let config = AnalysisConfig {
            max_error_rate: Some(0.01),
            ..AnalysisConfig::default()
        };
        let h = spread(5, 10);
        let verdict = judge(&config, &sample(5, 5, &h), &sample(5, 0, &h));
        assert_eq!(verdict.decision, Decision::Fail);
        assert!(
            verdict.reason.starts_with("error_rate"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn quantile_limits_wait_for_min_samples_then_compare() {
        let config = AnalysisConfig {
            latency_limits: vec![LatencyLimit {
                quantile: 0.99,
                max: Some(Duration::from_millis(12)),
                max_ratio: Some(1.5),
            }],
            ..AnalysisConfig::default()
        };
        let slow = spread(10, 20);
        let fast = spread(10, 10);
        let early = judge(&config, &sample(10, 0, &slow), &sample(10, 0, &fast));
        assert_eq!(early.decision, Decision::Inconclusive);
        let slow = spread(60, 20);
        let fast = spread(60, 10);
        let verdict = judge(&config, &sample(60, 0, &slow), &sample(60, 0, &fast));
        assert_eq!(verdict.decision, Decision::Fail);
        let p99 = verdict
            .checks
            .iter()
            .find(|c| c.name == "latency_p99")
            .unwrap();
        assert_eq!(p99.outcome, CheckOutcome::Failed);
        assert!(p99.value > 29.0 && p99.value < 31.0, "{p99:?}");
        let ratio = verdict
            .checks
            .iter()
            .find(|c| c.name == "latency_p99_ratio")
            .unwrap();
        assert!((ratio.value - 2.0).abs() < 0.1, "{ratio:?}");
    }

    #[test]
    fn an_equal_canary_passes_with_values_beside_thresholds() {
        let h = spread(200, 10);
        let verdict = judge(
            &AnalysisConfig::default(),
            &sample(200, 1, &h),
            &sample(200, 1, &h),
        );
        assert_eq!(verdict.decision, Decision::Pass, "{verdict:?}");
        let rank = verdict
            .checks
            .iter()
            .find(|c| c.name == "latency_rank")
            .unwrap();
        assert!(rank.value.abs() < 0.02 && rank.threshold == 0.10);
        assert!((rank.statistic_limit.unwrap() - (2.0f64 / 0.02).ln()).abs() < 1e-9);
    }
}
