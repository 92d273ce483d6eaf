//! What-if replay: a workload run through the real engine in virtual time.
//!
//! A policy is a pure function of what it is shown, so a month of builds can be replayed
//! against it in seconds: the engine's own decide, enforce and lifecycle code runs cycle after
//! cycle against a simulated cloud and Jenkins ([`world`]) whose clock moves only when the
//! driver ([`run`]) says so. The workload is a [`trace`]: recorded, or made by a seeded
//! [`generate`]or, or [`import`]ed from a Jenkins controller's build history. [`report`] turns the outcome into queue waits, node-hours, cost and counts,
//! side by side for several policies.
//!
//! This crate depends on the engine and on no client: the binary crate plugs in the WebAssembly
//! policies, so a replay runs exactly the policy that `run` would load.

#![warn(missing_docs)]

pub mod from_journal;
pub mod generate;
pub mod html;
pub mod import;
pub mod report;
pub mod run;
pub mod trace;
pub mod world;
