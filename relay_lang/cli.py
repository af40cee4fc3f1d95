"""The `relay` command: `relay run FILE`, `relay repl`."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import RelayError
from .interpreter import DEFAULT_MAX_DEPTH, Interpreter, run_program


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Run Relay programs.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a Relay program")
    run.add_argument("file")
    run.add_argument("--tier", choices=("auto", "interpret", "llvm"), default="auto",
                     help="execution tier for the whole program (default: auto)")
    run.add_argument("--explain", action="store_true", help="print each function's tier and why")
    run.add_argument("--time-limit", type=_positive, metavar="SECONDS",
                     help="stop the program with an error after this many seconds")
    run.add_argument("--max-depth", type=int, default=int(os.environ.get("RELAY_MAX_DEPTH", DEFAULT_MAX_DEPTH)),
                     help=f"Relay call depth limit (default {DEFAULT_MAX_DEPTH}, or $RELAY_MAX_DEPTH)")
    repl = sub.add_parser("repl", help="interactive prompt")
    repl.add_argument("--max-depth", type=int, default=DEFAULT_MAX_DEPTH)
    fleet = "the fleet's URLs come from RELAY_BROKER_URL, RELAY_RESULT_BACKEND and RELAY_STORE_URL"
    ev = sub.add_parser("eval", help="run a program on the fleet", description=fleet)
    ev.add_argument("file", nargs="?", help="a Relay file (default: the code given with -c)")
    ev.add_argument("-c", "--code", help="the program text")
    ev.add_argument("--server", help="run on the worker that owns this server")
    ev.add_argument("--timeout", type=_positive, default=60)
    ev.add_argument("--json", action="store_true", help="print the whole result as JSON")
    dep = sub.add_parser("deploy", help="start or hot-upgrade the servers a file declares", description=fleet)
    dep.add_argument("file")
    for name, what in (("call", "send a message and print the reply"), ("send", "enqueue a message")):
        cmd = sub.add_parser(name, help=what, description=fleet)
        cmd.add_argument("server")
        cmd.add_argument("handler")
        cmd.add_argument("args", nargs="*", metavar="JSON_ARG", help="each argument as JSON (5, '\"text\"', '[1, 2]')")
        if name == "call":
            cmd.add_argument("--timeout", type=_positive, default=30)
    srv = sub.add_parser("servers", help="list the deployed servers", description=fleet)
    srv.add_argument("--json", action="store_true")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    try:
        with open(args.file, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"relay: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    interp = Interpreter(max_depth=args.max_depth, tier=args.tier)
    status = 0
    try:
        run_program(source, args.file, interp=interp, time_limit=args.time_limit)
    except RelayError as err:
        sys.stdout.flush()
        print(err, file=sys.stderr)
        status = 1
    if args.explain:
        sys.stdout.flush()
        for line in interp.router.explain():
            print(f"explain: {line}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "repl":
            from .repl import repl
            return repl(args.max_depth)
        from .fleet_cli import run_fleet_command
        return run_fleet_command(args)
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


if __name__ == "__main__":
    sys.exit(main())
