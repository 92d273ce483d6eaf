// office-hours in JavaScript, natively: its unit tests and the Rust twin's fixture files.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { log } from 'ecs-policy-sdk';
import * as testing from 'ecs-policy-sdk/testing';
import { localAt, parseTimeOfDay } from '../src/clock.js';
import { OfficeHours } from '../src/office-hours.js';

const fixtures = fileURLToPath(new URL('../fixtures', import.meta.url));
for (const c of testing.cases(fixtures)) test(c.id, () => testing.check(OfficeHours, c));

const MONDAY = 1_795_392_000_000; // 2026-11-23 00:00 UTC, a Monday
const HOUR = 3_600_000;
const MIN = 60_000;
const SETTINGS = JSON.stringify({
  'timezone-offset-minutes': 480,
  'warm-up-minutes': 15,
  windows: [
    { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '19:00', 'warm-nodes': { linux: 2 } },
    { days: ['fri'], start: '22:00', end: '02:00', 'warm-nodes': { linux: 1, gpu: 1 } },
  ],
});

function warmLaunches(localMs, min = 0) {
  const p = new OfficeHours();
  p.configure(SETTINGS);
  const snap = testing.snapshot({ 'now-ms': MONDAY + localMs - 8 * HOUR, templates: [{ name: 'linux', 'min-nodes': min }] });
  const plan = p.scale(snap);
  assert.deepEqual(testing.scaleViolations(snap, plan), []);
  return plan.launches.filter((l) => l.template === 'linux').reduce((s, l) => s + l.count, 0);
}

test('warm pool inside windows only', () => {
  assert.equal(warmLaunches(9 * HOUR), 2, 'Monday 09:00');
  assert.equal(warmLaunches(7 * HOUR + 50 * MIN), 2, 'Monday 07:50, within warm-up');
  assert.equal(warmLaunches(7 * HOUR + 40 * MIN), 0, 'Monday 07:40');
  assert.equal(warmLaunches(19 * HOUR), 0, 'Monday 19:00, closed');
  assert.equal(warmLaunches(5 * 24 * HOUR + 10 * HOUR), 0, 'Saturday 10:00');
  assert.equal(warmLaunches(5 * 24 * HOUR + HOUR), 1, 'Saturday 01:00, Friday night');
  assert.equal(warmLaunches(24 * HOUR + HOUR), 0, 'Tuesday 01:00: no Monday night window');
  assert.equal(warmLaunches(5 * 24 * HOUR + 10 * HOUR, 1), 1, 'min-nodes holds outside windows');
});

test('unknown templates in warm-nodes are logged', () => {
  log.takeCaptured();
  warmLaunches(5 * 24 * HOUR + HOUR);
  assert.deepEqual(log.takeCaptured(), [['warn', 'warm-nodes names unknown template `gpu`']]);
});

test('clock arithmetic', () => {
  assert.deepEqual(localAt(0n, 0), { day: 'thu', minute: 0 });
  assert.deepEqual(localAt(BigInt(MONDAY + HOUR), 480), { day: 'mon', minute: 9 * 60 });
  assert.deepEqual(localAt(BigInt(MONDAY + MIN), -300), { day: 'sun', minute: 19 * 60 + 1 });
  assert.equal(parseTimeOfDay('08:30'), 510);
  assert.equal(parseTimeOfDay('24:00'), 1440);
  for (const bad of ['8:30', '24:01', '12:60', 'noon', '12-00']) assert.equal(parseTimeOfDay(bad), null, bad);
});
