"""`relay repl`: an interactive prompt with line editing, history and multi-line entries."""

from __future__ import annotations

import os
import signal
import sys

from .errors import Pos, RelayError, RelaySyntaxError
from .interpreter import Interpreter, run_budgeted
from .parser import parse
from .values import show

HISTORY = os.path.expanduser("~/.relay_history")


def _setup_readline() -> None:
    try:
        import readline
    except ImportError:  # not on every platform; the prompt still works without it
        return
    try:
        readline.read_history_file(HISTORY)
    except OSError:
        pass
    readline.set_history_length(1000)
    import atexit

    def save() -> None:
        try:
            readline.write_history_file(HISTORY)
        except OSError:
            pass

    atexit.register(save)


def incomplete(source: str) -> bool:
    """True when the source only lacks its end (an open block, bracket or string)."""
    try:
        parse(source, "<repl>")
    except RelaySyntaxError as err:
        return "end of file" in err.message or err.message.startswith("unterminated comment")
    return False


def repl(max_depth: int) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        _setup_readline()
        print("Relay REPL. An empty line ends a multi-line entry early; Ctrl-C interrupts; Ctrl-D quits.")
    interp = Interpreter(max_depth=max_depth, repl=True)
    entry = 1
    while True:
        lines: list[str] = []
        prompt = "relay> "
        while True:
            try:
                line = input(prompt) if interactive else _read_line()
            except EOFError:
                if interactive:
                    print()
                return 0
            except KeyboardInterrupt:  # Ctrl-C at the prompt drops the entry being typed
                print()
                lines, prompt = [], "relay> "
                continue
            lines.append(line)
            source = "\n".join(lines)
            if not incomplete(source) or (line == "" and len(lines) > 1):
                break
            prompt = "  ...> "
        if not source.strip():
            continue
        try:
            shown = run_interruptibly(interp, source, f"<repl {entry}>")
        except RelayError as err:
            sys.stdout.flush()
            print(err, file=sys.stderr)
        else:
            if shown is not None:
                print(shown)
        entry += 1


def run_interruptibly(interp: Interpreter, source: str, file: str) -> str | None:
    """Runs an entry and shows its value (None: no value), both within the entry's budgets; Ctrl-C
    stops it with a Relay error (the definitions made so far stay)."""
    def interrupt(signum: int, frame: object) -> None:
        interp.request_stop(RelayError("interrupted (Ctrl-C)", kind="interrupt"))

    def entry() -> str | None:
        value = interp.run(source, file)
        try:
            return None if value is None else show(value)
        except RelayError as err:  # too deep or too long to show: the entry's error, at its start
            raise err.at(Pos(file, 1, 1)) from None

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        return run_budgeted(interp, entry, None)
    finally:
        signal.signal(signal.SIGINT, previous)


def _read_line() -> str:
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
