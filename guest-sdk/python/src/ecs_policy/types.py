"""The contract's types (generated from `wit/policy.wit`; fields are the WIT names in
snake_case) and small helpers on them, the same as the Rust SDK's methods."""

from ._wit import host, wit

Snapshot = wit.Snapshot
Template = wit.Template
Demand = wit.Demand
QueuedItem = wit.QueuedItem
Node = wit.Node
NodeState = wit.NodeState
Offering = wit.Offering
Failure = wit.Failure
SpotMode = wit.SpotMode
ScalePlan = wit.ScalePlan
Launch = wit.Launch
Removal = wit.Removal
PlaceRequest = wit.PlaceRequest
Placement = wit.Placement
Level = host.Level

_IN_FLIGHT = {NodeState.REQUESTED, NodeState.PENDING, NodeState.RUNNING,
              NodeState.BOOTSTRAPPING, NodeState.CONNECTING}
_LEAVING = {NodeState.DRAINING, NodeState.TERMINATING}
_UNUSABLE = {NodeState.OFFLINE, NodeState.DISCONNECTED, NodeState.INTERRUPTED,
             NodeState.DRAINING, NodeState.TERMINATING, NodeState.STOPPED}
_NOT_OCCUPYING = {NodeState.TERMINATING, NodeState.STOPPED}


def state_name(state: NodeState) -> str:
    """The state's name in the contract: `requested`, ..., `terminating`."""
    return state.name.lower()


def is_in_flight(state: NodeState) -> bool:
    """Capacity still on its way: requested, pending, running, bootstrapping or connecting."""
    return state in _IN_FLIGHT


def occupies(state: NodeState) -> bool:
    """Counts against `max-nodes` and `max-total-nodes`: every state but terminating and
    stopped (the warm pool, capped by `max-stopped`)."""
    return state not in _NOT_OCCUPYING


def is_leaving(state: NodeState) -> bool:
    """Draining or terminating: the host refuses to remove such a node again."""
    return state in _LEAVING


def is_live(node: Node) -> bool:
    """In flight or online: capacity that serves builds now or soon."""
    return node.state not in _UNUSABLE


def is_idle(node: Node) -> bool:
    """Online with no build running."""
    return node.state == NodeState.ONLINE and node.busy_executors == 0


def used_up(node: Node, max_uses: int) -> bool:
    """Whether the node has run `max_uses` builds (never, when `max_uses` is 0)."""
    return max_uses > 0 and node.uses >= max_uses


def price_per_vcpu(o: Offering):
    """Hourly price per vCPU, or None when the price is unknown or the type has no vCPUs."""
    p = o.price_per_hour
    if p is None or o.vcpus == 0 or p != p or p in (float("inf"), float("-inf")):
        return None
    return p / o.vcpus


def failed_recently(o: Offering, now_ms: int, cooldown_ms: int) -> bool:
    """A capacity error less than `cooldown_ms` before `now_ms` (or stamped in the future)."""
    f = o.last_failure
    return f is not None and (f.at_ms > now_ms or now_ms - f.at_ms < cooldown_ms)


def is_usable(o: Offering, now_ms: int, cooldown_ms: int) -> bool:
    """In stock, with a free IP, and no capacity error within `cooldown_ms` of `now_ms`."""
    return o.in_stock and o.free_ips > 0 and not failed_recently(o, now_ms, cooldown_ms)


def template_of(snapshot: Snapshot, name: str):
    """The template with this name, or None."""
    return next((t for t in snapshot.templates if t.name == name), None)


def queued_for(snapshot: Snapshot, template: str) -> int:
    """Builds queued for this template (0 when it has no demand entry)."""
    return sum(d.queued for d in snapshot.demand if d.template == template)


def nodes_of(snapshot: Snapshot, template: str):
    """The nodes launched for this template, in any state."""
    return [n for n in snapshot.nodes if n.template == template]


def empty_plan() -> ScalePlan:
    """Launch nothing, remove nothing."""
    return ScalePlan(launches=[], removals=[])


def launches_for(plan: ScalePlan, template: str) -> int:
    """Nodes the plan launches for `template`."""
    return sum(l.count for l in plan.launches if l.template == template)


def removed_ids(plan: ScalePlan):
    """Instance ids the plan removes, in plan order."""
    return [r.instance_id for r in plan.removals]
