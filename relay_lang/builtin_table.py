"""The builtin functions' names and arities, and the limits and messages both tiers share.

Read by the resolver, the code generator and compiled-code typing; the
implementations, bound to an interpreter, are in `builtins`.
"""

from __future__ import annotations

from .values import format_number

MATH1 = ("abs", "sqrt", "sin", "cos", "tan", "atan", "exp", "log", "floor", "ceil", "round")  # number -> number
MATH2 = ("atan2", "pow")  # (number, number) -> number

# (fewest, most) arguments of each builtin; None: any number.
ARITY: dict[str, tuple[int, int | None]] = {
    "print": (0, None), "len": (1, 1), "push": (2, 2), "pop": (1, 1), "str": (1, 1),
    "num": (1, 1), "type": (1, 1), "keys": (1, 1), "has": (2, 2), "del": (2, 2),
    "array": (1, 2), "slice": (2, 3), "join": (1, 2), "split": (2, 2), "atan2": (2, 2),
    "pow": (2, 2), "min": (1, None), "max": (1, None), "error": (1, 1), "clock": (0, 0),
    "send": (2, None), "message": (2, None), "string": (1, 1),  # Relay 0.3's name for str
    **{name: (1, 1) for name in MATH1},
}
BUILTIN_NAMES = frozenset(ARITY)

MAX_ARRAY = 50_000_000  # elements made at once by array(n, v) or a range: the memory budget
# Resizing (push, pop, a non-number stored) an array that compiled code of another thread holds.
ARRAY_BUSY_MESSAGE = "array is in use by compiled code in another thread: its length and kind cannot change now"


def array_budget_message(size: float) -> str:
    return f"array: size {format_number(size)} is over the memory budget of {MAX_ARRAY} elements"


def arity_message(name: str, expected: int, got: int) -> str:
    return f"{name} expects {expected} argument{'s' if expected != 1 else ''}, got {got}"


def too_deep_message(max_depth: int) -> str:
    return f"recursion too deep: more than {max_depth} nested calls"


def native_stack_message(depth: int, max_depth: int) -> str:
    return f"recursion too deep: {depth} nested calls fill the native stack (--max-depth is {max_depth})"
