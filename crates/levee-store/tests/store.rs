//! `SqliteStore` on real files: round trips, upserts, atomic batches,
//! retention, rollouts, migrating an older schema, and refusing files that
//! are not Levee stores.

mod common;

use common::{alert, bucket, incident, sample_batch, TestDir, SEC, T0};
use levee_store::{
    backup, verify, Batch, HistoryBatch, HistoryRetention, HistoryRow, IncidentActionRow,
    IncidentRow, Retention, RolloutRow, Snapshot, SqliteStore, StatusPostRow, Store, StoreError,
    APPLICATION_ID, SCHEMA_VERSION,
};
use rusqlite::Connection;

fn count(path: &std::path::Path, sql: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn batches_survive_a_reopen() {
    let dir = TestDir::new("roundtrip");
    let path = dir.path("levee.db");
    let mut extreme = incident(u64::MAX, "edge", Some(u64::MAX));
    extreme.bad_events = u64::MAX;
    extreme.budget_spent_ppm = i64::MAX as u64 + 1;
    extreme.labels = vec![
        ("dup".to_owned(), "1".to_owned()),
        ("dup".to_owned(), "2".to_owned()),
        ("".to_owned(), "é ✓ \0 nul".to_owned()),
    ];
    {
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap(), Snapshot::default());
        store.write(&sample_batch(T0)).unwrap();
        store
            .write(&Batch {
                buckets: vec![
                    bucket("edge", false, u64::MAX, u64::MAX, u64::MAX),
                    bucket("edge", true, i64::MAX as u64 + 1, 3, u64::MAX),
                    bucket("edge", true, 0, 0, 0),
                ],
                alerts: vec![alert("edge", "page", "resolved", u64::MAX)],
                incidents: vec![extreme.clone(), incident(2, "search-latency", Some(T0))],
                prune: None,
            })
            .unwrap();
    }
    let mut store = SqliteStore::open(&path).unwrap();
    let snap = store.load().unwrap();
    let batch = sample_batch(T0);
    let mut want = Snapshot {
        buckets: batch.buckets.clone(),
        alerts: batch.alerts.clone(),
        incidents: batch.incidents.clone(),
        max_incident_id: Some(u64::MAX),
    };
    want.buckets.extend([
        bucket("edge", false, u64::MAX, u64::MAX, u64::MAX),
        bucket("edge", true, i64::MAX as u64 + 1, 3, u64::MAX),
        bucket("edge", true, 0, 0, 0),
    ]);
    want.alerts
        .push(alert("edge", "page", "resolved", u64::MAX));
    want.incidents
        .extend([incident(2, "search-latency", Some(T0)), extreme]);
    assert_eq!(sorted(snap), sorted(want));
    assert_eq!(store.describe(), format!("sqlite:{}", path.display()));
    assert_eq!(store.path(), path);
}

fn sorted(mut s: Snapshot) -> Snapshot {
    s.buckets
        .sort_by(|a, b| (&a.slo, a.coarse, a.start_ns).cmp(&(&b.slo, b.coarse, b.start_ns)));
    s.alerts
        .sort_by(|a, b| (&a.slo, &a.severity).cmp(&(&b.slo, &b.severity)));
    s.incidents.sort_by_key(|i| i.id);
    s
}

