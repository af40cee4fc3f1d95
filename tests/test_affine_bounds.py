"""Indexes affine in a loop's counter, checked once before the loop (compiler/bounds.py, versioned.py).

Each proof is run in both tiers: indexes just inside and just outside the range at each end,
empty ranges, bounds that are not whole, nan or infinite, arrays resized by a callee between
the test and the loop, re-kinded between calls, the same array under two names. Outputs must be
identical, and errors identical to the last character (message, position, stack). Then: the
optimised IR of an ordinary matrix product has a vectorized loop, and the unchecked loop still
counts its iterations for the time limit.
"""

from __future__ import annotations

import io

import pytest

from conftest import both, run_relay
from relay_lang.compiler import engine
from relay_lang.compiler.cache import DirectoryStore
from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter

WALK = """
@llvm
fn walk(a: array<number>, lo, hi, c, d) {
    let s = 0
    for i in lo..hi {
        let k = c * i + d
        s = s + a[k]
        a[k] = s
    }
    return s
}
let a = [1, 2, 3, 4, 5]
print(walk(a, LO, HI, C, D))
print(a)
"""


@pytest.mark.parametrize("lo, hi, c, d, error", [
    ("0", "5", "1", "0", None),  # every element, first and last included
    ("0", "6", "1", "0", "index 5 out of range for array of length 5"),  # one past the end
    ("-1", "5", "1", "0", "index -1 out of range"),  # one before the start
    ("1", "6", "1", "-1", None),  # i - 1
    ("0", "5", "1", "1", "index 5 out of range"),  # i + 1, past the end at the last iteration
    ("0", "5", "-1", "4", None),  # backwards
    ("0", "5", "-1", "5", "index 5 out of range"),  # backwards, past the end at the first iteration
    ("0", "6", "-1", "4", "index -1 out of range"),  # backwards, before the start at the last
    ("0", "3", "2", "0", None),  # strided: 0, 2, 4
    ("0", "4", "2", "0", "index 6 out of range"),
    ("0", "4.5", "1", "0", None),  # i up to 4
    ("0", "5.5", "1", "0", "index 5 out of range"),
    ("0.5", "3", "1", "0", "index 0.5 out of range"),  # an index that is not whole
    ("0", "3", "1", "0.5", "index 0.5 out of range"),
    ("0", "3", "0.5", "0", "index 0.5 out of range"),  # a coefficient that is not whole: 0, 0.5
    ("0", "3", "1", "(-0.0)", None),  # -0 is index 0
    ("3", "3", "1", "0", None),  # empty ranges run nothing
    ("5", "0", "1", "0", None),
    ("0", "(0/0)", "1", "0", None),
    ("0", "(1/0)", "1", "0", "index 5 out of range"),  # an endless loop stops at the first bad index
    ("(-1/0)", "3", "1", "0", "index -inf out of range"),
    ("0", "1", "1e300", "4", None),  # one iteration: c * 0 + d, however large c
    ("0", "2", "1e300", "4", "index 1e+300 out of range"),
    ("0", "2", "9007199254740993", "0", "out of range"),  # beyond 2**53: doubles round
    ("0", "3", "(0/0)", "0", "index nan out of range"),
    ("0", "3", "1", "1e300", "index 1e+300 out of range"),
])
def test_affine_indexes_fail_where_the_interpreter_does(lo: str, hi: str, c: str, d: str, error: str | None) -> None:
    src = WALK.replace("LO", lo).replace("HI", hi).replace("C,", c + ",").replace(" D)", f" {d})")
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert (error in compiled and compiled.startswith("ERROR")) if error else not compiled.startswith("ERROR")


@pytest.mark.parametrize("index", ["4 - i", "-i + 4", "3 - i + 1", "i * 2 - 4", "2 * i - 3", "(i - 1) * -1", "i * 0 + 2",
                                   "-(i - 4)", "n - 1 - i", "n - i", "i - n + 4", "i + i - 4", "i * 2 - i",
                                   "len(a) - 1 - i", "len(a) - i", "i + len(a) - 5", "len(b) - 1 - i"])
