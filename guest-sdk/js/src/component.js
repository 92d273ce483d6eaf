// `exportPolicy(MyPolicy, { log, declareReads })`: the object a policy's entry module exports as the
// component's `policy` interface (componentize-js maps `export const policy = {...}` to it).
//
//   import { log, declareReads } from 'ecs-provisioner:policy/host@0.2.0';
//   import { exportPolicy } from 'ecs-policy-sdk/component';
//   import { MyPolicy } from './policy.js';
//   export const policy = exportPolicy(MyPolicy, { log, declareReads });
//
// Given only `log` (the older form), the policy receives the whole snapshot.
//
// The configured policy lives in this module between `configure` and `scale`/`place`: the
// host makes a fresh component instance per evaluation, so nothing outlives one. If
// `configure` failed, `scale` and `place` fail with its error rather than run on defaults.

import { PolicyError } from './errors.js';
import { setSink } from './log.js';
import * as reads from './reads.js';

export function exportPolicy(PolicyClass, host) {
  const { log: hostLog, declareReads } = typeof host === 'function' ? { log: host } : (host ?? {});
  if (hostLog) setSink(hostLog);
  let policy = null;
  let rejected = null;
  // Without `declareReads` the host sends everything, so nothing is marked as not sent.
  let sent = new Set(reads.PARTS);

  // componentize-js turns a thrown value into the `err` of the WIT result: throw the text.
  const guarded = (call) => {
    try {
      return call();
    } catch (e) {
      if (e instanceof PolicyError) throw e.message;
      throw e;
    }
  };
  const configure = (text) => {
    const p = new PolicyClass();
    let parts;
    try {
      parts = guarded(() => {
        p.configure(text);
        return reads.checked(p.reads);
      });
    } catch (e) {
      policy = null;
      rejected = String(e);
      throw e;
    }
    // Only the declared parts are sent: lifting records into objects is the cost.
    if (declareReads && parts.size < reads.PARTS.length) {
      declareReads(reads.flags(parts));
      sent = parts;
    }
    policy = p;
    rejected = null;
  };
  const configured = () => {
    if (!policy && rejected === null) configure('{}');
    if (rejected !== null) throw `the policy's settings were rejected: ${rejected}`;
    return policy;
  };
  return {
    configure,
    scale: (snapshot) => { const p = configured(); return guarded(() => p.scale(reads.mark(snapshot, sent))); },
    place: (request, offerings, fleet) => { const p = configured(); return guarded(() => p.place(request, offerings, fleet)); },
  };
}
