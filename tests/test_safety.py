"""Adversarial programs: nothing may crash or hang the process, and both tiers agree.

Compiled code that frees what a loop walks, leaks on an early exit, or runs
off the native stack kills a worker; each case here once did.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

from conftest import RELAY, ROOT, both, relay_cli, run_relay
from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_program
from relay_lang.values import Array, copy_data

# ------------------------------------------------------------ memory safety


def test_for_in_keeps_the_list_it_walks_alive_when_the_body_rebinds_it() -> None:
    src = ("fn f() { let a = [1, 2, 3, 4]; let s = 0; for x in a { a = [1000, 1000, 1000, 1000, 1000, 1000]; s += x }"
           " return s }\nprint(f())")
    assert both(src) == ("10\n", "10\n")


def test_for_in_over_a_rebound_list_does_not_crash(tmp_path) -> None:
    prog = tmp_path / "p.relay"
    prog.write_text("@llvm\nfn f() { let a = [1, 2, 3, 4, 5, 6, 7, 8]; let s = 0\n"
                    "for x in a { a = [1000, 1000]; s += x } return s }\nprint(f())\n")
    done = relay_cli("run", str(prog))
    assert (done.returncode, done.stdout) == (0, "36\n"), done.stderr


@pytest.mark.parametrize("exit_", ["return x", "break", "let y = a[-1]"])
def test_for_in_snapshot_is_freed_on_every_exit(exit_: str) -> None:
    src = f"fn g(a: array<number>) {{ for x in a {{ a.push(1); {exit_} }} return 0 }}\n"
    interp = Interpreter(out=io.StringIO(), tier="llvm")
    run_program(src + "let big = array(100000, 1)", "t.relay", interp=interp)

    def call() -> None:  # g pushes onto big; pop it back
        try:
            run_program("g(big); big.pop()", "t2.relay", interp=interp)
        except RelayError:
            run_program("big.pop()", "t3.relay", interp=interp)

    call()  # big's own buffer grows once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            call()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"{grown} bytes still allocated after 20 calls over 100,000 elements"


@pytest.mark.parametrize("call", ["array(10000, n)[50000]", "two(array(10000, n), [n][5])",
                                  "two(array(10000, n), one(array(10, n)))"])
def test_temporaries_are_freed_when_an_expression_fails(call: str) -> None:
    src = ("fn one(a: array<number>) { a[50000] }\nfn two(a: array<number>, x) { x }\n"
           f"fn g(n) {{ return {call} }}\n")
    interp = Interpreter(out=io.StringIO(), tier="llvm")
    run_program(src, "t.relay", interp=interp)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            with pytest.raises(RelayError, match="out of range"):
                run_program("g(1)", "t2.relay", interp=interp)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"{grown} bytes still allocated after 50 failed calls"


def test_compiled_recursion_stops_before_the_native_stack_is_full() -> None:
    # A thread with a 4 MB stack and a depth limit it cannot hold: a Relay error, not a segfault.
    script = textwrap.dedent("""
        import io, threading
        from relay_lang.errors import RelayError
        from relay_lang.interpreter import Interpreter
        interp = Interpreter(out=io.StringIO(), max_depth=100_000_000, tier="llvm")
        def job():
            try:
                interp.run("fn down(n) { if n == 0 { return 0 } return 1 + down(n - 1) }\\nprint(down(1e8))", "t.relay")
            except RelayError as err:
                print(err.kind, err.message.split(":")[0], err.pos.line, err.stack[-1][1].line)
        threading.stack_size(4 << 20)
        t = threading.Thread(target=job)
        t.start()
        t.join()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (done.returncode, done.stdout) == (0, "limit recursion too deep 1 2\n"), done.stderr


# ------------------------------------------------------------ the time budget


def stops_in_time(src: str, limit: float, tier: str = "auto") -> float:
    """Runs src with a time limit it exceeds; returns how long it took to stop."""
    start = time.monotonic()
    with pytest.raises(RelayError) as info:
        run_relay(src, tier=tier, time_limit=limit)
    elapsed = time.monotonic() - start
    assert info.value.kind == "limit" and info.value.message == f"time limit of {limit:g} s exceeded", str(info.value)
    assert elapsed < limit * 1.1 + 0.1 + 0.4, f"stopped after {elapsed:.2f} s"  # 0.4 s: compiling
    return elapsed


