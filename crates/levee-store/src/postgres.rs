//! [`PostgresStore`]: the [`Store`] in a PostgreSQL database, which every
//! gateway naming it shares and which outlives any one of them.
//!
//! It keeps the same rows with the same meaning as [`SqliteStore`]
//! (crate::SqliteStore): every `u64` in a `BIGINT` with the same bits,
//! compared unsigned where the store compares; `CHECK (total >= good)`;
//! the same upserts, retention and order of what is loaded. Text key
//! columns are `COLLATE "C"`, so they sort by bytes as SQLite's do.
//! PostgreSQL's text cannot hold a NUL character: a row with one is
//! refused by the server (an error, never a changed value).
//!
//! # Identity and migrations
//!
//! Levee's tables live in the connection's current schema (choose one
//! with `options=-csearch_path=levee` in the URL). `levee_meta` marks them
//! as Levee's (`application_id`, as SQLite's header does) and holds the
//! `schema_version`, the number of [`MIGRATIONS`] applied, and
//! `max_incident_id`. Pending steps run in one transaction under an
//! advisory lock, so gateways starting together migrate once. A schema
//! that is not Levee's, or is newer, is refused and left alone.
//!
//! # Backup and restore
//!
//! Through the store's own export (`crate::export`): every table read in
//! one snapshot into a SQLite backup file, or replaced from one in one
//! transaction under the migrations' advisory lock. Sessions are named
//! `application_name=levee` unless the URL names another: that is how a
//! restore tells that gateways are connected, and refuses.
//!
//! # Why its own runtime
//!
//! The [`Store`] trait is synchronous, and the control plane calls it both
//! from blocking threads and (when opening, and for small writes) from
//! async code. The store drives tokio-postgres on a current-thread runtime
//! of its own rather than using the `postgres` crate (which does the same
//! inside) because that lets every call carry a client-side deadline: a
//! server that stops answering (frozen, or a network that drops packets)
//! costs at most the deadline, after which the connection is dropped. The
//! server's own `statement_timeout` fires first in the common case and
//! keeps the connection. Called from inside a tokio runtime, where blocking
//! on another runtime is forbidden, the call runs on a short-lived scoped
//! thread instead.
//!
//! # When the database is slow or down
//!
//! Every call that fails returns a [`StoreError::Postgres`] and the next
//! call reconnects (checking the schema again). The store keeps nothing:
//! the callers keep what failed and write it again (the SLO engine merges
//! a failed batch into the next one). One connection per store: each
//! control loop opens its own store, and the trait's `&mut self` serialises
//! calls, so a pool would never lend a second connection.
//!
//! No TLS yet: the connection is `NoTls`, and a URL asking for
//! `sslmode=require` fails to connect rather than falling back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Row};

use crate::error::{PostgresError, PostgresFailure, StoreError};
use crate::schema::APPLICATION_ID;
use crate::sqlite::{encode_latency, from_sql, to_sql, with_latency};
use crate::{
    AlertRow, Batch, BucketRow, HistoryBatch, HistoryRetention, HistoryRow, IncidentActionRow,
    IncidentRow, Retention, RolloutRow, Snapshot, StatusPostRow, Store,
};

