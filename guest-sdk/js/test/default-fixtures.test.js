// The JavaScript defaults decide exactly as the Rust SDK's: the `default` policy's fixture
// files (exact plans and reasons) pass against the same policy written with this SDK.
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Policy, defaults, settings } from '../src/index.js';
import * as testing from '../src/testing.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

class DefaultPolicy extends Policy {
  configure(text) {
    const s = settings.parse(text);
    this.cooldownSecs = s.int('cooldown-secs', { default: 300, min: 0 });
    s.done();
  }

  place(request, offerings, fleet) {
    return defaults.place(request, offerings, fleet, { cooldownMs: this.cooldownSecs * 1000 });
  }
}

for (const c of testing.cases(`${root}policies/default/fixtures`)) {
  test(c.id, () => testing.check(DefaultPolicy, c));
}
