//! The store's behaviour through the trait, the same on SQLite and on a
//! real PostgreSQL server (each scenario runs on both), then what only
//! PostgreSQL has: a shared schema with its own identity, a database that
//! goes down, freezes and comes back, and backup and restore through the
//! store's own export.
//!
//! PostgreSQL comes from `levee-testkit`'s fixture, included by path so
//! that this crate's tests do not build the whole test kit. Without
//! PostgreSQL installed the PostgreSQL tests skip loudly, except under
//! `CI=true`, where they fail.

// Real time: these tests wait on a real server.
#![allow(clippy::disallowed_methods)]

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../../levee-testkit/src/postgres.rs"]
mod pg_server;

use common::{alert, bucket, incident, sample_batch, TestDir, SEC, T0};
use levee_store::{
    backup, backup_postgres, restore, restore_postgres, verify, Batch, HistoryBatch,
    HistoryRetention, HistoryRow, IncidentActionRow, PostgresStore, PostgresTimeouts, Retention,
    RolloutRow, Snapshot, SqliteStore, StatusPostRow, Store, StoreError, APPLICATION_ID,
    POSTGRES_SCHEMA_VERSION, SCHEMA_VERSION,
};
use pg_server::PostgresServer;
use std::time::Duration;

/// Where a scenario's stores live; each `open` is a new connection to the
/// same data, as a restarted gateway (or another replica) would make.
trait Backend {
    fn open(&self) -> Box<dyn Store>;
}

struct Sqlite(TestDir);

impl Backend for Sqlite {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(&self.0.path("levee.db")).unwrap())
    }
}

struct Postgres(PostgresServer);

impl Backend for Postgres {
    fn open(&self) -> Box<dyn Store> {
        Box::new(PostgresStore::open_with(&self.0.url(), fast()).unwrap())
    }
}

/// Short timeouts, so that the failure tests are quick.
fn fast() -> PostgresTimeouts {
    PostgresTimeouts {
        connect: Duration::from_secs(2),
        statement: Duration::from_secs(1),
    }
}

/// `sqlite_<name>` and `postgres_<name>` tests running `scenario`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Sqlite(super::TestDir::new(stringify!($name))));
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(server) = super::PostgresServer::start(stringify!($name)) {
                        super::$name(&super::Postgres(server));
                    }
                }
            )*
        }
    };
}

on_both!(
    batches_survive_a_reopen,
    upserts_replace_rows,
    a_failing_batch_leaves_nothing_behind,
    retention_keeps_the_store_bounded,
    the_largest_incident_id_outlives_its_incident,
    a_second_store_sees_the_first_ones_writes,
    rollouts_round_trip_in_byte_order,
    incident_actions_go_with_their_incident,
    status_posts_round_trip,
    history_round_trips_and_is_pruned_per_resolution,
);

fn sorted(mut s: Snapshot) -> Snapshot {
    s.buckets
        .sort_by(|a, b| (&a.slo, a.coarse, a.start_ns).cmp(&(&b.slo, b.coarse, b.start_ns)));
    s.alerts
        .sort_by(|a, b| (&a.slo, &a.severity).cmp(&(&b.slo, &b.severity)));
    s
}

