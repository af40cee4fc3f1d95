"""Relay errors: one exception type, one reporter.

Every error a program can cause is a `RelayError` carrying a message, the
source position (file, line, column) and the Relay call stack. Errors raised
deep inside builtins start without a position; the innermost node that knows
one fills it in as the error propagates (`at`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pos:
    """A position in a source file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class RelayError(Exception):
    """An error of a Relay program: syntax, type, runtime, limit or user error."""

    # Only on errors of compiled code (compiler/jit.py): its frames, innermost first, the
    # outermost one placed by the interpreter at the interpreted call site.
    native_stack: list[tuple[str, Pos | None, int]]

    def __init__(self, message: str, pos: Pos | None = None, kind: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.kind = kind
        # Relay frames, innermost first, in runs: (function name, position of the call, times).
        # A recursion 10 million deep is one run: placing and showing it cost nothing per frame.
        self.stack: list[tuple[str, Pos, int]] = []
        # Raised by a function's prologue (argument check, depth limit): the error
        # belongs to the call site, one frame out.
        self.at_call_site = False

    def at(self, pos: Pos) -> RelayError:
        """Give the error a position if it has none yet; returns self."""
        if self.pos is None:
            self.pos = pos
        return self

    def __str__(self) -> str:
        return format_error(self)

    def to_dict(self) -> dict:
        """A JSON-serialisable form, for producers and the fleet."""
        pos = self.pos
        return {
            "kind": self.kind,
            "message": self.message,
            "file": pos.file if pos else None,
            "line": pos.line if pos else None,
            "col": pos.col if pos else None,
            "stack": [{"function": name, "file": p.file, "line": p.line, "col": p.col, "times": times}
                      for name, p, times in self.stack],
            "text": format_error(self),
        }


class RelaySyntaxError(RelayError):
    def __init__(self, message: str, pos: Pos) -> None:
        super().__init__(message, pos, kind="syntax error")


STACK_HEAD = 10
STACK_TAIL = 5


def format_error(err: RelayError) -> str:
    """`FILE:LINE:COL: kind: message`, then the Relay stack (repeats folded, long ones elided)."""
    where = f"{err.pos}: " if err.pos else ""
    lines = [f"{where}{err.kind}: {err.message}"]
    runs: list[list] = []  # [name, pos, count] for consecutive identical frames
    for name, pos, times in err.stack:
        if runs and runs[-1][0] == name and runs[-1][1] == pos:
            runs[-1][2] += times
        else:
            runs.append([name, pos, times])
    shown: list[list | None] = list(runs)
    if len(runs) > STACK_HEAD + STACK_TAIL:
        shown = [*runs[:STACK_HEAD], None, *runs[-STACK_TAIL:]]
    for run in shown:
        if run is None:
            lines.append(f"  ... {len(runs) - STACK_HEAD - STACK_TAIL} more frames ...")
            continue
        name, pos, count = run
        repeat = f" ({count} times)" if count > 1 else ""
        lines.append(f"  in {name}, called at {pos}{repeat}")
    return "\n".join(lines)
