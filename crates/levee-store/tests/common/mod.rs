//! Helpers shared by the integration tests: unique directories on disk and
//! sample rows.

#![allow(dead_code, unreachable_pub)]

use levee_store::{AlertRow, Batch, BucketRow, IncidentRow};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system's temporary directory, removed with
/// everything in it when dropped.
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = levee_core::time::unix_nanos();
        let dir = std::env::temp_dir().join(format!(
            "levee-store-test-{name}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const T0: u64 = 1_800_000_000_000_000_000;
pub const SEC: u64 = 1_000_000_000;

pub fn bucket(slo: &str, coarse: bool, start_ns: u64, good: u64, total: u64) -> BucketRow {
    BucketRow {
        slo: slo.to_owned(),
        coarse,
        start_ns,
        good,
        total,
    }
}

pub fn alert(slo: &str, severity: &str, state: &str, since_ns: u64) -> AlertRow {
    AlertRow {
        slo: slo.to_owned(),
        severity: severity.to_owned(),
        state: state.to_owned(),
        since_ns,
    }
}

pub fn incident(id: u64, slo: &str, resolve_ns: Option<u64>) -> IncidentRow {
    IncidentRow {
        id,
        slo: slo.to_owned(),
        severity: "page".to_owned(),
        start_ns: T0.wrapping_add(id.wrapping_mul(SEC)),
        start_clipped: id.is_multiple_of(2),
        detect_ns: T0.wrapping_add(id.wrapping_mul(SEC)).wrapping_add(60 * SEC),
        recover_ns: resolve_ns.map(|r| r.saturating_sub(SEC)),
        resolve_ns,
        bad_events: id.wrapping_mul(10),
        budget_spent_ppm: id.wrapping_mul(7),
        runbook: id
            .is_multiple_of(3)
            .then(|| format!("https://runbooks.example/{slo}")),
        labels: vec![
            ("team".to_owned(), "payments".to_owned()),
            ("id".to_owned(), id.to_string()),
        ],
    }
}

/// A batch touching every table, with times from `t`.
pub fn sample_batch(t: u64) -> Batch {
    Batch {
        buckets: vec![
            bucket("checkout-availability", false, t, 990, 1000),
            bucket("checkout-availability", true, t, 9_990, 10_000),
            bucket("search-latency", false, t, 50, 50),
        ],
        alerts: vec![
            alert("checkout-availability", "page", "firing", t),
            alert("checkout-availability", "ticket", "pending", t),
        ],
        incidents: vec![incident(1, "checkout-availability", None)],
        prune: None,
    }
}
