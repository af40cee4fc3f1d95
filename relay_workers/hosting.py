"""Servers hosted by one worker process, on the same `ServerInstance` as `relay run`.

A `Host` keeps, per server it owns: the interpreter holding the server's
globals and compiled functions, and the `ServerInstance` (handlers and
state). Every message goes through `Host.apply`: ownership (a lease with a
fencing token), exactly-once effect (a message id already applied returns its
recorded reply), the handler run within the job's budgets, then the new state
and the message id written together, atomically, fenced by the lease.
Messages are journalled in Redis before they are published; a new owner
first applies the journal's pending messages in send order, so a message a
dead owner had taken is applied once even when the broker lost it, and the
copies the broker still delivers are recognised and not applied again.

`FleetRuntime` is the actor runtime of code running in a worker: a call to a
server this process owns runs here at once (so a worker never waits on
itself); a call to a server elsewhere is a `relay.deliver` message awaited
with a timeout, carrying the chain of servers waiting on it so that a cycle
fails at once, naming it.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass, field

from relay_lang.actors import ServerInstance, cycle_error
from relay_lang.compiler.cache import CompileCache
from relay_lang.errors import Pos, RelayError
from relay_lang.interpreter import Interpreter, run_budgeted
from relay_lang.values import Function, ServerRef, copy_data

from .store import LEASE_TTL_MS, RedisObjectStore, Registry
from .wire import from_wire, to_wire


class NotOwner(Exception):
    """Another worker holds this server's lease: the message goes back to the queue."""


@dataclass
class Hosted:
    name: str
    interp: Interpreter
    version: int
    instance: ServerInstance | None = None
    lease: str = ""


@dataclass
class Host:
    node: str
    registry: Registry
    store: RedisObjectStore
    time_limit: float
    sender: object  # callable(server, handler, args, message_id, chain, wait) -> reply dict or None
    servers: dict[str, Hosted] = field(default_factory=dict)
    cache: CompileCache = field(init=False)  # compiled modules shared by every job of this process
    chain: list[str] = field(default_factory=list)  # servers handling a message in this process now

    def __post_init__(self) -> None:
        self.cache = CompileCache(self.store)

    # ------------------------------------------------------------ loading

    def hosted(self, name: str) -> Hosted:
        """The server, loaded (or hot-upgraded) to the registry's version."""
        version = self.registry.version(name)
        if version is None:
            raise RelayError(f"no server named '{name}' is deployed")
        current = self.servers.get(name)
        if current is not None and current.version == version and current.instance is not None:
            return current
        info = self.registry.server(name) or {}
        interp = current.interp if current is not None else Interpreter(
            out=io.StringIO(), err=io.StringIO(), cache=self.cache, repl=True)  # repl: upgrades redeclare
        hosted = current or Hosted(name, interp, version)
        hosted.version = version
        self.attach(interp, loading=hosted)
        run_budgeted(interp, lambda: interp.run(info["source"], info.get("file", f"<server {name}>")), self.time_limit)
        if hosted.instance is None:
            raise RelayError(f"the source deployed for server '{name}' does not declare it")
        self.servers[name] = hosted
        return hosted

    def wait_for_lease(self, name: str) -> str | None:
        """The lease, waiting out a previous owner's (a requeued message would lose its place in line)."""
        deadline = time.monotonic() + LEASE_TTL_MS / 1000 + 1
        while True:
            lease = self.registry.acquire(name, self.node)
            if lease is not None or time.monotonic() > deadline:
                return lease
            time.sleep(0.02)

    def catch_up(self, name: str, hosted: Hosted) -> None:
        """On taking a server, applies the journal's pending messages in send order (each once)."""
        for message_id, handler, args, chain in self.registry.pending(name):
            if self.registry.applied(name, message_id) is None:
                self.run_message(name, hosted, handler, args, message_id, chain)

    def attach(self, interp: Interpreter, loading: Hosted | None = None) -> None:
        """Makes interp run on the fleet: its runtime, and every deployed server as a global name."""
        interp.runtime = FleetRuntime(self, loading)
        interp.ns["_declare_server"] = interp.runtime.declare
        for name in self.registry.names():
            interp.ns.setdefault(f"g_{name}", ServerRef(name))

    def install(self, hosted: Hosted, handlers: dict[str, Function], initial: dict) -> ServerRef:
        if hosted.instance is not None:  # hot upgrade: new handlers, same state
            hosted.instance.upgrade(handlers, initial)
        else:
            saved = self.registry.load_checkpoint(hosted.name)
            state = from_wire(saved) if saved is not None else initial
            hosted.instance = ServerInstance(hosted.name, handlers, state)  # type: ignore[arg-type]
        return hosted.instance.ref

    # ------------------------------------------------------------ messages

    def apply(self, name: str, handler: str, args: list, message_id: str, chain: list[str]) -> dict:
        """Handles one message exactly once; returns the reply ({"value"} or {"error"})."""
        waiting = chain or self.chain  # the servers waiting (across workers) on this message
        if name in waiting:
            return {"error": cycle_error(waiting, name).to_dict()}
        try:
            hosted = self.hosted(name)
        except RelayError as err:
            return {"error": err.to_dict()}
        lease = self.wait_for_lease(name)
        if lease is None:
            self.servers.pop(name, None)
            raise NotOwner(name)
        if lease != hosted.lease:
            if hosted.lease:  # our lease lapsed and a new one began: reload the last checkpoint
                self.servers.pop(name, None)
                hosted = self.hosted(name)
            hosted.lease = lease
            self.catch_up(name, hosted)
        previous = self.registry.applied(name, message_id)
        if previous is not None:
            return previous  # delivered again after a crash: already applied
        return self.run_message(name, hosted, handler, args, message_id, waiting)

    def run_message(self, name: str, hosted: Hosted, handler: str, args: list, message_id: str,
                    waiting: list[str]) -> dict:
        instance = hosted.instance
        assert instance is not None
        outer, self.chain = self.chain, [*waiting, name]
        try:
            value = run_budgeted(hosted.interp, lambda: instance.handle(hosted.interp, handler, from_wire(args)),
                                 self.time_limit)
            reply: dict = {"value": to_wire(value)}
        except RelayError as err:
            reply = {"error": err.to_dict()}
        finally:
            self.chain = outer
        state = to_wire(instance.state)
        if not self.registry.checkpoint(name, hosted.lease, state, message_id, reply):
            self.servers.pop(name, None)  # lost the lease while handling: this state is not ours to keep
            raise NotOwner(name)
        return reply

    def release_all(self) -> None:
        """A clean handoff when the worker stops: state is checkpointed, leases let go."""
        for hosted in self.servers.values():
            if hosted.lease:
                self.registry.release(hosted.name, hosted.lease)
        self.servers.clear()


