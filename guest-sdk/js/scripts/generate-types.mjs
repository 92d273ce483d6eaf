// Writes the contract's TypeScript types (types/policy.d.ts, types/interfaces/*.d.ts) from
// wit/policy.wit with jco's guest type generator, pinned by scripts/setup-test-deps.sh.
//
//   node guest-sdk/js/scripts/generate-types.mjs [OUT_DIR]   (default: guest-sdk/js/types)
//
// It passes the WIT as text because `jco guest-types <path>` 1.35.0 cannot open WIT files on
// Node 20 (its WASI filesystem shim reports every path missing).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const modules = process.env.ECSP_NODE_MODULES;
if (!modules) {
  console.error('ECSP_NODE_MODULES is not set: run scripts/setup-test-deps.sh (it installs jco) and export what it prints');
  process.exit(2);
}
const bindgen = await import(pathToFileURL(join(modules, '@bytecodealliance/jco-transpile/vendor/js-component-bindgen-component.js')));
await bindgen.$init;
const wit = readFileSync(join(here, '..', '..', '..', 'wit', 'policy.wit'), 'utf8');
const files = bindgen.generateTypes('policy', {
  wit: { tag: 'source', val: wit },
  world: 'policy-module',
  guest: true,
  features: { tag: 'list', val: [] },
});
const out = process.argv[2] ?? join(here, '..', 'types');
for (const [name, bytes] of files) {
  mkdirSync(dirname(join(out, name)), { recursive: true });
  writeFileSync(join(out, name), bytes);
}
