"""The builtin functions of the spec, bound to one interpreter."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from . import numeric
from ._array import Array, filled
from .actors import Runtime
from .budget import checkpoint, reserve
from .builtin_table import ARITY, MAX_ARRAY, array_budget_message
from .errors import RelayError
from .values import CHECK_EVERY, MAX_STRING, Builtin, ServerRef, to_str, type_name

DIGITS = "0123456789_"
HEX_DIGITS = "0123456789abcdefABCDEF_"
NUM_CHUNK = 1 << 22  # characters of a number's text checked between two looks at the clock
SPLIT_CHUNK = 1 << 18  # characters of a string split between two checks of the budgets


class BuiltinHost(Protocol):
    """What `print`, `send` and `message` need from the interpreter."""

    runtime: Runtime

    def write(self, text: str) -> None: ...


def _number(fname: str, v: object, what: str = "argument") -> float:
    if type(v) is not float:
        raise RelayError(f"{fname}: {what} must be a number, got {type_name(v)}")
    return v


def _array_arg(fname: str, v: object) -> Array:
    if type(v) is not Array:
        raise RelayError(f"{fname}: expected an array, got {type_name(v)}")
    return v


def _map(fname: str, v: object) -> dict:
    if type(v) is not dict:
        raise RelayError(f"{fname}: expected a map, got {type_name(v)}")
    return v


def _string(fname: str, v: object, what: str = "argument") -> str:
    if type(v) is not str:
        raise RelayError(f"{fname}: {what} must be a string, got {type_name(v)}")
    return v


def _count(fname: str, v: object, what: str) -> int:
    n = _number(fname, v, what)
    if not n.is_integer() or n < 0:
        raise RelayError(f"{fname}: {what} must be a whole number >= 0, got {to_str(n)}")
    return int(n)


def b_len(x: object) -> float:
    if type(x) in (Array, dict, str):
        return float(len(x))  # type: ignore[arg-type]
    raise RelayError(f"len: expected a string, array or map, got {type_name(x)}")


def b_push(a: object, v: object) -> float:
    arr = _array_arg("push", a)
    return arr.push(v)


def b_pop(a: object) -> object:
    arr = _array_arg("pop", a)
    if not arr:
        raise RelayError("pop: the array is empty")
    return arr.pop()


def b_num(s: object) -> object:
    """A number from a string (or a number); null when the text is not a number (docs/language.md).

    The text is checked with string methods in chunks, not tokenized: a 100-million-digit
    string is read in a fraction of a second, with the time budget checked as it goes.
    """
    if type(s) is float:
        return s
    text = _string("num", s).strip()
    sign = 1.0
    if text[:1] in ("-", "+"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text in ("inf", "nan"):
        return sign * float(text)
    text = text.lstrip(" \t\r\ufeff")  # spaces between the sign and the number, as in source
    if text[:2] in ("0x", "0X"):
        if not _digit_run(text[2:], HEX_DIGITS):
            return None
        try:
            return sign * float(int(text[2:].replace("_", ""), 16))
        except OverflowError:
            return None
    mantissa, exponent = _split_exponent(text)
    whole, dot, fraction = mantissa.partition(".")
    if exponent is not None and not _digit_run(exponent[1:] if exponent[:1] in ("+", "-") else exponent, DIGITS):
        return None
    if dot:  # ".5" has no whole part; "5." is not a number
        valid = (not whole or _digit_run(whole, DIGITS)) and _digit_run(fraction, DIGITS)
    else:
        valid = _digit_run(whole, DIGITS)
    if not valid:
        return None
    checkpoint()
    return sign * float(text.replace("_", ""))


def _split_exponent(text: str) -> tuple[str, str | None]:
    """A number's text cut at its exponent mark: ("1.5", "-3") for "1.5e-3"; (text, None) without one."""
    marks = [k for k in (text.find("e"), text.find("E")) if k >= 0]
    if not marks:
        return text, None
    return text[:min(marks)], text[min(marks) + 1:]


def _digit_run(text: str, digits: str) -> bool:
    """Whether text is digits with single underscores between them (the lexer's rule), checked
    a chunk at a time."""
    if not text or text[0] == "_" or text[-1] == "_" or "__" in text:
        return False
    for start in range(0, len(text), NUM_CHUNK):
        checkpoint()
        if text[start:start + NUM_CHUNK].strip(digits):
            return False
    return True


def b_keys(m: object) -> Array:
    keys = _map("keys", m)
    reserve(8 * len(keys))
    return Array(list(keys))


def b_has(m: object, k: object) -> bool:
    return _string("has", k, "key") in _map("has", m)


def b_del(m: object, k: object) -> object:
    return _map("del", m).pop(_string("del", k, "key"), None)


def b_array(n: object, fill: object = None) -> Array:
    size = _count("array", n, "size")
    if size > MAX_ARRAY:
        raise RelayError(array_budget_message(float(size)))
    reserve(8 * size)
    return filled(size, fill)


def b_slice(a: object, i: object, j: object = None) -> object:
    if type(a) not in (Array, str):
        raise RelayError(f"slice: expected an array or a string, got {type_name(a)}")
    n = len(a)  # type: ignore[arg-type]
    start = _count("slice", i, "start")
    end = n if j is None else _count("slice", j, "end")
    if not start <= end <= n:
        raise RelayError(f"slice: range {start}..{end} out of bounds for length {n}")
    return a[start:end]  # type: ignore[index]