/// The PostgreSQL schema version this build writes: the number of steps.
pub const POSTGRES_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Migration `i` takes a database from version `i` to `i + 1`. Append
/// only: a released step never changes. All pending steps run in one
/// transaction with the new `schema_version`.
const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's schema version 5 holds.
    r#"
    CREATE TABLE levee_meta (
        key TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        value BIGINT NOT NULL
    );

    CREATE TABLE slo_buckets (
        slo TEXT COLLATE "C" NOT NULL,
        coarse BOOLEAN NOT NULL,
        start_ns BIGINT NOT NULL,
        good BIGINT NOT NULL,
        total BIGINT NOT NULL,
        -- total >= good, compared unsigned (u64 stored with the same bits)
        CONSTRAINT total_at_least_good
            CHECK (CASE WHEN (total < 0) = (good < 0) THEN total >= good ELSE total < 0 END),
        PRIMARY KEY (slo, coarse, start_ns)
    );

    CREATE TABLE slo_alerts (
        slo TEXT COLLATE "C" NOT NULL,
        severity TEXT COLLATE "C" NOT NULL,
        state TEXT NOT NULL,
        since_ns BIGINT NOT NULL,
        PRIMARY KEY (slo, severity)
    );

    CREATE TABLE slo_incidents (
        id BIGINT NOT NULL PRIMARY KEY,
        slo TEXT NOT NULL,
        severity TEXT NOT NULL,
        start_ns BIGINT NOT NULL,
        start_clipped BOOLEAN NOT NULL,
        detect_ns BIGINT NOT NULL,
        recover_ns BIGINT,
        resolve_ns BIGINT,
        bad_events BIGINT NOT NULL,
        budget_spent_ppm BIGINT NOT NULL,
        runbook TEXT
    );

    CREATE TABLE slo_incident_labels (
        incident_id BIGINT NOT NULL REFERENCES slo_incidents (id) ON DELETE CASCADE,
        position BIGINT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (incident_id, position)
    );

    CREATE TABLE rollouts (
        route TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        state TEXT NOT NULL,
        updated_ns BIGINT NOT NULL
    );

    CREATE TABLE slo_incident_actions (
        incident_id BIGINT NOT NULL REFERENCES slo_incidents (id) ON DELETE CASCADE,
        seq BIGINT NOT NULL CHECK (seq >= 0 AND seq <= 4294967295),
        kind TEXT NOT NULL CHECK (kind IN ('ack', 'note', 'resolve')),
        actor TEXT NOT NULL,
        at_ns BIGINT NOT NULL,
        message TEXT,
        PRIMARY KEY (incident_id, seq)
    );

    CREATE TABLE status_posts (
        id BIGINT NOT NULL PRIMARY KEY,
        doc TEXT NOT NULL,
        updated_ns BIGINT NOT NULL
    );

    -- `latency`: the non-empty buckets as `index:count` pairs, ascending,
    -- separated by commas, as in SQLite.
    CREATE TABLE route_history (
        route TEXT COLLATE "C" NOT NULL,
        series TEXT COLLATE "C" NOT NULL,
        coarse BOOLEAN NOT NULL,
        start_ns BIGINT NOT NULL,
        requests BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        latency TEXT NOT NULL,
        PRIMARY KEY (route, series, coarse, start_ns)
    );
    "#,
];

/// The `application_name` of the store's sessions, unless the URL names
/// one: a restore refuses a database that other sessions so named are
/// connected to (gateways, a backup).
pub(crate) const APPLICATION_NAME: &str = "levee";

/// Levee's tables besides `levee_meta`: one of them without `levee_meta`
/// means the schema is someone else's (or damaged), and is left alone.
pub(crate) const TABLES: &[&str] = &[
    "slo_buckets",
    "slo_alerts",
    "slo_incidents",
    "slo_incident_labels",
    "rollouts",
    "slo_incident_actions",
    "status_posts",
    "route_history",
];

const UPSERT_BUCKET: &str = "
    INSERT INTO slo_buckets (slo, coarse, start_ns, good, total) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (slo, coarse, start_ns) DO UPDATE SET good = excluded.good, total = excluded.total";
const UPSERT_ALERT: &str = "
    INSERT INTO slo_alerts (slo, severity, state, since_ns) VALUES ($1, $2, $3, $4)
    ON CONFLICT (slo, severity) DO UPDATE SET state = excluded.state, since_ns = excluded.since_ns";
const UPSERT_INCIDENT: &str = "
    INSERT INTO slo_incidents (id, slo, severity, start_ns, start_clipped, detect_ns,
        recover_ns, resolve_ns, bad_events, budget_spent_ppm, runbook)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (id) DO UPDATE SET slo = excluded.slo, severity = excluded.severity,
        start_ns = excluded.start_ns, start_clipped = excluded.start_clipped,
        detect_ns = excluded.detect_ns, recover_ns = excluded.recover_ns,
        resolve_ns = excluded.resolve_ns, bad_events = excluded.bad_events,
        budget_spent_ppm = excluded.budget_spent_ppm, runbook = excluded.runbook";
