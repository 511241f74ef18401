//! Levee's control algorithms as plain structs: no I/O, no tasks, time passed
//! in as [`levee_core::Nanos`] from an injected clock. The proxy only wires
//! them: load-balancer choice ([`balancer`]), the peak-EWMA latency estimate
//! ([`ewma`]), the stable hash that consistent hashing relies on ([`hash`]),
//! backoff and retry budgets ([`retry`]) over sliding windows ([`window`]),
//! outlier ejection ([`outlier`]), the circuit breaker ([`breaker`]),
//! priority failover and zone-aware routing ([`locality`]), the weight ramp
//! for returning endpoints ([`slow_start`]), GCRA rate limiting with a
//! bounded keyed table ([`ratelimit`]), and the adaptive concurrency limit
//! per cluster, by gradient, AIMD or Vegas ([`concurrency`]), and the
//! canary judge: the shared latency bucket layout and the sequential tests
//! that fail a canary against its baseline ([`judge`]), and the rules of an
//! async route's jobs: limits, delivery order, leases, retries and dead
//! letters ([`jobs`]).

pub mod admission;
pub mod balancer;
pub mod breaker;
pub mod concurrency;
pub mod ewma;
pub mod hash;
pub mod jobs;
pub mod judge;
pub mod locality;
pub mod outlier;
pub mod ratelimit;
pub mod retry;
pub mod slow_start;
pub mod stall;
pub mod window;

pub use balancer::{Algorithm, Balancer, EndpointLoad};
pub use ewma::PeakEwma;
