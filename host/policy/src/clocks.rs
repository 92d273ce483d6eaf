//! Time inside the sandbox: a policy can read clocks but never wait on them.
//!
//! wasmtime-wasi 48 implements `wasi:clocks/monotonic-clock.subscribe-duration` and
//! `subscribe-instant` with real tokio timers, whatever monotonic clock the context holds, and
//! `wasi:io/poll.poll` / `pollable.block` wait for them on the calling thread. Epoch
//! interruption and fuel only stop running wasm, so a guest calling `std::thread::sleep`
//! (a subscription plus a blocking poll) held the host thread for as long as it asked.
//!
//! Here both subscriptions are shadowed with pollables that are ready at once. Every other
//! pollable the sandbox can make is ready at once too (stdout and stderr are memory sinks,
//! stdin is closed, nothing else is granted), so `poll` and `block` always return
//! immediately: a sleep is a no-op, and a guest that waits for the monotonic clock to move
//! (it never does: see `sandbox::FixedMonotonicClock`) spins into its fuel budget.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::sandbox::Sandbox;

/// The interface wasmtime-wasi 48 links (guests built for any 0.2.x match it by semver).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Fuel charged per clock subscription: about what 5 µs of plain computation uses on the
/// reference machine (some 10 units per ns), a few times what the host call itself costs.
pub(crate) const SUBSCRIPTION_FUEL: u64 = 50_000;

/// Replaces the two monotonic-clock subscriptions in `linker` (which must already hold the
/// WASI p2 bindings) by always-ready ones.
pub(crate) fn shadow_subscriptions(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, Sandbox>, (_nanos,): (u64,)| {
            charge(&mut store)?;
            Ok((ready_now(&mut store.data_mut().table)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, Sandbox>, (_when,): (u64,)| {
            charge(&mut store)?;
            Ok((ready_now(&mut store.data_mut().table)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Takes [`SUBSCRIPTION_FUEL`] from the store (down to zero: the guest then traps out of
/// fuel at its next instruction).
fn charge(store: &mut StoreContextMut<'_, Sandbox>) -> wasmtime::Result<()> {
    let left = store.get_fuel()?;
    store.set_fuel(left.saturating_sub(SUBSCRIPTION_FUEL))
}

/// A pollable that is ready immediately.
fn ready_now(
    table: &mut wasmtime::component::ResourceTable,
) -> wasmtime::Result<Resource<DynPollable>> {
    let ready = table.push(ReadyNow)?;
    subscribe(table, ready)
}

/// Always ready: waiting on it returns at once.
struct ReadyNow;

#[wasmtime_wasi::async_trait]
impl Pollable for ReadyNow {
    async fn ready(&mut self) {}
}
