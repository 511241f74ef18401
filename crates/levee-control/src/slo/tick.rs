//! One evaluation of every SLO (the tick): drain the data plane's
//! counters into the buckets, evaluate the burn-rate alerts, open, follow
//! and close incidents, queue the notifications, prune old history, then
//! persist and publish. The loop that calls it is [`super::run`].

use super::incidents::TrackedIncident;
use super::report::{build_report, percent, period_name, series_status};
use super::series::{absorb, absorb_counts, alert_row, excluded, layout, severity_name, Series};
use super::{EngineState, SloEngine, ALERTMANAGER_RESEND, DAY, HOUR};
use crate::notify::Notification;
use levee_config::AlertSeverity;
use levee_core::Nanos;
use levee_slo::{AlertState, Severity, Transition};
use levee_store::{Batch, Retention};
use std::sync::Arc;

impl SloEngine {
    /// One evaluation at `now` (Unix nanoseconds): see the module docs.
    pub(crate) async fn tick(&self, now: Nanos) {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let bucket_ns = u64::try_from(state.config.alerting.bucket.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        // Windows end on a bucket boundary; events drained now happened
        // before it and go into the bucket just ended.
        let end = now - now % bucket_ns;
        if end <= state.last_tick || state.awaiting_store {
            return;
        }
        state.last_tick = end;
        let resend = now.saturating_sub(state.last_resend) >= ALERTMANAGER_RESEND.as_nanos() as u64;
        if resend {
            state.last_resend = now;
        }
        if let Some(fleet) = &self.fleet {
            if !state.fleet_joined {
                state.fleet_joined = true;
                self.catch_up(fleet, state, end - bucket_ns, bucket_ns)
                    .await;
            }
            self.read_actions(fleet, state).await;
        }
        let mut ledger = Ledger {
            batch: &mut state.batch,
            incidents: &mut state.incidents,
            next_incident_id: &mut state.next_incident_id,
            fleet_incident_id: None,
            notifications: Vec::new(),
            end,
        };
        let exclusions = self.exclusions.load();
        // In a fleet, this replica's events go to the fleet's bucket and
        // the bucket before (complete by now) is what is evaluated.
        let fleet_totals = match &self.fleet {
            Some(fleet) => Some(share_and_read(fleet, &state.series, end, bucket_ns).await),
            None => None,
        };
        let end = match fleet_totals {
            Some(_) => end - bucket_ns,
            None => end,
        };
        ledger.end = end;
        for series in state.series.values_mut().filter(|s| s.active) {
            let excluded = excluded(series, end - 1, &exclusions);
            match &fleet_totals {
                Some(totals) => {
                    let counts = totals.get(&series.def.id).copied().unwrap_or((0, 0));
                    absorb_counts(series, end, ledger.batch, excluded, counts);
                }
                None => absorb(series, end, ledger.batch, excluded),
            }
            let transitions = series.alerts.evaluate(
                &series.def.policy,
                series
                    .slices
                    .as_ref()
                    .map_or(&series.buckets, |s| s.buckets()),
                series.def.objective,
                end,
            );
            for t in &transitions {
                if let (Some(fleet), Severity::Page, AlertState::Firing { .. }) =
                    (&self.fleet, t.severity, t.to)
                {
                    // Every replica opens this incident: one number for it.
                    ledger.fleet_incident_id = fleet
                        .incident_id(&series.def.id, t.at, *ledger.next_incident_id)
                        .await;
                }
                ledger.transition(series, t);
            }
            if resend {
                ledger.refresh_firing(series, &transitions);
            }
            ledger.follow_incidents(series);
        }
        // SLOs removed from the config: their firing alerts resolve (and
        // say so) and their open incidents close, rather than hang.
        for series in state.series.values_mut().filter(|s| !s.active) {
            ledger.retire(series);
        }
        let notifications = std::mem::take(&mut ledger.notifications);
        match &self.fleet {
            Some(fleet) => {
                fleet
                    .dispatch(notifications, end, |n| self.notifier.send(n))
                    .await;
                self.publish(fleet, state, end).await;
            }
            None => {
                for n in notifications {
                    self.notifier.send(n);
                }
            }
        }
        state.prune_on_the_hour(end);
        self.flush(state).await;
        self.store_actions(state).await;
        let report = build_report(state, end);
        self.report.store(Arc::new(report));
    }
}

impl EngineState {
    /// Once an hour: old buckets and incidents leave the store (and
    /// settled incidents past retention leave memory).
    fn prune_on_the_hour(&mut self, end: Nanos) {
        let hour = end / HOUR.as_nanos() as u64;
        if hour == self.last_prune_hour {
            return;
        }
        self.last_prune_hour = hour;
        let config = &self.config;
        let fine_span = 7 * HOUR;
        let longest = self
            .series
            .values()
            .map(|s| layout(config.alerting.bucket, s.def.period).coarse_span)
            .max()
            .unwrap_or(31 * DAY);
        self.batch.prune = Some(Retention {
            fine_before_ns: end.saturating_sub(fine_span.as_nanos() as u64),
            coarse_before_ns: end.saturating_sub(longest.as_nanos() as u64),
            incidents_before_ns: end
                .saturating_sub(config.store.incident_retention.as_nanos() as u64),
            max_incidents: config.store.max_incidents,
        });
        let keep_from = end.saturating_sub(config.store.incident_retention.as_nanos() as u64);
        self.incidents
            .retain(|i| i.row.resolve_ns.is_none_or(|r| r >= keep_from));
        let excess = self
            .incidents
            .len()
            .saturating_sub(config.store.max_incidents);
        self.incidents.drain(..excess);
    }
}

/// What one tick changes besides the series themselves: the rows to
/// write, the incidents, and the notifications to send.
pub(super) struct Ledger<'a> {
    pub(super) batch: &'a mut Batch,
    pub(super) incidents: &'a mut Vec<TrackedIncident>,
    pub(super) next_incident_id: &'a mut u64,
    /// In a fleet: the number the fleet gave the incident the next page
    /// opens (else this replica numbers it).
    pub(super) fleet_incident_id: Option<u64>,
    pub(super) notifications: Vec<Notification>,
    /// The end of the bucket this tick closes.
    pub(super) end: Nanos,
}

