//! `verify` leaves no scratch files behind, whatever it finds. Alone in its
//! own test binary, so no other test's scratch file is counted.

mod common;

use common::{sample_batch, TestDir, T0};
use levee_store::{backup, verify, SqliteStore, Store};

fn scratch_files() -> usize {
    let prefix = format!("levee-verify-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        })
        .count()
}

#[test]
fn verify_removes_its_scratch_copy() {
    let dir = TestDir::new("scratch");
    let db = dir.path("levee.db");
    let mut store = SqliteStore::open(&db).unwrap();
    store.write(&sample_batch(T0)).unwrap();
    drop(store);
    let bak = dir.path("levee.bak");
    backup(&db, &bak).unwrap();
    let junk = dir.path("junk.bak");
    std::fs::write(&junk, "junk".repeat(1000)).unwrap();

    assert_eq!(scratch_files(), 0);
    assert!(verify(&bak).unwrap().is_ok());
    assert_eq!(scratch_files(), 0);
    assert!(!verify(&junk).unwrap().is_ok());
    assert_eq!(scratch_files(), 0);
    assert!(!verify(&db).unwrap().is_ok());
    assert_eq!(scratch_files(), 0);
}
