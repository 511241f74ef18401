//! The schema: identity of a Levee file, the ordered migrations, and the
//! list of data tables that backups count and checksum.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

use crate::error::{sql, StoreError};

/// SQLite's `application_id` of a Levee store: "LEVE" in ASCII.
pub const APPLICATION_ID: i32 = 0x4C45_5645;

/// The schema version this build writes: the number of migration steps.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Migration `i` takes a store from version `i` to `i + 1`. Append only:
/// a released step never changes. All pending steps run in one
/// transaction, together with the new `user_version` and `meta` row.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE meta (
        key TEXT NOT NULL PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE slo_buckets (
        slo TEXT NOT NULL,
        coarse INTEGER NOT NULL CHECK (coarse IN (0, 1)),
        start_ns INTEGER NOT NULL,
        good INTEGER NOT NULL,
        total INTEGER NOT NULL,
        -- total >= good, compared unsigned (u64 stored with the same bits)
        CHECK (CASE WHEN (total < 0) = (good < 0) THEN total >= good ELSE total < 0 END),
        PRIMARY KEY (slo, coarse, start_ns)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE slo_alerts (
        slo TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        since_ns INTEGER NOT NULL,
        PRIMARY KEY (slo, severity)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE slo_incidents (
        id INTEGER PRIMARY KEY,
        slo TEXT NOT NULL,
        severity TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        start_clipped INTEGER NOT NULL CHECK (start_clipped IN (0, 1)),
        detect_ns INTEGER NOT NULL,
        recover_ns INTEGER,
        resolve_ns INTEGER,
        bad_events INTEGER NOT NULL,
        budget_spent_ppm INTEGER NOT NULL,
        runbook TEXT
    ) STRICT;

    CREATE TABLE slo_incident_labels (
        incident_id INTEGER NOT NULL REFERENCES slo_incidents (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (incident_id, position)
    ) STRICT, WITHOUT ROWID;
    ",
    // 2: each route's rollout state, an opaque JSON document.
    "
    CREATE TABLE rollouts (
        route TEXT NOT NULL PRIMARY KEY,
        state TEXT NOT NULL,
        updated_ns INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    ",
    // 3: what operators did about an incident (acknowledged it, wrote a
    // note, resolved it), in order, deleted with the incident.
    "
    CREATE TABLE slo_incident_actions (
        incident_id INTEGER NOT NULL REFERENCES slo_incidents (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL CHECK (seq >= 0),
        kind TEXT NOT NULL CHECK (kind IN ('ack', 'note', 'resolve')),
        actor TEXT NOT NULL,
        at_ns INTEGER NOT NULL,
        message TEXT,
        PRIMARY KEY (incident_id, seq)
    ) STRICT, WITHOUT ROWID;
    ",
    // 4: what operators post on the status page (incidents they write,
    // scheduled maintenance), each an opaque JSON document.
    "
    CREATE TABLE status_posts (
        id INTEGER NOT NULL PRIMARY KEY,
        doc TEXT NOT NULL,
        updated_ns INTEGER NOT NULL
    ) STRICT;
    ",
    // 5: each route's latency and traffic history, one row per step:
    // 10-second points (`coarse` 0) and 5-minute points (`coarse` 1).
    // `series` is `route` (the whole route) or a version (`stable`,
    // `baseline`, `canary`). `latency` holds only the non-empty buckets of
    // the judge's layout as `index:count` pairs, ascending, separated by
    // commas (empty when no request was counted).
    "
    CREATE TABLE route_history (
        route TEXT NOT NULL,
        series TEXT NOT NULL,
        coarse INTEGER NOT NULL CHECK (coarse IN (0, 1)),
        start_ns INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        latency TEXT NOT NULL,
        PRIMARY KEY (route, series, coarse, start_ns)
    ) STRICT, WITHOUT ROWID;
    ",
];

/// The data tables with the order that lists each by primary key, as
/// backups count and checksum them.
pub(crate) const DATA_TABLES: &[(&str, &str)] = &[
    ("meta", "key"),
    ("slo_buckets", "slo, coarse, start_ns"),
    ("slo_alerts", "slo, severity"),
    ("slo_incidents", "id"),
    ("slo_incident_labels", "incident_id, position"),
    ("rollouts", "route"),
    ("slo_incident_actions", "incident_id, seq"),
    ("status_posts", "id"),
    ("route_history", "route, series, coarse, start_ns"),
];

/// What a file claims to be, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) application_id: i32,
    pub(crate) user_version: i64,
    pub(crate) objects: i64,
}

impl Identity {
    pub(crate) fn read(conn: &Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            application_id: conn.pragma_query_value(None, "application_id", |r| r.get(0))?,
            user_version: conn.pragma_query_value(None, "user_version", |r| r.get(0))?,
            objects: conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?,
        })
    }

    /// A new, empty database that may become a Levee store.
    pub(crate) fn is_blank(&self) -> bool {
        self.application_id == 0 && self.user_version == 0 && self.objects == 0
    }

    /// Why this is not a Levee store of a version this build reads, if it
    /// is not.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.application_id != APPLICATION_ID {
            return Some(format!(
                "application_id {:#x}, expected {APPLICATION_ID:#x}: another program's SQLite database",
                self.application_id
            ));
        }
        if self.user_version < 1 || self.user_version > i64::from(SCHEMA_VERSION) {
            return Some(format!(
                "schema version {}, expected {SCHEMA_VERSION}",
                self.user_version
            ));
        }
        None
    }
}

/// Makes `conn` a current Levee store: refuses foreign files, applies the
/// pending migrations in one transaction, and checks `meta` agrees.
pub(crate) fn prepare(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql(path, "starting the migration"))?;
    // Read again under the write lock: another process may have migrated.
    let id = check(&tx, path)?;
    let from = if id.is_blank() {
        0
    } else {
        id.user_version as usize
    };
    for step in &MIGRATIONS[from..] {
        tx.execute_batch(step)
            .map_err(sql(path, "migrating the schema"))?;
    }
    if from < MIGRATIONS.len() {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sql(path, "migrating the schema"))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql(path, "migrating the schema"))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [SCHEMA_VERSION],
        )
        .map_err(sql(path, "migrating the schema"))?;
    }
    let recorded: Option<i64> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(path, "reading the schema version"))?;
    if recorded != Some(i64::from(SCHEMA_VERSION)) {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            reason: format!(
                "meta says schema version {}, the header says {SCHEMA_VERSION}",
                recorded.map_or_else(|| "(none)".to_owned(), |v| v.to_string())
            ),
        });
    }
    tx.commit().map_err(sql(path, "committing the migration"))
}

/// Refuses a file that is neither blank nor a Levee store this build reads.
pub(crate) fn check(conn: &Connection, path: &Path) -> Result<Identity, StoreError> {
    let id = Identity::read(conn).map_err(sql(path, "reading the header"))?;
    if id.is_blank() {
        return Ok(id);
    }
    match id.problem() {
        Some(reason) => Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(id),
    }
}
