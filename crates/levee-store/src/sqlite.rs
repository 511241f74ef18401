//! [`SqliteStore`]: the [`Store`] in one SQLite file.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{sql, StoreError};
use crate::{
    schema, AlertRow, Batch, BucketRow, HistoryBatch, HistoryRetention, HistoryRow,
    IncidentActionRow, IncidentRow, Retention, RolloutRow, Snapshot, StatusPostRow, Store,
};

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Unsigned `a < b` for two `u64` stored with the same bits in SQLite's
/// signed integers: the signed order, flipped where the signs differ.
macro_rules! unsigned_lt {
    ($a:literal, $b:literal) => {
        concat!(
            "((",
            $a,
            " < ",
            $b,
            ") <> ((",
            $a,
            " < 0) <> (",
            $b,
            " < 0)))"
        )
    };
}

const UPSERT_BUCKET: &str = "
    INSERT INTO slo_buckets (slo, coarse, start_ns, good, total) VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (slo, coarse, start_ns) DO UPDATE SET good = excluded.good, total = excluded.total";
const UPSERT_ALERT: &str = "
    INSERT INTO slo_alerts (slo, severity, state, since_ns) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (slo, severity) DO UPDATE SET state = excluded.state, since_ns = excluded.since_ns";
const UPSERT_INCIDENT: &str = "
    INSERT INTO slo_incidents (id, slo, severity, start_ns, start_clipped, detect_ns,
        recover_ns, resolve_ns, bad_events, budget_spent_ppm, runbook)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT (id) DO UPDATE SET slo = excluded.slo, severity = excluded.severity,
        start_ns = excluded.start_ns, start_clipped = excluded.start_clipped,
        detect_ns = excluded.detect_ns, recover_ns = excluded.recover_ns,
        resolve_ns = excluded.resolve_ns, bad_events = excluded.bad_events,
        budget_spent_ppm = excluded.budget_spent_ppm, runbook = excluded.runbook";
const UPSERT_ROLLOUT: &str = "
    INSERT INTO rollouts (route, state, updated_ns) VALUES (?1, ?2, ?3)
    ON CONFLICT (route) DO UPDATE SET state = excluded.state, updated_ns = excluded.updated_ns";
const UPSERT_ACTION: &str = "
    INSERT INTO slo_incident_actions (incident_id, seq, kind, actor, at_ns, message)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (incident_id, seq) DO UPDATE SET kind = excluded.kind, actor = excluded.actor,
        at_ns = excluded.at_ns, message = excluded.message";
// Unsigned id order: ids of 2^63 and above are stored negative.
const SELECT_ACTIONS: &str = "
    SELECT incident_id, seq, kind, actor, at_ns, message FROM slo_incident_actions
    ORDER BY incident_id < 0, incident_id, seq";
const DELETE_ROLLOUT: &str = "DELETE FROM rollouts WHERE route = ?1";
const UPSERT_STATUS_POST: &str = "
    INSERT INTO status_posts (id, doc, updated_ns) VALUES (?1, ?2, ?3)
    ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_ns = excluded.updated_ns";
const DELETE_STATUS_POST: &str = "DELETE FROM status_posts WHERE id = ?1";
const UPSERT_HISTORY: &str = "
    INSERT INTO route_history (route, series, coarse, start_ns, requests, errors, latency)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (route, series, coarse, start_ns) DO UPDATE SET requests = excluded.requests,
        errors = excluded.errors, latency = excluded.latency";
const PRUNE_HISTORY: &str = concat!(
    "DELETE FROM route_history WHERE coarse = ?1 AND ",
    unsigned_lt!("start_ns", "?2")
);
const DELETE_LABELS: &str = "DELETE FROM slo_incident_labels WHERE incident_id = ?1";
const INSERT_LABEL: &str =
    "INSERT INTO slo_incident_labels (incident_id, position, name, value) VALUES (?1, ?2, ?3, ?4)";
