//! The wasmtime policy runtime: load a policy component, sandbox it, call it, validate its
//! answer.
//!
//! **Owns** the WIT contracts it serves and everything that runs guest code. **Must not** give
//! a policy any capability beyond the contract's: no files, network, clocks or randomness
//! that could make two runs differ, and no way to wait or spin past its limits.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ecsp_policy::{Limits, PolicyRuntime, PolicySource};
//! # fn snapshot() -> ecsp_policy::Snapshot { unimplemented!() }
//! let runtime = Arc::new(PolicyRuntime::new(Limits::default())?);
//! let policy = runtime.load(&PolicySource::parse("builtin:default"), "{}")?;
//! let plan = policy.scale(&snapshot())?; // fresh instance, configure, scale, validate
//! # Ok::<(), ecsp_policy::PolicyError>(())
//! ```
//!
//! Every evaluation gets a fresh instance from the pre-instantiated component (pooled, a few
//! microseconds), runs `configure(settings)` then one of `scale`/`place` under the memory cap,
//! a fuel budget (the deterministic CPU budget) and an epoch deadline (a wall-clock
//! backstop), and drops the instance. What the guest hands back is bounded before it is
//! copied and again before it is kept ([`bounds`]). Whatever the guest does ends as a
//! [`PolicyError`]; the host never panics or hangs because of a policy, and
//! [`Policy::guarded`] runs an evaluation under a watchdog for callers that must get an
//! answer in time whatever happens inside.

#![warn(missing_docs)]

pub mod bench;
mod bindings;
pub mod bounds;
pub mod build;
pub mod cli;
mod clocks;
mod contract;
mod error;
mod limits;
pub mod fixture;
pub mod lang;
pub mod log;
mod private_dir;
mod reads;
mod runtime;
mod sandbox;
pub mod scaffold;
pub mod scaffold_script;
pub mod vendored_sdk;
pub mod validate;
pub mod watchdog;
mod ticker;
mod wit_case;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

pub use bindings::{
    CONTRACT_PACKAGE, CONTRACT_VERSION, Demand, Failure, Launch, Level, Node, NodeState, Offering,
    PlaceRequest, Placement, QueuedItem, Removal, ScalePlan, Snapshot, SpotMode, Template,
};
pub use cli::PolicyCommand;
pub use error::{Cause, Function, PolicyError};
pub use contract::ACCEPTED_VERSIONS;
pub use limits::{DEFAULT_DEADLINE, DEFAULT_FUEL, Limits};
pub use runtime::{LoadInfo, LoadedFrom, PolicyRuntime, WASMTIME_VERSION};

use contract::{Instance, ModulePre};
use sandbox::Sandbox;

/// The default policy, compiled into the binary by build.rs (empty if it was skipped).
static BUILTIN_DEFAULT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy-default.wasm"));

/// Where a policy's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A policy compiled into this binary: `builtin:default`.
    Builtin(String),
    /// A `.wasm` component file.
    Path(PathBuf),
}

impl PolicySource {
    /// `builtin:<name>` or a file path.
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix("builtin:") {
            Some(name) => PolicySource::Builtin(name.to_owned()),
            None => PolicySource::Path(PathBuf::from(s)),
        }
    }

    /// The name used in logs and errors: `builtin:default`, or the file stem.
    pub fn name(&self) -> String {
        match self {
            PolicySource::Builtin(n) => format!("builtin:{n}"),
            PolicySource::Path(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }

    /// The component's bytes.
    pub fn bytes(&self) -> Result<std::borrow::Cow<'static, [u8]>, PolicyError> {
        match self {
            PolicySource::Builtin(n) if n == "default" => {
                if BUILTIN_DEFAULT.is_empty() {
                    Err(PolicyError::load(
                        self.name(),
                        concat!(
                            "this binary was built without the builtin default policy (",
                            env!("ECSP_BUILTIN_POLICY_NOTE"),
                            ")"
                        ),
                    ))
                } else {
                    Ok(std::borrow::Cow::Borrowed(BUILTIN_DEFAULT))
                }
            }
            PolicySource::Builtin(_) => Err(PolicyError::load(
                self.name(),
                "unknown builtin policy; the only one is `builtin:default`",
            )),
            PolicySource::Path(p) => std::fs::read(p).map(std::borrow::Cow::Owned).map_err(|e| {
                PolicyError::load(self.name(), format!("cannot read {}: {e}", p.display()))
            }),
        }
    }
}

