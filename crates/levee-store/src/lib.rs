//! Levee's persistence: what the SLO engine and the rollouts must keep
//! across restarts, in an embedded SQLite file by default.
//!
//! - [`Store`]: the trait the engine writes through, one [`Batch`] per
//!   flush (all or nothing) and one [`Snapshot`] on start. The row types
//!   are plain owned structs; no SQLite type appears in the public API.
//! - [`SqliteStore`]: the implementation, one file in WAL mode, marked
//!   with its own `application_id` and schema version so that another
//!   program's database is refused rather than changed, migrated by an
//!   ordered list of steps, and bounded in size by [`Retention`].
//! - [`PostgresStore`]: the same rows in a PostgreSQL database that a
//!   fleet of gateways shares, with a `levee_meta` table for identity and
//!   schema version, connect and statement timeouts, and reconnection
//!   after a failure (see its module for what happens when the database
//!   is slow or down).
//! - Rollouts: [`Store::load_rollouts`] and [`Store::write_rollouts`]
//!   keep each route's [`RolloutRow`], so a gateway restarted in the middle
//!   of a rollout resumes at the same step. They are apart from
//!   [`Snapshot`] and [`Batch`], which are the SLO engine's.
//! - Incident actions: [`Store::load_incident_actions`] and
//!   [`Store::write_incident_actions`] keep what operators did about an
//!   incident ([`IncidentActionRow`]: acknowledged, noted, resolved). They
//!   are written at once, when the operator acts, not with the engine's
//!   next batch, so an acknowledgement the API confirmed is on disk.
//! - Route history: [`Store::load_history`] and [`Store::write_history`]
//!   keep each route's latency and traffic points ([`HistoryRow`]), so a
//!   restarted gateway still shows the last hour and day.
//! - [`JobLog`]: async routes' jobs (issue 16), in a SQLite file of
//!   their own with group commit: one writer thread commits whatever has
//!   queued since its last commit in one transaction and then calls each
//!   write's completion callback. Not part of [`Store`], nor of backups.
//! - [`backup()`], [`verify()`] and [`restore()`]: the library side of
//!   `levee backup FILE` and `levee restore FILE --verify`. A backup is
//!   taken online (a running gateway keeps writing) and carries a manifest
//!   of row counts and a checksum; a restore verifies a scratch copy first
//!   and refuses a database that is in use. [`backup_postgres()`] and
//!   [`restore_postgres()`] do the same for a [`PostgresStore`] through
//!   the store's own export (`export`): the backup is the same kind of
//!   SQLite file, verified the same way, so history moves between the
//!   backends.
//!
//! # Numbers
//!
//! Every `u64` (counts, nanosecond times, ids) is stored in SQLite's signed
//! 64-bit `INTEGER` with the same bits (`v as i64`), so every value round
//! trips, and values below 2^63 (all real ones: nanosecond UNIX times fit
//! until 2262) read naturally in the `sqlite3` shell. The comparisons the
//! store makes itself (retention, newest incidents, the largest incident
//! id, the `total >= good` check) are unsigned.
//!
//! # Layout of the file
//!
//! | table | primary key | holds |
//! |---|---|---|
//! | `meta` | `key` | `schema_version`, `max_incident_id` |
//! | `slo_buckets` | `(slo, coarse, start_ns)` | good/total counts per bucket, `CHECK (total >= good)` |
//! | `slo_alerts` | `(slo, severity)` | alert state and when it began |
//! | `slo_incidents` | `id` | one row per incident |
//! | `slo_incident_labels` | `(incident_id, position)` | an incident's labels in order, deleted with it |
//! | `rollouts` | `route` | a route's rollout state (opaque JSON, kept as is) and when it was written; since schema version 2 |
//! | `route_history` | `(route, series, coarse, start_ns)` | one step of a route's (or one version's) requests, errors and latency buckets as `index:count` text; since schema version 5 |
//! | `slo_incident_actions` | `(incident_id, seq)` | an operator's acknowledgement, note or resolution of an incident, in order, deleted with it; since schema version 3 |
//!
//! All tables are `STRICT`. A backup adds a `backup_manifest` table (see
//! [`backup()`]), which a restore removes.

mod backup;
mod checksum;
mod error;
mod export;
mod jobs;
mod postgres;
mod schema;
mod sqlite;

pub use backup::{
    backup, backup_postgres, restore, restore_postgres, verify, BackupReport,
    PostgresRestoreReport, RestoreReport, VerifyReport,
};
pub use error::{PostgresError, SqliteError, StoreError};
pub use jobs::{
    JobDurability, JobLog, JobLogStats, JobRecord, JobRecordState, JobWrite, WriteDone,
};
pub use postgres::{PostgresStore, PostgresTimeouts, POSTGRES_SCHEMA_VERSION};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use sqlite::SqliteStore;

