"""The compiled tier: same results and errors as the interpreter, budgets, arrays, cache."""

from __future__ import annotations

import io
import re
import sys
import time
import tracemalloc

import pytest

from conftest import both, relay_cli, run_relay
from relay_lang.compiler import engine
from relay_lang.compiler.cache import DirectoryStore
from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_program


def explain(src: str, tier: str = "auto", store=None) -> tuple[str, list[str], Interpreter]:
    out = io.StringIO()
    interp = Interpreter(out=out, err=io.StringIO(), tier=tier, store=store)
    run_program(src, "t.relay", interp=interp)
    return out.getvalue(), interp.router.explain(), interp


def test_numeric_subset_gives_identical_results() -> None:
    src = """
fn k(a: array<number>, x, flag: bool) {
    let s = 0
    for v in a { s += v * v - x / 3 }
    let i = 0
    while i < len(a) && flag { a[i] = a[i] ** 0.5 + i % 3; i += 1 }
    a.push(min(s, x, 0/0 + 1)); push(a, max(-0.0, 0.0))
    let t = [floor(-2.5), ceil(-0.5), round(-2.5), round(0.49999999999999994), abs(-3), sqrt(-1), exp(1000)]
    for v in t { a.push(v) }
    a.push(log(0) + atan2(1, -0.0) + sin(1e22) + cos(3) + tan(2) + atan(7) + pow(-8, 1/3) + 7 % -3)
    if !(s > 100) || x == 2 { return s } else { return -s }
}
let data = [1, 2.5, 1e300, -7, 0.1]
print(k(data, 2, true), data)
"""
    interp, compiled = both(src)
    assert interp == compiled
    assert "ERROR" not in interp


@pytest.mark.parametrize("src", [
    "fn f(a: array<number>) { a[len(a)] }\nf([1])",
    "fn f(a: array<number>) { a[0.5] = 1 }\nf([1])",
    "fn f(a: array<number>) { a[-1] }\nf([1])",
    "fn f(a: array<number>) { a[0/0] }\nf([1])",
    "fn f(n) { array(n, 0) }\nf(-1)",
    "fn f(n) { array(n, 0) }\nf(1.5)",
    "fn f(n) { array(n, 0) }\nf(1e12)",
    "fn down(n) { if n == 0 { return 0 } return 1 + down(n - 1) }\ndown(20000)",
    "fn g(a: array<number>) { a[5] }\nfn f(a: array<number>) { let x = 1\n return x + g(a) }\nf([1, 2])",
])
def test_errors_are_the_same_relay_errors(src: str) -> None:
    interp, compiled = both(src)
    assert interp.startswith("ERROR") and interp == compiled


def test_out_of_range_index_in_compiled_code_is_a_relay_error() -> None:
    with pytest.raises(RelayError) as info:
        run_relay("@llvm\nfn at(a: array<number>, i) {\n  return a[i]\n}\nat([1, 2], 5)")
    err = info.value
    assert err.message == "index 5 out of range for array of length 2"
    assert (err.pos.line, err.pos.col) == (3, 11)
    assert [(name, p.line) for name, p, _ in err.stack] == [("at", 5)]


def test_time_limit_stops_an_endless_compiled_loop_and_the_process_lives_on() -> None:
    src = "@llvm\nfn spin() {\n  let x = 0\n  while true { x += 1 }\n  return x\n}\nspin()"
    with pytest.raises(RelayError, match="time limit of 0.5 s exceeded") as info:
        run_relay(src, time_limit=0.5)
    assert info.value.pos.line == 4
    with pytest.raises(RelayError, match="time limit"):
        run_relay("@llvm\nfn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }\nfib(200)", time_limit=0.5)
    assert run_relay("@llvm\nfn sq(x) { x * x }\nsq(12)")[1] == 144.0


def test_arrays_are_shared_by_reference_between_tiers() -> None:
    src = """
@llvm
fn fill(a: array<number>, v) { for i in 0..len(a) { a[i] = v + i }\n a.push(-1) }
@llvm
fn make(n) { let a = array(n, 0.5)\n a[0] = 9\n return a }
let a = [0, 0, 0]
let b = a
fill(a, 10)
let m = make(3)
m.push("x")
print(b, m, len(a))
"""
    assert run_relay(src)[0] == '[10, 11, 12, -1] [9, 0.5, 0.5, "x"] 4\n'


def test_compiled_code_frees_what_it_allocates() -> None:
    src = """
@llvm
fn churn(n) {
    let total = 0
    for i in 0..n {
        let tmp = array(100, i)
        let lit = [i, i + 1, i + 2]
        tmp[3] = lit[1]
        tmp.push(i)
        for v in tmp { total += v }
    }
    return total
}
"""
    interp = Interpreter(out=io.StringIO(), tier="auto")
    run_program(src + "churn(10)", "t.relay", interp=interp)  # compile and warm up
    keep = [1.0, 2.0]
    refs = sys.getrefcount(keep)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    run_program("churn(20000)", "t2.relay", interp=interp)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 200_000, f"{grown} bytes still allocated after 20,000 iterations"
    assert sys.getrefcount(keep) == refs


def test_warm_object_store_means_zero_compilations(tmp_path) -> None:
    src = "fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }\n" \
          "fn sumsq(a: array<number>) { let s = 0\n for x in a { s += x * x }\n s }\nprint(fib(22), sumsq([1, 2, 3]))"
    out1, _, first = explain(src, store=DirectoryStore(tmp_path))
    assert engine.COMPILER.idle.wait(60)  # fib (no loops) compiles in the background
    assert first.router.cache.stats.compiled == 2 and first.router.cache.stats.store_loads == 0
    reformatted = "// reformatted\n" + src.replace("{ if", "{\n  if")
    out2, _, second = explain(reformatted, store=DirectoryStore(tmp_path))
    assert engine.COMPILER.idle.wait(60)
    assert out1 == out2 == "17711 14\n"
    assert second.router.cache.stats.compiled == 0 and second.router.cache.stats.store_loads == 2
    assert second.router.explain()[-1] == "cache: 0 compiled, 2 loaded from the object store, 0 already loaded"