/// What one evaluation cost; returned by the `*_measured` calls (used by `policy bench`).
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalStats {
    /// Store creation plus instantiation from the pre-instantiated component.
    pub instantiate: Duration,
    /// The whole evaluation: instantiate, configure, the call, validation.
    pub total: Duration,
    /// Largest linear memory the guest was granted, in bytes.
    pub peak_memory: usize,
    /// Fuel the guest used in the call itself (`scale` or `place`; `configure` for a
    /// settings check), out of [`Limits::fuel`].
    pub fuel_used: u64,
    /// Fuel `configure` used before the call.
    pub configure_fuel: u64,
}

/// A loaded policy: a pre-instantiated component plus its settings. Cheap to clone and
/// safe to use from several threads; each call runs in its own fresh instance.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    runtime: Arc<PolicyRuntime>,
    name: Arc<str>,
    pre: ModulePre,
    settings: String,
    contract: String,
    load: LoadInfo,
    /// Shared by clones and [`Policy::with_settings`] copies: the stuck-call cap is per policy,
    /// so a wedged policy never starves its fallback.
    watchdog: Arc<watchdog::Watchdog>,
}

impl Policy {
    fn new(
        runtime: Arc<PolicyRuntime>,
        name: Arc<str>,
        pre: ModulePre,
        settings: String,
        contract: String,
        load: LoadInfo,
        watchdog: Arc<watchdog::Watchdog>,
    ) -> Self {
        Policy {
            inner: Arc::new(PolicyInner {
                runtime,
                name,
                pre,
                settings,
                contract,
                load,
                watchdog,
            }),
        }
    }

    /// Evaluations of this policy abandoned by the watchdog that are still running.
    pub fn stuck_evaluations(&self) -> usize {
        self.inner.watchdog.stuck()
    }

    /// The policy's name, as used in logs and errors.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The contract version the component exports (e.g. `0.1.0`).
    pub fn contract_version(&self) -> &str {
        &self.inner.contract
    }

    /// How the component was obtained at load time.
    pub fn load_info(&self) -> LoadInfo {
        self.inner.load
    }

    /// The same compiled policy with other settings, checked with `configure` like a load.
    pub fn with_settings(&self, settings: &str) -> Result<Policy, PolicyError> {
        let i = &self.inner;
        let p = Policy::new(
            i.runtime.clone(),
            i.name.clone(),
            i.pre.clone(),
            settings.into(),
            i.contract.clone(),
            i.load,
            i.watchdog.clone(),
        );
        p.check_settings()?;
        Ok(p)
    }

    /// Runs `configure(settings)` on a fresh instance.
    pub fn check_settings(&self) -> Result<(), PolicyError> {
        self.check_settings_measured().0
    }

    /// [`Self::check_settings`] plus what it cost.
    pub fn check_settings_measured(&self) -> (Result<(), PolicyError>, EvalStats) {
        self.evaluate(Function::Configure, 0, |_, _| Ok(Ok(Ok(()))))
    }

