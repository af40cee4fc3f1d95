"""Relay values in Python, and what every tier agrees on about them.

number -> float (never int), string -> str, bool -> bool, null -> None,
array -> Array (a flat buffer of doubles while it holds only numbers: _array.c),
map -> dict (insertion ordered, string keys), fn -> Function or
Builtin, server -> ServerRef.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from ._array import Array, holds_numbers
from .budget import checkpoint, reserve
from .errors import RelayError
from .names import check_key, split_name

MAX_DATA_DEPTH = 500  # nesting bound for printing, comparing and sending values
MAX_STRING = 1 << 28  # characters; a string longer than this is over the memory budget
CHECK_EVERY = 4096  # elements visited between two checks of the time budget
CHECK_TEXT = 1 << 20  # characters of a container's text past which showing it checks the time budget
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
    """A reference to a server, by its name (relay_lang.names). Equal refs name the same server.

    `family` and `key` come from the name: a plain server (`counter`) has neither; one server of
    a family (`account[ada]`) has both; a family itself (`account[]`, which `account[KEY]`
    indexes) has a family and no key.
    """

    __slots__ = ("name", "family", "key")

    def __init__(self, name: str) -> None:
        self.name = name
        self.family, self.key = split_name(name)

    @property
    def is_family(self) -> bool:
        return self.family is not None and self.key is None

    def __eq__(self, other: object) -> bool:
        return type(other) is ServerRef and other.name == self.name

    def __hash__(self) -> int:
        return hash(("server", self.name))

    def __repr__(self) -> str:
        return f"<server {self.name}>"


MAX_EXACT_KEY = 2.0 ** 53  # whole numbers up to this magnitude are server keys


def key_text(key: object) -> str:
    """The server key a Relay value stands for (relay_lang.names): a string, or a whole number
    in -2^53..2^53 as its decimal text (`7` is `"7"`, `-0` is `"0"`); RelayError otherwise."""
    t = type(key)
    if t is str:
        return check_key(key)  # type: ignore[arg-type]
    if t is float:
        n: float = key  # type: ignore[assignment]
        if n.is_integer() and abs(n) <= MAX_EXACT_KEY:
            return str(int(n))
        raise RelayError(f"a server key must be a string or a whole number (up to 2^53), got {format_number(n)}")
    raise RelayError(f"a server key must be a string or a whole number, got {type_name(key)}")


TYPE_NAMES = {
    float: "number", str: "string", bool: "bool", type(None): "null",
    Array: "array", dict: "map", Function: "fn", Builtin: "fn", ServerRef: "server",
}


def type_name(v: object) -> str:
    return TYPE_NAMES[type(v)]


def with_article(word: str) -> str:
    """The word with its indefinite article: `a number`, `an array`."""
    return f"{'an' if word[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {word}"


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


class _Walk:
    """A traversal of a value that checks the time budget every CHECK_EVERY elements, however they nest."""

    def __init__(self) -> None:
        self.steps = 0

    def spans(self, n: int) -> Iterator[slice]:
        """Slices covering n items, a few thousand at a time (one empty slice when n is 0)."""
        for start in range(0, max(n, 1), CHECK_EVERY):
            self.steps += min(CHECK_EVERY, n - start) + 1
            if self.steps >= CHECK_EVERY:
                self.steps = 0
                checkpoint()
            yield slice(start, start + CHECK_EVERY)


def show(v: object) -> str:
    """A value as Relay writes it: strings quoted, cycles shown as [...] / {...}.

    Shared parts (a DAG, `x = [x, x]`) are shown once each and reused, so the
    work is bounded by the text's length, which is bounded by MAX_STRING.
    """
    return _Shower().show(v)


class _Shower(_Walk):
    def __init__(self) -> None:
        super().__init__()
        self.active: set[int] = set()
        self.done: dict[int, str] = {}  # texts of containers that showed no cycle: the same wherever they occur
        self.cycles = 0  # [...] / {...} markers written so far

    def show(self, v: object) -> str:
        t = type(v)
        if t is float:
            return format_number(v)  # type: ignore[arg-type]
        if t is str:
            return quote(v)  # type: ignore[arg-type]
        if t is bool:
            return "true" if v else "false"
        if v is None:
            return "null"
        if t is Array or t is dict:
            return self.container(v)  # type: ignore[arg-type]
        if t is ServerRef:
            return f"<server {v.name}>"  # type: ignore[attr-defined]
        return f"<fn {v.name or 'anonymous'}>"  # type: ignore[attr-defined]

    def container(self, v: Array | dict) -> str:
        key = id(v)
        text = self.done.get(key)
        if text is not None:
            return text
        if key in self.active:
            self.cycles += 1
            return "[...]" if type(v) is Array else "{...}"
        if len(self.active) >= MAX_DATA_DEPTH:
            raise RelayError(f"cannot show a value nested deeper than {MAX_DATA_DEPTH} levels")
        self.active.add(key)
        cycles = self.cycles
        items = v if type(v) is Array else list(v.items())  # type: ignore[union-attr]
        parts: list[str] = []
        size = 0
        for span in self.spans(len(items)):
            if type(v) is Array:
                chunk = [self.show(x) for x in items[span]]
            else:
                chunk = [f"{k if IDENT.match(k) else quote(k)}: {self.show(x)}" for k, x in items[span]]
            size += sum(map(len, chunk)) + 2 * len(chunk)
            if size > MAX_STRING:
                raise RelayError(f"string too long: over the memory budget of {MAX_STRING} characters")
            parts.extend(chunk)
        self.active.discard(key)
        open_, close = ("[", "]") if type(v) is Array else ("{", "}")
        if size > CHECK_TEXT:  # every text shown so far is kept (`done`): a shared part doubles it at each level
            reserve(size)
        text = open_ + ", ".join(parts) + close
        if len(text) > CHECK_TEXT:  # a shared part shown twice doubles the text: few elements, much copying
            checkpoint()
        if self.cycles == cycles:
            self.done[key] = text
        return text


# ------------------------------------------------------------------ equality


def equal(a: object, b: object) -> bool:
    """Relay `==`: by value for scalars, deeply for arrays and maps, by identity for fns."""
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is float or ta is str or ta is bool or a is None:
        return a == b
    if ta is Array or ta is dict:
        return _DeepEqual().equal(a, b)
    if ta is ServerRef:
        return a == b
    return a is b


class _DeepEqual(_Walk):
    """Deep equality; pairs being compared (cycles) or found equal (shared parts) are not compared again."""

    def __init__(self) -> None:
        super().__init__()
        self.active: set[tuple[int, int]] = set()
        self.equal_pairs: set[tuple[int, int]] = set()

    def equal(self, a: Any, b: Any) -> bool:
        """No shortcut for `a is b`: nan is unequal to itself at any depth, whatever the container's
        representation (a numbers array makes a new float per element, a values array keeps one)."""
        ta = type(a)
        if ta is not type(b):
            return False
        if ta is not Array and ta is not dict:
            return equal(a, b)
        if len(a) != len(b):
            return False
        pair = (id(a), id(b))
        if pair in self.active or pair in self.equal_pairs:
            return True  # a cycle compared against itself, or a shared part already compared
        if len(self.active) >= MAX_DATA_DEPTH:
            raise RelayError(f"cannot compare values nested deeper than {MAX_DATA_DEPTH} levels")
        self.active.add(pair)
        try:
            if ta is Array:
                same = all(all(self.equal(x, y) for x, y in zip(a[span], b[span])) for span in self.spans(len(a)))
            else:
                items = list(a.items())
                same = all(all(k in b and self.equal(x, b[k]) for k, x in items[span]) for span in self.spans(len(items)))
        finally:
            self.active.discard(pair)
        if same:
            self.equal_pairs.add(pair)
        return same


# ------------------------------------------------------------------ messages


def copy_data(v: object, what: str = "a message") -> object:
    """A deep copy of a message argument or reply; functions and cycles are errors.

    Parts shared inside the value stay shared in the copy (a DAG is copied as
    a DAG, in time linear in its distinct parts, never expanded into a tree).
    """
    return _Copier(what).copy(v, 0)


def copy_args(args: list, what: str = "a message") -> list:
    """copy_data over a message's arguments: parts shared between arguments stay shared."""
    return copy_data(Array(args), what).tolist()  # type: ignore[attr-defined]


