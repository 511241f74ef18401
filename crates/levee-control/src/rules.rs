//! `levee slo rules`: Prometheus recording and alerting rules for the
//! config's SLOs, for fleet-wide evaluation across many replicas.
//!
//! Each Levee replica counts every SLO objective's events and bad events
//! (`levee_slo_events_total`, `levee_slo_bad_events_total`, label `slo`).
//! One replica only sees its own share of traffic, so a fleet behind a load
//! balancer is judged by one Prometheus summing those counters over every
//! replica it scrapes. This module writes that Prometheus's rule file.
//!
//! **Sloth-compatible.** Names, labels and windows are the ones Sloth
//! (github.com/slok/sloth) generates, so its Grafana dashboards and habits
//! carry over. Per objective, three groups:
//!
//! - `sloth-slo-sli-recordings-<id>`: `slo:sli_error:ratio_rate<window>`,
//!   the fleet's error ratio, for Sloth's windows (5m, 30m, 1h, 2h, 6h, 1d,
//!   3d, those not longer than the period), every window of the SLO's burn
//!   rules, and the period itself. The period's ratio is, as in Sloth, the
//!   average of the 5m ratios over the period (`sum_over_time` over
//!   `count_over_time`), which is cheap to evaluate; windows with no events
//!   have no ratio and do not count. (When a burn rule uses the period as a
//!   window, which Sloth never does, it is a true ratio instead, so alerts
//!   are never judged on the average.)
//! - `sloth-slo-meta-recordings-<id>`: `slo:objective:ratio`,
//!   `slo:error_budget:ratio`, `slo:time_period:days`,
//!   `slo:current_burn_rate:ratio` (5m), `slo:period_burn_rate:ratio`,
//!   `slo:period_error_budget_remaining:ratio` and `sloth_slo_info`.
//! - `sloth-slo-alerts-<id>`: `LeveeSLOPageBurn` and `LeveeSLOTicketBurn`,
//!   each the OR of its severity's multiwindow rules. A rule holds when the
//!   error ratio is strictly above `factor × budget` over both its short and
//!   its long window (strict, as Levee's own evaluation). A severity without
//!   rules gets no alert.
//!
//! Every series carries `sloth_id` (`<service>-<id>`), `sloth_service` (the
//! SLO's `service` label, else `levee`) and `sloth_slo` (the objective id),
//! `sloth_window` on the SLI ratios, and the SLO's own labels, except those
//! named `sloth_*`, which would clash with Sloth's. Group names use the
//! objective id rather than `sloth_id`, because ids are unique and
//! `<service>-<id>` need not be.
//!
//! **Burn rules.** The SLO's `alerting` page and ticket rules when given,
//! else the SRE Workbook's, scaled to the period exactly as Levee scales
//! them: [`crate::policy::alert_policy`] makes that choice for the rules and
//! the evaluation loop alike ([`levee_slo::Policy::sre_workbook_for`]):
//! 14.4, 6, 3 and 1 for 30 days, 13.44, 5.6, 2.8 and 0.933 for 28. Factors
//! and ratios are written from Levee's integers (thousandths, parts per
//! million), never through a float, so `14.4` is never `14.399999`.
//!
//! **`calendar_month`.** A range selector cannot start at the first of the
//! month, so a calendar-month SLO is evaluated over a rolling 30 days, as
//! Sloth's month: the period window is `30d`, `slo:time_period:days` is 30
//! and the workbook factors are the 30-day ones
//! ([`crate::policy::nominal_period`]).
//!
//! **`min_events`.** Levee ignores a window holding fewer events than the
//! SLO's `min_events`. The rules do the same: a rule also needs
//! `sum(increase(levee_slo_events_total{slo="<id>"}[<short>])) >= N`. The
//! long window holds the short one, so guarding the short one suffices.
//!
//! **Time slices.** For `budgeting = "timeslices"` the window ratios are
//! bad-slice shares: `avg_over_time((<slice is bad>)[<window>:<slice>])`,
//! where a slice is bad when its error ratio (`increase` over the slice,
//! summed over replicas) is above `1 − timeslice_target` (`> bool`); for
//! `ratio_timeslices` the subquery averages the slices' error ratios. The
//! subquery's steps fall on multiples of the slice since the epoch, as
//! Levee's slices do, and a slice without events has no sample, so it is
//! not counted, as in Levee. The meta recordings and alerts read those
//! ratios unchanged; the `min_events` guard is left out (Levee needs one
//! judged slice). What PromQL cannot express is said in a comment above
//! the objective's groups and by [`notes`] (the command prints them on
//! stderr): `increase` extrapolates to the slice's edges, so a slice close
//! to its target may be judged otherwise than Levee's exact counts judge
//! it; a late scrape can change a slice already judged; and the period's
//! ratio is the average of the 5m ratios, not a count of bad slices over
//! the period.
//!
//! The YAML is written by hand: every string is double-quoted and escaped,
//! label values in PromQL are escaped for PromQL, and text that Prometheus
//! expands as a template (alert labels and annotations) has its `{{`
//! escaped.