const DELETE_LABELS: &str = "DELETE FROM slo_incident_labels WHERE incident_id = $1";
const INSERT_LABEL: &str =
    "INSERT INTO slo_incident_labels (incident_id, position, name, value) VALUES ($1, $2, $3, $4)";
// Unsigned `a < b` on u64 stored with the same bits: the signed order,
// flipped where the signs differ.
const RAISE_MAX_ID: &str = "
    INSERT INTO levee_meta (key, value) VALUES ('max_incident_id', $1)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
    WHERE (levee_meta.value < excluded.value)
        <> ((levee_meta.value < 0) <> (excluded.value < 0))";
const PRUNE_BUCKETS: &str = "
    DELETE FROM slo_buckets WHERE coarse = $1
    AND ((start_ns < $2) <> ((start_ns < 0) <> ($2 < 0)))";
const PRUNE_RESOLVED: &str = "
    DELETE FROM slo_incidents WHERE resolve_ns IS NOT NULL
    AND ((resolve_ns < $1) <> ((resolve_ns < 0) <> ($1 < 0)))";
// Newest first in unsigned order: ids of 2^63 and above are stored negative.
const PRUNE_OLDEST: &str = "
    DELETE FROM slo_incidents WHERE id NOT IN (
        SELECT id FROM slo_incidents ORDER BY id < 0 DESC, id DESC LIMIT $1)";
const UPSERT_ROLLOUT: &str = "
    INSERT INTO rollouts (route, state, updated_ns) VALUES ($1, $2, $3)
    ON CONFLICT (route) DO UPDATE SET state = excluded.state, updated_ns = excluded.updated_ns";
const DELETE_ROLLOUT: &str = "DELETE FROM rollouts WHERE route = $1";
const UPSERT_ACTION: &str = "
    INSERT INTO slo_incident_actions (incident_id, seq, kind, actor, at_ns, message)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (incident_id, seq) DO UPDATE SET kind = excluded.kind, actor = excluded.actor,
        at_ns = excluded.at_ns, message = excluded.message";
const SELECT_ACTIONS: &str = "
    SELECT incident_id, seq, kind, actor, at_ns, message FROM slo_incident_actions
    ORDER BY incident_id < 0, incident_id, seq";
const UPSERT_STATUS_POST: &str = "
    INSERT INTO status_posts (id, doc, updated_ns) VALUES ($1, $2, $3)
    ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_ns = excluded.updated_ns";
const DELETE_STATUS_POST: &str = "DELETE FROM status_posts WHERE id = $1";
const UPSERT_HISTORY: &str = "
    INSERT INTO route_history (route, series, coarse, start_ns, requests, errors, latency)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (route, series, coarse, start_ns) DO UPDATE SET requests = excluded.requests,
        errors = excluded.errors, latency = excluded.latency";
const PRUNE_HISTORY: &str = "
    DELETE FROM route_history WHERE coarse = $1
    AND ((start_ns < $2) <> ((start_ns < 0) <> ($2 < 0)))";

/// How long the store waits for PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostgresTimeouts {
    /// Connecting (TCP and authentication), unless the URL sets
    /// `connect_timeout`; then the schema check on top.
    pub connect: Duration,
    /// The server's `statement_timeout` for each statement of the session.
    /// A whole call (one transaction) is abandoned, and its connection
    /// dropped, when it takes longer than this plus [`CALL_MARGIN`]
    /// (crate::postgres) without an answer.
    pub statement: Duration,
}

impl Default for PostgresTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            statement: Duration::from_secs(5),
        }
    }
}

/// Added to the statement timeout for the client-side deadline of a call,
/// so that the server's own timeout (which keeps the connection) fires
/// first when the server is merely slow.
const CALL_MARGIN: Duration = Duration::from_secs(1);

