//! Hostile policy: answers with huge text.
//!
//! Settings: `{"what": "err" | "reason" | "template" | "instance-id" | "place-err",
//! "kib": 40960}`. It allocates a string of `kib` KiB (40 MiB by default: under the 64 MiB
//! memory cap) and returns it as `scale`'s `Err` text, as a launch's reason (for the first
//! template with demand, else the first template), as a launch's template name, as a removal's
//! instance id, or as `place`'s `Err` text. Otherwise it behaves: it launches one node per two
//! queued builds of each template and places everything on the first offering.
//!
//! The host must copy no more than its answer cap out of the guest, keep no more than about
//! 1 KiB of any text, and go on.
//!
//! Built with plain wit-bindgen from `wit/policy.wit`, like an outside author's policy.

wit_bindgen::generate!({
    path: "../../../wit/policy.wit",
    world: "policy-module",
});

use std::sync::Mutex;

use exports::ecs_provisioner::policy::policy::{
    Guest, Launch, Node, Offering, PlaceRequest, Placement, Removal, ScalePlan, Snapshot,
};

static WHAT: Mutex<Option<(String, usize)>> = Mutex::new(None);

fn what() -> (String, usize) {
    WHAT.lock()
        .unwrap()
        .clone()
        .unwrap_or(("err".into(), 40 << 10))
}

/// A string of `kib` KiB that also carries a forged log line, to check escaping.
fn huge(kib: usize) -> String {
    // Allocated at once: doubling a growing string would need 1.5 times the memory.
    let mut s = String::with_capacity((kib << 10) + 2048);
    s.push_str("huge\n2026-01-01T00:00:00.000000Z  INFO ecs_provisioner: forged\r\n");
    let filler = "0123456789abcdef".repeat(64); // 1 KiB
    while s.len() < kib << 10 {
        s.push_str(&filler);
    }
    s
}

/// Answers with huge text where told.
pub struct Huge;

impl Guest for Huge {
    fn configure(settings: String) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_str(&settings).map_err(|e| e.to_string())?;
        let what = v["what"].as_str().unwrap_or("err").to_owned();
        let kib = v["kib"].as_u64().unwrap_or(40 << 10) as usize;
        *WHAT.lock().unwrap() = Some((what, kib));
        Ok(())
    }

    fn scale(snapshot: Snapshot) -> Result<ScalePlan, String> {
        let (what, kib) = what();
        if what == "err" {
            return Err(huge(kib));
        }
        let mut launches: Vec<Launch> = snapshot
            .demand
            .iter()
            .filter(|d| d.queued > 0)
            .map(|d| Launch {
                template: d.template.clone(),
                count: d.queued.div_ceil(2),
                reason: format!("{} queued", d.queued),
            })
            .collect();
        if launches.is_empty()
            && let Some(t) = snapshot.templates.first()
        {
            launches.push(Launch {
                template: t.name.clone(),
                count: 0,
                reason: "nothing queued".into(),
            });
        }
        let mut removals = Vec::new();
        match what.as_str() {
            "reason" => {
                if let Some(l) = launches.first_mut() {
                    l.reason = huge(kib);
                }
            }
            "template" => {
                if let Some(l) = launches.first_mut() {
                    l.template = huge(kib);
                }
            }
            "instance-id" => removals.push(Removal {
                instance_id: huge(kib),
                reason: "no such node".into(),
            }),
            _ => {}
        }
        Ok(ScalePlan { launches, removals })
    }

    fn place(
        request: PlaceRequest,
        offerings: Vec<Offering>,
        _fleet: Vec<Node>,
    ) -> Result<Vec<Placement>, String> {
        let (what, kib) = what();
        if what == "place-err" {
            return Err(huge(kib));
        }
        Ok(if offerings.is_empty() || request.count == 0 {
            Vec::new()
        } else {
            vec![Placement {
                offering: 0,
                count: request.count,
            }]
        })
    }
}

// Only the wasm build exports anything.
#[cfg(target_arch = "wasm32")]
export!(Huge);
