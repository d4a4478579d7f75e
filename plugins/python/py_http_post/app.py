"""A plugin in Python that calls a service (interface v2, world `plugin-with-http`), built by
componentize-py (scripts/build-plugins.sh): the Python twin of the Rust plugin http_post.

For each item it POSTs a JSON body to the configured URL (`content-type: application/json`):
a record item's bytes as they are (a JSON Lines line), a range item as {"item": <index>}. The
response must be 2xx with a JSON object body; the item's output is that object's field
`output_field`: a Number when it is a whole number in 0..2^64-1, else a record, the field's
value as compact JSON. Any other status, a failed request, a body that is not JSON or lacks
the field: the item is refused, with why. Configuration (required):
{"url": "http://host:port/path", "output_field": "id"}.

The worker grants the hosts (`starter --http-allow`), retries transient failures and stamps
each request with the item's `Idempotency-Key` (docs/plugins.md, "Call a service"): the plugin
sends each request once and waits for its answer. Records come through both `compute.process`
and `records.process-records`, as in py_square: both run the same `call`.
"""

import json
import re
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.compute import Output_Number, Output_Record
from wit_world.exports.records import RecordColumns
from wit_world.imports import outgoing_handler
from wit_world.imports.streams import StreamError_Closed, StreamError_LastOperationFailed
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    Method_Post,
    OutgoingBody,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)

U64_MAX = 2**64 - 1
# Built once: `json.dumps` with separators builds an encoder per call. Not ASCII-escaped: the
# value's text as the service sent it, as serde_json writes it.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# `records` kinds (plugins/wit/v2/plugin.wit).
_NUMBER, _RECORD, _ERROR = 0, 1, 3
_READ = 64 * 1024
# At most this much of an error response's body goes into the item's message.
_SHOWN = 200


class Refused(Exception):
    """An item the plugin refuses, with why."""


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _loads(data):
    """JSON as the standard has it (Python's own accepts NaN and Infinity)."""
    return json.loads(data, parse_constant=_reject_constant)


def _named(case, prefix):
    """A WIT variant case as its WIT name, with its payload: `ErrorCode_DnsTimeout()` ->
    "dns-timeout"."""
    name = type(case).__name__.removeprefix(prefix)
    name = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
    value = getattr(case, "value", None)
    return name if value is None else f"{name} ({value})"


def _why(err):
    """What a binding's `Err` says: an error code, a header or stream error, or nothing."""
    value = err.value
    if value is None:
        return "refused by the host"
    if isinstance(value, StreamError_LastOperationFailed):
        with value.value as error:
            return error.to_debug_string()
    if isinstance(value, StreamError_Closed):
        return "the stream is closed"
    for prefix in ("ErrorCode_", "HeaderError_"):
        if type(value).__name__.startswith(prefix):
            return _named(value, prefix)
    return repr(value)


