//! Test probe policy: `configure` picks a mode from the settings text, `scale` and `place`
//! act on it. Modes (substring of the settings): `ok` (default), `reject`, `panic`, `spin`,
//! `bomb`, `log-flood`, `unknown-template`, `bad-offering`, `too-many`, `sandbox`,
//! `bad-setting` (configure fails).

wit_bindgen::generate!({ path: "../../../wit", world: "policy-module" });

use ecs_provisioner::policy::host::{Level, log};
use exports::ecs_provisioner::policy::policy::*;
use std::cell::RefCell;

thread_local! {
    static MODE: RefCell<String> = const { RefCell::new(String::new()) };
}

fn mode() -> String {
    MODE.with(|m| m.borrow().clone())
}

fn misbehave(m: &str) {
    match m {
        "panic" => panic!("probe panicked on purpose"),
        "spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "log-flood" => {
            for i in 0..10_000 {
                log(Level::Info, &format!("line {i} {}", "x".repeat(5000)));
            }
        }
        _ => {}
    }
}

/// Everything a sandboxed guest can learn about its environment, as text.
fn sandbox_report() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(1);
    format!(
        "clock={now_ms} hash={} env={} args={} root={}",
        h.finish(),
        std::env::vars().count(),
        std::env::args().count(),
        std::fs::read_dir("/").is_ok()
    )
}

struct Probe;

impl Guest for Probe {
    fn configure(settings: String) -> Result<(), String> {
        if settings.contains("bad-setting") {
            return Err("setting `mode`: bad-setting is not a mode".into());
        }
        let m = [
            "reject",
            "panic",
            "spin",
            "bomb",
            "log-flood",
            "unknown-template",
            "bad-offering",
            "too-many",
            "sandbox",
        ]
        .into_iter()
        .find(|m| settings.contains(m))
        .unwrap_or("ok");
        MODE.with(|c| *c.borrow_mut() = m.to_owned());
        Ok(())
    }

    fn scale(snapshot: Snapshot) -> Result<ScalePlan, String> {
        let m = mode();
        misbehave(&m);
        match m.as_str() {
            "reject" => return Err("probe says no".into()),
            "unknown-template" => {
                return Ok(ScalePlan {
                    launches: vec![Launch {
                        template: "nope".into(),
                        count: 1,
                        reason: String::new(),
                    }],
                    removals: vec![],
                });
            }
            _ => {}
        }
        let reason = if m == "sandbox" {
            sandbox_report()
        } else {
            "queued".to_owned()
        };
        let launches = snapshot
            .demand
            .iter()
            .filter(|d| d.queued > 0)
            .map(|d| Launch {
                template: d.template.clone(),
                count: d.queued,
                reason: reason.clone(),
            })
            .collect();
        let removals = snapshot
            .nodes
            .iter()
            .filter(|n| n.idle_ms > 0)
            .map(|n| Removal {
                instance_id: n.instance_id.clone(),
                reason: "idle".into(),
            })
            .collect();
        Ok(ScalePlan { launches, removals })
    }

    fn place(
        request: PlaceRequest,
        offerings: Vec<Offering>,
        _fleet: Vec<Node>,
    ) -> Result<Vec<Placement>, String> {
        let m = mode();
        misbehave(&m);
        match m.as_str() {
            "reject" => Err("probe says no".into()),
            "bad-offering" => Ok(vec![Placement {
                offering: offerings.len() as u32 + 7,
                count: 1,
            }]),
            "too-many" => Ok(vec![Placement {
                offering: 0,
                count: request.count + 1,
            }]),
            _ if offerings.is_empty() => Ok(vec![]),
            // Round-robin over the offerings.
            _ => {
                let n = offerings.len() as u32;
                Ok((0..n.min(request.count))
                    .map(|i| Placement {
                        offering: i,
                        count: request.count / n + u32::from(i < request.count % n),
                    })
                    .collect())
            }
        }
    }
}

export!(Probe);
