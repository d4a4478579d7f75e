"""A plugin in Python (interface v2), built by componentize-py (scripts/build-plugins.sh).

Range items (numbers): outputs (n + offset)^2, refusing results over 2^64-1 as square_number
does. Record items (JSON Lines objects with a whole-number field "n"): outputs the record with
a "square" field added. Configuration (optional): {"offset": k}.
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.compute import Output_Number, Output_Record

U64_MAX = 2**64 - 1


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
            record = json.loads(item.data)
            n = record["n"]
        except (ValueError, KeyError, TypeError) as e:
            return Err(f"not a JSON object with a field n: {e!r}")
        record["square"] = (n + self.offset) ** 2
        return Ok(Output_Record(json.dumps(record, separators=(",", ":")).encode()))
