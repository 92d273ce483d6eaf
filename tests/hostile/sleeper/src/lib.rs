//! Hostile policy: sleeps, or waits for the clock, in the function its settings name.
//!
//! Settings: `{"in": "configure" | "scale" | "place", "how": "sleep" | "wait-clock",
//! "secs": 3600}`. `sleep` calls `std::thread::sleep(secs)` (a WASI monotonic-clock
//! subscription plus a blocking poll) and then answers normally: launch nothing, place
//! nothing. `wait-clock` loops, sleeping 1 ms at a time, until the monotonic clock has moved
//! `secs` seconds. The host must never wait with it: its sleeps return at once, and a guest
//! that waits for time to pass spins into its CPU budget.
//!
//! Built with plain wit-bindgen from `wit/policy.wit`, like an outside author's policy.

wit_bindgen::generate!({
    path: "../../../wit/policy.wit",
    world: "policy-module",
});

use std::sync::Mutex;
use std::time::{Duration, Instant};

use exports::ecs_provisioner::policy::policy::{
    Guest, Node, Offering, PlaceRequest, Placement, ScalePlan, Snapshot,
};

/// Where and how to wait, from the settings `configure` received in this instance.
static PLAN: Mutex<Option<(String, String, u64)>> = Mutex::new(None);

fn maybe_wait(function: &str) {
    let plan = PLAN.lock().unwrap().clone();
    let Some((at, how, secs)) = plan else { return };
    if at != function {
        return;
    }
    if how == "wait-clock" {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_millis(1));
        }
    } else {
        std::thread::sleep(Duration::from_secs(secs));
    }
}

/// Waits where told; otherwise launches and places nothing.
pub struct Sleeper;

impl Guest for Sleeper {
    fn configure(settings: String) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_str(&settings).map_err(|e| e.to_string())?;
        let at = v["in"].as_str().unwrap_or("scale").to_owned();
        let how = v["how"].as_str().unwrap_or("sleep").to_owned();
        let secs = v["secs"].as_u64().unwrap_or(3600);
        *PLAN.lock().unwrap() = Some((at, how, secs));
        maybe_wait("configure");
        Ok(())
    }

    fn scale(_snapshot: Snapshot) -> Result<ScalePlan, String> {
        maybe_wait("scale");
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
        maybe_wait("place");
        Ok(Vec::new())
    }
}

// Only the wasm build exports anything.
#[cfg(target_arch = "wasm32")]
export!(Sleeper);