#[test]
fn upserts_replace_rows() {
    let dir = TestDir::new("upsert");
    let path = dir.path("levee.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.write(&sample_batch(T0)).unwrap();

    let mut changed = incident(1, "checkout-availability", Some(T0 + 600 * SEC));
    changed.labels = vec![("only".to_owned(), "one".to_owned())];
    changed.runbook = None;
    store
        .write(&Batch {
            buckets: vec![bucket("checkout-availability", false, T0, 1990, 2000)],
            alerts: vec![alert(
                "checkout-availability",
                "page",
                "resolved",
                T0 + 600 * SEC,
            )],
            incidents: vec![changed.clone()],
            prune: None,
        })
        .unwrap();
    drop(store);

    let snap = SqliteStore::open(&path).unwrap().load().unwrap();
    assert_eq!(snap.buckets.len(), 3);
    assert_eq!(
        snap.buckets[0],
        bucket("checkout-availability", false, T0, 1990, 2000)
    );
    assert_eq!(snap.alerts.len(), 2);
    assert_eq!(
        snap.alerts[0],
        alert("checkout-availability", "page", "resolved", T0 + 600 * SEC)
    );
    assert_eq!(snap.incidents, vec![changed]);
    assert_eq!(count(&path, "SELECT count(*) FROM slo_incident_labels"), 1);
}

#[test]
fn a_failing_batch_leaves_nothing_behind() {
    let dir = TestDir::new("atomic");
    let path = dir.path("levee.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.write(&sample_batch(T0)).unwrap();
    let before = store.load().unwrap();

    // Every table is touched before the last row breaks CHECK (total >= good).
    let mut bad = sample_batch(T0 + 10 * SEC);
    bad.buckets[0].good = 1;
    bad.incidents = vec![incident(7, "checkout-availability", None)];
    bad.buckets
        .push(bucket("search-latency", false, T0, 11, 10));
    bad.prune = Some(Retention {
        fine_before_ns: u64::MAX,
        coarse_before_ns: u64::MAX,
        incidents_before_ns: u64::MAX,
        max_incidents: 0,
    });
    let err = store.write(&bad).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: writing a batch:", path.display())),
        "{msg}"
    );
    assert!(msg.contains("CHECK constraint failed"), "{msg}");
    assert!(!err.is_busy());
    assert_eq!(err.path(), path);

    assert_eq!(store.load().unwrap(), before);
    drop(store);
    assert_eq!(SqliteStore::open(&path).unwrap().load().unwrap(), before);

    // The store is still usable afterwards.
    let mut store = SqliteStore::open(&path).unwrap();
    store.write(&sample_batch(T0 + 20 * SEC)).unwrap();
    assert_eq!(store.load().unwrap().buckets.len(), 6);
}

#[test]
fn retention_keeps_the_store_bounded() {
    let dir = TestDir::new("prune");
    let path = dir.path("levee.db");
    let mut store = SqliteStore::open(&path).unwrap();

    // 10,000 fine buckets (10 SLOs × 1,000 ten-second buckets), 1,000
    // coarse ones, 300 incidents with two labels each.
    let slos: Vec<String> = (0..10).map(|i| format!("slo-{i}")).collect();
    let mut batch = Batch::default();
    for slo in &slos {
        for i in 0..1000 {
            batch
                .buckets
                .push(bucket(slo, false, T0 + i * 10 * SEC, 9, 10));
        }
        for i in 0..100 {
            batch
                .buckets
                .push(bucket(slo, true, T0 + i * 300 * SEC, 90, 100));
        }
    }
    for id in 1..=300 {
        let resolved = (id % 5 != 0).then_some(T0 + id * 100 * SEC);
        batch
            .incidents
            .push(incident(id, &slos[(id % 10) as usize], resolved));
    }
    store.write(&batch).unwrap();
    assert_eq!(count(&path, "SELECT count(*) FROM slo_buckets"), 11_000);

    let retention = Retention {
        fine_before_ns: T0 + 9000 * SEC,     // keeps 100 fine buckets per SLO
        coarse_before_ns: T0 + 15_000 * SEC, // keeps 50 coarse buckets per SLO
        incidents_before_ns: T0 + 10_000 * SEC,
        max_incidents: 150,
    };
    store
        .write(&Batch {
            prune: Some(retention),
            ..Batch::default()
        })
        .unwrap();
    let snap = store.load().unwrap();
    let fine = snap.buckets.iter().filter(|b| !b.coarse).count();
    let coarse = snap.buckets.iter().filter(|b| b.coarse).count();
    assert_eq!(fine, 10 * 100);
    assert_eq!(coarse, 10 * 50);
    assert!(snap.buckets.iter().all(|b| b.start_ns
        >= if b.coarse {
            T0 + 15_000 * SEC
        } else {
            T0 + 9000 * SEC
        }));

    // Incidents: resolved before id 100 go (80 of 1..=99), the open ones
    // stay; then the newest 150 remain.
    let model: Vec<u64> = {
        let mut ids: Vec<u64> = (1..=300u64)
            .filter(|id| id % 5 == 0 || T0 + id * 100 * SEC >= T0 + 10_000 * SEC)
            .collect();
        ids.sort_unstable();
        ids.split_off(ids.len() - 150)
    };
    let ids: Vec<u64> = snap.incidents.iter().map(|i| i.id).collect();
    assert_eq!(ids, model);
    assert_eq!(
        count(&path, "SELECT count(*) FROM slo_incident_labels"),
        2 * 150,
        "labels go with their incidents"
    );
    assert_eq!(snap.max_incident_id, Some(300));

    // A steady state: flushes every 10 s with a sliding window stay bounded.
    let mut now = T0 + 10_000 * SEC;
    for _ in 0..300 {
        now += 10 * SEC;
        let mut b = Batch::default();
        for slo in &slos {
            b.buckets.push(bucket(slo, false, now, 1, 1));
        }
        b.prune = Some(Retention {
            fine_before_ns: now - 600 * SEC,
            coarse_before_ns: now - 3600 * SEC,
            incidents_before_ns: now - 3600 * SEC,
            max_incidents: 100,
        });
        store.write(&b).unwrap();
        let rows = count(&path, "SELECT count(*) FROM slo_buckets WHERE coarse = 0");
        assert!(rows <= 10 * 61, "{rows} fine rows");
    }
}

#[test]
fn the_largest_incident_id_outlives_its_incident() {
    let dir = TestDir::new("maxid");
    let path = dir.path("levee.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store
        .write(&Batch {
            incidents: vec![incident(41, "a", Some(T0)), incident(42, "a", Some(T0))],
            ..Batch::default()
        })
        .unwrap();
    // A smaller id later does not lower it.
    store
        .write(&Batch {
            incidents: vec![incident(3, "a", Some(T0))],
            prune: Some(Retention {
                fine_before_ns: 0,
                coarse_before_ns: 0,
                incidents_before_ns: T0 + 1,
                max_incidents: usize::MAX,
            }),
            ..Batch::default()
        })
        .unwrap();
    drop(store);
    let snap = SqliteStore::open(&path).unwrap().load().unwrap();
    assert!(snap.incidents.is_empty());
    assert_eq!(snap.max_incident_id, Some(42));
}

#[test]
fn another_programs_sqlite_file_is_refused_and_left_alone() {
    let dir = TestDir::new("foreign");
    let path = dir.path("other.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a Levee store (application_id 0x0, expected {APPLICATION_ID:#x}: \
             another program's SQLite database)",
            path.display()
        )
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is unchanged"
    );
    assert!(!dir.path("other.db-wal").exists());
}

#[test]
fn a_file_that_is_not_sqlite_is_refused() {
    let dir = TestDir::new("garbage");
    let path = dir.path("levee.db");
    std::fs::write(&path, "this is a text file, not a database\n".repeat(200)).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a Levee store (not an SQLite database)",
            path.display()
        )
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TestDir::new("newer");
    let path = dir.path("levee.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a Levee store (schema version {}, expected {SCHEMA_VERSION})",
            path.display(),
            SCHEMA_VERSION + 1
        )
    );
}