def test_warm_store_across_processes(tmp_path, monkeypatch) -> None:
    prog = tmp_path / "p.relay"
    prog.write_text("@llvm\nfn sq(x) { x * x }\nprint(sq(3))")
    monkeypatch.setenv("RELAY_CACHE_DIR", str(tmp_path / "store"))
    first = relay_cli("run", "--explain", str(prog))
    second = relay_cli("run", "--explain", str(prog))
    assert "cache: 1 compiled, 0 loaded" in first.stderr
    assert "cache: 0 compiled, 1 loaded from the object store" in second.stderr


def test_cache_key_covers_optimisation_and_fastmath(tmp_path) -> None:
    base = "fn s(a: array<number>) { let t = 0\n for x in a { t += x }\n t }\nprint(s([1, 2]))"
    store = DirectoryStore(tmp_path)
    for variant in (base, "@fastmath\n" + base, "@optimize(3)\n" + base, "@optimize(0)\n" + base):
        explain(variant, store=store)
    assert len(list(tmp_path.glob("*.o"))) == 4


def test_router_falls_back_silently_and_explains(tmp_path) -> None:
    src = "fn f(x) { for i in 0..2 { print(i) }\n x }\nfn g(n) { let s = 0\n for i in 0..n { s += i }\n s }\n" \
          "fn h(s) { for i in 0..1 { s = s + \"!\" }\n s }\nprint(f(7), g(4), g(true && 3), h(\"a\"))"
    out, lines, _ = explain(src, store=DirectoryStore(tmp_path))
    assert out == "0\n1\n7 6 3 a!\n"
    assert lines == ["f: interpreter (line 1: print is not supported by @llvm (it works on strings))",
                     "g: llvm (hot after 1 call, (number) at O2)",
                     "h: interpreter (hot, but called with arguments compiled code does not take)",
                     "cache: 1 compiled, 0 loaded from the object store, 0 already loaded"]


def test_a_hot_function_without_loops_compiles_in_the_background_and_switches_later(tmp_path) -> None:
    """No compile pause: the calls go on in the interpreter while LLVM works, the same answers."""
    src = "fn sq(x) { x * x + 1 }\nlet t = 0\nlet i = 0\nwhile i < 3000000 { t = t + sq(i); i += 1 }\nprint(t)"
    out, lines, _ = explain(src, store=DirectoryStore(tmp_path))
    assert out == explain(src, tier="interpret")[0]
    switched = re.fullmatch(r"sq: llvm \(hot after 20 calls, compiled in the background, switched at call (\d+), "
                            r"\(number\) at O2\)", lines[0])
    assert switched and int(switched[1]) > 20, lines


def test_a_program_that_ends_while_its_function_compiles_exits_cleanly(tmp_path) -> None:
    """The process waits for LLVM's work in hand before it exits (a new function: nothing cached)."""
    prog = tmp_path / "p.relay"
    unique = time.time_ns()
    prog.write_text(f"fn sq(x) {{ if x < -{unique} {{ return 0 }}\n x * x }}\nlet t = 0\n"
                    "for i in 0..21 { t += sq(i) }\nprint(t)\n")
    done = relay_cli("run", "--explain", str(prog))
    assert (done.returncode, done.stdout) == (0, "2870\n"), done.stderr
    assert "sq: interpreter (hot after 20 calls, compiling in the background)" in done.stderr


@pytest.mark.parametrize("server", ["server f { receive fn go() { 1 } }", "server f[id] { receive fn go() { 1 } }"])
def test_a_server_declared_with_a_functions_name_rebinds_it_for_compiled_callers(server: str) -> None:
    """`h` calls `f` statically once compiled; a later `server f` makes `f` a server, in every tier."""
    src = f"fn f(x) {{ x + 1 }}\nfn h(x) {{ f(x) * 2 }}\nfor i in 0..400000 {{ h(i) }}\nprint(h(1))\n{server}\nprint(h(1))"
    results = []
    for tier in ("interpret", "auto"):
        with pytest.raises(RelayError) as info:
            run_relay(src, tier=tier)
        results.append(str(info.value))
    assert results[0] == results[1] and "cannot call server" in results[0], results


def test_other_argument_types_take_the_interpreter_with_its_errors() -> None:
    with pytest.raises(RelayError, match="twice: parameter 'n' expects number, got string"):
        run_relay("@llvm\nfn twice(n: number) { n * 2 }\nprint(twice(2))\ntwice(\"x\")")


def test_llvm_compile_errors_are_positioned() -> None:
    with pytest.raises(RelayError) as info:
        run_relay("@llvm\nfn f(m: map) { 1 }")
    assert info.value.kind == "compile error" and "parameter 'm' of type map cannot be compiled" in info.value.message
    with pytest.raises(RelayError) as info:
        run_relay("@llvm\nfn f(x) {\n  if x { 1 } else { 2 }\n}")
    assert info.value.pos.line == 3 and "an if condition must be a bool" in info.value.message


def test_compiled_functions_of_the_same_name_in_one_module() -> None:
    """Two servers may each have an @llvm `work`: one module holds both, under names of their own."""
    src = ("server a { @llvm receive fn work(n: number) { n + 1 } }\n"
           "server b { @llvm receive fn work(n: number) { n * 2 } }\n"
           "print(a.work(1), b.work(5))")
    assert both(src) == ("2 10\n", "2 10\n")
