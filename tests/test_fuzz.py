"""Property: whatever the source, the front end and the interpreter raise only Relay errors.

Random token soup and mutated conformance programs go through the whole
pipeline (lexer, parser, resolver, code generator, interpreter) with a small
time and depth budget. Any exception other than RelayError is a bug. So are
adversarial programs (IEEE edge values, huge ranges and sizes, shared
structure printed, compared and sent, flat chains, compiled functions) that
overrun their time or memory budget.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_program

PROGRAMS = [p.read_text() for p in sorted((Path(__file__).parent / "conformance").rglob("*.relay"))]

TOKENS = (
    "fn let set if else while for in break continue return true false null nil server state "
    "receive send self print len push pop str num type keys has del array slice join split "
    "sqrt floor round min max error x y z a b f g counter 0 1 2 -1 0.5 1e308 1e-9 0x1F .5 "
    "+ - * / % ** = == != < <= > >= && || ?? ! .. . , ; : ( ) [ ] { } -> += -= *= /= %= @llvm "
    "@interpret @optimize(2) @fastmath \"s\" \"\\n\" \"\\u{263A}\" // /* */ \n \n \n "
    # Relay 0.3's forms: symbols, [T] types, string(), array methods, `send "name" handler {}`, if as a value
    ":hello [number] [[object]] object function string get length map filter find reduce message \"counter\""
).split(" ") + ["let v = if", 'send "counter" incr {']

SETTINGS = settings(max_examples=1200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_guarded(source: str) -> None:
    interp = Interpreter(out=io.StringIO(), err=io.StringIO(), max_depth=200)
    try:
        run_program(source, "fuzz.relay", interp=interp, time_limit=0.1)
    except RelayError as err:
        text = str(err)
        assert "Traceback" not in text
        if err.pos is not None:
            assert err.pos.file == "fuzz.relay" and err.pos.line >= 1 and err.pos.col >= 1


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup_raises_only_relay_errors(tokens: list[str]) -> None:
    run_guarded(" ".join(tokens))


@st.composite
def mutated_program(draw: st.DrawFn) -> str:
    source = draw(st.sampled_from(PROGRAMS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(source)))
        j = min(len(source), i + draw(st.integers(0, 12)))
        insert = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)))
        source = source[:i] + insert + source[j:]
    return source


@SETTINGS
@given(mutated_program())
def test_mutated_programs_raise_only_relay_errors(source: str) -> None:
    run_guarded(source)


ATOMS = ["0", "-0.0", "1e308", "-1e308", "(1/0)", "(0/0)", "(2 ** 1023)", "0x1F", "null", "true", '"s"', "[]",
         "[1, 2]", "{a: 1}", "x", "d", "nothing()", "8.5", "-20.123456789", "3e9"]
OPS = ["+", "-", "*", "/", "%", "**", "==", "!=", "<", "&&", "||", "??"]
TEMPLATES = [
    "print({a} {op} {b})", "x = pow({a}, {b})", "for i in {a}..{b} {{ x = i; break }}", "x = array({a}, {b})",
    "x = str({a})", "x = join([{a}, {b}], str({c}))", "x = split(str({a}), \"\")", "s.put({a})", "x = [{a}, x]",
    "x = len(str(d)) + len(str({a}))", "x = d == [{a}, {b}]", "for c in str({a}) {{ x = c }}",
    "fn f{k}(p) {{ let t = 0; for i in 0..3 {{ t = p {op} {a} }} return t }}\nprint(f{k}({b}))",
    "fn g{k}(p) -> number {{ for i in 0..2 {{ if p {op} {a} {{ return 1 }} }} }}\nprint(g{k}({b}))",
]
PRELUDE = ("fn nothing() { }\nlet d = [1]\nfor i in 0..40 { d = [d, d] }\nlet x = 0\n"
           "server s { state { v: null }\n receive fn put(v) { state.v = v; 1 } }\n")


@st.composite
def adversarial_program(draw: st.DrawFn) -> str:
    lines = [PRELUDE]
    for k in range(draw(st.integers(1, 4))):
        template = draw(st.sampled_from(TEMPLATES))
        a, b, c = (draw(st.sampled_from(ATOMS)) for _ in range(3))
        lines.append(template.format(a=a, b=b, c=c, op=draw(st.sampled_from(OPS)), k=k))
    if draw(st.booleans()):  # a flat chain
        lines.append(f"print({f' {draw(st.sampled_from(OPS))} '.join([draw(st.sampled_from(ATOMS))] * 3000)})")
    return "\n".join(lines)


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(adversarial_program(), st.sampled_from(["auto", "interpret"]))
def test_adversarial_programs_raise_only_relay_errors_within_their_budgets(source: str, tier: str) -> None:
    interp = Interpreter(out=io.StringIO(), err=io.StringIO(), tier=tier)
    start = time.monotonic()
    try:
        run_program(source, "fuzz.relay", interp=interp, time_limit=0.3, memory_limit=64 << 20)
    except RelayError as err:
        assert "Traceback" not in str(err)
    assert time.monotonic() - start < 0.3 * 1.1 + 0.1 + 1.5, source  # 1.5 s: compiling, which is bounded apart
