"""The `relay` command: the language's commands (relay_lang.cli) plus the fleet's.

`relay eval | deploy | call | send | result | servers | dead-letters` drive the fleet
through `RelayClient`; URLs come from RELAY_BROKER_URL, RELAY_RESULT_BACKEND
and RELAY_STORE_URL. Exit status: 0 done, 1 a Relay error (in the program, the
handler, or the request), 2 bad usage, an unreadable file or a bad setting
(a RELAY_* variable: relay_workers.settings), 3 the fleet cannot be reached.
Each command is a function of its own: COMMANDS (FLEET_COMMANDS for those of RelayClient) maps
a command's name to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from relay_lang.cli import build_parser, guarded, leave, positive_seconds, read_source, run_command, size_argument
from relay_lang.errors import RelayError
from relay_lang.values import show

from .settings import ConfigurationError, load

if TYPE_CHECKING:
    from .client import RelayClient

def add_host_commands(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start a complete local fleet (Redis, workers, beat, Flower) until Ctrl-C",
                        description="Starts a private redis-server (unless RELAY_STORE_URL is set), workers, beat "
                                    "and Flower, prints where they listen and the export lines to reach them.")
    up.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes (default 2)")
    up.add_argument("--data", metavar="DIR",
                    help="data and logs (default ~/.relay/up or $RELAY_UP_DIR; with --demo a new temporary folder)")
    up.add_argument("--no-flower", action="store_true", help="do not start Flower")
    up.add_argument("--demo", action="store_true",
                    help="deploy the examples, show calls, sends, an eval, a kill -9 and the restart; then stop")


def add_gateway_command(sub: argparse._SubParsersAction) -> None:
    gw = sub.add_parser("gateway", help="serve the fleet over HTTP: REST, JSON-RPC 2.0, metrics (docs/gateway.md)",
                        description="Serves the fleet over HTTP with uvicorn. Clients send `Authorization: Bearer "
                                    "$RELAY_GATEWAY_TOKEN`; the fleet's URLs come from RELAY_BROKER_URL, "
                                    "RELAY_RESULT_BACKEND and RELAY_STORE_URL.")
    gw.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    gw.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    gw.add_argument("--insecure", action="store_true",
                    help="serve without authentication when RELAY_GATEWAY_TOKEN is not set (refused otherwise)")
    gw.add_argument("--timeout", type=positive_seconds, default=60, metavar="SECONDS",
                    help="longest wait of a request for the fleet; longer asked timeouts are capped (default 60)")
    gw.add_argument("--read-timeout", type=positive_seconds, default=10, metavar="SECONDS",
                    help="time a client has to send its request body, else 408 (default 10)")
    gw.add_argument("--header-timeout", type=positive_seconds, default=10, metavar="SECONDS",
                    help="time a client has to send a request's line and headers, from connecting or from its "
                         "previous answer; then the connection is closed (408 if part came) (default 10)")
    gw.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES",
                    help="largest request body, else 413 (default 1048576)")


def add_fleet_commands(sub: argparse._SubParsersAction) -> None:
    fleet = "the fleet's URLs come from RELAY_BROKER_URL, RELAY_RESULT_BACKEND and RELAY_STORE_URL"
    ev = sub.add_parser("eval", help="run a program on the fleet", description=fleet)
    ev.add_argument("file", nargs="?", help="a Relay file (default: the code given with -c, or stdin)")
    ev.add_argument("-c", "--code", help="the program text")
    ev.add_argument("--timeout", type=positive_seconds, default=60, metavar="SECONDS",
                    help="how long to wait for the result (default 60)")
    ev.add_argument("--json", action="store_true", help="print the whole result as JSON")
    dep = sub.add_parser("deploy", help="start or hot-upgrade the servers a file declares", description=fleet)
    dep.add_argument("file")
    dep.add_argument("--max-restarts", type=int, metavar="N",
                     help="restarts allowed within --restart-period before the server is marked failed "
                          "(default 5, or $RELAY_MAX_RESTARTS)")
    dep.add_argument("--restart-period", type=positive_seconds, metavar="SECONDS",
                     help="the window of --max-restarts (default 60, or $RELAY_RESTART_PERIOD)")
    dep.add_argument("--time-limit", type=positive_seconds, metavar="SECONDS",
                     help="time limit of one message (default and maximum: the workers' $RELAY_JOB_TIME_LIMIT, 60)")
    dep.add_argument("--memory-limit", type=size_argument, metavar="SIZE",
                     help="memory budget of one message (256M, 2G; default the workers' $RELAY_MEMORY_LIMIT or 1G)")
    for name, what in (("call", "send a message and print the reply"), ("send", "enqueue a message")):
        cmd = sub.add_parser(name, help=what, description=fleet)
        cmd.add_argument("server")
        cmd.add_argument("handler")
        cmd.add_argument("args", nargs="*", metavar="JSON_ARG", help="each argument as JSON (5, '\"text\"', '[1, 2]')")
        if name == "call":
            cmd.add_argument("--timeout", type=positive_seconds, default=30, metavar="SECONDS",
                             help="how long to wait for the reply (default 30)")
    res = sub.add_parser("result", help="print the reply of a message, by its id (a call that gave up, a send)",
                         description=fleet)
    res.add_argument("id", help="the message id (printed by `relay send`, or in the error of a call that gave up)")
    res.add_argument("--timeout", type=float, default=0, metavar="SECONDS",
                     help="how long to wait for a message still queued (default 0: answer at once)")
    res.add_argument("--server", help="look only at this server's messages")
    srv = sub.add_parser("servers", help="list the servers, a page at a time, with counts by status, family and "
                         "host", description=fleet)
    srv.add_argument("--family", help="only this family's servers (`account` for account[ada])")
    srv.add_argument("--status", help="only servers with this status (running, starting, inactive, restarting, "
                     "failed, family)")
    srv.add_argument("--owner", help="only servers on this worker (a node name, or a host id)")
    srv.add_argument("--prefix", default="", help="only servers whose name starts with this")
    srv.add_argument("--limit", type=int, default=50, help="servers a page shows (default 50)")
    srv.add_argument("--offset", type=int, default=0, help="servers skipped before the page (default 0)")
    srv.add_argument("--json", action="store_true", help="print the page as JSON")
    restart = sub.add_parser("restart", help="bring back a server (a failed one too) from its last commit",
                             description=fleet)
    restart.add_argument("server")
    dead = sub.add_parser("dead-letters", help="list (or replay, or drop) what the fleet set aside: undecodable "
                          "input, and messages whose handling killed their owner too often", description=fleet)
    dead.add_argument("server", nargs="?", help="only this server's")
    dead.add_argument("--json", action="store_true", help="print the list as JSON")
    dead.add_argument("--replay", metavar="ID", help="send this dead-lettered message again, and remove it")
    dead.add_argument("--drop", metavar="ID", help="remove this dead letter")


def _json_args(texts: list[str]) -> list[object]:
    values = []
    for text in texts:
        try:
            values.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise RelayError(f"argument {text!r} is not JSON ({exc.msg}); quote strings: '\"text\"'",
                             kind="bad request") from None
    return values


def run_fleet_command(args: argparse.Namespace) -> int:
    """A command that drives the fleet through a RelayClient (FLEET_COMMANDS), with its exit status."""
    from .client import FleetUnreachable, client_from_env
    try:
        source = read_source(args.file) if getattr(args, "file", None) else None
        with client_from_env() as client:
            return FLEET_COMMANDS[args.command](client, args, source)
    except ConfigurationError:
        raise  # configured() reports it
    except FleetUnreachable as err:
        print(f"relay: {err.message}", file=sys.stderr)
        return 3
    except RelayError as err:  # invalid UTF-8 in the file included
        print(err, file=sys.stderr)
        return 1
    except OSError as exc:  # the file or stdin (the fleet's connection errors are FleetUnreachable)
        print(f"relay: cannot read {getattr(args, 'file', None) or 'stdin'}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def cmd_eval(client: RelayClient, args: argparse.Namespace, source: str | None) -> int:
    from .wire import from_wire
    code = source if source is not None else args.code
    if code is None:
        if sys.stdin.isatty():
            print("relay eval: reading the program from stdin (end it with Ctrl-D)", file=sys.stderr)
        code = sys.stdin.read()
    result = client.eval(code, timeout=args.timeout, file=args.file or "<eval>")
    if args.json:
        print(json.dumps(result.__dict__, indent=2))
        return 1 if result.error else 0
    sys.stdout.write(result.output)
    if result.error:
        print(result.error["text"], file=sys.stderr)
        return 1
    if result.value is not None:
        print(show(from_wire(result.value)))
    return 0


def cmd_deploy(client: RelayClient, args: argparse.Namespace, source: str | None) -> int:
    assert source is not None  # `file` is a required argument
    for name, version in client.deploy(source, file=args.file, max_restarts=args.max_restarts,
                                       restart_period=args.restart_period, time_limit=args.time_limit,
                                       memory_limit=args.memory_limit):
        print(f"deployed {name} (version {version})")
    return 0


def cmd_restart(client: RelayClient, args: argparse.Namespace, source: str | None) -> int:
    client.restart(args.server)
    print(f"restarting {args.server}")
    return 0


def cmd_call(client: RelayClient, args: argparse.Namespace, source: str | None) -> int:
    print(show(client.call(args.server, args.handler, *_json_args(args.args), timeout=args.timeout)))
    return 0


def cmd_send(client: RelayClient, args: argparse.Namespace, source: str | None) -> int:
    print(client.send(args.server, args.handler, *_json_args(args.args)))
    return 0


def cmd_result(client: RelayClient, args: argparse.Namespace, source: str | None) -> int:
    print(show(client.result(args.id, timeout=max(0.0, args.timeout), server=args.server)))
    return 0


def cmd_dead_letters(client: RelayClient, args: argparse.Namespace, source: str | None) -> int:
    if args.replay:
        print(client.replay(args.replay))
        return 0
    if args.drop:
        client.drop(args.drop)
        return 0
    letters = client.dead_letters(args.server)
    if args.json:
        print(json.dumps(letters))
    else:
        for d in letters:
            print(f"{d['id']:<36} {d['queue']:<20} {d.get('attempts', '-'):>3} {d['reason']}")
    return 0


def cmd_servers(client: RelayClient, args: argparse.Namespace, source: str | None) -> int:
    page = client.servers_page(prefix=args.prefix, family=args.family, status=args.status, owner=args.owner,
                               limit=args.limit, offset=args.offset)
    if args.json:
        print(json.dumps(page))
        return 0
    servers = cast(list[dict], page["servers"])
    print(f"{'name':<20} {'owner':<28} {'status':<10} {'restarts':>8} {'queued':>7}")
    for s in servers:
        print(f"{s['name']:<20} {s['owner'] or '-':<28} {s['status']:<10} {s['restarts']:>8} {s['queued']:>7}"
              + (f"  ({s['reason']}; `relay restart {s['name']}` brings it back)" if s["status"] == "failed" else "")
              + (f"  ({s['servers']} servers: --family {s['name'][:-2]})" if s["status"] == "family" else ""))
    matched, first = cast(int, page["matched"]), args.offset + 1
    shown = f"{first}-{args.offset + len(servers)} of {matched}" if servers else f"none of {matched}"
    more = f"; --offset {args.offset + len(servers)} for more" if args.offset + len(servers) < matched else ""
    print(f"-- {shown} matching ({page['total']} servers in all){more}")
    print("   by status: " + ", ".join(f"{k} {v}" for k, v in sorted(cast(dict, page["by_status"]).items())))
    families = cast(dict, page["families"])
    if any(n > 1 for n in families.values()):
        print("   by family: " + ", ".join(f"{k} {v}" for k, v in list(families.items())[:10])
              + (f" (and {len(families) - 10} more)" if len(families) > 10 else ""))
    print("   by host: " + (", ".join(f"{k} {v}" for k, v in cast(dict, page["hosts"]).items()) or "none"))
    return 0


FleetCommand = Callable[["RelayClient", argparse.Namespace, str | None], int]  # (client, args, the file's text)
FLEET_COMMANDS: dict[str, FleetCommand] = {
    "eval": cmd_eval, "deploy": cmd_deploy, "call": cmd_call, "send": cmd_send, "result": cmd_result,
    "servers": cmd_servers, "restart": cmd_restart, "dead-letters": cmd_dead_letters,
}


def cmd_gateway(args: argparse.Namespace) -> int:
    from .gateway import run_gateway
    return run_gateway(args)


def cmd_up(args: argparse.Namespace) -> int:
    from .up import default_data_dir, run
    return run(args.workers, Path(args.data) if args.data else default_data_dir(demo=args.demo), demo=args.demo,
               flower=not args.no_flower)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {  # what relay_workers adds to relay_lang.cli's run and repl
    "gateway": cmd_gateway, "up": cmd_up, **dict.fromkeys(FLEET_COMMANDS, run_fleet_command),
}


def configured(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Runs a command of the fleet once its settings are read: a bad one is one line and exit status 2."""
    try:
        load()
        return command(args)
    except ConfigurationError as err:
        print(f"relay: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser, sub = build_parser()
    add_fleet_commands(sub)
    add_host_commands(sub)
    add_gateway_command(sub)
    args = parser.parse_args(argv)
    command = COMMANDS.get(args.command)
    if command is None:  # relay run, relay repl
        return guarded(lambda: run_command(args))
    return guarded(lambda: configured(command, args))


def console() -> None:
    """The `relay` command (see relay_lang.cli.leave)."""
    leave(main())


if __name__ == "__main__":
    console()
