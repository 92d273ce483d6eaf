//! ecs emulator.
