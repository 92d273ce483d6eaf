//! Hostile policy: `scale` panics (a trap under `panic = "abort"`) and `place` executes
//! `unreachable`. The host must report a trap naming the function. `configure` behaves.

use ecs_policy_sdk::{
    Node, Offering, PlaceRequest, Placement, Policy, ScalePlan, Snapshot, export_policy,
};

/// Traps in `scale` and `place`.
#[derive(Default)]
pub struct Trap;

impl Policy for Trap {
    fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        panic!(
            "hostile-trap: deliberate panic in scale at {}",
            snapshot.now_ms
        );
    }

    fn place(
        &self,
        _: &PlaceRequest,
        _: &[Offering],
        _: &[Node],
    ) -> Result<Vec<Placement>, String> {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
        #[cfg(not(target_arch = "wasm32"))]
        unreachable!("hostile-trap: place");
    }
}

export_policy!(Trap);