impl Ledger<'_> {
    /// Records an alert's state change: a page that fires opens an
    /// incident, a page that resolves closes it; both are announced.
    fn transition(&mut self, series: &mut Series, t: &Transition) {
        self.batch
            .alerts
            .push(alert_row(&series.def.id, t.severity, t.to));
        match t.to {
            AlertState::Firing { .. } => {
                let incident =
                    (t.severity == Severity::Page).then(|| self.open_incident(series, t));
                if t.severity == Severity::Ticket {
                    tracing::warn!(slo = %series.def.id, "SLO ticket alert fired");
                }
                let announcement = Announcement {
                    severity: t.severity,
                    firing: true,
                    refresh: false,
                    starts_at: t.at,
                    ends_at: None,
                    incident,
                };
                self.announce(series, announcement);
            }
            AlertState::Resolved { at } => {
                let incident = match t.severity {
                    Severity::Page => self.resolve_incident(&series.def.id, at),
                    Severity::Ticket => None,
                };
                tracing::info!(slo = %series.def.id, severity = severity_name(t.severity), "SLO alert resolved");
                let since = match t.from {
                    AlertState::Firing { since } => since,
                    _ => at,
                };
                let announcement = Announcement {
                    severity: t.severity,
                    firing: false,
                    refresh: false,
                    starts_at: since,
                    ends_at: Some(at),
                    incident,
                };
                self.announce(series, announcement);
            }
            _ => {}
        }
    }

    /// Announces again every alert still firing that did not just change,
    /// for Alertmanager.
    fn refresh_firing(&mut self, series: &Series, transitions: &[Transition]) {
        for &severity in &Severity::ALL {
            let AlertState::Firing { since } = series.alerts.state(severity) else {
                continue;
            };
            if transitions.iter().any(|t| t.severity == severity) {
                continue;
            }
            let incident = self
                .incidents
                .iter()
                .rev()
                .find(|i| i.row.slo == series.def.id && i.row.resolve_ns.is_none())
                .map(|i| i.row.id)
                .filter(|_| severity == Severity::Page);
            let announcement = Announcement {
                severity,
                firing: true,
                refresh: true,
                starts_at: since,
                ends_at: None,
                incident,
            };
            self.announce(series, announcement);
        }
    }

    /// A series no longer in the config: each firing alert resolves now,
    /// its open incidents close, and both are announced.
    fn retire(&mut self, series: &mut Series) {
        let end = self.end;
        for &severity in &Severity::ALL {
            let AlertState::Firing { since } = series.alerts.state(severity) else {
                continue;
            };
            let resolved = AlertState::Resolved { at: end };
            series.alerts.restore(severity, resolved);
            self.batch
                .alerts
                .push(alert_row(&series.def.id, severity, resolved));
            let incident = self.close_incidents(&series.def.id);
            tracing::info!(slo = %series.def.id, "SLO removed from the config; its alert is resolved");
            let announcement = Announcement {
                severity,
                firing: false,
                refresh: false,
                starts_at: since,
                ends_at: Some(end),
                incident: incident.filter(|_| severity == Severity::Page),
            };
            self.announce(series, announcement);
        }
        series.metrics.clear();
    }

    fn announce(&mut self, series: &Series, announcement: Announcement) {
        self.notifications
            .push(notification(series, announcement, self.end));
    }
}

