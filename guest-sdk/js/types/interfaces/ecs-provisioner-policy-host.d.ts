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
   * Declare which optional parts of the snapshot the policy reads; call it in `configure`.
   * The host then sends the parts left out as empty lists, which saves the work of turning
   * thousands of records into the guest language's objects (most of the cost of a Python or
   * JavaScript `scale`). A policy that never calls it receives everything. The last call in
   * an evaluation wins; a call after `configure` changes nothing for that evaluation.
   * `place` always receives its offerings and fleet.
   */
  export function declareReads(parts: SnapshotParts): void;
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
  /**
   * Parts of the `scale` snapshot a policy may choose not to receive (see `declare-reads`).
   */
  export interface SnapshotParts {
    /**
     * `snapshot.nodes`.
     */
    nodes?: boolean,
    /**
     * The `items` of each `demand` (its `queued` and `oldest-wait-ms` are always sent).
     */
    queuedItems?: boolean,
    /**
     * `snapshot.offerings`.
     */
    offerings?: boolean,
  }
}
