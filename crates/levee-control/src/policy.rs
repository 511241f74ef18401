//! The choices about an SLO's alerting that the evaluation loop and the
//! Prometheus rules (`levee slo rules`) must make the same way, each made
//! once, here.

use levee_config::{Slo, SloPeriod};
use levee_slo::{Factor, Policy, Rule, Severity};
use std::time::Duration;

/// A calendar month, where a length is needed: the workbook factors are
/// scaled to it, and Prometheus rules evaluate it as a rolling window of
/// this length (as Sloth does).
pub const CALENDAR_MONTH_NOMINAL: Duration = Duration::from_secs(30 * 86_400);

/// The length `period` stands for when factors are scaled or rules written:
/// a rolling period is itself, a calendar month is 30 days.
pub fn nominal_period(period: SloPeriod) -> Duration {
    match period {
        SloPeriod::Rolling(d) => d,
        SloPeriod::CalendarMonth => CALENDAR_MONTH_NOMINAL,
    }
}

/// The alert policy `slo` is judged by: its own rules when it lists any,
/// otherwise the SRE Workbook's four rules scaled to its period; with the
/// SLO's `min_events` and `pending_for` either way.
pub fn alert_policy(slo: &Slo) -> Policy {
    let rules = match &slo.alerting.rules {
        None => Policy::sre_workbook_for(nominal_period(slo.period)).rules,
        Some(rules) => rules
            .iter()
            .map(|r| Rule {
                severity: severity(r.severity),
                long: r.long,
                short: r.short,
                factor: Factor::from_milli(r.factor_milli),
            })
            .collect(),
    };
    Policy {
        rules,
        min_events: slo.alerting.min_events,
        pending_for: slo.alerting.pending_for,
    }
}

/// The SLO math's severity for a configured one.
pub fn severity(s: levee_config::AlertSeverity) -> Severity {
    match s {
        levee_config::AlertSeverity::Page => Severity::Page,
        levee_config::AlertSeverity::Ticket => Severity::Ticket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calendar_month_counts_as_thirty_days() {
        assert_eq!(
            nominal_period(SloPeriod::CalendarMonth),
            Duration::from_secs(30 * 86_400)
        );
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(nominal_period(SloPeriod::Rolling(week)), week);
    }
}
