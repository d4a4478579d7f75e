// A plugin in JavaScript (interface v2), built by jco componentize (scripts/build-plugins.sh).
//
// FizzBuzz over a range: multiples of `fizz` and `buzz` become the records "Fizz", "Buzz" or
// "FizzBuzz"; other items are output as numbers. Items with data (lines) are echoed as records
// in upper case. Configuration (optional): {"fizz": 3, "buzz": 5}.

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

function one(item) {
  if (item.data !== undefined) {
    const line = decoder.decode(item.data);
    return { tag: "ok", val: { tag: "record", val: encoder.encode(line.toUpperCase()) } };
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
