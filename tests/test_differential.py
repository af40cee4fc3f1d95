"""Differential test: random programs of the numeric subset, run in both tiers.

Hypothesis writes functions of numbers and arrays (arithmetic with IEEE edge
values and arbitrary doubles, `**` and `pow` on any base and exponent, math
builtins, comparisons, branches, loops, loops that rebind or grow the array
they walk, indexing that may go out of range, pushes, return annotations that
may not hold); each runs in the interpreter and compiled with `--tier llvm`.
Outputs must be identical to the last bit, or the errors must be identical
(message, position and stack). Further properties: rebinding a called global
with `set`, and nested loops stopped by the time limit.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import run_relay
from relay_lang.errors import RelayError

NUMBERS = ["0", "1", "2", "3", "0.5", "1e308", "1e-308", "7", "2.5", "(0/0)", "(1/0)", "(-1/0)", "(-0.0)", "10", "0.1"]
UNARY = ["sqrt", "floor", "ceil", "round", "abs", "exp", "log", "sin", "cos", "atan"]
BINARY_FNS = ["min", "max", "pow", "atan2"]
LOCALS = ["x0", "x1", "x2"]


DOUBLES = st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"({x!r})")


def num_expr(depth: int = 3, names: tuple[str, ...] = tuple(LOCALS)) -> st.SearchStrategy[str]:
    leaves = st.one_of(st.sampled_from(NUMBERS + ["a", "b", "len(arr)", *names]), DOUBLES)
    if depth == 0:
        return leaves
    sub = num_expr(depth - 1, names)
    return st.one_of(
        leaves,
        st.builds(lambda x, op, y: f"({x} {op} {y})", sub, st.sampled_from(["+", "-", "*", "/", "%", "**"]), sub),
        st.builds(lambda x: f"-{x}", sub),
        st.builds(lambda f, x: f"{f}({x})", st.sampled_from(UNARY), sub),
        st.builds(lambda f, x, y: f"{f}({x}, {y})", st.sampled_from(BINARY_FNS), sub, sub),
        st.builds(lambda x, y, f: f"{f(x, y)}", DOUBLES, DOUBLES,
                  st.sampled_from([lambda x, y: f"({x} ** {y})", lambda x, y: f"pow({x}, {y})"])),
        st.builds(lambda i: f"arr[{i}]", st.sampled_from(["0", "1", "2", "0", "1", "len(arr) - 1", "0", "1", "5", "0.5", "-1"])),
    )


def bool_expr() -> st.SearchStrategy[str]:
    cmp = st.builds(lambda x, op, y: f"{x} {op} {y}", num_expr(1), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
                    num_expr(1))
    return st.one_of(cmp, st.builds(lambda p, op, q: f"({p} {op} {q})", cmp, st.sampled_from(["&&", "||"]), cmp),
                     st.builds(lambda p: f"!({p})", cmp))


def statements(depth: int = 2) -> st.SearchStrategy[list[str]]:
    simple = st.one_of(
        st.builds(lambda v, e: f"{v} = {e}", st.sampled_from(LOCALS), num_expr()),
        st.builds(lambda v, op, e: f"{v} {op} {e}", st.sampled_from(LOCALS), st.sampled_from(["+=", "-=", "*=", "/=", "%="]),
                  num_expr(2)),
        st.builds(lambda i, e: f"arr[{i}] = {e}", st.sampled_from(["0", "1", "len(arr) - 1", "x1"]), num_expr(2)),
        st.builds(lambda e: f"arr.push({e})", num_expr(2)),
    )
    if depth == 0:
        return st.lists(simple, max_size=3)
    inner = statements(depth - 1)
    block = st.builds(lambda body: "{ " + "; ".join(body) + " }", inner)
    compound = st.one_of(
        st.builds(lambda c, t, e: f"if {c} {t} else {e}", bool_expr(), block, block),
        st.builds(lambda n, body: f"for i{depth} in 0..{n} {body}", st.integers(0, 4), block),
        st.builds(lambda body: f"for v{depth} in arr {{ x2 += v{depth}; {body[2:]}", block),
        st.builds(lambda e, body: f"for v{depth} in arr {{ arr = [{e}, v{depth}]; x1 += v{depth}; {body[2:]}",
                  num_expr(1), block),
        st.builds(lambda body: f"for v{depth} in arr {{ if len(arr) < 64 {{ arr.push(v{depth} * 2) }}; {body[2:]}",
                  block),
        st.builds(lambda n, body: f"if true {{ let w = 0\n while w < {n} {{ w += 1; {body[2:]} }}", st.integers(0, 3), block),
    )
    return st.lists(st.one_of(simple, compound), max_size=4)


INITIALISERS = [num_expr(2, tuple(LOCALS[:k])) for k in range(len(LOCALS))]
BODIES = statements()
RESULTS = num_expr(2)
RETURNS = st.sampled_from(["", "", "", " -> array", " -> array<number>", " -> any", " -> number", " -> bool"])


@st.composite
def programs(draw: st.DrawFn) -> str:
    lets = [f"    let {v} = {draw(INITIALISERS[k])}" for k, v in enumerate(LOCALS)]
    body = [f"    {s}" for s in draw(BODIES)]
    result = draw(RESULTS)
    values = draw(st.lists(st.sampled_from(NUMBERS), min_size=3, max_size=5))
    header = f"fn f(a, b, arr: array<number>){draw(RETURNS)} {{\n"
    return (header + "\n".join(lets + body) + f"\n    return [x0, x1, x2, {result}]\n}}\n"
            f"let arr = [{', '.join(values)}]\nprint(f({draw(st.sampled_from(NUMBERS))}, {draw(st.sampled_from(NUMBERS))}, arr))\n"
            "print(arr)\n")


def outcome(source: str, tier: str) -> str:
    try:
        return run_relay(source, tier=tier, time_limit=20)[0]
    except RelayError as err:
        if err.kind == "limit":  # which budget runs out first, and where, depends on each tier's speed
            return "ERROR over a budget"
        return f"ERROR {err}"


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_both_tiers_agree(source: str) -> None:
    interpreted = outcome(source, "interpret")
    compiled = outcome(source, "llvm")
    assert "compile error" not in compiled, compiled
    assert interpreted == compiled, source


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(num_expr(2, ()), num_expr(2, ()))
def test_set_rebinding_is_seen_by_compiled_callers(first: str, second: str) -> None:
    body = lambda e: e.replace("arr", "[x, 2, 3]").replace("a", "x").replace("b", "x")  # noqa: E731
    source = (f"fn h(x) {{ {body(first)} }}\nfn f(n) {{ let s = 0\n for i in 0..n {{ s += h(i) }}\n s }}\n"
              f"print(f(3))\nset h = fn(x) {{ {body(second)} }}\nprint(f(3))\n")
    assert outcome(source, "interpret") == outcome(source, "auto"), source


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@example(["for i in 0..3000", "for i in 0..3000"])
@given(st.lists(st.sampled_from(["while true", "for i in 0..3000", "for j in 0..1e9", "for k in 0..70000"]),
                min_size=2, max_size=3))
def test_nested_loops_stop_at_the_time_limit_in_both_tiers(headers: list[str]) -> None:
    loops = "while true " + "".join(f"{{ {h} " for h in headers) + "{ s += 1 }" + " }" * len(headers)
    source = f"fn f() {{ let s = 0\n {loops}\n s }}\nf()\n"
    for tier in ("interpret", "llvm"):
        try:
            run_relay(source, tier=tier, time_limit=0.2)
            raise AssertionError(f"{tier}: ran to the end")
        except RelayError as err:
            assert (err.kind, err.message) == ("limit", "time limit of 0.2 s exceeded"), (tier, str(err))


AFFINE_STARTS = ["1", "0", "-1", "2", "0.5", "(-0.0)", "(0/0)", "n"]
AFFINE_ENDS = ["n - 1", "n", "n + 1", "4.5", "3", "0", "(0/0)"]


@st.composite
def affine_loops(draw: st.DrawFn) -> str:
    """An innermost loop over an array (counted, or a strided while), its indexes affine in the counter
    (through lets, an outer counter)."""
    c, d = draw(st.sampled_from(["1", "-1", "2", "0", "3", "0.5", "r"])), draw(st.sampled_from(["0", "1", "-1", "r", "n - 1", "2"]))
    index = draw(st.sampled_from([f"{c} * i + {d}", "k", "k + 1", "i - 1", "row + i", f"-i + {d}"]))
    other = draw(st.sampled_from(["i", "k", "row", "i + r", "n - 1 - i"]))
    write = draw(st.sampled_from(["dst", "src"]))  # src: the same array as the one read, under two names
    lo, hi = draw(st.sampled_from(AFFINE_STARTS)), draw(st.sampled_from(AFFINE_ENDS))
    size = draw(st.sampled_from([5, 4, 7, 3, 1, 0]))
    step = draw(st.sampled_from(["", "1", "2", "r + 1", "3"]))  # a strided while loop, or a for loop
    head = f"for i in {lo}..{hi} {{" if not step else f"let i = {lo}\n  while i {draw(st.sampled_from(['<', '<=']))} {hi} {{"
    return (f"fn f(src: array<number>, dst: array<number>, n) {{\n let s = 0\n"
            f" for r in 0..2 {{\n  let row = r * 2\n  {head}\n   let k = {c} * i + {d}\n"
            f"   s = s + src[{index}]\n   {write}[{other}] = s\n" + (f"   i += {step}\n" if step else "")
            + "  }\n }\n return s\n}\n"
            f"let a = array({size}, 1.5)\nprint(f(a, array({size}, 0), {size}))\nprint(f(a, a, {size}), a)\n")


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(affine_loops())
def test_affine_indexes_agree(source: str) -> None:
    """Indexes checked once before the loop (compiler/bounds.py) fail, or not, exactly as in the interpreter."""
    interpreted = outcome(source, "interpret")
    compiled = outcome(source, "llvm")
    assert "compile error" not in compiled, compiled
    assert interpreted == compiled, source
