import * as defaults from './defaults.js';
import { expectNone } from './settings.js';

/**
 * A placement and scaling policy. `class MyPolicy extends Policy {}` already behaves like the
 * built-in default. Override what you want to change and call `defaults` from your override
 * to adjust rather than rewrite. The host makes a fresh instance for every evaluation:
 * `configure(settings)`, then exactly one of `scale` or `place`; keep what `configure` parsed
 * on `this`. Throw a `PolicyError` to fail a call with a message.
 */
export class Policy {
  /** The optional parts of the snapshot `scale` reads: any of 'nodes', 'queued-items' and
   * 'offerings' (see reads.js). The host sends only these; a part left out throws when used.
   * The default `scale` needs only the nodes. May be set in `configure`. */
  reads = ['nodes'];

  /** Validate and keep the settings (JSON text). Default: accept no settings. */
  configure(settingsJson) {
    expectNone(settingsJson);
  }

  /** Launches and removals. Default: `defaults.scale`. */
  scale(snapshot) {
    return defaults.scale(snapshot);
  }

  /** Placements over `offerings`. Default: `defaults.place` (5-minute cooldown). */
  place(request, offerings, fleet) {
    return defaults.place(request, offerings, fleet);
  }
}
