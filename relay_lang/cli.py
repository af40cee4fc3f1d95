"""The language's commands: `relay run FILE`, `relay repl` (the fleet adds its own: relay_workers.cli)."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from .budget import DEFAULT_MAX_DEPTH, check_max_depth, memory_limit_from_env, parse_size
from .errors import Pos, RelayError, RelaySyntaxError


def positive_seconds(text: str) -> float:
    """A time limit: a number of seconds > 0; inf, or NO_TIME_LIMIT and more, is no limit."""
    try:
        if not text.isascii():  # float() also reads other scripts' digits
            raise ValueError(text)
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def depth_argument(text: str) -> int:
    try:
        return check_max_depth(_whole_number(text))
    except ValueError as exc:
        message = str(exc) if "depth limit" in str(exc) else f"not a whole number: {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _whole_number(text: str) -> int:
    """int(text), for ASCII digits only (int() also reads Arabic-Indic and other digits)."""
    if not text.isascii():
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)


def size_argument(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive size, like 256M or 2G")
    return value


def _env_depth() -> int:
    text = os.environ.get("RELAY_MAX_DEPTH", str(DEFAULT_MAX_DEPTH))
    try:
        depth = _whole_number(text)
    except ValueError:
        raise SystemExit(f"relay: RELAY_MAX_DEPTH={text!r} is not a whole number") from None
    try:
        return check_max_depth(depth)
    except ValueError as exc:
        raise SystemExit(f"relay: RELAY_MAX_DEPTH={text!r}: {exc}") from None


def _env_memory_limit() -> int:
    """$RELAY_MEMORY_LIMIT, checked before any program runs: a bad value stops with one line saying so."""
    try:
        return memory_limit_from_env()
    except RelayError as err:
        raise SystemExit(f"relay: {err.message}") from None


def _version() -> str:
    try:
        return importlib.metadata.version("relay-lang")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The parser of `relay run` and `relay repl`; hosts (the fleet's CLI) add their own commands to it."""
    parser = argparse.ArgumentParser(prog="relay", description="Run Relay programs.")
    parser.add_argument("--version", action="version", version=f"relay {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a Relay program")
    run.add_argument("file")
    run.add_argument("--tier", choices=("auto", "interpret", "llvm"), default="auto",
                     help="execution tier for the whole program (default: auto)")
    run.add_argument("--explain", action="store_true", help="print each function's tier and why")
    run.add_argument("--time-limit", type=positive_seconds, metavar="SECONDS",
                     help="stop the program with an error after this many seconds")
    run.add_argument("--memory-limit", type=size_argument, metavar="SIZE", default=_env_memory_limit(),
                     help="stop the program with an error once it adds more than SIZE to the process's memory "
                          "(256M, 2G; default $RELAY_MEMORY_LIMIT or 1G)")
    run.add_argument("--max-depth", type=depth_argument, default=_env_depth(),
                     help=f"Relay call depth limit (default {DEFAULT_MAX_DEPTH}, or $RELAY_MAX_DEPTH)")
    repl = sub.add_parser("repl", help="interactive prompt")
    repl.add_argument("--max-depth", type=depth_argument, default=DEFAULT_MAX_DEPTH,
                      help=f"Relay call depth limit (default {DEFAULT_MAX_DEPTH})")
    return parser, sub


def read_source(path: str) -> str:
    """A program's text; text that is not UTF-8 is a syntax error at its line and column."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[data.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
        raise RelaySyntaxError(f"invalid UTF-8 (byte 0x{data[exc.start]:02x}): Relay source is UTF-8 text",
                               Pos(path, line, col)) from None


def cmd_run(args: argparse.Namespace) -> int:
    try:
        source = read_source(args.file)
    except OSError as exc:
        print(f"relay: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except RelaySyntaxError as err:
        print(err, file=sys.stderr)
        return 1
    from .interpreter import Interpreter, run_program  # here: the fleet commands, which share this module, start without it

    interp = Interpreter(max_depth=args.max_depth, tier=args.tier)
    status = 0
    try:
        run_program(source, args.file, interp=interp, time_limit=args.time_limit, memory_limit=args.memory_limit)
    except RelayError as err:
        sys.stdout.flush()
        print(err, file=sys.stderr)
        status = 1
    if args.explain:
        sys.stdout.flush()
        for line in interp.router.explain():
            print(f"explain: {line}", file=sys.stderr)
    return status


def run_command(args: argparse.Namespace) -> int:
    if args.command == "run":
        return cmd_run(args)
    from .repl import repl
    return repl(args.max_depth)


def guarded(command: Callable[[], int]) -> int:
    """Runs a CLI command: Ctrl-C, a closed pipe and interpreter bugs end plainly, without a traceback."""
    try:
        return command()
    except KeyboardInterrupt:
        print("relay: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `relay run x.relay | head`: the reader has gone, and that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # an interpreter bug: say so plainly, no traceback
        if os.environ.get("RELAY_DEBUG"):
            raise
        print(f"relay: internal error ({type(exc).__name__}: {exc}); set RELAY_DEBUG=1 for details",
              file=sys.stderr)
        return 70


def main(argv: list[str] | None = None) -> int:
    args = build_parser()[0].parse_args(argv)
    return guarded(lambda: run_command(args))


def leave(status: int) -> NoReturn:
    """Ends the `relay` process. After `relay run` it leaves without tearing the program's values down:
    freeing millions of them can take longer than the program's time limit (its limit error is printed
    on time, and the process ends right after it)."""
    if sys.argv[1:2] == ["run"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    leave(main())
