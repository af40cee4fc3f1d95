"""Operator semantics: the slow paths behind the compiled fast paths.

Generated code handles float-float arithmetic inline; everything else comes
here, where mixed types become Relay errors and edge cases follow IEEE-754.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

from . import _array, numeric
from ._array import Array
from .budget import checkpoint, reserve
from .builtin_table import ARRAY_BUSY_MESSAGE
from .errors import RelayError
from .names import instance_name
from .values import CHECK_EVERY, MAX_STRING, ServerRef, equal, format_number, key_text, type_name

BIG_STRING = 1 << 20  # characters: a concatenation this long checks the memory budget first


def _operands_error(verb: str, a: object, b: object) -> RelayError:
    return RelayError(f"cannot {verb} {type_name(a)} and {type_name(b)}")


def add(a: object, b: object) -> object:
    ta, tb = type(a), type(b)
    if ta is float and tb is float:
        return a + b  # type: ignore[operator]
    if ta is str and tb is str:
        size = len(a) + len(b)  # type: ignore[arg-type]
        if size > MAX_STRING:
            raise RelayError(f"string too long: over the memory budget of {MAX_STRING} characters")
        if size > BIG_STRING:
            reserve(size if a.isascii() and b.isascii() else 4 * size)  # type: ignore[attr-defined]
        return a + b  # type: ignore[operator]
    raise _operands_error("add", a, b)


def _numbers(verb: str, a: object, b: object) -> None:
    if type(a) is not float or type(b) is not float:
        raise _operands_error(verb, a, b)


def sub(a: object, b: object) -> float:
    _numbers("subtract", a, b)
    return a - b  # type: ignore[operator]


def mul(a: object, b: object) -> float:
    _numbers("multiply", a, b)
    return a * b  # type: ignore[operator]


def div(a: object, b: object) -> float:
    _numbers("divide", a, b)
    return numeric.div(a, b)  # type: ignore[arg-type]


def mod(a: object, b: object) -> float:
    _numbers("take the remainder of", a, b)
    return numeric.fmod(a, b)  # type: ignore[arg-type]


def power(a: object, b: object) -> float:
    _numbers("raise", a, b)
    return numeric.power(a, b)  # type: ignore[arg-type]


def neg(a: object) -> float:
    if type(a) is not float:
        raise RelayError(f"cannot negate {type_name(a)}")
    return -a


def compare(op: str, a: object, b: object) -> bool:
    ta = type(a)
    if ta is not type(b) or (ta is not float and ta is not str):
        raise RelayError(f"cannot compare {type_name(a)} {op} {type_name(b)}: '{op}' takes two numbers or two strings")
    if op == "<":
        return a < b  # type: ignore[operator]
    if op == "<=":
        return a <= b  # type: ignore[operator]
    if op == ">":
        return a > b  # type: ignore[operator]
    return a >= b  # type: ignore[operator]


def eq(a: object, b: object) -> bool:
    return equal(a, b)


# ------------------------------------------------------------------ indexing


def _index_error(a: Array, i: object) -> None:
    """Raises the error for a key that names no element of `a` (called by Array itself)."""
    if type(i) is not float:
        raise RelayError(f"array index must be a number, got {type_name(i)}")
    raise RelayError(f"index {format_number(i)} out of range for array of length {len(a)}")


_array.set_index_error(_index_error)


def _busy_error(a: Array) -> None:
    """Raises the error for resizing an array that compiled code of another thread holds (called by Array)."""
    raise RelayError(ARRAY_BUSY_MESSAGE)


_array.set_busy_error(_busy_error)


def index(obj: object, i: object) -> object:
    t = type(obj)
    if t is Array:
        return obj[i]  # type: ignore[index]
    if t is dict:
        if type(i) is not str:
            raise RelayError(f"map keys are strings, got {type_name(i)}")
        return obj.get(i)  # type: ignore[attr-defined]
    if t is str:
        if type(i) is not float or not (0 <= i < len(obj)) or not i.is_integer():  # type: ignore[arg-type]
            shown = format_number(i) if type(i) is float else type_name(i)
            raise RelayError(f"index {shown} out of range for string of length {len(obj)}")  # type: ignore[arg-type]
        return obj[int(i)]  # type: ignore[index]
    if t is ServerRef:
        return server_index(obj, i)  # type: ignore[arg-type]
    raise RelayError(f"cannot index {type_name(obj)}")


def server_index(ref: ServerRef, key: object) -> ServerRef:
    """`family[key]`: the server of a family with that key (it starts at its first message)."""
    if ref.is_family:
        return ServerRef(instance_name(ref.family, key_text(key)))  # type: ignore[arg-type]
    if ref.family is not None:
        raise RelayError(f"cannot index server {ref.name}: it is one server of the family {ref.family} "
                         f"(index the family: {ref.family}[key])")
    raise RelayError(f"cannot index server {ref.name}: it is not a family (a family is declared as "
                     f"server {ref.name}[id] {{ ... }})")


def set_index(obj: object, i: object, v: object) -> None:
    t = type(obj)
    if t is Array:
        obj[i] = v  # type: ignore[index]
    elif t is dict:
        if type(i) is not str:
            raise RelayError(f"map keys are strings, got {type_name(i)}")
        obj[i] = v  # type: ignore[index]
    elif t is str:
        raise RelayError("strings are immutable: cannot assign to a character")
    elif t is ServerRef:
        if obj.is_family:  # type: ignore[attr-defined]
            raise RelayError(f"cannot assign to {obj.family}[key]: it names a server of the family, "  # type: ignore[attr-defined]
                             "not a place that holds a value")
        server_index(obj, i)  # type: ignore[arg-type]  # raises: only a family has an index
    else:
        raise RelayError(f"cannot index {type_name(obj)}")


def field(obj: object, name: str) -> object:
    if type(obj) is dict:
        return obj.get(name)
    if type(obj) is ServerRef:
        if name == "id":  # its key in its family; null for a plain server and for a family itself
            return obj.key
        raise RelayError(f"servers have no field '{name}' (a server's one field is id, its key in its family; "
                         f"a handler is called: {obj.name}.{name}(...))")
    raise RelayError(f"cannot read field '{name}' of {type_name(obj)} (fields belong to maps)")


def set_field(obj: object, name: str, v: object) -> None:
    if type(obj) is dict:
        obj[name] = v
        return
    if type(obj) is ServerRef:
        raise RelayError(f"cannot set field '{name}' of server {obj.name}: a server's fields cannot change")
    raise RelayError(f"cannot set field '{name}' of {type_name(obj)} (fields belong to maps)")


# ------------------------------------------------------------------ loops


EXACT_COUNT = 2.0 ** 53  # spans up to this many are counted exactly before the loop starts


def range_iter(start: object, end: object) -> range | Iterator[int]:
    """Offsets k = 0, 1, ... with start + k < end: `for i in start..end` binds start + k."""
    if type(start) is not float or type(end) is not float:
        raise RelayError(f"range bounds must be numbers, got {type_name(start)}..{type_name(end)}")
    if not start < end:
        return range(0)
    if not end - start <= EXACT_COUNT:
        # Far more offsets than any loop can visit (or an infinite span): count while the rule holds.
        return itertools.takewhile(lambda k: start + k < end, itertools.count())
    # start + k is non-decreasing in k: the count is the first k with start + k >= end, by bisection
    # (rounding makes the plain estimate end - start wrong by up to half a unit of start's last place).
    lo, hi = 0, int(math.ceil(end - start)) + 1
    while start + hi < end:
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if start + mid < end:
            lo = mid + 1
        else:
            hi = mid
    return range(lo)


def range_array(start: object, end: object, limit: int) -> Array:
    """`a..b` used as a value: the array of the numbers a for-loop would visit."""
    it = range_iter(start, end)
    if not isinstance(it, range) or len(it) > limit:
        raise RelayError(f"range {format_number(start)}..{format_number(end)} is too large to make an array "  # type: ignore[arg-type]
                         f"(over {limit} elements)")
    reserve(40 * len(it))  # a float each, and its pointer in the list made first, besides the array's 8 bytes
    items: list[float] = []
    for k in range(0, len(it), CHECK_EVERY):
        checkpoint()
        items.extend([start + j for j in it[k:k + CHECK_EVERY]])  # type: ignore[operator]
    return Array(items)


def iterate(obj: object) -> Array | list:
    """What `for x in obj` visits: an array snapshot, a map's keys, a string's characters."""
    t = type(obj)
    if t is Array:
        reserve(8 * len(obj))  # type: ignore[arg-type]
        return obj.copy()  # type: ignore[attr-defined]
    if t is dict or t is str:
        reserve(8 * len(obj))  # type: ignore[arg-type]
        return list(obj)  # type: ignore[call-overload]
    raise RelayError(f"cannot iterate over {type_name(obj)} (for-in takes an array, a map or a string)")
