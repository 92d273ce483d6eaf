//! [`export_policy!`](crate::export_policy): wire a [`Policy`] type to the component's exports.

use std::cell::RefCell;

use crate::policy::Policy;
use crate::types::{Node, Offering, PlaceRequest, Placement, ScalePlan, Snapshot};

/// Export a [`Policy`](crate::Policy) type as the component's `policy` interface.
///
/// `export_policy!(MyPolicy)` needs `MyPolicy: Policy + Default`;
/// `export_policy!(MyPolicy, MyPolicy::new)` takes any `fn() -> MyPolicy` instead.
/// Use it once, in the policy crate's `lib.rs` (built as a `cdylib` for `wasm32-wasip2`).
///
/// The host makes a fresh instance per evaluation and calls `configure` first, so the macro
/// keeps the configured policy in a per-instance static between `configure` and `scale` or
/// `place`. If `configure` was not called, the policy is configured with `{}`; if it failed,
/// `scale` and `place` fail with its error instead of running on defaults.
/// Off wasm the macro only type-checks the glue, so the crate still builds and tests natively.
///
/// ```
/// #[derive(Default)]
/// struct MyPolicy;
/// impl ecs_policy_sdk::Policy for MyPolicy {}
/// ecs_policy_sdk::export_policy!(MyPolicy);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        $crate::export_policy!($ty, <$ty as ::core::default::Default>::default);
    };
    ($ty:ty, $make:expr) => {
        const _: () = {
            ::std::thread_local! {
                static SLOT: $crate::__private::Slot<$ty> = $crate::__private::Slot::new($make);
            }
            #[allow(dead_code)]
            struct EcsPolicyExport;
            impl $crate::__private::Guest for EcsPolicyExport {
                fn configure(settings: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    SLOT.with(|s| s.configure(&settings))
                }
                fn scale(snapshot: $crate::Snapshot) -> ::core::result::Result<$crate::ScalePlan, ::std::string::String> {
                    SLOT.with(|s| s.scale(&snapshot))
                }
                fn place(
                    request: $crate::PlaceRequest,
                    offerings: ::std::vec::Vec<$crate::Offering>,
                    fleet: ::std::vec::Vec<$crate::Node>,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Placement>, ::std::string::String> {
                    SLOT.with(|s| s.place(&request, &offerings, &fleet))
                }
            }
            // Only a wasm build exports symbols; native builds (unit tests) need none.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::export!(EcsPolicyExport with_types_in $crate::bindings);
        };
    };
}

/// The configured policy of this instance, between `configure` and `scale`/`place`.
#[doc(hidden)]
pub struct Slot<P> {
    make: fn() -> P,
    state: RefCell<State<P>>,
}

enum State<P> {
    Unconfigured,
    Configured(P),
    /// `configure` rejected the settings: later calls fail with the same error rather than
    /// silently running on defaults.
    Failed(String),
}

impl<P: Policy> Slot<P> {
    /// An empty slot that builds policies with `make`.
    pub const fn new(make: fn() -> P) -> Self {
        Slot {
            make,
            state: RefCell::new(State::Unconfigured),
        }
    }

    /// Build a fresh policy and configure it, remembering the outcome.
    pub fn configure(&self, settings: &str) -> Result<(), String> {
        let mut policy = (self.make)();
        let result = policy.configure(settings);
        *self.state.borrow_mut() = match &result {
            Ok(()) => {
                declare_reads(policy.reads());
                State::Configured(policy)
            }
            Err(e) => State::Failed(e.clone()),
        };
        result
    }

    fn with<R>(&self, f: impl FnOnce(&P) -> Result<R, String>) -> Result<R, String> {
        if matches!(*self.state.borrow(), State::Unconfigured) {
            self.configure("{}")?;
        }
        match &*self.state.borrow() {
            State::Configured(p) => f(p),
            State::Failed(e) => Err(format!("the policy's settings were rejected: {e}")),
            State::Unconfigured => unreachable!("configured above"),
        }
    }

    /// `scale` on the configured policy.
    pub fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        self.with(|p| p.scale(snapshot))
    }

    /// `place` on the configured policy.
    pub fn place(
        &self,
        request: &PlaceRequest,
        offerings: &[Offering],
        fleet: &[Node],
    ) -> Result<Vec<Placement>, String> {
        self.with(|p| p.place(request, offerings, fleet))
    }
}

/// Tells the host which parts of the snapshot to send; nothing to tell when it is all of them.
#[cfg(target_arch = "wasm32")]
fn declare_reads(parts: crate::SnapshotParts) {
    if parts != crate::SnapshotParts::all() {
        crate::bindings::ecs_provisioner::policy::host::declare_reads(parts);
    }
}

/// Off wasm there is no host; the test harness trims snapshots itself (see `testing`).
#[cfg(not(target_arch = "wasm32"))]
fn declare_reads(_: crate::SnapshotParts) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Counting(u32);
    impl Policy for Counting {
        fn configure(&mut self, settings: &str) -> Result<(), String> {
            self.0 = settings.parse().map_err(|_| "not a number".to_string())?;
            Ok(())
        }
        fn scale(&self, _: &Snapshot) -> Result<ScalePlan, String> {
            Err(format!("configured with {}", self.0))
        }
    }

    #[test]
    fn configured_state_reaches_scale() {
        let slot = Slot::new(Counting::default);
        let snap = crate::builders::SnapshotBuilder::new(0).build();
        // Never configured: configured with `{}` first, which this policy rejects.
        assert_eq!(slot.scale(&snap), Err("not a number".into()));
        slot.configure("7").unwrap();
        assert_eq!(slot.scale(&snap), Err("configured with 7".into()));
        // A failed configure is not papered over with defaults.
        assert!(slot.configure("x").is_err());
        assert_eq!(
            slot.scale(&snap),
            Err("the policy's settings were rejected: not a number".into())
        );
    }
}
