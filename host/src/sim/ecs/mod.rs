//! ECS emulator (in progress).