#[test]
fn a_missing_directory_is_an_error_not_created() {
    let dir = TestDir::new("nodir");
    let path = dir.path("missing/levee.db");
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: directory {} does not exist",
            path.display(),
            dir.path("missing").display()
        )
    );
    assert!(!dir.path("missing").exists());
}

#[test]
fn a_new_store_is_marked_and_in_wal_mode() {
    let dir = TestDir::new("fresh");
    let path = dir.path("levee.db");
    std::fs::write(&path, b"").unwrap(); // an empty file is a blank database
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let meta: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        (app, version, mode.as_str(), meta),
        (
            APPLICATION_ID,
            i64::from(SCHEMA_VERSION),
            "wal",
            i64::from(SCHEMA_VERSION)
        )
    );
}

#[test]
fn two_stores_on_one_file_see_each_others_writes() {
    let dir = TestDir::new("shared");
    let path = dir.path("levee.db");
    let mut a = SqliteStore::open(&path).unwrap();
    let mut b = SqliteStore::open(&path).unwrap();
    a.write(&sample_batch(T0)).unwrap();
    assert_eq!(b.load().unwrap(), a.load().unwrap());
}

#[test]
fn an_in_memory_store_works_behind_the_trait() {
    let mut store: Box<dyn Store> = Box::new(SqliteStore::in_memory().unwrap());
    assert_eq!(store.describe(), "sqlite::memory:");
    store.write(&sample_batch(T0)).unwrap();
    store.write(&Batch::default()).unwrap();
    let snap = store.load().unwrap();
    assert_eq!(snap.buckets.len(), 3);
    assert_eq!(snap.max_incident_id, Some(1));
    // The trait object moves to another thread, as the engine's flusher.
    let handle = std::thread::spawn(move || store.load().unwrap());
    assert_eq!(handle.join().unwrap(), snap);
}