use crate::policy::{alert_policy, nominal_period};
use levee_config::{AlertSeverity, Budgeting, Config, Sli, Slo, SloObjective, SloPeriod};
use levee_core::metrics::names;
use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

/// The windows Sloth records for the SRE Workbook's rules; 5m comes first
/// and is always recorded, as the period's ratio and the current burn rate
/// are built on it.
const SLOTH_WINDOWS: [Duration; 7] = [
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(HOUR),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(6 * HOUR),
    Duration::from_secs(DAY),
    Duration::from_secs(3 * DAY),
];

/// `sloth_service` when the SLO has no `service` label.
const DEFAULT_SERVICE: &str = "levee";

/// The label Sloth puts the window in; the alerts aggregate it away.
const WINDOW_LABEL: &str = "sloth_window";

/// The rules file for `config`'s SLOs, as YAML.
pub fn render(config: &Config) -> String {
    let mut y = Yaml::default();
    y.line(
        0,
        &format!(
            "# Prometheus rules for Levee's SLOs, written by `levee slo rules` (Levee {}).",
            env!("CARGO_PKG_VERSION")
        ),
    );
    for line in [
        "# Change the config and regenerate rather than editing this file.",
        "#",
        "# Names and windows follow Sloth (https://github.com/slok/sloth): per SLO",
        "# objective, slo:sli_error:ratio_rate<window> error ratios, slo:* meta",
        "# recordings and burn-rate alerts, labelled sloth_id, sloth_service, sloth_slo.",
        "# The ratios sum Levee's counters over every replica this Prometheus scrapes.",
    ] {
        y.line(0, line);
    }
    let targets: Vec<Target<'_>> = config
        .slos
        .iter()
        .flat_map(|slo| slo.objectives.iter().map(move |o| Target::new(slo, o)))
        .collect();
    if targets.is_empty() {
        y.line(0, "groups: []");
        return y.out;
    }
    y.line(0, "groups:");
    for target in &targets {
        target.write(&mut y);
    }
    y.out
}

/// What the rules for `config`'s time-slice SLOs cannot express exactly,
/// one line per objective, for the command to print on stderr (the rules
/// file carries the same text as comments).
pub fn notes(config: &Config) -> Vec<String> {
    config
        .slos
        .iter()
        .flat_map(|slo| slo.objectives.iter().map(move |o| Target::new(slo, o)))
        .filter_map(|t| {
            t.slice_limits()
                .map(|l| format!("SLO {}: {}", t.id(), l.join(" ")))
        })
        .collect()
}

/// One multiwindow burn-rate rule of the SLO's alert policy, with the
/// config's severity (whose name the alerts carry) and the factor in
/// thousandths (written without a float).
#[derive(Debug, Clone, Copy)]
struct Rule {
    severity: AlertSeverity,
    long: Duration,
    short: Duration,
    factor_milli: u32,
}

impl From<&levee_slo::Rule> for Rule {
    fn from(r: &levee_slo::Rule) -> Self {
        Rule {
            severity: match r.severity {
                levee_slo::Severity::Page => AlertSeverity::Page,
                levee_slo::Severity::Ticket => AlertSeverity::Ticket,
            },
            long: r.long,
            short: r.short,
            factor_milli: r.factor.milli(),
        }
    }
}

