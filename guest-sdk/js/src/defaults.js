// The built-in algorithms, line for line the Rust SDK's `defaults` (the `default` policy):
// call them from your policy and adjust the result.

import { isIdle, isInFlight, isLive, isUsable, occupies, pricePerVcpu, queuedFor, usedUp } from './types.js';

/** Five minutes: how long an offering is avoided after a capacity error, by default. */
export const DEFAULT_COOLDOWN_MS = 5 * 60 * 1000;

/** `1 executor`, `2 executors`. */
export const countText = (n, noun) => (Number(n) === 1 ? `1 ${noun}` : `${n} ${noun}s`);

/** Milliseconds (number or BigInt) as `45s`, `12m30s`, `2h5m`. */
export function durationText(ms) {
  const s = Math.floor(Number(ms) / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return s % 60 === 0 ? `${Math.floor(s / 60)}m` : `${Math.floor(s / 60)}m${s % 60}s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return m === 0 ? `${h}h` : `${h}h${m}m`;
}

const ceilDiv = (a, b) => Math.floor((a + b - 1) / b);
const cmpBig = (a, b) => (a > b) - (a < b);

/**
 * Demand-driven scaling per template in configuration order (see the Rust SDK's
 * `defaults::scale_with` for the rules). `options.warmNodes` maps template names to a warm
 * pool that raises the template's floor above `min-nodes`.
 */
export function scale(snapshot, options = {}) {
  const warm = options.warmNodes ?? {};
  const plan = { launches: [], removals: [] };
  const occupyingAll = snapshot.nodes.filter((n) => occupies(n.state)).length;
  let totalRoom = Math.max(0, snapshot.maxTotalNodes - occupyingAll);
  const byTemplate = new Map();
  for (const n of snapshot.nodes) {
    if (!byTemplate.has(n.template)) byTemplate.set(n.template, []);
    byTemplate.get(n.template).push(n);
  }
  for (const t of snapshot.templates) {
    const floor = Math.max(Object.hasOwn(warm, t.name) ? warm[t.name] : t.minNodes, t.minNodes);
    const nodes = byTemplate.get(t.name) ?? [];
    const c = counts(snapshot, t, nodes);
    const l = launch(t, c, floor, totalRoom, snapshot.maxTotalNodes);
    if (l) {
      totalRoom -= l.count;
      plan.launches.push(l);
    }
    plan.removals.push(...removals(t, nodes, c, floor));
  }
  return plan;
}

const retires = (n, t) => isIdle(n) && usedUp(n, t.maxUses);

function counts(snapshot, t, nodes) {
  const executors = Math.max(t.executors, 1);
  let retiring = 0, inFlight = 0, idleExecutors = 0, occupying = 0, live = 0;
  for (const n of nodes) {
    if (retires(n, t)) retiring++;
    if (isInFlight(n.state)) inFlight++;
    if (n.state === 'online' && !usedUp(n, t.maxUses)) idleExecutors += Math.max(0, executors - n.busyExecutors);
    if (occupies(n.state)) occupying++;
    if (isLive(n)) live++;
  }
  return {
    executors,
    queued: queuedFor(snapshot, t.name),
    occupying,
    live: Math.max(0, live - retiring),
    inFlightExecutors: inFlight * executors,
    idleExecutors,
  };
}

function launch(t, c, floor, totalRoom, maxTotal) {
  const uncovered = Math.max(0, c.queued - (c.idleExecutors + c.inFlightExecutors));
  const forDemand = ceilDiv(uncovered, c.executors);
  const forFloor = Math.max(0, floor - c.live);
  const wanted = Math.max(forDemand, forFloor);
  const room = Math.max(0, t.maxNodes - c.occupying);
  const count = Math.min(wanted, room, totalRoom);
  if (count === 0) return null;
  const why = [];
  if (forDemand > 0) {
    why.push(`${c.queued} queued, ${countText(c.idleExecutors, 'idle executor')}, ${c.inFlightExecutors} in flight`);
  }
  if (forFloor > forDemand) why.push(`keep ${floor} warm (${c.live} live)`);
  if (count < wanted) {
    why.push(room < totalRoom
      ? `${wanted} wanted, capped by max-nodes ${t.maxNodes}`
      : `${wanted} wanted, capped by max-total-nodes ${maxTotal}`);
  }
  return { template: t.name, count, reason: why.join('; ') };
}

function removals(t, nodes, c, floor) {
  const out = nodes.filter((n) => retires(n, t)).map((n) => ({
    instanceId: n.instanceId,
    reason: `ran ${countText(n.uses, 'build')} (max-uses ${t.maxUses})`,
  }));
  const timeoutMs = BigInt(t.idleTimeoutSecs) * 1000n;
  for (const n of nodes) {
    if (n.busyExecutors !== 0) continue;
    let reason;
    if (n.state === 'interrupted') reason = 'spot reclaim notice';
    else if (n.state === 'offline' && t.idleTimeoutSecs > 0 && n.idleMs >= timeoutMs) {
      reason = `offline (${n.offlineReason ?? 'no reason given'}) and idle ${durationText(n.idleMs)}`;
    } else continue;
    out.push({ instanceId: n.instanceId, reason });
  }
  if (t.idleTimeoutSecs == 0) return out;
  const idle = nodes.filter((n) => isIdle(n) && !usedUp(n, t.maxUses) && n.idleMs >= timeoutMs);
  // Longest idle first; the instance id makes ties deterministic.
  idle.sort((a, b) => cmpBig(b.idleMs, a.idleMs) || (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0));
  // Idle nodes that queued builds could still use stay (Jenkins is about to hand them work).
  const keptForQueue = ceilDiv(c.queued, c.executors);
  const take = Math.min(Math.max(0, idle.length - keptForQueue), Math.max(0, c.live - floor));
  for (const n of idle.slice(0, take)) {
    out.push({ instanceId: n.instanceId, reason: `idle ${durationText(n.idleMs)} (idle-timeout ${durationText(timeoutMs)})` });
  }
  return out;
}

/** Indices of the offerings in stock, with a free IP, and no recent capacity error. */
export function usableOfferings(offerings, nowMs, cooldownMs) {
  const out = [];
  offerings.forEach((o, i) => { if (isUsable(o, nowMs, cooldownMs)) out.push(i); });
  return out;
}

/** The capacity types to try, in order, for a spot mode (true = spot offerings). */
export function capacityTiers(mode) {
  if (mode === 'on-demand') return [false];
  if (mode === 'spot-first') return [true, false];
  return [true];
}

/** Free private IPs left per vswitch while placing, addressed by offering index. Offerings
 * share vswitches, so IPs are counted per vswitch; the smallest report wins. */
export class FreeIps {
  constructor(offerings) {
    const slots = new Map();
    this.leftBySlot = [];
    this.slot = offerings.map((o) => {
      let s = slots.get(o.vswitch);
      if (s === undefined) {
        s = this.leftBySlot.length;
        slots.set(o.vswitch, s);
        this.leftBySlot.push(o.freeIps);
      }
      this.leftBySlot[s] = Math.min(this.leftBySlot[s], o.freeIps);
      return s;
    });
  }

  /** IPs left in the vswitch of offering `index` (0 when out of range). */
  left(index) {
    const s = this.slot[index];
    return s === undefined ? 0 : this.leftBySlot[s];
  }

  /** Take up to `n` IPs from the vswitch of offering `index`; how many it got. */
  take(index, n) {
    const s = this.slot[index];
    if (s === undefined) return 0;
    const taken = Math.min(n, this.leftBySlot[s]);
    this.leftBySlot[s] -= taken;
    return taken;
  }
}

function cheaper(offerings) {
  return (a, b) => {
    const x = pricePerVcpu(offerings[a]);
    const y = pricePerVcpu(offerings[b]);
    if (x !== undefined && y !== undefined && x !== y) return x - y;
    if (x !== undefined && y === undefined) return -1;
    if (x === undefined && y !== undefined) return 1;
    return a - b;
  };
}

/**
 * Spread `request.count` nodes over usable offerings: per capacity tier of the template's
 * spot mode, each node to the zone with the fewest nodes so far (live fleet plus this call;
 * ties by zone name), within it the cheapest offering per vCPU with a free IP.
 */
export function place(request, offerings, fleet, options = {}) {
  const cooldownMs = options.cooldownMs ?? DEFAULT_COOLDOWN_MS;
  const usable = usableOfferings(offerings, request.nowMs, cooldownMs);
  const ips = new FreeIps(offerings);
  const perZone = new Map();
  for (const n of fleet) if (isLive(n)) perZone.set(n.zone, (perZone.get(n.zone) ?? 0) + 1);
  const placed = new Map();
  let left = request.count;
  for (const spot of capacityTiers(request.template.spot)) {
    const byZone = new Map();
    for (const i of usable) {
      if (offerings[i].spot !== spot) continue;
      if (!byZone.has(offerings[i].zone)) byZone.set(offerings[i].zone, []);
      byZone.get(offerings[i].zone).push(i);
    }
    const zones = [...byZone.keys()].sort(byCodePoint)
      .map((name) => ({ name, candidates: byZone.get(name).sort(cheaper(offerings)), next: 0 }));
    while (left > 0) {
      let best = null;
      for (const z of zones) {
        while (z.next < z.candidates.length && ips.left(z.candidates[z.next]) === 0) z.next++;
        if (z.next === z.candidates.length) continue;
        const count = perZone.get(z.name) ?? 0;
        if (!best || count < best.count || (count === best.count && byCodePoint(z.name, best.zone) < 0)) {
          best = { count, zone: z.name, index: z.candidates[z.next] };
        }
      }
      if (!best) break;
      ips.take(best.index, 1);
      perZone.set(best.zone, best.count + 1);
      placed.set(best.index, (placed.get(best.index) ?? 0) + 1);
      left--;
    }
  }
  return [...placed.entries()].sort((a, b) => a[0] - b[0]).map(([offering, count]) => ({ offering, count }));
}

/** Byte order of UTF-8, as Rust's `str` ordering (not locale order). */
function byCodePoint(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}
