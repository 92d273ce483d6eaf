//! Per-evaluation store state: the WASI context (empty and deterministic), the memory
//! limiter, and the `log` import (see `log`).
//!
//! A new [`Sandbox`] is made for every evaluation and dropped after it, so nothing a policy
//! does survives into the next call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::ecs_provisioner::policy::host;
use super::bindings::{Level, SnapshotParts};
use super::bounds;
use super::log::{LogBudget, LogState};
use super::limits::Limits;

/// Store data for one evaluation.
pub struct Sandbox {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(crate) limiter: GuestLimiter,
    pub(crate) log: LogState,
    /// The tail of what the guest wrote to stderr (Rust panic messages land there).
    pub(crate) stderr: Arc<Mutex<Vec<u8>>>,
    /// What the policy declared it reads (`declare-reads`); `None`: it did not, so everything.
    pub(crate) reads: Option<SnapshotParts>,
    /// Keeps the epoch ticker running while this store lives (set by the runtime's stores).
    pub(crate) ticking: Option<crate::ticker::Ticking>,
}

impl Sandbox {
    /// `now_ms` is the input's clock: the guest's wall clock reads it, so even a policy that
    /// asks WASI for the time gets an answer that depends only on its input.
    pub(crate) fn new(
        policy: Arc<str>,
        log_budget: Arc<LogBudget>,
        limits: &Limits,
        now_ms: u64,
    ) -> Self {
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stderr(StderrTail(stderr.clone()))
            .wall_clock(FixedWallClock(Duration::from_millis(now_ms)))
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(SplitMix64(0x5eed_0fec_u64 ^ now_ms))
            .insecure_random(SplitMix64(0x1a5e_cafe_u64 ^ now_ms))
            .insecure_random_seed(0x0ec5_9011_c1e5 ^ u128::from(now_ms))
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            limiter: GuestLimiter {
                cap: limits.memory_bytes as usize,
                peak: 0,
                denied: None,
            },
            log: LogState::new(policy, log_budget, limits.max_log_lines),
            stderr,
            reads: None,
            ticking: None,
        }
    }

    /// The last line(s) the guest wrote to stderr (bounded and escaped), for trap messages.
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let buf = self.stderr.lock().ok()?;
        let text = String::from_utf8_lossy(&buf);
        let mut text = text.trim();
        // The end matters most: a panic message is the last thing written.
        if text.len() > bounds::MAX_TEXT_BYTES {
            let mut start = text.len() - bounds::MAX_TEXT_BYTES;
            while !text.is_char_boundary(start) {
                start += 1;
            }
            text = &text[start..];
        }
        (!text.is_empty()).then(|| bounds::text(text))
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Enforces the memory cap and remembers what the guest asked for, so a trap that follows a
/// refused growth is reported as "memory cap exceeded" rather than a bare `unreachable`.
pub(crate) struct GuestLimiter {
    pub(crate) cap: usize,
    /// Largest linear memory size granted, in bytes.
    pub(crate) peak: usize,
    /// Size of the first growth refused, in bytes.
    pub(crate) denied: Option<usize>,
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.denied.get_or_insert(desired);
            // Refuse rather than trap: a careful guest can handle a failed allocation.
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl host::Host for Sandbox {
    fn log(&mut self, level: Level, message: String) {
        self.log.write(level, &message);
    }

    fn declare_reads(&mut self, parts: SnapshotParts) {
        self.reads = Some(parts);
    }
}

/// Keeps the last [`STDERR_TAIL`] bytes written to the guest's stderr; never blocks or fails.
struct StderrTail(Arc<Mutex<Vec<u8>>>);

const STDERR_TAIL: usize = 2048;

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        if let Ok(mut buf) = self.0.lock() {
            buf.extend_from_slice(bytes);
            if buf.len() > STDERR_TAIL {
                let cut = buf.len() - STDERR_TAIL;
                buf.drain(..cut);
            }
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(StderrTail(self.0.clone()))
    }

    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(StderrTail(self.0.clone()))
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 << 10)
    }
}

struct FixedWallClock(Duration);

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// Time does not pass inside a policy: a guest waiting for it to pass spins until its fuel
/// runs out. (Sleeping does not wait either: see `clocks`.)
struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A tiny seeded generator (SplitMix64): randomness inside the sandbox is reproducible.
struct SplitMix64(u64);

impl rand_core::TryRng for SplitMix64 {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_is_bounded_and_escaped() {
        let sandbox = Sandbox::new(
            "p".into(),
            Arc::new(LogBudget::new(600, 100)),
            &Limits::default(),
            0,
        );
        sandbox
            .stderr
            .lock()
            .unwrap()
            .extend_from_slice(format!("{}\npanicked\x1b[0m", "y".repeat(4000)).as_bytes());
        let tail = sandbox.stderr_tail().unwrap();
        assert!(tail.len() <= bounds::MAX_TEXT_BYTES + bounds::TRUNCATED.len());
        assert!(!tail.chars().any(char::is_control), "{tail:?}");
    }
}
