"""Producers: `RelayClient` drives the fleet from Python (the `relay` CLI uses it too).

Importing it loads neither the worker nor LLVM.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import celery.exceptions
import kombu.exceptions
import redis
from celery import Celery

from relay_lang.errors import RelayError

from .deploy import check, declared_servers
from .ledger import DeadLetters, Ledger, connect
from .registry import Registry, node_of
from .runtime import Messenger, remote_error
from .wire import from_wire, to_wire

UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError, ConnectionError)


class FleetUnreachable(RelayError):
    """The broker or the store does not answer."""


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
    """Eval jobs, deployment and messages; URLs from the arguments or the environment (see config/settings.py)."""

    def __init__(self, broker_url: str | None = None, result_backend: str | None = None,
                 store_url: str | None = None) -> None:
        from config import settings
        broker = broker_url or settings.broker_url
        backend = result_backend or (broker if broker_url and broker.startswith("redis") else settings.result_backend)
        self.app = Celery("relay-client", set_as_current=False)
        self.app.config_from_object(settings)
        self.app.conf.broker_url = broker
        self.app.conf.result_backend = backend
        self.app.conf.broker_connection_retry = False
        self.app.conf.broker_connection_max_retries = 0
        if not broker.startswith(("redis://", "rediss://")):
            self.app.conf.broker_transport = None
        self.store_url = store_url or settings.relay_store_url
        self.job_time_limit: float = settings.relay_job_time_limit  # also a deploy check's (see deploy)
        self.output_limit: int = settings.relay_output_limit
        self.broker_url = broker
        r = connect(self.store_url)
        self.registry = Registry(r, settings.relay_host_ttl)
        self.ledger = Ledger(r, settings.relay_lease_ttl)
        self.messenger = Messenger(self.app, self.ledger)
        self.dead = DeadLetters(r)

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unreachable(self, exc: BaseException) -> FleetUnreachable:
        reason = " ".join(str(exc).split())
        return FleetUnreachable(f"cannot reach the fleet at {self.store_url} / {self.broker_url} ({reason})",
                                kind="unreachable")

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
        settings = {k: v for k, v in (("max_restarts", max_restarts), ("restart_period", restart_period),
                                      ("time_limit", time_limit), ("memory_limit", memory_limit)) if v is not None}
        for k, v in settings.items():
            if type(v) not in (int, float) or not 0 < v < float("inf") or (k == "max_restarts" and v != int(v)):
                raise RelayError(f"{k} must be a positive number, got {v!r}", kind="bad request")
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
        Give the same `message_id` to retry a call safely: it is applied once."""
        wire = [to_wire(from_wire(a)) for a in args]
        try:
            reply = self.messenger.call(server, handler, wire, message_id or uuid.uuid4().hex, [], timeout)
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
            self.messenger.post(server, handler, wire, message_id, [], False)
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
        """Every deployed server: name, owner (worker node), host (its incarnation), status, reason (when
        failed), restarts, version, queued and applied messages."""
        try:
            live = set(self.registry.live_hosts())
            out = []
            for name, owner in self.registry.owners().items():
                info = self.registry.summary(name)
                holder = self.ledger.holder(name)
                if info.get("status") == "failed":
                    status = "failed"
                elif owner in live:
                    status = "running" if holder == owner else "starting"
                else:
                    status = "orphaned" if owner else "unplaced"
                out.append({"name": name, "owner": node_of(owner) if owner else "", "host": owner, "status": status,
                            "reason": info.get("reason", ""), "restarts": int(info.get("restarts", 0)),
                            "version": int(info.get("version", 0)), "queued": self.ledger.queued(name),
                            "applied": self.ledger.applied_count(name)})
            return out
        except UNREACHABLE as exc:
            raise self.unreachable(exc) from None


def client_from_env() -> RelayClient:
    return RelayClient(os.environ.get("RELAY_BROKER_URL"), os.environ.get("RELAY_RESULT_BACKEND"),
                       os.environ.get("RELAY_STORE_URL"))
