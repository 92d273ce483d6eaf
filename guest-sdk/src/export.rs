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
/// `place`. If `configure` was not called, the policy is configured with `{}`.
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
    policy: RefCell<Option<P>>,
}

impl<P: Policy> Slot<P> {
    /// An empty slot that builds policies with `make`.
    pub const fn new(make: fn() -> P) -> Self {
        Slot { make, policy: RefCell::new(None) }
    }

    /// Build a fresh policy, configure it, keep it only if configuring succeeded.
    pub fn configure(&self, settings: &str) -> Result<(), String> {
        let mut policy = (self.make)();
        let result = policy.configure(settings);
        *self.policy.borrow_mut() = result.is_ok().then_some(policy);
        result
    }

    fn with<R>(&self, f: impl FnOnce(&P) -> Result<R, String>) -> Result<R, String> {
        if self.policy.borrow().is_none() {
            self.configure("{}")?;
        }
        f(self.policy.borrow().as_ref().expect("configured above"))
    }

    /// `scale` on the configured policy.
    pub fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        self.with(|p| p.scale(snapshot))
    }

    /// `place` on the configured policy.
    pub fn place(&self, request: &PlaceRequest, offerings: &[Offering], fleet: &[Node]) -> Result<Vec<Placement>, String> {
        self.with(|p| p.place(request, offerings, fleet))
    }
}

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
        slot.configure("7").unwrap();
        let snap = crate::builders::SnapshotBuilder::new(0).build();
        assert_eq!(slot.scale(&snap), Err("configured with 7".into()));
        // A failed configure leaves nothing configured; the implicit `{}` then fails too.
        assert!(slot.configure("x").is_err());
        assert_eq!(slot.scale(&snap), Err("not a number".into()));
    }
}
