"""Relay arrays: one object shared by both tiers, flat doubles until it holds something else.

Kinds (numbers -> values, once, in place), aliasing across the tiers, arrays of
arrays, push during iteration, and the checks compiled loops skip when a test
before the loop proves them.
"""

from __future__ import annotations

import gc
import pickle
import sys

import pytest

from conftest import both, run_relay
from relay_lang.errors import RelayError
from relay_lang.values import Array
from relay_workers.wire import from_wire, to_wire


def value_of(src: str, tier: str = "interpret") -> Array:
    value = run_relay(src, tier=tier)[1]
    assert type(value) is Array
    return value


def test_arrays_of_numbers_are_flat_until_they_hold_something_else() -> None:
    assert value_of("[1, 2.5, -0]").kind == "numbers"
    assert value_of("array(3, 0)").kind == "numbers"
    assert value_of("[]").kind == "numbers"
    assert value_of("let a = [1, 2]\na.push(\"x\")\na").kind == "values"
    assert value_of("array(2, null)").kind == "values"
    assert value_of("[[1], [2]]").kind == "values"
    changed = value_of("let a = [1, 2, 3]\nlet alias = a\na[1] = true\nalias")
    assert changed.kind == "values" and changed.tolist() == [1.0, True, 3.0]
    assert value_of("let a = [1, \"x\"]\na[1] = 2\na").kind == "values"  # a kind never goes back
    assert sys.getsizeof(value_of("array(1000000, 0.5)")) < 8_100_000  # 8 bytes a number


def test_a_kind_change_keeps_values_and_identity() -> None:
    src = """
let a = [1, -0, 0.1, 1e308]
let b = a
b.push("end")
print(a == b, a, len(a))
print(str(a[1]), a[2] + a[2])
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled == "true [1, -0, 0.1, 1e+308, \"end\"] 5\n-0 0.2\n"


def test_an_array_that_changes_kind_mid_loop() -> None:
    src = """
@llvm
fn total(a: array<number>) { let s = 0.0; for x in a { s += x } return s }
let a = [1, 2, 3]
let seen = []
for i in 0..6 {
    seen.push(total(a))
    if i == 1 { a[2] = "x" }
    if i == 2 { a[2] = 30 }
    if i == 3 { a.push(4) }
}
print(seen, a)
"""
    # total(a) fails while a holds a string, and is run by the interpreter when a holds only numbers
    # but is of the values kind: the same answers either way.
    interpreted, compiled = both(src.replace('    if i == 1 { a[2] = "x" }\n', ""))
    assert interpreted == compiled == "[6, 6, 6, 33, 37, 37] [1, 2, 30, 4]\n"
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert "parameter 'a' expects array<number>, got array with a string element" in compiled


def test_compiled_writes_and_pushes_are_seen_through_every_alias() -> None:
    src = """
@llvm
fn squares(a: array<number>) { for i in 0..len(a) { a[i] = i * i } }
@llvm
fn grow(a: array<number>, n) { for i in 0..n { a.push(i) } return len(a) }
@llvm
fn shift(a: array<number>, b: array<number>) { for i in 0..len(a) - 1 { a[i + 1] = b[i] + 1 } }
@llvm
fn total(a: array<number>) { let s = 0.0; for x in a { s += x } return s }
let a = array(4, 0)
let alias = a
squares(a)
print(alias)
print(grow(alias, 3), a)
shift(a, a)
print(a)
let rows = [[1, 2], [3, 4]]
squares(rows[1])
print(rows)
rows[0].push("x")
print(rows, total(rows[1]))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled == ("[0, 1, 4, 9]\n7 [0, 1, 4, 9, 0, 1, 2]\n[0, 1, 2, 3, 4, 5, 6]\n"
                                       "[[1, 2], [0, 1]]\n[[1, 2, \"x\"], [0, 1]] 1\n")


