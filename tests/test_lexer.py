from __future__ import annotations

import pytest

from relay_lang.errors import RelaySyntaxError
from relay_lang.lexer import tokenize


def kinds(src: str) -> list[tuple[str, object]]:
    return [(t.kind, t.value if t.kind in ("num", "str") else t.text) for t in tokenize(src)][:-1]


@pytest.mark.parametrize("text,value", [
    ("42", 42.0), ("3.14", 3.14), (".5", 0.5), ("1e-9", 1e-9), ("1_000_000", 1e6), ("0x1F", 31.0),
    ("2.5E+3", 2500.0), ("9007199254740993", 9007199254740992.0),
])
def test_numbers(text: str, value: float) -> None:
    assert kinds(text) == [("num", value)]


def test_range_is_not_a_fraction() -> None:
    assert kinds("0..n") == [("num", 0.0), ("op", ".."), ("ident", "n")]


def test_string_escapes() -> None:
    assert kinds(r'"a\n\t\r\"\\\u{1F600}"') == [("str", 'a\n\t\r"\\\U0001F600')]


def test_keywords_and_comments() -> None:
    src = "let x = nil // trailing\n/* block\n comment */ set"
    assert kinds(src) == [("kw", "let"), ("ident", "x"), ("op", "="), ("kw", "nil"), ("newline", "\n"), ("kw", "set")]


def test_newlines_inside_brackets_are_dropped_but_not_in_nested_braces() -> None:
    toks = [t.kind for t in tokenize("f(1,\n2, fn() {\nx\n})")]
    assert toks.count("newline") == 2


def test_positions() -> None:
    toks = tokenize("let\n  x")
    assert (toks[2].pos.line, toks[2].pos.col) == (2, 3)


@pytest.mark.parametrize("src,message,col", [
    ('"abc', "unterminated string", 1),
    ('x = "a\\q"', "unknown escape", 7),
    ("1__0", "malformed number", 1),
    ("x = 12abc + 1", "malformed number '12abc'", 5),
    ("0x", "malformed hex", 1),
    ("1e+", "exponent", 2),
    ("a # b", "unexpected character", 3),
    ("/* open", "unterminated comment", 1),
    ('"\\u{D800}"', "unicode", 2),
])
def test_errors(src: str, message: str, col: int) -> None:
    with pytest.raises(RelaySyntaxError) as info:
        tokenize(src, "f.relay")
    assert message in info.value.message
    assert info.value.pos.col == col
    assert str(info.value).startswith(f"f.relay:1:{col}: syntax error:")
