"""How Relay code in the fleet reaches servers: the `Messenger` and the `FleetRuntime`.

A message is journalled at its server (relay_workers.ledger) before it is
published as a `relay.deliver` task on the queue `relay.SERVER`, so it is
applied even if the broker loses it. A waiting caller takes the reply from
the ledger's reply list, which the owner fills in the same atomic commit
that applies the message: no reply is lost to a crash or a restart.

Inside a handler, ids are derived from the message being handled and the
call's or send's index, so a handler run again after its owner died sends
the same ids and each receiver applies them once. Sends are held until the
handler's message commits (they commit with it, and a failed handler sends
nothing); calls go out at once and wait.

A call waits out a store outage (a reset connection, a restarted Redis)
within its timeout: once journalled, its message will be applied, so the
caller reconnects and keeps waiting for the reply. When it gives up, the
error (`NoReply`) carries the message id, whose outcome can be fetched later
(`RelayClient.result`, `relay result ID`).

A handler that calls another server records a wait-for edge in the store
first (relay_workers.ledger.Ledger.wait_for, one Lua script): a call that
would close a cycle of waiting servers — across messages, a -> b while
b -> a — fails at once with a "call cycle" error naming them, instead of
both waiting until their timeout. Within one chain of calls, the `chain`
carried by each message catches the cycle before the store is asked.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from celery import Celery

from relay_lang.actors import cycle_error
from relay_lang.errors import Pos, RelayError
from relay_lang.values import Array, Function, ServerRef

from .ledger import STORE_DOWN, Ledger, Outgoing, deployment_of, refused, shard_queue
from .registry import Registry
from .wire import describe, from_wire, to_wire

T = TypeVar("T")

if TYPE_CHECKING:  # the producer side (RelayClient) must not load the interpreter and LLVM
    from relay_lang.interpreter import Interpreter


log = logging.getLogger("relay.workers")

JOURNALLED = "relay_journalled"  # header of a relay.deliver message already in its server's journal
WAIT_FOR_SLACK = 5.0  # seconds a wait-for edge outlives its call's timeout (the caller's owner died meanwhile)


class NoReply(RelayError):
    """A call that got no reply: none within its timeout (kind "timeout"), or the store stayed away until
    then (kind "unreachable", `cause` the store's error). Its message may still be applied: `message_id`
    fetches the outcome (`RelayClient.result`, `relay result ID`)."""

    def __init__(self, message: str, server: str = "", message_id: str = "", kind: str = "timeout",
                 cause: BaseException | None = None) -> None:
        super().__init__(f"{message} (message id {message_id}: `relay result {message_id}` fetches its outcome)",
                         kind=kind)
        self.server = server
        self.message_id = message_id
        self.cause = cause


def retrying(action: Callable[[], T], deadline: float) -> T:
    """action(), tried again while the store is away (a reset connection, a restart) until `deadline` (a
    time.monotonic() value); past it, the store's error is raised."""
    pause = 0.02
    while True:
        try:
            return action()
        except STORE_DOWN:
            if time.monotonic() + pause >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def remote_error(data: dict) -> RelayError:
    """A RelayError rebuilt from its wire form (position and stack included)."""
    err = RelayError(str(data.get("message", "error")), kind=str(data.get("kind", "error")))
    if data.get("file") is not None:
        err.pos = Pos(data["file"], data["line"], data["col"])
    err.stack = [(f["function"], Pos(f["file"], f["line"], f["col"]), int(f.get("times", 1)))
                 for f in data.get("stack", [])]
    return err


class Messenger:
    """Journals a message at its server, publishes it, and waits for its reply when asked."""

    def __init__(self, app: Celery, ledger: Ledger) -> None:
        self.app = app
        self.ledger = ledger

    def post(self, server: str, handler: str, args: list, message_id: str, chain: list[str], *,
             wait: bool, result: bool = False) -> dict | None:
        """Journals and publishes; returns the reply at once if the message was applied already. `result`:
        the owner stores the reply as the Celery result of the message id too (for plain Celery producers)."""
        status, reply = self.ledger.journal(server, message_id, handler, args, chain, wait=wait, result=result)
        if status < 0:
            raise refused(server, status)
        if status == 1:
            return reply
        self.ring(server, handler, args, message_id, chain)
        return None

    def ring(self, server: str, handler: str, args: list, message_id: str, chain: list[str]) -> None:
        """The broker message that wakes the server's owner (the journal holds the message itself, so the
        `JOURNALLED` header spares the owner a journal write; the reply is read from the ledger, so no
        Celery result is subscribed to)."""
        self.app.send_task("relay.deliver", args=[server, handler, args, message_id, chain],
                           queue=shard_queue(server), task_id=message_id, argsrepr=describe(server, handler, args),
                           headers={JOURNALLED: True}, ignore_result=True)

    def call(self, server: str, handler: str, args: list, message_id: str, chain: list[str],
             timeout: float, patient: bool = True) -> dict:
        """Journals the message, publishes it, and waits for its reply. The journal write is retried while
        the store is away until the timeout (`patient`; otherwise its failure is raised at once: the
        message was never sent); once journalled, the message will be applied, so a failed publish is
        only logged (its owner finds it in the journal at its next heartbeat) and the wait reconnects to
        a store that goes away. NoReply when no reply came in time, or the store stayed away."""
        deadline = time.monotonic() + timeout
        status, reply = (retrying(lambda: self.ledger.journal(server, message_id, handler, args, chain, wait=True),
                                  deadline) if patient
                         else self.ledger.journal(server, message_id, handler, args, chain, wait=True))
        if status < 0:
            raise refused(server, status)
        if status == 1 and reply is not None:
            return reply
        try:
            self.ring(server, handler, args, message_id, chain)
        except Exception as exc:  # noqa: BLE001 - journalled: its owner's heartbeat finds it in the journal
            log.warning("relay: could not publish %s to %s (%s); its owner takes it from the journal", message_id,
                        server, exc)
        try:
            reply = self.ledger.wait_reply(server, message_id, deadline)
        except STORE_DOWN as exc:
            raise NoReply(f"cannot reach the store to read the reply of server '{server}' within {timeout:g} s",
                          server, message_id, kind="unreachable", cause=exc) from None
        if reply is None:
            raise NoReply(f"no reply from server '{server}' within {timeout:g} s", server, message_id)
        return reply


@dataclass
class Handling:
    """The message a server is handling: where derived ids and held sends come from."""

    message_id: str
    chain: list[str]
    count: int = 0
    outgoing: list[Outgoing] = field(default_factory=list)

    def derive(self, kind: str) -> str:
        self.count += 1
        return f"{self.message_id}.{kind}{self.count}"


class Declarations(Protocol):
    """What becomes of the server declarations of the code a FleetRuntime runs."""

    def declare(self, name: str, handlers: dict[str, Function], initial: dict) -> ServerRef: ...

    def declare_family(self, name: str, handlers: dict[str, Function], init: Function) -> ServerRef: ...


class EvalJobDeclarations:
    """An eval job declares no server."""

    def declare(self, name: str, handlers: dict[str, Function], initial: dict) -> ServerRef:
        raise RelayError("server declarations start with `relay deploy` (RelayClient.deploy), not in an eval job")

    def declare_family(self, name: str, handlers: dict[str, Function], init: Function) -> ServerRef:
        return self.declare(name, handlers, {})


class FleetRuntime:
    """The `Runtime` of Relay code running in a worker (an eval job, or one server's handlers)."""

    def __init__(self, messenger: Messenger, registry: Registry, timeout: float,
                 declarations: Declarations | None = None,
                 blocking: Callable[[], AbstractContextManager[object]] = nullcontext) -> None:
        self.messenger = messenger
        self.registry = registry
        self.timeout = timeout
        self.declarations = declarations or EvalJobDeclarations()
        self.blocking = blocking  # around a handler's wait on another server (relay_workers.runners)
        self.handling: Handling | None = None

    def declare(self, name: str, handlers: dict[str, Function], initial: dict) -> ServerRef:
        return self.declarations.declare(name, handlers, initial)

    def declare_family(self, name: str, handlers: dict[str, Function], init: Function) -> ServerRef:
        return self.declarations.declare_family(name, handlers, init)

    def attach(self, interp: Interpreter) -> None:
        """Makes interp run on the fleet: this runtime, and every deployed server as a global name."""
        interp.runtime = self
        for name in self.registry.names():  # a family as `account[]`, its global `account`
            interp.define_global(deployment_of(name), ServerRef(name))

    def call(self, server: ServerRef, handler: str, args: list) -> object:
        chain = self.handling.chain if self.handling else []
        if server.name in chain:  # the server is waiting on this very call: fail now, naming the cycle
            raise cycle_error(chain, server.name)
        message_id = self.handling.derive("c") if self.handling else uuid.uuid4().hex
        wire = to_wire(Array(args), "a message")
        if not chain:  # an eval job: no server waits
            reply = self.messenger.call(server.name, handler, wire, message_id, chain, self.timeout)  # type: ignore[arg-type]
        else:
            reply = self.waiting_call(chain[-1], server.name, handler, wire, message_id, chain)  # type: ignore[arg-type]
        if "error" in reply:
            raise remote_error(reply["error"])
        return from_wire(reply["value"])

    def waiting_call(self, caller: str, callee: str, handler: str, wire: list, message_id: str,
                     chain: list[str]) -> dict:
        """A call from server `caller`'s handler: its wait-for edge recorded first (a call that would close
        a cycle of waiting servers fails here at once), and removed however the wait ends."""
        ledger = self.messenger.ledger
        deadline = time.monotonic() + self.timeout
        cycle = retrying(lambda: ledger.wait_for(caller, callee, message_id, self.timeout + WAIT_FOR_SLACK), deadline)
        if cycle:
            raise RelayError(f"call cycle: {' -> '.join(cycle)} (each server's handler waits on the next, for "
                             "different messages; use send)")
        try:
            with self.blocking():
                return self.messenger.call(callee, handler, wire, message_id, chain, max(0.0, deadline - time.monotonic()))
        except NoReply as err:
            if err.cause is not None:  # the store stayed away: not the handler's error; its message is retried
                raise err.cause from None
            raise
        finally:
            try:
                ledger.done_waiting(caller, callee, message_id)
            except STORE_DOWN:  # the edge expires on its own
                pass

    def send(self, server: ServerRef, handler: str, args: list) -> None:
        wire = to_wire(Array(args), "a message")
        if self.handling is None:
            self.messenger.post(server.name, handler, wire, uuid.uuid4().hex, [], wait=False)  # type: ignore[arg-type]
            return
        self.registry.check_address(server.name)
        self.handling.outgoing.append(Outgoing(server.name, self.handling.derive("s"), handler, wire))  # type: ignore[arg-type]

    def run_pending(self) -> None:
        """Messages travel through the broker: nothing waits in this process."""
