// Builds a gateway plugin written in JavaScript into a WebAssembly component of the gateway:plugin world.
//
//   node build.mjs <plugin.js> <out.wasm>
//
// componentize-js embeds the StarlingMonkey engine (SpiderMonkey) and pre-initialises it with the plugin's source.
// Every optional feature is disabled, so the component imports the plugin world and only the few WASI interfaces
// the engine itself needs (the gateway host serves those from deny-all stubs; see docs/src/guide/plugins.md).
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { componentize } from '@bytecodealliance/componentize-js';

const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error('usage: node build.mjs <plugin.js> <out.wasm>');
  process.exit(2);
}
const witPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'wit');
const { component } = await componentize({
  sourcePath: source,
  witPath,
  worldName: 'plugin',
  // No stdio, random, clocks or HTTP: a plugin has the world's log and clock instead.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`${out}: ${component.byteLength} bytes`);
