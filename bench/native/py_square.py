"""py_square's record path (plugins/python/py_square/app.py), run by CPython outside the sandbox
over the lines of a file: prints the nanoseconds per record of the loop alone."""

import json
import sys
import time

lines = open(sys.argv[1], "rb").read().splitlines()
outputs = []
started = time.perf_counter()
for line in lines:
    record = json.loads(line)
    record["square"] = record["n"] ** 2
    outputs.append(json.dumps(record, separators=(",", ":")).encode())
elapsed = time.perf_counter() - started
print(f"{elapsed / len(lines) * 1e9:.0f}")
