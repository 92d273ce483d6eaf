//! Hostile policy: a well-behaved policy built against contract `0.3.0` (its own copy of the
//! 0.1.0 WIT in `wit/`, identical but for the version). The host serves 0.2.x and 0.1.x only,
//! and must refuse it at load time naming the versions. Uses raw wit-bindgen: the SDK speaks
//! the newest served version.

wit_bindgen::generate!({
    path: "wit",
    world: "policy-module",
});

use exports::ecs_provisioner::policy::policy::{
    Guest, Node, Offering, PlaceRequest, Placement, ScalePlan, Snapshot,
};

/// Launches nothing, removes nothing, places nothing.
pub struct WrongVersion;

impl Guest for WrongVersion {
    fn configure(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn scale(_snapshot: Snapshot) -> Result<ScalePlan, String> {
        Ok(ScalePlan {
            launches: Vec::new(),
            removals: Vec::new(),
        })
    }

    fn place(
        _request: PlaceRequest,
        _offerings: Vec<Offering>,
        _fleet: Vec<Node>,
    ) -> Result<Vec<Placement>, String> {
        Ok(Vec::new())
    }
}

// Only the wasm build exports anything.
#[cfg(target_arch = "wasm32")]
export!(WrongVersion);
