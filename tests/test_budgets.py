"""Every budget on every path: each promise of the README's limits, measured as users run it.

Each case runs `relay run` in a process of its own, in both tiers, and asserts the Relay error
(kind, message, position), the elapsed time (within the limit's 10% + 0.1 s, plus the time the
same process takes to start and load the program) and the peak resident memory (within the
memory budget plus MEMORY_MARGIN over what the process holds at start). The budget fuzzer at the
end generates such programs for every builtin and kind of callback; it runs for
RELAY_FUZZ_SECONDS (default 40) with a seed from RELAY_FUZZ_SEED (printed).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import RELAY, ROOT

MIB = 1 << 20
MEMORY_MARGIN = 96 * MIB  # over the budget: what a step between two checks may add (measured: README)
SLACK = 0.4  # seconds of scheduling noise on a loaded 2-core machine, on top of the promise


@dataclass
class Run:
    status: int
    out: str
    err: str
    seconds: float
    peak: int  # bytes, the process's peak resident memory


def relay_measured(tmp_path: Path, source: str, *args: str, timeout: float = 120, **env: str) -> Run:
    """`relay run` of source in a process of its own; its peak RSS from wait4 (that process only)."""
    prog = tmp_path / f"p{time.monotonic_ns()}.relay"
    prog.write_bytes(source.encode())
    out, err = prog.with_suffix(".out"), prog.with_suffix(".err")
    with open(out, "w") as o, open(err, "w") as e:
        started = time.monotonic()
        proc = subprocess.Popen([*RELAY, "run", *args, str(prog)], stdout=o, stderr=e, cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=str(ROOT), **env), start_new_session=True)
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # type: ignore[attr-defined]
        except BaseException:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
    return Run(proc.returncode, out.read_text(), err.read_text(), seconds, usage.ru_maxrss * 1024)


_startup: dict[str, Run] = {}


def startup(tmp_path: Path, tier: str) -> Run:
    """A trivial program's run in this tier: the time and memory every run starts with."""
    if tier not in _startup:
        _startup[tier] = relay_measured(tmp_path, "@llvm\nfn f(x: number) { x }\nprint(f(1))\n", "--tier", tier)
    return _startup[tier]


def assert_within(tmp_path: Path, run: Run, tier: str, error: str, at: str | None, time_limit: float | None,
                  memory: int | None) -> None:
    base = startup(tmp_path, tier)
    print(f"{tier}: {run.seconds:.2f} s, peak {run.peak / MIB:.0f} MiB (start {base.seconds:.2f} s, "
          f"{base.peak / MIB:.0f} MiB): {run.err.splitlines()[0] if run.err else run.out[:80]!r}")
    assert run.status == 1 and error in run.err, run.err
    assert "Traceback" not in run.err and "internal error" not in run.err
    first = run.err.splitlines()[0]
    assert re.match(r".+\.relay:\d+:\d+: ", first), first  # FILE:LINE:COL
    if at is not None:
        assert at in first, first
    if time_limit is not None:
        assert run.seconds <= base.seconds + time_limit * 1.1 + 0.1 + SLACK, run.seconds
    if memory is not None:
        assert run.peak <= base.peak + memory + MEMORY_MARGIN, run.peak / MIB


TIERS = ["interpret", "llvm"]


# ------------------------------------------------------------------ the examples of the issue


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("method", [
    "let a = array(30000000, 1)\nprint(a.reduce(max, 0))",
    'let a = array(5000000, "x")\nprint(a.find(num))',
    "fn inc(x) { x + 1 }\nprint(len(array(10000000, 1).map(inc)))",
    "@llvm\nfn inc(x: number) { x + 1 }\nprint(len(array(10000000, 1).map(inc)))",
])
def test_array_methods_and_their_callbacks_keep_the_time_limit(tmp_path, tier, method) -> None:
    run = relay_measured(tmp_path, method + "\n", "--tier", tier, "--time-limit", "1")
    assert_within(tmp_path, run, tier, "time limit of 1 s exceeded", None, 1.0, None)


@pytest.mark.parametrize("tier", TIERS)
def test_map_keeps_the_memory_limit(tmp_path, tier) -> None:
    run = relay_measured(tmp_path, "let r = array(20000000, 1.5).map(str)\nprint(len(r))\n",
                         "--tier", tier, "--memory-limit", "256M")
    assert_within(tmp_path, run, tier, "memory limit of 256M exceeded", None, None, 256 * MIB)