fn batches_survive_a_reopen(backend: &dyn Backend) {
    let mut extreme = incident(u64::MAX, "edge", Some(u64::MAX));
    extreme.bad_events = u64::MAX;
    extreme.budget_spent_ppm = i64::MAX as u64 + 1;
    extreme.labels = vec![
        ("dup".to_owned(), "1".to_owned()),
        ("dup".to_owned(), "2".to_owned()),
        ("".to_owned(), "é ✓ 'quoted'".to_owned()),
    ];
    let edge_buckets = [
        bucket("edge", false, u64::MAX, u64::MAX, u64::MAX),
        bucket("edge", true, i64::MAX as u64 + 1, 3, u64::MAX),
        bucket("edge", true, 0, 0, 0),
    ];
    {
        let mut store = backend.open();
        assert_eq!(store.load().unwrap(), Snapshot::default());
        store.write(&sample_batch(T0)).unwrap();
        store
            .write(&Batch {
                buckets: edge_buckets.to_vec(),
                alerts: vec![alert("edge", "page", "resolved", u64::MAX)],
                incidents: vec![extreme.clone(), incident(2, "search-latency", Some(T0))],
                prune: None,
            })
            .unwrap();
    }
    let snap = backend.open().load().unwrap();
    let batch = sample_batch(T0);
    let mut want = Snapshot {
        buckets: batch.buckets.clone(),
        alerts: batch.alerts.clone(),
        incidents: batch.incidents.clone(),
        max_incident_id: Some(u64::MAX),
    };
    want.buckets.extend(edge_buckets);
    want.alerts
        .push(alert("edge", "page", "resolved", u64::MAX));
    want.incidents
        .extend([incident(2, "search-latency", Some(T0)), extreme]);
    // Incidents come by id, unsigned, without sorting here.
    assert_eq!(sorted(snap), sorted(want));
}

fn upserts_replace_rows(backend: &dyn Backend) {
    let mut store = backend.open();
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
    let snap = backend.open().load().unwrap();
    assert_eq!(snap.buckets.len(), 3);
    assert_eq!(
        snap.buckets[0],
        bucket("checkout-availability", false, T0, 1990, 2000)
    );
    assert_eq!(
        snap.alerts[0],
        alert("checkout-availability", "page", "resolved", T0 + 600 * SEC)
    );
    assert_eq!(snap.incidents, vec![changed]);
}

fn a_failing_batch_leaves_nothing_behind(backend: &dyn Backend) {
    let mut store = backend.open();
    store.write(&sample_batch(T0)).unwrap();
    let before = store.load().unwrap();
    // Every table is touched before the last row breaks total >= good.
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
    assert!(err.to_string().contains(": writing a batch:"), "{err}");
    assert!(!err.is_busy(), "a broken row is not worth retrying: {err}");
    assert_eq!(store.load().unwrap(), before);
    assert_eq!(backend.open().load().unwrap(), before);
    // Still usable afterwards, on the same connection.
    store.write(&sample_batch(T0 + 20 * SEC)).unwrap();
    assert_eq!(store.load().unwrap().buckets.len(), 6);
    // u64 above 2^63 compares unsigned: total 2^63 >= good 5.
    store
        .write(&Batch {
            buckets: vec![bucket("big", false, T0, 5, i64::MAX as u64 + 1)],
            ..Batch::default()
        })
        .unwrap();
    let wrapped = store.write(&Batch {
        buckets: vec![bucket("big", false, T0, i64::MAX as u64 + 1, 5)],
        ..Batch::default()
    });
    assert!(wrapped.is_err(), "good 2^63 > total 5, unsigned");
}

fn retention_keeps_the_store_bounded(backend: &dyn Backend) {
    let mut store = backend.open();
    let slos: Vec<String> = (0..5).map(|i| format!("slo-{i}")).collect();
    let mut batch = Batch::default();
    for slo in &slos {
        for i in 0..200 {
            batch
                .buckets
                .push(bucket(slo, false, T0 + i * 10 * SEC, 9, 10));
        }
        for i in 0..40 {
            batch
                .buckets
                .push(bucket(slo, true, T0 + i * 300 * SEC, 90, 100));
        }
    }
    // Beyond 2^63: compared unsigned, so never older than a real time.
    batch
        .buckets
        .push(bucket("slo-0", false, i64::MAX as u64 + 1, 1, 1));
    for id in 1..=300 {
        let resolved = (id % 5 != 0).then_some(T0 + id * 100 * SEC);
        batch
            .incidents
            .push(incident(id, &slos[(id % 5) as usize], resolved));
    }
    store.write(&batch).unwrap();
    store
        .write(&Batch {
            prune: Some(Retention {
                fine_before_ns: T0 + 1500 * SEC,   // keeps 50 fine buckets per SLO
                coarse_before_ns: T0 + 9000 * SEC, // keeps 10 coarse buckets per SLO
                incidents_before_ns: T0 + 10_000 * SEC,
                max_incidents: 150,
            }),
            ..Batch::default()
        })
        .unwrap();
    let snap = store.load().unwrap();
    assert_eq!(
        snap.buckets.iter().filter(|b| !b.coarse).count(),
        5 * 50 + 1
    );
    assert_eq!(snap.buckets.iter().filter(|b| b.coarse).count(), 5 * 10);
    let model: Vec<u64> = {
        let mut ids: Vec<u64> = (1..=300u64)
            .filter(|id| id % 5 == 0 || T0 + id * 100 * SEC >= T0 + 10_000 * SEC)
            .collect();
        ids.split_off(ids.len() - 150)
    };
    let ids: Vec<u64> = snap.incidents.iter().map(|i| i.id).collect();
    assert_eq!(ids, model);
    assert!(snap.incidents.iter().all(|i| i.labels.len() == 2));
    assert_eq!(snap.max_incident_id, Some(300));
}