#[test]
fn incidents_keep_label_order() {
    let mut store = SqliteStore::in_memory().unwrap();
    let mut i: IncidentRow = incident(5, "a", None);
    i.labels = (0..20)
        .rev()
        .map(|n| (format!("k{n}"), n.to_string()))
        .collect();
    store
        .write(&Batch {
            incidents: vec![i.clone()],
            ..Batch::default()
        })
        .unwrap();
    assert_eq!(store.load().unwrap().incidents, vec![i]);
}

fn rollout(route: &str, state: &str, updated_ns: u64) -> RolloutRow {
    RolloutRow {
        route: route.to_owned(),
        state: state.to_owned(),
        updated_ns,
    }
}

#[test]
fn rollouts_round_trip_and_survive_a_reopen() {
    let dir = TestDir::new("rollouts");
    let path = dir.path("levee.db");
    let checkout = rollout("checkout", r#"{"phase":"canary","step":2,"weight":20}"#, T0);
    let search = rollout(
        "search",
        r#"{"phase":"blue_green","active":"green"}"#,
        T0 + SEC,
    );
    let edge = rollout("api/édge ✓", "{\"s\":\"\\u0000\"}", u64::MAX);
    {
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load_rollouts().unwrap(), vec![]);
        // Inserted out of order; loaded by route. Removing an unknown route
        // is no error.
        store
            .write_rollouts(
                &[search.clone(), edge.clone(), checkout.clone()],
                &["never-there".to_owned()],
            )
            .unwrap();
        assert_eq!(
            store.load_rollouts().unwrap(),
            vec![edge.clone(), checkout.clone(), search.clone()]
        );
        // Nothing to do is a no-op, and the SLO engine's data is apart.
        store.write_rollouts(&[], &[]).unwrap();
        assert_eq!(store.load().unwrap(), Snapshot::default());
    }
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.load_rollouts().unwrap(),
        vec![edge.clone(), checkout.clone(), search.clone()]
    );

    // Update one, remove another, in one call.
    let next = rollout(
        "checkout",
        r#"{"phase":"canary","step":3,"weight":40}"#,
        T0 + 60 * SEC,
    );
    store
        .write_rollouts(std::slice::from_ref(&next), &["search".to_owned()])
        .unwrap();
    assert_eq!(
        store.load_rollouts().unwrap(),
        vec![edge.clone(), next.clone()]
    );
    // A route both upserted and removed ends up removed.
    store
        .write_rollouts(&[rollout("checkout", "{}", T0)], &["checkout".to_owned()])
        .unwrap();
    drop(store);

    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.load_rollouts().unwrap(), vec![edge]);
    assert_eq!(
        count(&path, "SELECT updated_ns FROM rollouts"),
        -1,
        "u64::MAX is stored with the same bits"
    );
}

