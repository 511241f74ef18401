//! Levee's load generator engine, behind `levee load`: open (arrival
//! rate) and closed (virtual users) models, latency measured from each
//! request's scheduled send time into HDR histograms, and k6-style
//! thresholds judged over the whole run and over sliding windows.
//!
//! The parts, in the order a run uses them: [`scenario`] (the scenario
//! file), [`schedule`] (when each request is due), [`run`] (the client
//! and the tasks that send), [`record`] (what was measured),
//! [`threshold`] (the language and its verdicts) and [`report`] (summary,
//! JSON, JUnit). It depends on no part of the proxy.

mod h1;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod threshold;