fn the_largest_incident_id_outlives_its_incident(backend: &dyn Backend) {
    let mut store = backend.open();
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
    let snap = backend.open().load().unwrap();
    assert!(snap.incidents.is_empty());
    assert_eq!(snap.max_incident_id, Some(42));
}

fn a_second_store_sees_the_first_ones_writes(backend: &dyn Backend) {
    let mut a = backend.open();
    let mut b = backend.open();
    a.write(&sample_batch(T0)).unwrap();
    assert_eq!(b.load().unwrap(), a.load().unwrap());
    b.write_rollouts(&[rollout("checkout", "{}", T0)], &[])
        .unwrap();
    assert_eq!(a.load_rollouts().unwrap().len(), 1);
    // The trait object moves to another thread, as the engine's flusher.
    let handle = std::thread::spawn(move || b.load().unwrap());
    assert_eq!(handle.join().unwrap(), a.load().unwrap());
}

fn rollout(route: &str, state: &str, updated_ns: u64) -> RolloutRow {
    RolloutRow {
        route: route.to_owned(),
        state: state.to_owned(),
        updated_ns,
    }
}

fn rollouts_round_trip_in_byte_order(backend: &dyn Backend) {
    let checkout = rollout("checkout", r#"{"phase":"canary","step":2}"#, T0);
    let upper = rollout("Zeta", "{}", T0);
    let edge = rollout("api/édge ✓", "{\"s\":\"\\u0000\"}", u64::MAX);
    let accented = rollout("é", "{}", 1);
    {
        let mut store = backend.open();
        assert_eq!(store.load_rollouts().unwrap(), vec![]);
        store
            .write_rollouts(
                &[
                    checkout.clone(),
                    accented.clone(),
                    edge.clone(),
                    upper.clone(),
                ],
                &["never-there".to_owned()],
            )
            .unwrap();
        store.write_rollouts(&[], &[]).unwrap();
        assert_eq!(store.load().unwrap(), Snapshot::default());
    }
    let mut store = backend.open();
    // Byte order: upper case before lower case, UTF-8 after ASCII.
    assert_eq!(
        store.load_rollouts().unwrap(),
        vec![
            upper.clone(),
            edge.clone(),
            checkout.clone(),
            accented.clone()
        ]
    );
    // A route both upserted and removed ends up removed.
    store
        .write_rollouts(
            &[rollout("checkout", "{}", T0)],
            &["checkout".to_owned(), "Zeta".to_owned()],
        )
        .unwrap();
    assert_eq!(store.load_rollouts().unwrap(), vec![edge, accented]);
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

fn incident_actions_go_with_their_incident(backend: &dyn Backend) {
    let acked = action(7, 0, "ack", "alice", T0 + 90 * SEC);
    let noted = action(7, 1, "note", "bob", T0 + 120 * SEC);
    let resolved = action(7, u32::MAX, "resolve", "alice", T0 + 300 * SEC);
    let edge = action(u64::MAX, 0, "note", "", u64::MAX);
    {
        let mut store = backend.open();
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
        store.write_incident_actions(&[]).unwrap();
        // An incident that is not stored, or an unknown kind: all or nothing.
        assert!(store
            .write_incident_actions(&[action(7, 5, "ack", "x", T0), action(8, 0, "ack", "x", T0)])
            .is_err());
        assert!(store
            .write_incident_actions(&[
                action(7, 5, "ack", "x", T0),
                action(7, 6, "snooze", "x", T0)
            ])
            .is_err());
    }
    let mut store = backend.open();
    assert_eq!(
        store.load_incident_actions().unwrap(),
        vec![acked, noted, resolved, edge],
        "by incident id (unsigned), then in order"
    );
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
}

fn status_posts_round_trip(backend: &dyn Backend) {
    let post = |id: u64, doc: &str, updated_ns: u64| StatusPostRow {
        id,
        doc: doc.to_owned(),
        updated_ns,
    };
    let first = post(1, r#"{"title":"Checkout errors"}"#, T0);
    let second = post(2, r#"{"title":"Database upgrade ✓"}"#, T0 + SEC);
    let big = post(u64::MAX, "{}", u64::MAX);
    {
        let mut store = backend.open();
        store
            .write_status_posts(&[big.clone(), second.clone(), first.clone()], &[77])
            .unwrap();
        store.write_status_posts(&[], &[]).unwrap();
        assert_eq!(store.load().unwrap(), Snapshot::default());
    }
    let mut store = backend.open();
    assert_eq!(
        store.load_status_posts().unwrap(),
        vec![first, second, big.clone()]
    );
    let updated = post(1, r#"{"resolved":true}"#, T0 + 9 * SEC);
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

fn history_round_trips_and_is_pruned_per_resolution(backend: &dyn Backend) {
    let extreme = HistoryRow {
        route: "é ✓".to_owned(),
        series: "canary".to_owned(),
        coarse: true,
        start_ns: u64::MAX,
        requests: u64::MAX,
        errors: i64::MAX as u64 + 1,
        latency: vec![(0, u64::MAX), (u16::MAX, 1)],
    };
    {
        let mut store = backend.open();
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
        store
            .write_history(&HistoryBatch {
                points: vec![point("checkout", "route", false, T0, 9)],
                prune: None,
            })
            .unwrap();
        assert_eq!(store.load().unwrap(), Snapshot::default());
    }
    let mut store = backend.open();
    assert_eq!(
        store.load_history().unwrap(),
        vec![
            point("checkout", "route", false, T0, 9),
            point("checkout", "route", false, T0 + 10 * SEC, 5),
            point("checkout", "route", true, T0, 12),
            point("checkout", "stable", false, T0, 0),
            extreme.clone(),
        ],
        "by route, series, fine before coarse, then start"
    );
    store
        .write_history(&HistoryBatch {
            points: vec![point("c", "route", false, T0, 1)],
            prune: Some(HistoryRetention {
                fine_before_ns: T0 + 5 * SEC,
                coarse_before_ns: T0 + 1,
            }),
        })
        .unwrap();
    assert_eq!(
        store.load_history().unwrap(),
        vec![point("checkout", "route", false, T0 + 10 * SEC, 5), extreme,]
    );
}

// What only PostgreSQL has.

fn server(test: &str) -> Option<PostgresServer> {
    PostgresServer::start(test)
}

#[test]
fn postgres_schema_is_marked_and_opening_again_changes_nothing() {
    let Some(pg) = server("marked") else { return };
    let mut store = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    store.write(&sample_batch(T0)).unwrap();
    assert_eq!(
        pg.psql("SELECT key || '=' || value FROM levee_meta ORDER BY key"),
        format!(
            "application_id={}\nmax_incident_id=1\nschema_version={POSTGRES_SCHEMA_VERSION}",
            APPLICATION_ID
        )
    );
    // u64 with the same bits in BIGINT, readable below 2^63.
    store
        .write_rollouts(&[rollout("r", "{}", u64::MAX)], &[])
        .unwrap();
    assert_eq!(pg.psql("SELECT updated_ns FROM rollouts"), "-1");
    assert_eq!(
        pg.psql("SELECT start_ns FROM slo_buckets LIMIT 1"),
        T0.to_string()
    );
    drop(store);
    // Several stores opening at once migrate once and all succeed.
    let url = pg.url();
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open_with(&url, fast()).map(|_| ()))
        })
        .collect();
    for handle in opened {
        handle.join().unwrap().unwrap();
    }
    let mut store = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    assert_eq!(store.load().unwrap().buckets.len(), 3);
    assert_eq!(pg.psql("SELECT count(*) FROM levee_meta"), "3");
    assert_eq!(
        store.describe(),
        format!("postgres://levee@127.0.0.1:{}/postgres", pg.addr().port())
    );
}

#[test]
fn postgres_refuses_a_schema_that_is_not_levees_and_leaves_it_alone() {
    let Some(pg) = server("foreign") else { return };
    pg.psql("CREATE SCHEMA other; CREATE TABLE other.slo_buckets (x int)");
    let url = format!("{}?options=-csearch_path%3Dother", pg.url());
    let err = PostgresStore::open_with(&url, fast()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("slo_buckets"), "{err}");
    assert_eq!(
        pg.psql("SELECT to_regclass('other.levee_meta') IS NULL"),
        "t"
    );

    pg.psql("CREATE SCHEMA foreign_meta; CREATE TABLE foreign_meta.levee_meta (key text primary key, value bigint); INSERT INTO foreign_meta.levee_meta VALUES ('application_id', 7), ('schema_version', 1)");
    let url = format!("{}?options=-csearch_path%3Dforeign_meta", pg.url());
    let err = PostgresStore::open_with(&url, fast()).unwrap_err();
    assert!(err.to_string().contains("application_id is 0x7"), "{err}");

    // A newer schema than this build's.
    drop(PostgresStore::open_with(&pg.url(), fast()).unwrap());
    pg.psql("UPDATE levee_meta SET value = value + 1 WHERE key = 'schema_version'");
    let err = PostgresStore::open_with(&pg.url(), fast()).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "schema version {}, expected {POSTGRES_SCHEMA_VERSION}",
            POSTGRES_SCHEMA_VERSION + 1
        )),
        "{err}"
    );
}

