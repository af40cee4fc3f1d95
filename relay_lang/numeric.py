"""IEEE-754 / C libm semantics for the operators and math builtins.

Python's float operators raise where C returns inf or nan (`1/0`, `2.0**10000`,
`math.sqrt(-1)`), `%` is floored rather than C's fmod, and `**` can return a
complex. These functions give exactly the results of C (and so of the LLVM
tier): numbers never raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

INF = math.inf
NAN = math.nan


def div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0:
            return NAN
        return math.copysign(INF, a) * math.copysign(1.0, b)


def fmod(a: float, b: float) -> float:
    """C's fmod: the result has the sign of `a`; `x % 0` and `inf % y` are nan."""
    try:
        return math.fmod(a, b)
    except ValueError:
        return NAN


def _odd_integer(y: float) -> bool:
    return y.is_integer() and math.fmod(y, 2.0) != 0


def power(x: float, y: float) -> float:
    """C's pow, including the cases where Python's math.pow raises."""
    try:
        return math.pow(x, y)
    except OverflowError:
        # Overflow: +-inf, negative only for a negative base to an odd power.
        return -INF if x < 0 and _odd_integer(y) else INF
    except ValueError:
        if x == 0:  # 0 ** negative: a pole
            return math.copysign(INF, x) if _odd_integer(y) else INF
        return NAN  # negative base, non-integral exponent


def _signed_zero(result: float, x: float) -> float:
    """C keeps the sign of x on a zero result (ceil(-0.5) is -0)."""
    return math.copysign(0.0, x) if result == 0 else result


def floor(x: float) -> float:
    if not math.isfinite(x):
        return x
    return _signed_zero(float(math.floor(x)), x)


def ceil(x: float) -> float:
    if not math.isfinite(x):
        return x
    return _signed_zero(float(math.ceil(x)), x)


def round_half_away(x: float) -> float:
    """C's round: halves away from zero (`round(2.5)` 3, `round(-2.5)` -3)."""
    if not math.isfinite(x):
        return x
    t = float(math.trunc(x))
    if abs(x - t) >= 0.5:
        t += math.copysign(1.0, x)
    return _signed_zero(t, x)


def sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 or x != x else NAN


def log(x: float) -> float:
    if x > 0:
        return math.log(x)  # inf stays inf
    if x == 0:
        return -INF
    return NAN  # negative or nan


def exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def _periodic(f: Callable[[float], float]) -> Callable[[float], float]:
    def g(x: float) -> float:
        return f(x) if math.isfinite(x) else NAN
    g.__name__ = f.__name__
    return g


sin = _periodic(math.sin)
cos = _periodic(math.cos)
tan = _periodic(math.tan)


def fmin(values: tuple[float, ...]) -> float:
    """Smallest by `<`, the first on ties; nan when any value is nan."""
    best = values[0]
    for v in values:
        if v != v:
            return NAN
        if v < best:
            best = v
    return best


def fmax(values: tuple[float, ...]) -> float:
    best = values[0]
    for v in values:
        if v != v:
            return NAN
        if v > best:
            best = v
    return best