/// A [`Store`] in a PostgreSQL database; see the module documentation.
pub struct PostgresStore {
    config: Config,
    /// `postgres://user@host:port/db`: for errors and logs, no password.
    location: PathBuf,
    timeouts: PostgresTimeouts,
    /// `None` after a failure: the next call connects again.
    session: Option<Session>,
    /// Always `Some` until dropped; see `Drop`.
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .field("timeouts", &self.timeouts)
            .field("connected", &self.session.is_some())
            .finish()
    }
}

/// One connection: the client and the task that drives its socket.
struct Session {
    client: Client,
    connection: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // A connection abandoned on a deadline may never finish by itself.
        self.connection.abort();
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a
    /// `key=value` string) with the default timeouts, creating Levee's
    /// tables or migrating them. Refuses a schema that is not Levee's or is
    /// newer than this build.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, PostgresTimeouts::default())
    }

    /// [`PostgresStore::open`] with the given timeouts.
    pub fn open_with(url: &str, timeouts: PostgresTimeouts) -> Result<Self, StoreError> {
        let mut config: Config = url.parse().map_err(|e| StoreError::Unsupported {
            // The URL may hold a password: never echo it.
            path: PathBuf::from("postgres"),
            reason: format!("store.url is not a PostgreSQL URL: {e}"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeouts.connect);
        }
        // How a restore tells that gateways are connected (see
        // `restore_postgres`); a URL that names its own wins.
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        let location = PathBuf::from(location(&config));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::io(&location, "start the PostgreSQL client's runtime", e))?;
        let mut store = Self {
            config,
            location,
            timeouts,
            session: None,
            runtime: Some(runtime),
        };
        store.run("connecting", async |_| Ok(()))?;
        Ok(store)
    }

    /// The database's location, without a password, as errors name it.
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// Runs `work` on a connection (made, and its schema checked, if there
    /// is none) within the call's deadline. On a lost connection or a
    /// deadline the connection is dropped, so the next call starts afresh.
    fn run<T: Send>(
        &mut self,
        action: &'static str,
        work: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        self.run_within(action, self.timeouts.statement, work)
    }

    /// [`PostgresStore::run`] with a deadline of `statement` plus the
    /// margin, for a backup or a restore whose statements may take longer
    /// than the session's `statement_timeout` (they raise it with `SET
    /// LOCAL`).
    pub(crate) fn run_within<T: Send>(
        &mut self,
        action: &'static str,
        statement: Duration,
        work: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let session = &mut self.session;
        let (config, location, timeouts) = (&self.config, &self.location, self.timeouts);
        let call = move || {
            runtime.block_on(async move {
                if session.as_ref().is_none_or(|s| s.client.is_closed()) {
                    *session = None;
                    *session = Some(connect(config, location, timeouts).await?);
                }
                let deadline = statement + CALL_MARGIN;
                let client = &mut session.as_mut().expect("connected above").client;
                let outcome = tokio::time::timeout(deadline, work(client)).await;
                let failure = match outcome {
                    Ok(Ok(value)) => return Ok(value),
                    Ok(Err(e)) => PostgresFailure::Client(e),
                    Err(_) => PostgresFailure::TimedOut(deadline),
                };
                let keep = match &failure {
                    PostgresFailure::Client(e) => !e.is_closed(),
                    PostgresFailure::TimedOut(_) => false,
                };
                if !keep || session.as_ref().is_some_and(|s| s.client.is_closed()) {
                    *session = None;
                }
                Err(postgres_error(location, action, failure))
            })
        };
        // Blocking on a runtime from inside another one panics: go aside.
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| match s.spawn(call).join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            })
        } else {
            call()
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.session = None;
        // Dropping a runtime blocks, which panics inside async code (the
        // control plane drops stores there); this does not block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn postgres_error(location: &Path, action: &'static str, failure: PostgresFailure) -> StoreError {
    StoreError::Postgres {
        path: location.to_path_buf(),
        action,
        source: PostgresError(failure),
    }
}

