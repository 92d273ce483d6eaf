//! Logging to the host's log, tagged with the policy's name.
//!
//! In a wasm build each call goes to the host's `log` import (the host truncates long lines
//! and rate-limits a chatty policy; logging never fails). In a native build (unit tests) the
//! lines are kept in a thread-local buffer that [`take_captured`] drains, so tests can assert
//! on what a policy logged.

use crate::types::Level;

/// Log at trace level.
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message.as_ref());
}
/// Log at debug level.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message.as_ref());
}
/// Log at info level.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message.as_ref());
}
/// Log at warn level.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message.as_ref());
}
/// Log at error level.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message.as_ref());
}

/// Log one line at `level`.
#[cfg(target_arch = "wasm32")]
pub fn write(level: Level, message: &str) {
    crate::bindings::ecs_provisioner::policy::host::log(level, message);
}

/// Log one line at `level`.
#[cfg(not(target_arch = "wasm32"))]
pub fn write(level: Level, message: &str) {
    // The generated import is a panicking stub off wasm; capture instead.
    CAPTURED.with(|c| c.borrow_mut().push((level, message.to_owned())));
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static CAPTURED: std::cell::RefCell<Vec<(Level, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Native builds only: the lines logged on this thread since the last call, oldest first.
#[cfg(not(target_arch = "wasm32"))]
pub fn take_captured() -> Vec<(Level, String)> {
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_logs_are_captured_in_order() {
        take_captured();
        info("one");
        warn(format!("two {}", 2));
        assert_eq!(
            take_captured(),
            vec![
                (Level::Info, "one".to_string()),
                (Level::Warn, "two 2".to_string())
            ]
        );
        assert!(take_captured().is_empty());
    }
}
