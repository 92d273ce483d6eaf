//! The engine ports implemented over the real clients (and so, in tests, over the emulators).
pub mod activity_record;
pub mod cloud;
pub mod jenkins;
pub mod leadership;
pub mod policy;
pub mod ssh;