/// `postgres://user@host:port/db`, for errors and logs: never the password.
fn location(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    if user.is_empty() {
        format!("postgres://{host}:{port}/{db}")
    } else {
        format!("postgres://{user}@{host}:{port}/{db}")
    }
}

/// Connects, sets the session's timeouts and makes the schema current.
async fn connect(
    config: &Config,
    location: &Path,
    timeouts: PostgresTimeouts,
) -> Result<Session, StoreError> {
    let connect_timeout = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(timeouts.connect);
    let deadline = connect_timeout + timeouts.statement + CALL_MARGIN;
    let setup = async {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| postgres_error(location, "connecting", PostgresFailure::Client(e)))?;
        let mut session = Session {
            client,
            connection: tokio::spawn(async move {
                // Its error reaches the client as a closed connection.
                let _ = connection.await;
            }),
        };
        // PostgreSQL takes at most i32::MAX milliseconds (24 days).
        let millis = timeouts.statement.as_millis().clamp(1, i32::MAX as u128);
        session
            .client
            .batch_execute(&format!(
                "SET statement_timeout = {millis}; SET lock_timeout = {millis}"
            ))
            .await
            .map_err(|e| {
                postgres_error(location, "setting timeouts", PostgresFailure::Client(e))
            })?;
        migrate(&mut session.client, location).await?;
        Ok(session)
    };
    match tokio::time::timeout(deadline, setup).await {
        Ok(result) => result,
        Err(_) => Err(postgres_error(
            location,
            "connecting",
            PostgresFailure::TimedOut(deadline),
        )),
    }
}

