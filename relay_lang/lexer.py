"""Scanner: source text to tokens.

Newlines are significant: they end statements. The scanner drops those that
fall directly inside `( )` or `[ ]` (a `{ }` nested in them makes newlines
significant again, so a function literal passed as an argument still has
statements); the parser skips the others where a statement cannot end
(after a binary operator, `,` or `=`, and inside map literals).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .budget import FRONT_END_CHECK, checkpoint_at
from .errors import Pos, RelaySyntaxError

KEYWORDS = frozenset(
    "fn let set if else while for in break continue return true false null nil "
    "server state receive send self".split()
)

# Longest first, so that `**=`-like prefixes resolve greedily.
OPERATORS = sorted(
    "+ - * / % ** = == != < <= > >= && || ?? ! .. . , ; : ( ) [ ] { } -> += -= *= /= %= @".split(),
    key=len,
    reverse=True,
)

ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "str", "ident", "kw", "op", "newline", "eof"
    text: str  # the operator, keyword or identifier; the raw text of a literal
    value: object  # float for numbers, str for strings, else None
    pos: Pos

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of file"
        if self.kind == "newline":
            return "end of line"
        if self.kind == "str":
            return "a string"
        if self.kind == "num":
            return f"number {self.text}"
        return f"'{self.text}'"


DIGITS = frozenset("0123456789")
# Runs the scanner takes at C speed: a token millions of characters long is read in milliseconds.
_IDENT_CHARS = re.compile(r"[A-Za-z0-9_]*")
_DIGIT_RUN = re.compile(r"[0-9]+(?:_[0-9]+)*")
_HEX_CHARS = re.compile(r"[0-9a-fA-F_]*")
_STRING_CHARS = re.compile(r'[^"\\\n]*')
LONG_TOKEN = 1 << 16  # characters: a token this long checks the budgets once read


def _run_end(run: re.Pattern[str], src: str, start: int, end: int | None = None) -> int:
    """Where the run of `run`'s characters (a pattern that matches the empty string too) from `start` ends."""
    m = run.match(src, start, len(src) if end is None else end)
    assert m is not None
    return m.end()


def _is_digit(c: str) -> bool:
    return c in DIGITS  # str.isdigit() also accepts '²' and other non-ASCII digits


def _is_ident_start(c: str) -> bool:
    return c.isascii() and (c.isalpha() or c == "_")


def _is_ident_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "_")


