"""Producers: `RelayClient` drives the fleet from Python (the `relay` CLI uses it too)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from celery import Celery

from relay_lang.errors import RelayError
from relay_lang.nodes import ServerDecl
from relay_lang.parser import parse

from .hosting import remote_error
from .store import Registry, connect
from .wire import from_wire, to_wire


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
        self.app = Celery("relay-client", broker=broker, backend=backend)
        self.app.config_from_object(settings)
        self.app.conf.broker_url = broker
        self.app.conf.result_backend = backend
        self.registry = Registry(connect(store_url or settings.relay_store_url))

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ jobs

    def eval(self, source: str, server: str | None = None, timeout: float = 60, **options: object) -> EvalResult:
        """Runs a program on the fleet (on the worker owning `server`, if given)."""
        queue = f"relay.{server}" if server else "relay.eval"
        result = self.app.send_task("relay.eval", args=[source, options], queue=queue)
        data = result.get(timeout=timeout)
        return EvalResult(data["value"], data["output"], data["error"], data["tiers"], data["timings"], data["worker"])

    def deploy(self, source: str, file: str = "<deploy>") -> list[str]:
        """Starts the servers a source declares, or hot-upgrades them (state kept)."""
        program = parse(source, file)
        names = [s.name for s in program.stmts if isinstance(s, ServerDecl)]
        if not names:
            raise RelayError("the source declares no server", program.pos)
        live = set(self.registry.live_hosts())
        for name in names:
            info = self.registry.server(name)
            owner = info.get("owner", "") if info else ""
            if owner not in live:
                owner = self.registry.place(name)
            self.registry.register(name, source, owner, file)
        return names

    def call(self, server: str, handler: str, *args: object, timeout: float = 30) -> object:
        """Sends a message and waits for the reply; a Relay error in the handler is raised here."""
        reply = self._deliver(server, handler, args).get(timeout=timeout)
        if "error" in reply:
            raise remote_error(reply["error"])
        return from_wire(reply["value"])

    def send(self, server: str, handler: str, *args: object) -> str:
        """Enqueues a message; returns its id."""
        return self._deliver(server, handler, args).id

    def _deliver(self, server: str, handler: str, args: tuple):
        message_id = uuid.uuid4().hex
        wire = [to_wire(from_wire(a)) for a in args]
        self.registry.journal(server, message_id, handler, wire, [])
        return self.app.send_task("relay.deliver", args=[server, handler, wire, message_id, []],
                                  queue=f"relay.{server}", task_id=message_id)

    def servers(self) -> list[dict[str, object]]:
        """Every deployed server: name, owner (worker node name), status, restarts, version."""
        return self.registry.servers()


def client_from_env() -> RelayClient:
    return RelayClient(os.environ.get("RELAY_BROKER_URL"), os.environ.get("RELAY_RESULT_BACKEND"),
                       os.environ.get("RELAY_STORE_URL"))