    /// Runs `call` with this policy on a thread of its own and waits for it at most
    /// [`Limits::watchdog`]. Past that the call is abandoned (it keeps its thread and its
    /// store, and holds nothing of the caller's) and the answer is a
    /// [`Cause::Unresponsive`] error for `function`. Inside a tokio multi-thread runtime the
    /// wait does not hold a worker. `call` takes what it needs by value: an abandoned call
    /// may outlive the caller's borrows.
    pub fn guarded<T: Send + 'static>(
        &self,
        function: Function,
        call: impl FnOnce(&Policy) -> Result<T, PolicyError> + Send + 'static,
    ) -> Result<T, PolicyError> {
        if !self.inner.runtime.limits.watchdog_thread {
            return call(self);
        }
        let policy = self.clone();
        let deadline = self.inner.runtime.limits.watchdog();
        match self
            .inner
            .watchdog
            .run(function.as_str(), deadline, move || call(&policy))
        {
            Ok(answer) => answer,
            Err(refusal) => {
                let cause = match refusal {
                    watchdog::Refusal::Abandoned(d) => Cause::Unresponsive(d),
                    watchdog::Refusal::TooManyStuck(n) => Cause::Instantiate(format!(
                        "{n} earlier evaluations never returned and are still running; \
                         refusing new ones until they end"
                    )),
                    watchdog::Refusal::Spawn(e) => {
                        Cause::Instantiate(format!("cannot start the evaluation thread: {e}"))
                    }
                };
                Err(self.error(function, cause))
            }
        }
    }

    /// Asks the policy how many nodes to launch and which to remove. The plan is validated
    /// against `snapshot` (known templates and instance ids, no duplicates) but not clamped:
    /// clamping to the hard limits is the engine's job.
    pub fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, PolicyError> {
        self.scale_measured(snapshot).0
    }

    /// [`Self::scale`] plus what the evaluation cost.
    pub fn scale_measured(
        &self,
        snapshot: &Snapshot,
    ) -> (Result<ScalePlan, PolicyError>, EvalStats) {
        self.evaluate(Function::Scale, snapshot.now_ms, |guest, store| {
            // Only the parts the policy declared in `configure` are sent; the plan is still
            // checked against the whole snapshot.
            let trimmed = store
                .data()
                .reads
                .and_then(|parts| reads::trimmed(snapshot, parts));
            let sent = trimmed.as_ref().unwrap_or(snapshot);
            let plan = guest.scale(store, sent)?.map(bounds::scale_plan);
            Ok(plan.map(|plan| validate::scale_plan(snapshot, &plan).map(|()| plan)))
        })
    }

    /// Asks the policy to spread `request.count` nodes over `offerings`. The placements are
    /// validated (offering indices in range, no duplicates, total at most `request.count`).
    pub fn place(
        &self,
        request: &PlaceRequest,
        offerings: &[Offering],
        fleet: &[Node],
    ) -> Result<Vec<Placement>, PolicyError> {
        self.place_measured(request, offerings, fleet).0
    }

    /// [`Self::place`] plus what the evaluation cost.
    pub fn place_measured(
        &self,
        request: &PlaceRequest,
        offerings: &[Offering],
        fleet: &[Node],
    ) -> (Result<Vec<Placement>, PolicyError>, EvalStats) {
        self.evaluate(Function::Place, request.now_ms, |guest, store| {
            let placements = guest.place(store, request, offerings, fleet)?;
            Ok(placements.map(|p| validate::placements(request, offerings, &p).map(|()| p)))
        })
    }

    /// One evaluation: fresh store and instance, `configure`, then `call` (a no-op for a
    /// configure check). `call` returns the guest's `result` with its `Ok` already
    /// validated: `Ok(Ok(Ok(v)))` fine, `Ok(Ok(Err(problem)))` invalid output,
    /// `Ok(Err(msg))` guest error, `Err(e)` trap or timeout.
    #[allow(clippy::type_complexity)]
    fn evaluate<R>(
        &self,
        function: Function,
        now_ms: u64,
        call: impl FnOnce(
            &Instance,
            &mut Store<Sandbox>,
        ) -> wasmtime::Result<Result<Result<R, String>, String>>,
    ) -> (Result<R, PolicyError>, EvalStats) {
        let started = Instant::now();
        let i = &self.inner;
        let rt = &i.runtime;
        let mut store = self.store(now_ms);
        let ticks = rt.deadline_ticks();
        let fuel = rt.limits.fuel;
        let mut stats = EvalStats::default();
        let instance = i.pre.instantiate(&mut store);
        stats.instantiate = started.elapsed();
        // Each call gets the whole budget; what it used is what is left over.
        let refuel = |store: &mut Store<Sandbox>| {
            store.set_epoch_deadline(ticks);
            store.set_fuel(fuel)
        };
        let used = |store: &Store<Sandbox>| fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let result = match instance {
            Err(e) => Err(self.classify(None, &store, e, true)),
            Ok(guest) => {
                let configured =
                    refuel(&mut store).and_then(|()| guest.configure(&mut store, &i.settings));
                stats.configure_fuel = used(&store);
                match configured {
                    Err(e) => Err(self.classify(Some(Function::Configure), &store, e, false)),
                    Ok(Err(msg)) => Err(self.rejected(Function::Configure, &msg)),
                    Ok(Ok(())) => {
                        let answer = refuel(&mut store).and_then(|()| call(&guest, &mut store));
                        stats.fuel_used = used(&store);
                        match answer {
                            Err(e) => Err(self.classify(Some(function), &store, e, false)),
                            Ok(Err(msg)) => Err(self.rejected(function, &msg)),
                            Ok(Ok(Err(problem))) => Err(self.error(
                                function,
                                Cause::InvalidOutput(bounds::text_within(
                                    &problem,
                                    4 * bounds::MAX_TEXT_BYTES,
                                )),
                            )),
                            Ok(Ok(Ok(v))) => Ok(v),
                        }
                    }
                }
            }
        };
        if function == Function::Configure {
            // A settings check calls nothing after `configure`.
            stats.fuel_used = stats.configure_fuel;
        }
        store.data().log.finish();
        stats.peak_memory = store.data().limiter.peak;
        drop(store);
        stats.total = started.elapsed();
        (result, stats)
    }

    /// A fresh store with this policy's sandbox, limits and budgets.
    fn store(&self, now_ms: u64) -> Store<Sandbox> {
        let i = &self.inner;
        let rt = &i.runtime;
        let mut sandbox = Sandbox::new(i.name.clone(), rt.log_budget(&i.name), &rt.limits, now_ms);
        sandbox.ticking = Some(rt.ticker.ticking());
        let mut store = Store::new(&rt.engine, sandbox);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(rt.deadline_ticks());
        // Instantiation runs no guest code of ours, but a start function could: give it
        // the call budget too.
        let _ = store.set_fuel(rt.limits.fuel);
        // Bounds every copy out of the guest: a log call's arguments, a function's answer.
        store.set_hostcall_fuel(rt.limits.max_answer_bytes);
        store
    }

    /// Creates a fresh store and instance without calling anything; returns the store
    /// creation and the instantiation times (for `policy bench`).
    pub fn measure_instantiate(&self) -> Result<(Duration, Duration), PolicyError> {
        let i = &self.inner;
        let started = Instant::now();
        let mut store = self.store(0);
        let created = started.elapsed();
        let instance = i.pre.instantiate(&mut store);
        let instantiated = started.elapsed() - created;
        instance.map_err(|e| self.classify(None, &store, e, true))?;
        Ok((created, instantiated))
    }

    fn error(&self, function: Function, cause: Cause) -> PolicyError {
        PolicyError::new(&*self.inner.name, Some(function), cause)
    }

    /// The guest's own `Err(message)`, bounded and escaped.
    fn rejected(&self, function: Function, message: &str) -> PolicyError {
        self.error(function, Cause::Rejected(bounds::text(message)))
    }

    /// Turns a wasmtime error into a cause: timeout, memory cap, trap or instantiation failure.
    fn classify(
        &self,
        function: Option<Function>,
        store: &Store<Sandbox>,
        e: wasmtime::Error,
        instantiating: bool,
    ) -> PolicyError {
        let data = store.data();
        let trap = e.downcast_ref::<wasmtime::Trap>().copied();
        let limits = &self.inner.runtime.limits;
        let cause = if trap == Some(wasmtime::Trap::Interrupt) {
            Cause::Timeout(limits.deadline)
        } else if trap == Some(wasmtime::Trap::OutOfFuel) {
            Cause::OutOfFuel(limits.fuel)
        } else if is_hostcall_fuel_exhausted(&e) {
            Cause::AnswerTooLarge(limits.max_answer_bytes)
        } else if let Some(requested) = data.limiter.denied {
            Cause::MemoryCap {
                cap: data.limiter.cap as u64,
                requested: requested as u64,
            }
        } else if instantiating && trap.is_none() {
            Cause::Instantiate(bounds::text(&format!("{e:#}")))
        } else {
            let mut msg = match trap {
                Some(t) => t.to_string(),
                None => format!("{e:#}"),
            };
            if let Some(stderr) = data.stderr_tail() {
                msg.push_str(&format!("; guest stderr: {stderr}"));
            }
            if let Some(last) = &data.log.last_error {
                msg.push_str(&format!(" (last error logged: {last})"));
            }
            // Guest text inside is bounded already; this bounds the whole.
            Cause::Trap(bounds::text_within(&msg, 4 * bounds::MAX_TEXT_BYTES))
        };
        PolicyError::new(&*self.inner.name, function, cause)
    }
}

/// Whether wasmtime refused to copy more out of the guest than the store's hostcall fuel.
/// wasmtime 48 does not export the error type, so its message is matched, in the whole
/// chain of the error.
fn is_hostcall_fuel_exhausted(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| {
        c.to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.inner.name)
            .field("contract", &self.inner.contract)
            .finish_non_exhaustive()
    }
}
