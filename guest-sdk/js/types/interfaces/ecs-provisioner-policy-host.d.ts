declare module 'ecs-provisioner:policy/host@0.2.0' {
  /**
   * Write one line into the host's log, tagged with the policy's name. The host escapes
   * control characters (CR, LF, ESC and every other character below 0x20, DEL, C1, U+2028
   * and U+2029), keeps at most about 1 KiB of a message (cut with `…[truncated]`), writes at
   * most 50 lines per call and at most `[policy] log-lines-per-minute` lines per minute
   * across calls, and counts the lines it drops. Logging never fails, except that a message
   * over 1 MiB makes the call fail as `answer-too-large`.
   */
  export function log(level: Level, message: string): void;
  /**
   * Severity of a log line.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * Written at the host's `trace` level.
   * ## `"debug"`
   * 
   * Written at the host's `debug` level.
   * ## `"info"`
   * 
   * Written at the host's `info` level.
   * ## `"warn"`
   * 
   * Written at the host's `warn` level.
   * ## `"error"`
   * 
   * Written at the host's `error` level.
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