@pytest.mark.parametrize("tier", ["interpret", "auto", "llvm"])
def test_compiled_allocations_keep_the_memory_limit_where_the_interpreter_does(tmp_path, tier) -> None:
    src = ("fn f(n) { if n == 0 { return 0 } let a = array(130000, n); return f(n - 1) + a[0] * 0 + 1 }\n"
           "print(f(3000))\n")
    run = relay_measured(tmp_path, src, "--tier", tier, "--memory-limit", "256M")
    assert_within(tmp_path, run, "llvm" if tier != "interpret" else tier, "memory limit of 256M exceeded",
                  ".relay:1:42: ", None, 256 * MIB)


@pytest.mark.parametrize("tier", TIERS)
def test_a_loop_allocating_per_iteration_keeps_the_time_limit(tmp_path, tier) -> None:
    src = ("@llvm\nfn churn(k: number) {\n    let s = 0\n"
           "    for i in 0..k { let a = array(1000000, i); s = s + a[5] }\n    return s\n}\nprint(churn(100000))\n")
    run = relay_measured(tmp_path, src, "--tier", tier, "--time-limit", "1")
    assert_within(tmp_path, run, tier, "time limit of 1 s exceeded", ".relay:4:5: ", 1.0, None)  # the loop


SMALL_STACK = r"""
import io, sys, threading
from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_program
SRC = "fn r(n) { if n == 0 { return 0 } return [n].find(fn(x) { r(x - 1) >= 0 }) }\nprint(r(400000))"
result = []
def job():
    interp = Interpreter(out=io.StringIO(), err=io.StringIO(), max_depth=2_000_000, tier=sys.argv[1])
    try:
        run_program(SRC, "deep.relay", interp=interp)
    except RelayError as err:
        result.append(str(err).splitlines()[0])
threading.stack_size(16 << 20)
t = threading.Thread(target=job)
t.big_stack = True  # Relay runs inline on it: a 16 MiB native stack
t.start()
t.join()
print(result)
"""


