//! ssh emulator.
