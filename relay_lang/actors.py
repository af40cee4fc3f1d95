"""Servers (actors): their semantics, and the runtime interface that hosts them.

`ServerInstance` is the one implementation of what a server does with a
message: find the handler, check the arguments, run it with `state` and
`self` bound, roll `state` back if it fails, copy the reply. A `Runtime`
decides where servers live and how messages travel: `LocalRuntime` keeps
them in this process (`relay run`, the REPL); the fleet hosts the same
`ServerInstance`s in Celery workers.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol, TextIO

from .budget import Limits
from .builtin_table import arity_message
from .errors import RelayError
from .names import check_key, family_name
from .values import Function, ServerRef, copy_args, copy_data


def cycle_error(waiting: list[str], name: str) -> RelayError:
    """A call to `name` from a chain of servers already waiting, `name` among them."""
    cycle = " -> ".join(waiting[waiting.index(name):] + [name])
    return RelayError(f"call cycle: {cycle} (a server cannot wait on itself; use send)")


def check_handler(name: str, handlers: dict[str, Function], handler: str, args: list) -> Function:
    """The handler a message to server `name` names; a message it cannot take (no such handler,
    another number of arguments) is refused before it is queued, at the send or call that made it."""
    fn = handlers.get(handler)
    if fn is None:
        known = ", ".join(sorted(handlers)) or "none"
        raise RelayError(f"server {name} has no handler '{handler}' (handlers: {known})")
    if fn.n != len(args):
        raise RelayError(arity_message(f"{name}.{handler}", fn.n, len(args)))
    return fn


def needs_key(family: str) -> RelayError:
    """The error for a message addressed to a family rather than to one of its servers."""
    return RelayError(f"server {family} is a family: address one of its servers by key, as in {family}[\"ada\"] "
                      f"or send(\"{family}[ada]\", ...)")


class HandlerHost(Protocol):
    """What servers need from the interpreter that runs their handlers."""

    server: ServerInstance | None  # the server handling a message now
    limits: Limits
    err: TextIO

    def invoke(self, fn: Function, args: list) -> object: ...


class ServerInstance:
    """One running server: handlers, private state, and the last good copy of that state.

    A message costs what it touches, not the size of the state: the generated
    code reports each `state.NAME` it reads or writes (`touched`), and a bare
    `state` value reports every field (`touched_all`). After a message only
    those fields are copied to the last good copy (or back from it when the
    handler fails), and they are detached from any value that outlives the
    message, so `state` changes only through `state`. `unsaved` collects the
    fields changed since a host last persisted them (the fleet writes those).
    """

    def __init__(self, name: str, handlers: dict[str, Function], state: dict) -> None:
        self.name = name
        self.ref = ServerRef(name)
        self.handlers = handlers
        self.state: dict = copy_data(state, "the initial state")  # type: ignore[assignment]
        self.saved: dict = copy_data(self.state, "the state")  # type: ignore[assignment]
        self.unsaved: set[str] = set(self.state)
        self.touched: set[str] = set()
        self.touched_all = False
        self.version = 0  # for a server of a family: the family's version it runs (Family.refresh)

    def upgrade(self, handlers: dict[str, Function], initial_state: dict) -> None:
        """A hot code upgrade: new handlers; state kept, keys new to the declaration added."""
        self.handlers = handlers
        for key, value in initial_state.items():
            if key not in self.state:
                self.state[key] = copy_data(value, "the initial state")
                self.saved[key] = copy_data(value, "the initial state")
                self.unsaved.add(key)

    def check_message(self, handler: str, args: list) -> Function:
        """The handler a message names (see check_handler)."""
        return check_handler(self.name, self.handlers, handler, args)

    def handle(self, interp: HandlerHost, handler: str, args: list) -> object:
        """Handles one message; on failure state is exactly as before and the error propagates."""
        fn = self.check_message(handler, args)
        outer = interp.server
        interp.server = self
        self.touched = set()
        self.touched_all = False
        try:
            reply = interp.invoke(fn, copy_args(args))
            self._settle(self.state, self.saved, f"the state of server {self.name}")
            for name in self._changed():
                if name in self.saved:
                    self.state[name] = copy_data(self.saved[name])
            self.unsaved |= self._changed()
            return copy_data(reply, "a reply")
        except RelayError:
            self._settle(self.saved, self.state, "the state")
            raise
        finally:
            interp.server = outer

    def _changed(self) -> set[str]:
        return set(self.state) | set(self.saved) if self.touched_all else self.touched

    def _settle(self, source: dict, target: dict, what: str) -> None:
        """Copies the fields the message touched from source to target (removing those source lacks)."""
        for name in self._changed():
            if name in source:
                target[name] = copy_data(source[name], what)
            else:
                target.pop(name, None)


class Family:
    """A server family (`server account[id] { }`): one declaration, one server per key.

    A server of the family (`account[ada]`, relay_lang.names) starts at its first message, as a
    `ServerInstance`: its initial state is made then, by running `init` (the declaration's
    `state { }` literal) with `self` that server, so each server has its own. A hot upgrade
    replaces the handlers and `init` and counts a new version; each running server takes it at
    its next message (`refresh`): the new handlers, and the keys of its new initial state that
    its state lacks, as a plain server's upgrade does. Hosts (LocalRuntime, the fleet) keep the
    servers; the family only makes and refreshes them.
    """

    def __init__(self, name: str, handlers: dict[str, Function], init: Function) -> None:
        self.name = name
        self.ref = ServerRef(family_name(name))
        self.handlers = handlers
        self.init = init
        self.version = 1

    def upgrade(self, handlers: dict[str, Function], init: Function) -> None:
        self.handlers = handlers
        self.init = init
        self.version += 1

    def check_message(self, server: ServerRef, handler: str, args: list) -> Function:
        """The handler a message to one of the family's servers names (see check_handler)."""
        return check_handler(server.name, self.handlers, handler, args)

    def start(self, interp: HandlerHost, server: ServerRef) -> ServerInstance:
        """A new server of the family, with its initial state; a failure starts nothing."""
        assert server.family == self.name and server.key is not None
        check_key(server.key)
        instance = ServerInstance(server.name, self.handlers, {})
        self.refresh(interp, instance)
        return instance

    def refresh(self, interp: HandlerHost, instance: ServerInstance) -> None:
        """Brings a server of the family to the family's version; a failure leaves it as it was."""
        if instance.version == self.version:
            return
        outer = interp.server
        interp.server = instance  # `self` and `self.id` in the initial state are this server
        try:
            state = interp.invoke(self.init, [])
        finally:
            interp.server = outer
        state = copy_data(state, f"the initial state of server {instance.name}")
        instance.upgrade(self.handlers, state)  # type: ignore[arg-type]
        instance.version = self.version


