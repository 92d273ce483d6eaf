// Run a policy natively against fixture files, the same files `ecs-provisioner policy test`
// runs against the component (format: host/policy/src/fixture.rs, docs/policy-authoring.md).
//
//   import { test } from 'node:test';
//   import * as testing from 'ecs-policy-sdk/testing';
//   for (const c of testing.cases('fixtures')) test(c.id, () => testing.check(MyPolicy, c));
//
// Every case gets a fresh policy: `configure(settings)`, then the case's call. Answers are
// also checked against the rules the host enforces (`scaleViolations`, `placeViolations`).
// Inputs are built as componentize-js passes them: camelCase fields, u64 fields as BigInt.
// TOML is read with smol-toml from ECSP_NODE_MODULES (scripts/setup-test-deps.sh).

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';

import { PolicyError } from './errors.js';
import * as reads from './reads.js';
import { isLeaving, isLive, occupies } from './types.js';

const DEFAULT_ZONE = 'cn-hangzhou-h';
const DEFAULT_TYPE = 'ecs.c7.large';

/** A fixture file or case that cannot be read; names the file and case. */
export class FixtureError extends Error {}

let toml = null;
function parseToml(text) {
  if (!toml) {
    const dir = process.env.ECSP_NODE_MODULES;
    if (!dir) {
      throw new FixtureError('ECSP_NODE_MODULES is not set: run `eval "$(scripts/setup-test-deps.sh | sed \'s/^/export /\')"` to install the TOML parser the fixture harness uses');
    }
    toml = createRequire(join(dir, '..', 'package.json'))('smol-toml');
  }
  return toml.parse(text);
}

/** Directories become the `.toml`/`.json` files inside them, sorted. */
export function expand(paths) {
  const files = [];
  for (const p of paths) {
    let dir = false;
    try { dir = statSync(p).isDirectory(); } catch { /* a missing file fails when read */ }
    if (dir) files.push(...readdirSync(p).filter((f) => /\.(toml|json)$/.test(f)).sort().map((f) => join(p, f)));
    else files.push(p);
  }
  return files;
}

/** Every case of every fixture file (directories expanded); a bad file or case throws a
 * FixtureError, so a typo never silently drops a case. */
export function cases(...paths) {
  const files = expand(paths);
  if (files.length === 0) throw new FixtureError(`no fixture files in ${paths.join(', ')}`);
  return files.flatMap(loadFile);
}