@pytest.mark.parametrize("lo, hi", [("0", "5"), ("1", "4"), ("-1", "4"), ("0", "6"), ("2", "2"), ("3", "0")])
def test_indexes_growing_or_falling_with_the_counter(index: str, lo: str, hi: str) -> None:
    """Growing indexes are tested at their smallest (first iteration) and largest (last), falling ones the
    other way round, others (i + i - 4: a sign the proof does not know) at both ends."""
    src = f"""
@llvm
fn f(a: array<number>, n) {{ let b = [1, 2, 3, 4]; let s = 0; for i in {lo}..{hi} {{ s = s * 2 + a[{index}] }} return s }}
print(f([1, 2, 3, 4, 5], 5))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled


NESTED = """
@llvm
fn matmul(a: array<number>, b: array<number>, c: array<number>, n, m) {
    for i in 0..n {
        let row = i * m
        for k in 0..m {
            let aik = a[row + k]
            let brow = k * m
            for j in 0..m { c[row + j] = c[row + j] + aik * b[brow + j] }
        }
    }
    return c
}
let a = array(LA, 1.5)
let b = array(LB, 0.25)
let c = array(LC, 1)
print(matmul(a, b, c, N, 3))
"""


@pytest.mark.parametrize("la, lb, lc, n, error", [
    ("9", "9", "9", "3", None),
    ("9", "9", "8", "3", "index 8 out of range for array of length 8"),  # c one short: its last element
    ("9", "8", "9", "3", "index 8 out of range for array of length 8"),  # b one short
    ("8", "9", "9", "3", "index 8 out of range for array of length 8"),  # a one short (a checked index)
    ("9", "9", "9", "4", "index 9 out of range for array of length 9"),  # one row too many
    ("9", "9", "9", "0", None),  # no rows
    ("9", "9", "9", "2.5", None),  # rows 0, 1, 2 (the counter stays whole)
])
def test_nested_loops_with_lets_fail_where_the_interpreter_does(la: str, lb: str, lc: str, n: str, error: str | None) -> None:
    src = NESTED.replace("LA", la).replace("LB", lb).replace("LC", lc).replace("N,", n + ",")
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert (error in compiled and compiled.startswith("ERROR")) if error else not compiled.startswith("ERROR")


@pytest.mark.parametrize("lo, hi, expected", [
    ("1", "4", "[0, 2.3333333333333335, 4.666666666666667, 9.333333333333334, 0]\n"),
    ("0", "4", "ERROR test.relay:4:32: error: index -1 out of range for array of length 5"),
    ("1", "5", "ERROR test.relay:4:50: error: index 5 out of range for array of length 5"),
])
def test_a_stencil_at_each_end(lo: str, hi: str, expected: str) -> None:
    src = f"""
@llvm
fn smooth(a: array<number>, b: array<number>, lo, hi) {{
    for i in lo..hi {{ b[i] = (a[i - 1] + a[i] + a[i + 1]) / 3 }}
    return b
}}
print(smooth([1, 2, 4, 8, 16], array(5, 0), {lo}, {hi}))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled and compiled.startswith(expected)


@pytest.mark.parametrize("n, expected", [
    ("3", "21\n"),  # a grows before each entry: 3, then 4, then 5 elements; the last index, 2 + r, in range
    ("4", "ERROR test.relay:9:34: error: index 3 out of range for array of length 3"),
])
def test_a_callee_resizes_the_array_between_the_test_and_the_loop(n: str, expected: str) -> None:
    """Each entry to the inner loop tests the array as it is then."""
    src = f"""
@llvm
fn grow(a: array<number>) {{ a.push(len(a)); return 0 }}
@llvm
fn f(a: array<number>, n) {{
    let s = 0
    for r in 0..3 {{
        grow(a)
        for i in 0..n {{ s = s + a[i + r] }}
    }}
    return s
}}
print(f([1, 2], {n}))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled and compiled.startswith(expected)


def test_a_callee_in_the_loop_given_the_array_keeps_every_check() -> None:
    src = """
@llvm
fn grow(a: array<number>) { a.push(7); return 0 }
@llvm
fn f(a: array<number>, n) {
    let s = 0
    for i in 0..n { grow(a)
        s = s + a[i + 1] }
    return s
}
print(f([1], 5))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled == "35\n"


