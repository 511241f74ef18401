//! The evaluation loop: a tick just after every `evaluate_every`
//! boundary, until the data plane drains, then one last flush.

use super::SloEngine;
use levee_core::Nanos;
use std::time::Duration;

/// The current Unix time in nanoseconds (the seam tests can pause).
pub(crate) fn unix_nanos() -> Nanos {
    levee_core::time::unix_nanos()
}

/// The loop: a tick just after every `evaluate_every` boundary, until the
/// gateway drains; then one last flush.
pub(crate) async fn run(
    engine: std::sync::Weak<SloEngine>,
    mut drain: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let every = match engine.upgrade() {
            Some(engine) => engine.evaluate_every(),
            None => return,
        };
        let period = u64::try_from(every.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1_000_000);
        let now = unix_nanos();
        // Just past the next boundary, so the bucket just ended is whole.
        let wait = period - now % period + 5_000_000;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_nanos(wait)) => {}
            _ = drain.changed() => {}
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if *drain.borrow() {
            engine.flush_now(unix_nanos()).await;
            return;
        }
        engine.tick(unix_nanos()).await;
    }
}
