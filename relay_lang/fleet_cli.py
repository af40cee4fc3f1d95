"""`relay eval | deploy | call | send | servers`: the CLI face of `relay_workers.RelayClient`."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import RelayError
from .values import show


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


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
    try:
        from relay_workers.client import client_from_env
    except ImportError as exc:  # pragma: no cover - installed together
        print(f"relay: the fleet is not installed ({exc})", file=sys.stderr)
        return 2
    try:
        source = _read(args.file) if getattr(args, "file", None) else None
    except (OSError, UnicodeDecodeError) as exc:
        print(f"relay: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        with client_from_env() as client:
            return _dispatch(client, args, source)
    except RelayError as err:
        print(err, file=sys.stderr)
        return 1
    except OSError as exc:  # broker or store unreachable
        print(f"relay: cannot reach the fleet: {exc}", file=sys.stderr)
        return 3


def _dispatch(client, args: argparse.Namespace, source: str | None) -> int:
    from relay_workers.wire import from_wire
    command = args.command
    if command == "eval":
        code = source if source is not None else args.code
        if code is None:
            code = sys.stdin.read()
        result = client.eval(code, server=args.server, timeout=args.timeout, file=args.file or "<eval>")
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
    if command == "deploy":
        for name in client.deploy(source, file=args.file):
            print(f"deployed {name}")
        return 0
    if command == "call":
        print(show(client.call(args.server, args.handler, *_json_args(args.args), timeout=args.timeout)))
        return 0
    if command == "send":
        print(client.send(args.server, args.handler, *_json_args(args.args)))
        return 0
    servers = client.servers()
    if args.json:
        print(json.dumps(servers))
    else:
        print(f"{'name':<20} {'owner':<28} {'status':<10} {'restarts':>8}")
        for s in servers:
            print(f"{s['name']:<20} {s['owner'] or '-':<28} {s['status']:<10} {s['restarts']:>8}")
    return 0