def b_join(a: object, sep: object = "") -> str:
    """Converts a few thousand elements at a time, checking the time and the length as it goes."""
    items = _array_arg("join", a)
    separator = _string("join", sep, "separator")
    parts: list[str] = []
    size = -len(separator)
    for start in range(0, len(items), CHECK_EVERY):
        checkpoint()
        chunk = [to_str(x) for x in items[start:start + CHECK_EVERY]]
        size += sum(map(len, chunk)) + len(separator) * len(chunk)
        if size > MAX_STRING:
            raise RelayError(f"join: result over the memory budget of {MAX_STRING} characters")
        parts.extend(chunk)
    ascii_only = separator.isascii() and all(p.isascii() for p in parts)
    reserve((1 if ascii_only else 4) * size)
    return separator.join(parts)


def b_split(s: object, sep: object) -> Array:
    """The pieces of s between separators (its characters for ""), made a chunk at a time: the
    budgets are checked, and the pieces counted against the memory one, as they are made."""
    text = _string("split", s)
    separator = _string("split", sep, "separator")
    parts: list[str] = []
    if separator == "":
        for start in range(0, len(text), SPLIT_CHUNK):
            chunk = text[start:start + SPLIT_CHUNK]
            checkpoint()  # characters past U+00FF are new strings; the others are shared
            reserve((8 if chunk.isascii() or max(chunk) <= "\xff" else 88) * len(chunk))
            parts.extend(chunk)
        return Array(parts)
    start = 0
    while True:
        checkpoint()
        end = start + SPLIT_CHUNK
        pieces = text[start:end].split(separator) if end < len(text) else text[start:].split(separator)
        if end >= len(text):
            last = None
        elif len(pieces) > 1:  # the last piece may hold the start of a separator cut by the chunk
            last = pieces.pop()
        else:  # no separator inside the chunk: the next one (if any) ends the piece
            found = text.find(separator, start)
            pieces, last = [text[start:found if found >= 0 else len(text)]], None if found < 0 else ""
            end = found + len(separator)
        reserve(8 * len(pieces) + sum(map(len, pieces)))
        parts.extend(pieces)
        if last is None:
            return Array(parts)
        start = end - len(last)


def b_error(msg: object) -> None:
    raise RelayError(to_str(msg), kind="error")


def _math1(name: str, f: Callable[[float], float]) -> Callable[[object], float]:
    def impl(x: object) -> float:
        return f(_number(name, x))
    return impl


def _minmax(name: str, f: Callable[[tuple[float, ...]], float]) -> Callable[..., float]:
    def impl(*xs: object) -> float:
        if not xs:
            raise RelayError(f"{name}: expected at least one number")
        for x in xs:
            _number(name, x)
        return f(xs)  # type: ignore[arg-type]
    return impl


def b_atan2(y: object, x: object) -> float:
    return math.atan2(_number("atan2", y), _number("atan2", x))


def b_pow(x: object, y: object) -> float:
    return numeric.power(_number("pow", x), _number("pow", y))


MATH1_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "abs": abs, "sqrt": numeric.sqrt, "sin": numeric.sin, "cos": numeric.cos,
    "tan": numeric.tan, "atan": math.atan, "exp": numeric.exp, "log": numeric.log,
    "floor": numeric.floor, "ceil": numeric.ceil, "round": numeric.round_half_away,
}


def make_builtins(interp: BuiltinHost) -> dict[str, Builtin]:
    """Every builtin, keyed by name; `print`, `send` and `message` talk to `interp`."""

    def b_print(*args: object) -> None:
        interp.write(" ".join(to_str(a) for a in args) + "\n")

    def b_send(server: object, handler: object, *args: object) -> None:
        interp.runtime.send(_server("send", server), _string("send", handler, "handler name"), list(args))

    def b_message(server: object, handler: object, *args: object) -> object:
        return interp.runtime.call(_server("message", server), _string("message", handler, "handler name"), list(args))

    impls: dict[str, Callable] = {
        "print": b_print, "len": b_len, "push": b_push, "pop": b_pop, "str": to_str, "num": b_num,
        "string": to_str, "type": type_name, "keys": b_keys, "has": b_has, "del": b_del, "array": b_array,
        "slice": b_slice, "join": b_join, "split": b_split, "atan2": b_atan2, "pow": b_pow,
        "min": _minmax("min", numeric.fmin), "max": _minmax("max", numeric.fmax),
        "error": b_error, "clock": time.perf_counter, "send": b_send, "message": b_message,
    }
    for name, f in MATH1_FUNCTIONS.items():
        impls[name] = _math1(name, f)
    return {name: Builtin(name, impls[name], ARITY[name]) for name in ARITY}


def _server(fname: str, v: object) -> ServerRef:
    if type(v) is str:  # Relay 0.3 names the server by a string
        return ServerRef(v)
    if type(v) is not ServerRef:
        raise RelayError(f"{fname}: expected a server, got {type_name(v)}")
    return v
