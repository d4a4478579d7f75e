// A plugin in JavaScript (interface v2), built by jco componentize (scripts/build-plugins.sh).
//
// FizzBuzz over a range: multiples of `fizz` and `buzz` become the records "Fizz", "Buzz" or
// "FizzBuzz"; other items are output as numbers. Items with data (lines) are echoed as records
// in upper case. Configuration (optional): {"fizz": 3, "buzz": 5}.
//
// Lines come through both exports the worker may call, `compute.process` (items one by one)
// and `records.processRecords` (a block in one buffer, outputs in columns), which the worker
// uses for data batches: both run the same `upperCase`.

let fizz = 3n;
let buzz = 5n;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function configure(config) {
  if (config === undefined) return;
  let settings;
  try {
    settings = JSON.parse(config);
  } catch (e) {
    throw `bad js_fizzbuzz configuration: ${e.message}`;
  }
  for (const [key, value] of Object.entries(settings)) {
    if (!["fizz", "buzz"].includes(key) || !Number.isInteger(value) || value < 1) {
      throw `js_fizzbuzz takes {"fizz": n, "buzz": m} with whole numbers >= 1 (got ${key})`;
    }
  }
  fizz = BigInt(settings.fizz ?? 3);
  buzz = BigInt(settings.buzz ?? 5);
  console.log(`js_fizzbuzz configured: fizz ${fizz}, buzz ${buzz}`);
}

// A line's bytes in upper case.
function upperCase(bytes) {
  return encoder.encode(decoder.decode(bytes).toUpperCase());
}

function one(item) {
  if (item.data !== undefined) {
    return { tag: "ok", val: { tag: "record", val: upperCase(item.data) } };
  }
  const n = item.index;
  const word = (n % fizz === 0n ? "Fizz" : "") + (n % buzz === 0n ? "Buzz" : "");
  if (word === "") return { tag: "ok", val: { tag: "number", val: n } };
  return { tag: "ok", val: { tag: "record", val: encoder.encode(word) } };
}

export const compute = {
  configure,
  process(items) {
    return items.map(one);
  },
};

// `records` kinds (plugins/wit/v2/plugin.wit).
const RECORD = 1;

export const records = {
  processRecords({ data, ends }) {
    const kinds = new Uint8Array(ends.length).fill(RECORD);
    const outEnds = new Uint32Array(ends.length);
    let out = new Uint8Array(data.length + 64);
    let length = 0;
    let start = 0;
    for (let i = 0; i < ends.length; i++) {
      const upper = upperCase(data.subarray(start, ends[i]));
      if (length + upper.length > out.length) {
        // Upper case may be longer than the line (ß is SS).
        const grown = new Uint8Array(2 * (length + upper.length));
        grown.set(out.subarray(0, length));
        out = grown;
      }
      out.set(upper, length);
      length += upper.length;
      outEnds[i] = length;
      start = ends[i];
    }
    const numbers = new BigUint64Array(0);
    return { kinds, numbers, data: out.subarray(0, length), ends: outEnds, errors: [] };
  },
};
