// js_fizzbuzz's record path run by Node outside the sandbox: the plugin's own module
// (plugins/js/js_fizzbuzz/plugin.js, its `records` export, which the worker calls for data
// batches) over the lines of a file, in blocks of 4,096 as the worker hands them. Prints the
// nanoseconds per record of the calls alone.
import { readFileSync } from "node:fs";
import { records } from "../../plugins/js/js_fizzbuzz/plugin.js";

const BLOCK = 4096;
const text = readFileSync(process.argv[2]);
const lines = [];
let start = 0;
for (let i = 0; i < text.length; i++) {
  if (text[i] === 10) {
    lines.push(text.subarray(start, i));
    start = i + 1;
  }
}
const blocks = [];
for (let first = 0; first < lines.length; first += BLOCK) {
  const chunk = lines.slice(first, first + BLOCK);
  const data = new Uint8Array(chunk.reduce((n, line) => n + line.length, 0));
  const ends = new Uint32Array(chunk.length);
  let end = 0;
  chunk.forEach((line, i) => {
    data.set(line, end);
    end += line.length;
    ends[i] = end;
  });
  const indexes = BigUint64Array.from(chunk, (_, i) => BigInt(first + i + 1));
  blocks.push({ indexes, data, ends });
}
const started = process.hrtime.bigint();
const outputs = blocks.map((block) => records.processRecords(block));
const elapsed = process.hrtime.bigint() - started;
const count = outputs.reduce((n, columns) => n + columns.ends.length, 0);
if (count !== lines.length) throw new Error("every record is output");
console.log((Number(elapsed) / count).toFixed(0));
