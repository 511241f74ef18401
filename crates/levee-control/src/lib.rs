//! Levee's control plane: the background loops that read what the data
//! plane (`levee-proxy`) measures and act on it. Today that is the SLO
//! evaluation loop with its incidents, report and alert webhooks, and the
//! state store they persist to; rollouts and experiments will live beside
//! it. The data plane never depends on this crate: the binary wires the two
//! together.

pub mod policy;
pub mod rules;
