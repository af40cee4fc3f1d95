"""Relay values and messages on the wire: JSON. Server references travel as {"$server": name}.

`relay.deliver(server, handler, args, message_id=None, chain=[])` and
`relay.eval(source, options={})` are the fleet's wire contract (see
docs/fleet.md); anything malformed in them is a Relay error of kind
"bad request", never a Python exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from relay_lang.budget import checkpoint
from relay_lang.errors import RelayError
from relay_lang.values import Array, ServerRef, copy_data, show

MAX_NESTING = 200  # levels of arrays and maps in a value from a producer
TIERS = ("auto", "interpret", "llvm")


def bad_request(message: str) -> RelayError:
    return RelayError(message, kind="bad request")


MAX_WIRE_ITEMS = 1_000_000  # elements of a value written out as JSON (shared parts count each time)


def to_wire(value: object, what: str = "a value across the fleet") -> object:
    """A Relay data value as JSON-serialisable Python (non-finite numbers as {"$num": "inf"});
    `what` names the value in the error when it is not data.

    JSON has no sharing: a value built as `x = [x, x]` is written out in full, so its size is bounded
    (MAX_WIRE_ITEMS) and the job's time budget is checked while it is written."""
    value = copy_data(value, what)
    return _Encoder().encode(value)


class _Encoder:
    def __init__(self) -> None:
        self.items = 0

    def encode(self, v: object) -> object:
        if type(v) is float:
            return v if math.isfinite(v) else {"$num": repr(v)}
        if type(v) is ServerRef:
            return {"$server": v.name}
        if type(v) is Array:
            self.count(len(v))
            return [self.encode(x) for x in v]
        if type(v) is dict:
            self.count(len(v))
            return {k: self.encode(x) for k, x in v.items()}
        return v

    def count(self, n: int) -> None:
        """n more elements written out: within MAX_WIRE_ITEMS, the time budget checked every 4,096."""
        self.items += n
        if self.items > MAX_WIRE_ITEMS:
            raise RelayError(f"a value too large to send across the fleet (over {MAX_WIRE_ITEMS:,} elements "
                             "once its shared parts are written out)", kind="limit")
        if self.items & 0xFFF < n:
            checkpoint()


def describe(server: str, handler: str, args: list) -> str:
    """A message as people read it, `counter.add(5, "x")` (Flower's task list), cut at 1,000 characters."""
    try:
        shown = ", ".join(show(from_wire(a)) for a in args)
    except RelayError:
        shown = "..."
    return f"{server}.{handler}({shown})"[:1000]


def from_wire(value: object, depth: int = 0) -> object:
    """JSON from a producer as a Relay value; ints become numbers; anything else is a bad request."""
    t = type(value)
    if t is bool or value is None or t is str:
        return value
    if type(value) is int or type(value) is float:
        return float(value)
    if depth >= MAX_NESTING:
        raise bad_request(f"a value nested more than {MAX_NESTING} levels deep")
    if type(value) is list:
        return Array([from_wire(x, depth + 1) for x in value])
    if type(value) is dict:
        if set(value) == {"$server"}:
            name = value["$server"]
            if type(name) is not str:
                raise bad_request("{\"$server\": NAME} takes the server's name as a string")
            return ServerRef(name)
        if set(value) == {"$num"}:
            return _special_number(value["$num"])
        return {str(k): from_wire(x, depth + 1) for k, x in value.items()}
    raise bad_request(f"a {t.__name__} cannot be a Relay value")


def _special_number(text: object) -> float:
    if text == "inf" or text == "-inf" or text == "nan":
        return float(str(text))
    raise bad_request(f"{{\"$num\": {text!r}}}: $num takes \"inf\", \"-inf\" or \"nan\"")


@dataclass
class Delivery:
    """A well-formed `relay.deliver` message."""

    server: str
    handler: str
    args: list
    message_id: str
    chain: list[str]


def parse_delivery(args: object, kwargs: object, task_id: str) -> Delivery:
    """The fields of a relay.deliver task, checked; a bad request otherwise."""
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise bad_request("relay.deliver takes positional arguments (a list) and keyword arguments (a map)")
    names = ("server", "handler", "args", "message_id", "chain")
    if len(args) > len(names) or set(kwargs) - set(names):
        raise bad_request(f"relay.deliver takes at most ({', '.join(names)}), got {len(args)} arguments "
                          f"and keywords {sorted(kwargs)}")
    fields = dict(zip(names, args), **kwargs)
    server, handler = fields.get("server"), fields.get("handler")
    values, message_id, chain = fields.get("args", []), fields.get("message_id") or task_id, fields.get("chain") or []
    if not isinstance(server, str) or not isinstance(handler, str) or not server or not handler:
        raise bad_request("relay.deliver takes a server name and a handler name (strings)")
    if not isinstance(values, list):
        raise bad_request("relay.deliver takes the handler's arguments as a list")
    if not isinstance(message_id, str) or not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
        raise bad_request("relay.deliver takes a message id (a string) and a chain (a list of server names)")
    from_wire(values)  # every argument must be a Relay value
    return Delivery(server, handler, values, message_id, chain)


def named_message_id(args: object, kwargs: object) -> str | None:
    """The message id a relay.deliver task names, read even when its other fields are malformed (its error
    reply goes there too), or None."""
    named = kwargs.get("message_id") if isinstance(kwargs, dict) else None
    if named is None and isinstance(args, list) and len(args) > 3:
        named = args[3]
    return named if isinstance(named, str) and named else None


@dataclass
class EvalOptions:
    tier: str = "auto"
    time_limit: float | None = None
    file: str = "<eval>"


def parse_eval(args: tuple, kwargs: dict) -> tuple[str, EvalOptions]:
    """The source and options of a relay.eval task, checked; a bad request otherwise."""
    if len(args) + len(kwargs) > 2 or set(kwargs) - {"source", "options"} or not (args or "source" in kwargs):
        raise bad_request("relay.eval takes (source, options={}) and nothing else")
    fields = dict(zip(("source", "options"), args), **kwargs)
    source, options = fields["source"], fields.get("options") or {}
    if not isinstance(source, str):
        raise bad_request(f"relay.eval takes the source as a string, got {type(source).__name__}")
    if not isinstance(options, dict) or set(options) - {"tier", "time_limit", "file"}:
        raise bad_request("relay.eval options are a map with tier, time_limit and file")
    parsed = EvalOptions()
    if "tier" in options:
        if options["tier"] not in TIERS:
            raise bad_request(f"options.tier is one of {', '.join(TIERS)}, got {options['tier']!r}")
        parsed.tier = options["tier"]
    if "time_limit" in options:
        limit = options["time_limit"]
        if type(limit) not in (int, float) or not 0 < limit < math.inf:
            raise bad_request(f"options.time_limit is a positive number of seconds, got {limit!r}")
        parsed.time_limit = float(limit)
    if "file" in options:
        if not isinstance(options["file"], str):
            raise bad_request("options.file is a string")
        parsed.file = options["file"]
    return source, parsed