class Lexer:
    def __init__(self, source: str, file: str) -> None:
        # Line breaks as Python's universal newlines: CRLF, and CR alone (old Mac files), are one "\n".
        self.src = source.replace("\r\n", "\n").replace("\r", "\n")
        self.file = file
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.tokens: list[Token] = []
        # True for "(" and "[" (newlines ignored), False for "{".
        self.brackets: list[bool] = []

    def pos(self, index: int | None = None) -> Pos:
        index = self.i if index is None else index
        return Pos(self.file, self.line, index - self.line_start + 1)

    def error(self, message: str, index: int | None = None) -> RelaySyntaxError:
        return RelaySyntaxError(message, self.pos(index))

    def add(self, kind: str, text: str, value: object, start: int) -> None:
        self.tokens.append(Token(kind, text, value, self.pos(start)))
        if not len(self.tokens) % FRONT_END_CHECK or len(text) > LONG_TOKEN:
            checkpoint_at(self.pos(start))

    def tokenize(self) -> list[Token]:
        src = self.src
        n = len(src)
        while self.i < n:
            c = src[self.i]
            if c == "\n":
                if not (self.brackets and self.brackets[-1]):
                    self.add("newline", "\n", None, self.i)
                self.i += 1
                self.line += 1
                self.line_start = self.i
            elif c in " \t\r\ufeff":
                self.i += 1
            elif src.startswith("//", self.i):
                end = src.find("\n", self.i)
                self.i = n if end < 0 else end
            elif src.startswith("/*", self.i):
                self.block_comment()
            elif _is_digit(c) or (c == "." and self.i + 1 < n and _is_digit(src[self.i + 1])):
                self.number()
            elif c == '"':
                self.string()
            elif _is_ident_start(c):
                start = self.i
                self.i = _run_end(_IDENT_CHARS, src, self.i)
                word = src[start:self.i]
                self.add("kw" if word in KEYWORDS else "ident", word, None, start)
            else:
                self.operator()
        self.add("eof", "", None, self.i)
        return self.tokens

    def block_comment(self) -> None:
        start = self.i
        end = self.src.find("*/", self.i + 2)
        if end < 0:
            raise self.error("unterminated comment: '/*' without '*/'", start)
        lines = self.src.count("\n", self.i, end)
        if lines:
            self.line += lines
            self.line_start = self.src.rfind("\n", self.i, end) + 1
        self.i = end + 2
        if end - start > LONG_TOKEN:
            checkpoint_at(self.pos(start))

    def number(self) -> None:
        src, n, start = self.src, len(self.src), self.i
        if src.startswith(("0x", "0X"), start):
            self.i += 2
            self.i = _run_end(_HEX_CHARS, src, self.i)
            digits = src[start + 2:self.i]
            if not digits.replace("_", "") or digits.startswith("_") or digits.endswith("_") or "__" in digits:
                raise self.error(f"malformed hex number '{src[start:self.i]}'", start)
            try:
                value = float(int(digits.replace("_", ""), 16))
            except OverflowError:
                raise self.error(f"hex number '{src[start:self.i]}' is too large (over 2^1024)", start) from None
        else:
            self.digits()
            if self.i + 1 < n and src[self.i] == "." and _is_digit(src[self.i + 1]):
                self.i += 1
                self.digits()
            if self.i < n and src[self.i] in "eE":
                j = self.i + 1
                if j < n and src[j] in "+-":
                    j += 1
                if not (j < n and _is_digit(src[j])):
                    raise self.error("malformed number: exponent has no digits", self.i)
                self.i = j
                self.digits()
            text = src[start:self.i]
            value = float(text.replace("_", ""))
        if self.i < n and _is_ident_char(src[self.i]):
            end = self.i
            while end < n and _is_ident_char(src[end]):
                end += 1
            raise self.error(f"malformed number '{src[start:end]}'", start)
        self.add("num", src[start:self.i], value, start)

    def digits(self) -> None:
        """Digits with single underscores between them (none: nothing taken)."""
        m = _DIGIT_RUN.match(self.src, self.i)
        if m is not None:
            self.i = m.end()

    def string(self) -> None:
        src, n, start = self.src, len(self.src), self.i
        self.i += 1
        out: list[str] = []
        while True:
            plain = _run_end(_STRING_CHARS, src, self.i, self.i + LONG_TOKEN)  # to a quote, a backslash or a line break
            out.append(src[self.i:plain])
            cut = plain == self.i + LONG_TOKEN  # the run goes on: a long literal checks the budgets as it is read
            self.i = plain
            if cut:
                checkpoint_at(self.pos(start))
                continue
            if self.i >= n or src[self.i] == "\n":
                raise self.error("unterminated string", start)
            if src[self.i] == '"':
                self.i += 1
                break
            out.append(self.escape())
        self.add("str", src[start:self.i], "".join(out), start)

    def escape(self) -> str:
        src, n, start = self.src, len(self.src), self.i
        c = src[self.i + 1] if self.i + 1 < n else ""
        if c in ESCAPES and c:
            self.i += 2
            return ESCAPES[c]
        if c == "u" and src.startswith("{", self.i + 2):
            end = src.find("}", self.i + 3)
            digits = src[self.i + 3:end] if end > 0 else ""
            if end < 0 or not digits or len(digits) > 6 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.error("malformed unicode escape: expected \\u{HEX}", start)
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise self.error(f"\\u{{{digits}}} is not a valid unicode scalar value", start)
            self.i = end + 1
            return chr(code)
        raise self.error(f"unknown escape '\\{c}' in string", start)

    def operator(self) -> None:
        src, start = self.src, self.i
        for op in OPERATORS:
            if src.startswith(op, start):
                break
        else:
            raise self.error(f"unexpected character {src[start]!r}", start)
        if op in "([":
            self.brackets.append(True)
        elif op == "{":
            self.brackets.append(False)
        elif op in ")]}" and self.brackets:
            self.brackets.pop()
        self.i += len(op)
        self.add("op", op, None, start)


def tokenize(source: str, file: str = "<input>") -> list[Token]:
    return Lexer(source, file).tokenize()
