"""Producers: `RelayClient` drives the fleet from Python (the `relay` CLI uses it too).

Importing it loads neither the worker nor LLVM.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import celery.exceptions
import kombu.exceptions
from celery import Celery
from redis.typing import EncodableT, FieldT

from relay_lang.errors import RelayError

from . import catalog
from .deploy import check, declared_servers
from .ledger import STORE_DOWN, DeadLetters, Ledger, deployment_of
from .registry import Registry, Status, node_of, status_of
from .runtime import Messenger, NoReply, remote_error, retrying
from .settings import celery_config, load
from .store import connect
from .wire import from_wire, to_wire

UNREACHABLE = (*STORE_DOWN, kombu.exceptions.OperationalError)  # STORE_DOWN holds OSError: ConnectionError too


class FleetUnreachable(RelayError):
    """The broker or the store does not answer. `message_id`: the message of the call that gave up (its
    outcome can be fetched with `RelayClient.result`), or None."""

    message_id: str | None = None


@dataclass
class EvalResult:
    value: object  # the program's value (Relay data as JSON)
    output: str  # what it printed
    error: dict | None  # a structured Relay error, or None
    tiers: list[str]  # the router's explanation, one line per function
    timings: dict
    worker: str

    def raise_for_error(self) -> EvalResult:
        if self.error:
            raise remote_error(self.error)
        return self


class RelayClient:
    """Eval jobs, deployment and messages; URLs from the arguments or the environment, and the other
    settings from the environment (relay_workers.settings; a bad one raises its ConfigurationError)."""

    def __init__(self, broker_url: str | None = None, result_backend: str | None = None,
                 store_url: str | None = None) -> None:
        settings = load()
        broker = broker_url or settings.broker_url
        backend = result_backend or (broker if broker_url and broker.startswith("redis") else settings.result_backend)
        self.app = Celery("relay-client", set_as_current=False)
        self.app.config_from_object(celery_config(settings))
        self.app.conf.broker_url = broker
        self.app.conf.result_backend = backend
        self.app.conf.broker_connection_retry = False
        self.app.conf.broker_connection_max_retries = 0
        if not broker.startswith(("redis://", "rediss://")):
            self.app.conf.broker_transport = None
        self.store_url = store_url or settings.store_url
        self.job_time_limit: float = settings.job_time_limit  # also a deploy check's (see deploy)
        self.output_limit: int = settings.output_limit
        self.broker_url = broker
        r = connect(self.store_url)
        self.registry = Registry(r, settings.host_ttl, settings.max_restarts, settings.restart_period)
        self.ledger = Ledger(r, settings.lease_ttl)
        self.messenger = Messenger(self.app, self.ledger)
        self.dead = DeadLetters(r)

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unreachable(self, exc: BaseException, message_id: str | None = None, *, sent: bool = False) -> FleetUnreachable:
        """The error for a fleet that does not answer; with the message id of a call that gave up (`sent`:
        it was journalled, so it will be applied; otherwise a retry with the same id is applied once)."""
        reason = " ".join(str(exc).split())
        about = ""
        if message_id is not None:
            about = (f"; message id {message_id}: `relay result {message_id}` fetches its outcome" if sent
                     else f"; message id {message_id}: a retry with this id is applied once")
        err = FleetUnreachable(f"cannot reach the fleet at {self.store_url} / {self.broker_url} ({reason}){about}",
                               kind="unreachable")
        err.message_id = message_id
        return err

    # ------------------------------------------------------------ jobs

    def eval(self, source: str, timeout: float = 60, **options: object) -> EvalResult:
        """Runs a program on the fleet (any host's pool); options: tier, time_limit, file."""
        try:
            result = self.app.send_task("relay.eval", args=[source, options], queue="relay.eval")
            data = result.get(timeout=timeout)
        except celery.exceptions.TimeoutError:
            raise RelayError(f"no reply from the fleet within {timeout:g} s (is a worker running "
                             "`celery -A relay_workers worker -Q 'relay.*'`?)", kind="timeout") from None
        except (*UNREACHABLE, RuntimeError) as exc:  # RuntimeError: Celery's result backend gave up reconnecting
            raise self.unreachable(exc) from None
        return EvalResult(data["value"], data["output"], data["error"], data["tiers"], data["timings"], data["worker"])

    def deploy(self, source: str, file: str = "<deploy>", max_restarts: int | None = None,
               restart_period: float | None = None, time_limit: float | None = None,
               memory_limit: int | None = None) -> list[tuple[str, int]]:
        """Starts the servers a source declares, or hot-upgrades them (state kept); returns (name, version)
        of each. Before anything changes on the fleet, the source is checked (relay_workers.deploy.check):
        it must parse, resolve, declare a server, compile every `@llvm` function and handler, and load (its
        top-level statements and each server's initial state) in a scratch interpreter within a server's
        budgets; a source that fails raises its positioned RelayError and nothing of it is deployed (a
        running server keeps its version). The settings (restart intensity, a message's time limit and
        memory budget in bytes) apply to every server of the source."""
        settings: dict[FieldT, EncodableT] = {}  # as the registry records them
        for k, v in (("max_restarts", max_restarts), ("restart_period", restart_period), ("time_limit", time_limit),
                     ("memory_limit", memory_limit)):
            if v is None:
                continue
            if type(v) not in (int, float) or not 0 < v < float("inf") or (k == "max_restarts" and v != int(v)):
                raise RelayError(f"{k} must be a positive number, got {v!r}", kind="bad request")
            settings[k] = v
        declared_servers(source, file)  # the cheap checks first: no store round trip, no LLVM
        try:
            deployed = self.registry.names()
            names = check(source, file, deployed, min(time_limit or self.job_time_limit, self.job_time_limit),
                          self.output_limit, self.ledger.r)
            return [(name, self.registry.register(name, source, file, settings)) for name in names]
        except UNREACHABLE as exc:
            raise self.unreachable(exc) from None

    def restart(self, server: str) -> None:
        """Brings back a server, a failed one included, from its last commit (its restart history forgotten)."""
        try:
            if not self.registry.restart(server):
                raise RelayError(f"no server named '{server}' is deployed")
        except UNREACHABLE as exc:
            raise self.unreachable(exc) from None

    def call(self, server: str, handler: str, *args: object, timeout: float = 30,
             message_id: str | None = None) -> object:
        """Sends a message and waits for the reply; a Relay error in the handler is raised here.
        Give the same `message_id` to retry a call safely: it is applied once.

        A store that cannot be reached when the message is sent fails the call at once (FleetUnreachable).
        Once the message is journalled, a store that goes away (a reset connection, a restart) is waited
        for within `timeout`, and the reply is read when it is back. A call that gets no reply raises a
        RelayError of kind "timeout" (runtime.NoReply) or FleetUnreachable; either has the message id as
        `message_id` (and in its text): `result(message_id)` fetches the outcome later."""
        message_id = message_id or uuid.uuid4().hex
        wire = [to_wire(from_wire(a)) for a in args]
        try:
            reply = self.messenger.call(server, handler, wire, message_id, [], timeout, patient=False)
        except NoReply as err:
            if err.cause is not None:
                raise self.unreachable(err.cause, message_id, sent=True) from None
            raise
        except UNREACHABLE as exc:
            raise self.unreachable(exc, message_id) from None
        if "error" in reply:
            raise remote_error(reply["error"])
        return from_wire(reply["value"])

    def result(self, message_id: str, timeout: float = 0, server: str | None = None) -> object:
        """The outcome of a message, by its id (a call that gave up, a send): its reply value, or the Relay
        error of its handler raised here, as `call` gives them. A message still queued is waited for up to
        `timeout` seconds (a store that goes away meanwhile too). Looked up in every deployed server's
        journal and last 10,000 applied messages (or only `server`'s). A RelayError of kind "pending" when it
        is still queued, "not found" when no server knows it (never sent, or applied too long ago)."""
        deadline = time.monotonic() + timeout
        pause = 0.02
        try:
            while True:
                found = retrying(lambda: self.ledger.find(message_id, [server] if server else self.registry.names()),
                                 deadline)
                if found is not None and found[1] is not None:
                    reply = found[1]
                    break
                if time.monotonic() + pause > deadline:
                    if found is not None:
                        raise RelayError(f"message {message_id} is still queued at server '{found[0]}'", kind="pending")
                    who = f"server '{server}' knows no" if server else "no deployed server knows a"
                    raise RelayError(f"{who} message {message_id!r} (never sent, or applied before the last 10,000 "
                                     "messages of its server)", kind="not found")
                time.sleep(pause)
                pause = min(pause * 1.5, 0.25)
        except UNREACHABLE as exc:
            raise self.unreachable(exc) from None
        if "error" in reply:
            raise remote_error(reply["error"])
        return from_wire(reply["value"])

    def send(self, server: str, handler: str, *args: object, message_id: str | None = None) -> str:
        """Enqueues a message; returns its id. Give the same `message_id` to retry a send safely
        (after a connection error, say): it is applied once."""
        message_id = message_id or uuid.uuid4().hex
        wire = [to_wire(from_wire(a)) for a in args]
        try:
            self.messenger.post(server, handler, wire, message_id, [], wait=False)
        except UNREACHABLE as exc:
            raise self.unreachable(exc) from None
        return message_id

    def dead_letters(self, server: str | None = None) -> list[dict]:
        """Input the fleet set aside (of one server, or all): id, queue, reason, raw text (cut at 4 KiB),
        time; messages set aside after too many attempts also have server, handler, args and attempts."""
        try:
            return self.dead.list(server)
        except UNREACHABLE as exc:
            raise self.unreachable(exc) from None

    def replay(self, letter_id: str) -> str:
        """Sends a dead-lettered message again (a new message id, returned) and removes the dead letter."""
        letter = self.dead.get(letter_id)
        if letter is None:
            raise RelayError(f"no dead letter with id {letter_id!r}")
        if "server" not in letter:
            raise RelayError(f"dead letter {letter_id!r} is not a message to a server (it could not be decoded), "
                             "so it cannot be replayed; drop it")
        message_id = self.send(letter["server"], letter["handler"], *letter["args"])
        self.dead.drop(letter_id)
        return message_id

    def drop(self, letter_id: str) -> None:
        if not self.dead.drop(letter_id):
            raise RelayError(f"no dead letter with id {letter_id!r}")

    def servers(self) -> list[dict[str, object]]:
        """Every deployed server, and every family as one row (`account[]`, `servers` its size): name, owner
        (worker node), host (its incarnation), status, reason (when failed), restarts, version, queued and
        applied messages. The servers of a family, a page at a time: `servers_page`."""
        try:
            live = set(self.registry.live_hosts())
            return [self._row(name, live) for name in self.registry.names()]
        except UNREACHABLE as exc:
            raise self.unreachable(exc) from None

    def servers_page(self, *, prefix: str = "", family: str | None = None, status: str | None = None,
                     owner: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, object]:
        """One page of servers, families' servers included, in name order: those whose name starts with
        `prefix`, of `family`, with `status`, owned by `owner` (a node or a host id). With how many there are,
        how many match, the matches by status, and the servers per family and per host."""
        if limit < 0 or offset < 0:
            raise RelayError(f"a page needs a limit and an offset >= 0, got {limit} and {offset}")
        if status is not None and status not in set(Status):
            raise RelayError(f"no status {status!r}: one of {', '.join(Status)}")
        try:
            live = set(self.registry.live_hosts())
            index = catalog.read(self.registry.r, live)
            page = index.page(prefix, family, owner, status, limit, offset)
            return {"total": len(index.names), "matched": page.matched, "offset": offset, "limit": limit,
                    "by_status": dict(page.by_status), "families": dict(index.families),
                    "hosts": dict(index.by_host), "servers": [self._row(name, live) for name in page.names]}
        except UNREACHABLE as exc:
            raise self.unreachable(exc) from None

    def _row(self, name: str, live: set[str]) -> dict[str, object]:
        info = self.registry.summary(deployment_of(name) if name.endswith("[]") else name)
        owner = info.get("owner", "")
        status = status_of(name, owner, self.ledger.holder(name), live, failed=info.get("status") == "failed")
        row: dict[str, object] = {
            "name": name, "owner": node_of(owner) if owner else "", "host": owner, "status": str(status),
            "reason": info.get("reason", ""), "restarts": int(info.get("restarts", 0)),
            "version": int(info.get("version", 0)), "queued": self.ledger.queued(name),
            "applied": self.ledger.applied_count(name)}
        if status is Status.FAMILY:
            row["servers"] = self.registry.instances(deployment_of(name))
        return row


def client_from_env() -> RelayClient:
    return RelayClient(os.environ.get("RELAY_BROKER_URL"), os.environ.get("RELAY_RESULT_BACKEND"),
                       os.environ.get("RELAY_STORE_URL"))
