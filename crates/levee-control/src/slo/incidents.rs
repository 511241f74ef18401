//! Incidents as the tick sees them: a page that fires opens one, traced
//! back through the series' buckets to where the burn began; it is
//! followed until it recovers, and closed when the alert resolves or the
//! SLO leaves the config. What operators did about each (`actions`) rides
//! along.

use super::actions::OperatorLog;
use super::series::Series;
use super::tick::Ledger;
use levee_core::Nanos;
use levee_slo::{incident, AlertState, Severity, Transition};
use levee_store::{Batch, IncidentRow};

/// An incident and whether it still changes.
#[derive(Debug, Clone)]
pub(super) struct TrackedIncident {
    pub(super) row: IncidentRow,
    /// Recovered and resolved: nothing about it changes any more.
    pub(super) settled: bool,
    /// Acknowledgement, notes and resolution by operators.
    pub(super) log: OperatorLog,
}

/// Puts `row` in the next write, replacing an older copy.
pub(super) fn stage_incident(batch: &mut Batch, row: &IncidentRow) {
    batch.incidents.retain(|r| r.id != row.id);
    batch.incidents.push(row.clone());
}

/// The incident opened by `firing`, traced in the series' buckets; with
/// `previous`, its id, start and resolution are kept.
pub(super) fn trace_incident(
    series: &Series,
    id: u64,
    firing: &Transition,
    previous: Option<&IncidentRow>,
    now: Nanos,
) -> IncidentRow {
    let traced = incident::incidents(
        std::slice::from_ref(firing),
        Severity::Page,
        &series.buckets,
        series.def.objective,
        &series.def.incident_options(now),
    );
    let i = traced.first().copied();
    let (start, clipped) = match (previous, i) {
        (Some(p), _) => (p.start_ns, p.start_clipped),
        (None, Some(i)) => (i.start, i.start_clipped),
        (None, None) => (firing.at, false),
    };
    IncidentRow {
        id,
        slo: series.def.id.clone(),
        severity: "page".to_string(),
        start_ns: start,
        start_clipped: clipped,
        detect_ns: firing.at,
        // Recovery never comes before the start that was first recorded.
        recover_ns: i.and_then(|i| i.recover).map(|r| r.max(start)),
        resolve_ns: previous.and_then(|p| p.resolve_ns),
        bad_events: i.map_or(0, |i| i.bad_events),
        budget_spent_ppm: i.map_or(0, |i| i.budget_spent_ppm),
        runbook: series.def.runbook.clone(),
        labels: series.def.labels.clone(),
    }
}

impl Ledger<'_> {
    /// Opens the incident a page alert's firing `t` starts; its id.
    pub(super) fn open_incident(&mut self, series: &Series, t: &Transition) -> u64 {
        let id = self
            .fleet_incident_id
            .take()
            .unwrap_or(*self.next_incident_id);
        *self.next_incident_id = (*self.next_incident_id).max(id + 1);
        series.metrics.incidents.inc();
        let row = trace_incident(series, id, t, None, self.end);
        tracing::warn!(slo = %series.def.id, incident = id, "SLO page alert fired; incident opened");
        stage_incident(self.batch, &row);
        // In a fleet, the incident may be known already (taken from the
        // leader's published state).
        match self.incidents.iter_mut().find(|i| i.row.id == id) {
            Some(known) => known.row = row,
            None => self.incidents.push(TrackedIncident {
                row,
                settled: false,
                log: OperatorLog::default(),
            }),
        }
        id
    }

    /// Resolves the latest open incident of `slo` at `at`; its id.
    pub(super) fn resolve_incident(&mut self, slo: &str, at: Nanos) -> Option<u64> {
        let open = self
            .incidents
            .iter_mut()
            .rev()
            .find(|i| i.row.slo == slo && i.row.resolve_ns.is_none())?;
        open.row.resolve_ns = Some(at);
        open.settled = open.row.recover_ns.is_some();
        stage_incident(self.batch, &open.row);
        Some(open.row.id)
    }

    /// Closes every open incident of `slo` now (recovered now too, if it
    /// had not); the id of the last.
    pub(super) fn close_incidents(&mut self, slo: &str) -> Option<u64> {
        let end = self.end;
        let mut last = None;
        for open in self
            .incidents
            .iter_mut()
            .filter(|i| i.row.slo == slo && i.row.resolve_ns.is_none())
        {
            open.row.resolve_ns = Some(end);
            open.row.recover_ns.get_or_insert(end);
            open.settled = true;
            last = Some(open.row.id);
            stage_incident(self.batch, &open.row);
        }
        last
    }

    /// Follows the incidents of `series` not yet recovered: their
    /// recovery, bad events and budget spent still change. Once recovered
    /// they keep those figures (only the alert's resolution is left).
    pub(super) fn follow_incidents(&mut self, series: &Series) {
        for tracked in self
            .incidents
            .iter_mut()
            .filter(|i| !i.settled && i.row.recover_ns.is_none() && i.row.slo == series.def.id)
        {
            if tracked.row.detect_ns < series.buckets.fine_start() {
                // Its buckets are gone (a long outage of Levee itself):
                // tracing again would only lose what was recorded.
                tracked.settled = true;
                continue;
            }
            let firing = Transition {
                severity: Severity::Page,
                from: AlertState::Inactive,
                to: AlertState::Firing {
                    since: tracked.row.detect_ns,
                },
                at: tracked.row.detect_ns,
            };
            let updated = trace_incident(
                series,
                tracked.row.id,
                &firing,
                Some(&tracked.row),
                self.end,
            );
            tracked.settled = updated.recover_ns.is_some() && updated.resolve_ns.is_some();
            if updated != tracked.row {
                tracked.row = updated;
                stage_incident(self.batch, &tracked.row);
            }
        }
    }
}
