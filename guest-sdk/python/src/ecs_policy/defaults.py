"""The built-in algorithms, line for line the Rust SDK's `defaults` (the `default` policy):
call them from your policy and adjust the result.

- `scale` / `scale(snapshot, warm_nodes={...})`: demand-driven scaling.
- `place`: spread over zones, cheapest per vCPU within a zone, honouring the spot mode.
- `FreeIps`, `capacity_tiers`, `usable_offerings`: building blocks for your own `place`.
"""

from .types import (
    Launch, NodeState, Placement, Removal, ScalePlan, SpotMode, is_idle, is_in_flight, is_live,
    occupies,
    is_usable, nodes_of, price_per_vcpu, queued_for, used_up,
)

DEFAULT_COOLDOWN_MS = 5 * 60 * 1000
"""How long an offering is avoided after a capacity error, by default."""


def count_text(n: int, noun: str) -> str:
    """`1 executor`, `2 executors`."""
    return f"1 {noun}" if n == 1 else f"{n} {noun}s"


def duration_text(ms: int) -> str:
    """Milliseconds as `45s`, `12m30s`, `2h5m`."""
    s = ms // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" if s % 60 == 0 else f"{s // 60}m{s % 60}s"
    return f"{s // 3600}h" if s % 3600 // 60 == 0 else f"{s // 3600}h{s % 3600 // 60}m"


# ---- scale ----

def scale(snapshot, warm_nodes=None) -> ScalePlan:
    """Demand-driven scaling, per template in configuration order (see the Rust SDK's
    `defaults::scale_with` for the rules). `warm_nodes` maps template names to a warm pool
    that raises the template's floor above `min-nodes`."""
    warm_nodes = warm_nodes or {}
    plan = ScalePlan(launches=[], removals=[])
    occupying_all = sum(1 for n in snapshot.nodes if occupies(n.state))
    total_room = max(0, snapshot.max_total_nodes - occupying_all)
    by_template = {}
    for n in snapshot.nodes:
        by_template.setdefault(n.template, []).append(n)
    for t in snapshot.templates:
        floor = max(warm_nodes.get(t.name, t.min_nodes), t.min_nodes)
        nodes = by_template.get(t.name, [])
        c = _Counts(snapshot, t, nodes)
        launch = _launch(t, c, floor, total_room, snapshot.max_total_nodes)
        if launch is not None:
            total_room -= launch.count
            plan.launches.append(launch)
        plan.removals.extend(_removals(t, nodes, c, floor))
    return plan


def _retires(n, t) -> bool:
    return is_idle(n) and used_up(n, t.max_uses)


class _Counts:
    def __init__(self, snapshot, t, nodes):
        self.executors = max(t.executors, 1)
        retiring = sum(1 for n in nodes if _retires(n, t))
        in_flight = sum(1 for n in nodes if is_in_flight(n.state))
        self.idle_executors = sum(
            max(0, self.executors - n.busy_executors) for n in nodes
            if n.state == NodeState.ONLINE and not used_up(n, t.max_uses))
        self.queued = queued_for(snapshot, t.name)
        self.occupying = sum(1 for n in nodes if occupies(n.state))
        self.live = max(0, sum(1 for n in nodes if is_live(n)) - retiring)
        self.in_flight_executors = in_flight * self.executors


