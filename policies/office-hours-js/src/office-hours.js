// An office-hours ecs-provisioner policy in JavaScript: a warm pool only inside configured
// time windows. The twin of policies/office-hours (Rust); both pass the same fixture files.
//
// Inside a window each template keeps at least that window's `warm-nodes` (or its own
// `min-nodes`, whichever is larger). Outside every window only `min-nodes` holds. Demand is
// always served as by the default policy. Time comes only from the snapshot's `now-ms`.
//
// Settings: `timezone-offset-minutes` (0, -720..=840), `warm-up-minutes` (0, at most 1440),
// `cooldown-secs` (300), `windows` = [{ days (every day), start, end ("HH:MM"; end before
// start spans midnight), warm-nodes = { template: n } }]. Overlapping windows take the
// largest warm pool per template.

import { Policy, PolicyError, defaults, log, settings, templateOf } from 'ecs-policy-sdk';
import { DAYS, localAt, parseTimeOfDay, previousDay } from './clock.js';

const time = (v, path) => {
  const t = parseTimeOfDay(settings.string(v, path));
  if (t === null) settings.fail(path, `expected a time as "HH:MM" (00:00 to 24:00), got ${JSON.stringify(v)}`);
  return t;
};

function parseWindow(w, i) {
  const days = w.list('days', settings.oneOf(DAYS), { default: [...DAYS] });
  const window = { days, start: w.get('start', time), end: w.get('end', time), warmNodes: w.map('warm-nodes', settings.integer({ min: 0 })) };
  w.done();
  if (window.start === window.end) throw new PolicyError(`setting \`windows[${i}]\`: start and end are both ${w.value.start}`);
  if (days.length === 0) throw new PolicyError(`setting \`windows[${i}].days\`: empty (leave it out for every day)`);
  return window;
}

/** Whether `window` is open at the local moment `at`. */
export function isOpen(window, at) {
  const { start, end, days } = window;
  if (start < end) return days.includes(at.day) && at.minute >= start && at.minute < end;
  // Overnight: opened today, or opened yesterday and not yet closed.
  return (days.includes(at.day) && at.minute >= start) || (days.includes(previousDay(at.day)) && at.minute < end);
}

/** The office-hours policy. */
export class OfficeHours extends Policy {
  configure(text) {
    const s = settings.parse(text);
    this.offset = s.int('timezone-offset-minutes', { default: 0, min: -720, max: 840 });
    this.warmUp = s.int('warm-up-minutes', { default: 0, min: 0, max: 1440 });
    this.cooldownSecs = s.int('cooldown-secs', { default: 300, min: 0 });
    this.windows = s.tables('windows', { default: [] }).map(parseWindow);
    s.done();
  }

  /** The warm pool per template at `nowMs`: the largest `warm-nodes` of the windows open
   * then (or opening within `warm-up-minutes`). */
  warmNodes(nowMs) {
    const now = localAt(nowMs, this.offset);
    const soon = localAt(BigInt(nowMs) + BigInt(this.warmUp) * 60000n, this.offset);
    const warm = {};
    for (const w of this.windows.filter((w) => isOpen(w, now) || isOpen(w, soon))) {
      for (const [t, n] of Object.entries(w.warmNodes)) warm[t] = Math.max(n, warm[t] ?? 0);
    }
    return warm;
  }

  scale(snapshot) {
    const warmNodes = this.warmNodes(snapshot.nowMs);
    for (const name of Object.keys(warmNodes)) {
      if (!templateOf(snapshot, name)) log.warn(`warm-nodes names unknown template \`${name}\``);
    }
    return defaults.scale(snapshot, { warmNodes });
  }

  place(request, offerings, fleet) {
    return defaults.place(request, offerings, fleet, { cooldownMs: this.cooldownSecs * 1000 });
  }
}
