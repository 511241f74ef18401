//! Levee's shared vocabulary: the error taxonomy every layer speaks, the one
//! classification of a finished attempt, the clock abstraction, request ids,
//! lock-free metric primitives, the metric names, and escaping for the
//! markup Levee writes.
//!
//! Nothing here does I/O, so every crate above can depend on it. Time is
//! read through [`time`] alone, so tests can stop it.

pub mod auth;
pub mod clock;
pub mod deadline;
pub mod error;
pub mod ids;
pub mod markup;
pub mod metrics;
pub mod outcome;
pub mod time;

pub use clock::{Clock, ManualClock, MonotonicClock, Nanos};
pub use error::{ErrorKind, Side};
pub use outcome::Outcome;
