//! Hostile policy: `scale` allocates 1 GiB in 1 MiB chunks and writes to every page, like a
//! leak that grows until something stops it. The host's memory cap must turn the failing
//! `memory.grow` into a contained error. `configure` and `place` behave.

use ecs_policy_sdk::{Policy, ScalePlan, Snapshot, export_policy};

const CHUNK: usize = 1 << 20;
const TOTAL: usize = 1 << 30;

/// Eats memory in `scale`.
#[derive(Default)]
pub struct MemoryBomb;

impl Policy for MemoryBomb {
    fn scale(&self, _: &Snapshot) -> Result<ScalePlan, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        while hoard.len() * CHUNK < TOTAL {
            let mut chunk = vec![0u8; CHUNK];
            for page in chunk.chunks_mut(4096) {
                page[0] = 1; // touch every page
            }
            hoard.push(std::hint::black_box(chunk));
        }
        Err(format!(
            "allocated {} MiB without being stopped",
            hoard.len()
        ))
    }
}

export_policy!(MemoryBomb);
