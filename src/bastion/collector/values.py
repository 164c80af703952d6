"""OTLP attribute values as strings, the way the Collector's pdata ``Value.AsString`` writes them.

The ClickHouse exporter stores every attribute as ``AsString()``: strings as they are, ints in
decimal, bools as ``true``/``false``, doubles in the shortest form (ES6 number style), bytes in
base64, and arrays and maps as compact JSON with sorted keys (Go's ``encoding/json``).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from decimal import Decimal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

Raw = None | bool | int | float | str | list["Raw"] | dict[str, "Raw"]

# Go's encoder escapes these inside strings; they never occur outside strings in JSON.
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def attributes(pairs: Iterable[KeyValue]) -> dict[str, str]:
    """Key/value pairs as a string map; a repeated key keeps its last value."""
    return {kv.key: as_string(kv.value) for kv in pairs}


def as_string(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        f = value.double_value
        if math.isinf(f) or math.isnan(f):
            return f"json: unsupported value: {_go_special(f)}"
        return format_float(f)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind in ("array_value", "kvlist_value"):
        try:
            return to_json(as_raw(value))
        except ValueError:  # a NaN or infinity inside: Go's json.Marshal fails and yields ""
            return ""
    return ""


def as_raw(value: AnyValue) -> Raw:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [as_raw(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: as_raw(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind is None:
        return None
    raw: Raw = getattr(value, kind)
    return raw


def to_json(raw: Raw) -> str:
    """Compact JSON as Go's ``json.Marshal`` writes it."""
    if raw is None or isinstance(raw, bool | str):
        return json.dumps(raw, ensure_ascii=False).translate(_GO_ESCAPES)
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        if math.isinf(raw) or math.isnan(raw):
            raise ValueError(f"unsupported value: {raw}")
        return format_float(raw)
    if isinstance(raw, list):
        return "[" + ",".join(to_json(v) for v in raw) + "]"
    return "{" + ",".join(f"{to_json(k)}:{to_json(raw[k])}" for k in sorted(raw)) + "}"


def format_float(f: float) -> str:
    """The shortest round-tripping form, fixed-point unless tiny or huge (ES6 / Go JSON)."""
    if f != 0 and (abs(f) < 1e-6 or abs(f) >= 1e21):
        text = repr(f)  # Python uses exponent form in both ranges, e.g. 1.5e-07
        mantissa, _, exponent = text.partition("e")
        sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
        return f"{mantissa}e{sign}{digits}"
    return format(Decimal(repr(f)).normalize(), "f")


def _go_special(f: float) -> str:
    if math.isnan(f):
        return "NaN"
    return "+Inf" if f > 0 else "-Inf"
