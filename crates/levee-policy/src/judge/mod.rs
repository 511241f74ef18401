//! Temporary stand-in for the judge branch (same API).
pub mod histogram;
use histogram::LatencyHistogram;
use std::time::Duration;

/// Config.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisConfig {
    /// c
    pub confidence: f64,
    /// m
    pub min_samples: u64,
    /// e
    pub max_error_rate: Option<f64>,
    /// i
    pub max_error_increase: Option<f64>,
    /// t
    pub latency_tolerance: Option<f64>,
    /// l
    pub latency_limits: Vec<LatencyLimit>,
}
/// Limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyLimit {
    /// q
    pub quantile: f64,
    /// m
    pub max: Option<Duration>,
    /// r
    pub max_ratio: Option<f64>,
}
/// Sample.
pub struct VersionSample<'a> {
    /// t
    pub total: u64,
    /// b
    pub bad: u64,
    /// l
    pub latency: &'a LatencyHistogram,
}
/// Decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// p
    Pass,
    /// f
    Fail,
    /// i
    Inconclusive,
}
/// Outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CheckOutcome {
    /// p
    Passed,
    /// f
    Failed,
    /// n
    NotEnoughData,
}
/// Check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// n
    pub name: &'static str,
    /// v
    pub value: f64,
    /// t
    pub threshold: f64,
    /// s
    pub statistic: Option<f64>,
    /// o
    pub outcome: CheckOutcome,
}
/// Verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// d
    pub decision: Decision,
    /// c
    pub checks: Vec<Check>,
}
/// Stub: error rate only.
pub fn judge(
    config: &AnalysisConfig,
    canary: &VersionSample<'_>,
    baseline: &VersionSample<'_>,
) -> Verdict {
    if canary.total < config.min_samples || baseline.total < config.min_samples {
        return Verdict {
            decision: Decision::Inconclusive,
            checks: vec![],
        };
    }
    let rate = canary.bad as f64 / canary.total as f64;
    let max = config.max_error_rate.unwrap_or(1.0);
    let failed = rate > max;
    Verdict {
        decision: if failed {
            Decision::Fail
        } else {
            Decision::Pass
        },
        checks: vec![Check {
            name: "error_rate",
            value: rate,
            threshold: max,
            statistic: None,
            outcome: if failed {
                CheckOutcome::Failed
            } else {
                CheckOutcome::Passed
            },
        }],
    }
}