@pytest.mark.parametrize("tier", ["auto", "llvm"])
@pytest.mark.parametrize("loops", [
    "while true { for j in 0..50000 { for k in 0..50000 { s += 1 } } }",
    "for i in 0..3000 { for j in 0..3000 { for k in 0..3000 { s += 1 } } }",
])
def test_nested_compiled_loops_stop_at_the_time_limit(tier: str, loops: str) -> None:
    stops_in_time(f"fn f() {{ let s = 0\n {loops}\n return s }}\nprint(f())", 0.5, tier)


@pytest.mark.parametrize("tier", ["interpret", "llvm"])
def test_ranges_with_huge_bounds_start_at_once(tier: str) -> None:
    src = ("fn f() { let a = []\n for i in 0..1e300 { a.push(i); break }\n for i in -1e308..1e308 { a.push(i); break }\n"
           " for i in 2**80..2**80 + 2**29 { a.push(i); break }\n for i in 1e16..1e16 + 5 { a.push(i) }\n return a }\n"
           "print(f(), len(0.5..3), len(1e16..1e16 + 5))")
    assert run_relay(src, tier=tier, time_limit=5)[0] == \
        "[0, -1e+308, 1.2089258196146292e+24, 1e+16, 1e+16, 1.0000000000000002e+16] 3 3\n"


@pytest.mark.parametrize("op", ["x == y", "str(x)", "join([x], \"\")", "print(x)"])
def test_values_sharing_structure_are_not_expanded(op: str) -> None:
    src = f"let x = [1]\nlet y = [1]\nfor i in 0..60 {{ x = [x, x]; y = [y, y] }}\n{op}"
    start = time.monotonic()
    try:
        run_relay(src, time_limit=10)
    except RelayError as err:
        assert "over the memory budget" in err.message
    assert time.monotonic() - start < 5


def test_sending_a_dag_copies_it_as_a_dag() -> None:
    src = ("server keep { state { v: null }\n receive fn put(v) { state.v = v; len(v) } }\n"
           "let x = [1]\nfor i in 0..60 { x = [x, x] }\nprint(keep.put(x))")
    start = time.monotonic()
    assert run_relay(src, time_limit=10)[0] == "2\n"
    assert time.monotonic() - start < 5
    shared = Array([1.0])
    copy = copy_data(Array([shared, shared]))
    assert copy == [[1.0], [1.0]] and copy[0] is copy[1] and copy[0] is not shared  # type: ignore[index]


# (Sending numbers is a copy of their flat buffer, 3M in a few ms: the message here holds strings.)
@pytest.mark.parametrize("op", ["a == b", "str(a)", "join(a, \",\")", "print(a)", "send(keep, \"put\", words)"])
def test_long_builtins_stop_at_the_time_limit(op: str) -> None:
    src = ("server keep { state { v: null }\n receive fn put(v) { state.v = v } }\n"
           f"let a = array(3000000, 0)\nlet b = array(3000000, 0)\nlet words = array(3000000, \"w\")\n{op}")
    stops_in_time(src, 0.1)


def test_long_functions_compile_in_linear_time() -> None:
    def program(n: int) -> str:
        lines = [f"  let v{i} = n * {i} + s\n  if v{i} > {i} {{ s += v{i} % 7 }} else {{ s -= 1 }}" for i in range(n)]
        return "fn f(n) {\n  let s = 0\n" + "\n".join(lines) + "\n  return s\n}\nprint(f(3))"

    def seconds(n: int) -> float:
        start = time.monotonic()
        run_relay(program(n), tier="llvm")
        return time.monotonic() - start

    seconds(50)  # LLVM initialised
    small, large = seconds(500), seconds(2000)
    assert large < 6 * small + 0.5, f"500 blocks: {small:.2f} s, 2000 blocks: {large:.2f} s"


def test_map_literals_parse_in_linear_time() -> None:
    start = time.monotonic()
    src = "let m = {" + ", ".join(f"k{i}: {i}" for i in range(40000)) + "}\nprint(len(m))"
    assert run_relay(src)[0] == "40000\n"
    assert time.monotonic() - start < 4
    with pytest.raises(RelayError, match="duplicate key 'k1' in map literal"):
        run_relay("let m = {k1: 1, k2: 2, k1: 3}")


