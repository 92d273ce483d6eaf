//! jenkins emulator.