#[test]
fn a_failing_rollout_write_leaves_nothing_behind() {
    let dir = TestDir::new("rollouts-atomic");
    let path = dir.path("levee.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let kept = rollout("checkout", r#"{"step":1}"#, T0);
    store
        .write_rollouts(std::slice::from_ref(&kept), &[])
        .unwrap();

    // Another connection holds a trigger that rejects one route: the upsert
    // before it and the removal after it must both be rolled back.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON rollouts WHEN new.route = 'bad'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let err = store
        .write_rollouts(
            &[rollout("fine", "{}", T0), rollout("bad", "{}", T0)],
            &["checkout".to_owned()],
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: writing rollouts:", path.display())),
        "{msg}"
    );
    assert_eq!(store.load_rollouts().unwrap(), vec![kept]);
}

/// Migration 1 as released: a version-1 store, made by hand.
const SCHEMA_V1: &str = "
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

    INSERT INTO meta (key, value) VALUES ('schema_version', 1);
";

#[test]
fn a_version_1_store_is_migrated_and_keeps_its_data() {
    let dir = TestDir::new("migrate-v1");
    let path = dir.path("levee.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute(
            "INSERT INTO slo_buckets (slo, coarse, start_ns, good, total) VALUES (?1, 0, ?2, 9, 10)",
            rusqlite::params!["checkout-availability", T0 as i64],
        )
        .unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM sqlite_schema WHERE name = 'rollouts'"
        ),
        0
    );

    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.load().unwrap().buckets,
        vec![bucket("checkout-availability", false, T0, 9, 10)]
    );
    assert_eq!(store.load_rollouts().unwrap(), vec![]);
    let r = rollout("checkout", r#"{"step":1}"#, T0);
    store.write_rollouts(std::slice::from_ref(&r), &[]).unwrap();
    drop(store);

    // To version 2 at least: to whatever this build writes.
    const { assert!(SCHEMA_VERSION >= 2) };
    let version = i64::from(SCHEMA_VERSION);
    assert_eq!(count(&path, "PRAGMA user_version"), version);
    assert_eq!(
        count(&path, "SELECT value FROM meta WHERE key = 'schema_version'"),
        version
    );
    assert_eq!(
        count(&path, "PRAGMA application_id"),
        i64::from(APPLICATION_ID)
    );
    // Opening again migrates nothing more and loses nothing.
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.load().unwrap().buckets.len(), 1);
    assert_eq!(store.load_rollouts().unwrap(), vec![r]);
}