/** The cases of one fixture file. */
export function loadFile(path) {
  let doc;
  try {
    const text = readFileSync(path, 'utf8');
    doc = path.endsWith('.json') ? JSON.parse(text) : parseToml(text);
  } catch (e) {
    if (e instanceof FixtureError) throw e;
    throw new FixtureError(`${path}: ${e.message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new FixtureError(`${path}: a fixture file is a table`);
  const rawCases = doc.case ?? [{}];
  delete doc.case;
  if (!Array.isArray(rawCases)) throw new FixtureError(`${path}: \`case\` must be an array of tables ([[case]])`);
  return rawCases.map((raw, i) => {
    const merged = merge(structuredClone(doc), raw);
    const what = `${path}: case ${i + 1}` + (typeof merged.name === 'string' ? ` (\`${merged.name}\`)` : '');
    try {
      return buildCase(path, i, merged);
    } catch (e) {
      throw new FixtureError(`${what}: ${e.message}`);
    }
  });
}

function merge(base, over) {
  if (isTable(base) && isTable(over)) {
    for (const [k, v] of Object.entries(over)) base[k] = merge(base[k], v);
    return base;
  }
  return over;
}

const isTable = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function fields(table, allowed, what) {
  if (!isTable(table)) throw new Error(`${what}: expected a table, got ${JSON.stringify(table)}`);
  const unknown = Object.keys(table).find((k) => !allowed.includes(k));
  if (unknown !== undefined) throw new Error(`unknown field \`${unknown}\` in ${what}, expected one of ${[...allowed].sort().join(', ')}`);
  return table;
}

function oneOf(value, options, what) {
  if (!options.includes(value)) throw new Error(`${what}: unknown variant \`${value}\``);
  return value;
}

const u64 = (v) => BigInt(v);
const TEMPLATE = ['name', 'labels', 'executors', 'min-nodes', 'max-nodes', 'idle-timeout-secs', 'max-uses', 'spot'];
const NODE = ['instance-id', 'template', 'zone', 'instance-type', 'spot', 'state', 'busy-executors', 'idle-ms', 'age-ms', 'uses', 'failure', 'offline-reason'];
const OFFERING = ['zone', 'vswitch', 'instance-type', 'spot', 'vcpus', 'memory-mib', 'free-ips', 'price-per-hour', 'in-stock', 'last-failure'];
const SNAPSHOT = ['now-ms', 'templates', 'demand', 'unmatched-queued', 'nodes', 'offerings', 'max-total-nodes'];
const CASE = ['name', 'function', 'settings', 'snapshot', 'request', 'offerings', 'fleet', 'expect'];
const EXPECT = ['error', 'error-kind', 'launch', 'launch-at-least', 'launch-at-most', 'launch-total', 'remove', 'remove-includes', 'remove-excludes', 'remove-count', 'plan', 'placed', 'placed-at-least', 'placed-at-most', 'per-zone', 'per-type', 'per-vswitch', 'spot', 'on-demand', 'placements', 'unused-offerings'];
const STATES = ['requested', 'pending', 'running', 'bootstrapping', 'connecting', 'online', 'offline', 'disconnected', 'interrupted', 'draining', 'terminating', 'stopped'];

/** A template from a fixture table (kebab-case keys), defaults filled in. */
export function template(t = {}) {
  fields(t, TEMPLATE, 'template');
  return {
    name: t.name ?? 'default', labels: [...(t.labels ?? [])], executors: t.executors ?? 1,
    minNodes: t['min-nodes'] ?? 0, maxNodes: t['max-nodes'] ?? 10,
    idleTimeoutSecs: u64(t['idle-timeout-secs'] ?? 600), maxUses: t['max-uses'] ?? 0,
    spot: oneOf(t.spot ?? 'on-demand', ['on-demand', 'spot-first', 'spot-only'], 'template.spot'),
  };
}

/** A node from a fixture table, defaults filled in (`i-<index+1>`, online, ...). */
export function node(n = {}, index = 0, defaultTemplate = 'default') {
  fields(n, NODE, 'node');
  return {
    instanceId: n['instance-id'] ?? `i-${index + 1}`, template: n.template ?? defaultTemplate,
    zone: n.zone ?? DEFAULT_ZONE, instanceType: n['instance-type'] ?? DEFAULT_TYPE, spot: n.spot ?? false,
    state: oneOf(n.state ?? 'online', STATES, 'node.state'), busyExecutors: n['busy-executors'] ?? 0,
    idleMs: u64(n['idle-ms'] ?? 0), ageMs: u64(n['age-ms'] ?? 0), uses: n.uses ?? 0,
    failure: n.failure, offlineReason: n['offline-reason'],
  };
}

/** An offering from a fixture table, defaults filled in. */
export function offering(o = {}) {
  fields(o, OFFERING, 'offering');
  const zone = o.zone ?? DEFAULT_ZONE;
  const f = o['last-failure'];
  if (f !== undefined) fields(f, ['code', 'at-ms'], 'last-failure');
  return {
    zone, vswitch: o.vswitch ?? `vsw-${zone}`, instanceType: o['instance-type'] ?? DEFAULT_TYPE,
    spot: o.spot ?? false, vcpus: o.vcpus ?? 2, memoryMib: o['memory-mib'] ?? 4096, freeIps: o['free-ips'] ?? 100,
    pricePerHour: o['price-per-hour'], inStock: o['in-stock'] ?? true,
    lastFailure: f === undefined ? undefined : { code: f.code ?? '', atMs: u64(f['at-ms'] ?? 0) },
  };
}

/** A snapshot from a fixture table, defaults filled in. */
export function snapshot(s = {}) {
  fields(s, SNAPSHOT, 'snapshot');
  const templates = (s.templates?.length ? s.templates : [{}]).map((t) => template(t));
  const first = templates[0].name;
  const demand = (s.demand ?? []).map((d) => {
    fields(d, ['template', 'queued', 'oldest-wait-ms', 'items'], 'demand');
    const items = d.items !== undefined
      ? d.items.map((i) => { fields(i, ['id', 'wait-ms'], 'item'); return { id: u64(i.id ?? 0), waitMs: u64(i['wait-ms'] ?? 0) }; })
      : Array.from({ length: d.queued ?? 0 }, (_, k) => ({ id: BigInt(k + 1), waitMs: u64(d['oldest-wait-ms'] ?? 0) }));
    return {
      template: d.template ?? first, queued: d.queued ?? items.length,
      oldestWaitMs: d['oldest-wait-ms'] !== undefined ? u64(d['oldest-wait-ms']) : items.reduce((m, i) => (i.waitMs > m ? i.waitMs : m), 0n),
      items,
    };
  });
  return {
    nowMs: u64(s['now-ms'] ?? 1_700_000_000_000), templates, demand, unmatchedQueued: s['unmatched-queued'] ?? 0,
    nodes: (s.nodes ?? []).map((n, i) => node(n, i, first)),
    offerings: (s.offerings ?? []).map((o) => offering(o)), maxTotalNodes: s['max-total-nodes'] ?? 100,
  };
}

function buildCase(file, index, c) {
  fields(c, CASE, 'case');
  const expect = fields(c.expect ?? {}, EXPECT, 'expect');
  const fn = oneOf(c.function ?? (c.request !== undefined ? 'place' : 'scale'), ['configure', 'scale', 'place'], 'function');
  const snap = snapshot(c.snapshot ?? {});
  const name = c.name ?? `case ${index + 1}`;
  const kase = { file, name, id: `${basename(file)}: ${name}`, settings: JSON.stringify(c.settings ?? {}), function: fn, snapshot: snap, expect };
  if (fn === 'place') {
    const r = fields(c.request ?? {}, ['now-ms', 'template', 'count'], 'request');
    const t = r.template;
    const tmpl = t === undefined ? snap.templates[0]
      : typeof t === 'string' ? (snap.templates.find((x) => x.name === t) ?? template({ name: t }))
        : template(t);
    kase.offerings = c.offerings !== undefined ? c.offerings.map((o) => offering(o)) : [...snap.offerings];
    kase.fleet = c.fleet !== undefined ? c.fleet.map((n, i) => node(n, i, tmpl.name)) : snap.nodes.filter((n) => n.template === tmpl.name);
    kase.request = { nowMs: r['now-ms'] !== undefined ? u64(r['now-ms']) : snap.nowMs, template: tmpl, count: r.count ?? 1 };
  }
  return kase;
}

/** Runs one case on a fresh `new PolicyClass()`; the broken expectations (empty = passed). */
export function runCase(PolicyClass, c) {
  const e = c.expect;
  let answer, error, kind;
  try {
    const policy = new PolicyClass();
    policy.configure(c.settings);
    const sent = reads.checked(policy.reads);
    let bad = [];
    if (c.function === 'scale') {
      // What the host sends: only the parts the policy declared.
      answer = policy.scale(reads.trimmed(c.snapshot, sent));
      bad = scaleViolations(c.snapshot, answer);
    } else if (c.function === 'place') {
      answer = policy.place(c.request, c.offerings, c.fleet);
      bad = placeViolations(c.request, c.offerings, answer);
    }
    if (bad.length) [error, kind] = [`invalid output: ${bad.join('; ')}`, 'invalid-output'];
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    [error, kind] = [err.message, 'rejected'];
  }
  const wantsError = 'error' in e || 'error-kind' in e;
  if (error !== undefined) {
    if (!wantsError) return [`unexpected error: ${error}`];
    const f = [];
    if ('error' in e && !error.includes(e.error)) f.push(`error: expected a message containing \`${e.error}\`\n- got: ${error}`);
    if ('error-kind' in e && e['error-kind'] !== kind) f.push(`error-kind: expected \`${e['error-kind']}\`, got \`${kind}\` (${error})`);
    return f;
  }
  if (wantsError) return [`expected an error, but the call succeeded: ${JSON.stringify(answer, (_, v) => (typeof v === 'bigint' ? `${v}` : v))}`];
  if (c.function === 'scale') return checkPlan(e, answer);
  if (c.function === 'place') return checkPlacements(e, c.offerings, answer);
  return [];
}

/** `runCase`, throwing an Error that lists every broken expectation (for node --test). */
export function check(PolicyClass, c) {
  const f = runCase(PolicyClass, c);
  if (f.length) throw new Error(`${c.id}:\n${f.join('\n')}`);
}

/** Every case of `paths`: `{ passed, failed, lines }`, like `policy test`. */
export function run(PolicyClass, ...paths) {
  let passed = 0, failed = 0;
  const lines = [];
  for (const c of cases(...paths)) {
    const f = runCase(PolicyClass, c);
    lines.push(`${f.length ? 'FAIL' : 'PASS'} ${c.file}: ${c.name}`, ...f.map((x) => `    ${x}`));
    if (f.length) failed++; else passed++;
  }
  return { passed, failed, lines };
}

const launched = (plan, t) => plan.launches.filter((l) => l.template === t).reduce((s, l) => s + l.count, 0);
const describePlan = (p) => `launches [${p.launches.map((l) => `${l.template}=${l.count}`).join(', ')}], removals [${p.removals.map((r) => r.instanceId).join(', ')}]`;

function checkPlan(e, plan) {
  const f = [];
  const got = describePlan(plan);
  for (const [key, ok, rel] of [['launch', (h, w) => h === w, ''], ['launch-at-least', (h, w) => h >= w, '>= '], ['launch-at-most', (h, w) => h <= w, '<= ']]) {
    for (const [t, want] of Object.entries(e[key] ?? {})) {
      const have = launched(plan, t);
      if (!ok(have, want)) f.push(`${key}.${t}: expected ${rel}${want}, got ${have}  (plan: ${got})`);
    }
  }
  if ('launch-total' in e) {
    const have = plan.launches.reduce((s, l) => s + l.count, 0);
    if (have !== e['launch-total']) f.push(`launch-total: expected ${e['launch-total']}, got ${have}  (plan: ${got})`);
  }
  const removed = new Set(plan.removals.map((r) => r.instanceId));
  if ('remove' in e) {
    const want = new Set(e.remove);
    const missing = [...want].filter((x) => !removed.has(x)).sort();
    const extra = [...removed].filter((x) => !want.has(x)).sort();
    if (missing.length || extra.length) f.push(`remove: expected exactly [${[...want].sort().join(', ')}]\n- missing: [${missing.join(', ')}]\n+ unexpected: [${extra.join(', ')}]`);
  }
  for (const id of e['remove-includes'] ?? []) if (!removed.has(id)) f.push(`remove-includes: \`${id}\` is not removed  (plan: ${got})`);
  for (const id of e['remove-excludes'] ?? []) if (removed.has(id)) f.push(`remove-excludes: \`${id}\` is removed  (plan: ${got})`);
  if ('remove-count' in e && plan.removals.length !== e['remove-count']) f.push(`remove-count: expected ${e['remove-count']}, got ${plan.removals.length}  (plan: ${got})`);
  if ('plan' in e) f.push(...checkExactPlan(e.plan, plan));
  return f;
}

function checkExactPlan(want, plan) {
  const diff = [];
  const haveL = [...plan.launches];
  for (const w of want.launches ?? []) {
    const i = haveL.findIndex((h) => h.template === w.template && h.count === w.count && (w.reason === undefined || w.reason === h.reason));
    if (i < 0) diff.push(`- launch ${w.template} x${w.count}${w.reason !== undefined ? ` (${w.reason})` : ''}`);
    else haveL.splice(i, 1);
  }
  diff.push(...haveL.map((h) => `+ launch ${h.template} x${h.count} (${h.reason})`));
  const haveR = [...plan.removals];
  for (const w of want.removals ?? []) {
    const i = haveR.findIndex((h) => h.instanceId === w['instance-id'] && (w.reason === undefined || w.reason === h.reason));
    if (i < 0) diff.push(`- remove ${w['instance-id']}${w.reason !== undefined ? ` (${w.reason})` : ''}`);
    else haveR.splice(i, 1);
  }
  diff.push(...haveR.map((h) => `+ remove ${h.instanceId} (${h.reason})`));
  return diff.length ? [`plan differs (- expected, + got):\n${diff.join('\n')}`] : [];
}

function checkPlacements(e, offerings, placements) {
  const f = [];
  const got = placements.map((p) => `#${p.offering} x${p.count}`).join(', ');
  const total = placements.reduce((s, p) => s + p.count, 0);
  const sumBy = (pred) => placements.filter((p) => p.offering < offerings.length && pred(offerings[p.offering])).reduce((s, p) => s + p.count, 0);
  for (const [key, ok, rel] of [['placed', (h, w) => h === w, ''], ['placed-at-least', (h, w) => h >= w, '>= '], ['placed-at-most', (h, w) => h <= w, '<= ']]) {
    if (key in e && !ok(total, e[key])) f.push(`${key}: expected ${rel}${e[key]}, got ${total}  (placements: [${got}])`);
  }
  for (const [key, attr] of [['per-zone', 'zone'], ['per-type', 'instanceType'], ['per-vswitch', 'vswitch']]) {
    for (const [k, want] of Object.entries(e[key] ?? {})) {
      const have = sumBy((o) => o[attr] === k);
      if (have !== want) f.push(`${key}.${k}: expected ${want}, got ${have}  (placements: [${got}])`);
    }
  }
  for (const [key, spot] of [['spot', true], ['on-demand', false]]) {
    if (key in e) {
      const have = sumBy((o) => o.spot === spot);
      if (have !== e[key]) f.push(`${key}: expected ${e[key]}, got ${have}  (placements: [${got}])`);
    }
  }
  if ('placements' in e) {
    const fmt = (v) => v.map(([o, c]) => `#${o} x${c}`).join(', ');
    const order = (a, b) => a[0] - b[0] || a[1] - b[1];
    const want = e.placements.map((p) => [p.offering, p.count]).sort(order);
    const have = placements.map((p) => [p.offering, p.count]).sort(order);
    if (fmt(want) !== fmt(have)) f.push(`placements differ:\n- expected: [${fmt(want)}]\n+ got:      [${fmt(have)}]`);
  }
  for (const i of e['unused-offerings'] ?? []) {
    if (placements.some((p) => p.offering === i && p.count > 0)) f.push(`unused-offerings: offering #${i} got nodes  (placements: [${got}])`);
  }
  return f;
}

/** Rules of the host a plan breaks (the host would reject or clamp it), as messages. */
export function scaleViolations(snap, plan) {
  const out = [];
  const names = new Set(snap.templates.map((t) => t.name));
  const seen = new Set();
  for (const l of plan.launches) {
    if (!names.has(l.template)) out.push(`launch for unknown template \`${l.template}\``);
    if (seen.has(l.template)) out.push(`template \`${l.template}\` launched more than once (one launch per template)`);
    seen.add(l.template);
  }
  const byId = new Map(snap.nodes.map((n) => [n.instanceId, n]));
  const removed = new Set();
  for (const r of plan.removals) {
    const n = byId.get(r.instanceId);
    if (!n) out.push(`removal of unknown node \`${r.instanceId}\``);
    else if (n.busyExecutors > 0) out.push(`removal of busy node \`${r.instanceId}\``);
    else if (isLeaving(n.state)) out.push(`removal of ${n.state} node \`${r.instanceId}\``);
    if (removed.has(r.instanceId)) out.push(`node \`${r.instanceId}\` removed twice`);
    removed.add(r.instanceId);
  }
  let total = snap.nodes.filter((n) => occupies(n.state)).length;
  for (const t of snap.templates) {
    const l = launched(plan, t.name);
    total += l;
    const mine = snap.nodes.filter((n) => n.template === t.name);
    const occupying = mine.filter((n) => occupies(n.state)).length;
    if (occupying + l > t.maxNodes) out.push(`template \`${t.name}\`: ${occupying} nodes + ${l} launched > max-nodes ${t.maxNodes}`);
    const live = mine.filter(isLive).length;
    const gone = mine.filter((n) => isLive(n) && removed.has(n.instanceId)).length;
    if (gone > 0 && live - gone + l < t.minNodes) out.push(`template \`${t.name}\`: removing ${gone} of ${live} live nodes (+${l} launched) goes below min-nodes ${t.minNodes}`);
  }
  if (total > snap.maxTotalNodes) out.push(`${total} nodes after launches > max-total-nodes ${snap.maxTotalNodes}`);
  return out;
}

/** Rules of the host a placement answer breaks, as messages. */
export function placeViolations(request, offerings, placements) {
  const out = [];
  const seen = new Set();
  const perVswitch = new Map();
  let total = 0;
  for (const p of placements) {
    if (seen.has(p.offering)) out.push(`offering ${p.offering} placed on more than once (one placement per offering)`);
    seen.add(p.offering);
    const o = offerings[p.offering];
    if (!Number.isInteger(p.offering) || !o) {
      out.push(`offering index ${p.offering} out of range (${offerings.length} offered)`);
      continue;
    }
    if (p.count === 0) out.push(`empty placement on offering ${p.offering}`);
    if (o.spot && request.template.spot === 'on-demand') out.push(`spot offering ${p.offering} for on-demand template`);
    if (!o.spot && request.template.spot === 'spot-only') out.push(`on-demand offering ${p.offering} for spot-only template`);
    const [used, free] = perVswitch.get(o.vswitch) ?? [0, o.freeIps];
    perVswitch.set(o.vswitch, [used + p.count, Math.min(free, o.freeIps)]);
    total += p.count;
  }
  for (const [vsw, [used, free]] of perVswitch) if (used > free) out.push(`${used} nodes in vswitch \`${vsw}\` with ${free} free IPs`);
  if (total > request.count) out.push(`${total} nodes placed, ${request.count} asked`);
  return out;
}
