// Settings errors, captured logs, the export glue, and a harness that fails when a policy
// is wrong.
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Policy, PolicyError, log, reads, settings } from '../src/index.js';
import { exportPolicy } from '../src/component.js';
import * as testing from '../src/testing.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

test('settings errors name the path', () => {
  const s = settings.parse('{"windows": [{"start": 8}], "n": true}');
  const [w] = s.tables('windows');
  assert.throws(() => w.str('start'), { message: 'setting `windows[0].start`: expected a string, got 8' });
  assert.throws(() => s.int('n'), { message: 'setting `n`: expected an integer, got true' });
  assert.throws(() => w.str('end'), { message: 'setting `windows[0]`: missing field `end`' });
  const typo = settings.parse('{"widnows": []}');
  typo.tables('windows', { default: [] });
  assert.throws(() => typo.done(), /unknown field `widnows`, expected one of `windows`/);
  assert.throws(() => settings.parse('[1]'), /^PolicyError: settings: expected an object/);
  assert.throws(() => settings.parse('{'), PolicyError);
  assert.equal(settings.parse('').int('x', { default: 3, min: 1 }), 3);
  assert.throws(() => settings.parse('{"m": {"a": -1}}').map('m', settings.integer({ min: 0 })),
    { message: 'setting `m.a`: must be at least 0, got -1' });
  assert.throws(() => settings.expectNone('{"x": 1}'), { message: 'unknown setting `x`: this policy takes no settings' });
});

test('native logs are captured in order', () => {
  log.takeCaptured();
  log.info('one');
  log.warn(`two ${2}`);
  assert.deepEqual(log.takeCaptured(), [['info', 'one'], ['warn', 'two 2']]);
  assert.deepEqual(log.takeCaptured(), []);
});

class LaunchesNothing extends Policy {
  configure() {}
  scale() { return { launches: [], removals: [] }; }
}

test('the harness reports a wrong policy', () => {
  const r = testing.run(LaunchesNothing, `${root}policies/default/fixtures/scale.toml`);
  assert.ok(r.failed > 0 && r.passed > 0, r.lines.join('\n'));
  assert.ok(r.lines.some((l) => l.includes('launch.linux: expected') || l.includes('plan differs')), r.lines.join('\n'));
});

test("the harness applies the host's rules", () => {
  class RemovesBusy extends Policy {
    scale() { return { launches: [], removals: [{ instanceId: 'i-1', reason: 'x' }] }; }
  }
  const c = { file: 'inline', name: 'busy', id: 'busy', settings: '{}', function: 'scale', expect: {},
    snapshot: testing.snapshot({ nodes: [{ 'busy-executors': 1 }] }) };
  assert.match(testing.runCase(RemovesBusy, c)[0], /removal of busy node `i-1`/);
});

test('bad fixtures are errors naming file and case', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fixtures-'));
  writeFileSync(join(dir, 'bad.toml'), '[[case]]\nname = "typo"\nsnapshot.nodse = []\n');
  assert.throws(() => testing.cases(join(dir, 'bad.toml')), /bad\.toml: case 1 \(`typo`\): unknown field `nodse`/);
  assert.throws(() => testing.cases(join(dir, 'missing.toml')), /missing\.toml: ENOENT/);
  mkdirSync(join(dir, 'empty'));
  assert.throws(() => testing.cases(join(dir, 'empty')), /no fixture files/);
});

test('the export keeps the configured policy and its failure', () => {
  class Strict extends Policy {
    configure(text) { this.n = settings.parse(text).int('n'); }
    scale() { throw new PolicyError(`configured with ${this.n}`); }
  }
  const exported = exportPolicy(Strict);
  const snap = testing.snapshot();
  assert.throws(() => exported.scale(snap), (e) => e === 'settings: missing field `n`');
  exported.configure('{"n": 7}');
  assert.throws(() => exported.scale(snap), (e) => e === 'configured with 7');
  assert.throws(() => exported.configure('{"n": "x"}'), (e) => typeof e === 'string');
  assert.throws(() => exported.scale(snap), (e) => e.startsWith("the policy's settings were rejected: setting `n`"));
});

test('parts not declared are not sent and fail loudly', () => {
  class Pricey extends Policy {
    scale(snapshot) {
      return { launches: [], removals: [], n: snapshot.offerings.length };
    }
  }
  const declared = [];
  const exported = exportPolicy(Pricey, { log: () => {}, declareReads: (f) => declared.push(f) });
  exported.configure('{}');
  assert.deepEqual(declared, [{ nodes: true, queuedItems: false, offerings: false }]);
  const fresh = () => testing.snapshot({ offerings: [{}], demand: [{ queued: 2 }] });
  assert.throws(() => exported.scale(fresh()),
    (e) => e === "snapshot.offerings was not sent: add 'offerings' to the policy's `reads` to receive it");
  // The harness sends what the host would: counts without items, declared parts whole.
  const snap = fresh();
  const t = reads.trimmed(snap, new Set(['nodes', 'offerings']));
  assert.equal(t.offerings.length, 1);
  assert.equal(t.demand[0].queued, 2);
  assert.throws(() => t.demand[0].items.length, /demand.items was not sent/);
  assert.equal(snap.demand[0].items.length, 2, 'the original snapshot is left whole');
  assert.throws(() => reads.checked(['offering']), { message: /unknown part `offering`; the parts are nodes/ });
  // Given only `log`, nothing is declared and the whole snapshot arrives.
  const old = exportPolicy(Pricey, () => {});
  old.configure('{}');
  assert.equal(old.scale(fresh()).n, 1);
});