class Runtime(Protocol):
    """Where servers live and how messages reach them."""

    def declare(self, name: str, handlers: dict[str, Function], initial_state: dict) -> ServerRef:
        """Starts server `name`, or hot-upgrades it if it is running."""

    # Optional (the interpreter asks with getattr; a runtime without it refuses family declarations):
    # def declare_family(self, name: str, handlers: dict[str, Function], init: Function) -> ServerRef:
    #     """Declares family `name` (see Family), or hot-upgrades it; returns the family's reference."""

    def call(self, server: ServerRef, handler: str, args: list) -> object:
        """Sends a message and waits for the reply (or the handler's error)."""

    def send(self, server: ServerRef, handler: str, args: list) -> None:
        """Enqueues a message and returns at once."""

    def run_pending(self) -> None:
        """Delivers every message still queued (in-process runtimes; others may do nothing)."""


class LocalRuntime:
    """Servers in this process, run one message at a time on the caller's thread.

    Each server has a mailbox. A `send` enqueues; a call first delivers what
    is already queued for that server (so a sender's messages keep their
    order), then the call itself. Queued messages are delivered when their
    server is next called and when the program ends. A call to a server that
    is already handling a message on this thread would wait forever in a real
    actor system: it fails at once with the cycle named.

    A server of a family is a server like any other, under its name
    (`account[ada]`): it starts when its first message is handled (a call, or
    the delivery of a send), and takes its family's upgrades at its next message.
    """

    def __init__(self, interp: HandlerHost) -> None:
        self.interp = interp
        self.servers: dict[str, ServerInstance] = {}
        self.families: dict[str, Family] = {}
        self.mailboxes: dict[str, deque[tuple[str, list]]] = {}
        self.busy: list[str] = []

    def declare(self, name: str, handlers: dict[str, Function], initial_state: dict) -> ServerRef:
        if name in self.families:
            raise RelayError(f"server {name} is a family (server {name}[id]); it cannot be declared again as a single server")
        server = self.servers.get(name)
        if server is None:
            self.servers[name] = server = ServerInstance(name, handlers, initial_state)
            self.mailboxes[name] = deque()
        else:
            server.upgrade(handlers, initial_state)
        return server.ref

    def declare_family(self, name: str, handlers: dict[str, Function], init: Function) -> ServerRef:
        if name in self.servers:
            raise RelayError(f"server {name} is a single server; it cannot be declared again as a family")
        family = self.families.get(name)
        if family is None:
            self.families[name] = family = Family(name, handlers, init)
        else:
            family.upgrade(handlers, init)
        return family.ref

    def _route(self, ref: ServerRef) -> ServerInstance | Family:
        """What a message to ref reaches: a single server, or the family of the server it names."""
        if ref.family is not None:
            family = self.families.get(ref.family)
            if family is None:
                raise RelayError(f"no server named '{ref.name}' is running (no family {ref.family} is declared)")
            if ref.key is None:
                raise needs_key(ref.family)
            check_key(ref.key)
            return family
        server = self.servers.get(ref.name)
        if server is None:
            if ref.name in self.families:
                raise needs_key(ref.name)
            raise RelayError(f"no server named '{ref.name}' is running")
        return server

    def _check(self, ref: ServerRef, handler: str, args: list) -> None:
        target = self._route(ref)
        if isinstance(target, Family):
            target.check_message(ref, handler, args)
        else:
            target.check_message(handler, args)

    def _instance(self, ref: ServerRef) -> ServerInstance:
        """The server ref names, started (a server of a family) or brought to its family's version."""
        target = self._route(ref)
        if isinstance(target, ServerInstance):
            return target
        server = self.servers.get(ref.name)
        if server is None:
            server = target.start(self.interp, ref)
            self.servers[ref.name] = server
        else:
            target.refresh(self.interp, server)
        return server

    def call(self, server: ServerRef, handler: str, args: list) -> object:
        target = self._route(server)
        self.mailboxes.setdefault(server.name, deque())
        self.deliver(server.name)
        if server.name in self.busy:
            raise cycle_error(self.busy, server.name)
        if isinstance(target, Family):  # before a server starts for a message it cannot take
            target.check_message(server, handler, args)
        self.busy.append(server.name)
        try:
            return self._instance(server).handle(self.interp, handler, args)
        finally:
            self.busy.pop()

    def send(self, server: ServerRef, handler: str, args: list) -> None:
        self._check(server, handler, args)
        self.mailboxes.setdefault(server.name, deque()).append((handler, copy_args(args)))

    def deliver(self, name: str) -> None:
        """Handles the messages queued for one server, unless it is busy (they wait)."""
        box = self.mailboxes[name]
        if name in self.busy or not box:
            return
        ref = ServerRef(name)
        while box:
            handler, args = box.popleft()
            self.busy.append(name)
            try:
                self._instance(ref).handle(self.interp, handler, args)
            except RelayError as err:
                if self.interp.limits.stop_error is not None:
                    raise  # the job's time budget is spent: stop everything
                self.interp.err.write(f"relay: message {name}.{handler} failed (sent with send, nobody waits for it):\n{err}\n")
            finally:
                self.busy.pop()

    def run_pending(self) -> None:
        while any(self.mailboxes.values()):
            for name in list(self.mailboxes):
                self.deliver(name)
