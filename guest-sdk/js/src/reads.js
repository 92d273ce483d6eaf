// Which optional parts of the `scale` snapshot a policy reads (`Policy#reads`).
//
// Turning records into JavaScript objects is most of what a JavaScript `scale` costs, so the
// host sends only the parts a policy declares (`declareReads`, called after `configure`). A
// part left out arrives as a marker that throws when used, instead of an empty list that
// would silently look like "no nodes" or "no offerings".

import { PolicyError } from './errors.js';

/** The optional parts, by their WIT names. */
export const PARTS = ['nodes', 'queued-items', 'offerings'];

/** The declared parts as a Set, or a PolicyError naming an unknown one. */
export function checked(reads) {
  const parts = new Set(typeof reads === 'string' ? [reads] : reads);
  for (const p of parts) {
    if (!PARTS.includes(p)) throw new PolicyError(`\`reads\`: unknown part \`${p}\`; the parts are ${PARTS.join(', ')}`);
  }
  return parts;
}

/** The WIT `snapshot-parts` flags for a set of part names. */
export const flags = (parts) => ({
  nodes: parts.has('nodes'),
  queuedItems: parts.has('queued-items'),
  offerings: parts.has('offerings'),
});

/** Stands for a part of the snapshot the policy did not declare: any use throws. */
export function notSent(what, part) {
  const refuse = () => {
    throw new PolicyError(`${what} was not sent: add '${part}' to the policy's \`reads\` to receive it`);
  };
  return new Proxy([], { get: refuse, has: refuse, ownKeys: refuse });
}

/** Replaces, in place, the parts not in `parts` with markers; returns the snapshot. */
export function mark(snapshot, parts) {
  if (!parts.has('nodes')) snapshot.nodes = notSent('snapshot.nodes', 'nodes');
  if (!parts.has('offerings')) snapshot.offerings = notSent('snapshot.offerings', 'offerings');
  if (!parts.has('queued-items')) {
    for (const d of snapshot.demand) d.items = notSent('demand.items', 'queued-items');
  }
  return snapshot;
}

/** A copy of `snapshot` as the host sends it to a policy that reads `parts` (the test
 * harness uses it, so unit tests see what the component will see). */
export const trimmed = (snapshot, parts) =>
  mark({ ...snapshot, demand: snapshot.demand.map((d) => ({ ...d })) }, parts);
