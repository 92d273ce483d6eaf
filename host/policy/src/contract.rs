//! The contract versions this host serves, and one call surface over all of them.
//!
//! A component exports the policy interface of exactly one contract version. The host links
//! the matching generated bindings and, for an older version, converts the newest snapshot
//! down and the answer up, so the rest of the host only ever sees the newest types.

use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::{self, Offering, PlaceRequest, Placement, ScalePlan, Snapshot, v0_1};
use super::sandbox::Sandbox;

/// The contract versions served, for messages: the newest first.
pub const ACCEPTED_VERSIONS: &str = "0.2.x, 0.1.x";

/// A contract version this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// 0.2.x: the newest.
    V0_2,
    /// 0.1.x: served through conversions.
    V0_1,
}

impl Contract {
    /// The served contract a component's version belongs to, by semver compatibility (for a
    /// 0.x version the minor must match); pre-releases are never served.
    pub fn of_version(version: &str) -> Option<Contract> {
        let mut it = version.split('.');
        let parts: Option<(u64, u64, u64)> = (|| {
            Some((
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })();
        match (parts?, it.next()) {
            ((0, 2, _), None) => Some(Contract::V0_2),
            ((0, 1, _), None) => Some(Contract::V0_1),
            _ => None,
        }
    }
}

/// Links the `host` interface of every served version.
pub fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    bindings::ecs_provisioner::policy::host::add_to_linker::<_, HasSelf<Sandbox>>(linker, |s| s)?;
    v0_1::ecs_provisioner::policy::host::add_to_linker::<_, HasSelf<Sandbox>>(linker, |s| s)
}

impl v0_1::ecs_provisioner::policy::host::Host for Sandbox {
    fn log(&mut self, level: v0_1::ecs_provisioner::policy::host::Level, message: String) {
        bindings::ecs_provisioner::policy::host::Host::log(self, v0_1::level(level), message);
    }
}

/// A pre-instantiated policy component of one served version.
#[derive(Clone)]
pub enum ModulePre {
    /// Contract 0.2.x.
    V0_2(bindings::PolicyModulePre<Sandbox>),
    /// Contract 0.1.x.
    V0_1(v0_1::PolicyModulePre<Sandbox>),
}

impl ModulePre {
    /// Pre-instantiates `pre` with the bindings of `contract`.
    pub fn new(
        contract: Contract,
        pre: wasmtime::component::InstancePre<Sandbox>,
    ) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_2 => ModulePre::V0_2(bindings::PolicyModulePre::new(pre)?),
            Contract::V0_1 => ModulePre::V0_1(v0_1::PolicyModulePre::new(pre)?),
        })
    }

    /// A fresh instance in `store`.
    pub fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Instance> {
        Ok(match self {
            ModulePre::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
            ModulePre::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
        })
    }
}

/// One instance of a policy, called in the newest contract's terms.
pub enum Instance {
    /// Contract 0.2.x.
    V0_2(bindings::PolicyModule),
    /// Contract 0.1.x.
    V0_1(v0_1::PolicyModule),
}

/// A guest call's outcome: a trap (outer) or the policy's own `result` (inner).
pub type CallResult<T> = wasmtime::Result<Result<T, String>>;

impl Instance {
    /// `configure(settings)`.
    pub fn configure(&self, store: &mut Store<Sandbox>, settings: &str) -> CallResult<()> {
        match self {
            Instance::V0_2(i) => i.ecs_provisioner_policy_policy().call_configure(store, settings),
            Instance::V0_1(i) => i.ecs_provisioner_policy_policy().call_configure(store, settings),
        }
    }

    /// `scale(snapshot)`.
    pub fn scale(&self, store: &mut Store<Sandbox>, snapshot: &Snapshot) -> CallResult<ScalePlan> {
        match self {
            Instance::V0_2(i) => i.ecs_provisioner_policy_policy().call_scale(store, snapshot),
            Instance::V0_1(i) => Ok(i
                .ecs_provisioner_policy_policy()
                .call_scale(store, &v0_1::snapshot(snapshot))?
                .map(v0_1::scale_plan)),
        }
    }

    /// `place(request, offerings, fleet)`.
    pub fn place(
        &self,
        store: &mut Store<Sandbox>,
        request: &PlaceRequest,
        offerings: &[Offering],
        fleet: &[bindings::Node],
    ) -> CallResult<Vec<Placement>> {
        match self {
            Instance::V0_2(i) => {
                i.ecs_provisioner_policy_policy()
                    .call_place(store, request, offerings, fleet)
            }
            Instance::V0_1(i) => {
                let offerings: Vec<_> = offerings.iter().map(v0_1::offering).collect();
                let fleet: Vec<_> = fleet.iter().map(v0_1::node).collect();
                Ok(i
                    .ecs_provisioner_policy_policy()
                    .call_place(store, &v0_1::place_request(request), &offerings, &fleet)?
                    .map(v0_1::placements))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_versions() {
        assert_eq!(Contract::of_version("0.2.0"), Some(Contract::V0_2));
        assert_eq!(Contract::of_version("0.2.7"), Some(Contract::V0_2));
        assert_eq!(Contract::of_version("0.1.0"), Some(Contract::V0_1));
        assert_eq!(Contract::of_version("0.1.3"), Some(Contract::V0_1));
        for refused in ["0.3.0", "1.1.0", "1.0.0", "0.2.0-rc1", "0.2", "0.2.0.1", ""] {
            assert_eq!(Contract::of_version(refused), None, "{refused}");
        }
    }
}