const RAISE_MAX_ID: &str = concat!(
    "INSERT INTO meta (key, value) VALUES ('max_incident_id', ?1)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE ",
    unsigned_lt!("value", "excluded.value")
);
const PRUNE_BUCKETS: &str = concat!(
    "DELETE FROM slo_buckets WHERE coarse = ?1 AND ",
    unsigned_lt!("start_ns", "?2")
);
const PRUNE_RESOLVED: &str = concat!(
    "DELETE FROM slo_incidents WHERE resolve_ns IS NOT NULL AND ",
    unsigned_lt!("resolve_ns", "?1")
);
// Newest first in unsigned order: ids of 2^63 and above are stored negative.
const PRUNE_OLDEST: &str = "
    DELETE FROM slo_incidents WHERE id NOT IN (
        SELECT id FROM slo_incidents ORDER BY id < 0 DESC, id DESC LIMIT ?1)";

/// A [`Store`] in one SQLite file (or in memory, for tests).
///
/// The file is in WAL mode with `synchronous=NORMAL`: a flush costs no
/// fsync, and a power loss can lose the last flushes but never corrupts the
/// file. Readers (a backup) never block the writer. Statements wait up to
/// 5 s for another connection's lock, and foreign keys are enforced.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    in_memory: bool,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file (not its directory) if
    /// it is missing and migrating an older schema. Refuses a file that is
    /// not SQLite, another program's SQLite database (by its
    /// `application_id`), and a newer schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        check_directory(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql(path, "opening"))?;
        Self::setup(conn, path.to_path_buf(), false)
    }

    /// A store in memory, gone when dropped.
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(sql(&path, "opening"))?;
        Self::setup(conn, path, true)
    }

    fn setup(mut conn: Connection, path: PathBuf, in_memory: bool) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql(&path, "setting busy_timeout"))?;
        // Before anything that writes (journal_mode does): never change a
        // file that is not ours.
        schema::check(&conn, &path)?;
        if !in_memory {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(sql(&path, "setting journal_mode=WAL"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Unsupported {
                    path,
                    reason: format!("cannot use WAL mode (journal_mode stays {mode})"),
                });
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql(&path, "setting synchronous=NORMAL"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql(&path, "setting foreign_keys=ON"))?;
        schema::prepare(&mut conn, &path)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(Self {
            conn,
            path,
            in_memory,
        })
    }

    /// The file, or `:memory:`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_batch(&mut self, batch: &Batch) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !batch.buckets.is_empty() {
            let mut st = tx.prepare_cached(UPSERT_BUCKET)?;
            for b in &batch.buckets {
                st.execute(params![
                    b.slo,
                    b.coarse,
                    to_sql(b.start_ns),
                    to_sql(b.good),
                    to_sql(b.total)
                ])?;
            }
        }
        if !batch.alerts.is_empty() {
            let mut st = tx.prepare_cached(UPSERT_ALERT)?;
            for a in &batch.alerts {
                st.execute(params![a.slo, a.severity, a.state, to_sql(a.since_ns)])?;
            }
        }
        if !batch.incidents.is_empty() {
            let mut upsert = tx.prepare_cached(UPSERT_INCIDENT)?;
            let mut delete_labels = tx.prepare_cached(DELETE_LABELS)?;
            let mut insert_label = tx.prepare_cached(INSERT_LABEL)?;
            let mut max_id = 0u64;
            for i in &batch.incidents {
                let id = to_sql(i.id);
                upsert.execute(params![
                    id,
                    i.slo,
                    i.severity,
                    to_sql(i.start_ns),
                    i.start_clipped,
                    to_sql(i.detect_ns),
                    i.recover_ns.map(to_sql),
                    i.resolve_ns.map(to_sql),
                    to_sql(i.bad_events),
                    to_sql(i.budget_spent_ppm),
                    i.runbook,
                ])?;
                delete_labels.execute([id])?;
                for (position, (name, value)) in i.labels.iter().enumerate() {
                    insert_label.execute(params![id, position as i64, name, value])?;
                }
                max_id = max_id.max(i.id);
            }
            tx.prepare_cached(RAISE_MAX_ID)?.execute([to_sql(max_id)])?;
        }
        if let Some(r) = &batch.prune {
            prune(&tx, r)?;
        }
        tx.commit()
    }

    fn write_rollout_rows(
        &mut self,
        upsert: &[RolloutRow],
        remove: &[String],
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !upsert.is_empty() {
            let mut st = tx.prepare_cached(UPSERT_ROLLOUT)?;
            for r in upsert {
                st.execute(params![r.route, r.state, to_sql(r.updated_ns)])?;
            }
        }
        if !remove.is_empty() {
            let mut st = tx.prepare_cached(DELETE_ROLLOUT)?;
            for route in remove {
                st.execute([route])?;
            }
        }
        tx.commit()
    }

    fn write_action_rows(&mut self, actions: &[IncidentActionRow]) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(UPSERT_ACTION)?;
            for a in actions {
                st.execute(params![
                    to_sql(a.incident_id),
                    a.seq,
                    a.kind,
                    a.actor,
                    to_sql(a.at_ns),
                    a.message
                ])?;
            }
        }
        tx.commit()
    }

    fn read_action_rows(&mut self) -> rusqlite::Result<Vec<IncidentActionRow>> {
        self.conn
            .prepare_cached(SELECT_ACTIONS)?
            .query_map([], |r| {
                Ok(IncidentActionRow {
                    incident_id: from_sql(r.get(0)?),
                    seq: r.get(1)?,
                    kind: r.get(2)?,
                    actor: r.get(3)?,
                    at_ns: from_sql(r.get(4)?),
                    message: r.get(5)?,
                })
            })?
            .collect()
    }

    fn write_status_post_rows(
        &mut self,
        upsert: &[StatusPostRow],
        remove: &[u64],
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !upsert.is_empty() {
            let mut st = tx.prepare_cached(UPSERT_STATUS_POST)?;
            for r in upsert {
                st.execute(params![to_sql(r.id), r.doc, to_sql(r.updated_ns)])?;
            }
        }
        if !remove.is_empty() {
            let mut st = tx.prepare_cached(DELETE_STATUS_POST)?;
            for id in remove {
                st.execute([to_sql(*id)])?;
            }
        }
        tx.commit()
    }

    fn read_status_posts(&mut self) -> rusqlite::Result<Vec<StatusPostRow>> {
        let mut rows = self
            .conn
            .prepare_cached("SELECT id, doc, updated_ns FROM status_posts")?
            .query_map([], |r| {
                Ok(StatusPostRow {
                    id: from_sql(r.get(0)?),
                    doc: r.get(1)?,
                    updated_ns: from_sql(r.get(2)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // Ids are u64 stored with the same bits: SQL would order them signed.
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn read_rollouts(&mut self) -> rusqlite::Result<Vec<RolloutRow>> {
        self.conn
            .prepare_cached("SELECT route, state, updated_ns FROM rollouts ORDER BY route")?
            .query_map([], |r| {
                Ok(RolloutRow {
                    route: r.get(0)?,
                    state: r.get(1)?,
                    updated_ns: from_sql(r.get(2)?),
                })
            })?
            .collect()
    }

    fn write_history_batch(&mut self, batch: &HistoryBatch) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !batch.points.is_empty() {
            let mut st = tx.prepare_cached(UPSERT_HISTORY)?;
            let mut latency = String::new();
            for p in &batch.points {
                encode_latency(&p.latency, &mut latency);
                st.execute(params![
                    p.route,
                    p.series,
                    p.coarse,
                    to_sql(p.start_ns),
                    to_sql(p.requests),
                    to_sql(p.errors),
                    latency,
                ])?;
            }
        }
        if let Some(r) = &batch.prune {
            prune_history(&tx, r)?;
        }
        tx.commit()
    }

    /// The stored points, with each point's latency text still to decode
    /// (a decoding error is not SQLite's).
    fn read_history(&mut self) -> rusqlite::Result<Vec<(HistoryRow, String)>> {
        self.conn
            .prepare_cached(
                "SELECT route, series, coarse, start_ns, requests, errors, latency
                 FROM route_history ORDER BY route, series, coarse, start_ns < 0, start_ns",
            )?
            .query_map([], |r| {
                Ok((
                    HistoryRow {
                        route: r.get(0)?,
                        series: r.get(1)?,
                        coarse: r.get(2)?,
                        start_ns: from_sql(r.get(3)?),
                        requests: from_sql(r.get(4)?),
                        errors: from_sql(r.get(5)?),
                        latency: Vec::new(),
                    },
                    r.get(6)?,
                ))
            })?
            .collect()
    }

    fn read_all(&mut self) -> rusqlite::Result<Snapshot> {
        let tx = self.conn.transaction()?;
        let buckets = tx
            .prepare_cached(
                "SELECT slo, coarse, start_ns, good, total FROM slo_buckets
                 ORDER BY slo, coarse, start_ns",
            )?
            .query_map([], |r| {
                Ok(BucketRow {
                    slo: r.get(0)?,
                    coarse: r.get(1)?,
                    start_ns: from_sql(r.get(2)?),
                    good: from_sql(r.get(3)?),
                    total: from_sql(r.get(4)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let alerts = tx
            .prepare_cached(
                "SELECT slo, severity, state, since_ns FROM slo_alerts ORDER BY slo, severity",
            )?
            .query_map([], |r| {
                Ok(AlertRow {
                    slo: r.get(0)?,
                    severity: r.get(1)?,
                    state: r.get(2)?,
                    since_ns: from_sql(r.get(3)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut labels: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        {
            let mut st = tx.prepare_cached(
                "SELECT incident_id, name, value FROM slo_incident_labels
                 ORDER BY incident_id, position",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                labels
                    .entry(r.get(0)?)
                    .or_default()
                    .push((r.get(1)?, r.get(2)?));
            }
        }
        let mut incidents = tx
            .prepare_cached(
                "SELECT id, slo, severity, start_ns, start_clipped, detect_ns, recover_ns,
                    resolve_ns, bad_events, budget_spent_ppm, runbook
                 FROM slo_incidents",
            )?
            .query_map([], |r| {
                let id: i64 = r.get(0)?;
                Ok(IncidentRow {
                    id: from_sql(id),
                    slo: r.get(1)?,
                    severity: r.get(2)?,
                    start_ns: from_sql(r.get(3)?),
                    start_clipped: r.get(4)?,
                    detect_ns: from_sql(r.get(5)?),
                    recover_ns: r.get::<_, Option<i64>>(6)?.map(from_sql),
                    resolve_ns: r.get::<_, Option<i64>>(7)?.map(from_sql),
                    bad_events: from_sql(r.get(8)?),
                    budget_spent_ppm: from_sql(r.get(9)?),
                    runbook: r.get(10)?,
                    labels: labels.remove(&id).unwrap_or_default(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        incidents.sort_unstable_by_key(|i| i.id);
        let max_incident_id = tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'max_incident_id'")?
            .query_row([], |r| r.get::<_, i64>(0))
            .optional()?
            .map(from_sql);
        tx.commit()?;
        Ok(Snapshot {
            buckets,
            alerts,
            incidents,
            max_incident_id,
        })
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let path = self.path.clone();
        self.read_all().map_err(sql(&path, "loading"))
    }

    fn write(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        self.write_batch(batch)
            .map_err(sql(&path, "writing a batch"))
    }

    fn load_rollouts(&mut self) -> Result<Vec<RolloutRow>, StoreError> {
        let path = self.path.clone();
        self.read_rollouts().map_err(sql(&path, "loading rollouts"))
    }

    fn write_rollouts(
        &mut self,
        upsert: &[RolloutRow],
        remove: &[String],
    ) -> Result<(), StoreError> {
        if upsert.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        self.write_rollout_rows(upsert, remove)
            .map_err(sql(&path, "writing rollouts"))
    }

    fn load_incident_actions(&mut self) -> Result<Vec<IncidentActionRow>, StoreError> {
        let path = self.path.clone();
        self.read_action_rows()
            .map_err(sql(&path, "loading incident actions"))
    }

    fn write_incident_actions(&mut self, actions: &[IncidentActionRow]) -> Result<(), StoreError> {
        if actions.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        self.write_action_rows(actions)
            .map_err(sql(&path, "writing incident actions"))
    }

    fn load_status_posts(&mut self) -> Result<Vec<StatusPostRow>, StoreError> {
        let path = self.path.clone();
        self.read_status_posts()
            .map_err(sql(&path, "loading status page posts"))
    }

    fn write_status_posts(
        &mut self,
        upsert: &[StatusPostRow],
        remove: &[u64],
    ) -> Result<(), StoreError> {
        if upsert.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        self.write_status_post_rows(upsert, remove)
            .map_err(sql(&path, "writing status page posts"))
    }

    fn load_history(&mut self) -> Result<Vec<HistoryRow>, StoreError> {
        let path = self.path.clone();
        let rows = self
            .read_history()
            .map_err(sql(&path, "loading the route history"))?;
        with_latency(&path, rows)
    }

    fn write_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        self.write_history_batch(batch)
            .map_err(sql(&path, "writing the route history"))
    }

    fn describe(&self) -> String {
        if self.in_memory {
            "sqlite::memory:".to_owned()
        } else {
            format!("sqlite:{}", self.path.display())
        }
    }
}

fn prune(conn: &Connection, r: &Retention) -> rusqlite::Result<()> {
    let mut buckets = conn.prepare_cached(PRUNE_BUCKETS)?;
    buckets.execute(params![false, to_sql(r.fine_before_ns)])?;
    buckets.execute(params![true, to_sql(r.coarse_before_ns)])?;
    conn.prepare_cached(PRUNE_RESOLVED)?
        .execute([to_sql(r.incidents_before_ns)])?;
    let keep = i64::try_from(r.max_incidents).unwrap_or(i64::MAX);
    conn.prepare_cached(PRUNE_OLDEST)?.execute([keep])?;
    Ok(())
}

fn prune_history(conn: &Connection, r: &HistoryRetention) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached(PRUNE_HISTORY)?;
    st.execute(params![false, to_sql(r.fine_before_ns)])?;
    st.execute(params![true, to_sql(r.coarse_before_ns)])?;
    Ok(())
}

/// `(bucket, count)` pairs as `bucket:count,bucket:count` into `out`
/// (cleared first): a few bytes per non-empty bucket, and readable in the
/// `sqlite3` shell.
pub(crate) fn encode_latency(pairs: &[(u16, u64)], out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    for (i, (bucket, count)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{bucket}:{count}");
    }
}

/// History points read with their latency text, decoded; a text that is
/// not `index:count` pairs is [`StoreError::Malformed`], naming the point.
pub(crate) fn with_latency(
    path: &Path,
    rows: Vec<(HistoryRow, String)>,
) -> Result<Vec<HistoryRow>, StoreError> {
    rows.into_iter()
        .map(|(mut row, text)| {
            row.latency = decode_latency(&text).ok_or_else(|| StoreError::Malformed {
                path: path.to_path_buf(),
                reason: format!(
                    "route_history ({}, {}, {}, {}): latency {text:?} is not index:count pairs",
                    row.route,
                    row.series,
                    u8::from(row.coarse),
                    row.start_ns
                ),
            })?;
            Ok(row)
        })
        .collect()
}

/// The inverse of [`encode_latency`]; `None` for anything else.
pub(crate) fn decode_latency(text: &str) -> Option<Vec<(u16, u64)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|pair| {
            let (bucket, count) = pair.split_once(':')?;
            Some((bucket.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

/// Refuses a path whose directory is missing, before SQLite reports it as
/// "unable to open database file".
pub(crate) fn check_directory(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(StoreError::MissingDirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            })
        }
        _ => Ok(()),
    }
}

/// A `u64` in SQLite's signed `INTEGER`, same bits.
pub(crate) fn to_sql(v: u64) -> i64 {
    v as i64
}

/// The inverse of [`to_sql`].
pub(crate) fn from_sql(v: i64) -> u64 {
    v as u64
}

#[cfg(test)]
mod tests {
    use super::{decode_latency, encode_latency};
    use proptest::prelude::*;

    #[test]
    fn latency_text_is_index_count_pairs() {
        let mut text = String::from("left over");
        encode_latency(&[(3, 1), (40, 12_345), (431, u64::MAX)], &mut text);
        assert_eq!(text, "3:1,40:12345,431:18446744073709551615");
        encode_latency(&[], &mut text);
        assert_eq!(text, "");
        assert_eq!(decode_latency(""), Some(vec![]));
        for bad in ["3", "3:", ":4", "3:4,", "a:1", "3:-1", "70000:1", "3:1;4:2"] {
            assert_eq!(decode_latency(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn latency_text_round_trips(pairs in prop::collection::vec((any::<u16>(), any::<u64>()), 0..50)) {
            let mut text = String::new();
            encode_latency(&pairs, &mut text);
            prop_assert_eq!(decode_latency(&text), Some(pairs));
        }
    }
}
