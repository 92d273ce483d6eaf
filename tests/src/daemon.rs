//! The daemon as a child process: `run --config`, killed however the test ends.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `run` process this test started; killed (by its pid) when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// `exe run --config path` with `more` arguments, its log in `log`.
    pub fn run(exe: &str, path: &Path, more: &[&std::ffi::OsStr], log: &Path) -> Daemon {
        Daemon(
            Command::new(exe)
                .args(["run", "--config"])
                .arg(path)
                .args(more)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    }

    /// Sends `signal` (`libc::SIGHUP`, `libc::SIGTERM`...).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
        assert_eq!(unsafe { libc::kill(self.0.id() as libc::pid_t, signal) }, 0);
    }

    /// SIGTERM, then waits for the process to end (it finishes its cycle and its journal).
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.0.wait().unwrap()
    }
}
