"""The compiled-code ABI: what generated machine code and the runtime agree on, in one place.

- The runtime state (`RT_LAYOUT`, `RuntimeState`): one per running call, the hidden first
  argument of every compiled function (each interpreter has its own, so compiled code of
  several jobs runs in several threads at once): budgets in, errors out.
- The errors compiled code records in it (`ERR_*`), with their messages (`ERRORS`): a failing
  function writes its error (code, function index, node ordinal, payload x and y) and each
  caller adds its call site to the state's frame list (node ordinals, see
  `infer.enumerate_nodes`, keep object code free of source positions).
- The Array object's layout (`ARRAY_*` byte offsets) and the extension's C functions compiled
  code calls (`ARRAY_FUNCTIONS`). Their C side is `relay_lang/_abi.c`; `function_table()`
  checks that the extension agrees before the LLVM tier starts.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llvmlite import ir

from .. import _array
from ..budget import Limits
from ..builtin_table import ARRAY_BUSY_MESSAGE, array_budget_message, native_stack_message, too_deep_message
from ..errors import RelayError
from ..nodes import FnLit
from ..values import format_number, to_str

DOUBLE = ir.DoubleType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = I8.as_pointer()

# ------------------------------------------------------------ the runtime state

MAX_FRAMES = 10_000  # runs of frames kept (as many as the default depth limit); deeper ones are counted
RT_LAYOUT: tuple[tuple[str, ir.Type], ...] = (
    ("stop", I64), ("depth", I64), ("max_depth", I64), ("err_code", I64), ("err_fn", I64), ("err_node", I64),
    ("err_x", DOUBLE), ("err_y", I64), ("deadline_ns", I64), ("stack_limit", I64),
    ("memory_ceiling", I64), ("nframes", I64),
    ("allocated", I64),  # bytes of arrays made since the budgets were last checked (lower: count_allocation)
    ("frames", ir.ArrayType(I64, 3 * MAX_FRAMES)),  # runs of frames: (function, call node, repeats)
)
RT_FIELDS = tuple(name for name, _ in RT_LAYOUT)
RT_TYPE = ir.LiteralStructType([t for _, t in RT_LAYOUT])
RT_PTR = RT_TYPE.as_pointer()
AT_CALLER = -2  # err_node of an error the interpreter places at the caller's call, keeping the callee's frame
# (err_node -1: the function failed on entry; the error belongs to its call site)


def rt_field(b: ir.IRBuilder, rt: ir.Value, name: str) -> ir.Value:
    """A field of the runtime state `rt` points at."""
    return b.gep(rt, [I32(0), I32(RT_FIELDS.index(name))], inbounds=True)


def _ctype(t: ir.Type) -> type:
    if isinstance(t, ir.ArrayType):
        return _ctype(t.element) * t.count
    return ctypes.c_double if isinstance(t, ir.DoubleType) else ctypes.c_int64


class RuntimeState(ctypes.Structure):
    """The C side of `RT_LAYOUT`: budgets in, errors out."""

    _fields_ = [(name, _ctype(t)) for name, t in RT_LAYOUT]


# ------------------------------------------------------------ errors

ERR_INDEX, ERR_DEPTH, ERR_TIME, ERR_ARRAY_SIZE, ERR_ARRAY_BUDGET, ERR_MEMORY = 1, 2, 3, 4, 5, 6
ERR_ARGUMENT_TYPE = 7  # not a Relay error: an array argument is not of the numbers kind; the interpreter takes the call
ERR_STACK = 8  # the native stack is full (err_y: the call depth)
ERR_RETURN_TYPE = 9  # the function's return annotation does not hold its compiled return type
ERR_MEMORY_LIMIT = 10  # the process's resident memory would pass the job's ceiling
ERR_ARRAY_BUSY = 11  # push would grow an array that compiled code of another thread holds


@dataclass(frozen=True)
class Recorded:
    """An error record of the runtime state, with what its message needs."""

    x: float  # err_x
    y: int  # err_y
    limits: Limits  # the job's budgets
    function: FnLit  # the function that failed (err_fn)
    returned: str  # the name of its compiled return type


def _stopped(r: Recorded) -> str:
    """The deadline, or a stop requested (the memory limit, say)."""
    stop = r.limits.stop_error
    return stop.message if isinstance(stop, RelayError) else r.limits.time_limit_message()


Message = str | Callable[[Recorded], str]
# Every error compiled code reports: code -> (kind, message or what makes it). ERR_ARGUMENT_TYPE is
# not one: the interpreter runs that call.
ERRORS: dict[int, tuple[str, Message]] = {
    ERR_INDEX: ("error", lambda r: f"index {format_number(r.x)} out of range for array of length {r.y}"),
    ERR_DEPTH: ("limit", lambda r: too_deep_message(r.limits.max_depth)),
    ERR_STACK: ("limit", lambda r: native_stack_message(r.y, r.limits.max_depth)),
    ERR_TIME: ("limit", _stopped),
    ERR_ARRAY_SIZE: ("error", lambda r: f"array: size must be a whole number >= 0, got {to_str(r.x)}"),
    ERR_ARRAY_BUDGET: ("error", lambda r: array_budget_message(r.x)),
    ERR_MEMORY_LIMIT: ("limit", lambda r: r.limits.memory_limit_message()),
    ERR_ARRAY_BUSY: ("error", ARRAY_BUSY_MESSAGE),
    ERR_RETURN_TYPE: ("type error", lambda r: f"{r.function.name}: must return {r.function.ret_type}, "
                                              f"returned {r.returned}"),
    ERR_MEMORY: ("error", "out of memory: the program allocates more than this worker can hold"),
}


def relay_error(code: int, recorded: Recorded) -> RelayError:
    """The Relay error (not yet placed) of an error code compiled code recorded."""
    kind, message = ERRORS[code]
    return RelayError(message if isinstance(message, str) else message(recorded), kind=kind)


# ------------------------------------------------------------ the extension: arrays and C functions

ARRAY_SIZE, ARRAY_ITEMS, ARRAY_KIND, ARRAY_CAPACITY = 16, 24, 32, 40  # byte offsets in an Array
ARRAY_PINS, ARRAY_PIN_OWNER, ARRAY_OWNER_PINS = 48, 56, 64  # calls holding it, the first's state, its pins
NUMBERS_KIND = 0
# What `_array.layout()` must report: the offsets above, and the numbers kind's value.
ARRAY_LAYOUT = {"size": ARRAY_SIZE, "items": ARRAY_ITEMS, "kind": ARRAY_KIND, "capacity": ARRAY_CAPACITY,
                "pins": ARRAY_PINS, "pin_owner": ARRAY_PIN_OWNER, "owner_pins": ARRAY_OWNER_PINS,
                "numbers": NUMBERS_KIND}
# The C functions of the extension that compiled code calls (their addresses: `_array.addresses()`).
ARRAY_FUNCTIONS = {
    "relay_array_new": ir.FunctionType(PTR, [I64]),  # a numbers array of n zeros, or null
    "relay_array_push": ir.FunctionType(I32, [PTR, DOUBLE, RT_PTR]),  # 0; -1: out of memory; -2: held elsewhere
    "relay_array_copy": ir.FunctionType(PTR, [PTR]),  # a copy, or null
    "relay_array_incref": ir.FunctionType(ir.VoidType(), [PTR]),
    "relay_array_decref": ir.FunctionType(ir.VoidType(), [PTR]),  # null: nothing
    "relay_array_pin": ir.FunctionType(ir.VoidType(), [PTR, RT_PTR]),  # with the GIL: the call holds it
    "relay_array_unpin": ir.FunctionType(ir.VoidType(), [PTR, RT_PTR]),
    "relay_gil_release": ir.FunctionType(ir.VoidType(), []),  # once per call; what follows runs without the GIL
    "relay_gil_reacquire": ir.FunctionType(ir.VoidType(), []),  # before returning to the interpreter
    "relay_resident_bytes": ir.FunctionType(I64, []),  # the process's resident memory (no GIL needed)
}


class ABIMismatch(RuntimeError):
    """The _array extension is not the one this compiler was written for (a stale build, most likely)."""


REBUILD = "rebuild the extension (pip install -e .)"


def check_layout(layout: Mapping[str, int]) -> None:
    """Raises ABIMismatch unless `layout` (as `_array.layout()` reports it) is ARRAY_LAYOUT."""
    wrong = [f"{name}: the extension has {layout.get(name)}, compiled code uses {value}"
             for name, value in ARRAY_LAYOUT.items() if layout.get(name) != value]
    wrong += [f"{name}: unknown to compiled code" for name in sorted(set(layout) - set(ARRAY_LAYOUT))]
    if wrong:
        raise ABIMismatch(f"the _array extension's Array layout is not the one compiled code reads "
                          f"({'; '.join(wrong)}): {REBUILD}")


def check_functions(addresses: Mapping[str, int]) -> dict[str, int]:
    """ARRAY_FUNCTIONS' addresses; raises ABIMismatch unless `addresses` (as `_array.addresses()`
    reports them) holds exactly those functions, none at address 0."""
    wrong = [f"{name}: missing" for name in ARRAY_FUNCTIONS if name not in addresses]
    wrong += [f"{name}: unknown to compiled code" for name in sorted(set(addresses) - set(ARRAY_FUNCTIONS))]
    wrong += [f"{name}: at address 0" for name in ARRAY_FUNCTIONS if addresses.get(name) == 0]
    if wrong:
        raise ABIMismatch(f"the _array extension's function table is not the one compiled code calls "
                          f"({'; '.join(wrong)}): {REBUILD}")
    return {name: addresses[name] for name in ARRAY_FUNCTIONS}


def function_table() -> dict[str, int]:
    """The addresses of the C functions compiled code calls, once the extension's layout and function
    table are checked (the LLVM tier's start: engine.initialise); raises ABIMismatch otherwise."""
    check_layout(_array.layout())
    return check_functions(_array.addresses())
