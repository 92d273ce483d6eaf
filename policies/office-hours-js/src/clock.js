// Local wall-clock arithmetic from `now-ms`, without a time zone database: a fixed UTC offset
// is all a policy needs, and it keeps the policy a pure function of its input.

/** Days of the week, Monday first. */
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/** The day before `day`. */
export const previousDay = (day) => DAYS[(DAYS.indexOf(day) + 6) % 7];

/** Minutes since local midnight from "HH:MM" ("24:00" is the end of the day); null if bad. */
export function parseTimeOfDay(text) {
  const m = /^(\d\d):(\d\d)$/.exec(text);
  if (!m) return null;
  const [h, min] = [Number(m[1]), Number(m[2])];
  if (min > 59 || h > 24 || (h === 24 && min > 0)) return null;
  return h * 60 + min;
}

const mod = (a, b) => ((a % b) + b) % b;

/** `nowMs` (Unix epoch, BigInt or number) shifted by `offsetMinutes` east of UTC:
 * `{ day, minute }`. */
export function localAt(nowMs, offsetMinutes) {
  const minutes = Number(BigInt(nowMs) / 60000n) + offsetMinutes;
  const days = Math.floor(minutes / (24 * 60));
  // 1970-01-01 was a Thursday (index 3 from Monday).
  return { day: DAYS[mod(days + 3, 7)], minute: mod(minutes, 24 * 60) };
}
