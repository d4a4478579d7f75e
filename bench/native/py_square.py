"""py_square's record path run by CPython outside the sandbox: the plugin's own code
(plugins/python/py_square/app.py, its `records` export, which the worker calls for data
batches) imported with stand-ins for the modules componentize-py generates, over the lines of
a file in blocks of 4,096 as the worker hands them. Prints the nanoseconds per record of the
calls alone."""

import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

BLOCK = 4096


def stand_ins():
    """The generated modules app.py imports, reduced to what it uses."""

    class Err(Exception):
        def __init__(self, value):
            self.value = value

    @dataclass
    class Ok:
        value: object

    @dataclass
    class Output:
        value: object

    @dataclass
    class RecordBlock:
        indexes: list
        data: bytes
        ends: list

    @dataclass
    class RecordColumns:
        kinds: bytes
        numbers: list
        data: bytes
        ends: list
        errors: list

    modules = {
        "componentize_py_types": {"Ok": Ok, "Err": Err},
        "wit_world": {},
        "wit_world.exports": {"Compute": object, "Records": object},
        "wit_world.exports.compute": {"Output_Number": Output, "Output_Record": Output},
        "wit_world.exports.records": {"RecordColumns": RecordColumns},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    sys.modules["wit_world"].exports = sys.modules["wit_world.exports"]
    return RecordBlock


RecordBlock = stand_ins()
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins/python/py_square"))
import app  # noqa: E402

lines = open(sys.argv[1], "rb").read().splitlines()
blocks = []
for first in range(0, len(lines), BLOCK):
    chunk = lines[first : first + BLOCK]
    ends, end = [], 0
    for line in chunk:
        end += len(line)
        ends.append(end)
    blocks.append(RecordBlock(list(range(first + 1, first + len(chunk) + 1)), b"".join(chunk), ends))
records = app.Records()
started = time.perf_counter()
outputs = [records.process_records(block) for block in blocks]
elapsed = time.perf_counter() - started
assert sum(len(o.ends) for o in outputs) == len(lines), "every record is output"
print(f"{elapsed / len(lines) * 1e9:.0f}")
