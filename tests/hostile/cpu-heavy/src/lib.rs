//! A legal but CPU-heavy policy: it works through `rounds` rounds of arithmetic in every
//! `scale` and `place` call, then answers sensibly (one node per two queued builds; every
//! node on the first offering in stock).
//!
//! Settings: `{"rounds": 10000000}`. The work is the same for the same input, so the fuel it
//! uses is too: a budget that fits it on an idle machine fits it on a busy one.
//!
//! Built with plain wit-bindgen from `wit/policy.wit`, like an outside author's policy.

wit_bindgen::generate!({
    path: "../../../wit/policy.wit",
    world: "policy-module",
});

use std::sync::Mutex;

use exports::ecs_provisioner::policy::policy::{
    Guest, Launch, Node, Offering, PlaceRequest, Placement, ScalePlan, Snapshot,
};

static ROUNDS: Mutex<u64> = Mutex::new(10_000_000);

/// Deterministic busy work the optimiser cannot remove; its result feeds the answer.
fn work() -> u64 {
    let rounds = *ROUNDS.lock().unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..rounds {
        x = std::hint::black_box(x ^ (x >> 7))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9)
            .wrapping_add(i);
    }
    x
}

/// Thinks hard, then answers like a simple demand-driven policy.
pub struct CpuHeavy;

impl Guest for CpuHeavy {
    fn configure(settings: String) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_str(&settings).map_err(|e| e.to_string())?;
        if let Some(r) = v.get("rounds") {
            *ROUNDS.lock().unwrap() = r.as_u64().ok_or("rounds: expected a whole number")?;
        }
        Ok(())
    }

    fn scale(snapshot: Snapshot) -> Result<ScalePlan, String> {
        let digest = work();
        let launches = snapshot
            .demand
            .iter()
            .filter(|d| d.queued > 0)
            .map(|d| Launch {
                template: d.template.clone(),
                count: d.queued.div_ceil(2),
                reason: format!("{} queued (thought hard: {:x})", d.queued, digest & 0xffff),
            })
            .collect();
        Ok(ScalePlan {
            launches,
            removals: Vec::new(),
        })
    }

    fn place(
        request: PlaceRequest,
        offerings: Vec<Offering>,
        _fleet: Vec<Node>,
    ) -> Result<Vec<Placement>, String> {
        work();
        Ok(offerings
            .iter()
            .position(|o| o.in_stock)
            .filter(|_| request.count > 0)
            .map(|i| {
                vec![Placement {
                    offering: i as u32,
                    count: request.count,
                }]
            })
            .unwrap_or_default())
    }
}

// Only the wasm build exports anything.
#[cfg(target_arch = "wasm32")]
export!(CpuHeavy);
