"""A plugin in Python (interface v2), built by componentize-py (scripts/build-plugins.sh).

Range items (numbers): outputs (n + offset)^2, refusing results over 2^64-1 as square_number
does. Record items (JSON Lines objects with a whole-number field "n"): outputs the record with
a "square" field added. Configuration (optional): {"offset": k}.

Records come through both exports the worker may call, `compute.process` (items one by one)
and `records.process-records` (a block in one buffer, outputs in columns), which the worker
uses for data batches: both run the same `square_record`.
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.compute import Output_Number, Output_Record
from wit_world.exports.records import RecordColumns

U64_MAX = 2**64 - 1
# Built once: `json.dumps` with separators builds an encoder per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode
# `records` kinds (plugins/wit/v2/plugin.wit).
_RECORD, _ERROR = 1, 3


class Refused(Exception):
    """A record the plugin refuses, with why."""


def square_record(data, offset):
    """The output record for one JSON record's bytes, or Refused."""
    try:
        record = json.loads(data)
        n = record["n"]
        record["square"] = (n + offset) ** 2
        # Inside: a square of over 4,300 digits cannot be written (CPython's limit).
        return _encode(record).encode()
    except (ValueError, KeyError, TypeError) as e:
        raise Refused(f"not a JSON object with a field n: {e!r}")


class Compute(exports.Compute):
    offset = 0

    def configure(self, config):
        if config is None:
            return
        try:
            settings = json.loads(config)
            offset = settings.pop("offset", 0)
        except (ValueError, AttributeError) as e:
            raise Err(f"bad py_square configuration: {e}")
        if settings or not isinstance(offset, int) or offset < 0:
            raise Err('py_square takes {"offset": <a whole number >= 0>} only')
        Compute.offset = offset
        print(f"py_square configured with offset {offset}")

    def process(self, items):
        return [self.one(item) for item in items]

    def one(self, item):
        if item.data is None:
            square = (item.index + self.offset) ** 2
            if square > U64_MAX:
                return Err(f"{item.index} + {self.offset} squared overflows u64")
            return Ok(Output_Number(square))
        try:
            return Ok(Output_Record(square_record(item.data, self.offset)))
        except Refused as e:
            return Err(str(e))


class Records(exports.Records):
    def process_records(self, block):
        data, offset = block.data, Compute.offset
        kinds, out, ends, errors = bytearray(), bytearray(), [], []
        start = 0
        for end in block.ends:
            try:
                out += square_record(data[start:end], offset)
            except Refused as e:
                kinds.append(_ERROR)
                errors.append(str(e))
            else:
                kinds.append(_RECORD)
                ends.append(len(out))
            start = end
        return RecordColumns(bytes(kinds), [], bytes(out), ends, errors)