#[test]
fn backups_count_and_checksum_the_rollouts() {
    let dir = TestDir::new("rollouts-backup");
    let db = dir.path("levee.db");
    let mut store = SqliteStore::open(&db).unwrap();
    store.write(&sample_batch(T0)).unwrap();
    store
        .write_rollouts(
            &[
                rollout("checkout", r#"{"step":2}"#, T0),
                rollout("search", r#"{"step":5}"#, T0 + SEC),
            ],
            &[],
        )
        .unwrap();
    drop(store);

    let bak = dir.path("levee.bak");
    let report = backup(&db, &bak).unwrap();
    let rows = |rows: &[(String, u64)]| rows.iter().find(|(t, _)| t == "rollouts").map(|(_, n)| *n);
    assert_eq!(rows(&report.rows), Some(2));
    let manifest: i64 = Connection::open(&bak)
        .unwrap()
        .query_row(
            "SELECT value FROM backup_manifest WHERE item = 'rows:rollouts'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(manifest, 2);
    let verified = verify(&bak).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    assert_eq!(rows(&verified.rows), Some(2));
    assert_eq!(verified.checksum, Some(report.checksum));
    assert_eq!(verified.schema_version, Some(SCHEMA_VERSION));

    // A changed rollout state, same row count: the checksum catches it.
    Connection::open(&bak)
        .unwrap()
        .execute(
            "UPDATE rollouts SET state = '{\"step\":3}' WHERE route = 'checkout'",
            [],
        )
        .unwrap();
    let changed = verify(&bak).unwrap();
    assert_eq!(changed.problems.len(), 1, "{:?}", changed.problems);
    assert!(
        changed.problems[0].starts_with("checksum "),
        "{:?}",
        changed.problems
    );
    // A removed rollout: the count catches it too.
    Connection::open(&bak)
        .unwrap()
        .execute("DELETE FROM rollouts WHERE route = 'search'", [])
        .unwrap();
    let removed = verify(&bak).unwrap();
    assert!(
        removed
            .problems
            .contains(&"rollouts: 1 rows, the manifest says 2".to_owned()),
        "{:?}",
        removed.problems
    );
}

fn action(incident_id: u64, seq: u32, kind: &str, actor: &str, at_ns: u64) -> IncidentActionRow {
    IncidentActionRow {
        incident_id,
        seq,
        kind: kind.to_owned(),
        actor: actor.to_owned(),
        at_ns,
        message: (kind != "ack").then(|| format!("{kind} by {actor} ✓")),
    }
}

#[test]
fn incident_actions_survive_a_reopen_and_go_with_their_incident() {
    let dir = TestDir::new("actions");
    let path = dir.path("levee.db");
    let acked = action(7, 0, "ack", "alice", T0 + 90 * SEC);
    let noted = action(7, 1, "note", "bob", T0 + 120 * SEC);
    let resolved = action(7, 2, "resolve", "alice", T0 + 300 * SEC);
    let edge = action(u64::MAX, 0, "note", "", u64::MAX);
    {
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load_incident_actions().unwrap(), vec![]);
        store
            .write(&Batch {
                incidents: vec![incident(7, "a", None), incident(u64::MAX, "a", None)],
                ..Batch::default()
            })
            .unwrap();
        store
            .write_incident_actions(&[edge.clone(), noted.clone(), acked.clone()])
            .unwrap();
        store
            .write_incident_actions(std::slice::from_ref(&resolved))
            .unwrap();
        // Writing the same place again replaces it.
        store
            .write_incident_actions(std::slice::from_ref(&noted))
            .unwrap();
        store.write_incident_actions(&[]).unwrap();
    }
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.load_incident_actions().unwrap(),
        vec![acked.clone(), noted, resolved, edge],
        "by incident id (unsigned), then in order"
    );
    // The engine's own rows are untouched by them.
    assert_eq!(store.load().unwrap().incidents.len(), 2);

    // Retention removes an incident's actions with it.
    store
        .write(&Batch {
            prune: Some(Retention {
                fine_before_ns: 0,
                coarse_before_ns: 0,
                incidents_before_ns: 0,
                max_incidents: 1,
            }),
            ..Batch::default()
        })
        .unwrap();
    let left = store.load_incident_actions().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].incident_id, u64::MAX);
    assert_eq!(count(&path, "SELECT count(*) FROM slo_incident_actions"), 1);
}