class FleetRuntime:
    """The `Runtime` of Relay code running in a worker (eval jobs and server handlers)."""

    def __init__(self, host: Host, loading: Hosted | None = None) -> None:
        self.host = host
        self.loading = loading

    def declare(self, name: str, handlers: dict[str, Function], initial_state: dict) -> ServerRef:
        if self.loading is not None and name == self.loading.name:
            return self.host.install(self.loading, handlers, initial_state)
        if self.loading is not None:
            return ServerRef(name)  # another server of the same source: hosted where it was placed
        raise RelayError("server declarations start with `relay deploy` (RelayClient.deploy), not in an eval job")

    def call(self, server: ServerRef, handler: str, args: list) -> object:
        chain = self.host.chain
        if server.name in chain:  # the server is waiting on this very call: fail now, naming the cycle
            raise cycle_error(chain, server.name)
        message_id = uuid.uuid4().hex
        wire_args = to_wire(copy_data(args, "a message"))
        if server.name in self.host.servers:
            reply = self.host.apply(server.name, handler, wire_args, message_id, list(self.host.chain))
        else:
            reply = self.remote(server.name, handler, wire_args, message_id, True)
        if "error" in reply:
            raise remote_error(reply["error"])
        return from_wire(reply["value"])

    def send(self, server: ServerRef, handler: str, args: list) -> None:
        wire_args = to_wire(copy_data(args, "a message"))
        self.remote(server.name, handler, wire_args, uuid.uuid4().hex, False)

    def remote(self, server: str, handler: str, args: list, message_id: str, wait: bool) -> dict | None:
        """A message through the broker, journalled first (see store.Registry.journal)."""
        chain = list(self.host.chain) if wait else []
        self.host.registry.journal(server, message_id, handler, args, chain)
        return self.host.sender(server, handler, args, message_id, chain, wait)

    def run_pending(self) -> None:
        """Messages travel through the broker: nothing waits in this process."""


def remote_error(data: dict) -> RelayError:
    """A RelayError rebuilt from its wire form (position and stack included)."""
    err = RelayError(data.get("message", "error"), kind=data.get("kind", "error"))
    if data.get("file") is not None:
        err.pos = Pos(data["file"], data["line"], data["col"])
    err.stack = [(f["function"], Pos(f["file"], f["line"], f["col"])) for f in data.get("stack", [])]
    return err