#[test]
fn postgres_down_is_an_error_within_the_timeout_and_writes_resume_when_it_is_back() {
    let Some(mut pg) = server("down") else { return };
    let mut store = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    store.write(&sample_batch(T0)).unwrap();

    pg.stop();
    let started = std::time::Instant::now();
    let err = store.write(&sample_batch(T0 + 10 * SEC)).unwrap_err();
    assert!(err.is_busy(), "worth retrying: {err}");
    assert!(matches!(err, StoreError::Postgres { .. }), "{err:?}");
    // Every later call fails fast too (a refused connection), without panic.
    for _ in 0..3 {
        assert!(store.load().is_err());
        assert!(store.load_rollouts().is_err());
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Opening while it is down is an error too, not a hang.
    let err = PostgresStore::open_with(&pg.url(), fast()).unwrap_err();
    assert!(err.to_string().contains("connecting"), "{err}");

    pg.start_again();
    // The same store reconnects: the failed batch, written again, lands.
    store.write(&sample_batch(T0 + 10 * SEC)).unwrap();
    assert_eq!(store.load().unwrap().buckets.len(), 6);
}

#[test]
fn postgres_frozen_is_an_error_after_the_deadline_not_a_hang() {
    let Some(pg) = server("frozen") else { return };
    let mut store = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    store.write(&sample_batch(T0)).unwrap();
    pg.freeze();
    let started = std::time::Instant::now();
    let err = store.write(&sample_batch(T0 + 10 * SEC)).unwrap_err();
    let took = started.elapsed();
    pg.thaw();
    assert!(err.is_busy(), "{err}");
    assert!(err.to_string().contains("no answer after"), "{err}");
    // statement 1 s + margin 1 s.
    assert!(took < Duration::from_secs(4), "{took:?}");
    store.write(&sample_batch(T0 + 10 * SEC)).unwrap();
    assert_eq!(store.load().unwrap().buckets.len(), 6);
}

#[test]
fn postgres_store_works_from_async_code_and_is_dropped_there() {
    let Some(pg) = server("async") else { return };
    let url = pg.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // As the control plane does at start: open and load on a runtime
        // thread, then write from a blocking thread.
        let mut store: Box<dyn Store> = Box::new(PostgresStore::open_with(&url, fast()).unwrap());
        assert_eq!(store.load().unwrap(), Snapshot::default());
        let store = tokio::task::spawn_blocking(move || {
            store.write(&sample_batch(T0)).unwrap();
            store
        })
        .await
        .unwrap();
        assert_eq!(
            store.describe(),
            format!("postgres://levee@127.0.0.1:{}/postgres", pg.addr().port())
        );
        drop(store);
    });
}

