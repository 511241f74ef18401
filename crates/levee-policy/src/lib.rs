//! Levee's control algorithms as plain structs: no I/O, no tasks, time passed
//! in as [`levee_core::Nanos`] from an injected clock. The proxy only wires
//! them. So far: load-balancer choice ([`balancer`]), the peak-EWMA latency
//! estimate ([`ewma`]) and the stable hash that consistent hashing relies on
//! ([`hash`]).

pub mod balancer;
pub mod ewma;
pub mod hash;

pub use balancer::{Algorithm, Balancer, EndpointLoad};
pub use ewma::PeakEwma;
