//! Shared helpers for the end-to-end tests.
pub mod jenkins;
pub mod policy;
pub mod ecs;
pub mod ssh;
pub mod engine;