def test_push_during_iteration_walks_a_snapshot() -> None:
    src = """
@llvm
fn doubled(a: array<number>) { for x in a { a.push(x * 2) } return len(a) }
let a = [1, 2, 3]
print(doubled(a), a)
let b = ["a", 1]
for x in b { b.push(x) }
print(b)
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled == "6 [1, 2, 3, 2, 4, 6]\n[\"a\", 1, \"a\", 1]\n"


@pytest.mark.parametrize("call, error", [
    ("dot([1, 2, 3], [4, 5], 3)", "index 2 out of range for array of length 2"),
    ("dot([1, 2, 3], [4, 5, 6], 3.5)", "index 3 out of range for array of length 3"),
    ("dot([1, 2, 3], [4, 5, 6], -1)", None),
    ("from(0.5, [1, 2, 3])", "index 0.5 out of range for array of length 3"),
    ("from(-1, [1, 2, 3])", "index -1 out of range for array of length 3"),
    ("at([1, 2, 3], 3)", "index 3 out of range for array of length 3"),
    ("at([1, 2, 3], 0.5)", "index 0.5 out of range for array of length 3"),
    ("at([1, 2, 3], 0/0)", "index nan out of range for array of length 3"),
])
def test_compiled_loops_fail_where_the_interpreter_does(call: str, error: str | None) -> None:
    """Loops run without per-index checks only when a test before the loop proves them all."""
    src = f"""
@llvm
fn dot(x: array<number>, y: array<number>, n) {{ let s = 0.0; for i in 0..n {{ s += x[i] * y[i]; x[i] = s }} return s }}
@llvm
fn from(start, a: array<number>) {{ let s = 0.0; for i in start..3 {{ s += a[i] }} return s }}
@llvm
fn at(a: array<number>, j) {{ let s = 0.0; for i in 0..2 {{ s += a[j] + a[i] }} return s }}
print({call})
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert (error in compiled) if error else not compiled.startswith("ERROR")


@pytest.mark.parametrize("far, expected", [(1, "2\n"), (3, "index 3 out of range for array of length 2")])
def test_a_let_in_the_loop_body_is_never_trusted(far: int, expected: str) -> None:
    """A variable declared in the body gets a new value each iteration: the test before the loop cannot cover it."""
    src = f"""
@llvm
fn alias_in_body(a: array<number>) {{ let s = 0; for i in 0..len(a) {{ let b = a; s = s + b[i] }} return s }}
@llvm
fn index_in_body(a: array<number>, far) {{
    let s = 0
    let r = 0
    while r < 2 {{ for i in 0..1 {{ let j = r * far; s = a[j]; a[j] = s }} r = r + 1 }}
    return s
}}
print(alias_in_body(array(10, 1)))
print(index_in_body([1, 2], {far}))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert expected in compiled and (compiled.startswith("10\n") or compiled.startswith("ERROR"))


def test_the_array_type_from_python() -> None:
    a = Array([1.0, 2.0])
    assert a == [1.0, 2.0] and [1.0, 2.0] == a and a != [1.0] and a.kind == "numbers"
    assert pickle.loads(pickle.dumps(a)) == a and repr(a) == "Array([1.0, 2.0])"
    assert a[0.0] == 1.0 and a[-1] == 2.0 and a[0:1] == [1.0] and list(a) == [1.0, 2.0]
    for key in (2.0, 1e300, -1.0, 0.5, float("nan"), True, "0", None):
        with pytest.raises(RelayError):
            a[key]  # type: ignore[index]
    with pytest.raises(RelayError, match="array index must be a number, got bool"):
        a[True] = 1.0  # type: ignore[index]
    assert a[-0.0] == 1.0
    nested = Array()
    for _ in range(1_000_000):  # freed without a deep C recursion
        nested = Array([nested])
    del nested
    cycle = Array()
    cycle.append(cycle)
    assert repr(cycle) == "Array([Array(...)])"
    del cycle
    assert gc.collect() >= 1
    assert from_wire([1, 2.5]).kind == "numbers"  # type: ignore[union-attr]
    assert to_wire(Array([1.0, float("inf"), "s"])) == [1.0, {"$num": "inf"}, "s"]


def test_an_array_too_large_is_named_in_relay_number_format() -> None:
    src = "@llvm\nfn make(n) { return array(n, 0) }\nprint(len(make(1e20)))\n"
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert "array: size 1e+20 is over the memory budget of 50000000 elements" in compiled