@pytest.mark.parametrize("tail, expected", [
    ("print(total(b, 3))", "9\n9\n"),
    ("a[4] = \"y\"\nprint(total(a, 2))", "ERROR test.relay:9:7: type error: total: parameter 'a' expects array<number>, "
                                        "got array with a string element"),
])
def test_an_array_re_kinded_between_calls(tail: str, expected: str) -> None:
    """Compiled code cannot change an array's kind; interpreted code between two calls can: the
    second call is refused at its entry, before any loop, in both tiers alike."""
    src = f"""
@llvm
fn total(a: array<number>, n) {{ let s = 0; for i in 0..n {{ s = s + a[2 * i] }} return s }}
let a = [1, 2, 3, 4, 5]
let b = a
print(total(a, 3))
b = [1, 2, 3, 4, 5]
{tail}
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled and compiled.startswith(expected), compiled


@pytest.mark.parametrize("call, expected", [
    ("shift(a, a, 4)", "[1, 2, 3, 4, 5]"),  # the same array under two names: each write is seen by the next read
    ("shift(a, b, 4)", "[1, 2, 2, 2, 2]"),
])
def test_the_same_array_under_two_names(call: str, expected: str) -> None:
    src = f"""
@llvm
fn shift(dst: array<number>, src: array<number>, n) {{
    for i in 1..n + 1 {{ dst[i] = src[i - 1] + 1 }}
    return dst
}}
let a = [1, 1, 1, 1, 1]
let b = [1, 1, 1, 1, 1]
print({call})
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled == expected.replace("[1, 2, 3, 4, 5]", "[1, 2, 3, 4, 5]") + "\n"


@pytest.mark.parametrize("body, error", [
    ("let k = i * 2\nk = k + 1\ns = s + a[k]", "index 5 out of range"),  # a let assigned in the body
    ("s = s + a[i + off]\noff = off + 2", "index 6 out of range"),  # an offset the body changes
    ("i = i * 3\ns = s + a[i]", "index 6 out of range"),  # the counter assigned in the body
    ("let b = a\ns = s + b[i + 3]", "index 5 out of range"),  # an array declared in the body
    ("s = s + a[floor(a[i] * 3)]", "index 6 out of range"),  # data-dependent: checked
    ("s = s + a[i * i * 2]", "index 8 out of range"),  # not affine: checked
    ("if i == 2 { break }\ns = s + a[i + 2]", None),
    ("if i == 1 { continue }\ns = s + a[i + 2]", None),
])
def test_what_the_proof_leaves_checked(body: str, error: str | None) -> None:
    src = f"""
@llvm
fn f(a: array<number>) {{
    let s = 0
    let off = 0
    for i in 0..3 {{
        {body}
    }}
    return s
}}
print(f([1, 1.5, 2, 2.5, 3]))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert (error in compiled) if error else not compiled.startswith("ERROR")


@pytest.mark.parametrize("n, length, error", [
    ("3", "9", None),
    ("3", "8", "index 8 out of range for array of length 8"),  # the largest offset of the last body
    ("2.5", "9", None),
    ("3.5", "10", "index 11 out of range for array of length 10"),  # a fourth body starts at 9
])
def test_offsets_from_one_base_are_tested_together(n: str, length: str, error: str | None) -> None:
    """b[l + 2], b[l], b[l + 1]: the test before the loop takes the smallest and the largest offset."""
    src = f"""
@llvm
fn bodies(b: array<number>, n) {{
    let s = 0
    for i in 0..n {{
        let l = i * 3
        s = s + b[l + 2] * b[l] - b[l + 1]
        b[l + 1] = s
    }}
    return s
}}
print(bodies(array({length}, 2), {n}))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert (error in compiled and compiled.startswith("ERROR")) if error else not compiled.startswith("ERROR")


STRIDED = """
@llvm
fn strided(a: array<number>, j, n, step) {
    let s = 0
    while j CMP n {
        s = s + a[j] + a[j + 1]
        a[j] = s
        j += step
    }
    return s
}
print(strided([1, 2, 3, 4, 5], J, N, STEP))
"""


