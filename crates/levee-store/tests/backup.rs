//! Online backup, verification and restore on real files.

mod common;

use common::{bucket, incident, sample_batch, TestDir, SEC, T0};
use levee_store::{backup, restore, verify, Batch, SqliteStore, Store, StoreError, SCHEMA_VERSION};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A store with some history: 20 SLOs × 500 buckets, alerts, incidents.
fn populate(path: &Path) -> SqliteStore {
    let mut store = SqliteStore::open(path).unwrap();
    let mut batch = sample_batch(T0);
    for s in 0..20 {
        for i in 0..500 {
            batch.buckets.push(bucket(
                &format!("slo-{s:02}"),
                false,
                T0 + i * 10 * SEC,
                i,
                i + 1,
            ));
        }
    }
    batch
        .incidents
        .extend((2..50).map(|id| incident(id, "slo-01", Some(T0 + id * SEC))));
    store.write(&batch).unwrap();
    store
}

#[test]
fn backup_verify_restore_round_trip() {
    let dir = TestDir::new("roundtrip");
    let db = dir.path("levee.db");
    let mut store = populate(&db);
    let snapshot = store.load().unwrap();

    let report = backup(&db, &dir.path("levee.bak")).unwrap();
    assert_eq!(report.path, dir.path("levee.bak"));
    assert!(report.bytes > 0);
    assert_eq!(
        report.bytes,
        std::fs::metadata(dir.path("levee.bak")).unwrap().len()
    );
    let rows: Vec<(&str, u64)> = report.rows.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    assert_eq!(
        rows,
        [
            ("meta", 2),
            ("slo_buckets", 10_003),
            ("slo_alerts", 2),
            ("slo_incidents", 49),
            ("slo_incident_labels", 98),
            ("rollouts", 0),
            ("slo_incident_actions", 0),
            ("status_posts", 0),
            ("route_history", 0)
        ]
    );
    assert!(!dir.path("levee.bak.tmp").exists());
    // The backup is one self-contained file.
    assert!(!dir.path("levee.bak-wal").exists());

    let bytes = std::fs::read(dir.path("levee.bak")).unwrap();
    let verified = verify(&dir.path("levee.bak")).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    assert_eq!(
        std::fs::read(dir.path("levee.bak")).unwrap(),
        bytes,
        "verify changes nothing"
    );
    assert_eq!(verified.checksum, Some(report.checksum));
    assert_eq!(verified.rows, report.rows);
    assert_eq!(verified.schema_version, Some(SCHEMA_VERSION));
    assert_eq!(verified.created_at_ns, Some(report.created_at_ns));

    // Restore into a new path: the same snapshot, and a usable store.
    let restored = dir.path("restored.db");
    let r = restore(&dir.path("levee.bak"), &restored).unwrap();
    assert!(!r.replaced);
    assert_eq!(r.path, restored);
    let mut again = SqliteStore::open(&restored).unwrap();
    assert_eq!(again.load().unwrap(), snapshot);
    let manifest: i64 = Connection::open(&restored)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'backup_manifest'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(manifest, 0, "a restored store carries no manifest");
    again.write(&sample_batch(T0 + SEC)).unwrap();

    // Writing to the original after the backup does not change the backup.
    store.write(&sample_batch(T0 + 99 * SEC)).unwrap();
    assert!(verify(&dir.path("levee.bak")).unwrap().is_ok());
}