#[test]
fn a_bad_incident_action_write_leaves_nothing_behind() {
    let dir = TestDir::new("actions-atomic");
    let path = dir.path("levee.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store
        .write(&Batch {
            incidents: vec![incident(1, "a", None)],
            ..Batch::default()
        })
        .unwrap();
    // An incident that is not stored.
    let orphan = store.write_incident_actions(&[
        action(1, 0, "ack", "alice", T0),
        action(2, 0, "ack", "alice", T0),
    ]);
    assert!(
        matches!(orphan, Err(StoreError::Sqlite { .. })),
        "{orphan:?}"
    );
    // A kind the table does not know.
    let unknown = store.write_incident_actions(&[
        action(1, 0, "ack", "alice", T0),
        action(1, 1, "snooze", "alice", T0),
    ]);
    assert!(unknown.is_err());
    assert_eq!(store.load_incident_actions().unwrap(), vec![]);
    store
        .write_incident_actions(&[action(1, 0, "ack", "alice", T0)])
        .unwrap();
    assert_eq!(store.load_incident_actions().unwrap().len(), 1);
}

#[test]
fn a_version_2_store_is_migrated_and_keeps_its_incidents() {
    let dir = TestDir::new("migrate-v2");
    let path = dir.path("levee.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        // Migration 2 as released.
        conn.execute_batch(
            "CREATE TABLE rollouts (
                route TEXT NOT NULL PRIMARY KEY,
                state TEXT NOT NULL,
                updated_ns INTEGER NOT NULL
            ) STRICT, WITHOUT ROWID;
            UPDATE meta SET value = 2 WHERE key = 'schema_version';",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO slo_incidents (id, slo, severity, start_ns, start_clipped, detect_ns,
                bad_events, budget_spent_ppm) VALUES (5, 'a', 'page', 1, 0, 2, 0, 0)",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
    }
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.load().unwrap().incidents[0].id, 5);
    store
        .write_incident_actions(&[action(5, 0, "ack", "alice", T0)])
        .unwrap();
    drop(store);
    const { assert!(SCHEMA_VERSION >= 3) };
    assert_eq!(
        count(&path, "PRAGMA user_version"),
        i64::from(SCHEMA_VERSION)
    );
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.load_incident_actions().unwrap(),
        vec![action(5, 0, "ack", "alice", T0)]
    );
}

#[test]
fn status_posts_round_trip_and_survive_a_reopen() {
    let dir = TestDir::new("status-posts");
    let path = dir.path("levee.db");
    let post = |id: u64, doc: &str, updated_ns: u64| StatusPostRow {
        id,
        doc: doc.to_owned(),
        updated_ns,
    };
    let first = post(1, r#"{"title":"Checkout errors"}"#, T0);
    let second = post(2, r#"{"title":"Database upgrade ✓"}"#, T0 + SEC);
    let big = post(u64::MAX, "{}", u64::MAX);
    {
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load_status_posts().unwrap(), vec![]);
        store
            .write_status_posts(&[big.clone(), second.clone(), first.clone()], &[77])
            .unwrap();
        store.write_status_posts(&[], &[]).unwrap();
        // Apart from the SLO engine's data and the rollouts.
        assert_eq!(store.load().unwrap(), Snapshot::default());
        assert_eq!(store.load_rollouts().unwrap(), vec![]);
    }
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.load_status_posts().unwrap(),
        vec![first.clone(), second.clone(), big.clone()]
    );
    let updated = post(
        1,
        r#"{"title":"Checkout errors","resolved":true}"#,
        T0 + 9 * SEC,
    );
    store
        .write_status_posts(std::slice::from_ref(&updated), &[2])
        .unwrap();
    assert_eq!(store.load_status_posts().unwrap(), vec![updated, big]);
}

fn point(route: &str, series: &str, coarse: bool, start_ns: u64, n: u64) -> HistoryRow {
    HistoryRow {
        route: route.to_owned(),
        series: series.to_owned(),
        coarse,
        start_ns,
        requests: n,
        errors: n / 10,
        latency: if n == 0 {
            vec![]
        } else {
            vec![(0, 1), (71, n - 1)]
        },
    }
}