@pytest.mark.parametrize("tier", ["interpret", "auto"])
def test_recursion_through_callbacks_ends_with_an_error_not_a_crash(tier) -> None:
    done = subprocess.run([sys.executable, "-c", SMALL_STACK, tier], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    print(done.stdout, done.stderr[-2000:])
    assert done.returncode == 0 and "fill the native stack" in done.stdout


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("limit", ["time", "memory"])
def test_stopping_a_deep_recursion_keeps_both_budgets(tmp_path, tier, limit) -> None:
    """Unwinding costs CPython 2.2-4.1 us and 400 bytes a frame: the watchdogs stop a deep
    recursion early enough for its error to appear on time and within memory."""
    src = "fn f(n) { if n == 0 { return 0 } return f(n - 1) + 1 }\nprint(f(30000000))\n"
    limits = ["--time-limit", "1", "--memory-limit", "8G"] if limit == "time" else ["--memory-limit", "512M"]
    run = relay_measured(tmp_path, src, "--tier", tier, "--max-depth", "100000000", *limits)
    if limit == "time":  # or, compiled, the native stack: either way a limit, on time
        assert_within(tmp_path, run, tier, "limit: ", None, 1.0, None)
    else:
        assert_within(tmp_path, run, tier, "limit: ", None, None, 512 * MIB)


@pytest.mark.parametrize("tier", TIERS)
def test_a_shallow_recursion_of_many_calls_is_stopped_on_time(tmp_path, tier) -> None:
    """2^60 calls never deeper than 60, through two functions: compiled code counts the calls of
    a recursion in registers it passes down and gets back, and checks the clock every 65,536."""
    src = ("fn g(n: number) -> number { if n == 0 { return 0 } return h(n - 1) + h(n - 1) + 1 }\n"
           "fn h(n: number) -> number { return g(n) }\nfn top(n: number) -> number { let s = 0\n"
           " for i in 0..3 { s += g(n) }\n s }\nprint(top(60))\n")
    run = relay_measured(tmp_path, src, "--tier", tier, "--time-limit", "1")
    assert_within(tmp_path, run, tier, "limit: time limit of 1 s exceeded", None, 1.0, None)


@pytest.mark.parametrize("tier", TIERS)
def test_short_loops_in_nested_calls_are_stopped_on_time(tmp_path, tier) -> None:
    """Three levels of calls, each a loop of 60,000 (under the 65,536 ticks between two budget
    checks): compiled code counts the ticks of the whole call, not of each function's call."""
    src = "".join(f"fn {f}(v: number) {{ let t = 0\n for k in 0..60000 {{ t += {inner} }}\n return t }}\n"
                  for f, inner in (("h", "v"), ("g", "h(v)"), ("f", "g(v)"))) + "print(f(1))\n"
    run = relay_measured(tmp_path, src, "--tier", tier, "--time-limit", "1")
    assert_within(tmp_path, run, tier, "limit: time limit of 1 s exceeded", None, 1.0, None)


@pytest.mark.parametrize("value", ["1e10", "1e300", "inf"])
def test_huge_time_limits_mean_none(tmp_path, value) -> None:
    run = relay_measured(tmp_path, "print(1)\n", "--time-limit", value)
    assert (run.status, run.out, run.err) == (0, "1\n", "")


@pytest.mark.parametrize("flag, value", [("--time-limit", "nan"), ("--time-limit", "-1"), ("--time-limit", "0"),
                                         ("--memory-limit", "99999999T"), ("--memory-limit", "0"),
                                         ("--max-depth", "0"), ("--max-depth", "10000000000"),
                                         ("--max-depth", "\u0661\u0662"), ("--memory-limit", "\u0661\u0662M")])
def test_odd_limits_are_usage_errors(tmp_path, flag, value) -> None:
    run = relay_measured(tmp_path, "print(1)\n", flag, value)
    assert run.status == 2 and f"argument {flag}" in run.err and "Traceback" not in run.err


@pytest.mark.parametrize("tier", ["interpret", "auto"])
@pytest.mark.parametrize("line, error", [
    ('send(s, "h", 1, 2)', "3:1: error: s.h expects 1 argument, got 2"),
    ('send(s, "nope", 1)', "3:1: error: server s has no handler 'nope'"),
])
def test_refused_sends_are_placed(tmp_path, tier, line, error) -> None:
    src = "server s { state { n: 0 }\n receive fn h(x) { state.n += x } }\n" + line + "\n"
    run = relay_measured(tmp_path, src, "--tier", tier)
    assert run.status == 1 and error in run.err, run.err


@pytest.mark.parametrize("tier", ["auto", "llvm"])
def test_a_compile_cut_off_by_the_time_limit_is_placed(tmp_path, tier) -> None:
    src = ("print(0)\n@llvm\nfn f(x: number) {\n  let s = 0\n  for i in 0..x { s = s + i * 2 - 1 / 3 + sqrt(i) }\n"
           "  return s\n}\nprint(f(10))\n")
    cache = tmp_path / "cache"  # empty: the module must compile
    # long enough for the front end (a millisecond), far too short for LLVM (tens of milliseconds)
    run = relay_measured(tmp_path, src, "--tier", tier, "--time-limit", "0.02", RELAY_CACHE_DIR=str(cache))
    assert_within(tmp_path, run, tier, "time limit of 0.02 s exceeded", ".relay:3:1: ", 0.02, None)


@pytest.mark.parametrize("tier", TIERS)
def test_nan_is_unequal_in_every_container_and_cr_breaks_lines(tmp_path, tier) -> None:
    src = ("let n = 0 / 0\rprint([n] == [n], [\"a\", n] == [\"a\", n], {k: n} == {k: n})\r"
           "let a = [\"a\", n]\rprint(a == a, [1, [2]] == [1, [2]], n != n)\r")
    run = relay_measured(tmp_path, src, "--tier", tier)
    assert (run.status, run.out) == (0, "false false false\nfalse true true\n"), run.err


# ------------------------------------------------------------------ siblings found after the examples

SIBLINGS = {  # program, limit arguments, error, where it must be placed (None: anywhere)
    "split into pieces": ('let s = join(array(20000000, "ab"), ",")\nlet p = split(s, ",")\nprint(len(p))',
                          ["--memory-limit", "512M"], "memory limit of 512M exceeded", None),
    "split, time": ('let s = join(array(2000000, "ab"), ",")\nfor i in 0..1000 { split(s, ",") }',
                    ["--time-limit", "1"], "time limit of 1 s exceeded", None),
    "num of long text": ('let s = join(array(20000000, "7"))\nfor i in 0..1000 { num(s) }',
                         ["--time-limit", "1"], "time limit of 1 s exceeded", None),
    "a range as an array, memory": ("let r = 0..20000000\nprint(len(r))", ["--memory-limit", "256M"],
                                    "memory limit of 256M exceeded", ".relay:1:10: "),
    "a range as an array, time": ("let r = 0..40000000\nprint(len(r))",
                                  ["--memory-limit", "8G", "--time-limit", "1"], "time limit of 1 s exceeded", None),
    "keys of a big map, per element": ("let m = {}\nfor i in 0..300000 { m[str(i)] = i }\n"
                                       "print(len(array(1000, m).map(keys)))",
                                       ["--memory-limit", "256M"], "memory limit of 256M exceeded", None),
    "showing a value whose parts are shared": ("let a = [1]\nfor i in 0..200 { a = [a, a] }\nprint(str(a))",
                                               ["--memory-limit", "256M"], "memory limit of 256M exceeded", ".relay:3:7: "),
    "a string literal 40 million characters long": ('let s = "' + "x" * 40_000_000 + '"\nprint(len(s))',
                                                    ["--memory-limit", "16M"], "memory limit of 16M exceeded", ".relay:1:9: "),
    "heavy callbacks on a short array": ('let s = join(array(2000000, "7"))\nprint(len(array(1000, s).map(num)))',
                                         ["--time-limit", "0.5"], "time limit of 0.5 s exceeded", None),
}


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("case", list(SIBLINGS))
def test_builtins_that_loop_or_allocate_keep_the_budgets(tmp_path, tier, case) -> None:
    source, limits, error, at = SIBLINGS[case]
    run = relay_measured(tmp_path, source + "\n", "--tier", tier, *limits)
    time_limit = float(limits[limits.index("--time-limit") + 1]) if "--time-limit" in limits else None
    memory = (int(limits[limits.index("--memory-limit") + 1][:-1]) * MIB
              if "--memory-limit" in limits and limits[limits.index("--memory-limit") + 1].endswith("M") else None)
    assert_within(tmp_path, run, tier, error, at, time_limit, memory)


@pytest.mark.parametrize("tier", ["interpret", "auto", "llvm"])
def test_pushes_past_the_memory_limit_are_placed_alike_in_every_tier(tmp_path, tier) -> None:
    """The interpreter's push reserves nothing (its memory watch stops the loop); compiled code
    counts each growth of the buffer and reports where the interpreter would: at the loop."""
    src = "@llvm\nfn grow(n: number) {\n    let a = [0]\n    for i in 0..n { a.push(i) }\n    return len(a)\n}\n" \
          "print(grow(1e9))\n"
    run = relay_measured(tmp_path, src, "--tier", tier, "--memory-limit", "256M")
    assert_within(tmp_path, run, "llvm" if tier != "interpret" else tier, "memory limit of 256M exceeded",
                  ".relay:4:5: ", None, 256 * MIB)


AGREEING = {  # program, where every tier places its memory limit error
    "recursion holding small arrays": ("@llvm\nfn f(n: number) -> number { if n == 0 { return 0 }\n"
                                       "    let a = array(1000, n); return f(n - 1) + a[0] }\nprint(f(1000000000))",
                                       ".relay:3:13: "),
    "three big arrays, the compiler's memory not counted": ("fn f(n) { let a = array(n, 0.5)\n  let b = array(n, 0.5)\n"
                                                            "  let c = array(n, 0.5); return 1 }\nprint(f(30000000))",
                                                            ".relay:2:11: "),
}


@pytest.mark.parametrize("tier", ["interpret", "auto", "llvm"])
@pytest.mark.parametrize("case", list(AGREEING))
def test_every_tier_places_a_memory_limit_error_alike(tmp_path, tier, case) -> None:
    """The interpreter's reserve counts what unwinding would add, as its memory watch does, so a
    recursion's allocation trips it where compiled code's count does; compiling is not the program's."""
    source, at = AGREEING[case]
    run = relay_measured(tmp_path, source + "\n", "--tier", tier, "--memory-limit", "256M", "--max-depth", "1000000000")
    assert_within(tmp_path, run, "llvm" if tier != "interpret" else tier, "memory limit of 256M exceeded", at, None,
                  256 * MIB)


@pytest.mark.parametrize("time_limit", ["1", "2"])
def test_recursion_through_array_methods_stops_on_time(tmp_path, time_limit) -> None:
    """Each level of a recursion through map adds the method's own Python frames to what
    unwinding costs; the watchdog counts them (WALK_FRAMES)."""
    src = "fn r(n) { if n == 0 { return 0 } return [n].map(fn(x) { r(x - 1) })[0] }\nprint(r(4000000))\n"
    run = relay_measured(tmp_path, src, "--tier", "interpret", "--max-depth", "9000000", "--memory-limit", "6G",
                         "--time-limit", time_limit)
    assert_within(tmp_path, run, "interpret", f"time limit of {time_limit} s exceeded", None, float(time_limit), None)


@pytest.mark.parametrize("lines, time_limit", [(40000, "1"), (0, "0.000001")])
def test_the_front_end_keeps_the_time_limit_and_places_its_error(tmp_path, lines, time_limit) -> None:
    """Lexing, parsing and compiling a long program are checked as they go (Python's own compile
    of the generated code is refused when what is left of the budget cannot hold it)."""
    source = "".join(f"let x{i} = {i} + 1\n" for i in range(lines))
    run = relay_measured(tmp_path, source, "--time-limit", time_limit)
    assert_within(tmp_path, run, "auto", f"time limit of {float(time_limit):g} s exceeded", None,
                  float(time_limit), None)


def test_the_repl_shows_what_it_can_within_the_budgets(tmp_path) -> None:
    """A value too deep (or too long) to show is the entry's Relay error; the REPL goes on."""
    entries = "let m = {}\nfor i in 0..501 { m = {k: m} }\nm\nprint(9)\n1 + 2\n"
    done = subprocess.run([*RELAY, "repl"], input=entries, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert (done.returncode, done.stdout) == (0, "9\n3\n"), done.stderr
    assert done.stderr.startswith("<repl 3>:1:1: error: cannot show a value nested deeper than 500 levels")


@pytest.mark.parametrize("value, message", [
    ("0", "RELAY_MEMORY_LIMIT='0': must be a positive size"),
    ("lots", "RELAY_MEMORY_LIMIT='lots': not a size"),
    ("\u0661\u0662M", "not a size"),
])
def test_a_bad_memory_limit_in_the_environment_is_refused(tmp_path, value, message) -> None:
    run = relay_measured(tmp_path, "print(1)\n", RELAY_MEMORY_LIMIT=value)
    assert run.status == 1 and message in run.err and "Traceback" not in run.err, run.err


# ------------------------------------------------------------------ the budget fuzzer

# Work that crosses a budget, by builtin; {n} is sized by the fuzzer. Each grows memory or time.
WORK = {
    "map": "array({n}, 1).map({f})",
    "filter": "array({n}, 2).filter({f})",
    "find": "array({n}, -1).find({f})",
    "reduce": "array({n}, 1).reduce({f2}, 0)",
    "join": 'join(array({n}, "ab"), "-")',
    "str": "str(array({n}, 1.5))",
    "keys": "keys(m)",
    "slice": "slice(array({n}, 1), 1)",
    "split": 'split(join(array({n}, "a")), "")',
    "range": "len(0..{n})",
    "push": "push_many({n})",
    "concat": "grow_string({n})",
}
CALLBACKS = {  # one-argument callback, two-argument callback
    "builtin": ("num", "max"),
    "interpreted": ("fn(x) { x + 1 }", "fn(a, b) { a + b }"),
    "compiled": ("inc", "add"),
}
PRELUDE = """
@llvm
fn inc(x: number) { x + 1 }
@llvm
fn add(a: number, b: number) { a + b }
fn push_many(n) { let a = []; for i in 0..n { a.push(i) }; return len(a) }
fn grow_string(n) { let s = ""; for i in 0..n { s = s + "abcdefgh" }; return len(s) }
let m = {}
"""


FUZZ_TIERS = ["interpret", "auto"]  # auto: the @llvm callbacks compiled, the rest as the router decides


def fuzz_case(rng: random.Random) -> tuple[str, str, list[str], str]:
    """A program, a tier, its limit arguments and the error it must end with (a regular expression)."""
    name = rng.choice(list(WORK))
    f, f2 = CALLBACKS[rng.choice(list(CALLBACKS))]
    budget = rng.choice(["time", "memory"])
    n = rng.choice([3_000_000, 10_000_000, 30_000_000])
    body = WORK[name].format(n=n, f=f, f2=f2)
    setup = f"for i in 0..{n // 10} {{ m[str(i)] = i }}\n" if name == "keys" else ""
    source = PRELUDE + setup + f"let r = {body}\nprint(r == null)\n"
    if budget == "time":
        limit = rng.choice(["0.3", "0.7"])
        # The default memory budget (1G) may end it first: either error, on time.
        return source, rng.choice(FUZZ_TIERS), ["--time-limit", limit], f"(time limit of {limit} s|memory limit of 1G) exceeded"
    size = rng.choice(["64M", "128M"])
    return source, rng.choice(FUZZ_TIERS), ["--memory-limit", size, "--time-limit", "20"], "exceeded"


def test_budget_fuzzer(tmp_path) -> None:
    seconds = float(os.environ.get("RELAY_FUZZ_SECONDS", "40"))
    seed = int(os.environ.get("RELAY_FUZZ_SEED", str(random.randrange(1 << 30))))
    print(f"budget fuzzer: seed {seed} (RELAY_FUZZ_SEED), {seconds:g} s (RELAY_FUZZ_SECONDS)")
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    cases = 0
    worst = {"time over": 0.0, "memory over MiB": 0.0}
    while time.monotonic() < deadline:
        source, tier, limits, error = fuzz_case(rng)
        run = relay_measured(tmp_path, source, "--tier", tier, *limits)
        base = startup(tmp_path, tier)
        cases += 1
        if run.status == 0:  # finished within its budgets: nothing to check but its answer
            assert run.out == "false\n", (source, run.err)
            continue
        assert run.status == 1 and re.search(error, run.err) and "Traceback" not in run.err, (tier, limits, source, run.err)
        assert run.err.split(":")[0].endswith(".relay"), run.err  # FILE:LINE:COL first
        if limits[0] == "--time-limit":
            over = run.seconds - base.seconds - float(limits[1])
            worst["time over"] = max(worst["time over"], over)
            assert over <= float(limits[1]) * 0.1 + 0.1 + SLACK, (tier, source, run.seconds)
        else:
            budget = (64 if limits[1] == "64M" else 128) * MIB
            over = (run.peak - base.peak - budget) / MIB
            worst["memory over MiB"] = max(worst["memory over MiB"], over)
            assert run.peak <= base.peak + budget + MEMORY_MARGIN, (tier, source, run.peak / MIB)
    print(f"budget fuzzer: {cases} programs, worst time over the limit {worst['time over']:.2f} s "
          f"(minus start-up), worst memory over the budget {worst['memory over MiB']:.0f} MiB")


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("shape", ["tree", "return"])
def test_call_trees_and_early_returns_are_stopped_on_time(tmp_path, tier, shape) -> None:
    """Two ways compiled code once went uncounted: a tree of calls with no loop and no recursion
    (each of 32 functions calls the next twice: 2^32 calls), and a `return` from inside a chunk of
    an innermost loop (its iterations were never added to the ticks), called forever."""
    if shape == "tree":
        src = "".join(f"fn f{k}(a: array<number>) {{ f{k + 1}(a)\n f{k + 1}(a)\n 0 }}\n" for k in range(32))
        src += "fn f32(a: array<number>) { a[0] = sin(a[0]) + 1\n 0 }\nlet a = [0]\nf0(a)\nprint(a[0])\n"
    else:
        src = ("fn find(a: array<number>) { let s = 0\n for x in a { if x < 0 { return s }\n s += sin(s + x) }\n"
               " return s }\nfn main(n) { let a = array(n, 1)\n a[n - 1] = -1\n let c = 0\n"
               " while true { c += find(a) }\n c }\nprint(main(32768))\n")
    run = relay_measured(tmp_path, src, "--tier", tier, "--time-limit", "1")
    assert_within(tmp_path, run, tier, "limit: time limit of 1 s exceeded", None, 1.0, None)


def test_a_large_hot_function_compiles_within_a_small_memory_budget(tmp_path) -> None:
    """A function of 600 `let`s made hot in the auto tier: a compile this large is waited for, its
    memory not the program's (in the background it would count, and 32 MB would not hold it).
    A constant no other test uses keeps the object store from answering instead of LLVM."""
    lets = "".join(f"  let v{k} = v{k - 1} * 1.0000001 + {k} - x / {k + 1}\n" for k in range(1, 600))
    src = (f"fn big(x) {{\n  let v0 = x + {time.time_ns()}\n{lets}  v599\n}}\n"
           "let t = 0\nfor i in 0..3000 { t += big(i) }\nprint(t > 0)\n")
    run = relay_measured(tmp_path, src, "--tier", "auto", "--memory-limit", "32M")
    assert (run.status, run.out, run.err) == (0, "true\n", "")