def _launch(t, c, floor, total_room, max_total):
    covered = c.idle_executors + c.in_flight_executors
    uncovered = max(0, c.queued - covered)
    for_demand = -(-uncovered // c.executors)
    for_floor = max(0, floor - c.live)
    wanted = max(for_demand, for_floor)
    room = max(0, t.max_nodes - c.occupying)
    count = min(wanted, room, total_room)
    if count == 0:
        return None
    why = []
    if for_demand > 0:
        why.append(f"{c.queued} queued, {count_text(c.idle_executors, 'idle executor')}, "
                   f"{c.in_flight_executors} in flight")
    if for_floor > for_demand:
        why.append(f"keep {floor} warm ({c.live} live)")
    if count < wanted:
        why.append(f"{wanted} wanted, capped by max-nodes {t.max_nodes}" if room < total_room
                   else f"{wanted} wanted, capped by max-total-nodes {max_total}")
    return Launch(template=t.name, count=count, reason="; ".join(why))


def _removals(t, nodes, c, floor):
    out = [Removal(instance_id=n.instance_id,
                   reason=f"ran {count_text(n.uses, 'build')} (max-uses {t.max_uses})")
           for n in nodes if _retires(n, t)]
    timeout_ms = t.idle_timeout_secs * 1000
    for n in nodes:
        if n.busy_executors != 0:
            continue
        if n.state == NodeState.INTERRUPTED:
            reason = "spot reclaim notice"
        elif n.state == NodeState.OFFLINE and t.idle_timeout_secs > 0 and n.idle_ms >= timeout_ms:
            why = n.offline_reason if n.offline_reason is not None else "no reason given"
            reason = f"offline ({why}) and idle {duration_text(n.idle_ms)}"
        else:
            continue
        out.append(Removal(instance_id=n.instance_id, reason=reason))
    if t.idle_timeout_secs == 0:
        return out
    idle = [n for n in nodes
            if is_idle(n) and not used_up(n, t.max_uses) and n.idle_ms >= timeout_ms]
    # Longest idle first; the instance id makes ties deterministic.
    idle.sort(key=lambda n: n.instance_id)
    idle.sort(key=lambda n: n.idle_ms, reverse=True)
    # Idle nodes that queued builds could still use stay (Jenkins is about to hand them work).
    kept_for_queue = -(-c.queued // c.executors)
    above_floor = max(0, c.live - floor)
    take = min(max(0, len(idle) - kept_for_queue), above_floor)
    out.extend(Removal(instance_id=n.instance_id,
                       reason=f"idle {duration_text(n.idle_ms)} "
                              f"(idle-timeout {duration_text(timeout_ms)})")
               for n in idle[:take])
    return out


# ---- place ----

def usable_offerings(offerings, now_ms, cooldown_ms):
    """Indices of the offerings in stock, with a free IP, and no recent capacity error."""
    return [i for i, o in enumerate(offerings) if is_usable(o, now_ms, cooldown_ms)]


def capacity_tiers(mode):
    """The capacity types to try, in order, for a spot mode (True = spot offerings)."""
    if mode == SpotMode.ON_DEMAND:
        return [False]
    if mode == SpotMode.SPOT_FIRST:
        return [True, False]
    return [True]


class FreeIps:
    """Free private IPs left per vswitch while placing, addressed by offering index. Offerings
    share vswitches, so IPs are counted per vswitch; the smallest report wins."""

    def __init__(self, offerings):
        slots = {}
        self._left = []
        self._slot = []
        for o in offerings:
            s = slots.get(o.vswitch)
            if s is None:
                s = slots[o.vswitch] = len(self._left)
                self._left.append(o.free_ips)
            self._left[s] = min(self._left[s], o.free_ips)
            self._slot.append(s)

    def left(self, index: int) -> int:
        """IPs left in the vswitch of offering `index` (0 when out of range)."""
        return self._left[self._slot[index]] if 0 <= index < len(self._slot) else 0

    def take(self, index: int, n: int) -> int:
        """Take up to `n` IPs from the vswitch of offering `index`; how many it got."""
        if not 0 <= index < len(self._slot):
            return 0
        s = self._slot[index]
        taken = min(n, self._left[s])
        self._left[s] -= taken
        return taken


def _price_key(offerings, i):
    p = price_per_vcpu(offerings[i])
    return (p is None, p if p is not None else 0.0, i)


def place(request, offerings, fleet, cooldown_ms=DEFAULT_COOLDOWN_MS):
    """Spread `request.count` nodes over usable offerings: per capacity tier of the template's
    spot mode, each node to the zone with the fewest nodes so far (live fleet plus this call;
    ties by zone name), within it the cheapest offering per vCPU with a free IP."""
    usable = usable_offerings(offerings, request.now_ms, cooldown_ms)
    ips = FreeIps(offerings)
    per_zone = {}
    for n in fleet:
        if is_live(n):
            per_zone[n.zone] = per_zone.get(n.zone, 0) + 1
    placed = {}
    left = request.count
    for spot in capacity_tiers(request.template.spot):
        by_zone = {}
        for i in usable:
            if offerings[i].spot == spot:
                by_zone.setdefault(offerings[i].zone, []).append(i)
        zones = []
        for name in sorted(by_zone):
            zones.append([name, sorted(by_zone[name], key=lambda i: _price_key(offerings, i)), 0])
        while left > 0:
            best = None
            for z in zones:
                while z[2] < len(z[1]) and ips.left(z[1][z[2]]) == 0:
                    z[2] += 1
                if z[2] < len(z[1]):
                    key = (per_zone.get(z[0], 0), z[0])
                    if best is None or key < best[0]:
                        best = (key, z[0], z[1][z[2]])
            if best is None:
                break
            _, zone, i = best
            ips.take(i, 1)
            per_zone[zone] = per_zone.get(zone, 0) + 1
            placed[i] = placed.get(i, 0) + 1
            left -= 1
    return [Placement(offering=i, count=n) for i, n in sorted(placed.items())]