@pytest.mark.parametrize("tier", ["auto", "llvm"])
def test_a_compilation_that_would_not_finish_in_time_is_abandoned(tier: str, monkeypatch, tmp_path) -> None:
    from relay_lang.compiler import engine
    real = engine.compile_object
    monkeypatch.setenv("RELAY_CACHE_DIR", str(tmp_path))  # nothing compiled before

    def slow(*args):
        time.sleep(1.5)
        return real(*args)

    monkeypatch.setattr(engine, "compile_object", slow)
    src = "fn spin(n) { let s = 0\n while s >= 0 { s += n }\n s }\nspin(1)"
    stops_in_time(src, 0.3, tier)


# ------------------------------------------------------------ tier parity


def test_pow_is_the_interpreters_pow_to_the_last_bit() -> None:
    src = """
fn a(x) { 8 ** x }
fn b(x) { 2 ** x }
fn c(x) { x ** 2 }
fn d(x) { x ** -1 }
fn e(x) { pow(x, 0.5) }
print(a(-20.123456789), b(161.5226605987939), c(295.86433752602596), d(800.2060340470493), e(931.6439878000418))
"""
    expected = "6.709770566594794e-19 4.1991928442535476e+48 87535.70621971422 0.00124967815469035 30.52284370434776\n"
    assert both(src) == (expected, expected)


def test_set_rebinding_a_function_is_seen_by_compiled_callers() -> None:
    src = ("fn f(x) { return x * 2 }\nfn g(x) { let s = 0; for i in 0..1 { s += f(x) } return s }\n"
           "print(g(3))\nset f = fn(x) { return x * 100 }\nprint(g(3))")
    assert run_relay(src)[0] == "6\n300\n"


def test_redefining_a_function_in_the_repl_is_seen_by_compiled_callers() -> None:
    interp = Interpreter(out=io.StringIO(), repl=True)
    assert interp.run("fn f(x) { return x * 2 }\nfn g(x) { let s = 0; for i in 0..1 { s += f(x) } return s }\ng(3)") == 6
    interp.run("fn f(x) { return x * 100 }")
    assert interp.run("g(3)") == 300


@pytest.mark.parametrize("src", [
    "fn g(x) -> bool { x * 2 }\nfn main() { g(3) }\nmain()",
    "fn g(x) -> array { if x > 1 { return x } return 0 }\ng(3)",
    "fn k(x) -> number { let y = x }\nfn m() { k(2) }\nm()",
    "fn k(x) -> number { let y = x }\nk(2)",
    "fn k(x) -> array<number> { [x] }\nfn m() { k(2)[0] }\nm()",
])
def test_return_annotations_are_checked_in_compiled_code(src: str) -> None:
    interpreted, compiled = both(src)
    assert interpreted == compiled
    assert ("type error" in interpreted) == ("array<number>" not in src)


# ------------------------------------------------------------ no internal errors


@pytest.mark.parametrize("src, expected", [
    ("fn nothing() { }\nfn f() { let x = nothing(); return x == x }\nfn g() { let x = nothing(); return x != x }\n"
     "print(f(), g())", "true false\n"),
    ("fn nothing() { }\nfn h(x) { 1 }\nfn g() { let s = 0; for i in 0..3 { s += h(nothing()) } return s }\nprint(g())",
     "3\n"),
    ("fn k(n) { let s = 0; for i in 0..1 { s = len(array(n, 7)) } return s }\nprint(k(1/0))",
     "ERROR test.relay:1:46: error: array: size must be a whole number >= 0, got inf\n  in k, called at test.relay:2:7"),
])
def test_compiled_edge_cases_are_relay_results(src: str, expected: str) -> None:
    assert both(src) == (expected, expected)


def test_numbers_too_large_for_a_double() -> None:
    with pytest.raises(RelayError, match=r"syntax error: hex number '0x1F+' is too large \(over 2\^1024\)"):
        run_relay("print(0x1" + "F" * 300 + ")")
    assert run_relay('print(num("0x" + join(array(300, "F"), "")), num("0x1F"))')[0] == "null 31\n"


