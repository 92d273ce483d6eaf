//! Hostile policy: `scale` spins forever. The host must stop it at its epoch deadline and
//! fall back, without hanging the reconcile loop. `configure` and `place` behave.

use ecs_policy_sdk::{Policy, ScalePlan, Snapshot, export_policy};

/// Loops in `scale`.
#[derive(Default)]
pub struct InfiniteLoop;

impl Policy for InfiniteLoop {
    fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        // black_box keeps the optimiser from proving anything about the loop.
        let mut n = snapshot.now_ms;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export_policy!(InfiniteLoop);