#[test]
fn postgres_refuses_nul_characters_without_storing_anything() {
    let Some(pg) = server("nul") else { return };
    let mut store = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    let mut batch = sample_batch(T0);
    batch.incidents[0]
        .labels
        .push(("nul".to_owned(), "a\0b".to_owned()));
    let err = store.write(&batch).unwrap_err();
    assert!(!err.is_busy(), "{err}");
    assert_eq!(store.load().unwrap(), Snapshot::default());
}

#[test]
fn postgres_malformed_history_is_reported_and_the_password_never_shown() {
    let Some(pg) = server("malformed") else {
        return;
    };
    let url = pg.url().replace("levee@", "levee:hunter2@");
    let mut store = PostgresStore::open_with(&url, fast()).unwrap();
    store
        .write_history(&HistoryBatch {
            points: vec![point("checkout", "route", false, T0, 3)],
            prune: None,
        })
        .unwrap();
    pg.psql("UPDATE route_history SET latency = '0:1,71'");
    let e = store.load_history().unwrap_err();
    assert!(matches!(e, StoreError::Malformed { .. }), "{e:?}");
    assert!(
        e.to_string().contains("route_history (checkout, route, 0,"),
        "{e}"
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!store.describe().contains("hunter2"));
    let bad = PostgresStore::open_with("postgres://levee:hunter2@[::1", fast()).unwrap_err();
    assert!(!bad.to_string().contains("hunter2"), "{bad}");
}

