// js_fizzbuzz's record path (plugins/js/js_fizzbuzz/plugin.js), run by Node outside the sandbox
// over the lines of a file, each as the bytes the plugin gets: prints the nanoseconds per record
// of the loop alone.
import { readFileSync } from "node:fs";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = readFileSync(process.argv[2]);
const items = [];
let start = 0;
for (let i = 0; i < text.length; i++) {
  if (text[i] === 10) {
    items.push({ index: BigInt(items.length + 1), data: text.subarray(start, i) });
    start = i + 1;
  }
}
function one(item) {
  const line = decoder.decode(item.data);
  return { tag: "ok", val: { tag: "record", val: encoder.encode(line.toUpperCase()) } };
}
const started = process.hrtime.bigint();
const outputs = items.map(one);
const elapsed = process.hrtime.bigint() - started;
console.log((Number(elapsed) / outputs.length).toFixed(0));