/// One alert change (or refresh) to announce.
struct Announcement {
    severity: Severity,
    /// Firing (true) or resolved.
    firing: bool,
    /// A periodic re-send of a firing alert.
    refresh: bool,
    starts_at: Nanos,
    ends_at: Option<Nanos>,
    /// The incident a page opened.
    incident: Option<u64>,
}

/// The notification for `announcement`, with the series' figures at `now`.
fn notification(series: &Series, announcement: Announcement, now: Nanos) -> Notification {
    let Announcement {
        severity,
        firing,
        refresh,
        starts_at,
        ends_at,
        incident,
    } = announcement;
    let status = series_status(series, now);
    let def = &series.def;
    let what = match def.threshold {
        Some(t) => format!(
            "{} of requests within {}",
            percent(def.objective.ppm()),
            levee_config::format_duration(t)
        ),
        None => format!("{} availability", percent(def.objective.ppm())),
    };
    let what = match def.budgeting.slice() {
        Some(slice) => format!(
            "{what}, {} over {} slices",
            def.budgeting.name(),
            levee_config::format_duration(slice)
        ),
        None => what,
    };
    let summary = if firing {
        format!(
            "SLO {} is burning its error budget ({})",
            def.id,
            severity_name(severity)
        )
    } else {
        format!("SLO {} is no longer burning its error budget", def.id)
    };
    let budget = status
        .budget
        .remaining_ratio
        .map_or("unknown".to_string(), |r| format!("{:.1}%", r * 100.0));
    let description = format!(
        "Objective {what} over {}. Error budget left: {budget}.{}",
        period_name(def.period),
        def.description
            .as_ref()
            .map_or(String::new(), |d| format!(" {d}")),
    );
    Notification {
        firing,
        refresh,
        severity: match severity {
            Severity::Page => AlertSeverity::Page,
            Severity::Ticket => AlertSeverity::Ticket,
        },
        slo: def.id.clone(),
        slo_name: def.slo.clone(),
        labels: def.labels.clone(),
        summary,
        description,
        runbook: def.runbook.clone(),
        starts_at,
        ends_at,
        incident,
        status: serde_json::to_value(&status).unwrap_or_default(),
        escalated_from: None,
    }
}

/// A fleet's tick: this replica's events since the last one go to the
/// fleet's bucket ending at `end` (put back on failure, for the next); the
/// fleet's totals of the bucket before it are read (empty when Redis does
/// not answer).
async fn share_and_read(
    fleet: &super::fleet::SloFleet,
    series: &std::collections::BTreeMap<String, Series>,
    end: Nanos,
    bucket_ns: Nanos,
) -> std::collections::HashMap<String, (u64, u64)> {
    let drained = drain_active(series);
    if !fleet.share(end, &drained).await {
        tracing::warn!("cannot share SLO events with the fleet; keeping them for the next tick");
        for (s, (_, good, total)) in series.values().filter(|s| s.active).zip(&drained) {
            s.counter.put_back(*good, *total);
        }
    }
    fleet.totals(end - bucket_ns).await.unwrap_or_else(|| {
        tracing::warn!("cannot read the fleet's SLO events; this bucket is evaluated empty here");
        std::collections::HashMap::new()
    })
}

/// Every active objective's events since the last drain: (id, good, total).
pub(super) fn drain_active(
    series: &std::collections::BTreeMap<String, Series>,
) -> Vec<(String, u64, u64)> {
    series
        .values()
        .filter(|s| s.active)
        .map(|s| {
            let (good, total) = s.counter.drain();
            (s.def.id.clone(), good, total)
        })
        .collect()
}