/// One SLO objective and everything its rules are built from.
struct Target<'a> {
    slo: &'a Slo,
    objective: &'a SloObjective,
    /// The rolling window the period is evaluated over.
    period: Duration,
    rules: Vec<Rule>,
    service: &'a str,
    /// The SLO's own labels that may be passed on.
    labels: Vec<(&'a str, &'a str)>,
}

impl<'a> Target<'a> {
    fn new(slo: &'a Slo, objective: &'a SloObjective) -> Self {
        let period = nominal_period(slo.period);
        let rules = alert_policy(slo).rules.iter().map(Rule::from).collect();
        let service = slo
            .labels
            .iter()
            .find(|(k, _)| k == "service")
            .map_or(DEFAULT_SERVICE, |(_, v)| v.as_str());
        let labels = slo
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("sloth_"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Self {
            slo,
            objective,
            period,
            rules,
            service,
            labels,
        }
    }

    fn id(&self) -> &str {
        &self.objective.id
    }

    /// `sloth_id`, `sloth_service`, `sloth_slo`: what every series of this
    /// objective is selected by.
    fn id_labels(&self) -> [(&str, String); 3] {
        [
            ("sloth_id", format!("{}-{}", self.service, self.id())),
            ("sloth_service", self.service.to_string()),
            ("sloth_slo", self.id().to_string()),
        ]
    }

    /// The PromQL selector of this objective's recorded series.
    fn filter(&self) -> String {
        let parts: Vec<String> = self
            .id_labels()
            .iter()
            .map(|(k, v)| format!("{k}={}", promql_str(v)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// The id labels followed by the SLO's own.
    fn series_labels(&self) -> Vec<(String, String)> {
        let mut labels: Vec<(String, String)> = self
            .id_labels()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        labels.extend(
            self.labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        labels
    }

    /// The counters' selector: this objective's events on every replica.
    fn counter(&self, metric: &str, window: Duration) -> String {
        format!(
            "{metric}{{slo={}}}[{}]",
            promql_str(self.id()),
            prom_duration(window)
        )
    }

    /// Every window with an error ratio, shortest first.
    fn windows(&self) -> Vec<Duration> {
        let mut windows: Vec<Duration> = SLOTH_WINDOWS
            .iter()
            .copied()
            .filter(|w| *w <= self.period || *w == SLOTH_WINDOWS[0])
            .chain(self.rules.iter().flat_map(|r| [r.short, r.long]))
            .chain([self.period])
            .map(whole_millis)
            .collect();
        windows.sort();
        windows.dedup();
        windows
    }

    fn write(&self, y: &mut Yaml) {
        y.line(0, &format!("# {}", self.headline()));
        for line in self.slice_limits().unwrap_or_default() {
            y.line(0, &format!("# {line}"));
        }
        self.write_sli_group(y);
        self.write_meta_group(y);
        self.write_alert_group(y);
    }

    /// What the rules of a time-slice objective cannot express, as
    /// sentences; `None` for occurrences.
    fn slice_limits(&self) -> Option<Vec<String>> {
        let slice = levee_config::format_duration(self.slo.budgeting.slice()?);
        Some(vec![
            format!("Time slices of {slice}, judged by PromQL, not exactly as Levee judges them:"),
            "increase() extrapolates to the slice's edges, so a slice close to its target"
                .to_string(),
            "may be judged otherwise; a late scrape can change a slice already judged;".to_string(),
            "and the period's ratio averages the 5m ratios rather than counting bad slices."
                .to_string(),
            "Levee's own figures (GET /api/v1/slos) are exact.".to_string(),
        ])
    }

    /// The error ratio of the slice ending at each subquery step, and, for
    /// `timeslices`, whether it fell short of the slice target (1 or 0);
    /// `None` for occurrences.
    fn slice_expr(&self) -> Option<String> {
        let slice = self.slo.budgeting.slice()?;
        let bad = self.counter(names::SLO_BAD_EVENTS, whole_millis(slice));
        let all = self.counter(names::SLO_EVENTS, whole_millis(slice));
        let ratio = format!(
            "(sum(increase({bad})) or (0 * sum(increase({all}))))\n  /\n  (sum(increase({all})) > 0)"
        );
        Some(match self.slo.budgeting {
            Budgeting::Timeslices { target_ppm, .. } => format!(
                "(\n  {ratio}\n) > bool {}",
                decimal(u64::from(1_000_000 - target_ppm.min(1_000_000)), 6)
            ),
            _ => ratio,
        })
    }

    /// A comment line naming the objective and what it promises.
    fn headline(&self) -> String {
        let mut line = format!("SLO {}: {}", self.id(), self.promise());
        // A comment ends at the line's end; keep it on one.
        line.retain(|c| !c.is_control());
        line
    }

    /// What the objective promises: `99.9% of requests answered without a
    /// 5xx, over 30d`.
    fn promise(&self) -> String {
        let objective = decimal(u64::from(self.objective.objective_ppm), 4);
        let what = match (self.slo.sli, self.objective.threshold) {
            (Sli::Latency, Some(t)) => format!(
                "answered within {} without a 5xx",
                levee_config::format_duration(t)
            ),
            (Sli::JobCompletion, Some(t)) => format!(
                "of jobs delivered within {} of acceptance",
                levee_config::format_duration(t)
            ),
            (
                Sli::Availability {
                    rate_limited_is_bad: true,
                },
                _,
            ) => "answered without a 5xx or a 429".to_string(),
            _ => "answered without a 5xx".to_string(),
        };
        let period = match self.slo.period {
            SloPeriod::Rolling(d) => format!("over {}", levee_config::format_duration(d)),
            SloPeriod::CalendarMonth => {
                "over a calendar month (evaluated over a rolling 30d)".to_string()
            }
        };
        match self.slo.budgeting {
            Budgeting::Occurrences => format!("{objective}% of requests {what}, {period}"),
            Budgeting::Timeslices { slice, target_ppm } => format!(
                "{objective}% of {} slices with {}% of requests {what}, {period}",
                levee_config::format_duration(slice),
                decimal(u64::from(target_ppm), 4)
            ),
            Budgeting::RatioTimeslices { slice } => format!(
                "{objective}% of requests {what} on average over {} slices, {period}",
                levee_config::format_duration(slice)
            ),
        }
    }

    fn write_sli_group(&self, y: &mut Yaml) {
        y.group(&format!("sloth-slo-sli-recordings-{}", self.id()));
        let base = sli_metric(SLOTH_WINDOWS[0]);
        for window in self.windows() {
            let w = prom_duration(window);
            let alerted = self
                .rules
                .iter()
                .any(|r| whole_millis(r.long) == window || whole_millis(r.short) == window);
            let slices = self.slice_expr();
            let expr = if window == whole_millis(self.period) && !alerted {
                let series = format!("{base}{}[{w}]", self.filter());
                format!(
                    "sum_over_time({series})\n/ ignoring ({WINDOW_LABEL})\ncount_over_time({series})"
                )
            } else if let Some(slice_expr) = &slices {
                let step = prom_duration(self.slo.budgeting.slice().unwrap_or(window));
                // A millisecond short of the window: Prometheus 2 closes a
                // subquery's range at both ends, which would count one
                // slice too many; 3 opens it on the left. Either way this
                // takes exactly the window's slices.
                let range = prom_duration(window.saturating_sub(Duration::from_millis(1)));
                format!("avg_over_time((\n  {slice_expr}\n)[{range}:{step}])")
            } else {
                // No replica may have counted a bad event yet, and a
                // missing numerator would read as "no data" rather than
                // "no errors" (and bias the period's average upwards).
                let bad = self.counter(names::SLO_BAD_EVENTS, window);
                let all = self.counter(names::SLO_EVENTS, window);
                format!("(sum(rate({bad})) or (0 * sum(rate({all}))))\n/\n((sum(rate({all}))) > 0)")
            };
            let mut labels = self.series_labels();
            labels.insert(3, (WINDOW_LABEL.to_string(), w.clone()));
            y.record(&sli_metric(window), &expr, &labels);
        }
    }

    fn write_meta_group(&self, y: &mut Yaml) {
        y.group(&format!("sloth-slo-meta-recordings-{}", self.id()));
        let labels = self.series_labels();
        let filter = self.filter();
        let ppm = u64::from(self.objective.objective_ppm);
        let burn_rate = |window| {
            format!(
                "{}{filter}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{filter}",
                sli_metric(window)
            )
        };
        y.record(
            "slo:objective:ratio",
            &format!("vector({})", decimal(ppm, 6)),
            &labels,
        );
        y.record(
            "slo:error_budget:ratio",
            &format!("vector({})", decimal(1_000_000 - ppm, 6)),
            &labels,
        );
        y.record(
            "slo:time_period:days",
            &format!("vector({})", days(self.period)),
            &labels,
        );
        y.record(
            "slo:current_burn_rate:ratio",
            &burn_rate(SLOTH_WINDOWS[0]),
            &labels,
        );
        y.record(
            "slo:period_burn_rate:ratio",
            &burn_rate(whole_millis(self.period)),
            &labels,
        );
        y.record(
            "slo:period_error_budget_remaining:ratio",
            &format!("1 - slo:period_burn_rate:ratio{filter}"),
            &labels,
        );
        let mut info = labels.clone();
        info.extend([
            ("sloth_mode".to_string(), "levee".to_string()),
            ("sloth_objective".to_string(), decimal(ppm, 4)),
            (
                "sloth_version".to_string(),
                format!("levee-{}", env!("CARGO_PKG_VERSION")),
            ),
        ]);
        y.record("sloth_slo_info", "vector(1)", &info);
    }

    fn write_alert_group(&self, y: &mut Yaml) {
        let severities: Vec<AlertSeverity> = [AlertSeverity::Page, AlertSeverity::Ticket]
            .into_iter()
            .filter(|s| self.rules.iter().any(|r| r.severity == *s))
            .collect();
        if severities.is_empty() {
            return;
        }
        y.group(&format!("sloth-slo-alerts-{}", self.id()));
        for severity in severities {
            let rules: Vec<Rule> = self
                .rules
                .iter()
                .copied()
                .filter(|r| r.severity == severity)
                .collect();
            let mut labels = vec![
                ("severity".to_string(), severity.name().to_string()),
                ("sloth_severity".to_string(), severity.name().to_string()),
                ("slo".to_string(), self.id().to_string()),
            ];
            labels.extend(
                self.labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
            let labels = labels
                .into_iter()
                .map(|(k, v)| (k, template_text(&v)))
                .collect::<Vec<_>>();
            let mut annotations = vec![
                (
                    "title".to_string(),
                    format!(
                        "({}) {} {} SLO error budget burn rate is too fast.",
                        severity.name(),
                        self.service,
                        self.id()
                    ),
                ),
                (
                    "summary".to_string(),
                    format!(
                        "{} {} SLO error budget burn rate is over expected.",
                        self.service,
                        self.id()
                    ),
                ),
                ("description".to_string(), self.description(&rules)),
            ];
            if let Some(url) = &self.slo.runbook {
                annotations.push(("runbook_url".to_string(), url.clone()));
            }
            let annotations = annotations
                .into_iter()
                .map(|(k, v)| (k, template_text(&v)))
                .collect::<Vec<_>>();
            y.alert(
                &alert_name(severity),
                &self.alert_expr(&rules),
                self.slo.alerting.pending_for,
                &labels,
                &annotations,
            );
        }
    }

    /// The OR of `rules`, each the AND of its two windows.
    fn alert_expr(&self, rules: &[Rule]) -> String {
        let filter = self.filter();
        let budget = decimal(u64::from(1_000_000 - self.objective.objective_ppm), 6);
        // A time-slice window with no judged slice has no ratio already.
        let min_events = match self.slo.budgeting {
            Budgeting::Occurrences => self.slo.alerting.min_events,
            _ => 0,
        };
        let parts: Vec<String> = rules
            .iter()
            .map(|rule| {
                let factor = decimal(u64::from(rule.factor_milli), 3);
                let over = |window| {
                    format!(
                        "max({}{filter} > ({factor} * {budget})) without ({WINDOW_LABEL})",
                        sli_metric(whole_millis(window))
                    )
                };
                let mut part = format!(
                    "(\n    {}\n    and\n    {}",
                    over(rule.short),
                    over(rule.long)
                );
                if min_events > 0 {
                    part.push_str(&format!(
                        "\n    and on()\n    (sum(increase({})) >= {min_events})",
                        self.counter(names::SLO_EVENTS, whole_millis(rule.short))
                    ));
                }
                part.push_str("\n)");
                part
            })
            .collect();
        parts.join("\nor\n")
    }

    /// The alert's description: the SLO's own, the objective, and when the
    /// alert fires.
    fn description(&self, rules: &[Rule]) -> String {
        let mut text = String::new();
        if let Some(d) = &self.slo.description {
            text.push_str(d.trim_end_matches('.'));
            text.push_str(". ");
        }
        let budget = u64::from(1_000_000 - self.objective.objective_ppm);
        text.push_str(&format!(
            "Objective: {}. Error budget: {}% of {}. Fires when the error ratio is above ",
            self.promise(),
            decimal(budget, 4),
            match self.slo.budgeting {
                Budgeting::Occurrences => "events",
                _ => "slices",
            }
        ));
        let clauses: Vec<String> = rules
            .iter()
            .map(|r| {
                format!(
                    "{} times the budget over both {} and {}",
                    decimal(u64::from(r.factor_milli), 3),
                    levee_config::format_duration(r.long),
                    levee_config::format_duration(r.short)
                )
            })
            .collect();
        text.push_str(&clauses.join(", or "));
        if self.slo.alerting.min_events > 0 && self.slo.budgeting == Budgeting::Occurrences {
            text.push_str(&format!(
                "; the short window needs at least {} events",
                self.slo.alerting.min_events
            ));
        }
        text.push('.');
        text
    }
}

fn alert_name(severity: AlertSeverity) -> String {
    match severity {
        AlertSeverity::Page => "LeveeSLOPageBurn".to_string(),
        AlertSeverity::Ticket => "LeveeSLOTicketBurn".to_string(),
    }
}

/// Sloth's name for the error ratio over `window`.
fn sli_metric(window: Duration) -> String {
    format!("slo:sli_error:ratio_rate{}", prom_duration(window))
}

/// `d` rounded up to a whole millisecond, Prometheus's precision.
fn whole_millis(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// `d` as Prometheus prints durations (`model.Duration.String`): years and
/// weeks only when exact (`4w`, but `30d`), then days down to milliseconds.
fn prom_duration(d: Duration) -> String {
    let mut ms = u64::try_from(whole_millis(d).as_millis()).unwrap_or(u64::MAX);
    let day = DAY * 1_000;
    let mut out = String::new();
    for (unit, mult, exact) in [
        ("y", 365 * day, true),
        ("w", 7 * day, true),
        ("d", day, false),
        ("h", HOUR * 1_000, false),
        ("m", MINUTE * 1_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ] {
        if exact && ms % mult != 0 {
            continue;
        }
        let n = ms / mult;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            ms -= n * mult;
        }
    }
    out
}

/// `value / 10^scale` as an exact decimal without trailing zeros.
fn decimal(value: u64, scale: u32) -> String {
    let unit = 10u64.pow(scale);
    let (whole, frac) = (value / unit, value % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = scale as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// A period in days: exact for whole days and most fractions, else to a
/// millionth.
fn days(period: Duration) -> String {
    let millionths = (period.as_millis() * 1_000_000 + 43_200_000) / 86_400_000;
    decimal(u64::try_from(millionths).unwrap_or(u64::MAX), 6)
}

/// `s` as a PromQL string literal. Anything but printable ASCII is escaped,
/// so expressions stay on their lines and need no YAML escaping.
fn promql_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// `s` with Go template actions disarmed: Prometheus expands alert labels
/// and annotations as templates, and a literal `{{` would start one.
fn template_text(s: &str) -> String {
    s.replace("{{", "{{ \"{{\" }}")
}

/// `s` as a double-quoted YAML scalar.
fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A mapping key: plain when YAML reads it as that string, else quoted.
fn yaml_key(k: &str) -> String {
    const WORDS: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "",
    ];
    let plain = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !WORDS.contains(&k.to_ascii_lowercase().as_str());
    if plain {
        k.to_string()
    } else {
        yaml_str(k)
    }
}

/// The rules file being written.
#[derive(Default)]
struct Yaml {
    out: String,
}

impl Yaml {
    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.out.push(' ');
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn group(&mut self, name: &str) {
        self.line(0, &format!("- name: {}", yaml_str(name)));
        self.line(2, "rules:");
    }

    fn record(&mut self, record: &str, expr: &str, labels: &[(String, String)]) {
        self.line(2, &format!("- record: {}", yaml_str(record)));
        self.expr(expr);
        self.map("labels", labels);
    }

    fn alert(
        &mut self,
        alert: &str,
        expr: &str,
        pending_for: Duration,
        labels: &[(String, String)],
        annotations: &[(String, String)],
    ) {
        self.line(2, &format!("- alert: {}", yaml_str(alert)));
        self.expr(expr);
        if !pending_for.is_zero() {
            self.line(
                4,
                &format!("for: {}", yaml_str(&prom_duration(pending_for))),
            );
        }
        self.map("labels", labels);
        self.map("annotations", annotations);
    }

    /// An expression: a literal block when it spans lines or quotes (it
    /// holds only printable ASCII, see [`promql_str`]), else a quoted
    /// string.
    fn expr(&mut self, expr: &str) {
        if expr.contains(['\n', '"']) {
            self.line(4, "expr: |-");
            for l in expr.lines() {
                self.line(6, l);
            }
        } else {
            self.line(4, &format!("expr: {}", yaml_str(expr)));
        }
    }

    fn map(&mut self, key: &str, entries: &[(String, String)]) {
        if entries.is_empty() {
            return;
        }
        self.line(4, &format!("{key}:"));
        for (k, v) in entries {
            self.line(6, &format!("{}: {}", yaml_key(k), yaml_str(v)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_prometheus_prints_them() {
        let cases = [
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(DAY), "1d"),
            (Duration::from_secs(3 * DAY), "3d"),
            (Duration::from_secs(7 * DAY), "1w"),
            (Duration::from_secs(28 * DAY), "4w"),
            (Duration::from_secs(30 * DAY), "30d"),
            (Duration::from_secs(365 * DAY), "1y"),
            (Duration::from_secs(36 * HOUR), "1d12h"),
            (Duration::from_millis(1_500), "1s500ms"),
            (Duration::from_micros(1), "1ms"),
        ];
        for (d, s) in cases {
            assert_eq!(prom_duration(d), s, "{d:?}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(14_400, 3), "14.4");
        assert_eq!(decimal(13_440, 3), "13.44");
        assert_eq!(decimal(6_000, 3), "6");
        assert_eq!(decimal(933, 3), "0.933");
        assert_eq!(decimal(1_000, 6), "0.001");
        assert_eq!(decimal(999_000, 6), "0.999");
        assert_eq!(decimal(999_500, 4), "99.95");
        assert_eq!(days(Duration::from_secs(28 * DAY)), "28");
        assert_eq!(days(Duration::from_secs(36 * HOUR)), "1.5");
        assert_eq!(days(Duration::from_secs(HOUR)), "0.041667");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(promql_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(promql_str("é\n"), r#""\u00e9\u000a""#);
        assert_eq!(yaml_str("a\"b\\\n"), r#""a\"b\\\n""#);
        assert_eq!(template_text("{{ x }}"), r#"{{ "{{" }} x }}"#);
        assert_eq!(yaml_key("team"), "team");
        assert_eq!(yaml_key("yes"), r#""yes""#);
    }
}
