//! The process overload guard: resident memory and open connections
//! measured against configured limits, turned into one pressure level that
//! the data plane reads with a single atomic load. Rising levels shed
//! `sheddable` requests (503 `overloaded`), then close connections after
//! their response (no keep-alive), then refuse new connections. A
//! background task samples every 100 ms.

use levee_config::OverloadGuard;
use levee_core::metrics::{names, Gauge, Registry};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Pressure levels, in order.
pub(crate) const NORMAL: u8 = 0;
/// Refuse `sheddable` requests.
pub(crate) const SHED: u8 = 1;
/// Also close connections after their response.
pub(crate) const CLOSE: u8 = 2;
/// Also refuse new connections.
pub(crate) const REFUSE: u8 = 3;

/// The current pressure level and what it is computed from.
#[derive(Debug)]
pub(crate) struct Pressure {
    level: AtomicU8,
    gauge: Arc<Gauge>,
    memory: Arc<Gauge>,
}

impl Pressure {
    pub(crate) fn new(registry: &Registry) -> Self {
        Self {
            level: AtomicU8::new(NORMAL),
            gauge: registry.gauge(
                names::OVERLOAD_LEVEL,
                "Process pressure: 0 normal, 1 shedding sheddable requests, 2 closing connections after each response, 3 refusing connections.",
                &[],
            ),
            memory: registry.gauge(
                names::RESIDENT_MEMORY,
                "Resident memory of the gateway process.",
                &[],
            ),
        }
    }

    /// The level now.
    pub(crate) fn level(&self) -> u8 {
        self.level.load(Ordering::Relaxed)
    }

    /// Recomputes the level from usage (`memory` bytes, `connections`).
    pub(crate) fn update(
        &self,
        guard: Option<&OverloadGuard>,
        memory: Option<u64>,
        connections: u64,
    ) {
        if let Some(m) = memory {
            self.memory.set(m as i64);
        }
        let level = guard.map_or(NORMAL, |g| level_for(g, memory, connections));
        let before = self.level.swap(level, Ordering::Relaxed);
        if before != level {
            tracing::warn!(level, memory, connections, "overload level changed");
        }
        self.gauge.set(i64::from(level));
    }
}

/// The level usage reaches under `guard`'s watermarks.
pub(crate) fn level_for(guard: &OverloadGuard, memory: Option<u64>, connections: u64) -> u8 {
    let share =
        |used: u64, limit: Option<u64>| limit.map_or(0.0, |l| used as f64 / l.max(1) as f64);
    let worst =
        share(memory.unwrap_or(0), guard.max_memory).max(share(connections, guard.max_connections));
    if worst >= guard.refuse_at {
        REFUSE
    } else if worst >= guard.close_at {
        CLOSE
    } else if worst >= guard.shed_at {
        SHED
    } else {
        NORMAL
    }
}

/// Resident memory of this process, from `/proc/self/status` (Linux).
pub(crate) fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How often usage is sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> OverloadGuard {
        OverloadGuard {
            max_memory: Some(1_000),
            max_connections: Some(100),
            shed_at: 0.8,
            close_at: 0.9,
            refuse_at: 0.95,
        }
    }

    #[test]
    fn levels_rise_with_the_worst_resource() {
        let g = guard();
        assert_eq!(level_for(&g, Some(500), 10), NORMAL);
        assert_eq!(level_for(&g, Some(800), 10), SHED);
        assert_eq!(level_for(&g, Some(100), 91), CLOSE);
        assert_eq!(level_for(&g, Some(960), 0), REFUSE);
        let only_conns = OverloadGuard {
            max_memory: None,
            ..g
        };
        assert_eq!(level_for(&only_conns, Some(u64::MAX), 10), NORMAL);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(resident_memory().is_some_and(|m| m > 1024 * 1024));
    }
}