@pytest.mark.parametrize("chain", [
    "print(" + " + ".join(["1"] * 50000) + ")",
    "fn f() { f }\nprint(type(f" + "()" * 50000 + "))",
    "let a = [0]\na[0] = a\nprint(type(a" + "[0]" * 50000 + "))",
    "print(" + " && ".join(["true"] * 50000) + ")",
    "print(" + " ?? ".join(["null"] * 50000) + " ?? 1)",
    "fn f(x) { let s = 0; for i in 0..1 { s = " + " + ".join(["x"] * 50000) + " } return s }\nprint(f(1))",
])
def test_flat_chains_of_any_length_run(chain: str) -> None:
    out = run_relay(chain, time_limit=60)[0]
    assert out in ("50000\n", "fn\n", "array\n", "true\n", "1\n")


def test_a_flat_chain_is_not_limited_by_the_call_depth() -> None:
    assert run_relay("print(" + "+".join(["1"] * 2000) + ")", max_depth=100)[0] == "2000\n"


def test_else_if_chains_are_not_nesting() -> None:
    src = "let x = 149\nif x == 0 { print(0) }" + "".join(f" else if x == {i} {{ print({i}) }}" for i in range(1, 150))
    assert run_relay(src)[0] == "149\n"


def test_generated_code_raises_no_python_warnings() -> None:
    import warnings

    from relay_lang.codegen import generate
    from relay_lang.parser import parse
    from relay_lang.resolver import resolve
    programs = [p.read_text() for p in sorted((ROOT / "tests" / "conformance").glob("*.relay"))]
    programs.append('fn f() -> null { 5 }\nprint(!"hello", !5, 5 == null, null != "a", "a" ?? 1)\n'
                    'if 5 { print(1) }\nwhile "x" { break }\nprint(f())')
    for src in programs:
        program = parse(src, "t.relay")
        unit = generate(program, resolve(program, set()), 0, "t.relay")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(unit.source, unit.filename, "exec")


@pytest.mark.parametrize("env, args, out", [
    ({"PYTHONWARNINGS": "error"}, [], "false false\n"),
    ({"PYTHONIOENCODING": "ascii"}, [], "false false h\\xe9llo \\u2603\n"),
    ({}, ["--time-limit", "inf"], "false false h\u00e9llo \u2603\n"),
    ({}, ["--max-depth", "1000000000"], "false false h\u00e9llo \u2603\n"),
])
def test_the_users_environment_never_produces_a_traceback(tmp_path, monkeypatch, env, args, out) -> None:
    prog = tmp_path / "p.relay"
    prog.write_text('print(!"hello", 5 == null' + (', "h\u00e9llo \u2603"' if env.get("PYTHONWARNINGS") is None else "") + ")\n",
                    encoding="utf-8")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    done = relay_cli("run", *args, str(prog))
    assert (done.returncode, done.stdout, done.stderr) == (0, out, "")


