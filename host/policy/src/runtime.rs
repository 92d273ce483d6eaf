//! The wasmtime engine shared by all policies: configuration, the epoch ticker, the on-disk
//! cache of compiled components, contract-version checks and loading.
//!
//! Modelled on wasmtime's fast-instantiation example and Kubewarden's policy-evaluator: compile
//! once, pre-instantiate once ([`ModulePre`]), then a fresh pooled instance per
//! evaluation, so no state leaks between evaluations and a broken instance is simply dropped.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings;
use super::clocks;
use super::contract::{self, Contract, ModulePre};
use super::error::{Cause, PolicyError};
use super::limits::Limits;
use super::log::LogBudget;
use super::private_dir;
use super::sandbox::Sandbox;
use super::ticker::Ticker;
use super::{Policy, PolicySource};

/// The exact wasmtime version compiled in (read from Cargo.lock by build.rs); part of the cache key.
pub const WASMTIME_VERSION: &str = env!("ECSP_WASMTIME_VERSION");

/// Owns the wasmtime [`Engine`] (with its pooling allocator and epoch ticker), the [`Linker`]
/// and the compiled-component cache. Cheap to share: clone the `Arc` it lives in.
pub struct PolicyRuntime {
    pub(crate) engine: Engine,
    /// Advances the engine's epoch while a store lives.
    pub(crate) ticker: Arc<Ticker>,
    linker: Linker<Sandbox>,
    pub(crate) limits: Limits,
    cache_dir: Option<PathBuf>,
    /// Each policy's log budget across time, by policy name.
    log_budgets: Mutex<HashMap<Arc<str>, Arc<LogBudget>>>,
}

/// How a component was obtained when a policy was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// Compiled with Cranelift now (and written to the cache, when one is configured).
    Compiled,
    /// Deserialized from the on-disk cache.
    Cache,
}

/// Timing of a load, reported by `policy bench`.
#[derive(Debug, Clone, Copy)]
pub struct LoadInfo {
    /// Compiled or taken from the cache.
    pub from: LoadedFrom,
    /// Time to obtain the [`Component`] (compile or deserialize).
    pub component_time: Duration,
}

impl PolicyRuntime {
    /// Builds an engine with the pooling allocator sized by `limits`, epoch interruption, and
    /// a ticker thread that lives as long as the engine. No cache until [`Self::with_cache_dir`].
    pub fn new(limits: Limits) -> Result<Self, PolicyError> {
        let engine =
            build_engine(&limits).map_err(|e| PolicyError::load("<runtime>", format!("{e:#}")))?;
        let ticker = Ticker::start(&engine, limits.epoch_tick);
        let mut linker = Linker::<Sandbox>::new(&engine);
        // A std Rust guest on wasm32-wasip2 imports WASI; the context behind it is empty
        // (no preopens, env, args or stdio) and deterministic (see `sandbox`), and its
        // clocks never make the host wait (see `clocks`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| clocks::shadow_subscriptions(&mut linker))
            .and_then(|()| contract::add_to_linker(&mut linker))
            .map_err(|e| PolicyError::load("<runtime>", format!("{e:#}")))?;
        Ok(PolicyRuntime {
            engine,
            ticker,
            linker,
            limits,
            cache_dir: None,
            log_budgets: Mutex::default(),
        })
    }