@pytest.mark.parametrize("cmp, j, n, step, error", [
    ("<", "0", "4", "1", None),
    ("<", "0", "5", "1", "index 5 out of range for array of length 5"),
    ("<=", "0", "3", "1", None),
    ("<=", "0", "4", "1", "index 5 out of range"),
    ("<", "-1", "3", "1", "index -1 out of range"),
    ("<", "0", "4.5", "2", "index 5 out of range"),  # 0, 2, 4
    ("<", "0", "3.5", "2", None),
    ("<", "1", "3", "0.5", "index 1.5 out of range"),  # a step that is not whole
    ("<", "0.5", "3", "1", "index 0.5 out of range"),
    ("<", "0", "4", "-1", "index -1 out of range"),  # a step backwards
    ("<", "3", "2", "1", None),  # runs nothing
    ("<", "0", "(0/0)", "1", None),
    ("<", "0", "(1/0)", "1", "index 5 out of range"),
    ("<", "0", "(1/0)", "1e300", "index 1e+300 out of range"),
    ("<", "0", "len(a) - 1", "1", None),  # a bound from the array's length
    ("<", "0", "len(a)", "2", "index 5 out of range"),
])
def test_strided_while_loops_fail_where_the_interpreter_does(cmp: str, j: str, n: str, step: str, error: str | None) -> None:
    if n.startswith("len"):  # a bound read in the function
        cmp, n = f"{cmp} {n} + 0 *", "1"
    src = STRIDED.replace("CMP", cmp).replace("J,", j + ",").replace("N,", n + ",").replace("STEP)", step + ")")
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert (error in compiled and compiled.startswith("ERROR")) if error else not compiled.startswith("ERROR")


@pytest.mark.parametrize("j, n, step", [("(-0.0)", "3", "1"), ("0", "4.5", "2"), ("1", "3", "0 * 1"), ("(-0.0)", "1", "0 + 2")])
def test_a_strided_variable_keeps_its_value(j: str, n: str, step: str) -> None:
    """The unchecked copy counts in an i64 too: the variable's double, read in the body and after the
    loop, is the interpreter's (-0 on entry included)."""
    src = f"""
@llvm
fn f(a: array<number>, j) {{
    let s = 0
    let r = 0
    while j < {n} {{
        r = r + 1 / j
        s = s + a[j]
        if s > 20 {{ break }}
        j += {step}
    }}
    return [s, r, j]
}}
print(f([1, 2, 3, 4, 5], {j}))
"""
    interpreted, compiled = both(src, time_limit=0.5)
    assert interpreted == compiled


@pytest.mark.parametrize("body, error", [
    ("s = s + a[j]\nif j == 2 { j = 7 }\nj += 1", "index 8 out of range"),  # the variable also set elsewhere
    ("j += 1\ns = s + a[j]", "index 5 out of range"),  # the step is not the last statement
    ("s = s + a[j]\nj += a[0]", "index 5 out of range"),  # a step read from an array (the same here)
    ("if j == 1 { j += 1\ncontinue }\ns = s + a[j + 1]\nj += 1", "index 5 out of range"),
])
def test_what_a_while_loop_leaves_checked(body: str, error: str) -> None:
    src = f"""
@llvm
fn f(a: array<number>) {{
    let s = 0
    let j = 0
    while j < 10 {{
        {body}
    }}
    return s
}}
print(f([1, 1.5, 2, 2.5, 3]))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled and error in compiled


@pytest.mark.parametrize("body, call", [
    ("h[floor(v)] += 1", "walk(a, h)"),  # writes another array: walked in place
    ("h[floor(v)] += 1", "walk(a, a)"),  # the list itself under another name: a snapshot
    ("a[1] = 99\nh[0] += v", "walk(a, h)"),  # the list itself
    ("h[0] = v\nh = a", "walk(a, h)"),  # a name the body rebinds
    ("let t = a\nt[2] = v", "walk(a, h)"),  # a name the body declares
    ("h[0] = v + grow(h)", "walk(a, h)"),  # a callee given an array
    ("h[0] = v + grow(a)", "walk(a, h)"),
])
def test_for_in_walks_a_snapshot_only_when_its_list_may_change(body: str, call: str) -> None:
    src = f"""
@llvm
fn grow(x: array<number>) {{ x.push(1); return 0 }}
@llvm
fn walk(a: array<number>, h: array<number>) {{
    let s = 0
    for v in a {{
        {body}
        s = s * 3 + v
    }}
    return s
}}
let a = [1, 2, 3, 0, 4]
let h = array(5, 0)
print({call}, a, h)
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled and not compiled.startswith("ERROR"), compiled


