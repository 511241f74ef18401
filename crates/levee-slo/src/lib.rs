//! Levee's SLO math as plain structs, pure like `levee-policy`: no I/O, no
//! tasks, no locks, time passed in as [`levee_core::Nanos`].
//!
//! - [`buckets`]: exact good/total event counts of one SLO in fine and
//!   coarse time buckets, in bounded memory, and window sums over them.
//! - [`burn`]: objectives in parts per million, burn rates compared with
//!   factors in integers, the error budget left over the SLO period (as a
//!   share and as downtime) and the time until it runs out.
//! - [`alert`]: the multiwindow, multi-burn-rate alert policy of the SRE
//!   Workbook (as Sloth generates it) and the per-SLO alert state machine
//!   that reports each transition once.
//! - [`calendar`]: UTC calendar months and RFC 3339 times, on Unix
//!   nanoseconds.
//! - [`timeslice`]: time-slice budgeting (OpenSLO's `Timeslices` and
//!   `RatioTimeslices`): slices judged from the event buckets as they end,
//!   counted as events of their own buckets.
//! - [`incident`]: incidents rebuilt from alert transitions and the bucket
//!   history (start, detection, recovery, resolution, budget spent), and
//!   the MTTD and MTTR distributions.
//!
//! No float ever decides anything: budgets, burn rates and their
//! comparisons are integer or rational arithmetic; `f64` appears only in
//! [`burn::BurnRate::to_f64`], for display.

pub mod alert;
pub mod buckets;
pub mod burn;
pub mod calendar;
pub mod incident;
pub mod timeslice;

pub use alert::{AlertState, Alerts, Policy, Rule, Severity, Transition};
pub use buckets::{Buckets, Counts, Layout, LayoutError};
pub use burn::{Budget, Burn, BurnRate, ErrorBudget, Exhaustion, Factor, Objective};
pub use incident::{Incident, IncidentOptions, Summary};
pub use timeslice::{Method, SliceCounts, Slices};

/// A duration in nanoseconds, saturating rather than wrapping past 584
/// years, so an absurd setting cannot turn into a small one.
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
