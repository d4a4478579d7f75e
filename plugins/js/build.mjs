// Builds a JavaScript plugin into a component with componentize-js (the engine behind
// `jco componentize`; called through its API because the jco 1.35 CLI cannot read WIT paths
// here: "failed to get path metadata").
//   node plugins/js/build.mjs <plugin.js> <wit dir> <out.wasm>
// World `plugin` (`compute`), or `plugin-with-record-blocks` when the plugin also exports
// `records`.
import { readFile, writeFile, rename } from "node:fs/promises";
import { resolve } from "node:path";
import { componentize } from "@bytecodealliance/componentize-js";

const [source, wit, out] = process.argv.slice(2);
if (!out) {
  console.error("usage: node build.mjs <plugin.js> <wit dir> <out.wasm>");
  process.exit(2);
}
// A plugin that exports `records` too is built with it.
const exportsRecords = /^export const records\b/m.test(await readFile(source, "utf8"));
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit),
  worldName: exportsRecords ? "plugin-with-record-blocks" : "plugin",
  // No HTTP server or fetch handler: a plugin only exports `compute` (and `records`).
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
