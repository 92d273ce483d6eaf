// Helpers on the contract's types, the same as the Rust SDK's methods. The types themselves
// are componentize-js's mapping of wit/policy.wit (types/ has them as TypeScript): records
// are objects with camelCase fields, u64 fields are BigInt, enums are their WIT names.

const IN_FLIGHT = new Set(['requested', 'pending', 'running', 'bootstrapping', 'connecting']);
const LEAVING = new Set(['draining', 'terminating']);
const UNUSABLE = new Set(['offline', 'disconnected', 'interrupted', 'draining', 'terminating', 'stopped']);
const NOT_OCCUPYING = new Set(['terminating', 'stopped']);

/** Capacity still on its way: requested, pending, running, bootstrapping or connecting. */
export const isInFlight = (state) => IN_FLIGHT.has(state);
/** Counts against `maxNodes` and `maxTotalNodes`: every state but terminating and stopped
 * (the warm pool, capped by `max-stopped`). */
export const occupies = (state) => !NOT_OCCUPYING.has(state);
/** Draining or terminating: the host refuses to remove such a node again. */
export const isLeaving = (state) => LEAVING.has(state);
/** In flight or online: capacity that serves builds now or soon. */
export const isLive = (node) => !UNUSABLE.has(node.state);
/** Online with no build running. */
export const isIdle = (node) => node.state === 'online' && node.busyExecutors === 0;
/** Whether the node has run `maxUses` builds (never, when `maxUses` is 0). */
export const usedUp = (node, maxUses) => maxUses > 0 && node.uses >= maxUses;

/** Hourly price per vCPU, or undefined when unknown or the type has no vCPUs. */
export function pricePerVcpu(o) {
  const p = o.pricePerHour;
  return p !== undefined && p !== null && o.vcpus > 0 && Number.isFinite(p) ? p / o.vcpus : undefined;
}

/** A capacity error less than `cooldownMs` before `nowMs` (or stamped in the future). */
export function failedRecently(o, nowMs, cooldownMs) {
  const f = o.lastFailure;
  return f !== undefined && f !== null && (f.atMs > nowMs || nowMs - f.atMs < BigInt(cooldownMs));
}

/** In stock, with a free IP, and no capacity error within `cooldownMs` of `nowMs`. */
export const isUsable = (o, nowMs, cooldownMs) =>
  o.inStock && o.freeIps > 0 && !failedRecently(o, nowMs, cooldownMs);

/** The template with this name, or undefined. */
export const templateOf = (snapshot, name) => snapshot.templates.find((t) => t.name === name);
/** Builds queued for this template (0 when it has no demand entry). */
export const queuedFor = (snapshot, template) =>
  snapshot.demand.filter((d) => d.template === template).reduce((s, d) => s + d.queued, 0);
/** The nodes launched for this template, in any state. */
export const nodesOf = (snapshot, template) => snapshot.nodes.filter((n) => n.template === template);
/** Nodes the plan launches for `template`. */
export const launchesFor = (plan, template) =>
  plan.launches.filter((l) => l.template === template).reduce((s, l) => s + l.count, 0);
/** Instance ids the plan removes, in plan order. */
export const removedIds = (plan) => plan.removals.map((r) => r.instanceId);