def test_a_full_disk_is_a_relay_error(tmp_path) -> None:
    prog = tmp_path / "p.relay"
    prog.write_text('for i in 0..100000 { print("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") }\n')
    with open("/dev/full", "w") as full:
        done = subprocess.run([*RELAY, "run", str(prog)], stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert done.returncode == 1
    assert "error: print: cannot write the output (No space left on device)" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------ the memory budget


def test_sizes() -> None:
    from relay_lang.budget import format_size, parse_size
    assert [parse_size(s) for s in ("256M", "2G", "1.5G", "64k", "1000", "1GiB")] == \
        [256 << 20, 2 << 30, 3 << 29, 64 << 10, 1000, 1 << 30]
    assert format_size(256 << 20) == "256M" and format_size(1 << 30) == "1G"
    with pytest.raises(ValueError):
        parse_size("lots")


GROWTH = {
    "push": "let a = []\nwhile true { a.push(len(a) * 1.5) }",
    "compiled push": "fn grow() { let a = []; while true { a.push(len(a) * 1.5) } }\ngrow()",
    "compiled arrays": "fn big() { let keep = []; let s = 0; for i in 0..100 { s += len(array(30000000, i)) } s }\nbig()",
    "nested arrays": "let a = []\nwhile true { a.push([1, 2, 3]) }",
    "map": "let m = {}\nlet i = 0\nwhile true { m[str(i)] = i; i += 1 }",
    "array(n)": "let keep = []\nwhile true { keep.push(array(50000000)) }",
    "string": 'let s = "ab"\nfor i in 0..27 { s = s + s }',
    "join": 'let s = "x"\nfor i in 0..24 { s = s + s }\nlet parts = array(10, s)\nprint(len(join(parts, "")))',
    "split": 'let s = "x"\nfor i in 0..24 { s = s + s }\nlet keep = []\nfor i in 0..10 { keep.push(split(s, "")) }',
    "for c in s": 'let s = "x"\nfor i in 0..24 { s = s + s }\nlet n = 0\nfor i in 0..10 { for c in s { n += 1 } }',
    "tree": "fn tree(d) { if d == 0 { return [] } return [tree(d - 1), tree(d - 1)] }\nlet t = tree(25)",
}


@pytest.mark.parametrize("src", GROWTH.values(), ids=GROWTH.keys())
def test_every_growth_is_charged_to_the_memory_budget(src: str, tmp_path, monkeypatch) -> None:
    # A fresh process: memory an earlier test freed but the process kept would absorb the growth.
    prog = tmp_path / "p.relay"
    prog.write_text(src)
    monkeypatch.setenv("RELAY_MEMORY_LIMIT", "64M")
    done = relay_cli("run", "--time-limit", "60", str(prog))
    assert done.returncode == 1
    assert re.match(r"\S+p\.relay:\d+:\d+: limit: memory limit of 64M exceeded\n", done.stderr), done.stderr


def test_the_memory_limit_is_an_argument_of_run_budgeted() -> None:
    from relay_lang.interpreter import run_budgeted
    interp = Interpreter(out=io.StringIO())
    interp.limits.memory_limit = None
    src = "let a{} = []\nfor i in 0..2000000 {{ a{}.push([i]) }}\nprint(len(a{}))"  # 2M small arrays: ~200 MB
    with pytest.raises(RelayError, match="memory limit of 16M exceeded"):
        run_budgeted(interp, lambda: interp.run(src.format(1, 1, 1), "t.relay"), None, memory_limit=16 << 20)
    run_budgeted(interp, lambda: interp.run(src.format(2, 2, 2), "t.relay"), None)
    assert interp.out.getvalue() == "2000000\n"
    with pytest.raises(RelayError, match="memory limit of 8M exceeded"):
        run_program(src.format(3, 3, 3), "t.relay", interp=interp, memory_limit=8 << 20)


@pytest.mark.parametrize("name", ["compiled push", "array(n)", "string"])
def test_the_process_stays_within_the_memory_budget(tmp_path, name: str) -> None:
    prog = tmp_path / "p.relay"
    prog.write_text(GROWTH[name])
    script = textwrap.dedent(f"""
        import os, resource, subprocess, sys
        base = subprocess.run([sys.executable, "-m", "relay_lang", "run", "/dev/null"], capture_output=True)
        baseline = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        env = dict(os.environ, RELAY_MEMORY_LIMIT="128M")
        done = subprocess.run([sys.executable, "-m", "relay_lang", "run", {str(prog)!r}], capture_output=True, env=env)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(done.returncode, (peak - baseline) // 1024, done.stderr.decode().splitlines()[0])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    code, grown, message = done.stdout.split(" ", 2)
    assert code == "1" and "limit: memory limit of 128M exceeded" in message, done.stdout + done.stderr
    assert int(grown) < 128 + 32, f"grew {grown} MB past the interpreter's own size"


# ------------------------------------------------------------ messages


def test_articles_agree_with_their_nouns() -> None:
    with pytest.raises(RelayError, match="g: parameter 'a' expects array<number>, got array with an array element"):
        run_relay("fn g(a: array<number>) { 1 }\ng([[1]])")
    with pytest.raises(RelayError, match="'y' holds a number, assigned an array<number>"):
        run_relay("@llvm\nfn f(x) { let y = 1; y = [1]; y }")


def test_compiled_stacks_keep_as_many_frames_as_the_interpreters() -> None:
    src = ("fn f(n, a: array<number>) {\n  if n == 0 { return a[5] }\n  if n % 2 == 0 { return f(n - 1, a) }\n"
           "  return f(n - 1, a)\n}\nf(300, [1])")
    interpreted, compiled = both(src)
    assert interpreted == compiled and "... 286 more frames ..." in compiled