// Backup and restore through the store's own export: a PostgreSQL store
// backs up into the same kind of SQLite file as a SQLite store, verified
// the same way, and either kind restores into either backend.

/// Writes rows into every table, with the edges of each type: u64 above
/// 2^63, NULLs, empty and non-ASCII text, repeated labels.
fn fill(store: &mut dyn Store) {
    let mut batch = sample_batch(T0);
    let mut extreme = incident(u64::MAX, "edge", Some(u64::MAX));
    extreme.bad_events = u64::MAX;
    extreme.labels = vec![
        ("dup".to_owned(), "1".to_owned()),
        ("dup".to_owned(), "2".to_owned()),
        (String::new(), "é ✓ 'quoted'".to_owned()),
    ];
    batch.incidents.push(extreme);
    batch
        .incidents
        .push(incident(2, "checkout-availability", None));
    batch
        .buckets
        .push(bucket("edge", true, i64::MAX as u64 + 1, 3, u64::MAX));
    batch
        .buckets
        .extend((0..1200).map(|i| bucket("many", false, T0 + i * SEC, i, i + 1)));
    store.write(&batch).unwrap();
    store
        .write_rollouts(
            &[
                rollout("checkout", r#"{"phase":"canary"}"#, T0),
                rollout("api/édge ✓", "{}", u64::MAX),
            ],
            &[],
        )
        .unwrap();
    store
        .write_incident_actions(&[
            action(1, 0, "ack", "ana", T0),
            action(1, 1, "note", "bo", T0 + SEC),
            action(u64::MAX, 0, "resolve", "cy", u64::MAX),
        ])
        .unwrap();
    store
        .write_status_posts(
            &[
                StatusPostRow {
                    id: 7,
                    doc: r#"{"title":"maintenance"}"#.to_owned(),
                    updated_ns: T0,
                },
                StatusPostRow {
                    id: u64::MAX,
                    doc: "{}".to_owned(),
                    updated_ns: 0,
                },
            ],
            &[],
        )
        .unwrap();
    store
        .write_history(&HistoryBatch {
            points: vec![
                point("checkout", "route", false, T0, 5),
                point("checkout", "canary", true, u64::MAX, 0),
            ],
            prune: None,
        })
        .unwrap();
}

/// Everything a store holds, as the trait reads it.
#[derive(Debug, PartialEq)]
struct Everything {
    snapshot: Snapshot,
    rollouts: Vec<RolloutRow>,
    actions: Vec<IncidentActionRow>,
    posts: Vec<StatusPostRow>,
    history: Vec<HistoryRow>,
}

fn everything(store: &mut dyn Store) -> Everything {
    Everything {
        snapshot: sorted(store.load().unwrap()),
        rollouts: store.load_rollouts().unwrap(),
        actions: store.load_incident_actions().unwrap(),
        posts: store.load_status_posts().unwrap(),
        history: store.load_history().unwrap(),
    }
}

/// `pg`'s URL for database `db`, created empty.
fn new_database(pg: &PostgresServer, db: &str) -> String {
    pg.psql(&format!("CREATE DATABASE {db}"));
    pg.url().replace("/postgres", &format!("/{db}"))
}

#[test]
fn postgres_backup_verify_restore_into_an_empty_database_round_trips() {
    let Some(pg) = server("pg_backup") else {
        return;
    };
    let dir = TestDir::new("pg-backup");
    let mut source = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    fill(&mut source);
    let before = everything(&mut source);

    let file = dir.path("levee.bak");
    let report = backup_postgres(&mut source, &file).unwrap();
    assert!(report.bytes > 0);
    assert!(!dir.path("levee.bak.tmp").exists());
    let rows: Vec<(&str, u64)> = report.rows.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    assert_eq!(
        rows,
        [
            ("meta", 2),
            ("slo_buckets", 1204),
            ("slo_alerts", 2),
            ("slo_incidents", 3),
            ("slo_incident_labels", 7),
            ("rollouts", 2),
            ("slo_incident_actions", 3),
            ("status_posts", 2),
            ("route_history", 2),
        ]
    );
    // The same kind of file as a SQLite store's backup, verified the same way.
    let verified = verify(&file).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    assert_eq!(verified.checksum, Some(report.checksum));
    assert_eq!(verified.rows, report.rows);
    assert_eq!(verified.schema_version, Some(SCHEMA_VERSION));
    assert_eq!(verified.created_at_ns, Some(report.created_at_ns));
    // Never overwritten.
    let err = backup_postgres(&mut source, &file).unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");
    drop(source);

    let url = new_database(&pg, "restored");
    let mut target = PostgresStore::open_with(&url, fast()).unwrap();
    let restored = restore_postgres(&file, &mut target).unwrap();
    assert!(!restored.replaced, "the database was empty");
    assert_eq!(restored.checksum, report.checksum);
    assert_eq!(restored.rows, report.rows);
    assert_eq!(restored.location, target.location());
    assert_eq!(everything(&mut target), before);
    // A backup of the restored database is the same, row for row.
    let again = backup_postgres(&mut target, &dir.path("again.bak")).unwrap();
    assert_eq!(again.checksum, report.checksum);
    assert_eq!(again.rows, report.rows);

    // Restoring over rows replaces them all, and sets max_incident_id to
    // the backup's even where that is lower.
    let small = dir.path("small.db");
    let mut sqlite = SqliteStore::open(&small).unwrap();
    sqlite.write(&sample_batch(T0)).unwrap();
    let expected = everything(&mut sqlite);
    drop(sqlite);
    backup(&small, &dir.path("small.bak")).unwrap();
    let restored = restore_postgres(&dir.path("small.bak"), &mut target).unwrap();
    assert!(restored.replaced);
    assert_eq!(everything(&mut target), expected);
    assert_eq!(target.load().unwrap().max_incident_id, Some(1));
}

#[test]
fn sqlite_backups_restore_into_postgres_and_postgres_backups_into_sqlite() {
    let Some(pg) = server("cross_backup") else {
        return;
    };
    let dir = TestDir::new("cross-backup");
    let db = dir.path("levee.db");
    let mut sqlite = SqliteStore::open(&db).unwrap();
    fill(&mut sqlite);
    let rows = everything(&mut sqlite);
    drop(sqlite);
    let from_sqlite = backup(&db, &dir.path("sqlite.bak")).unwrap();

    let mut postgres = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    restore_postgres(&dir.path("sqlite.bak"), &mut postgres).unwrap();
    assert_eq!(everything(&mut postgres), rows);
    let from_postgres = backup_postgres(&mut postgres, &dir.path("postgres.bak")).unwrap();
    // The same rows make the same file contents, whichever the backend.
    assert_eq!(from_postgres.checksum, from_sqlite.checksum);
    assert_eq!(from_postgres.rows, from_sqlite.rows);

    let copy = dir.path("copy.db");
    let restored = restore(&dir.path("postgres.bak"), &copy).unwrap();
    assert!(restored.verify.is_ok());
    let mut sqlite = SqliteStore::open(&copy).unwrap();
    assert_eq!(everything(&mut sqlite), rows);
}

#[test]
fn postgres_restore_refuses_a_bad_backup_or_a_database_in_use_and_changes_nothing() {
    let Some(pg) = server("pg_restore_refuses") else {
        return;
    };
    let dir = TestDir::new("pg-restore-refuses");
    let mut store = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    fill(&mut store);
    let before = everything(&mut store);
    let file = dir.path("levee.bak");
    backup_postgres(&mut store, &file).unwrap();

    // A row changed after the backup: the checksum no longer matches.
    let changed = dir.path("changed.bak");
    std::fs::copy(&file, &changed).unwrap();
    rusqlite::Connection::open(&changed)
        .unwrap()
        .execute(
            "UPDATE slo_buckets SET total = total + 1 WHERE slo = 'many'",
            [],
        )
        .unwrap();
    // Damaged bytes.
    let damaged = dir.path("damaged.bak");
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len();
    bytes[len / 2..].fill(0x5a);
    std::fs::write(&damaged, bytes).unwrap();
    // A newer schema than this build's.
    let newer = dir.path("newer.bak");
    std::fs::copy(&file, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    for bad in [&changed, &damaged, &newer] {
        let err = restore_postgres(bad, &mut store).unwrap_err();
        assert!(matches!(err, StoreError::VerifyFailed { .. }), "{err}");
        assert_eq!(everything(&mut store), before, "{err}");
    }
    let err = restore_postgres(&newer, &mut store).unwrap_err();
    assert!(err.to_string().contains("newer than this build's"), "{err}");

    // A backup PostgreSQL cannot hold (text with a NUL character, which
    // SQLite keeps) fails after some tables were already replaced: the
    // transaction rolls back whole.
    let db = dir.path("nul.db");
    let mut sqlite = SqliteStore::open(&db).unwrap();
    let mut batch = sample_batch(T0 + 100 * SEC);
    batch.incidents[0]
        .labels
        .push(("nul".to_owned(), "a\0b".to_owned()));
    sqlite.write(&batch).unwrap();
    drop(sqlite);
    backup(&db, &dir.path("nul.bak")).unwrap();
    let err = restore_postgres(&dir.path("nul.bak"), &mut store).unwrap_err();
    assert!(matches!(err, StoreError::Postgres { .. }), "{err}");
    assert_eq!(everything(&mut store), before);

    // Another Levee session on the database (a gateway): refused.
    let gateway = PostgresStore::open_with(&pg.url(), fast()).unwrap();
    let err = restore_postgres(&file, &mut store).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("in use by 1 other Levee session (application_name levee)"),
        "{err}"
    );
    assert_eq!(everything(&mut store), before);
    // Stopped, it no longer counts (its server process ends a moment later).
    drop(gateway);
    restore_postgres(&file, &mut store).unwrap();
    assert_eq!(everything(&mut store), before);
}
