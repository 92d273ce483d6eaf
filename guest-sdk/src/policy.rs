//! The [`Policy`] trait: what a policy implements, every method with a sensible default.

use crate::defaults;
use crate::types::{Node, Offering, PlaceRequest, Placement, ScalePlan, Snapshot, SnapshotParts};

/// A placement and scaling policy.
///
/// Every method has a default, so `impl Policy for MyPolicy {}` is already a complete policy
/// that behaves like the built-in default. Override only what you want to change, and call the
/// [`defaults`] functions from your override to adjust rather than rewrite.
///
/// The host makes a fresh instance for every evaluation: it calls [`configure`](Policy::configure)
/// with the policy's settings, then exactly one of [`scale`](Policy::scale) or
/// [`place`](Policy::place). Keep whatever `configure` parsed in `self`; nothing survives from
/// one evaluation to the next, and the only clock is `now_ms` in the input.
///
/// ```
/// use ecs_policy_sdk::{Policy, ScalePlan, Snapshot, defaults};
///
/// #[derive(Default)]
/// struct NeverRemove;
///
/// impl Policy for NeverRemove {
///     fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
///         let mut plan = defaults::scale(snapshot);
///         plan.removals.clear();
///         Ok(plan)
///     }
/// }
/// ```
pub trait Policy {
    /// Validate and keep the policy's settings: the JSON text of the `[policy.settings]` table
    /// (`{}` when absent). An error fails `check` and start-up; name the bad setting in it.
    ///
    /// Default: accept `{}` or empty text, reject anything else (the policy takes no settings).
    /// Use [`settings::parse`](crate::settings::parse) for typed settings.
    fn configure(&mut self, settings: &str) -> Result<(), String> {
        crate::settings::expect_none(settings)
    }

    /// The optional parts of the snapshot [`scale`](Policy::scale) reads: the host sends the
    /// others as empty lists (see [`trimmed`](crate::trimmed)). Asked once, right after a
    /// successful `configure`, so it may depend on the settings.
    ///
    /// Default: everything. [`defaults::scale`] needs only [`SnapshotParts::NODES`]; declaring
    /// less saves the host copying thousands of queued items and offerings into the guest.
    fn reads(&self) -> SnapshotParts {
        SnapshotParts::all()
    }

    /// Decide how many nodes each template needs and which nodes to remove.
    ///
    /// Default: [`defaults::scale`], demand-driven scaling with idle timeouts and max uses.
    fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        Ok(defaults::scale(snapshot))
    }

    /// Spread `request.count` nodes over `offerings` (already filtered to the template's
    /// zones, vswitches and instance types). `fleet` holds the template's current nodes.
    /// Placing fewer than asked is allowed.
    ///
    /// Default: [`defaults::place`] with [`defaults::PlaceOptions::default`] (5-minute
    /// cooldown after a capacity error, zone spreading, cheapest per vCPU within a zone).
    fn place(
        &self,
        request: &PlaceRequest,
        offerings: &[Offering],
        fleet: &[Node],
    ) -> Result<Vec<Placement>, String> {
        Ok(defaults::place(
            request,
            offerings,
            fleet,
            &defaults::PlaceOptions::default(),
        ))
    }
}
