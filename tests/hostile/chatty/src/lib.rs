//! Hostile policy: logs lines with control characters, floods the log, or logs one huge
//! line, in every call.
//!
//! Settings: `{"lines": 1000, "huge-line-kib": 0}`. Each call (`configure` included) logs
//! `lines` lines; each carries a CR, an LF that starts what looks like a host log line, ESC
//! sequences and other C0 controls. With `huge-line-kib` > 0, `scale` also logs one line of
//! that many KiB. Its decisions are harmless: launch nothing, place nothing.
//!
//! The host must escape every control character, rate-limit the lines per call and across
//! time, count what it drops, and refuse to copy a line larger than its answer cap.
//!
//! Built with plain wit-bindgen from `wit/policy.wit`, like an outside author's policy.

wit_bindgen::generate!({
    path: "../../../wit/policy.wit",
    world: "policy-module",
});

use std::sync::Mutex;

use ecs_provisioner::policy::host::{Level, log};
use exports::ecs_provisioner::policy::policy::{
    Guest, Node, Offering, PlaceRequest, Placement, ScalePlan, Snapshot,
};

static SETTINGS: Mutex<(u32, usize)> = Mutex::new((1000, 0));

/// The forged line: a CR, then an LF starting a line that looks like the host's own.
pub const FORGED: &str = "FORGED-HOST-LINE";

fn chatter(function: &str) {
    let (lines, _) = *SETTINGS.lock().unwrap();
    for i in 0..lines {
        log(
            Level::Warn,
            &format!(
                "{function} line {i}\r\n2026-01-01T00:00:00.000000Z  INFO ecs_provisioner::engine: {FORGED} \x1b[31mred\x1b[0m\x07\x08\t\x00end"
            ),
        );
    }
}

/// Talks too much; decides nothing.
pub struct Chatty;

impl Guest for Chatty {
    fn configure(settings: String) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_str(&settings).map_err(|e| e.to_string())?;
        let lines = v["lines"].as_u64().unwrap_or(1000) as u32;
        let huge = v["huge-line-kib"].as_u64().unwrap_or(0) as usize;
        *SETTINGS.lock().unwrap() = (lines, huge);
        chatter("configure");
        Ok(())
    }

    fn scale(_snapshot: Snapshot) -> Result<ScalePlan, String> {
        chatter("scale");
        let (_, huge) = *SETTINGS.lock().unwrap();
        if huge > 0 {
            log(Level::Error, &"x".repeat(huge << 10));
        }
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
        chatter("place");
        Ok(Vec::new())
    }
}

// Only the wasm build exports anything.
#[cfg(target_arch = "wasm32")]
export!(Chatty);