/// Refuses a schema that is not Levee's or is newer, then applies the
/// pending migrations in one transaction.
async fn migrate(client: &mut Client, location: &Path) -> Result<(), StoreError> {
    let pg = |e| postgres_error(location, "migrating the schema", PostgresFailure::Client(e));
    let not_a_store = |reason: String| StoreError::NotAStore {
        path: location.to_path_buf(),
        reason,
    };
    let tx = client.transaction().await.map_err(pg)?;
    // Gateways starting together: the second waits, then finds it done.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&i64::from(APPLICATION_ID)],
    )
    .await
    .map_err(pg)?;
    let has_meta: bool = tx
        .query_one("SELECT to_regclass('levee_meta') IS NOT NULL", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(pg)?;
    let from = if has_meta {
        let rows = tx
            .query(
                "SELECT key, value FROM levee_meta WHERE key IN ('application_id', 'schema_version')",
                &[],
            )
            .await
            .map_err(pg)?;
        let mut meta = HashMap::new();
        for row in rows {
            let key: String = row.try_get(0).map_err(pg)?;
            let value: i64 = row.try_get(1).map_err(pg)?;
            meta.insert(key, value);
        }
        match meta.get("application_id") {
            Some(&id) if id == i64::from(APPLICATION_ID) => {}
            other => {
                return Err(not_a_store(format!(
                    "levee_meta.application_id is {}, expected {APPLICATION_ID:#x}: another program's table",
                    other.map_or_else(|| "missing".to_owned(), |v| format!("{v:#x}"))
                )))
            }
        }
        match meta.get("schema_version") {
            Some(&v) if (1..=i64::from(POSTGRES_SCHEMA_VERSION)).contains(&v) => v as usize,
            other => {
                return Err(not_a_store(format!(
                    "schema version {}, expected {POSTGRES_SCHEMA_VERSION}",
                    other.map_or_else(|| "(none)".to_owned(), i64::to_string)
                )))
            }
        }
    } else {
        for table in TABLES {
            let exists: bool = tx
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(pg)?;
            if exists {
                return Err(not_a_store(format!(
                    "a table {table} exists without levee_meta: another program's, or damaged"
                )));
            }
        }
        0
    };
    if from == MIGRATIONS.len() {
        return tx.commit().await.map_err(pg);
    }
    for step in &MIGRATIONS[from..] {
        tx.batch_execute(step).await.map_err(pg)?;
    }
    tx.execute(
        "INSERT INTO levee_meta (key, value)
         VALUES ('application_id', $1), ('schema_version', $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[
            &i64::from(APPLICATION_ID),
            &i64::from(POSTGRES_SCHEMA_VERSION),
        ],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)
}

impl Store for PostgresStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.run("loading", async |client| read_all(client).await)
    }

    fn write(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run("writing a batch", async |client| {
            write_batch(client, batch).await
        })
    }

    fn load_rollouts(&mut self) -> Result<Vec<RolloutRow>, StoreError> {
        self.run("loading rollouts", async |client| {
            let rows = client
                .query(
                    "SELECT route, state, updated_ns FROM rollouts ORDER BY route",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(RolloutRow {
                        route: r.try_get(0)?,
                        state: r.try_get(1)?,
                        updated_ns: u64_at(r, 2)?,
                    })
                })
                .collect()
        })
    }

    fn write_rollouts(
        &mut self,
        upsert: &[RolloutRow],
        remove: &[String],
    ) -> Result<(), StoreError> {
        if upsert.is_empty() && remove.is_empty() {
            return Ok(());
        }
        self.run("writing rollouts", async |client| {
            let tx = client.transaction().await?;
            if !upsert.is_empty() {
                let st = tx.prepare(UPSERT_ROLLOUT).await?;
                for r in upsert {
                    tx.execute(&st, &[&r.route, &r.state, &to_sql(r.updated_ns)])
                        .await?;
                }
            }
            if !remove.is_empty() {
                let st = tx.prepare(DELETE_ROLLOUT).await?;
                for route in remove {
                    tx.execute(&st, &[route]).await?;
                }
            }
            tx.commit().await
        })
    }

    fn load_incident_actions(&mut self) -> Result<Vec<IncidentActionRow>, StoreError> {
        self.run("loading incident actions", async |client| {
            let rows = client.query(SELECT_ACTIONS, &[]).await?;
            rows.iter()
                .map(|r| {
                    let seq: i64 = r.try_get(1)?;
                    Ok(IncidentActionRow {
                        incident_id: u64_at(r, 0)?,
                        // The table's CHECK keeps it within u32.
                        seq: seq as u32,
                        kind: r.try_get(2)?,
                        actor: r.try_get(3)?,
                        at_ns: u64_at(r, 4)?,
                        message: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    fn write_incident_actions(&mut self, actions: &[IncidentActionRow]) -> Result<(), StoreError> {
        if actions.is_empty() {
            return Ok(());
        }
        self.run("writing incident actions", async |client| {
            let tx = client.transaction().await?;
            let st = tx.prepare(UPSERT_ACTION).await?;
            for a in actions {
                tx.execute(
                    &st,
                    &[
                        &to_sql(a.incident_id),
                        &i64::from(a.seq),
                        &a.kind,
                        &a.actor,
                        &to_sql(a.at_ns),
                        &a.message,
                    ],
                )
                .await?;
            }
            tx.commit().await
        })
    }

    fn load_status_posts(&mut self) -> Result<Vec<StatusPostRow>, StoreError> {
        self.run("loading status page posts", async |client| {
            let rows = client
                .query("SELECT id, doc, updated_ns FROM status_posts", &[])
                .await?;
            let mut posts = rows
                .iter()
                .map(|r| {
                    Ok(StatusPostRow {
                        id: u64_at(r, 0)?,
                        doc: r.try_get(1)?,
                        updated_ns: u64_at(r, 2)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            // Ids are u64 stored with the same bits: SQL would order them signed.
            posts.sort_by_key(|p| p.id);
            Ok(posts)
        })
    }

    fn write_status_posts(
        &mut self,
        upsert: &[StatusPostRow],
        remove: &[u64],
    ) -> Result<(), StoreError> {
        if upsert.is_empty() && remove.is_empty() {
            return Ok(());
        }
        self.run("writing status page posts", async |client| {
            let tx = client.transaction().await?;
            if !upsert.is_empty() {
                let st = tx.prepare(UPSERT_STATUS_POST).await?;
                for p in upsert {
                    tx.execute(&st, &[&to_sql(p.id), &p.doc, &to_sql(p.updated_ns)])
                        .await?;
                }
            }
            if !remove.is_empty() {
                let st = tx.prepare(DELETE_STATUS_POST).await?;
                for id in remove {
                    tx.execute(&st, &[&to_sql(*id)]).await?;
                }
            }
            tx.commit().await
        })
    }

    fn load_history(&mut self) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = self.run("loading the route history", async |client| {
            let rows = client
                .query(
                    "SELECT route, series, coarse, start_ns, requests, errors, latency
                     FROM route_history ORDER BY route, series, coarse, start_ns < 0, start_ns",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        HistoryRow {
                            route: r.try_get(0)?,
                            series: r.try_get(1)?,
                            coarse: r.try_get(2)?,
                            start_ns: u64_at(r, 3)?,
                            requests: u64_at(r, 4)?,
                            errors: u64_at(r, 5)?,
                            latency: Vec::new(),
                        },
                        r.try_get::<_, String>(6)?,
                    ))
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        })?;
        with_latency(&self.location, rows)
    }

    fn write_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run("writing the route history", async |client| {
            let tx = client.transaction().await?;
            if !batch.points.is_empty() {
                let st = tx.prepare(UPSERT_HISTORY).await?;
                let mut latency = String::new();
                for p in &batch.points {
                    encode_latency(&p.latency, &mut latency);
                    tx.execute(
                        &st,
                        &[
                            &p.route,
                            &p.series,
                            &p.coarse,
                            &to_sql(p.start_ns),
                            &to_sql(p.requests),
                            &to_sql(p.errors),
                            &latency,
                        ],
                    )
                    .await?;
                }
            }
            if let Some(r) = &batch.prune {
                prune_history(&tx, r).await?;
            }
            tx.commit().await
        })
    }

    fn describe(&self) -> String {
        self.location.display().to_string()
    }
}

/// A `u64` stored with the same bits in a `BIGINT`.
fn u64_at(row: &Row, index: usize) -> Result<u64, tokio_postgres::Error> {
    row.try_get::<_, i64>(index).map(from_sql)
}

fn opt_u64_at(row: &Row, index: usize) -> Result<Option<u64>, tokio_postgres::Error> {
    Ok(row.try_get::<_, Option<i64>>(index)?.map(from_sql))
}

async fn read_all(client: &mut Client) -> Result<Snapshot, tokio_postgres::Error> {
    // One consistent view across the tables, as SQLite's read transaction.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let buckets = tx
        .query(
            "SELECT slo, coarse, start_ns, good, total FROM slo_buckets
             ORDER BY slo, coarse, start_ns",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(BucketRow {
                slo: r.try_get(0)?,
                coarse: r.try_get(1)?,
                start_ns: u64_at(r, 2)?,
                good: u64_at(r, 3)?,
                total: u64_at(r, 4)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let alerts = tx
        .query(
            "SELECT slo, severity, state, since_ns FROM slo_alerts ORDER BY slo, severity",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AlertRow {
                slo: r.try_get(0)?,
                severity: r.try_get(1)?,
                state: r.try_get(2)?,
                since_ns: u64_at(r, 3)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let mut labels: HashMap<i64, Vec<(String, String)>> = HashMap::new();
    for r in tx
        .query(
            "SELECT incident_id, name, value FROM slo_incident_labels
             ORDER BY incident_id, position",
            &[],
        )
        .await?
    {
        labels
            .entry(r.try_get(0)?)
            .or_default()
            .push((r.try_get(1)?, r.try_get(2)?));
    }
    let mut incidents = tx
        .query(
            "SELECT id, slo, severity, start_ns, start_clipped, detect_ns, recover_ns,
                resolve_ns, bad_events, budget_spent_ppm, runbook
             FROM slo_incidents",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            let id: i64 = r.try_get(0)?;
            Ok(IncidentRow {
                id: from_sql(id),
                slo: r.try_get(1)?,
                severity: r.try_get(2)?,
                start_ns: u64_at(r, 3)?,
                start_clipped: r.try_get(4)?,
                detect_ns: u64_at(r, 5)?,
                recover_ns: opt_u64_at(r, 6)?,
                resolve_ns: opt_u64_at(r, 7)?,
                bad_events: u64_at(r, 8)?,
                budget_spent_ppm: u64_at(r, 9)?,
                runbook: r.try_get(10)?,
                labels: labels.remove(&id).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    incidents.sort_unstable_by_key(|i| i.id);
    let max_incident_id = match tx
        .query_opt(
            "SELECT value FROM levee_meta WHERE key = 'max_incident_id'",
            &[],
        )
        .await?
    {
        Some(r) => Some(u64_at(&r, 0)?),
        None => None,
    };
    tx.commit().await?;
    Ok(Snapshot {
        buckets,
        alerts,
        incidents,
        max_incident_id,
    })
}

async fn write_batch(client: &mut Client, batch: &Batch) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    if !batch.buckets.is_empty() {
        let st = tx.prepare(UPSERT_BUCKET).await?;
        for b in &batch.buckets {
            tx.execute(
                &st,
                &[
                    &b.slo,
                    &b.coarse,
                    &to_sql(b.start_ns),
                    &to_sql(b.good),
                    &to_sql(b.total),
                ],
            )
            .await?;
        }
    }
    if !batch.alerts.is_empty() {
        let st = tx.prepare(UPSERT_ALERT).await?;
        for a in &batch.alerts {
            tx.execute(&st, &[&a.slo, &a.severity, &a.state, &to_sql(a.since_ns)])
                .await?;
        }
    }
    if !batch.incidents.is_empty() {
        let upsert = tx.prepare(UPSERT_INCIDENT).await?;
        let delete_labels = tx.prepare(DELETE_LABELS).await?;
        let insert_label = tx.prepare(INSERT_LABEL).await?;
        let mut max_id = 0u64;
        for i in &batch.incidents {
            let id = to_sql(i.id);
            tx.execute(
                &upsert,
                &[
                    &id,
                    &i.slo,
                    &i.severity,
                    &to_sql(i.start_ns),
                    &i.start_clipped,
                    &to_sql(i.detect_ns),
                    &i.recover_ns.map(to_sql),
                    &i.resolve_ns.map(to_sql),
                    &to_sql(i.bad_events),
                    &to_sql(i.budget_spent_ppm),
                    &i.runbook,
                ],
            )
            .await?;
            tx.execute(&delete_labels, &[&id]).await?;
            for (position, (name, value)) in i.labels.iter().enumerate() {
                tx.execute(&insert_label, &[&id, &(position as i64), name, value])
                    .await?;
            }
            max_id = max_id.max(i.id);
        }
        tx.execute(RAISE_MAX_ID, &[&to_sql(max_id)]).await?;
    }
    if let Some(r) = &batch.prune {
        prune(&tx, r).await?;
    }
    tx.commit().await
}

async fn prune(
    tx: &tokio_postgres::Transaction<'_>,
    r: &Retention,
) -> Result<(), tokio_postgres::Error> {
    let st = tx.prepare(PRUNE_BUCKETS).await?;
    tx.execute(&st, &[&false, &to_sql(r.fine_before_ns)])
        .await?;
    tx.execute(&st, &[&true, &to_sql(r.coarse_before_ns)])
        .await?;
    tx.execute(PRUNE_RESOLVED, &[&to_sql(r.incidents_before_ns)])
        .await?;
    let keep = i64::try_from(r.max_incidents).unwrap_or(i64::MAX);
    tx.execute(PRUNE_OLDEST, &[&keep]).await?;
    Ok(())
}

async fn prune_history(
    tx: &tokio_postgres::Transaction<'_>,
    r: &HistoryRetention,
) -> Result<(), tokio_postgres::Error> {
    let st = tx.prepare(PRUNE_HISTORY).await?;
    tx.execute(&st, &[&false, &to_sql(r.fine_before_ns)])
        .await?;
    tx.execute(&st, &[&true, &to_sql(r.coarse_before_ns)])
        .await?;
    Ok(())
}