class _Copier(_Walk):
    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        self.copies: dict[int, object] = {}  # id of a copied container -> its copy
        self.active: set[int] = set()

    def copy(self, v: object, depth: int) -> object:
        t = type(v)
        if t is float or t is str or t is bool or v is None or t is ServerRef:
            return v
        if t is not Array and t is not dict:
            raise RelayError(f"cannot send {self.what} containing {with_article(type_name(v))}: messages carry only data "
                             "(numbers, strings, bools, null, arrays, maps and server references)")
        key = id(v)
        done = self.copies.get(key)
        if done is not None:
            return done
        if depth > MAX_DATA_DEPTH or key in self.active:
            raise RelayError(f"cannot send {self.what}: nested deeper than {MAX_DATA_DEPTH} levels (or cyclic)")
        self.active.add(key)
        if holds_numbers(v):  # a flat buffer: one copy
            result: object = v.copy()  # type: ignore[attr-defined]
        elif t is Array:
            result = Array([self.copy(x, depth + 1) for span in self.spans(len(v))  # type: ignore[arg-type]
                                    for x in v[span]])  # type: ignore[index]
        else:
            items = list(v.items())  # type: ignore[attr-defined]
            result = {k: self.copy(x, depth + 1) for span in self.spans(len(items)) for k, x in items[span]}
        self.active.discard(key)
        self.copies[key] = result
        return result
