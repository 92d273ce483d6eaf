// `exportPolicy(MyPolicy, hostLog)`: the object a policy's entry module exports as the
// component's `policy` interface (componentize-js maps `export const policy = {...}` to it).
//
//   import { log } from 'ecs-provisioner:policy/host@0.2.0';
//   import { exportPolicy } from 'ecs-policy-sdk/component';
//   import { MyPolicy } from './policy.js';
//   export const policy = exportPolicy(MyPolicy, log);
//
// The configured policy lives in this module between `configure` and `scale`/`place`: the
// host makes a fresh component instance per evaluation, so nothing outlives one. If
// `configure` failed, `scale` and `place` fail with its error rather than run on defaults.

import { PolicyError } from './errors.js';
import { setSink } from './log.js';

export function exportPolicy(PolicyClass, hostLog) {
  if (hostLog) setSink(hostLog);
  let policy = null;
  let rejected = null;

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
    try {
      guarded(() => p.configure(text));
    } catch (e) {
      policy = null;
      rejected = String(e);
      throw e;
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
    scale: (snapshot) => { const p = configured(); return guarded(() => p.scale(snapshot)); },
    place: (request, offerings, fleet) => { const p = configured(); return guarded(() => p.place(request, offerings, fleet)); },
  };
}