#[test]
fn backup_is_online_and_consistent_while_another_thread_writes() {
    let dir = TestDir::new("online");
    let db = dir.path("levee.db");
    drop(populate(&db));

    // The writer keeps two rows equal in every batch; a consistent
    // snapshot therefore has them equal too.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, written) = (db.clone(), stop.clone(), written.clone());
        thread::spawn(move || {
            let mut store = SqliteStore::open(&db).unwrap();
            let mut generation = 0u64;
            while !stop.load(Ordering::Relaxed) {
                generation += 1;
                let mut batch = Batch {
                    buckets: vec![
                        bucket("pair", false, T0, generation, generation),
                        bucket("pair", true, T0, generation, generation),
                    ],
                    ..Batch::default()
                };
                // And some growth, so pages keep changing.
                batch.buckets.push(bucket(
                    "growth",
                    false,
                    T0 + generation * SEC,
                    generation,
                    generation,
                ));
                store.write(&batch).unwrap();
                written.store(generation, Ordering::Relaxed);
            }
            generation
        })
    };
    while written.load(Ordering::Relaxed) < 50 {
        thread::sleep(Duration::from_millis(1));
    }

    let mut backups = Vec::new();
    for n in 0..3 {
        let before = written.load(Ordering::Relaxed);
        let dest = dir.path(&format!("online-{n}.bak"));
        backup(&db, &dest).unwrap();
        let after = written.load(Ordering::Relaxed);
        backups.push((dest, before, after));
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let generations = writer.join().unwrap();
    assert!(generations > 50);

    for (dest, before, after) in &backups {
        let report = verify(dest).unwrap();
        assert!(report.is_ok(), "{}: {:?}", dest.display(), report.problems);
        let restored = dir.path(&format!(
            "{}.db",
            dest.file_name().unwrap().to_string_lossy()
        ));
        restore(dest, &restored).unwrap();
        let snap = SqliteStore::open(&restored).unwrap().load().unwrap();
        let pair: Vec<u64> = snap
            .buckets
            .iter()
            .filter(|b| b.slo == "pair")
            .map(|b| b.total)
            .collect();
        assert_eq!(pair.len(), 2);
        assert_eq!(pair[0], pair[1], "a snapshot never splits a batch");
        let growth = snap.buckets.iter().filter(|b| b.slo == "growth").count() as u64;
        assert_eq!(
            growth, pair[0],
            "every batch up to the snapshot, none after"
        );
        assert!(
            (*before..=*after).contains(&pair[0]),
            "snapshot at generation {} taken between {before} and {after}",
            pair[0]
        );
    }
}

#[test]
fn verify_reports_a_deleted_row() {
    let dir = TestDir::new("deleted");
    let db = dir.path("levee.db");
    drop(populate(&db));
    let bak = dir.path("levee.bak");
    backup(&db, &bak).unwrap();
    Connection::open(&bak)
        .unwrap()
        .execute(
            "DELETE FROM slo_buckets WHERE slo = 'slo-07' AND start_ns = ?1",
            [(T0 + 100 * SEC) as i64],
        )
        .unwrap();

    let report = verify(&bak).unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .problems
            .contains(&"slo_buckets: 10002 rows, the manifest says 10003".to_owned()),
        "{:?}",
        report.problems
    );
    assert!(
        report.problems.iter().any(|p| p.starts_with("checksum ")),
        "{:?}",
        report.problems
    );
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);

    // A restore refuses it and leaves the target alone.
    let target = dir.path("target.db");
    let err = restore(&bak, &target).unwrap_err();
    assert!(matches!(err, StoreError::VerifyFailed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: backup failed verification: ", bak.display())),
        "{msg}"
    );
    assert!(msg.contains("slo_buckets: 10002 rows"), "{msg}");
    assert!(!target.exists());
    assert!(!dir.path("target.db.tmp").exists());
}

#[test]
fn verify_reports_changed_bytes() {
    let dir = TestDir::new("flipped");
    let db = dir.path("levee.db");
    let mut store = populate(&db);
    let mut batch = Batch::default();
    batch
        .buckets
        .push(bucket("a-rather-unique-slo-name", false, T0, 1, 2));
    store.write(&batch).unwrap();
    drop(store);
    let bak = dir.path("levee.bak");
    backup(&db, &bak).unwrap();

    // Change one byte of a stored value, in the middle of the file.
    let mut bytes = std::fs::read(&bak).unwrap();
    let needle = b"a-rather-unique-slo-name";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the name is stored in the file");
    bytes[at + 2] = b'R';
    std::fs::write(&bak, &bytes).unwrap();

    let report = verify(&bak).unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("checksum ") || p.starts_with("integrity_check: ")),
        "{:?}",
        report.problems
    );
    assert!(restore(&bak, &dir.path("target.db")).is_err());
}

#[test]
fn verify_reports_damaged_pages() {
    let dir = TestDir::new("damaged");
    let db = dir.path("levee.db");
    drop(populate(&db));
    let bak = dir.path("levee.bak");
    backup(&db, &bak).unwrap();

    // Overwrite whole pages in the middle of the file.
    let mut bytes = std::fs::read(&bak).unwrap();
    let mid = bytes.len() / 2 / 4096 * 4096;
    for b in &mut bytes[mid..mid + 3 * 4096] {
        *b ^= 0x5a;
    }
    std::fs::write(&bak, &bytes).unwrap();

    let report = verify(&bak).unwrap();
    assert!(!report.is_ok(), "damaged pages went unnoticed");
}

