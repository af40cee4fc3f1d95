"""Property: whatever the source, the front end and the interpreter raise only Relay errors.

Random token soup and mutated conformance programs go through the whole
pipeline (lexer, parser, resolver, code generator, interpreter) with a small
time and depth budget. Any exception other than RelayError is a bug.
"""

from __future__ import annotations

import io
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
    "@interpret @optimize(2) @fastmath \"s\" \"\\n\" \"\\u{263A}\" // /* */ \n \n \n"
).split(" ")

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
