"""Relay values in Python, and what every tier agrees on about them.

number -> float (never int), string -> str, bool -> bool, null -> None,
array -> list, map -> dict (insertion ordered, string keys), fn -> Function or
Builtin, server -> ServerRef.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from .errors import RelayError

MAX_DATA_DEPTH = 500  # nesting bound for printing, comparing and sending values
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Cell:
    """A variable captured by a closure: shared by reference."""

    __slots__ = ("v",)

    def __init__(self, v: object) -> None:
        self.v = v


class Function:
    """A Relay closure: generated Python code (`py`) plus its captured cells (`c`)."""

    __slots__ = ("code", "py", "c", "n")

    def __init__(self, code: Any, cells: tuple[Cell, ...]) -> None:
        self.code = code
        self.py: Callable = code.py
        self.c = cells
        self.n: int = code.nparams

    @property
    def name(self) -> str:
        return self.code.name

    def __repr__(self) -> str:
        return f"<fn {self.code.name or 'anonymous'}>"


class Builtin:
    __slots__ = ("name", "impl", "arity")

    def __init__(self, name: str, impl: Callable, arity: tuple[int, int | None]) -> None:
        self.name = name
        self.impl = impl
        self.arity = arity  # (min, max); max None means variadic

    def __repr__(self) -> str:
        return f"<fn {self.name}>"


class ServerRef:
    """A reference to a running server, by name. Equal refs name the same server."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return type(other) is ServerRef and other.name == self.name

    def __hash__(self) -> int:
        return hash(("server", self.name))

    def __repr__(self) -> str:
        return f"<server {self.name}>"


TYPE_NAMES = {
    float: "number", str: "string", bool: "bool", type(None): "null",
    list: "array", dict: "map", Function: "fn", Builtin: "fn", ServerRef: "server",
}


def type_name(v: object) -> str:
    return TYPE_NAMES[type(v)]


# ------------------------------------------------------------------ formatting


def format_number(x: float) -> str:
    """Integral values below 1e16 without a fraction; others as Python's float repr."""
    if x != x:
        return "nan"
    if x in (math.inf, -math.inf):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e16:
        if x == 0 and math.copysign(1.0, x) < 0:
            return "-0"
        return str(int(x))
    return repr(x)


def quote(s: str) -> str:
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{{{ord(c):X}}}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def to_str(v: object) -> str:
    """What `print` and `str` show: strings bare, everything else as `show` does."""
    if type(v) is str:
        return v
    if type(v) is float:
        return format_number(v)
    return show(v)


def show(v: object, active: set[int] | None = None) -> str:
    """A value as Relay writes it: strings quoted, cycles shown as [...] / {...}."""
    t = type(v)
    if t is float:
        return format_number(v)  # type: ignore[arg-type]
    if t is str:
        return quote(v)  # type: ignore[arg-type]
    if t is bool:
        return "true" if v else "false"
    if v is None:
        return "null"
    if t is list or t is dict:
        active = set() if active is None else active
        if id(v) in active:
            return "[...]" if t is list else "{...}"
        if len(active) >= MAX_DATA_DEPTH:
            raise RelayError(f"cannot show a value nested deeper than {MAX_DATA_DEPTH} levels")
        active.add(id(v))
        if t is list:
            text = "[" + ", ".join(show(x, active) for x in v) + "]"  # type: ignore[attr-defined]
        else:
            text = "{" + ", ".join(
                f"{k if IDENT.match(k) else quote(k)}: {show(x, active)}" for k, x in v.items()  # type: ignore[attr-defined]
            ) + "}"
        active.discard(id(v))
        return text
    if t is ServerRef:
        return f"<server {v.name}>"  # type: ignore[attr-defined]
    return f"<fn {v.name or 'anonymous'}>"  # type: ignore[attr-defined]


# ------------------------------------------------------------------ equality


def equal(a: object, b: object) -> bool:
    """Relay `==`: by value for scalars, deeply for arrays and maps, by identity for fns."""
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is float or ta is str or ta is bool or a is None:
        return a == b
    if ta is list or ta is dict:
        return _deep_equal(a, b, set())
    if ta is ServerRef:
        return a == b
    return a is b


def _deep_equal(a: Any, b: Any, active: set[tuple[int, int]]) -> bool:
    if a is b:
        return True
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is list:
        if len(a) != len(b):
            return False
        pair = (id(a), id(b))
        if pair in active:
            return True  # a cycle compared against itself: equal so far
        if len(active) >= MAX_DATA_DEPTH:
            raise RelayError(f"cannot compare values nested deeper than {MAX_DATA_DEPTH} levels")
        active.add(pair)
        try:
            return all(_deep_equal(x, y, active) for x, y in zip(a, b))
        finally:
            active.discard(pair)
    if ta is dict:
        if len(a) != len(b):
            return False
        pair = (id(a), id(b))
        if pair in active:
            return True
        if len(active) >= MAX_DATA_DEPTH:
            raise RelayError(f"cannot compare values nested deeper than {MAX_DATA_DEPTH} levels")
        active.add(pair)
        try:
            return all(k in b and _deep_equal(x, b[k], active) for k, x in a.items())
        finally:
            active.discard(pair)
    return equal(a, b)


# ------------------------------------------------------------------ messages


def copy_data(v: object, what: str = "a message", depth: int = 0) -> object:
    """A deep copy of a message argument or reply; functions and cycles are errors."""
    t = type(v)
    if t is float or t is str or t is bool or v is None or t is ServerRef:
        return v
    if depth > MAX_DATA_DEPTH:
        raise RelayError(f"cannot send {what}: nested deeper than {MAX_DATA_DEPTH} levels (or cyclic)")
    if t is list:
        return [copy_data(x, what, depth + 1) for x in v]  # type: ignore[attr-defined]
    if t is dict:
        return {k: copy_data(x, what, depth + 1) for k, x in v.items()}  # type: ignore[attr-defined]
    raise RelayError(f"cannot send {what} containing a {type_name(v)}: messages carry only data "
                     "(numbers, strings, bools, null, arrays, maps and server references)")