#[test]
fn history_points_survive_a_reopen_and_upserts_replace_them() {
    let dir = TestDir::new("history-roundtrip");
    let path = dir.path("levee.db");
    let extreme = HistoryRow {
        route: "é ✓ \0 nul".to_owned(),
        series: "canary".to_owned(),
        coarse: true,
        start_ns: u64::MAX,
        requests: u64::MAX,
        errors: i64::MAX as u64 + 1,
        latency: vec![(0, u64::MAX), (u16::MAX, 1)],
    };
    {
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load_history().unwrap(), vec![]);
        store
            .write_history(&HistoryBatch {
                points: vec![
                    point("checkout", "route", false, T0 + 10 * SEC, 5),
                    point("checkout", "route", false, T0, 7),
                    point("checkout", "route", true, T0, 12),
                    point("checkout", "stable", false, T0, 0),
                    extreme.clone(),
                ],
                prune: None,
            })
            .unwrap();
        // The same step again: its counts and buckets replace the stored ones.
        store
            .write_history(&HistoryBatch {
                points: vec![point("checkout", "route", false, T0, 9)],
                prune: None,
            })
            .unwrap();
        // The SLO engine's and the rollouts' rows are apart.
        assert_eq!(store.load().unwrap(), Snapshot::default());
        assert_eq!(store.load_rollouts().unwrap(), vec![]);
    }
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.load_history().unwrap(),
        vec![
            point("checkout", "route", false, T0, 9),
            point("checkout", "route", false, T0 + 10 * SEC, 5),
            point("checkout", "route", true, T0, 12),
            point("checkout", "stable", false, T0, 0),
            extreme,
        ],
        "by route, series, fine before coarse, then start"
    );
    assert_eq!(
        count(
            &path,
            &format!(
                "SELECT count(*) FROM route_history WHERE latency = '0:1,71:8' AND start_ns = {}",
                T0
            )
        ),
        1,
        "only non-empty buckets, as index:count text"
    );
}

#[test]
fn history_retention_prunes_each_resolution_by_its_own_time() {
    let dir = TestDir::new("history-retention");
    let path = dir.path("levee.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let mut points = Vec::new();
    for i in 0..10 {
        points.push(point("a", "route", false, T0 + i * 10 * SEC, i + 1));
        points.push(point("a", "route", true, T0 + i * 300 * SEC, i + 1));
        points.push(point("b", "canary", false, T0 + i * 10 * SEC, i + 1));
    }
    // Beyond 2^63: compared unsigned, so never older than a real time.
    points.push(point("a", "route", false, i64::MAX as u64 + 1, 1));
    store
        .write_history(&HistoryBatch {
            points,
            prune: None,
        })
        .unwrap();
    // A prune of nothing (0) deletes nothing.
    store
        .write_history(&HistoryBatch {
            points: vec![],
            prune: Some(HistoryRetention {
                fine_before_ns: 0,
                coarse_before_ns: 0,
            }),
        })
        .unwrap();
    assert_eq!(store.load_history().unwrap().len(), 31);
    // Upserts and the prune in one batch: a new point older than the
    // cutoff goes too.
    store
        .write_history(&HistoryBatch {
            points: vec![point("c", "route", false, T0, 1)],
            prune: Some(HistoryRetention {
                fine_before_ns: T0 + 70 * SEC,
                coarse_before_ns: T0 + 600 * SEC,
            }),
        })
        .unwrap();
    let kept = store.load_history().unwrap();
    let starts = |route: &str, coarse: bool| -> Vec<u64> {
        kept.iter()
            .filter(|p| p.route == route && p.coarse == coarse)
            .map(|p| (p.start_ns - T0) / SEC)
            .collect()
    };
    assert_eq!(
        starts("a", false),
        [70, 80, 90, (i64::MAX as u64 + 1 - T0) / SEC]
    );
    assert_eq!(
        starts("a", true),
        [600, 900, 1200, 1500, 1800, 2100, 2400, 2700]
    );
    assert_eq!(starts("b", false), [70, 80, 90]);
    assert_eq!(starts("c", false), Vec::<u64>::new());
}

#[test]
fn a_malformed_history_point_is_reported_not_guessed() {
    let dir = TestDir::new("history-malformed");
    let path = dir.path("levee.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store
        .write_history(&HistoryBatch {
            points: vec![point("checkout", "route", false, T0, 3)],
            prune: None,
        })
        .unwrap();
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE route_history SET latency = '0:1,71'", [])
        .unwrap();
    let e = store.load_history().unwrap_err();
    assert!(matches!(e, StoreError::Malformed { .. }), "{e:?}");
    assert!(
        e.to_string().contains("route_history (checkout, route, 0,"),
        "{e}"
    );
}
