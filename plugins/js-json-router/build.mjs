// Builds listener.js into a component with componentize-js's JS API (its CLI mishandles paths).
// Usage: node build.mjs <wit-dir> <out.wasm> [<listener.js>]   (run from a directory that holds
// the source and everything it imports, e.g. the repository root for the SDK in guest-sdk/js:
// componentize-js maps the working directory into the build)
// (the source defaults to this directory's listener.js; plugins without a package.json of their
// own, such as js-hostile, are built with this toolchain and their own source)
//
// Every optional engine feature is disabled, so the component imports only the rmq:listener
// interfaces and no WASI at all ("pure component"): no console output, no timers, no fetch,
// deterministic Math.random. An uncaught exception traps instead of being printed.
import { writeFile, rename } from 'node:fs/promises';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const [witPath, outPath, sourceArg] = process.argv.slice(2).map((p) => resolve(p));
if (!witPath || !outPath) {
  console.error('usage: node build.mjs <wit-dir> <out.wasm>');
  process.exit(2);
}

const { component } = await componentize({
  sourcePath: sourceArg ?? resolve(here, 'listener.js'),
  witPath,
  worldName: 'listener',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(`${outPath}.tmp`, component);
await rename(`${outPath}.tmp`, outPath);