class Target:
    """Where the requests go: a URL split as wasi:http sets it."""

    def __init__(self, url):
        try:
            parts = urlsplit(url)
            parts.port  # Raises on a port that is not a number in 0..65535.
        except ValueError as e:
            raise ValueError(f"{url!r} is not a URL: {e}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{url!r} is not an http or https URL")
        if not parts.hostname:
            raise ValueError(f"{url!r} names no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"{url!r} has credentials, which wasi:http would not send")
        self.scheme = Scheme_Https() if parts.scheme == "https" else Scheme_Http()
        self.authority = parts.netloc
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def request(self):
        """A POST of JSON to the URL, not sent (an `OutgoingRequest`), or Refused."""
        try:
            headers = Fields.from_list([("content-type", b"application/json")])
        except Err as e:
            raise Refused(f"the request's headers: {_why(e)}")
        request = OutgoingRequest(headers)  # Takes the headers.
        for what, set_it, value in (
            ("method", request.set_method, Method_Post()),
            ("scheme", request.set_scheme, self.scheme),
            ("authority", request.set_authority, self.authority),
            ("path", request.set_path_with_query, self.path),
        ):
            try:
                set_it(value)
            except Err:
                request.__exit__(None, None, None)
                raise Refused(f"the URL's {what} is not valid for wasi:http: {value!r}")
        return request


def _write_body(request, body):
    """Writes the whole body and finishes it, before the request is handed over.

    With non-blocking writes: nothing drains a body before `outgoing-handler.handle` takes its
    request, so a blocking write could wait for ever once the host's buffer is full
    (wasmtime-wasi-http's holds two writes, each up to 1 MiB). A body that does not fit is
    refused instead.
    """
    try:
        outgoing = request.body()
    except Err as e:
        raise Refused(f"the request's body: {_why(e)}")
    try:
        stream = outgoing.write()
    except Err as e:
        outgoing.__exit__(None, None, None)
        raise Refused(f"the request's body: {_why(e)}")
    try:
        with stream:
            sent, view = 0, memoryview(body)
            while sent < len(body):
                permit = stream.check_write()
                if permit == 0:
                    raise Refused(
                        f"the request's body ({len(body)} bytes) is more than the host takes "
                        f"before sending ({sent} bytes)"
                    )
                chunk = bytes(view[sent : sent + permit])
                stream.write(chunk)
                sent += len(chunk)
            stream.flush()
    except Err as e:
        outgoing.__exit__(None, None, None)
        raise Refused(f"writing the request's body: {_why(e)}")
    except Refused:
        outgoing.__exit__(None, None, None)
        raise
    try:
        OutgoingBody.finish(outgoing, None)  # Takes the body; the stream is dropped.
    except Err as e:
        raise Refused(f"finishing the request's body: {_why(e)}")


def _wait(future):
    """The response of a sent request (an `IncomingResponse`), or Refused."""
    with future:
        while True:
            answer = future.get()
            if answer is not None:
                break
            with future.subscribe() as pollable:
                pollable.block()
    if isinstance(answer, Err):
        raise Refused("the response was taken already")
    if isinstance(answer.value, Err):
        raise Refused(f"the request failed: {_why(answer.value)}")
    return answer.value.value


def _read(response):
    """A response's whole body, the body finished."""
    try:
        body = response.consume()
    except Err as e:
        raise Refused(f"the response's body: {_why(e)}")
    try:
        stream = body.stream()
    except Err as e:
        body.__exit__(None, None, None)
        raise Refused(f"the response's body: {_why(e)}")
    data = bytearray()
    try:
        with stream:
            while True:
                data += stream.blocking_read(_READ)
    except Err as e:
        if not isinstance(e.value, StreamError_Closed):
            body.__exit__(None, None, None)
            raise Refused(f"reading the response's body: {_why(e)}")
    with IncomingBody.finish(body):  # Takes the body; the trailers are not read.
        pass
    return bytes(data)


def post(target, body):
    """The response body of POSTing `body` to `target`, if the status is 2xx; or Refused."""
    request = target.request()
    try:
        _write_body(request, body)
    except Refused:
        request.__exit__(None, None, None)
        raise
    try:
        future = outgoing_handler.handle(request, None)  # Takes the request.
    except Err as e:
        raise Refused(f"the request failed: {_why(e)}")
    with _wait(future) as response:
        status = response.status()
        data = _read(response)
    if not 200 <= status < 300:
        shown = data[:_SHOWN].decode("utf-8", "replace")
        more = "..." if len(data) > _SHOWN else ""
        raise Refused(f"the service answered {status}: {shown!r}{more}")
    return data


def output(data, field):
    """The item's output from a response body: an int for a Number, bytes for a record."""
    try:
        answer = _loads(data)
    except ValueError as e:
        raise Refused(f"the response is not JSON: {e}")
    if not isinstance(answer, dict):
        raise Refused(f"the response is not a JSON object: {_encode(answer)[:_SHOWN]}")
    if field not in answer:
        raise Refused(f"the response has no field {field!r}")
    value = answer[field]
    # A bool is an int in Python, not a number in JSON.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX:
        return value
    return _encode(value).encode()


def call(target, field, index, data):
    """One item's output (an int or bytes), or Refused."""
    body = data if data is not None else b'{"item":%d}' % index
    return output(post(target, body), field)


class Compute(exports.Compute):
    target = None
    field = None

    def configure(self, config):
        usage = 'py_http_post takes {"url": "http(s)://host[:port]/path", "output_field": "<name>"}'
        if config is None:
            raise Err(f"py_http_post needs a configuration: {usage}")
        try:
            settings = _loads(config)
        except ValueError as e:
            raise Err(f"py_http_post's configuration is not JSON ({e}): {usage}")
        if not isinstance(settings, dict):
            raise Err(f"py_http_post's configuration is not a JSON object: {usage}")
        missing = [key for key in ("url", "output_field") if key not in settings]
        if missing:
            raise Err(f"py_http_post's configuration lacks {', '.join(missing)}: {usage}")
        url, field = settings.pop("url"), settings.pop("output_field")
        if settings:
            raise Err(f"unknown py_http_post settings {sorted(settings)}: {usage}")
        if not isinstance(url, str) or not isinstance(field, str) or not field:
            raise Err(f"py_http_post's url and output_field are non-empty strings: {usage}")
        try:
            target = Target(url)
            # Built and dropped, not sent: wasi:http checks the URL's parts now.
            target.request().__exit__(None, None, None)
        except (ValueError, Refused) as e:
            raise Err(f"bad py_http_post url: {e}")
        Compute.target, Compute.field = target, field
        print(f"py_http_post configured: POST to {url}, output field {field!r}")

    def process(self, items):
        return [self.one(item) for item in items]

    def one(self, item):
        try:
            result = call(self.target, self.field, item.index, item.data)
        except Refused as e:
            return Err(str(e))
        if isinstance(result, int):
            return Ok(Output_Number(result))
        return Ok(Output_Record(result))


class Records(exports.Records):
    def process_records(self, block):
        data, target, field = block.data, Compute.target, Compute.field
        kinds, numbers, out, ends, errors = bytearray(), [], bytearray(), [], []
        start = 0
        for index, end in zip(block.indexes, block.ends):
            try:
                result = call(target, field, index, data[start:end])
            except Refused as e:
                kinds.append(_ERROR)
                errors.append(str(e))
            else:
                if isinstance(result, int):
                    kinds.append(_NUMBER)
                    numbers.append(result)
                else:
                    kinds.append(_RECORD)
                    out += result
                    ends.append(len(out))
            start = end
        return RecordColumns(bytes(kinds), numbers, bytes(out), ends, errors)