/// The good and total event counts of one SLO time bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BucketRow {
    /// The SLO's name.
    pub slo: String,
    /// Whether this is a coarse (downsampled) bucket rather than a fine one.
    pub coarse: bool,
    /// The bucket's start, in nanoseconds since the UNIX epoch.
    pub start_ns: u64,
    /// Good events; never more than `total`.
    pub good: u64,
    /// All events.
    pub total: u64,
}

/// The state of one alert (an SLO at one severity).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct AlertRow {
    /// The SLO's name.
    pub slo: String,
    /// The severity, e.g. `page` or `ticket`.
    pub severity: String,
    /// The alert state, e.g. `firing`.
    pub state: String,
    /// When the alert entered `state`, in nanoseconds since the UNIX epoch.
    pub since_ns: u64,
}

/// One incident, as the engine tracks it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IncidentRow {
    /// Assigned by the engine; see [`Snapshot::max_incident_id`] for
    /// keeping ids unique across restarts.
    pub id: u64,
    /// The SLO's name.
    pub slo: String,
    /// The severity of the alert that opened it.
    pub severity: String,
    /// When the bad events began, in nanoseconds since the UNIX epoch.
    pub start_ns: u64,
    /// Whether `start_ns` is clipped to the oldest bucket still kept.
    pub start_clipped: bool,
    /// When the alert fired.
    pub detect_ns: u64,
    /// When the SLI recovered, if it has.
    pub recover_ns: Option<u64>,
    /// When the alert resolved, if it has.
    pub resolve_ns: Option<u64>,
    /// Bad events during the incident.
    pub bad_events: u64,
    /// Error budget spent, in parts per million of the period's budget.
    pub budget_spent_ppm: u64,
    /// The runbook link, if the SLO has one.
    pub runbook: Option<String>,
    /// Labels, in order; kept in the `slo_incident_labels` table, one row
    /// per pair, so order and duplicates survive.
    pub labels: Vec<(String, String)>,
}

/// One route's rollout state, as the control plane saves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutRow {
    /// The route's name; the primary key.
    pub route: String,
    /// The rollout's state: a JSON document the store keeps as is,
    /// without parsing or validating it.
    pub state: String,
    /// When the state was written, in nanoseconds since the UNIX epoch.
    pub updated_ns: u64,
}

/// One thing an operator did about an incident.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IncidentActionRow {
    /// The incident; it must be stored (by [`Store::write`]) before its
    /// actions are.
    pub incident_id: u64,
    /// Its place among the incident's actions, from 0; with the incident,
    /// the primary key.
    pub seq: u32,
    /// `ack`, `note` or `resolve`; the table refuses anything else.
    pub kind: String,
    /// Who did it, as they named themselves.
    pub actor: String,
    /// When, in nanoseconds since the UNIX epoch.
    pub at_ns: u64,
    /// The note's text, or a resolution's optional message.
    pub message: Option<String>,
}

/// One post of the status page (an operator-written incident or a
/// scheduled maintenance), as the control plane saves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusPostRow {
    /// The post's number; the primary key.
    pub id: u64,
    /// The post: a JSON document the store keeps as is.
    pub doc: String,
    /// When it was written, in nanoseconds since the UNIX epoch.
    pub updated_ns: u64,
}

/// One step of a route's latency and traffic history: what the route (or
/// one of its versions) served in a 10-second or 5-minute step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HistoryRow {
    /// The route's name.
    pub route: String,
    /// `route` for the whole route, or a version: `stable`, `baseline`,
    /// `canary`. Kept as given.
    pub series: String,
    /// Whether this is a 5-minute point rather than a 10-second one.
    pub coarse: bool,
    /// The step's start, in nanoseconds since the UNIX epoch.
    pub start_ns: u64,
    /// Requests answered in the step.
    pub requests: u64,
    /// Of those, the failures.
    pub errors: u64,
    /// The non-empty latency buckets as `(bucket, count)`, ascending by
    /// bucket, each bucket once; the store keeps them as given.
    pub latency: Vec<(u16, u64)>,
}

/// One write of the route history: points upserted, then old ones pruned,
/// in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryBatch {
    /// Upserted by `(route, series, coarse, start_ns)`; the counts and
    /// buckets replace the stored ones.
    pub points: Vec<HistoryRow>,
    /// Retention to apply after the upserts.
    pub prune: Option<HistoryRetention>,
}

