//! The engine's ports implemented over the real clients (and so, in tests, the emulators).
pub mod jenkins;
