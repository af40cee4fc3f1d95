"""Relay values on the wire: JSON. Server references travel as {"$server": name}."""

from __future__ import annotations

import math

from relay_lang.errors import RelayError
from relay_lang.values import ServerRef, copy_data


def to_wire(value: object) -> object:
    """A Relay data value as JSON-serialisable Python (non-finite numbers as {"$num": "inf"})."""
    value = copy_data(value, "a value across the fleet")
    return _encode(value)


def _encode(v: object) -> object:
    if type(v) is float:
        if not math.isfinite(v):  # type: ignore[arg-type]
            return {"$num": repr(v)}
        return v
    if type(v) is ServerRef:
        return {"$server": v.name}  # type: ignore[attr-defined]
    if type(v) is list:
        return [_encode(x) for x in v]  # type: ignore[attr-defined]
    if type(v) is dict:
        return {k: _encode(x) for k, x in v.items()}  # type: ignore[attr-defined]
    return v


def from_wire(value: object) -> object:
    """JSON from a producer as a Relay value; ints become numbers; anything else is a Relay error."""
    t = type(value)
    if t is bool or value is None or t is str:
        return value
    if t is int or t is float:
        return float(value)  # type: ignore[arg-type]
    if t is list:
        return [from_wire(x) for x in value]  # type: ignore[attr-defined]
    if t is dict:
        if set(value) == {"$server"}:  # type: ignore[arg-type]
            return ServerRef(str(value["$server"]))  # type: ignore[index]
        if set(value) == {"$num"}:  # type: ignore[arg-type]
            return float(value["$num"])  # type: ignore[index]
        return {str(k): from_wire(x) for k, x in value.items()}  # type: ignore[attr-defined]
    raise RelayError(f"a {t.__name__} cannot be a Relay value")