#[test]
fn verify_reports_files_that_are_not_backups() {
    let dir = TestDir::new("notbackups");
    // Not a database at all.
    let junk = dir.path("junk.bak");
    std::fs::write(&junk, "hello\n".repeat(1000)).unwrap();
    let report = verify(&junk).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems[0].contains("not a database"),
        "{:?}",
        report.problems
    );

    // A Levee store that did not come from `backup`: no manifest.
    let plain = dir.path("plain.db");
    let mut store = SqliteStore::open(&plain).unwrap();
    store.write(&sample_batch(T0)).unwrap();
    drop(store);
    let report = verify(&plain).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("no backup_manifest table")),
        "{:?}",
        report.problems
    );

    // A missing file is an error, not a report.
    let err = verify(&dir.path("missing.bak")).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}: cannot read the backup:",
            dir.path("missing.bak").display()
        )),
        "{err}"
    );
}

#[test]
fn backup_never_overwrites() {
    let dir = TestDir::new("overwrite");
    let db = dir.path("levee.db");
    drop(populate(&db));
    let bak = dir.path("levee.bak");
    std::fs::write(&bak, b"precious").unwrap();
    let err = backup(&db, &bak).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: already exists; refusing to overwrite it",
            bak.display()
        )
    );
    assert_eq!(std::fs::read(&bak).unwrap(), b"precious");

    // A leftover temporary file is not silently reused either.
    let other = dir.path("other.bak");
    std::fs::write(dir.path("other.bak.tmp"), b"").unwrap();
    let err = backup(&db, &other).unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err:?}");
    assert_eq!(err.path(), dir.path("other.bak.tmp"));
    assert!(!other.exists());
    assert!(dir.path("other.bak.tmp").exists(), "not ours to delete");

    // Nor is a missing directory created.
    let err = backup(&db, &dir.path("nowhere/levee.bak")).unwrap_err();
    assert!(
        matches!(err, StoreError::MissingDirectory { .. }),
        "{err:?}"
    );
}

#[test]
fn backup_refuses_what_is_not_a_levee_store() {
    let dir = TestDir::new("foreignbackup");
    let other = dir.path("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = backup(&other, &dir.path("x.bak")).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert!(!dir.path("x.bak").exists());
    assert!(!dir.path("x.bak.tmp").exists());

    let err = backup(&dir.path("missing.db"), &dir.path("y.bak")).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}: cannot read the database:",
            dir.path("missing.db").display()
        )),
        "{err}"
    );
}

#[test]
fn restore_refuses_a_database_in_use_and_replaces_it_once_free() {
    let dir = TestDir::new("inuse");
    let db = dir.path("levee.db");
    let mut store = populate(&db);
    let bak = dir.path("levee.bak");
    backup(&db, &bak).unwrap();
    let snapshot = store.load().unwrap();

    // The live store moves on, and holds the file open.
    store
        .write(&Batch {
            buckets: vec![bucket("after-backup", false, T0, 1, 1)],
            ..Batch::default()
        })
        .unwrap();
    let err = restore(&bak, &db).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    assert!(err.is_busy());
    assert_eq!(
        err.to_string(),
        format!(
            "{}: in use by another process; stop Levee before restoring",
            db.display()
        )
    );
    assert!(!dir.path("levee.db.tmp").exists());
    // Still intact and writable.
    store.write(&sample_batch(T0 + SEC)).unwrap();

    // A plain reader counts as in use too.
    drop(store);
    let reader = Connection::open(&db).unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM slo_buckets", [], |r| r.get(0))
        .unwrap();
    assert!(matches!(
        restore(&bak, &db).unwrap_err(),
        StoreError::InUse { .. }
    ));
    drop(reader);

    // Stale side files of the old database must not survive the swap.
    std::fs::write(dir.path("levee.db-journal"), b"stale").unwrap();
    let r = restore(&bak, &db).unwrap();
    assert!(r.replaced);
    assert!(!dir.path("levee.db-journal").exists());
    assert!(!dir.path("levee.db-wal").exists());
    assert!(!dir.path("levee.db.tmp").exists());
    assert_eq!(SqliteStore::open(&db).unwrap().load().unwrap(), snapshot);
}

#[test]
fn restore_replaces_a_damaged_database() {
    let dir = TestDir::new("damageddb");
    let db = dir.path("levee.db");
    drop(populate(&db));
    let bak = dir.path("levee.bak");
    backup(&db, &bak).unwrap();
    let snapshot = SqliteStore::open(&db).unwrap().load().unwrap();
    std::fs::write(&db, "garbage ".repeat(1000)).unwrap();
    assert!(SqliteStore::open(&db).is_err());
    restore(&bak, &db).unwrap();
    assert_eq!(SqliteStore::open(&db).unwrap().load().unwrap(), snapshot);
}