    /// Caches compiled components under `dir`, keyed by content hash, wasmtime version and
    /// engine configuration. Cached artifacts are native code loaded without re-verification,
    /// so the directory must be writable by this user only: it is created `0700`, and one
    /// owned by another user or writable by group or others is not used (the cache is
    /// disabled with a warning naming the problem; policies are then compiled at every load).
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        match private_dir::ensure_private_dir(&dir) {
            Ok(()) => self.cache_dir = Some(dir),
            Err(e) => {
                tracing::warn!(error = %e, "compiled-policy cache disabled: its directory must belong to this user alone");
                self.cache_dir = None;
            }
        }
        self
    }

    /// The cache directory in use, if any (none when the configured one was refused).
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// The default cache directory: `$XDG_CACHE_HOME/ecs-provisioner/policies` or
    /// `~/.cache/ecs-provisioner/policies`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("ecs-provisioner").join("policies"))
    }

    /// The limits every evaluation runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The log budget of policy `name`, shared by all its evaluations in this runtime.
    pub(crate) fn log_budget(&self, name: &Arc<str>) -> Arc<LogBudget> {
        let mut budgets = self.log_budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(LogBudget::new(
                    self.limits.log_lines_per_minute,
                    self.limits.log_burst,
                ))
            })
            .clone()
    }

    /// Loads a policy and checks its settings by calling `configure(settings)` once on a fresh
    /// instance, so a bad setting fails at load time, not in production.
    pub fn load(
        self: &Arc<Self>,
        source: &PolicySource,
        settings: &str,
    ) -> Result<Policy, PolicyError> {
        let name = source.name();
        let bytes = source.bytes()?;
        self.load_bytes(&name, &bytes, settings)
    }

    /// Like [`Self::load`] for a component already in memory; `name` is used in errors and logs.
    pub fn load_bytes(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
        settings: &str,
    ) -> Result<Policy, PolicyError> {
        self.prepare_bytes(name, bytes)?.with_settings(settings)
    }

    /// Compiles, checks the contract version and links a policy without calling `configure`:
    /// for tools that choose settings per case with [`Policy::with_settings`] (fixtures).
    /// Its own settings are `{}`, not checked.
    pub fn prepare(self: &Arc<Self>, source: &PolicySource) -> Result<Policy, PolicyError> {
        self.prepare_bytes(&source.name(), &source.bytes()?)
    }

    /// [`Self::prepare`] for a component already in memory.
    pub fn prepare_bytes(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
    ) -> Result<Policy, PolicyError> {
        let (component, info) = self.component(name, bytes)?;
        let (version, contract) = check_contract(name, &self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(|pre| ModulePre::new(contract, pre))
            .map_err(|e| PolicyError::load(name, format!("cannot link: {e:#}")))?;
        Ok(Policy::new(
            Arc::clone(self),
            name.into(),
            pre,
            "{}".into(),
            version,
            info,
            Default::default(),
        ))
    }

    /// Compiles (or takes from the cache) a component. Public for `policy bench`.
    pub fn component(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(Component, LoadInfo), PolicyError> {
        let started = Instant::now();
        let load_err =
            |e: wasmtime::Error| PolicyError::load(name, format!("not a valid component: {e:#}"));
        let Some(path) = self.cache_path(bytes) else {
            let c = Component::from_binary(&self.engine, bytes).map_err(load_err)?;
            return Ok((
                c,
                LoadInfo {
                    from: LoadedFrom::Compiled,
                    component_time: started.elapsed(),
                },
            ));
        };
        let private = path.exists()
            && private_dir::is_private_file(&path)
                .inspect_err(|e| tracing::warn!(policy = name, error = %e, "cached policy artifact not loaded; recompiling"))
                .is_ok();
        if private {
            // SAFETY: the artifact and its directory belong to this user and nobody else can
            // write them (checked by `with_cache_dir` and just above); wasmtime rejects
            // artifacts from another version or configuration.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => {
                    return Ok((
                        c,
                        LoadInfo {
                            from: LoadedFrom::Cache,
                            component_time: started.elapsed(),
                        },
                    ));
                }
                Err(e) => tracing::warn!(policy = name, path = %path.display(), error = %e,
                    "unusable cached policy artifact; recompiling"),
            }
        }
        let c = Component::from_binary(&self.engine, bytes).map_err(load_err)?;
        let component_time = started.elapsed();
        if let Err(e) = c
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|b| write_atomic(&path, &b))
        {
            tracing::warn!(policy = name, path = %path.display(), error = %e, "cannot cache compiled policy");
        }
        Ok((
            c,
            LoadInfo {
                from: LoadedFrom::Compiled,
                component_time,
            },
        ))
    }

    /// Epoch ticks that make up one call's deadline: rounded up, plus one because the
    /// current tick may be almost over when the deadline is set.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.limits.epoch_tick.as_nanos().max(1);
        (self.limits.deadline.as_nanos().div_ceil(tick) as u64).max(1) + 1
    }

    fn cache_path(&self, bytes: &[u8]) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let digest = Sha256::digest(bytes);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!(
            "{hex}-wasmtime{WASMTIME_VERSION}-{:016x}.cwasm",
            h.finish()
        )))
    }
}

fn build_engine(limits: &Limits) -> wasmtime::Result<Engine> {
    let n = limits.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // A Rust wasm32-wasip2 component holds a few core instances (the module plus
    // wit-component's shims), one memory and a few tables.
    pool.total_component_instances(n)
        .total_core_instances(n * 16)
        .max_core_instances_per_component(16)
        .total_memories(n * 2)
        .max_memories_per_component(2)
        .total_tables(n * 8)
        .max_tables_per_component(8)
        .total_stacks(n)
        .max_memory_size(limits.memory_bytes as usize)
        .linear_memory_keep_resident(limits.keep_resident_bytes)
        .table_keep_resident(64 << 10)
        // Reset only the pages an evaluation dirtied (Linux 6.7+, PAGEMAP_SCAN), not the whole
        // resident part of the slot: a small policy call dirties a few pages of the 2 MiB,
        // and the memset of all of them was a tenth of a replayed engine cycle.
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .wasm_component_model(true);
    Engine::new(&config)
}

/// Checks that the component exports the policy interface in a version this host accepts,
/// before linking, so a mismatch is reported with both versions named. Returns the version
/// and the served contract it belongs to.
fn check_contract(
    name: &str,
    engine: &Engine,
    component: &Component,
) -> Result<(String, Contract), PolicyError> {
    let iface = format!("{}/policy", bindings::CONTRACT_PACKAGE);
    let ty = component.component_type();
    let exported: Vec<String> = ty
        .exports(engine)
        .filter_map(|(export, _)| export.strip_prefix(&iface).map(str::to_owned))
        .collect();
    let incompatible = |found: String| {
        PolicyError::new(
            name,
            None,
            Cause::IncompatibleContract {
                found,
                accepted: contract::ACCEPTED_VERSIONS.into(),
            },
        )
    };
    let Some(suffix) = exported.first() else {
        let others: Vec<String> = ty.exports(engine).map(|(e, _)| e.to_owned()).collect();
        let found = if others.is_empty() {
            format!("nothing (it exports no {iface} interface)")
        } else {
            format!(
                "something else (it exports {}, not {iface})",
                others.join(", ")
            )
        };
        return Err(incompatible(found));
    };
    let version = suffix.strip_prefix('@').unwrap_or("");
    if let Some(contract) = Contract::of_version(version) {
        Ok((version.to_owned(), contract))
    } else if version.is_empty() {
        Err(incompatible(format!(
            "an unversioned {}",
            bindings::CONTRACT_PACKAGE
        )))
    } else {
        Err(incompatible(format!(
            "{}@{version}",
            bindings::CONTRACT_PACKAGE
        )))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename. The directory is not
/// created here: only the private one `with_cache_dir` checked is written to.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        let rt = PolicyRuntime::new(Limits {
            deadline: Duration::from_millis(200),
            epoch_tick: Duration::from_millis(5),
            max_instances: 1,
            ..Limits::default()
        })
        .unwrap();
        assert_eq!(rt.deadline_ticks(), 41);
    }
}
