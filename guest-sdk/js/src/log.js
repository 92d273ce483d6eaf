// Log lines into the host's log, tagged with the policy's name. In a component the entry
// module hands the host's `log` import to `setSink` (src/component.js does); natively lines
// are kept for `takeCaptured()`, so tests can assert on what a policy logged.

let sink = null;
const captured = [];

/** Route lines to the host's `log(level, message)` import (component builds only). */
export function setSink(hostLog) {
  sink = hostLog;
}

/** Log one line at `level` (`trace`, `debug`, `info`, `warn`, `error`). */
export function write(level, message) {
  if (sink) sink(level, String(message));
  else captured.push([level, String(message)]);
}

export const trace = (m) => write('trace', m);
export const debug = (m) => write('debug', m);
export const info = (m) => write('info', m);
export const warn = (m) => write('warn', m);
export const error = (m) => write('error', m);

/** Native runs: the lines logged since the last call, oldest first, as `[level, message]`. */
export function takeCaptured() {
  return captured.splice(0, captured.length);
}
