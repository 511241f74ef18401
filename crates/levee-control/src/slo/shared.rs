//! What a replica in a fleet takes from the others beyond each bucket's
//! counts (`fleet` has the Redis side): catching up when it joins or
//! restarts (the buckets it missed, then the alert states and incidents
//! the leader last published), publishing those when it leads, and the
//! operators' actions taken on any replica.

use super::fleet::{Published, SloFleet};
use super::incidents::{stage_incident, TrackedIncident};
use super::series::{absorb_counts, alert_row, excluded, restore_alerts};
use super::{EngineState, SloEngine};
use levee_core::Nanos;
use levee_slo::Severity;
use levee_store::IncidentActionRow;

/// Incidents the leader publishes: the most recent.
const PUBLISHED_INCIDENTS: usize = 100;

impl SloEngine {
    /// Before this replica's first evaluation in the fleet (of the bucket
    /// ending at `end`): the fleet's buckets it has not absorbed, then,
    /// when the leader published recently, its alert states and
    /// incidents, so this replica decides as the others from now on.
    pub(super) async fn catch_up(
        &self,
        fleet: &SloFleet,
        state: &mut EngineState,
        end: Nanos,
        bucket_ns: u64,
    ) {
        let exclusions = self.exclusions.load();
        // Each series has its buckets up to the end of its newest one
        // (from its store, or absorbed before a reload).
        let have_until = |s: &super::series::Series| s.buckets.newest().map(|n| n + bucket_ns);
        let fleet_since = fleet.since().await.unwrap_or(end);
        let kept_from = end.saturating_sub(super::fleet::BUCKET_TTL.as_nanos() as u64);
        let oldest_missing = state
            .series
            .values()
            .filter(|s| s.active)
            .map(|s| have_until(s).map_or(0, |h| h + bucket_ns))
            .min()
            .unwrap_or(end);
        let first = fleet_since.max(kept_from).max(oldest_missing);
        let first = first.next_multiple_of(bucket_ns);
        let ends = (first..end).step_by(usize::try_from(bucket_ns).unwrap_or(usize::MAX));
        let mut absorbed = 0usize;
        match fleet.history(ends).await {
            Some(history) => {
                for (bucket_end, totals) in history {
                    for series in state.series.values_mut().filter(|s| s.active) {
                        if have_until(series).is_some_and(|h| bucket_end <= h) {
                            continue;
                        }
                        let counts = totals.get(&series.def.id).copied().unwrap_or((0, 0));
                        let excluded = excluded(series, bucket_end - 1, &exclusions);
                        absorb_counts(series, bucket_end, &mut state.batch, excluded, counts);
                    }
                    absorbed += 1;
                }
            }
            None => {
                tracing::warn!(fleet = %fleet.name(), "cannot read the fleet's SLO history; this replica evaluates from now on");
            }
        }
        let Some(published) = fleet.published().await else {
            tracing::info!(fleet = %fleet.name(), buckets = absorbed, "joined the fleet's SLOs");
            return;
        };
        // A state older than two leases is a fleet that stopped: the
        // store's (restored already) is as good.
        let recent = end.saturating_sub(2 * fleet.lease_ns() + bucket_ns);
        if published.end < recent {
            tracing::info!(fleet = %fleet.name(), buckets = absorbed, "joined the fleet's SLOs; its published state is old, the store's stands");
            return;
        }
        for series in state.series.values_mut().filter(|s| s.active) {
            let rows: Vec<_> = published
                .alerts
                .iter()
                .filter(|r| r.slo == series.def.id)
                .cloned()
                .collect();
            restore_alerts(&mut series.alerts, &rows);
            state.batch.alerts.extend(rows);
        }
        for row in published.incidents {
            state.next_incident_id = state.next_incident_id.max(row.id + 1);
            stage_incident(&mut state.batch, &row);
            let settled = row.recover_ns.is_some() && row.resolve_ns.is_some();
            match state.incidents.iter_mut().find(|i| i.row.id == row.id) {
                Some(known) => {
                    known.row = row;
                    known.settled = settled;
                }
                None => state.incidents.push(TrackedIncident {
                    row,
                    settled,
                    log: Default::default(),
                }),
            }
        }
        state.incidents.sort_by_key(|i| i.row.id);
        tracing::info!(fleet = %fleet.name(), buckets = absorbed, at = published.end, "joined the fleet's SLOs and took its alert states and incidents");
    }

    /// After a tick this replica led: what it decided, for replicas that
    /// join.
    pub(super) async fn publish(&self, fleet: &SloFleet, state: &mut EngineState, end: Nanos) {
        if !fleet.leads() {
            return;
        }
        let mut published = Published {
            end,
            ..Published::default()
        };
        for series in state.series.values().filter(|s| s.active) {
            for severity in Severity::ALL {
                published.alerts.push(alert_row(
                    &series.def.id,
                    severity,
                    series.alerts.state(severity),
                ));
            }
        }
        let skip = state.incidents.len().saturating_sub(PUBLISHED_INCIDENTS);
        published.incidents = state.incidents[skip..]
            .iter()
            .map(|i| i.row.clone())
            .collect();
        fleet.publish(&published).await;
    }

    /// Takes the operators' actions other replicas shared since the last
    /// read into the incidents' logs, and queues them for the store.
    pub(super) async fn read_actions(&self, fleet: &SloFleet, state: &mut EngineState) {
        let Some(rows) = fleet.actions().await else {
            return;
        };
        for row in rows {
            let Some(tracked) = state
                .incidents
                .iter_mut()
                .find(|i| i.row.id == row.incident_id)
            else {
                continue;
            };
            if !tracked.log.apply(&row) {
                continue;
            }
            if matches!(row.kind.as_str(), "ack" | "resolve") {
                self.notifier.stop_escalation(row.incident_id);
            }
            state.unstored_actions.push(row);
        }
    }

    /// Writes the actions read from the fleet (after the incidents they
    /// belong to); kept for the next tick when the store fails.
    pub(super) async fn store_actions(&self, state: &mut EngineState) {
        if state.unstored_actions.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut state.unstored_actions);
        if let Err(e) = self.write_actions(state, rows.clone()).await {
            tracing::warn!(error = %e, "storing operators' actions from the fleet failed; retrying next tick");
            state.unstored_actions = rows;
        }
    }

    /// Writes `rows` to the store, off the async threads.
    pub(super) async fn write_actions(
        &self,
        state: &mut EngineState,
        rows: Vec<IncidentActionRow>,
    ) -> Result<(), levee_store::StoreError> {
        let Some(mut store) = state.store.take() else {
            return Ok(());
        };
        let (store, result) = tokio::task::spawn_blocking(move || {
            let result = store.write_incident_actions(&rows);
            (store, result)
        })
        .await
        .expect("store writes do not panic");
        state.store = Some(store);
        result
    }
}