def optimised_ir(src: str, monkeypatch, tmp_path) -> str:
    """The IR LLVM's optimiser made of the program's compiled functions."""
    seen: list[str] = []
    real = engine.compile_object

    def spy(ir_text, target, pipeline):
        seen.append(str(engine.optimise(ir_text, target, pipeline)))
        return real(ir_text, target, pipeline)

    monkeypatch.setattr(engine, "compile_object", spy)
    Interpreter(out=io.StringIO(), tier="llvm", store=DirectoryStore(tmp_path)).run(src, "k.relay")
    return "\n".join(seen)


def test_an_ordinary_matrix_product_is_vectorized(monkeypatch, tmp_path) -> None:
    """No check, tick or runtime state left in the inner loop: LLVM vectorizes it (no fast-math)."""
    src = """
@llvm
fn matmul(a: array<number>, b: array<number>, n) {
    let c = array(n * n, 0)
    for i in 0..n {
        let row = i * n
        for k in 0..n {
            let aik = a[row + k]
            let brow = k * n
            for j in 0..n { c[row + j] = c[row + j] + aik * b[brow + j] }
        }
    }
    return c
}
matmul([1, 2, 3, 4], [5, 6, 7, 8], 2)
"""
    text = optimised_ir(src, monkeypatch, tmp_path)
    assert "llvm.loop.isvectorized" in text
    assert "fmul <2 x double>" in text or "fmul <4 x double>" in text or "fmul <8 x double>" in text
    assert "vec.epilog.vector.body" in text  # the remainder vectorized too: no use of the counter after the loop
    assert " fast " not in text and "contract" not in text


def test_an_unchecked_loop_still_stops_at_the_time_limit() -> None:
    """The unchecked copy counts its iterations per chunk: an endless one is stopped as the checked one is."""
    src = "@llvm\nfn f(a: array<number>) { for i in 0..1e15 { a[0 * i] = i } return a[0] }\nf([0])"
    with pytest.raises(RelayError, match="time limit"):
        run_relay(src, tier="llvm", time_limit=0.3)


@pytest.mark.parametrize("body", [
    "if v == 65540 { break }\ns += v",  # a break just past the first chunk
    "if v % 3 == 0 { continue }\ns += v",
    "if v == 70000 { return -s }\ns += v",
    "s += v / (v - 65536)",  # division by zero is no error: inf, then -inf
    "s += a[floor(v)]",  # a data-dependent index in the chunked body, failing at the last item
])
def test_an_innermost_for_in_counts_its_ticks_per_chunk_and_ends_as_the_interpreter(body: str) -> None:
    """An innermost `for x in array` runs in chunks of 65,536 iterations with no budget code inside;
    break, continue, return and errors end it where the interpreter does."""
    src = f"""
@llvm
fn walk(a: array<number>) {{
    let s = 0
    for v in a {{
        {body}
    }}
    return s
}}
let a = []
for i in 0..70001 {{ a.push(i) }}
print(walk(a))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled, (interpreted, compiled)


def test_an_endless_for_in_stops_at_the_time_limit() -> None:
    """A for-in whose callee runs a loop under 65,536 iterations per item (each call's loop counts
    its own ticks from 0, never reaching a check), 3 * 10^11 in all: the chunk's budget check still
    comes every 65,536 items."""
    src = ("@llvm\nfn slow(v: number) { let t = 0\n let k = 0\n while k < 60000 { t += v\n k += 1 }\n return t }\n"
           "@llvm\nfn f(a: array<number>) { let s = 0\n for v in a { s += slow(v) }\n return s }\n"
           "print(f(array(5000000, 1)))")
    with pytest.raises(RelayError, match="time limit"):
        run_relay(src, tier="llvm", time_limit=0.3)


@pytest.mark.parametrize("body, step", [
    ("if a[0] > 0 { i += 1 }\nc += 1", "i += 1"),  # the variable moved by more than the step
    ("a[0] += 1\ni = i * 2", "i += 1"),
])
def test_a_while_loop_whose_variable_moves_elsewhere_is_not_strided(body: str, step: str) -> None:
    """A strided copy drives its variable by the step alone: any other write to it keeps the loop as written."""
    src = f"""
@llvm
fn f(a: array<number>, n) {{
    let c = 0
    let i = 1
    while i < n {{
        {body}
        {step}
    }}
    return a[0] * 1000 + c * 10 + i
}}
print(f([1], 10), f([0], 100))
"""
    interpreted, compiled = both(src)
    assert interpreted == compiled and not compiled.startswith("ERROR"), (interpreted, compiled)
