//! Levee's control algorithms as plain structs: no I/O, no tasks, time passed
//! in as [`levee_core::Nanos`] from an injected clock. The proxy only wires
//! them. So far: load-balancer choice ([`balancer`]), the peak-EWMA latency
//! estimate ([`ewma`]), the stable hash that consistent hashing relies on
//! ([`hash`]), and the first resilience pieces of issue 3, not yet wired:
//! backoff and retry budgets ([`retry`]) over a sliding window ([`window`]),
//! circuit breakers ([`breaker`]) and outlier ejection ([`outlier`]).

pub mod balancer;
pub mod breaker;
pub mod ewma;
pub mod hash;
pub mod outlier;
pub mod retry;
pub mod window;

pub use balancer::{Algorithm, Balancer, EndpointLoad};
pub use ewma::PeakEwma;