impl HistoryBatch {
    /// Whether the batch would change nothing.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.prune.is_none()
    }
}

/// Which history points to delete, across all routes (also those no
/// longer configured). Times are nanoseconds since the UNIX epoch,
/// compared unsigned; `0` deletes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HistoryRetention {
    /// 10-second points that start before this are deleted.
    pub fine_before_ns: u64,
    /// 5-minute points that start before this are deleted.
    pub coarse_before_ns: u64,
}

/// Everything the SLO engine keeps, as [`Store::load`] returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// In primary-key order: by SLO, fine before coarse, then start.
    pub buckets: Vec<BucketRow>,
    /// In primary-key order: by SLO, then severity.
    pub alerts: Vec<AlertRow>,
    /// By id.
    pub incidents: Vec<IncidentRow>,
    /// The largest incident id ever written, even if retention has since
    /// removed that incident: the engine continues numbering after it.
    pub max_incident_id: Option<u64>,
}

/// One flush: everything changed since the last one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Upserted by `(slo, coarse, start_ns)`; `good` and `total` replace
    /// the stored ones.
    pub buckets: Vec<BucketRow>,
    /// Upserted by `(slo, severity)`.
    pub alerts: Vec<AlertRow>,
    /// Upserted by `id`, labels included (they replace the stored ones).
    pub incidents: Vec<IncidentRow>,
    /// Retention to apply after the upserts, in the same transaction.
    pub prune: Option<Retention>,
}

impl Batch {
    /// Whether the batch would change nothing.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
            && self.alerts.is_empty()
            && self.incidents.is_empty()
            && self.prune.is_none()
    }
}

/// What to delete, across all SLOs (also those no longer configured, whose
/// history is kept until it ages out). Times are nanoseconds since the UNIX
/// epoch and compared unsigned; `0` deletes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Retention {
    /// Fine buckets that start before this are deleted.
    pub fine_before_ns: u64,
    /// Coarse buckets that start before this are deleted.
    pub coarse_before_ns: u64,
    /// Incidents resolved before this are deleted (open ones are kept).
    pub incidents_before_ns: u64,
    /// Then only the newest incidents (largest ids) are kept, this many,
    /// open or not (`usize::MAX` keeps all).
    pub max_incidents: usize,
}

/// Where the control plane keeps its state: the SLO engine's, the
/// rollouts', the status page's posts and the route history's.
pub trait Store: Send + 'static {
    /// Reads everything the SLO engine stored (not the rollouts).
    fn load(&mut self) -> Result<Snapshot, StoreError>;

    /// Applies one batch in one transaction: all of it or, on error, none.
    fn write(&mut self, batch: &Batch) -> Result<(), StoreError>;

    /// Reads every route's rollout state, ordered by route (byte order).
    fn load_rollouts(&mut self) -> Result<Vec<RolloutRow>, StoreError>;

    /// In one transaction, all or nothing: upserts `upsert` by route (the
    /// state and time replace the stored ones), then deletes the routes in
    /// `remove` (a route in both ends up removed; an unknown one is no
    /// error).
    fn write_rollouts(
        &mut self,
        upsert: &[RolloutRow],
        remove: &[String],
    ) -> Result<(), StoreError>;

    /// Reads every incident's operator actions, by incident id (unsigned)
    /// then `seq`.
    fn load_incident_actions(&mut self) -> Result<Vec<IncidentActionRow>, StoreError>;

    /// Stores `actions` in one transaction, all or nothing; an action whose
    /// `(incident_id, seq)` is stored already replaces it. An action of an
    /// incident that is not stored is an error.
    fn write_incident_actions(&mut self, actions: &[IncidentActionRow]) -> Result<(), StoreError>;

    /// Reads every status page post, by id.
    fn load_status_posts(&mut self) -> Result<Vec<StatusPostRow>, StoreError>;

    /// In one transaction: upserts `upsert` by id, then deletes the ids in
    /// `remove` (an unknown one is no error).
    fn write_status_posts(
        &mut self,
        upsert: &[StatusPostRow],
        remove: &[u64],
    ) -> Result<(), StoreError>;

    /// Reads every route history point, ordered by route, series (byte
    /// order), fine before coarse, then start (unsigned).
    fn load_history(&mut self) -> Result<Vec<HistoryRow>, StoreError>;

    /// Applies one history batch in one transaction: all of it or, on
    /// error, none.
    fn write_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError>;

    /// Where the store is, for logs, e.g. `sqlite:/var/lib/levee/levee.db`.
    fn describe(&self) -> String;
}
