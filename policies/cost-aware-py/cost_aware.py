"""A cost-aware ecs-provisioner policy in Python: cheapest capacity per vCPU, spot first.
The twin of policies/cost-aware (Rust); both pass the same fixture files.

Settings (`[policy.settings]`, all optional):

| key | default | meaning |
|---|---|---|
| `cooldown-secs` | 300 | seconds an offering is skipped after a capacity error |
| `max-price-per-vcpu` | none | skip offerings priced above this per vCPU and hour |
| `unpriced` | `"last"` | offerings without a price: `"last"` or `"skip"` |
| `max-nodes-per-offering` | none | cap live nodes per zone x type x capacity type |
| `on-demand-fallback` | true | `spot-first` templates may fall back to on-demand |

- `place`: fills the cheapest offerings per vCPU first; spot before on-demand whenever the
  template allows spot; on-demand templates stay on-demand.
- `scale`: the default decision, but idle nodes go most expensive first.
"""

import math

from ecs_policy import (
    Placement, Policy, PolicyError, Removal, SpotMode, defaults, is_idle, is_live, log,
    price_per_vcpu, settings, used_up,
)


class CostAware(Policy):
    """The cost-aware policy."""

    # `scale` prices idle nodes by their offering, so it reads the offerings too.
    reads = ("nodes", "offerings")

    def configure(self, settings_json):
        s = settings.parse(settings_json)
        self.cooldown_secs = s.int("cooldown-secs", default=300, min=0)
        self.max_price_per_vcpu = s.number("max-price-per-vcpu", default=None)
        self.unpriced = s.choice("unpriced", ["last", "skip"], default="last")
        self.max_nodes_per_offering = s.int("max-nodes-per-offering", default=None, min=0)
        self.on_demand_fallback = s.bool("on-demand-fallback", default=True)
        s.done()
        m = self.max_price_per_vcpu
        if m is not None and not (math.isfinite(m) and m > 0):
            raise PolicyError(f"setting `max-price-per-vcpu`: must be a positive number, got {m:g}")
        if self.max_nodes_per_offering == 0:
            raise PolicyError("setting `max-nodes-per-offering`: must be at least 1")

    def scale(self, snapshot):
        plan = defaults.scale(snapshot)
        for t in snapshot.templates:
            expired = [n for n in snapshot.nodes if n.template == t.name and _idled_out(n, t)]
            expired_ids = {n.instance_id for n in expired}
            chosen = sum(1 for r in plan.removals if r.instance_id in expired_ids)
            if chosen == 0:
                continue
            plan.removals = [r for r in plan.removals if r.instance_id not in expired_ids]
            prices = {n.instance_id: _hourly_price(snapshot, n) for n in expired}
            # Most expensive first (unknown prices last), then longest idle; stable like Rust's.
            expired.sort(key=lambda n: (-(prices[n.instance_id] if prices[n.instance_id] is not None
                                          else -math.inf), -n.idle_ms))
            for n in expired[:chosen]:
                p = prices[n.instance_id]
                price = f"{p:.3f}/h" if p is not None else "price unknown"
                plan.removals.append(Removal(
                    instance_id=n.instance_id,
                    reason=f"idle past idle-timeout {t.idle_timeout_secs}s, {price}"))
        return plan

    def place(self, request, offerings, fleet):
        tiers = defaults.capacity_tiers(request.template.spot)
        if request.template.spot == SpotMode.SPOT_FIRST and not self.on_demand_fallback:
            tiers = [True]
        ips = defaults.FreeIps(offerings)
        left = request.count
        out = []
        usable = defaults.usable_offerings(offerings, request.now_ms, self.cooldown_secs * 1000)
        for spot in tiers:
            tier = [i for i in usable if offerings[i].spot == spot and self._affordable(offerings[i])]
            # Known prices ascending, then unknown ones; offering order breaks ties.
            tier.sort(key=lambda i: (_or_inf(price_per_vcpu(offerings[i])), i))
            for i in tier:
                o = offerings[i]
                room = (left if self.max_nodes_per_offering is None
                        else max(0, self.max_nodes_per_offering - _on_offering(fleet, o)))
                n = ips.take(i, min(left, room))
                if n > 0:
                    p = price_per_vcpu(o)
                    log.debug(f"{n} x {o.instance_type} {'spot' if o.spot else 'on-demand'} in "
                              f"{o.zone} at {'unknown price' if p is None else f'{p:.4f}/vCPU/h'}")
                    out.append(Placement(offering=i, count=n))
                    left -= n
                if left == 0:
                    return out
        return out

    def _affordable(self, o):
        p = price_per_vcpu(o)
        if p is None:
            return self.unpriced == "last"
        return self.max_price_per_vcpu is None or p <= self.max_price_per_vcpu


def _or_inf(p):
    return math.inf if p is None else p


def _idled_out(n, t):
    """The removal candidates the default algorithm idles out."""
    return (t.idle_timeout_secs > 0 and is_idle(n) and not used_up(n, t.max_uses)
            and n.idle_ms >= t.idle_timeout_secs * 1000)


def _hourly_price(snapshot, n):
    """What the node's offering costs per hour, if the snapshot knows."""
    for o in snapshot.offerings:
        if o.zone == n.zone and o.instance_type == n.instance_type and o.spot == n.spot:
            return o.price_per_hour
    return None


def _on_offering(fleet, o):
    """Live nodes of the template already on this offering."""
    return sum(1 for n in fleet if is_live(n) and n.zone == o.zone
               and n.instance_type == o.instance_type and n.spot == o.spot)
