//! The service manager's side of `run` (sd_notify): ready, reloading, stopping, and watchdog
//! pings while the reconcile loop is alive. Outside systemd (`NOTIFY_SOCKET` unset) every
//! call does nothing.

use std::sync::Arc;

use sd_notify::NotifyState;

use crate::engine::board::Board;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Start-up (or a reload) is done: the daemon serves.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload has begun (`Type=notify-reload` wants the monotonic time with it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The daemon is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its interval while the board calls the reconcile loop alive
/// (`/healthz`'s rule): a stuck loop stops the pings, and systemd restarts the service.
/// `None` when the unit has no `WatchdogSec=`.
pub fn spawn_watchdog(board: Arc<Board>) -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()? / 2;
    Some(tokio::spawn(async move {
        loop {
            let health = board.health(crate::engine::now_ms());
            if health.ok {
                send(&[NotifyState::Watchdog]);
            } else {
                tracing::warn!(reason = %health.reason, "not pinging the systemd watchdog");
            }
            tokio::time::sleep(interval).await;
        }
    }))
}
